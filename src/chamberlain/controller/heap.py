"""Keeping the garbage collector off the state the controller holds for its whole life.

The controller holds some fifty objects the cyclic collector tracks per SecretIntent (models, schedules, status
memory, metric rows). A full collection walks all of them, about 0.05 s per 2,000 intents on this machine, while
every thread waits on the GIL: at 10k intents a trigger arriving then waits a quarter of a second too (P3 in
benchmarks/README.md). Those objects are built at start-up and after a scope change, then live until the next
change, so once the controller's state has settled they are moved out of the collector's reach
(:func:`gc.freeze`). The objects made afterwards (runs, readings, requests) are collected as usual.

Settling also hands the C heap's free pages back to the system (glibc's ``malloc_trim``). Start-up reads every
secret's metadata and writes every status from worker threads; the response buffers they allocate and free stay
in those threads' malloc arenas, a few KiB per intent of resident memory that nothing reuses (benchmarks/README.md,
P5). Python has no binding for it, hence ctypes; without glibc (musl, macOS) it does nothing. Between
settlements it trims every ``trim_every`` seconds too: start-up, the largest burst, is one long unsettled stretch
(it made the peak), and steady ticks keep leaving a little behind. A trim costs milliseconds.

The worker threads' allocations are the other half. glibc gives each thread a malloc arena of its own at its
first allocation (while no free one exists), up to eight per core: start-up's metadata readers and status
writers, the watches and the metrics server each left pages behind in theirs, and a trim only returns whole free
pages. Two arenas for the controller's process (:func:`limit_malloc_arenas`, ``mallopt(M_ARENA_MAX)``, the knob
the ``MALLOC_ARENA_MAX`` environment variable sets) cut the peak RSS at 10k intents by about 6 MiB. Python
allocates under the GIL, so the threads rarely contend for an arena anyway. A cap the operator set
(``MALLOC_ARENA_MAX``, or ``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``) wins.

Settled means: the first tick after start-up, a scope change or a change of leadership that leaves no work for
the next one (no time-trigger pass or status report cut short). Each settlement first thaws what an earlier one
froze and collects once, so cycles among state that a scope change dropped are freed rather than kept for good.
:func:`should_settle` is the decision (pure); :class:`HeapSettler` acts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Epoch = tuple[int, bool]  # (scope generation, leader): what the controller holds changes with either


def should_settle(epoch: Epoch, settled: Epoch | None, backlog: bool) -> bool:
    """Whether to freeze now: this epoch has not been settled yet and the tick left no work for the next one."""
    return epoch != settled and not backlog


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> None:
    """Return the free pages of every malloc arena to the system (no-op without glibc)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


ARENAS = 2  # malloc arenas for the controller's process (see the module docstring)
_M_ARENA_MAX = -8  # glibc's malloc.h


def arena_limit(environ: Mapping[str, str], default: int = ARENAS) -> int | None:
    """How many malloc arenas to ask glibc for: None when the operator set a cap glibc honours (a positive
    ``MALLOC_ARENA_MAX``, or ``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``: glibc read it at start and it
    stands), else ``default``."""
    explicit = environ.get("MALLOC_ARENA_MAX", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return None
    if "glibc.malloc.arena_max=" in environ.get("GLIBC_TUNABLES", ""):
        return None
    return default


def limit_malloc_arenas(environ: Mapping[str, str]) -> int | None:
    """Cap the process's malloc arenas (:func:`arena_limit`) before its threads start; returns the cap set (None:
    the operator's, or no glibc). glibc reads the cap when a thread first wants an arena beyond the eighth, so a
    cap set before the threads start holds for the process's life. Only the controller's own process calls this:
    the cap is process-wide."""
    count = arena_limit(environ)
    libc = _libc()
    # glibc only: another libc's mallopt (if any) gives -8 another meaning
    mallopt = getattr(libc, "mallopt", None) if hasattr(libc, "gnu_get_libc_version") else None
    if count is None or mallopt is None:
        return None
    return count if mallopt(_M_ARENA_MAX, count) == 1 else None


@dataclass
class HeapSettler:
    """Freezes the long-lived state once per epoch (loop thread only). Only the controller's own process uses one
    (``ControllerApp``): freezing is process-wide. The gc functions are injected so tests can count the calls
    without touching the test process's collector."""

    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze
    collect: Callable[[], int] = gc.collect
    trim: Callable[[], None] = release_free_memory
    monotonic: Callable[[], float] = time.monotonic
    trim_every: float = 10.0
    settled: Epoch | None = None
    trimmed_at: float | None = None

    def after_tick(self, epoch: Epoch, backlog: bool) -> bool:
        """Settle when :func:`should_settle` says so (returns whether it did); else trim when ``trim_every`` has
        passed since the last trim."""
        now = self.monotonic()
        if not should_settle(epoch, self.settled, backlog):
            if self.trimmed_at is None or now - self.trimmed_at >= self.trim_every:
                self.trim()
                self.trimmed_at = now
            return False
        self.unfreeze()  # the state an earlier scope froze is collectable again: what it dropped goes now
        self.collect()
        self.freeze()
        self.trim()
        self.settled, self.trimmed_at = epoch, now
        return True
