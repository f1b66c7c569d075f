"""Typed errors of the runtime authority, split into retryable and permanent.

Mapped once, at the boundary (the hvac adapter), from HTTP status and server messages. Messages carry paths and
status, never request or response bodies, which may hold secret data.
"""

from __future__ import annotations

from chamberlain.errors import ChamberlainError


class AuthorityError(ChamberlainError):
    """Base of every Vault/OpenBao error. ``retryable`` says whether trying again later may succeed."""

    retryable = False


class AuthorityUnavailable(AuthorityError):
    """The server is unreachable, overloaded, or answered 5xx."""

    retryable = True


class Sealed(AuthorityUnavailable):
    """The server is sealed; unseal it (``chamberlain authority unseal``) and retry."""


class Forbidden(AuthorityError):
    """The token lacks a capability (403) — a policy or identity problem, not transient."""


class NotFound(AuthorityError):
    """The path does not exist."""


class CasConflict(AuthorityError):
    """Check-and-set failed: the secret changed since it was read (or exists when creation was expected)."""
