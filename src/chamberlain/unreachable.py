"""How an error names a server that gave no answer: the address tried and why, in words.

Belongs here: :func:`address` (``scheme://host:port`` of a URL: never its user, password, path or query, which may
carry credentials), :func:`reason` (connection refused, name not resolved, TLS verification failed, timed out...
instead of an exception's class name) and :func:`tried` (several nodes of an HA authority, each once).

The standard library only: the Vault client (requests), the Kubernetes client (urllib3) and the webhook client
(urllib) all raise chains that end in the socket's own errors; the transport libraries' wrappers are recognised by
class name, so nothing here imports them. The exception's text is never used: it can quote a URL with its query.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def address(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the scheme's port when none is given)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:  # "http://vault[x": not a URL urllib can split
        parts, host = urlsplit(""), None
    if not parts.scheme or not host:  # no scheme ("host:port/path"): host and port only, as for a URL
        scheme, sep, rest = url.strip().partition("://")
        if not sep:
            scheme, rest = "", scheme
        bare = rest.split("?")[0].split("#")[0].rpartition("@")[2].split("/")[0]  # nothing before an "@"
        shown = "".join(c for c in bare if c.isprintable())[:200]
        return f"{scheme}://{shown}" if scheme and scheme.isalnum() else shown
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number, or past 65535
        port = None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}" if port else f"{parts.scheme}://{shown}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, arguments and a ``reason`` (urllib3's MaxRetryError,
    urllib's URLError)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        todo.extend(e for e in inner if isinstance(e, BaseException))


_CONNECT_TIMEOUT = frozenset({"ConnectTimeout", "ConnectTimeoutError"})
_READ_TIMEOUT = frozenset({"ReadTimeout", "ReadTimeoutError", "Timeout"})
_CLOSED = frozenset({"RemoteDisconnected", "ProtocolError", "IncompleteRead", "ChunkedEncodingError"})
_ERRNO = {errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable",
          errno.ECONNRESET: "connection reset", errno.ECONNABORTED: "connection reset"}


def reason(exc: BaseException) -> str:
    """Why a request got no answer, in words (the most specific kind of failure first)."""
    chain = list(_chain(exc))
    names = {type(e).__name__ for e in chain}
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = (e.verify_message or "").rstrip(".")  # OpenSSL's words: self-signed, expired, wrong host
            return f"TLS verification failed: {detail}" if detail else "TLS verification failed"
    if "SSLError" in names or any(isinstance(e, ssl.SSLError) for e in chain):
        return "TLS handshake failed"
    if "NameResolutionError" in names or any(isinstance(e, socket.gaierror) for e in chain):
        return "name not resolved"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if names & _CONNECT_TIMEOUT:
        return "timed out connecting"
    if names & _READ_TIMEOUT or any(isinstance(e, TimeoutError) for e in chain):
        return "timed out waiting for an answer"
    for e in chain:
        if isinstance(e, OSError) and e.errno in _ERRNO:
            return _ERRNO[e.errno]
    if "NewConnectionError" in names:  # no connection was made, for a reason the chain does not hold
        return "cannot connect"
    if names & _CLOSED or any(isinstance(e, ConnectionError) for e in chain):
        return "connection closed before an answer"
    return "connection failed"


def tried(attempts: Sequence[tuple[str, str]]) -> str:
    """``A, B (why)`` when every address failed the same way, else ``A (why), B (why)``: each address once, in
    the order first tried, with what happened there last."""
    last: dict[str, str] = {}
    for url, why in attempts:
        last[address(url)] = why
    if len(set(last.values())) == 1:
        return f"{', '.join(last)} ({next(iter(last.values()))})"
    return ", ".join(f"{where} ({why})" for where, why in last.items())


__all__ = ["address", "reason", "tried"]
