"""The controller freezes its settled state out of the cyclic collector's walk (chamberlain.controller.heap)."""

from __future__ import annotations

import threading
import time

import pytest

from chamberlain.controller.heap import Epoch, HeapSettler, should_settle
from tests.unit.test_controller import World


@pytest.mark.parametrize(("epoch", "settled", "backlog", "expected"), [
    pytest.param((0, True), None, False, True, id="start-up-settled"),
    pytest.param((0, True), None, True, False, id="start-up-with-a-backlog"),
    pytest.param((0, True), (0, True), False, False, id="already-settled"),
    pytest.param((1, True), (0, True), False, True, id="new-scope"),
    pytest.param((1, True), (0, True), True, False, id="new-scope-statuses-left"),
    pytest.param((0, True), (0, False), False, True, id="became-leader"),
])
def test_settles_once_per_epoch_when_no_work_is_left(epoch: Epoch, settled: Epoch | None, backlog: bool,
                                                      expected: bool) -> None:
    assert should_settle(epoch, settled, backlog) is expected


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def settler(self) -> HeapSettler:
        return HeapSettler(freeze=lambda: self.calls.append("freeze"),
                           unfreeze=lambda: self.calls.append("unfreeze"),
                           collect=self.collect, trim=lambda: self.calls.append("trim"),
                           monotonic=lambda: self.now)

    now = 0.0

    def collect(self) -> int:
        self.calls.append("collect")
        return 0


def test_each_settlement_thaws_and_collects_before_it_freezes() -> None:
    r = Recorder()
    heap = r.settler()
    assert heap.after_tick((0, True), backlog=True) is False and r.calls == ["trim"]  # start-up: trimmed
    r.calls.clear()
    assert heap.after_tick((0, True), backlog=False) is True
    assert heap.after_tick((0, True), backlog=False) is False  # settled: nothing more until the epoch moves
    assert heap.after_tick((1, True), backlog=False) is True
    assert r.calls == ["unfreeze", "collect", "freeze", "trim"] * 2


def test_between_settlements_the_heap_is_trimmed_every_trim_every_seconds() -> None:
    r = Recorder()
    heap = r.settler()
    for second in range(25):  # a long start-up: never settled, trimmed at 0, 10 and 20 s
        r.now = float(second)
        heap.after_tick((0, True), backlog=True)
    assert r.calls == ["trim"] * 3
    r.now = 25.0
    assert heap.after_tick((0, True), backlog=False) is True  # settling trims too, and restarts the count
    r.calls.clear()
    for second in (26, 34, 35):
        r.now = float(second)
        heap.after_tick((0, True), backlog=False)
    assert r.calls == ["trim"]


def test_release_free_memory_gives_freed_heap_pages_back() -> None:
    """On glibc, what a burst of freed C allocations left resident goes back to the system."""
    import ctypes

    from chamberlain.controller.heap import _malloc_trim, release_free_memory

    if _malloc_trim() is None:
        pytest.skip("no glibc malloc_trim on this platform")

    def rss_kib() -> int:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    blocks = [ctypes.create_string_buffer(4096 * 4) for _ in range(3000)]  # 48 MiB from malloc, below mmap's cut
    keep = blocks[-1]  # the top of the heap stays in use: only a trim inside the heap can give the rest back
    del blocks
    before = rss_kib()
    release_free_memory()
    assert rss_kib() < before - 20 * 1024 and keep.raw[:1] == b"\0"


def test_serve_settles_after_the_first_tick_and_again_after_a_scope_change() -> None:
    r = Recorder()
    w = World(("api-token", "db-password"))
    c = w.controller()
    stop = threading.Event()
    loop = threading.Thread(target=c.serve, args=(stop, 0.01, r.settler()), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while r.calls.count("freeze") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert [c for c in r.calls if c != "trim"] == ["unfreeze", "collect", "freeze"]
        time.sleep(0.1)  # ticks go on; the epoch has not moved
        assert r.calls.count("freeze") == 1
        c.set_scope(w.scope)  # the same intents, a new scope object: swapped in, a new generation
        while r.calls.count("freeze") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.calls.count("freeze") == 2 and c.scope_generation == 1
    finally:
        stop.set()
        loop.join(10)


def test_the_real_collector_is_left_as_it_was_by_default() -> None:
    """Tests and in-process callers of serve pass no settler: only `controller run`'s process freezes."""
    import gc

    w = World(("api-token",))
    c = w.controller()
    stop = threading.Event()
    before = gc.get_freeze_count()
    loop = threading.Thread(target=c.serve, args=(stop, 0.01), daemon=True)
    loop.start()
    time.sleep(0.1)
    stop.set()
    loop.join(10)
    assert gc.get_freeze_count() == before


def test_a_builtin_rotator_the_scope_uses_loads_at_start_and_a_broken_one_stops_it() -> None:
    from chamberlain.rotation.rotators import Registry, RotatorConfigError
    from chamberlain.rotation.rotators import registry as registry_mod

    w = World(("api-token",))
    loaded = Registry.load()
    c = w.controller(registry=loaded)
    assert c.parts.registry is loaded and "random" in loaded._rotators  # loaded by the start, not the first run
    broken = Registry({}, {"random": registry_mod.Entry("random", "chamberlain.no_such_module_here:X",
                                                        registry_mod.DISTRIBUTION)})
    with pytest.raises(RotatorConfigError, match="cannot be loaded"):
        w.controller(registry=broken)
