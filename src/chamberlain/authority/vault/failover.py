"""Failover between the nodes of a highly available authority (raft): which addresses, when a request may be
tried again on the next node, and how long to keep trying.

Belongs here: :func:`parse_addresses` (``--vault-addr`` takes several, comma-separated), :class:`FailoverPolicy`
(the bounds) and :func:`may_fail_over`, the one decision: a request is tried on the next node only when the node
asked surely did not apply it:

* the connection was refused (the node is down: nothing was sent);
* the node answered 503 (sealed, or a standby with no active node: "no active Vault instance found") or a 5xx that
  says no node was active ("local node not active but active cluster node not found"), so nothing was written.

Not failed over, because the old leader may have applied the request: a 5xx that says forwarding failed midway,
and a write's refused connection *after a redirect* (an OpenBao standby first forwards a write over the cluster port,
and only when that fails redirects the client, 307, to the leader's address, which may be the dead one). A read
(GET, LIST) is sent again either way.

A connection reset or a timeout in the middle of a request is *not* failed over here: a write the old leader may
have committed must not be sent twice behind the caller's back. It surfaces as
:class:`~chamberlain.authority.errors.AuthorityUnavailable` (retryable), and the caller's own retry (the rotation
workflow's backoff, whose check-and-set recognises its own earlier write) goes to the next node, because the client
stays on the node that answered last.

Not here: the requests themselves (:mod:`.client`), error mapping (:mod:`.boundary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import hvac.exceptions
import requests
import urllib3.exceptions

from chamberlain.errors import UsageError


def parse_addresses(address: str) -> tuple[str, ...]:
    """``https://a:8200,https://b:8200`` -> both, each without a trailing slash; at least one."""
    parts = tuple(a.strip().rstrip("/") for a in address.split(",") if a.strip())
    if not parts:
        raise UsageError("no authority address given (--vault-addr or the Platform's spec.authority.address)")
    for part in parts:
        if not part.startswith(("http://", "https://")):
            raise UsageError(f"authority address {part!r}: must start with https:// (or http:// for a dev server)")
    return parts


@dataclass(frozen=True)
class FailoverPolicy:
    """How long a request keeps looking for a node that serves it: ``rounds`` passes over every node, with a
    pause between passes growing from ``pause`` to ``max_pause``, and never beyond ``budget`` seconds in all.
    The default outlasts a raft election (about 2 s in the lab, up to ~10 s with raft's production timing)."""

    rounds: int = 12
    pause: float = 0.25
    max_pause: float = 2.0
    budget: float = 30.0

    def pause_after(self, round_: int) -> float:
        return float(min(self.pause * 2.0 ** round_, self.max_pause))


def _refused(exc: BaseException) -> bool:
    """Whether the connection was never made (so no byte of the request reached a server)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            current = current.reason
            continue
        current = current.args[0] if current.args and isinstance(current.args[0], BaseException) else (
            current.__cause__ or current.__context__)
    return False


#: What a node says when it did not apply a request because no node is active (or it is sealed). Any other 5xx
#: (e.g. "error during forwarding RPC request": the active node may have applied it) is not failed over.
_NOT_APPLIED = ("not active", "no active", "sealed", "standby")


_READS = ("GET", "HEAD", "LIST")


def _host(url: str) -> str:
    return urlsplit(url).netloc


def may_fail_over(exc: BaseException, node: str = "") -> bool:
    """Whether the request that raised ``exc`` (sent to ``node``) may be sent to the next node (see the module
    docstring)."""
    if isinstance(exc, hvac.exceptions.VaultDown):
        return True  # 503: sealed, or standby with no active node
    if isinstance(exc, hvac.exceptions.InternalServerError | hvac.exceptions.BadGateway):
        text = " ".join(str(e) for e in (getattr(exc, "errors", None) or [])).lower()
        return any(marker in text for marker in _NOT_APPLIED)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ConnectTimeout):
        request = getattr(exc, "request", None)
        redirected = node and request is not None and request.url and _host(str(request.url)) != _host(node)
        if redirected and str(getattr(request, "method", "")).upper() not in _READS:
            return False  # the standby may have forwarded the write before it redirected: possibly applied
        return isinstance(exc, requests.exceptions.ConnectTimeout) or _refused(exc)
    return False


__all__ = ["FailoverPolicy", "may_fail_over", "parse_addresses"]
