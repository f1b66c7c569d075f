"""The one error boundary of the authority adapter: hvac and transport exceptions become the typed errors of
:mod:`chamberlain.authority.errors`, here and nowhere else.

Belongs here: :func:`map_error` (status and, only here, the server's message text decide the type) and
:func:`call`, which every area runs its requests through. Messages carry the operation and the HTTP status, never a
request or response body (bodies may hold secret data). For configuration calls only (``safe_detail``), the
server's short error text is kept because it names the bad field; even then it is withheld when it quotes encoded
data (a PEM or base64 body a PKI error may echo).

Not here: retries (callers decide on ``retryable``), logging. Messages say "Vault" for either flavour: operators
and alerts match on that word.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import hvac.exceptions
import requests

from chamberlain.authority.errors import (
    AuthorityError,
    AuthorityUnavailable,
    CasConflict,
    CasRequired,
    Forbidden,
    InvalidRequest,
    NotFound,
    NotInitialized,
    Sealed,
    Unauthenticated,
    Unsupported,
)

T = TypeVar("T")

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{40,}")  # a PEM/DER body an error might quote
# What OpenBao answers where it differs from Vault (unauthenticated endpoints disabled by default, audit devices
# only in the configuration file): matched here so callers see one typed error for both.
_UNSUPPORTED = ("unsupported operation", "cannot enable audit device via api")


def _first_error(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None) or []
    text = str(errors[0]) if errors else ""
    return text.replace("\n", " ")[:200]


def _detail(text: str, safe_detail: bool) -> str:
    if not safe_detail or not text:
        return ""
    if "-----" in text or _BASE64_RUN.search(text):
        return ": detail withheld (it quoted encoded data)"
    return f": {text}"


def _by_message(text: str, what: str, detail: str) -> AuthorityError | None:
    lowered = text.lower()
    if "check-and-set" in lowered and "required" in lowered:
        return CasRequired(f"{what}: the mount requires check-and-set (400)")
    if "check-and-set" in lowered:
        return CasConflict(f"{what}: check-and-set did not match the current version")
    if any(marker in lowered for marker in _UNSUPPORTED):
        return Unsupported(f"{what}: not offered by this server (400){detail}")
    return None


def _by_type(exc: hvac.exceptions.VaultError, text: str, what: str, detail: str) -> AuthorityError:
    if isinstance(exc, hvac.exceptions.VaultDown) or "sealed" in text.lower():
        return Sealed(f"{what}: Vault is sealed (503); run `chamberlain authority unseal`")
    if isinstance(exc, hvac.exceptions.VaultNotInitialized):
        return NotInitialized(f"{what}: Vault is not initialized (501); run `chamberlain authority init`")
    if isinstance(exc, hvac.exceptions.Unauthorized):
        return Unauthenticated(f"{what}: unauthenticated (401){detail}")
    if isinstance(exc, hvac.exceptions.Forbidden):
        return Forbidden(f"{what}: permission denied (403){detail}")
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return NotFound(f"{what}: not found (404)")
    if isinstance(exc, hvac.exceptions.InvalidRequest):
        return InvalidRequest(f"{what}: rejected (400){detail}")
    if isinstance(exc, hvac.exceptions.RateLimitExceeded):
        return AuthorityUnavailable(f"{what}: rate limited (429)")
    if isinstance(exc, hvac.exceptions.InternalServerError | hvac.exceptions.BadGateway):
        return AuthorityUnavailable(f"{what}: server error (5xx)")
    return AuthorityError(f"{what}: Vault answered with an error ({type(exc).__name__}){detail}")


def map_error(exc: BaseException, what: str, *, safe_detail: bool = False) -> AuthorityError:
    """The typed error for an hvac/transport exception. ``safe_detail`` keeps the server's short error text (only
    for configuration calls, whose errors name fields, never values)."""
    if isinstance(exc, hvac.exceptions.VaultError):
        text = _first_error(exc)
        detail = _detail(text, safe_detail)
        return _by_message(text, what, detail) or _by_type(exc, text, what, detail)
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return AuthorityUnavailable(f"{what}: Vault unreachable ({type(exc).__name__})")
    return AuthorityError(f"{what}: unexpected {type(exc).__name__}")


def call(what: str, fn: Callable[[], T], *, safe_detail: bool = False) -> T:
    """``fn()`` with every hvac/transport exception mapped to its typed error (the original is not chained: its
    text may quote a body)."""
    try:
        return fn()
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException, OSError) as exc:
        raise map_error(exc, what, safe_detail=safe_detail) from None


__all__ = ["call", "map_error"]
