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
from collections.abc import Callable, Sequence
from typing import TypeVar

import hvac.exceptions
import requests

from chamberlain import unreachable
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
_UNSUPPORTED = ("unsupported operation", "cannot enable audit device via api",
                "cannot disable configuration-managed audit device")

_UPGRADING = "upgrading from non-versioned to versioned data"


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
    if _UPGRADING in lowered:  # a KV v2 mount answers so for a moment after it is enabled: try again shortly
        return AuthorityUnavailable(f"{what}: the KV mount is still upgrading to version 2 (400)")
    return None


_SEALED = re.compile(r"\bis sealed\b", re.IGNORECASE)

# hvac's exception (by HTTP status) -> our type, what to say, whether the server's short text may follow.
_BY_TYPE: tuple[tuple[type[hvac.exceptions.VaultError], type[AuthorityError], str, bool], ...] = (
    (hvac.exceptions.VaultNotInitialized, NotInitialized,
     "Vault is not initialized (501); run `chamberlain authority init`", False),
    (hvac.exceptions.Unauthorized, Unauthenticated, "unauthenticated (401)", True),
    (hvac.exceptions.Forbidden, Forbidden, "permission denied (403)", True),
    (hvac.exceptions.InvalidPath, NotFound, "not found (404)", False),
    (hvac.exceptions.InvalidRequest, InvalidRequest, "rejected (400)", True),
    (hvac.exceptions.RateLimitExceeded, AuthorityUnavailable, "rate limited (429)", False),
    (hvac.exceptions.InternalServerError, AuthorityUnavailable, "server error (5xx)", False),
    (hvac.exceptions.BadGateway, AuthorityUnavailable, "server error (5xx)", False),
)


def _by_type(exc: hvac.exceptions.VaultError, text: str, what: str, detail: str) -> AuthorityError:
    # The server says "Vault is sealed" (503); a path or message that merely contains "sealed" is not that.
    if isinstance(exc, hvac.exceptions.VaultDown) or _SEALED.search(text):
        return Sealed(f"{what}: Vault is sealed (503); run `chamberlain authority unseal`")
    for hvac_type, ours, said, with_detail in _BY_TYPE:
        if isinstance(exc, hvac_type):
            return ours(f"{what}: {said}{detail if with_detail else ''}")
    return AuthorityError(f"{what}: Vault answered with an error ({type(exc).__name__}){detail}")


def _why(exc: BaseException) -> str:
    """What happened at one node, in words: an HA request may have met a sealed node before an absent one."""
    if isinstance(exc, hvac.exceptions.VaultDown):
        return "sealed, or no active node (503)"
    if isinstance(exc, hvac.exceptions.VaultError):
        return "server error (5xx)"  # the only other answers a request fails over on
    return unreachable.reason(exc)


def map_error(exc: BaseException, what: str, *, safe_detail: bool = False,
              tried: Sequence[tuple[str, BaseException]] = ()) -> AuthorityError:
    """The typed error for an hvac/transport exception. ``safe_detail`` keeps the server's short error text (only
    for configuration calls, whose errors name fields, never values). ``tried``: the nodes asked and what each
    raised, named when none answered (scheme, host and port only)."""
    if isinstance(exc, hvac.exceptions.VaultError):
        text = _first_error(exc)
        detail = _detail(text, safe_detail)
        return _by_message(text, what, detail) or _by_type(exc, text, what, detail)
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        where = unreachable.tried([(node, _why(e)) for node, e in tried])
        return AuthorityUnavailable(f"{what}: Vault unreachable at {where}" if where
                                    else f"{what}: Vault unreachable ({unreachable.reason(exc)})")
    return AuthorityError(f"{what}: unexpected {type(exc).__name__}")


def call(what: str, fn: Callable[[], T], *, safe_detail: bool = False,
         tried: Sequence[tuple[str, BaseException]] = ()) -> T:
    """``fn()`` with every hvac/transport exception mapped to its typed error (the original is not chained: its
    text may quote a body). ``tried`` is read when it fails: ``fn`` may fill it as it goes."""
    try:
        return fn()
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException, OSError) as exc:
        raise map_error(exc, what, safe_detail=safe_detail, tried=tried) from None


__all__ = ["call", "map_error"]
