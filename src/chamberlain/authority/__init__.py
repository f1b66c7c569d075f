"""The runtime authority adapter: a narrow, typed interface over Vault/OpenBao.

Belongs here: the :class:`KV` protocol (``kv``), the typed values (``model``) and errors (``errors``), an in-memory
fake for unit tests (``fake``), the hvac-backed implementation (``vault``, one module per area; the only package
that imports hvac, checked by ``.importlinter``), the declarative configuration (``configure``), and the seal life
cycle: where the unseal material lives (``material``), what to do next (``decide``, pure) and doing it
(``lifecycle``). Workflows (handover, ledger, rotation) depend on the protocols, never on hvac.
"""

from chamberlain.authority.errors import (
    AuthorityError,
    AuthorityUnavailable,
    CasConflict,
    Forbidden,
    NotFound,
    Sealed,
)
from chamberlain.authority.kv import KV, SecretMetadata, SecretVersion

__all__ = [
    "KV",
    "AuthorityError",
    "AuthorityUnavailable",
    "CasConflict",
    "Forbidden",
    "NotFound",
    "Sealed",
    "SecretMetadata",
    "SecretVersion",
]
