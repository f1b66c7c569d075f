"""The webhook trigger: an HTTP endpoint taking authenticated rotation requests (``POST /v1/rotate``).

Belongs here: the pure verifiers of the three accepted schemes (tested apart from any server), the client-side
:func:`sign`, key loading (files or the environment, never the command line), body parsing (chamberlain's own
body and Alertmanager's), and :class:`WebhookServer`, a bounded HTTP server on the standard library. Not here:
rotating; an accepted request is persisted (:mod:`.store`) and lands in the :class:`RequestQueue`.

Schemes (a request uses exactly one; each is accepted only when its secret is configured):

* **chamberlain HMAC**: ``X-Chamberlain-Timestamp: <unix seconds>`` and ``X-Chamberlain-Signature:
  sha256=<hex>``, the MAC being HMAC-SHA256(key, timestamp + "." + body). The replay id is the MAC itself (any
  change to timestamp or body changes it), or the body's ``id`` when the sender gives one;
* **Standard Webhooks** (standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
  v1,<base64 HMAC-SHA256(secret, id + "." + timestamp + "." + body)>`` (several space-separated signatures
  allowed, during a key rotation), the secret given as ``whsec_<base64>``. The replay id is ``webhook-id``;
* **bearer token** (what Alertmanager's ``http_config.authorization`` sends): ``Authorization: Bearer <token>``.
  A bearer request has no signature over its body and no timestamp, so it must carry an idempotency key: the
  ``Idempotency-Key`` header, or, for an Alertmanager payload, one derived per alert from ``groupKey``, the
  alert's ``fingerprint`` and ``startsAt`` (the same firing of the same alert is one request, however often
  Alertmanager repeats the notification).

Both signed schemes refuse timestamps outside ``window`` (5 minutes) either way. Every accepted request is
persisted create-only under a name derived from its replay id, in the cluster (``RotationRun`` objects), so a
replay is refused after a restart, on another replica, or after a leader change, and a request answered by a
follower is acted on by the leader.

Bodies: ``{"secret": NAME, "reason": TEXT, "id": OPTIONAL-IDEMPOTENCY-KEY}``, or an Alertmanager webhook payload
(``version: "4"``): each *firing* alert names its secret with the label ``chamberlain_secret`` (on the alert, or
in ``commonLabels``); the reason is the alert's ``summary`` annotation, else its ``alertname``.

Answers: 401 for unauthenticated, stale, future or (HMAC) replayed requests (nothing persisted, the body not even
parsed); 400 for strict-header violations and malformed bodies (and a bearer request without an idempotency
key); 404 unknown secret; 408 body too slow; 411 no Content-Length; 413 body over the limit; 429 rate limited
(``Retry-After``); 503 all workers busy; 200 when persisted, queued, merged or a duplicate (a retry is safe), 202
when persisted by a follower for the leader. Keys, signatures, tokens and bodies never appear in logs, answers
or exceptions.

The server (:class:`WebhookServer`) is bounded: at most ``workers`` connections are served at once and a further
one is answered 503 at once by the accepting thread; each connection has ``header_timeout`` seconds in total to
send its headers and ``body_timeout`` to send its body (a deadline, not a per-read timeout, so a client trickling
one byte at a time cannot hold a worker); one request per connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Literal

from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError
from chamberlain.triggers.request import RequestError, RequestQueue, RotationRequest, sanitize_reason
from chamberlain.triggers.store import MemoryStore, RequestStore, object_name

log = logging.getLogger(__name__)

PATH = "/v1/rotate"
TIMESTAMP_HEADER = "X-Chamberlain-Timestamp"
SIGNATURE_HEADER = "X-Chamberlain-Signature"
SW_ID_HEADER, SW_TIMESTAMP_HEADER, SW_SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
AUTHORIZATION_HEADER = "Authorization"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ALERT_LABEL = "chamberlain_secret"  # the Alertmanager label naming the secret (intent name) to rotate
KEY_ENV = "CHAMBERLAIN_WEBHOOK_KEY"
KEY_FILE_ENV = "CHAMBERLAIN_WEBHOOK_KEY_FILE"
STANDARD_FILE_ENV = "CHAMBERLAIN_WEBHOOK_STANDARD_SECRET_FILE"
BEARER_FILE_ENV = "CHAMBERLAIN_WEBHOOK_BEARER_TOKEN_FILE"
DEFAULT_WINDOW = timedelta(seconds=300)
DEFAULT_MAX_BODY = 65536  # an Alertmanager group of a few dozen alerts
DEFAULT_WORKERS = 16
DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_BODY_TIMEOUT = 10.0
MAX_ALERTS = 100
MIN_KEY_BYTES = 16
_SIGNATURE = re.compile(r"^sha256=([0-9a-f]{64})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,10}$")  # [0-9], never \d or str.isdigit: those accept non-ASCII digits
_TOKEN_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # webhook-id, Idempotency-Key: visible ASCII
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")
_SINGLE = (TIMESTAMP_HEADER, SIGNATURE_HEADER, SW_ID_HEADER, SW_TIMESTAMP_HEADER, SW_SIGNATURE_HEADER,
           AUTHORIZATION_HEADER, IDEMPOTENCY_HEADER, "Content-Type", "Host")

Outcome = Literal["ok", "missing", "malformed", "bad-signature", "stale", "future", "replay"]
Scheme = Literal["hmac", "standard", "bearer"]


class WebhookKeyError(ChamberlainError):
    """No usable key was configured (the message names where it looked, never the key)."""


@dataclass(frozen=True)
class WebhookKey:
    """The shared HMAC key. ``repr`` hides it, so a key in a traceback's locals or a log line stays hidden."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < MIN_KEY_BYTES:
            raise WebhookKeyError(f"the webhook key is shorter than {MIN_KEY_BYTES} bytes")


@dataclass(frozen=True)
class StandardSecret:
    """A Standard Webhooks signing secret (the bytes behind ``whsec_<base64>``)."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < MIN_KEY_BYTES:
            raise WebhookKeyError(f"the Standard Webhooks secret is shorter than {MIN_KEY_BYTES} bytes")

    @classmethod
    def parse(cls, text: str) -> StandardSecret:
        raw = text.strip().removeprefix("whsec_")
        try:
            return cls(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            raise WebhookKeyError("the Standard Webhooks secret is not whsec_<base64>") from None


@dataclass(frozen=True)
class BearerToken:
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < MIN_KEY_BYTES or not re.fullmatch(rb"[\x21-\x7e]+", self.value):
            raise WebhookKeyError(f"the webhook bearer token must be at least {MIN_KEY_BYTES} visible ASCII "
                                  "characters")


@dataclass(frozen=True)
class WebhookKeys:
    """The secrets of the schemes this endpoint accepts (a scheme without its secret is refused)."""

    hmac: WebhookKey | None = None
    standard: StandardSecret | None = None
    bearer: BearerToken | None = None

    def __post_init__(self) -> None:
        if self.hmac is None and self.standard is None and self.bearer is None:
            raise WebhookKeyError("the webhook needs at least one key (HMAC, Standard Webhooks or bearer)")

    @property
    def schemes(self) -> list[str]:
        return [n for n, v in (("hmac", self.hmac), ("standard", self.standard), ("bearer", self.bearer)) if v]


def _read(file: Path, what: str) -> bytes:
    try:
        return file.read_bytes().strip()  # a trailing newline from `echo > file` is not part of the key
    except OSError as exc:
        raise WebhookKeyError(f"cannot read the {what} file {file} ({type(exc).__name__})") from None


def load_key(path: Path | None, env: Mapping[str, str]) -> WebhookKey:
    """The HMAC key from ``path``, else from the file named by ``CHAMBERLAIN_WEBHOOK_KEY_FILE`` in ``env``, else from
    ``CHAMBERLAIN_WEBHOOK_KEY`` in ``env`` (the CLI passes its process environment). Never from the command line:
    argv is visible to every user via ``ps``."""
    file = path or (Path(env[KEY_FILE_ENV]) if env.get(KEY_FILE_ENV) else None)
    if file is not None:
        return WebhookKey(_read(file, "webhook key"))
    if env.get(KEY_ENV):
        return WebhookKey(env[KEY_ENV].strip().encode())
    raise WebhookKeyError(f"no webhook key: set {KEY_FILE_ENV} (preferred) or {KEY_ENV}")


def load_keys(hmac_file: Path | None, standard_file: Path | None, bearer_file: Path | None,
              env: Mapping[str, str]) -> WebhookKeys:
    """Every configured scheme's secret, each from its file (or the file its variable names; the HMAC key may also
    be ``CHAMBERLAIN_WEBHOOK_KEY``). At least one must be configured."""
    key: WebhookKey | None = None
    if hmac_file or env.get(KEY_FILE_ENV) or env.get(KEY_ENV):
        key = load_key(hmac_file, env)
    std_file = standard_file or (Path(env[STANDARD_FILE_ENV]) if env.get(STANDARD_FILE_ENV) else None)
    bearer = bearer_file or (Path(env[BEARER_FILE_ENV]) if env.get(BEARER_FILE_ENV) else None)
    standard = StandardSecret.parse(_read(std_file, "Standard Webhooks secret").decode("ascii", "replace")) \
        if std_file else None
    token = BearerToken(_read(bearer, "webhook bearer token")) if bearer else None
    if key is None and standard is None and token is None:
        raise WebhookKeyError(f"no webhook key: pass --webhook-key-file, --webhook-standard-secret-file or "
                              f"--webhook-bearer-token-file (or set {KEY_FILE_ENV}, {STANDARD_FILE_ENV}, "
                              f"{BEARER_FILE_ENV})")
    return WebhookKeys(key, standard, token)


def _mac(key: WebhookKey, timestamp: str, body: bytes) -> str:
    return hmac.new(key.value, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, key: WebhookKey, now: datetime) -> dict[str, str]:
    """The chamberlain HMAC headers a sender adds to ``body`` (for tests, docs and scripted senders)."""
    timestamp = str(int(now.timestamp()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: f"sha256={_mac(key, timestamp, body)}"}


def _standard_mac(secret: StandardSecret, msg_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.value, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_standard(body: bytes, secret: StandardSecret, msg_id: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` (what a Standard Webhooks library sends)."""
    timestamp = str(int(now.timestamp()))
    return {SW_ID_HEADER: msg_id, SW_TIMESTAMP_HEADER: timestamp,
            SW_SIGNATURE_HEADER: f"v1,{_standard_mac(secret, msg_id, timestamp, body)}"}


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    replay_key: str | None = None  # set when authentic: the request's replay id
    expires_at: datetime | None = None
    scheme: Scheme | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive; plain dicts in tests are not.
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _fresh(timestamp: str, now: datetime, window: timedelta) -> Outcome:
    sent = datetime.fromtimestamp(int(timestamp), tz=UTC)
    if sent < now - window:
        return "stale"
    if sent > now + window:
        return "future"
    return "ok"


def verify(
    headers: Mapping[str, str],
    body: bytes,
    key: WebhookKey,
    now: datetime,
    seen: Container[str] = (),
    window: timedelta = DEFAULT_WINDOW,
) -> Verdict:
    """Is this an authentic, fresh, first-seen chamberlain-HMAC request? Pure: ``seen`` is only read (the caller
    persists the replay id create-only). The signature is checked before freshness and replay, so nothing about
    the replay record is revealed to a sender without the key."""
    timestamp, signature = _header(headers, TIMESTAMP_HEADER), _header(headers, SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        return Verdict("missing")
    timestamp, signature = timestamp.strip(), signature.strip().lower()
    match = _SIGNATURE.fullmatch(signature)
    if not _TIMESTAMP.fullmatch(timestamp) or match is None:
        return Verdict("malformed")
    if not hmac.compare_digest(match.group(1), _mac(key, timestamp, body)):  # constant time
        return Verdict("bad-signature")
    fresh = _fresh(timestamp, now, window)
    if fresh != "ok":
        return Verdict(fresh)
    replay_key = match.group(1)
    if replay_key in seen:
        return Verdict("replay")
    return Verdict("ok", replay_key, datetime.fromtimestamp(int(timestamp), tz=UTC) + window, "hmac")


def verify_standard(headers: Mapping[str, str], body: bytes, secret: StandardSecret, now: datetime,
                    window: timedelta = DEFAULT_WINDOW) -> Verdict:
    """A Standard Webhooks request: signature (any of the listed ``v1`` ones) over id, timestamp and body, then
    the timestamp tolerance. The replay id is ``webhook-id``."""
    msg_id, timestamp = _header(headers, SW_ID_HEADER), _header(headers, SW_TIMESTAMP_HEADER)
    signatures = _header(headers, SW_SIGNATURE_HEADER)
    if msg_id is None or timestamp is None or signatures is None:
        return Verdict("missing")
    msg_id, timestamp = msg_id.strip(), timestamp.strip()
    if not _TOKEN_ID.fullmatch(msg_id) or not _TIMESTAMP.fullmatch(timestamp):
        return Verdict("malformed")
    given = [s.removeprefix("v1,") for s in signatures.split(" ")[:8] if s.startswith("v1,")]
    if not given:
        return Verdict("malformed")
    expected = _standard_mac(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(g.encode(), expected.encode()) for g in given):
        return Verdict("bad-signature")
    fresh = _fresh(timestamp, now, window)
    if fresh != "ok":
        return Verdict(fresh)
    return Verdict("ok", msg_id, datetime.fromtimestamp(int(timestamp), tz=UTC) + window, "standard")


def verify_bearer(headers: Mapping[str, str], token: BearerToken) -> Verdict:
    """A bearer request: the token, compared in constant time. Its replay id comes from the idempotency key."""
    value = _header(headers, AUTHORIZATION_HEADER)
    if value is None:
        return Verdict("missing")
    scheme, _, given = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Verdict("malformed")
    if not hmac.compare_digest(given.strip().encode("latin-1", "replace"), token.value):
        return Verdict("bad-signature")
    return Verdict("ok", None, None, "bearer")


def authenticate(headers: Mapping[str, str], body: bytes, keys: WebhookKeys, now: datetime,
                 window: timedelta = DEFAULT_WINDOW) -> Verdict:
    """The verdict of the one scheme the request uses: its headers say which; a request carrying the headers of
    two schemes, or of a scheme this endpoint has no secret for, is refused."""
    present = [s for s, h in (("hmac", SIGNATURE_HEADER), ("standard", SW_SIGNATURE_HEADER),
                              ("bearer", AUTHORIZATION_HEADER)) if _header(headers, h) is not None]
    if len(present) != 1:
        return Verdict("missing" if not present else "malformed")
    if present[0] == "hmac" and keys.hmac is not None:
        return verify(headers, body, keys.hmac, now, (), window)
    if present[0] == "standard" and keys.standard is not None:
        return verify_standard(headers, body, keys.standard, now, window)
    if present[0] == "bearer" and keys.bearer is not None:
        return verify_bearer(headers, keys.bearer)
    return Verdict("missing")


# --------------------------------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class Wanted:
    """One rotation a body asks for: the secret, why, and the sender's idempotency key (if any)."""

    secret: str
    reason: str
    key: str | None = None


class BodyError(ValueError):
    """A body that is authentic but unusable; the message is fit for the answer (no body content)."""


def _alert_key(group_key: str, alert: Mapping[str, Any]) -> str:
    """One firing of one alert: Alertmanager repeats a notification (repeat_interval, other alerts of the group
    changing) with the same group key, fingerprint and startsAt; a new firing has a new startsAt."""
    who = alert.get("fingerprint") or json.dumps(alert.get("labels") or {}, sort_keys=True)
    material = "\0".join((group_key, str(who), str(alert.get("startsAt", ""))))
    return "am-" + hashlib.sha256(material.encode()).hexdigest()[:32]


def parse_body(body: bytes) -> list[Wanted]:
    """What an authenticated body asks for: chamberlain's ``{"secret", "reason", "id"}``, or an Alertmanager
    payload (one request per firing alert carrying ``chamberlain_secret``). Raises :class:`BodyError`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BodyError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise BodyError("body must be a JSON object")
    if "alerts" in doc and "groupKey" in doc:
        return _alertmanager(doc)
    if not isinstance(doc.get("secret"), str):
        raise BodyError("body needs a string field 'secret'")
    reason, given_id = doc.get("reason", ""), doc.get("id")
    if not isinstance(reason, str) or (given_id is not None and not isinstance(given_id, str)):
        raise BodyError("'reason' and 'id' must be strings")
    if given_id is not None and not _TOKEN_ID.fullmatch(given_id):
        raise BodyError("'id' must be 1-256 visible ASCII characters")
    return [Wanted(doc["secret"], reason or "webhook", given_id or None)]


def _alertmanager(doc: Mapping[str, Any]) -> list[Wanted]:
    alerts, group_key, common = doc.get("alerts"), doc.get("groupKey"), doc.get("commonLabels") or {}
    if not isinstance(alerts, list) or not isinstance(group_key, str) or not isinstance(common, dict):
        raise BodyError("Alertmanager payload: 'alerts' must be a list and 'groupKey' a string")
    if len(alerts) > MAX_ALERTS:
        raise BodyError(f"Alertmanager payload: more than {MAX_ALERTS} alerts")
    wanted: dict[str, Wanted] = {}
    for alert in alerts:
        if not isinstance(alert, dict) or alert.get("status") != "firing":
            continue  # resolved alerts ask for nothing
        labels: dict[str, Any] = alert["labels"] if isinstance(alert.get("labels"), dict) else {}
        notes: dict[str, Any] = alert["annotations"] if isinstance(alert.get("annotations"), dict) else {}
        secret = labels.get(ALERT_LABEL, common.get(ALERT_LABEL))
        if not isinstance(secret, str):
            continue
        reason = notes.get("summary") or labels.get("alertname") or "alert"
        wanted.setdefault(secret, Wanted(secret, f"alert: {reason}" if isinstance(reason, str) else "alert",
                                         _alert_key(group_key, alert)))
    if not wanted:
        raise BodyError(f"Alertmanager payload: no firing alert carries the label {ALERT_LABEL}")
    return list(wanted.values())


# --------------------------------------------------------------------------------------------------- the handler


class ReplayCacheFull(ChamberlainError):
    retryable = True


class ReplayCache:
    """Replay ids seen recently in one process, each kept until its timestamp leaves the window. Bounded: when full
    of live entries it refuses new ones (evicting a live id would reopen it to replay). Thread-safe. The endpoint
    itself persists replay ids in a :class:`~.store.RequestStore`; this cache is for single-process senders."""

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
    headers: Mapping[str, str] = field(default_factory=dict)


Admit = Callable[[str], datetime | None]  # the secret -> when a trigger is allowed again (None: now)
UNAUTHORIZED = Answer(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"})


class WebhookHandler:
    """Everything the endpoint does after the HTTP framing, without sockets (the server just calls it):
    authenticate, parse, check the secret and the rate limit, persist create-only, then :meth:`deliver`."""

    def __init__(
        self,
        key: WebhookKey | WebhookKeys,
        queue: RequestQueue | None,
        known: Callable[[str], bool],
        clock: Clock,
        window: timedelta = DEFAULT_WINDOW,
        *,
        store: RequestStore | None = None,
        path_of: Callable[[str], str] | None = None,
        admit: Admit | None = None,
    ) -> None:
        self._keys = key if isinstance(key, WebhookKeys) else WebhookKeys(hmac=key)
        self._queue = queue
        self._known = known
        self._clock = clock
        self._window = window
        self._store: RequestStore = store if store is not None else MemoryStore()
        self._path_of = path_of or (lambda secret: secret)
        self._admit = admit

    def deliver(self, request: RotationRequest) -> str:
        """After the request is persisted: queue it here (a controller's follower only persists it)."""
        return self._queue.put(request) if self._queue is not None else "persisted"

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        now = self._clock.now()
        verdict = authenticate(headers, body, self._keys, now, self._window)
        if not verdict.ok or verdict.scheme is None:
            log.warning("webhook: rejected request (%s)", verdict.outcome)
            return UNAUTHORIZED
        try:
            wanted = parse_body(body)
        except BodyError as exc:
            return Answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        header_key = _header(headers, IDEMPOTENCY_HEADER)
        if header_key is not None and not _TOKEN_ID.fullmatch(header_key.strip()):
            return Answer(HTTPStatus.BAD_REQUEST, {"error": f"{IDEMPOTENCY_HEADER} must be visible ASCII"})
        answers = [self._one(verdict, w, header_key.strip() if header_key else None, now) for w in wanted]
        if len(answers) == 1:
            return answers[0]
        results = [a.body for a in answers]
        ok = [a for a in answers if a.status in (HTTPStatus.OK, HTTPStatus.ACCEPTED)]
        return Answer(ok[0].status if ok else answers[0].status, {"results": results})

    def _replay_id(self, verdict: Verdict, wanted: Wanted, header_key: str | None) -> tuple[str, bool] | None:
        """The request's replay id, and whether it is the sender's idempotency key (a retry with it is answered
        as a duplicate) rather than the signature itself (a byte-for-byte replay, answered 401).

        A signed request's replay id comes only from what its signature covers (the body's ``id``, an alert's
        derived key, ``webhook-id``, the MAC): an ``Idempotency-Key`` header is not signed, so a replayed request
        with a new one would otherwise pass as new. A bearer request signs nothing; its key is the header's."""
        if verdict.scheme == "bearer":
            chosen = header_key or wanted.key
            return (f"{chosen}\0{wanted.secret}", True) if chosen else None
        if wanted.key:
            return f"{wanted.key}\0{wanted.secret}", True
        if verdict.scheme == "standard":  # webhook-id is the sender's idempotency key by that standard
            return f"{verdict.replay_key}\0{wanted.secret}", True
        return f"{verdict.replay_key}\0{wanted.secret}", False

    def _limit(self, secret: str) -> datetime | None:
        """When ``secret`` may be triggered again. When the authority that knows cannot be reached, the request is
        accepted unchecked: it is persisted in the cluster and runs once the authority is back, and every request
        for one secret accepted meanwhile merges into that one run (a refusal would lose a leak report)."""
        if self._admit is None:
            return None
        try:
            return self._admit(secret)
        except ChamberlainError as exc:
            if not exc.retryable:
                raise
            log.warning("webhook: rate limit unchecked, the authority is unavailable (%s)", type(exc).__name__)
            return None

    def _one(self, verdict: Verdict, wanted: Wanted, header_key: str | None, now: datetime) -> Answer:
        secret = wanted.secret
        replay = self._replay_id(verdict, wanted, header_key)
        if replay is None:
            return Answer(HTTPStatus.BAD_REQUEST, {"error": f"a bearer request needs an {IDEMPOTENCY_HEADER} "
                                                            "header (or an Alertmanager payload)"})
        if not self._known(secret):
            return Answer(HTTPStatus.NOT_FOUND, {"error": "unknown secret"})
        scheme = "key" if replay[1] else str(verdict.scheme)
        try:
            request = RotationRequest(secret=secret, kind="webhook", reason=sanitize_reason(wanted.reason),
                                      requested_at=now, request_id=object_name(scheme, replay[0]))
        except RequestError:
            return Answer(HTTPStatus.BAD_REQUEST, {"error": "malformed secret name"})
        later: datetime | None = None
        try:
            # A request already persisted is a retry or a replay whatever the rate limit says; then the limit;
            # then the create-only write, which alone decides a race between two replicas.
            accepted = not self._store.exists(request.request_id)
            if accepted:
                later = self._limit(secret)
                limited = later is not None and later > now
                accepted = not limited and self._store.accept(request, self._path_of(secret))
        except ChamberlainError as exc:  # the authority or the API server cannot answer now: the sender retries
            log.warning("webhook: cannot accept now (%s)", type(exc).__name__)
            return Answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "cannot accept now, retry later"},
                          {"Retry-After": "5"})
        if later is not None and later > now:
            wait = max(1, int((later - now).total_seconds()) + 1)
            log.warning("webhook: rate limited", extra={"secret": secret})
            return Answer(HTTPStatus.TOO_MANY_REQUESTS,
                          {"secret": secret, "error": f"rate limited: {secret} was rotated or triggered too "
                                                      f"recently; allowed again at {rfc3339(later)}"},
                          {"Retry-After": str(wait)})
        if not accepted:
            if not replay[1]:
                log.warning("webhook: rejected request (replay)")
                return UNAUTHORIZED
            return Answer(HTTPStatus.OK, {"secret": secret, "request": request.request_id, "outcome": "duplicate"})
        outcome = self.deliver(request)
        if outcome == "duplicate":
            # This very request was persisted above, so it is new to the sender: the leader's poll of persisted
            # requests queued it between the write and here (a race seen under load), not an earlier delivery.
            outcome = "queued"
        log.info("webhook: %s rotation request", outcome, extra={"secret": secret, "request_id": request.request_id})
        status = HTTPStatus.ACCEPTED if outcome == "persisted" else HTTPStatus.OK
        return Answer(status, {"secret": secret, "request": request.request_id, "outcome": outcome})



# --------------------------------------------------------------------------------------------------- the server


class _DeadlineSocket(io.RawIOBase):
    """The connection's reads, each allowed only the time left until the handler's current deadline: a client
    sending one byte every few seconds still runs out of time (a per-read timeout alone would never fire)."""

    def __init__(self, sock: socket.socket, owner: _Http) -> None:
        super().__init__()
        self._sock = sock
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._owner.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("webhook: client too slow")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Http(BaseHTTPRequestHandler):
    server: WebhookServer
    server_version = "chamberlain-webhook"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    deadline = 0.0

    def setup(self) -> None:
        self.deadline = time.monotonic() + self.server.header_timeout
        super().setup()
        self.rfile = io.BufferedReader(_DeadlineSocket(self.connection, self), 8192)

    def _answer(self, status: HTTPStatus, body: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")  # one request per connection: a slot is never held idle
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _strict_length(self) -> int:
        """The body's length from strictly parsed headers, or :class:`_Refused`."""
        for name, value in self.headers.items():
            if not _HEADER_VALUE.fullmatch(value):
                raise _Refused(HTTPStatus.BAD_REQUEST, f"header {name[:40]} has a non-ASCII or control character")
        for name in _SINGLE:
            if len(self.headers.get_all(name) or []) > 1:
                raise _Refused(HTTPStatus.BAD_REQUEST, f"header {name} given more than once")
        if self.headers.get_all("Transfer-Encoding"):
            raise _Refused(HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not accepted; send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if len(lengths) > 1:
            raise _Refused(HTTPStatus.BAD_REQUEST, "Content-Length given more than once")
        if not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            raise _Refused(HTTPStatus.BAD_REQUEST, "Content-Length is not a decimal number")
        length = int(lengths[0].strip())
        if length > self.server.max_body:  # refused before reading: a large body costs us nothing
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        return length

    def do_POST(self) -> None:  # the http.server naming scheme
        self.deadline = time.monotonic() + self.server.body_timeout
        try:
            if self.path != PATH:
                raise _Refused(HTTPStatus.NOT_FOUND, "no such endpoint")
            length = self._strict_length()
            try:
                body = self.rfile.read(length)
            except (TimeoutError, OSError):
                raise _Refused(HTTPStatus.REQUEST_TIMEOUT, "body not received in time") from None
            if len(body) != length:
                raise _Refused(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
        except _Refused as refused:
            self._answer(refused.status, {"error": str(refused)})
            return
        answer = self.server.handler.handle({k: v for k, v in self.headers.items()}, body)
        self._answer(answer.status, answer.body, answer.headers)

    def _not_allowed(self) -> None:
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only POST"}, {"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        # The default writes to stderr; the request line holds no secret, but headers do — log the line only.
        log.debug("webhook: %s", format % args)


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 31\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\n{\"error\": \"busy, retry later\"}\n")


class WebhookServer(HTTPServer):
    """The endpoint on a bounded HTTP server: at most ``workers`` connections in service (each on its own thread,
    with header and body deadlines); a connection beyond that is answered 503 by the accepting thread without
    reading anything. Terminate TLS in front of it (a Service mesh or ingress); the schemes authenticate the
    sender either way. ``serve_forever()`` on a thread, ``shutdown()`` to stop."""

    def __init__(self, address: tuple[str, int], handler: WebhookHandler, max_body: int = DEFAULT_MAX_BODY, *,
                 workers: int = DEFAULT_WORKERS, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        if workers < 1:
            raise ValueError("the webhook needs at least one worker")
        self.handler = handler
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.busy_refusals = 0
        self._slots = threading.BoundedSemaphore(workers)
        self._active = 0
        self._lock = threading.Lock()
        super().__init__(address, _Http)

    @property
    def active(self) -> int:
        """Connections in service now."""
        with self._lock:
            return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.busy_refusals += 1
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._lock:
            self._active += 1
        threading.Thread(target=self._serve_one, args=(request, client_address), name="chamberlain-webhook-conn",
                         daemon=True).start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:  # one connection's failure is that connection's: logged by type, never content
            log.warning("webhook: connection failed (%s)", type(exc).__name__)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._active -= 1
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("webhook: connection failed")  # the default prints a traceback to stderr

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        return f"http://{host!s}:{port}{PATH}"


__all__ = [
    "ALERT_LABEL",
    "DEFAULT_WINDOW",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Answer",
    "BearerToken",
    "BodyError",
    "ReplayCache",
    "ReplayCacheFull",
    "StandardSecret",
    "Verdict",
    "Wanted",
    "WebhookHandler",
    "WebhookKey",
    "WebhookKeyError",
    "WebhookKeys",
    "WebhookServer",
    "authenticate",
    "load_key",
    "load_keys",
    "parse_body",
    "sign",
    "sign_standard",
    "verify",
    "verify_bearer",
    "verify_standard",
]
