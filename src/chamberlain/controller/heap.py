"""Keeping the garbage collector off the state the controller holds for its whole life.

The controller holds some fifty objects the cyclic collector tracks per SecretIntent (models, schedules, status
memory, metric rows). A full collection walks all of them, about 0.05 s per 2,000 intents on this machine, while
every thread waits on the GIL: at 10k intents a trigger arriving then waits a quarter of a second too (P3 in
benchmarks/README.md). Those objects are built at start-up and after a scope change, then live until the next
change, so once the controller's state has settled they are moved out of the collector's reach
(:func:`gc.freeze`). The objects made afterwards (runs, readings, requests) are collected as usual.

Settled means: the first tick after start-up, a scope change or a change of leadership that leaves no work for
the next one (no time-trigger pass or status report cut short). Each settlement first thaws what an earlier one
froze and collects once, so cycles among state that a scope change dropped are freed rather than kept for good.
:func:`should_settle` is the decision (pure); :class:`HeapSettler` acts.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

Epoch = tuple[int, bool]  # (scope generation, leader): what the controller holds changes with either


def should_settle(epoch: Epoch, settled: Epoch | None, backlog: bool) -> bool:
    """Whether to freeze now: this epoch has not been settled yet and the tick left no work for the next one."""
    return epoch != settled and not backlog


@dataclass
class HeapSettler:
    """Freezes the long-lived state once per epoch (loop thread only). Only the controller's own process uses one
    (``ControllerApp``): freezing is process-wide. The gc functions are injected so tests can count the calls
    without touching the test process's collector."""

    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze
    collect: Callable[[], int] = gc.collect
    settled: Epoch | None = None

    def after_tick(self, epoch: Epoch, backlog: bool) -> bool:
        """Settle when :func:`should_settle` says so; returns whether it did."""
        if not should_settle(epoch, self.settled, backlog):
            return False
        self.unfreeze()  # the state an earlier scope froze is collectable again: what it dropped goes now
        self.collect()
        self.freeze()
        self.settled = epoch
        return True
