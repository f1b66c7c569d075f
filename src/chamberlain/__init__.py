"""chamberlain: a GitOps-native, Vault-first secret life cycle for Kubernetes.

Public surface is deliberately small; everything else is an implementation detail.

Layers (enforced by import-linter, see ``.importlinter``):

- ``chamberlain.intent``    — the intent model (Platform, RotationPolicy, SecretIntent), loading and paths. No I/O
  beyond reading the repository.
- ``chamberlain.checks``    — invariant checks over a loaded repository; produce findings, never mutate.
- ``chamberlain.render``    — deterministic GitOps output (CRDs, ESO objects, Vault config bundle).
- ``chamberlain.inventory`` — what exists, who owns it, who depends on it.
- ``chamberlain.lab``       — the local lab of real servers (OpenBao, kube-apiserver, etcd, ESO, PostgreSQL).
- ``chamberlain.cli``       — the thin typer front end.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
