"""SIGTERM/SIGINT as a graceful stop (:mod:`chamberlain.controller.signals`), in this process: the signal is sent
to one thread with ``pthread_kill``, so which thread takes it is no longer up to the kernel. The lab test
``test_sigterm_taken_by_a_worker_thread_stops_the_controller`` does the same to a real controller."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from chamberlain.controller.signals import StopOnSignals


@pytest.fixture
def worker() -> Iterator[threading.Thread]:
    """A thread that does nothing but exist (and can take a signal)."""
    done = threading.Event()
    thread = threading.Thread(target=done.wait, name="worker", daemon=True)
    thread.start()
    yield thread
    done.set()
    thread.join(5)


@pytest.fixture
def restored() -> Iterator[None]:
    """The handlers and wakeup fd this process had (pytest's) are back after each test."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    assert {s: signal.getsignal(s) for s in before} == before
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    assert fd == -1


def test_a_python_handler_alone_does_not_wake_a_main_thread_blocked_in_wait(worker: threading.Thread) -> None:
    """Why the module exists (CPython's behaviour, not ours): the handler runs only once the main thread runs
    bytecode again, which a blocked ``Event.wait()`` never does."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    try:
        signal.pthread_kill(worker.ident or 0, signal.SIGTERM)
        assert stop.wait(1) is False  # woken by the timeout, not by the signal...
        assert stop.is_set()  # ...after which the handler ran at once
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_taken_by_another_thread_wakes_the_main_thread(worker: threading.Thread, restored: None,
                                                                signum: signal.Signals) -> None:
    stop, calls = threading.Event(), []
    with StopOnSignals(stop, lambda s: calls.append((s, threading.current_thread().name))) as signals:
        signal.pthread_kill(worker.ident or 0, signum)
        assert stop.wait(5)
    assert signals.received == [signum]
    assert calls == [(signum, "signals")]  # the callback (it logs) runs in the watcher, never in a handler


def test_a_signal_taken_by_the_main_thread_stops_too(restored: None) -> None:
    stop = threading.Event()
    with StopOnSignals(stop) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signals.received == [signal.SIGTERM]


def test_other_signals_with_a_python_handler_do_not_stop(worker: threading.Thread, restored: None) -> None:
    stop, seen = threading.Event(), threading.Event()
    previous = signal.signal(signal.SIGUSR2, lambda _s, _f: seen.set())
    try:
        with StopOnSignals(stop) as signals:
            os.kill(os.getpid(), signal.SIGUSR2)  # its byte reaches the wakeup fd too
            assert seen.wait(5)
            assert not stop.wait(0.3)
            signal.pthread_kill(worker.ident or 0, signal.SIGTERM)
            assert stop.wait(5)
        assert signals.received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_failing_callback_still_stops(worker: threading.Thread, restored: None) -> None:
    def broken(_signum: int) -> None:
        raise RuntimeError("the log sink is gone")

    stop = threading.Event()
    with StopOnSignals(stop, broken) as signals:
        signal.pthread_kill(worker.ident or 0, signal.SIGTERM)
        assert stop.wait(5)
        stop.clear()
        signal.pthread_kill(worker.ident or 0, signal.SIGINT)  # the watcher goes on
        assert stop.wait(5)
    assert signals.received == [signal.SIGTERM, signal.SIGINT]


def test_the_watcher_ends_on_exit(restored: None) -> None:
    with StopOnSignals(threading.Event()):
        assert any(t.name == "signals" for t in threading.enumerate())
    assert not any(t.name == "signals" for t in threading.enumerate())


def test_only_the_main_thread_may_install_it() -> None:
    failed: list[BaseException] = []

    def enter() -> None:
        try:
            with StopOnSignals(threading.Event()):
                pass
        except RuntimeError as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(5)
    assert len(failed) == 1 and "main thread" in str(failed[0])


def test_a_callback_that_blocks_does_not_hold_the_stop_back(worker: threading.Thread, restored: None) -> None:
    release = threading.Event()
    stop = threading.Event()
    with StopOnSignals(stop, lambda _s: release.wait(10)):
        signal.pthread_kill(worker.ident or 0, signal.SIGTERM)
        assert stop.wait(5)
        release.set()


def test_a_burst_of_signals_stops_and_each_one_read_is_a_stop_signal(worker: threading.Thread,
                                                                      restored: None) -> None:
    """The kernel coalesces a pending signal sent again, so not every one of the 50 reaches the watcher."""
    stop = threading.Event()
    with StopOnSignals(stop) as signals:
        for _ in range(50):
            signal.pthread_kill(worker.ident or 0, signal.SIGTERM)
        assert stop.wait(5)
    assert signals.received and set(signals.received) == {signal.SIGTERM}


def test_a_failed_entry_leaves_nothing_behind(restored: None) -> None:
    with pytest.raises(OSError), StopOnSignals(threading.Event(), signals=(signal.SIGTERM, signal.SIGKILL)):
        pass  # SIGKILL cannot be caught
    assert not any(t.name == "signals" for t in threading.enumerate())
