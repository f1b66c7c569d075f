"""The webhook trigger: an HTTP endpoint taking HMAC-SHA256-signed rotation requests (``POST /v1/rotate``).

Belongs here: the pure :func:`verify` (signature, timestamp window, replay) tested apart from any server, the
client-side :func:`sign`, key loading (file or environment, never the command line), the bounded
:class:`ReplayCache`, and :class:`WebhookServer` on the standard library's ``ThreadingHTTPServer`` — no framework
for one route. Not here: rotating; an accepted request only lands in the :class:`RequestQueue`.

Wire format: body ``{"secret": NAME, "reason": TEXT, "id": OPTIONAL-IDEMPOTENCY-KEY}``; headers
``X-Chamberlain-Timestamp: <unix seconds>`` and ``X-Chamberlain-Signature: sha256=<hex>`` where the MAC is
HMAC-SHA256(key, timestamp + "." + body). Binding the timestamp into the MAC stops an attacker from refreshing an old
request; remembering each accepted signature until it leaves the window stops a replay inside it.

Answers: 401 for unsigned, badly signed, stale, future or replayed requests (nothing enqueued, and the body is not
even parsed); 404 for an unknown secret; 413 for a body over the limit; 405 for a method other than POST; 400 for
an authentic but malformed body; 200 when queued, merged or a duplicate (the sender may retry safely). The key,
signatures and bodies never appear in logs, answers or exceptions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from chamberlain.clock import Clock
from chamberlain.errors import ChamberlainError
from chamberlain.triggers.request import RequestError, RequestQueue, RotationRequest, sanitize_reason

log = logging.getLogger(__name__)

PATH = "/v1/rotate"
TIMESTAMP_HEADER = "X-Chamberlain-Timestamp"
SIGNATURE_HEADER = "X-Chamberlain-Signature"
KEY_ENV = "CHAMBERLAIN_WEBHOOK_KEY"
KEY_FILE_ENV = "CHAMBERLAIN_WEBHOOK_KEY_FILE"
DEFAULT_WINDOW = timedelta(seconds=300)
DEFAULT_MAX_BODY = 4096
MIN_KEY_BYTES = 16
_SIGNATURE = re.compile(r"^sha256=([0-9a-f]{64})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")

Outcome = Literal["ok", "missing", "malformed", "bad-signature", "stale", "future", "replay"]


class WebhookKeyError(ChamberlainError):
    """No usable key was configured (the message names where it looked, never the key)."""


@dataclass(frozen=True)
class WebhookKey:
    """The shared HMAC key. ``repr`` hides it, so a key in a traceback's locals or a log line stays hidden."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < MIN_KEY_BYTES:
            raise WebhookKeyError(f"the webhook key is shorter than {MIN_KEY_BYTES} bytes")


def load_key(path: Path | None, env: Mapping[str, str]) -> WebhookKey:
    """The key from ``path``, else from the file named by ``CHAMBERLAIN_WEBHOOK_KEY_FILE`` in ``env``, else from
    ``CHAMBERLAIN_WEBHOOK_KEY`` in ``env`` (the CLI passes its process environment). Never from the command line:
    argv is visible to every user via ``ps``."""
    file = path or (Path(env[KEY_FILE_ENV]) if env.get(KEY_FILE_ENV) else None)
    if file is not None:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise WebhookKeyError(f"cannot read the webhook key file {file} ({type(exc).__name__})") from None
        return WebhookKey(raw.strip())  # a trailing newline from `echo > file` is not part of the key
    if env.get(KEY_ENV):
        return WebhookKey(env[KEY_ENV].strip().encode())
    raise WebhookKeyError(f"no webhook key: set {KEY_FILE_ENV} (preferred) or {KEY_ENV}")


def _mac(key: WebhookKey, timestamp: str, body: bytes) -> str:
    return hmac.new(key.value, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, key: WebhookKey, now: datetime) -> dict[str, str]:
    """The headers a sender adds to ``body`` (for tests, docs and scripted senders)."""
    timestamp = str(int(now.timestamp()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: f"sha256={_mac(key, timestamp, body)}"}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    replay_key: str | None = None  # set when authentic: remember it until ``expires_at``
    expires_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive; plain dicts in tests are not.
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    key: WebhookKey,
    now: datetime,
    seen: Container[str],
    window: timedelta = DEFAULT_WINDOW,
) -> Verdict:
    """Is this an authentic, fresh, first-seen request? Pure: ``seen`` is only read; the caller records
    ``replay_key`` atomically (see :class:`ReplayCache`). The signature is checked before freshness and replay, so
    nothing about the cache is revealed to a sender without the key."""
    timestamp, signature = _header(headers, TIMESTAMP_HEADER), _header(headers, SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        return Verdict("missing")
    timestamp, signature = timestamp.strip(), signature.strip().lower()
    match = _SIGNATURE.match(signature)
    if not _TIMESTAMP.match(timestamp) or match is None:
        return Verdict("malformed")
    if not hmac.compare_digest(match.group(1), _mac(key, timestamp, body)):  # constant time
        return Verdict("bad-signature")
    sent = datetime.fromtimestamp(int(timestamp), tz=UTC)
    if sent < now - window:
        return Verdict("stale")
    if sent > now + window:
        return Verdict("future")
    # The MAC itself identifies the request: any change to timestamp or body changes it.
    replay_key = match.group(1)
    if replay_key in seen:
        return Verdict("replay")
    return Verdict("ok", replay_key, sent + window)


class ReplayCacheFull(ChamberlainError):
    retryable = True


class ReplayCache:
    """Signatures seen recently, each kept until its timestamp leaves the window (then a replay is stale anyway).

    Memory is bounded by ``max_entries``. When full of live entries it refuses new requests instead of evicting:
    forgetting a live signature would reopen it to replay. Thread-safe.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, datetime] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def remember(self, key: str, expires_at: datetime, now: datetime) -> bool:
        """Record ``key``; False when it was already there (a concurrent replay). Raises when full."""
        with self._lock:
            for old in [k for k, exp in self._entries.items() if exp < now]:
                del self._entries[old]
            if key in self._entries:
                return False
            if len(self._entries) >= self._max:
                raise ReplayCacheFull("webhook replay cache is full")
            self._entries[key] = expires_at
            return True


@dataclass(frozen=True)
class Answer:
    status: HTTPStatus
    body: dict[str, Any]


class WebhookHandler:
    """Everything the endpoint does after the HTTP framing, without sockets (the server just calls it)."""

    def __init__(
        self,
        key: WebhookKey,
        queue: RequestQueue,
        known: Callable[[str], bool],
        clock: Clock,
        window: timedelta = DEFAULT_WINDOW,
        replay: ReplayCache | None = None,
    ) -> None:
        self._key = key
        self._queue = queue
        self._known = known
        self._clock = clock
        self._window = window
        self._replay = replay or ReplayCache()

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        now = self._clock.now()
        verdict = verify(headers, body, self._key, now, self._replay, self._window)
        if not verdict.ok or verdict.replay_key is None or verdict.expires_at is None:
            log.warning("webhook: rejected request (%s)", verdict.outcome)
            return Answer(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"})
        try:
            if not self._replay.remember(verdict.replay_key, verdict.expires_at, now):
                log.warning("webhook: rejected request (replay)")
                return Answer(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"})
        except ReplayCacheFull:
            return Answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "busy, retry later"})
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return Answer(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
        if not isinstance(doc, dict) or not isinstance(doc.get("secret"), str):
            return Answer(HTTPStatus.BAD_REQUEST, {"error": "body needs a string field 'secret'"})
        reason, given_id = doc.get("reason", ""), doc.get("id")
        if not isinstance(reason, str) or (given_id is not None and not isinstance(given_id, str)):
            return Answer(HTTPStatus.BAD_REQUEST, {"error": "'reason' and 'id' must be strings"})
        secret = doc["secret"]
        if not self._known(secret):
            return Answer(HTTPStatus.NOT_FOUND, {"error": "unknown secret"})
        # Without a sender-chosen id, the MAC names the request (a hash of it: the id may be logged).
        digest = hashlib.sha256(verdict.replay_key.encode()).hexdigest()[:24]
        try:
            request = RotationRequest(
                secret=secret,
                kind="webhook",
                reason=sanitize_reason(reason) if reason else "webhook",
                requested_at=now,
                request_id=f"webhook:{given_id}" if given_id else f"webhook:{digest}",
            )
        except RequestError:
            return Answer(HTTPStatus.BAD_REQUEST, {"error": "malformed secret name or id"})
        outcome = self._queue.put(request)
        log.info("webhook: %s rotation request", outcome, extra={"secret": secret, "request_id": request.request_id})
        return Answer(HTTPStatus.OK, {"secret": secret, "request": request.request_id, "outcome": outcome})


class _Http(BaseHTTPRequestHandler):
    server: WebhookServer
    server_version = "chamberlain-webhook"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds per socket read: a sender that stalls mid-body cannot hold a thread forever

    def _answer(self, status: HTTPStatus, body: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if status >= 400:
            self.send_header("Connection", "close")  # an unread body must not be parsed as the next request
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # the http.server naming scheme
        if self.path != PATH:
            self._answer(HTTPStatus.NOT_FOUND, {"error": "no such endpoint"})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if int(length) > self.server.max_body:  # refused before reading: a large body costs us nothing
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        body = self.rfile.read(int(length))
        answer = self.server.handler.handle({k: v for k, v in self.headers.items()}, body)
        self._answer(answer.status, answer.body)

    def _not_allowed(self) -> None:
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only POST"}, {"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        # The default writes to stderr; the request line holds no secret, but headers do — log the line only.
        log.debug("webhook: %s", format % args)


class WebhookServer(ThreadingHTTPServer):
    """The endpoint on a threading HTTP server. Terminate TLS in front of it (a Service mesh or ingress); the HMAC
    authenticates the sender either way. ``serve_forever()`` on a thread, ``shutdown()`` to stop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: WebhookHandler, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.handler = handler
        self.max_body = max_body
        super().__init__(address, _Http)

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        return f"http://{host!s}:{port}{PATH}"
