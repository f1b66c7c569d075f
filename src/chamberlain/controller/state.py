"""The controller's mutable state: what changes from one tick to the next, with one owner.

Who touches what:

* The **loop thread** (the one running :meth:`~.loop.Controller.tick`, i.e. ``serve``) owns :class:`TickState`:
  it is the only thread that writes any of its fields, and the only one that reads ``deferred``, ``dirty``,
  ``adopted``, ``last_evaluation`` and the time trigger's readings.
* **Worker threads** (a pass of :meth:`~.loop.Controller._each`) never touch the state. Each is handed one
  :class:`Active` (or one request) and owns it until the pass returns; it writes that Active's ``run``,
  ``outage`` and ``lost`` only. What a worker produces (a run started, a run lost, a run changed) is returned to,
  or read after the pass by, the loop thread, which applies it. The restart wave is the one object the workers of
  a pass share: it has its own lock (:class:`~.batch.RestartWave`).
* **Other threads** (the webhook server, the demo, a benchmark) only read, through the Controller's properties:
  ``active`` and ``finished`` are copied under :attr:`TickState.lock`; ``leader`` and ``outages`` are single
  values written by the loop thread alone.

:attr:`TickState.lock` protects ``active`` and ``finished`` against those readers: the loop thread holds it while
it changes them (never across I/O), readers while they copy. Nothing else needs it: one thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from chamberlain.controller.batch import RestartWave
from chamberlain.controller.freshness import Reading
from chamberlain.rotation import manual as rm
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.run import RotationRun
from chamberlain.triggers import RotationRequest


@dataclass
class Active:
    """A run this replica drives. Holds no value: ``deps`` reads what a step needs inside that step."""

    placed: rm.Placed
    run: RotationRun
    deps: wf.RotationDeps
    timing: rm.TimedPropagation
    request: RotationRequest | None  # the request that started it (None: adopted from its record)
    started: float  # monotonic
    outage: str | None = None  # the authority became unreachable during this run (nothing could be saved)
    lost: bool = False  # another executor moved the run record: this replica stops driving it
    # revokeOld waits for follower clusters' acknowledgements: look again (one read per follower) no sooner than this
    next_ack_look: float = 0.0  # monotonic

    def saved(self, run: RotationRun) -> None:
        """A revision this replica saved in the middle of a call (the ``tested`` record before promote follows:
        ``workflow.advance``'s ``then_promote``): should the rest of the call raise, the next step starts from it."""
        self.run = run


@dataclass
class TickState:
    wave: RestartWave  # built once, with the state: every batch restarts through it
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: dict[str, Active] = field(default_factory=dict)  # by secret
    deferred: dict[str, RotationRequest] = field(default_factory=dict)  # requests waiting for a secret's run
    finished: list[RotationRun] = field(default_factory=list)  # what this replica finished, newest last
    dirty: dict[str, RotationRun] = field(default_factory=dict)  # runs changed this tick, to publish once
    outages: int = 0  # consecutive ticks the authority could not be reached
    leader: bool = False
    adopted: bool = False  # the unfinished runs recorded in Vault were adopted since this replica became leader
    last_evaluation: float | None = None  # monotonic time the time trigger's last pass started
    evaluating: list[str] = field(default_factory=list)  # the secrets the current pass has yet to decide (reversed)
    # the time trigger's last reading of each secret (:mod:`.freshness`), the ones the current pass reads from the
    # authority, and where the next pass's round robin of re-reads starts
    known: dict[str, Reading] = field(default_factory=dict)
    rereading: set[str] = field(default_factory=set)
    refresh_cursor: int = 0
    last_refresh: float | None = None  # monotonic start of the last pass (a scope swap resets last_evaluation only)
    # persisted webhook requests this replica ran or settled (not queued again while their objects' status, a
    # best-effort publish, has not caught up); grows by one name per webhook request
    taken: set[str] = field(default_factory=set)

    def activate(self, a: Active) -> None:
        with self.lock:
            self.active[a.placed.name] = a

    def drop(self, secret: str) -> Active | None:
        with self.lock:
            return self.active.pop(secret, None)

    def finish(self, run: RotationRun, keep: int) -> None:
        with self.lock:
            self.finished.append(run)
            del self.finished[:max(len(self.finished) - keep, 0)]  # keep 0: none ([:-0] would keep all)

    def follow(self) -> list[RotationRequest]:
        """Leadership lost: drop every run and deferred request (the new leader adopts the runs from their
        records); returns the requests this replica held, so their queue entries can be released."""
        held = [a.request for a in self.active.values() if a.request is not None] + list(self.deferred.values())
        with self.lock:
            self.active.clear()
        self.deferred.clear()
        self.adopted = False
        return held

    def snapshot(self) -> tuple[dict[str, Active], list[RotationRun]]:
        """``active`` and ``finished`` as copies, for other threads."""
        with self.lock:
            return dict(self.active), list(self.finished)


__all__ = ["Active", "TickState"]
