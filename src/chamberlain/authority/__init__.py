"""The runtime authority adapter: a narrow, typed interface over Vault/OpenBao.

Belongs here: the :class:`KV` protocol and the typed errors (``errors``), an in-memory fake for unit tests
(``fake``), and the hvac-backed implementation (``vault``) — the only module that imports hvac. Workflows
(handover, ledger, rotation) depend on the protocol, never on hvac.
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
