"""Bootstrap secrets (Phases 1-2): SOPS-encrypted Kubernetes Secret manifests, the only values Git ever holds.

Belongs here: finding the ``sops``/``age`` binaries, the narrow wrapper over ``sops`` (encrypt plaintext from
memory, decrypt ciphertext into memory), and ``bootstrap encrypt``: relabel a Secret manifest in memory and replace
the file atomically with its ciphertext. Not here: what a valid bootstrap file is (:mod:`chamberlain.checks.sops`
decides that; we reuse its rules so what we write validates), rendering (:mod:`chamberlain.render.bootstrap`) and
applying (:mod:`chamberlain.gitops`).

Secret values only ever exist in memory, in the pipes to and from ``sops``: never in a file we write, a log line,
an exception or a ``repr``.
"""

from chamberlain.bootstrap.encrypt import EncryptResult, encrypt_file
from chamberlain.bootstrap.sops import BootstrapError, Sops, SopsError, sops_env
from chamberlain.bootstrap.tools import ToolMissing, Tools

__all__ = ["BootstrapError", "EncryptResult", "Sops", "SopsError", "ToolMissing", "Tools", "encrypt_file", "sops_env"]
