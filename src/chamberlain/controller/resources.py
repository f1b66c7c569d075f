"""RotationRun custom resources: the Kubernetes face of a run record, and Events for runs that need a human.

The run record in Vault stays the source of truth (it is the per-secret lease and what a resumed run reads);
the ``RotationRun`` object mirrors it so ``kubectl get rotationruns`` shows what happens, with Kubernetes-style
conditions. Publishing is best effort: an API server outage never fails or blocks a rotation — the next change of
the run publishes the whole status again. A condition's ``lastTransitionTime`` changes only when its status does:
the publisher remembers the conditions it last published per run (read back from the object when a run was
published before this process started).

The running controller publishes through :class:`BackgroundPublisher`: the loop and its workers hand it each new
state of a run and go on; background threads send the newest state of each run (a slow API server skips the
states in between, never the last one), one send at a time per run, so a run's object never goes backwards.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chamberlain import wellknown as wk
from chamberlain.intent.model import GROUP, ROTATION_RUN_KIND, ROTATION_RUNS, VERSION
from chamberlain.kube.api import (
    CustomResource,
    KubeConflict,
    KubeCustomObjects,
    KubeError,
    KubeNotFound,
    KubeRunObjects,
)
from chamberlain.rotation.run import RotationRun

PLURAL, KIND = ROTATION_RUNS, ROTATION_RUN_KIND
RUN_OBJECTS = CustomResource(GROUP, VERSION, PLURAL)


def manifest(run: RotationRun, namespace: str) -> dict[str, Any]:
    """The RotationRun object of ``run`` (spec only; status goes through the status subresource)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": run.run_id, "namespace": namespace, "labels": {wk.LABEL_SECRET: run.secret}},
        "spec": {"secret": run.secret, "path": run.vault.full, "trigger": run.trigger, "reason": run.reason,
                 "mode": run.mode},
    }


def involved(run: RotationRun, namespace: str) -> dict[str, str]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": run.run_id, "namespace": namespace}


class RunObjectsKube(KubeRunObjects, KubeCustomObjects, Protocol):
    """What the publisher needs: create and patch RotationRuns, Events, and read one back after a restart."""


@dataclass
class RunPublisher:
    """Mirrors runs into RotationRun objects. Called from the controller's worker threads (one run per call): the
    lock guards what it remembers of each run and the failure count."""

    kube: RunObjectsKube
    namespace: str
    failures: int = 0
    _published: dict[str, RotationRun] = field(default_factory=dict)  # what the API server has, per run id
    _conditions: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # the conditions it has
    _shown: set[str] = field(default_factory=set)  # objects :meth:`show` created (or found), status not set yet
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, run: RotationRun) -> bool:
        """Create the object if needed and set its status; True when the API server has the current status."""
        try:
            self.send(run)
        except KubeError:
            with self._lock:
                self.failures += 1
            return False
        return True

    def send(self, run: RotationRun) -> None:
        """:meth:`publish` without the counting: the API server's refusal is raised (:class:`BackgroundPublisher`
        decides whether to try again)."""
        with self._lock:
            known, previous = self._published.get(run.run_id), self._conditions.get(run.run_id)
            shown = run.run_id in self._shown
        if known == run:
            return
        if known is None and not shown:  # a run this replica has not published yet: most often new, create first
            previous = self._create(run)
        status = run.to_status(previous or ())
        try:
            self._patch(run, status)
        except KubeNotFound:
            with contextlib.suppress(KubeConflict):  # created meanwhile (a retried publish)
                self._create_object(run)
            self._patch(run, status)
        self._remember(run, status["conditions"])

    def show(self, run: RotationRun) -> None:
        """Create the object without its status (one request: the run appears); the next :meth:`send` sets the
        status. Raises the API server's refusal."""
        previous = self._create(run)
        with self._lock:
            self._shown.add(run.run_id)
            if previous is not None:
                self._conditions[run.run_id] = previous

    def _create(self, run: RotationRun) -> list[dict[str, str]] | None:
        """Create the object; when it exists already (a run adopted after a restart, or published by the replica
        that led before), the conditions it carries, so their transition times survive (None: unknown)."""
        try:
            self._create_object(run)
        except KubeConflict:
            with contextlib.suppress(KubeError):  # unreadable: the first publish sets the times
                obj = self.kube.get_custom_object(RUN_OBJECTS, self.namespace, run.run_id)
                conditions = ((obj or {}).get("status") or {}).get("conditions")
                return list(conditions) if isinstance(conditions, list) else None
        return None

    def _create_object(self, run: RotationRun) -> None:
        self.kube.create_custom_object(RUN_OBJECTS, self.namespace, manifest(run, self.namespace))

    def _patch(self, run: RotationRun, status: dict[str, Any]) -> None:
        self.kube.patch_custom_object_status(RUN_OBJECTS, self.namespace, run.run_id, status)

    def _remember(self, run: RotationRun, conditions: list[dict[str, str]]) -> None:
        with self._lock:
            self._shown.discard(run.run_id)
            if run.finished and run.ledger_seq is not None:  # its last publish: forget it
                self._published.pop(run.run_id, None)
                self._conditions.pop(run.run_id, None)
            else:
                self._published[run.run_id] = run
                self._conditions[run.run_id] = conditions

    def count_failure(self) -> None:
        with self._lock:
            self.failures += 1

    def event(self, run: RotationRun, reason: str, message: str, warning: bool = False) -> None:
        try:
            self.kube.create_event(self.namespace, involved(run, self.namespace), reason, message,
                                   "Warning" if warning else "Normal")
        except KubeError:
            with self._lock:
                self.failures += 1


def final(run: RotationRun) -> bool:
    """The last state a run ever has: finished and recorded in the ledger (nobody adopts it again)."""
    return run.finished and run.ledger_seq is not None


class BackgroundPublisher:
    """:class:`RunPublisher` off the loop: :meth:`publish` only notes the run's newest state and returns; ``threads``
    background threads send it (controller-runtime's status writers are asynchronous the same way).

    Why: a batch's runs used to be published at the end of its tick, all at once — 2,000 runs showed no object for
    minutes, then paid a tail of 4,000 requests before the loop could tick again.

    * **Coalescing**: a run has at most one state waiting; a newer one replaces it. A busy API server is sent fewer
      states, never an old one after a newer one.
    * **Order**: one send at a time per run (a state that arrives during a send waits for it).
    * **Priority**: a run's object is created first (without status: one request, the run appears), its final
      state goes first too; the statuses in between are paced (at most one every ``pace`` seconds over all
      threads), so a big batch costs the API server two writes per run (create, final status) plus a bounded rate,
      not one request per step.
    * **Never lost**: a refused send is counted in :attr:`failures` and tried again (backing off from ``retry`` up
      to ``retry_cap`` seconds) unless a newer state replaced it; a refusal that is not transient (forbidden,
      invalid) is given up after ``attempts`` tries and counted in :attr:`dropped`.
    * **Leader loss** (:meth:`forget_unfinished`): the states of unfinished runs are dropped (the next leader adopts
      those runs and publishes them; an older state sent late would overwrite its newer one); final states are still
      sent — only this replica knows them. **Shutdown** (:meth:`close`): what waits is sent for at most ``drain``
      seconds, the rest is counted in :attr:`dropped`.
    """

    background = True

    def __init__(self, publisher: RunPublisher, *, threads: int = 2, pace: float = 1.0, retry: float = 1.0,
                 retry_cap: float = 30.0, attempts: int = 5, drain: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.inner = publisher
        self.pace, self.retry, self.retry_cap, self.attempts, self.drain = pace, retry, retry_cap, attempts, drain
        self.dropped = 0
        self._now = monotonic
        self._cond = threading.Condition()
        self._latest: dict[str, RotationRun] = {}  # the newest state of each run not sent yet
        # Each run id with a state waiting is in exactly one place: a ready queue (``_queued`` says which; an entry
        # whose id moved on is skipped), being sent (``_busy``), or waiting to be tried again (``_delayed``).
        self._urgent: deque[str] = deque()
        self._routine: deque[str] = deque()
        self._queued: dict[str, bool] = {}  # run id -> urgent
        self._busy: dict[str, int] = {}  # run id -> the epoch it was taken in
        self._epoch = 0  # moved on by forget_unfinished
        self._delayed: list[tuple[float, str]] = []  # (monotonic due, run id), a heap
        self._waiting: set[str] = set()  # the ids in _delayed
        self._tries: dict[str, int] = {}  # consecutive refused sends of a run
        self._shown: set[str] = set()  # runs whose object this process published (their next state is routine)
        self._next_routine = 0.0
        self._stop = False
        self._threads = [threading.Thread(target=self._work, name=f"chamberlain-runs-{i}", daemon=True)
                         for i in range(max(threads, 1))]
        for t in self._threads:
            t.start()

    @property
    def failures(self) -> int:
        """Refused sends (each retried unless replaced or given up) and refused Events."""
        return self.inner.failures

    @property
    def pending(self) -> int:
        """Runs with a state not sent yet (being sent included)."""
        with self._cond:
            return len(self._latest.keys() | self._busy.keys())

    def publish(self, run: RotationRun) -> bool:
        """Note ``run``'s newest state for the threads to send; never waits for the API server (True: accepted)."""
        rid = run.run_id
        with self._cond:
            self._latest[rid] = run
            urgent = rid not in self._shown or final(run)
            queued = self._queued.get(rid)
            if rid not in self._busy and rid not in self._waiting and (queued is None or (urgent and not queued)):
                self._enqueue(rid, urgent)  # (a routine entry left behind is skipped when its turn comes)
            self._cond.notify()
        return True

    def event(self, run: RotationRun, reason: str, message: str, warning: bool = False) -> None:
        self.inner.event(run, reason, message, warning)

    def forget_unfinished(self) -> int:
        """Leadership lost: drop the waiting states of unfinished runs (see the class); returns how many."""
        with self._cond:
            gone = [rid for rid, run in self._latest.items() if not final(run)]
            for rid in gone:
                del self._latest[rid]
                self._queued.pop(rid, None)
                self._tries.pop(rid, None)
            self._shown.clear()  # only unfinished runs are in it: if this replica leads again, they are new to it
            self._epoch += 1  # a send in flight now is not tried again unless final
            self._cond.notify_all()
            return len(gone)

    def forget(self, run_id: str) -> None:
        """Drop what waits of one run (another executor took it over: its states are newer than ours)."""
        with self._cond:
            self._latest.pop(run_id, None)
            self._queued.pop(run_id, None)
            self._tries.pop(run_id, None)
            self._shown.discard(run_id)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every state noted so far was sent (or given up); False when ``timeout`` passed first."""
        end = None if timeout is None else self._now() + timeout
        with self._cond:
            while self._latest or self._busy:
                left = None if end is None else end - self._now()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 1.0))
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Send what waits for at most ``timeout`` seconds (default :attr:`drain`), then stop the threads; the
        states left unsent are counted in :attr:`dropped`. True when everything was sent."""
        end = self._now() + (self.drain if timeout is None else timeout)
        drained = self.flush(end - self._now())
        with self._cond:
            self._stop = True
            self.dropped += len(self._latest)
            self._latest.clear()
            self._cond.notify_all()
        for t in self._threads:  # a send still in flight is not waited for past the bound (daemon threads)
            t.join(max(end - self._now(), 0.0))
        return drained

    # ---------------------------------------------------------------------------------------- threads

    def _enqueue(self, rid: str, urgent: bool) -> None:
        self._queued[rid] = urgent
        (self._urgent if urgent else self._routine).append(rid)

    def _take(self) -> RotationRun | None:
        """The next state to send (under the condition), waiting for one; None once stopped."""
        while not self._stop:
            now = self._now()
            while self._delayed and self._delayed[0][0] <= now:
                _, due = heapq.heappop(self._delayed)
                self._waiting.discard(due)
                if due in self._latest:
                    self._enqueue(due, due not in self._shown or final(self._latest[due]))
            rid = self._pop(self._urgent, True)
            if rid is None and self._routine and now >= self._next_routine:
                rid = self._pop(self._routine, False)
                if rid is not None:
                    self._next_routine = now + self.pace
            if rid is not None:
                self._busy[rid] = self._epoch
                return self._latest.pop(rid)
            wakes = [t for t in (self._delayed[0][0] if self._delayed else None,
                                 self._next_routine if self._routine else None) if t is not None]
            self._cond.wait(max(min(wakes) - now, 0.001) if wakes else None)
        return None

    def _pop(self, ready: deque[str], urgent: bool) -> str | None:
        while ready:
            rid = ready.popleft()
            if self._queued.get(rid) is urgent and rid in self._latest:
                del self._queued[rid]
                return rid
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                run = self._take()
            if run is None:
                return
            error: KubeError | None = None
            with self._cond:
                first = run.run_id not in self._shown and not final(run)
            try:
                if first:  # the object appears (one request); its status follows, paced, or with the final state
                    self.inner.show(run)
                else:
                    self.inner.send(run)
            except KubeError as exc:
                error = exc
            except Exception as exc:  # never let a sender die: every later state would wait forever
                error = KubeError(type(exc).__name__)
            self._done(run, error, first)

    def _done(self, run: RotationRun, error: KubeError | None, shown_only: bool = False) -> None:
        rid = run.run_id
        with self._cond:
            epoch = self._busy.pop(rid, self._epoch)
            if error is None:
                self._tries.pop(rid, None)
                if final(run) or epoch != self._epoch:  # (leadership lost meanwhile: new to it if it leads again)
                    self._shown.discard(rid)
                else:
                    self._shown.add(rid)
                if shown_only and epoch == self._epoch:
                    self._latest.setdefault(rid, run)  # its status still to send (a newer state replaces it)
            else:
                self.inner.count_failure()
                tries = self._tries.get(rid, 0) + 1
                if rid in self._latest:
                    pass  # a newer state replaces this one: it is tried (after the back-off below)
                elif epoch != self._epoch and not final(run):
                    self._tries.pop(rid, None)  # leadership was lost meanwhile: the next leader publishes it
                    self._cond.notify_all()
                    return
                elif not error.retryable and tries >= self.attempts:
                    self.dropped += 1  # refused for good (forbidden, invalid): not worth a request a minute
                    self._tries.pop(rid, None)
                    self._cond.notify_all()
                    return
                self._tries[rid] = tries
                self._latest.setdefault(rid, run)
                delay = min(self.retry * 2 ** (tries - 1), self.retry_cap)
                heapq.heappush(self._delayed, (self._now() + delay, rid))
                self._waiting.add(rid)
            if rid in self._latest and rid not in self._waiting and rid not in self._queued:
                self._enqueue(rid, rid not in self._shown or final(self._latest[rid]))
            self._cond.notify_all()


__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "BackgroundPublisher", "RunObjectsKube", "RunPublisher", "final",
           "involved", "manifest"]
