"""The time trigger: which secrets entered their rotation window, and a ticker that asks periodically.

Belongs here: :func:`evaluate`, a pure function over each secret's policy in force, last rotation and an injected
``now`` (the decision itself is :func:`chamberlain.rotation.policy.due`), and :class:`Ticker`, the small loop the
controller runs. Not here: reading the schedules from Vault (the caller passes a ``load`` function) or rotating.

The request id is ``time:<secret>:<renewal time>``. It stays the same for every tick inside one window, so the
queue folds repeated ticks into one request; once the workflow records the rotation, the renewal time moves and the
next window gets a new id — a short-ttl secret is requested exactly once per window.

A secret whose last runs failed keeps its renewal time (nothing was rotated), so it would be due again at every
evaluation — a new run, ledger entry and alert each time. With a :class:`~chamberlain.rotation.policy.FailureBackoff`
:func:`evaluate` skips it until the back-off after its failure streak has passed (exponential, jittered, capped).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from chamberlain.clock import Clock
from chamberlain.intent.model import RotationPolicySpec
from chamberlain.rotation.policy import Decision, FailureBackoff, due, failure_backoff, jitter_of
from chamberlain.triggers.request import RequestQueue, RotationRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)  # one per secret the timer reads
class SecretSchedule:
    """What the timer needs to know about one secret: its policy in force and when it last rotated."""

    name: str
    policy: RotationPolicySpec | None
    last_rotated: datetime
    held: bool = False
    failures: int = 0  # consecutive failed runs (0 after a success)
    last_failure: datetime | None = None  # when the last of them ended


def backoff_of(s: SecretSchedule, now: datetime, backoff: FailureBackoff | None) -> Decision | None:
    """The failure back-off decision of ``s`` (None: no back-off configured, or no failure streak)."""
    if backoff is None or s.failures <= 0:
        return None
    return failure_backoff(s.failures, s.last_failure, now, backoff, jitter_of(s.name, s.failures))


def time_due(s: SecretSchedule, now: datetime, backoff: FailureBackoff | None = None) -> Decision:
    """Whether the time trigger rotates ``s`` now: its policy window (:func:`due`), unless a failure streak's
    back-off has not passed yet (then ``due`` False, reason ``backing-off``, ``next_due`` the retry time)."""
    decision = due(s.policy, s.last_rotated, now, held=s.held)
    if not decision.due:
        return decision
    waiting = backoff_of(s, now, backoff)
    if waiting is not None and not waiting.due:
        return waiting
    return decision


def evaluate(secrets: Iterable[SecretSchedule], now: datetime,
             backoff: FailureBackoff | None = None) -> list[RotationRequest]:
    """A request for each secret that is due at ``now``; held, static and event-based secrets never are, nor
    (with ``backoff``) one whose failure streak's back-off has not passed."""
    requests = []
    for s in secrets:
        decision = time_due(s, now, backoff)
        if not decision.due or decision.next_due is None:
            continue
        requests.append(
            RotationRequest(
                secret=s.name,
                kind="time",
                reason=decision.reason,
                requested_at=now,
                request_id=f"time:{s.name}:{decision.next_due.isoformat()}",
            )
        )
    return requests


class Ticker:
    """Calls :func:`evaluate` every ``interval`` seconds and queues what is due.

    ``load`` returns the current schedules (read from the policy in force); ``clock`` and ``wait`` are injected so
    tests drive time. ``wait(seconds)`` returns True when the ticker should stop — by default the wait on the
    ticker's own stop event, so :meth:`stop` interrupts a sleep at once (graceful shutdown).
    """

    def __init__(
        self,
        load: Callable[[], Iterable[SecretSchedule]],
        queue: RequestQueue,
        clock: Clock,
        interval: float = 60.0,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("ticker interval must be positive")
        self._load = load
        self._queue = queue
        self._clock = clock
        self._interval = interval
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait

    def tick(self) -> list[RotationRequest]:
        """One evaluation; returns the requests that were newly queued (merged and duplicate ones are not)."""
        queued = []
        for request in evaluate(self._load(), self._clock.now()):
            if self._queue.put(request) == "queued":
                queued.append(request)
                log.info("time trigger queued a rotation", extra={"secret": request.secret,
                                                                 "request_id": request.request_id})
        return queued

    def run(self) -> None:
        """Tick until stopped. A failing load (Vault down) skips one tick: timers pause, they do not crash."""
        while not self._stopped.is_set():
            try:
                self.tick()
            except Exception as exc:  # the loop must survive a transient authority outage
                log.warning("time trigger: evaluation failed (%s); retrying next tick", type(exc).__name__)
            if self._wait(self._interval):
                break

    def stop(self) -> None:
        self._stopped.set()
