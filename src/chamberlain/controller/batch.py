"""One batch of runs: the restart wave they share and the propagation each run of the batch goes through.

A batch is one tick's runs. The workflow's restart step of every run goes through the one :class:`RestartWave`
of the controller, so a workload fed by several secrets of the batch rolls once (Reloader #220, VSO #644). The
wave is built once, with the controller's state; the loop thread starts a new batch in it before the restart pass
(:meth:`RestartWave.begin`) while no worker runs; the workers of that pass restart through it under its lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chamberlain.clock import Clock
from chamberlain.kube.api import KubeError, KubePropagation
from chamberlain.propagation import Restarts, WorkloadRef, restart_all, restart_sources
from chamberlain.propagation.restart import Change
from chamberlain.rotation import manual as rm

T = TypeVar("T")


def spread_by_workload(items: Sequence[T], workloads: Callable[[T], Iterable[WorkloadRef]]) -> list[T]:
    """``items`` (a batch's runs) reordered for the restart pass (pure): the first run of every workload, then the
    second of each, and so on; runs that roll nothing first. Workers take runs in order, and a run waits for a
    workload another run is rolling: a batch arrives grouped by workload (its secrets in intent order), so eight
    workers took eight runs of one Deployment, one rolled it and seven waited, and the 200 workloads of a 2,000-run
    batch rolled about one at a time. Spread, the workers roll different workloads side by side and the later runs
    find theirs rolled. A run feeding several workloads is placed by the first (in sort order)."""
    groups: dict[WorkloadRef, list[T]] = {}
    none: list[T] = []
    for item in items:
        first = min(workloads(item), default=None)
        if first is None:
            none.append(item)
        else:
            groups.setdefault(first, []).append(item)
    out = none
    for rank in range(max((len(g) for g in groups.values()), default=0)):
        out.extend(g[rank] for g in groups.values() if rank < len(g))
    return out


def batch_token(run_ids: list[str]) -> str:
    """The restart token of a batch. Derived from its runs (not random), so a batch resumed after a crash reuses
    its token: no second roll."""
    if len(run_ids) == 1:
        return run_ids[0]
    return "batch-" + hashlib.sha256(",".join(sorted(run_ids)).encode()).hexdigest()[:16]


@dataclass
class RestartWave:
    """The restarts of one batch: each workload rolls once, under one token shared by the batch's runs.

    Workers roll different workloads side by side: a run claims the workloads nobody claimed yet, rolls them outside
    the lock, and waits for the ones another run is rolling (its restart step ends when all of its workloads
    rolled). A claim whose rolling failed is released, and the next run needing the workload rolls it (the batch
    token makes a second patch of a rolled workload a no-op)."""

    kube: KubePropagation
    clock: Clock
    token: str = ""
    rolled: set[WorkloadRef] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)  # runs of a batch restart from worker threads
    _rolling: dict[WorkloadRef, threading.Event] = field(default_factory=dict)  # claimed, being rolled

    def begin(self, run_ids: list[str]) -> None:
        """A new batch (loop thread, between passes). Without runs ready to restart, the token is left to the
        first run that restarts in the batch anyway (one whose retry fell due during the pass)."""
        with self.lock:
            self.token = batch_token(run_ids) if run_ids else ""
            self.rolled = set()
            self._rolling = {}

    def restart(self, change: Change, run_token: str) -> Restarts:
        """Roll the workloads of ``change`` not rolled yet in this batch; returns the ones this call patched and the
        ones left to Reloader. Returns once every workload of ``change`` rolled (here or on another worker)."""
        sources = restart_sources([change])
        rolled: list[str] = []
        left: list[str] = []
        while True:
            with self.lock:
                if not self.token:
                    self.token = run_token
                token = self.token
                mine = {w: s for w, s in sources.items() if w not in self.rolled and w not in self._rolling}
                busy = [self._rolling[w] for w in sources if w in self._rolling]
                claims = {w: threading.Event() for w in mine}
                self._rolling.update(claims)
            if not mine and not busy:
                return Restarts(tuple(rolled), tuple(left))
            ok = False
            try:
                done = restart_all(self.kube, mine, token, self.clock) if mine else Restarts()
                ok = True
            finally:
                with self.lock:
                    for w, event in claims.items():
                        if self._rolling.get(w) is event:
                            del self._rolling[w]
                        if ok:
                            self.rolled.add(w)
                        event.set()
            rolled.extend(done.rolled)
            left.extend(done.left_to_reloader)
            for event in busy:
                event.wait()


@dataclass
class BatchedPropagation:
    """The workflow's :class:`~chamberlain.rotation.workflow.Propagation` for one run inside a batch: refresh and
    wait as usual (timed), restarts through the batch's wave."""

    timed: rm.TimedPropagation
    wave: RestartWave
    change: Change
    refreshed: set[str] = field(default_factory=set)

    def refresh(self, token: str) -> None:
        if token in self.refreshed:  # the batch already poked these ExternalSecrets with this token
            return
        self.timed.refresh(token)
        self.refreshed.add(token)

    def wait(self, marker: str) -> None:
        self.timed.wait(marker)

    def restart(self, token: str) -> Restarts:
        done = self.wave.restart(self.change, token)
        self.timed.restarted.extend(done.rolled)
        self.timed.left_to_reloader.extend(done.left_to_reloader)
        return done


class BackgroundEvents:
    """The controller's Kubernetes client with Events sent from one background thread, in order (client-go's event
    recorder is asynchronous the same way). A batch of 2,000 runs emits three Events per run (started, succeeded,
    the RotationRun's); sent from the loop thread they were ~6,000 requests one after the other, during which no
    run advanced. Events are best effort already: a refused one is counted in :attr:`failures`, and when
    ``backlog`` Events wait (the API server is down), new ones are dropped and counted too. Everything else goes
    straight to the wrapped client."""

    def __init__(self, kube: Any, backlog: int = 20_000) -> None:
        self._kube = kube
        self._queue: queue.Queue[tuple[str, Mapping[str, str], str, str, str] | None] = queue.Queue(backlog)
        self.failures = 0
        self.dropped = 0
        self._stopped = False  # at shutdown: Events from threads still running are dropped, never queued
        self._count = threading.Lock()  # ``dropped`` is counted from every thread that emits
        self._thread = threading.Thread(target=self._send, name="chamberlain-events", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    def create_event(self, namespace: str, involved: Mapping[str, str], reason: str, message: str,
                     type_: str = "Normal") -> None:
        if not self._stopped:
            try:
                self._queue.put_nowait((namespace, dict(involved), reason, message, type_))
                return
            except queue.Full:
                pass
        with self._count:
            self.dropped += 1

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every Event queued so far was sent (or refused); False when ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self) -> None:
        """Send what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def stop(self, timeout: float) -> bool:
        """Stop at shutdown: the Events still queued are dropped (counted in :attr:`dropped`: a batch queues
        thousands, and Kubernetes' grace period is not theirs), the one being sent ends within its request's
        bound, and the thread is joined for up to ``timeout`` seconds. True when it ended (a daemon thread left
        inside a request while the interpreter shuts down is what this avoids). Events emitted afterwards (by a
        publisher or status thread still finishing) are dropped and counted too."""
        self._stopped = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                with self._count:
                    self.dropped += 1
            self._queue.task_done()
        with contextlib.suppress(queue.Full):  # filled again meanwhile: the thread is left to the interpreter
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _send(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                try:
                    self._kube.create_event(*item)
                except KubeError:
                    self.failures += 1
                except Exception:  # never let the sender die: every later Event would be lost
                    self.failures += 1
            finally:
                self._queue.task_done()


__all__ = ["BackgroundEvents", "BatchedPropagation", "RestartWave", "batch_token", "spread_by_workload"]
