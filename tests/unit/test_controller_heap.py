"""The controller freezes its settled state out of the cyclic collector's walk (chamberlain.controller.heap)."""

from __future__ import annotations

import threading
import time

import pytest

from chamberlain.controller.heap import Epoch, HeapSettler, arena_limit, should_settle
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

    from chamberlain.controller.heap import _libc, release_free_memory

    if getattr(_libc(), "malloc_trim", None) is None:
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


@pytest.mark.parametrize(("environ", "expected"), [
    pytest.param({}, 2, id="unset"),
    pytest.param({"MALLOC_ARENA_MAX": " "}, 2, id="blank"),
    pytest.param({"MALLOC_ARENA_MAX": "4"}, None, id="the-operator-s-stands"),
    pytest.param({"MALLOC_ARENA_MAX": "0"}, 2, id="zero-glibc-ignores"),
    pytest.param({"MALLOC_ARENA_MAX": "many"}, 2, id="junk-glibc-ignores"),
    pytest.param({"GLIBC_TUNABLES": "glibc.malloc.check=0:glibc.malloc.arena_max=4"}, None, id="tunable-stands"),
    pytest.param({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, 2, id="other-tunables"),
])
def test_the_arena_cap_is_two_unless_the_operator_set_one(environ: dict[str, str], expected: int | None) -> None:
    assert arena_limit(environ) == expected


_ARENAS_AFTER_THREADS = """
import ctypes, os, sys, tempfile, threading
from chamberlain.controller.heap import _libc, limit_malloc_arenas
cap = limit_malloc_arenas(os.environ) if sys.argv[1] == "capped" else None
libc = _libc()
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(8)
def worker():
    barrier.wait()  # all alive at once: none inherits an arena a finished thread left free
    libc.malloc(64)
    barrier.wait()
threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(cap, open(out.name).read().count("<heap nr="))
"""


@pytest.mark.parametrize("mode", ["capped", "uncapped"])
def test_the_cap_holds_eight_allocating_threads_to_two_arenas(mode: str) -> None:
    """Real glibc, in a process of its own (the cap is process-wide): eight threads that allocate at once get
    eight arenas of their own without the cap, and share two with it."""
    import os
    import subprocess
    import sys

    from chamberlain.controller.heap import _libc

    if getattr(_libc(), "mallopt", None) is None or getattr(_libc(), "malloc_info", None) is None:
        pytest.skip("no glibc malloc on this platform")
    # glibc's own allocator with no cap from outside (an arena tunable, or another allocator preloaded)
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", _ARENAS_AFTER_THREADS, mode], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout.split()
    cap, arenas = out[0], int(out[1])
    if mode == "capped":
        assert cap == "2" and arenas <= 2
    else:
        assert cap == "None" and arenas > 4


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
