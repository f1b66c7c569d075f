"""The rotation request every trigger produces, and the queue the durable workflow consumes.

Belongs here: :class:`RotationRequest` (a value: which secret, which kind of trigger, why, when, and an idempotency
key), reason sanitizing, the :class:`RequestQueue` protocol and :class:`MemoryQueue`, its thread-safe in-memory
implementation. Not here: deciding *whether* to rotate (the triggers and ``rotation.policy``) or rotating (the
workflow). A trigger only *marks* a secret by putting a request here; another component *acts* (SPEC §4, STYLE).

De-duplication: at most one request per secret is pending. A later request for a pending secret merges into it
(its reason is appended, its key remembered), so a burst of signals — a webhook retry, the annotation seen on every
poll, the timer on every tick — becomes one rotation. A request whose idempotency key is already pending or in
flight is dropped; a *new* signal arriving while the secret's run is in flight stays pending for the next run.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

TriggerKind = Literal["time", "webhook", "annotation", "manual", "policy-change"]
TRIGGER_KINDS: tuple[TriggerKind, ...] = ("time", "webhook", "annotation", "manual", "policy-change")
Enqueued = Literal["queued", "merged", "duplicate"]

MAX_REASON_CHARS = 200
MAX_REQUEST_ID_CHARS = 128
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # an intent name: a DNS-1123 label
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]*$")


class RequestError(ValueError):
    """A request that cannot be queued (bad secret name, kind or id). Messages never carry the reason text."""


def sanitize_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """A reason fit for logs, ledger entries and annotations: printable, one line, whitespace collapsed, at most
    ``limit`` characters. Reasons come from outside (webhook bodies, annotations, the CLI), so control characters
    (log injection, terminal escapes) are replaced rather than trusted."""
    cleaned = "".join(
        " " if unicodedata.category(ch)[0] in ("C", "Z") else ch  # control, format, separators -> space
        for ch in unicodedata.normalize("NFC", text)
    )
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned or "unspecified"


@dataclass(frozen=True)
class RotationRequest:
    """One request to rotate one secret. ``request_id`` is the idempotency key: the same signal seen twice (a
    retried webhook, the timer ticking twice in one window) carries the same key."""

    secret: str
    kind: TriggerKind
    reason: str
    requested_at: datetime
    request_id: str
    merged: tuple[str, ...] = field(default=())  # keys of requests folded into this one, oldest first
    # The run id a start used when the authority did not answer it (the lease write may have been applied): the
    # retried start must use it again, or it finds "another" run holding the lease and rotates twice. ``run_keys``:
    # the keys that start was for; a signal merged in after it gets a run of its own (:meth:`split_after_run`).
    run_id: str = ""
    run_keys: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not _SECRET_NAME.fullmatch(self.secret):
            raise RequestError("rotation request: the secret name is not a DNS-1123 label")
        if self.kind not in TRIGGER_KINDS:
            raise RequestError(f"rotation request for {self.secret}: unknown trigger kind")
        if self.requested_at.tzinfo is None:
            raise RequestError(f"rotation request for {self.secret}: requested_at needs a timezone")
        if len(self.request_id) > MAX_REQUEST_ID_CHARS or not _REQUEST_ID.fullmatch(self.request_id):
            raise RequestError(f"rotation request for {self.secret}: malformed request id")
        # Normalized here so no producer can skip it.
        object.__setattr__(self, "reason", sanitize_reason(self.reason))

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.request_id, *self.merged)

    def merge(self, later: RotationRequest) -> RotationRequest:
        """This request with ``later`` folded in: first kind, time and id kept; reasons joined (each once)."""
        if later.secret != self.secret:
            raise RequestError("rotation request: cannot merge requests for different secrets")
        reasons = [r for r in self.reason.split("; ")]
        for part in later.reason.split("; "):
            if part not in reasons:
                reasons.append(part)
        extra = tuple(k for k in later.keys if k not in self.keys)
        # The run id stays this request's: a later request (``later``) never joins a run started before it came.
        return replace(self, reason="; ".join(reasons), merged=self.merged + extra)

    def unanswered(self, run_id: str) -> RotationRequest:
        """This request, back in line after its start of ``run_id`` went unanswered (kept from the first try)."""
        return self if self.run_id else replace(self, run_id=run_id, run_keys=self.keys)

    def split_after_run(self) -> tuple[RotationRequest, RotationRequest | None]:
        """This request as its unanswered start covered it, and the signals merged in since (None: none), which
        ask for a run of their own: that run may already have made its new value before they came."""
        later = tuple(k for k in self.keys if k not in self.run_keys)
        if not later:
            return self, None
        covered = replace(self, merged=tuple(k for k in self.merged if k in self.run_keys))
        follow = replace(self, request_id=later[0], merged=later[1:], run_id="", run_keys=())
        return covered, follow


class RequestQueue(Protocol):
    """Where triggers put requests and the durable workflow takes them."""

    def put(self, request: RotationRequest) -> Enqueued:
        """Queue (or merge, or drop as a duplicate); never blocks."""
        ...

    def take(self, timeout: float | None = None) -> RotationRequest | None:
        """The oldest pending request, now in flight; None when none arrived within ``timeout`` seconds."""
        ...

    def done(self, secret: str) -> None:
        """The run for ``secret`` ended (whatever its result): its keys are forgotten, a later signal queues anew."""
        ...

    def pending(self) -> list[RotationRequest]:
        """A snapshot of the pending requests, oldest first."""
        ...


class MemoryQueue:
    """A thread-safe in-memory :class:`RequestQueue`: triggers run on their own threads (webhook handlers, the
    ticker, the annotation poller), the workflow on another. Not durable: the controller's timer and the annotation
    re-detect after a restart, and a webhook sender retries on failure."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: OrderedDict[str, RotationRequest] = OrderedDict()
        self._in_flight: dict[str, RotationRequest] = {}

    def put(self, request: RotationRequest) -> Enqueued:
        with self._cond:
            flying = self._in_flight.get(request.secret)
            if flying is not None and request.request_id in flying.keys:
                return "duplicate"
            current = self._pending.get(request.secret)
            if current is None:
                self._pending[request.secret] = request
                self._cond.notify()
                return "queued"
            if request.request_id in current.keys:
                return "duplicate"
            self._pending[request.secret] = current.merge(request)  # keeps its place in line
            return "merged"

    def take(self, timeout: float | None = None) -> RotationRequest | None:
        with self._cond:
            # A secret whose run is still in flight waits: one secret never has two concurrent runs.
            def ready() -> str | None:
                return next((s for s in self._pending if s not in self._in_flight), None)

            if not self._cond.wait_for(lambda: ready() is not None, timeout=timeout):
                return None
            secret = ready()
            if secret is None:  # cannot happen: wait_for returned True under the same lock
                return None
            request = self._pending.pop(secret)
            self._in_flight[secret] = request
            return request

    def done(self, secret: str) -> None:
        with self._cond:
            self._in_flight.pop(secret, None)
            self._cond.notify_all()

    def pending(self) -> list[RotationRequest]:
        with self._cond:
            return list(self._pending.values())

    def in_flight(self) -> list[RotationRequest]:
        with self._cond:
            return list(self._in_flight.values())
