"""SIGTERM and SIGINT as a graceful stop, whichever thread the kernel hands the signal to.

CPython runs a signal's Python handler in the main thread only, and only once that thread runs bytecode again.
The kernel may give a process-directed signal to any thread that does not block it. When a worker thread takes
it, a main thread blocked in ``Event.wait()`` is never woken, the handler never runs, and the controller ignores
SIGTERM until the kubelet's SIGKILL (seen twice in CI; ``signal.pthread_kill`` to a worker reproduces it).

The C-level handler does write the signal's number to the wakeup fd (:func:`signal.set_wakeup_fd`) from whichever
thread took it. So a watcher thread reads that socket and sets the stop event in ordinary thread context. The
Python-level handler does nothing: one that logs or takes a lock could deadlock against the main thread it
interrupted (a non-reentrant lock that thread already holds, such as the log writer's).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _nothing(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: replaces the default action (exit); the watcher does the work."""


class StopOnSignals:
    """While entered (main thread only), each of ``signals`` sets ``stop`` and calls ``on_signal(signum)`` from the
    watcher thread. On exit the previous handlers and wakeup fd are restored."""

    def __init__(self, stop: threading.Event, on_signal: Callable[[int], None] = lambda _signum: None,
                 signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        self.stop = stop
        self.on_signal = on_signal
        self.signals = frozenset(int(s) for s in signals)
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}
        self._previous_fd: int | None = None  # set once the wakeup fd is ours
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed by the main thread")
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # set_wakeup_fd requires it: a signal handler must never block
        self._pair = (reader, writer)
        try:
            self._watcher = threading.Thread(target=self._watch, args=(reader,), name="signals", daemon=True)
            self._watcher.start()
            self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            for signum in self.signals:  # SIGKILL and SIGSTOP cannot be caught: signal.signal raises
                self._previous[signum] = signal.signal(signum, _nothing)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _watch(self, reader: socket.socket) -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:  # the writer was closed: __exit__
                return
            for signum in data:  # one byte per signal taken
                if signum in self.signals:
                    self.received.append(signum)
                    self.stop.set()  # first: a log sink that blocks must not hold the stop back
                    with contextlib.suppress(BaseException):  # ...nor one that fails end the watch
                        self.on_signal(signum)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        if self._pair is not None:
            reader, writer = self._pair
            writer.close()  # the watcher's recv returns b"": it ends after the signals already written
            if self._watcher is not None:
                self._watcher.join(5)
            reader.close()
            self._pair, self._watcher = None, None
