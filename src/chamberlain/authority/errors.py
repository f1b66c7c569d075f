"""Typed errors of the runtime authority, split into retryable and permanent.

Mapped once, at the boundary (:mod:`chamberlain.authority.vault.boundary`), from HTTP status and server messages;
callers catch these types and never look at an error's text. Messages carry paths and status, never request or
response bodies, which may hold secret data.
"""

from __future__ import annotations

from chamberlain.errors import ChamberlainError


class AuthorityError(ChamberlainError):
    """Base of every Vault/OpenBao error. ``retryable`` says whether trying again later may succeed."""


class AuthorityUnavailable(AuthorityError):
    """The server is unreachable, overloaded, or answered 5xx."""

    retryable = True


class Sealed(AuthorityUnavailable):
    """The server is sealed; unseal it (``chamberlain authority unseal``) and retry."""


class NotInitialized(AuthorityError):
    """The server has not been initialized (``chamberlain authority init``)."""


class Forbidden(AuthorityError):
    """The token lacks a capability (403): a policy or identity problem, not transient."""


class Unauthenticated(Forbidden):
    """The token is missing, expired or revoked (401/403 on a token operation)."""


class NotFound(AuthorityError):
    """The path does not exist."""


class InvalidRequest(AuthorityError):
    """The server rejected the request as malformed (400)."""


class CasRequired(InvalidRequest):
    """The mount requires check-and-set and the write did not carry one."""


class CasConflict(AuthorityError):
    """Check-and-set failed: the secret changed since it was read (or exists when creation was expected)."""


class Unsupported(AuthorityError):
    """The server does not offer this operation as asked: an OpenBao endpoint that is disabled by default
    (unauthenticated generate-root) or managed only in its configuration file (audit devices). Permanent."""


class MetadataTooLarge(AuthorityError, ValueError):
    """A custom_metadata record would break the server's limits (keys, key or value size); refused before any
    write, so nothing is half-recorded. Permanent: the record itself must shrink."""


__all__ = [
    "AuthorityError",
    "AuthorityUnavailable",
    "CasConflict",
    "CasRequired",
    "Forbidden",
    "InvalidRequest",
    "MetadataTooLarge",
    "NotFound",
    "NotInitialized",
    "Sealed",
    "Unauthenticated",
    "Unsupported",
]
