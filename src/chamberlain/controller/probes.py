"""``/metrics``, ``/healthz`` and ``/readyz`` on one listen address: what Prometheus and the kubelet ask of a replica.

* ``/healthz`` (liveness): the process answers and the loop thread is alive and finished a tick recently. A stuck
  loop fails it, so the kubelet restarts the replica.
* ``/readyz`` (readiness): the replica can serve. Its scope is loaded, its authority session stands (no outage
  at the last tick), and the Kubernetes API server answered its last Lease request. It never asks whether this
  replica *leads*: a follower is ready, and the Service keeps routing webhook requests to it (a follower persists
  them for the leader).

The decisions are pure functions over what the loop last reported and a ``now`` (:func:`liveness`,
:func:`readiness`); :class:`ProbeServer` is the I/O around them. It is a small WSGI app behind the standard
library's threading WSGI server: prometheus_client's ``start_http_server`` serves every path as ``/metrics`` and
takes no extra routes. ``/metrics`` is the Prometheus text format (0.0.4, which every Prometheus accepts), streamed
as the metrics produce it (:meth:`~chamberlain.controller.metrics.ControllerMetrics.scrape`) and gzipped when the
scraper accepts it: prometheus_client's ``make_wsgi_app`` builds the whole answer first, a 21 MiB transient at 10k
secrets.
"""

from __future__ import annotations

import json
import socket
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"
#: A tick longer than this is a stuck loop. Ticks take about a second; the back-off while the authority is down
#: pauses at most ``max_pause`` (30 s); a rotation's steps run on workers, not in the tick.
DEFAULT_STALL_SECONDS = 300.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


def liveness(*, loop_alive: bool, last_beat: float | None, started: float, now: float,
             stall_seconds: float = DEFAULT_STALL_SECONDS) -> Check:
    """Is the loop alive and ticking? Before the first tick, the start-up gets ``stall_seconds`` of grace."""
    if not loop_alive:
        return Check("loop", False, "the loop thread has ended")
    since = now - (last_beat if last_beat is not None else started)
    if since > stall_seconds:
        return Check("loop", False, f"no tick finished for {since:.0f} s (limit {stall_seconds:.0f} s)")
    return Check("loop", True, "ticking" if last_beat is not None else "starting")


def readiness(*, scope_loaded: bool, ticked: bool, authority_ok: bool, kube_reachable: bool | None) -> list[Check]:
    """The readiness checks (all must pass). ``kube_reachable`` None: no leader election, nothing to ask."""
    return [
        Check("scope", scope_loaded, "loaded" if scope_loaded else "no scope loaded yet"),
        Check("authority", ticked and authority_ok,
              "session established" if ticked and authority_ok
              else "waiting for the first tick" if not ticked else "the authority was unreachable at the last tick"),
        Check("kubernetes", ticked and kube_reachable is not False,
              "waiting for the first tick" if not ticked
              else "the API server did not answer the last Lease request" if kube_reachable is False
              else "reachable" if kube_reachable else "no leader election"),
    ]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the JSON log; the kubelet records failures itself."""


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def probe_app(scrape: Callable[[], Iterable[bytes]], health: Callable[[], list[Check]],
              ready: Callable[[], list[Check]]) -> WSGIApp:
    """The WSGI app: ``/metrics`` the chunks ``scrape`` yields, ``/healthz`` and ``/readyz`` as JSON, 200 or
    503."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == METRICS:
            gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4),
                                      *([("Content-Encoding", "gzip")] if gzipped else [])])
            return _gzip(scrape()) if gzipped else scrape()
        checks = {HEALTHZ: health, READYZ: ready}.get(path)
        if checks is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        results = checks()
        ok = all(c.ok for c in results)
        body = json.dumps({"status": "ok" if ok else "failing", "checks": {c.name: c.as_dict() for c in results}},
                          sort_keys=True).encode() + b"\n"
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _gzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
    for chunk in chunks:
        packed = packer.compress(chunk)
        if packed:
            yield packed
    yield packer.flush()


class ProbeServer:
    """The app on ``(host, port)`` (port 0 picks a free one), served on a daemon thread until :meth:`shutdown`."""

    def __init__(self, address: tuple[str, int], app: WSGIApp) -> None:
        server_class = _ThreadingWSGIServer6 if ":" in address[0] else _ThreadingWSGIServer
        self._server = make_server(address[0], address[1], app, server_class=server_class,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="chamberlain-probes", daemon=True)
        self._thread.start()

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def shutdown(self) -> None:
        self._server.shutdown()

    def server_close(self) -> None:
        self._server.server_close()
        self._thread.join(5)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:9102`` for IPv6, ``:9102`` for every IPv4 address) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT: {text!r} (for example 0.0.0.0:9102 or [::]:9102)")
    host = host.strip("[]") if host.startswith("[") else host
    if ":" in host and not text.startswith("["):
        raise ValueError(f"an IPv6 host goes in brackets: {text!r} (for example [::1]:9102)")
    return host or "0.0.0.0", int(port)  # noqa: S104 - ":PORT" asks for every address on purpose

__all__ = ["DEFAULT_STALL_SECONDS", "HEALTHZ", "METRICS", "READYZ", "Check", "ProbeServer", "liveness",
           "parse_address", "probe_app", "readiness"]
