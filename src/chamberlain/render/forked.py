"""A share of a render built in a forked child process, beside the parent's share.

On a machine with a second CPU, ``chamberlain render`` builds the clusters' files and the Vault bundle in a child
while it builds the environments' files itself: at 10k intents that takes about a third off rendering.

Why a fork and not a process pool: the child needs the topology (every intent model and who reads what), which
would cost more to pickle than the share it builds; a fork shares it copy-on-write, and only the result crosses
the pipe. Forking a process that runs other threads can copy a lock one of them holds, so :func:`usable` says no
then (it sees Python's threads only: a caller running native threads must not ask). When the child cannot start,
dies or sends nothing, the parent builds the share itself: the output never depends on whether a child helped.

The child never outlives its use: it holds only the pipe's write end (so a parent that is gone makes its write
fail, and it exits), on Linux the kernel kills it when its parent dies, it takes the default action on SIGTERM and
SIGINT, it is daemonic (multiprocessing stops it when the interpreter exits), and :meth:`Forked.close` kills what
does not stop when asked.

A child may have a second step that must wait for the parent's word (``then``: ``chamberlain render`` writes the
Vault bundle only once the checks passed): it builds, waits for :meth:`Forked.go`, runs the step with the message,
and only then sends. A parent that closes or goes away instead ends the child before the step.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


def usable() -> bool:
    """A child can help: fork exists, this process runs one thread and is not itself a daemonic multiprocessing
    worker (those may not have children), and it may use more than one CPU."""
    if not hasattr(os, "fork") or threading.active_count() != 1 or multiprocessing.current_process().daemon:
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus > 1


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """Have the kernel kill this child when ``parent`` dies (Linux), and end now if it already has."""
    with contextlib.suppress(Exception):  # not Linux, no libc: the pipe still ends the child at its next write
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def _serve(receive: Connection, send_end: Connection, build: Callable[[], T], send: Callable[[T], bool],
           then: Callable[[T, object], T] | None, word: Connection | None, word_end: Connection | None,
           parent: int) -> None:
    receive.close()  # only the parent reads: with its end closed here, a parent that is gone fails our write
    if word_end is not None:
        word_end.close()  # only the parent speaks: with its end closed here, a parent that is gone reads as EOF
    for signum in (signal.SIGTERM, signal.SIGINT):  # the parent's handlers may not stop a process; ours must
        signal.signal(signum, signal.SIG_DFL)
    _die_with(parent)
    try:
        value = build()
        sendable = send(value)
        if sendable and then is not None and word is not None:
            try:
                message = word.recv()
            except (EOFError, OSError):
                return  # the parent closed or is gone: the step is not wanted
            value = then(value, message)
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if sendable else b""
    except BaseException:  # nothing crosses the pipe: the parent builds it and meets the error itself
        payload = b""
    with contextlib.suppress(OSError):  # the parent stopped listening: nobody wants the share any more
        send_end.send_bytes(payload)
    with contextlib.suppress(OSError):
        send_end.close()


class Forked(Generic[T]):
    """``build()`` running in a forked child from construction on; :meth:`result` is its value. When no child could
    build it (none started, it died, it raised, its value would not pickle or ``send`` refused it),
    :meth:`result` calls ``build`` here: an error is then raised first hand, exactly as without a child. Use it as
    a context manager, or call :meth:`close`, so the child is reaped on every path."""

    def __init__(self, build: Callable[[], T], *, send: Callable[[T], bool] = lambda _value: True,
                 then: Callable[[T, object], T] | None = None) -> None:
        self._build = build
        self._conn: Connection | None = None
        self._word: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        for stream in (sys.stdout, sys.stderr):  # the child flushes its copy of what they buffer when it ends
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            context = multiprocessing.get_context("fork")
            receive, send_end = context.Pipe(duplex=False)
            word, word_end = context.Pipe(duplex=False) if then is not None else (None, None)
        except Exception:  # no pipe, no fork: result() builds it here
            return
        pipes = [c for c in (receive, send_end, word, word_end) if c is not None]
        try:
            process = context.Process(target=_serve, daemon=True,
                                      args=(receive, send_end, build, send, then, word, word_end, os.getpid()))
            process.start()
        except Exception:  # no child (no resources, or a daemonic process): result() builds it here
            for conn in pipes:
                conn.close()
            return
        send_end.close()
        if word is not None:
            word.close()
        self._conn, self._word, self._process = receive, word_end, process

    def go(self, message: object) -> None:
        """Let the child run its ``then`` step with ``message`` (once; :meth:`result` says ``None`` when nobody
        did)."""
        word, self._word = self._word, None
        if word is None:
            return
        with contextlib.suppress(OSError):  # the child is gone: result() builds the share here
            word.send(message)
        word.close()

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def result(self) -> T:
        data = b""
        self.go(None)
        if self._conn is not None:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                data = b""  # the child died before it sent anything
            except BaseException:
                self.close()  # interrupted: the share is no longer wanted
                raise
            self.close(wait=5.0)  # it sent everything and is on its way out
        if not data:
            return self._build()
        return pickle.loads(data)  # type: ignore[no-any-return]  # noqa: S301 - our own child, our own pipe

    def close(self, wait: float = 0.0) -> None:
        """Reap the child, stopping it if it still runs after ``wait`` seconds (the parent failed, or was
        interrupted, and no longer wants its share): SIGTERM, then SIGKILL if that was not enough."""
        process, self._process = self._process, None
        for conn in (self._conn, self._word):
            if conn is not None:
                conn.close()
        self._conn = self._word = None
        if process is None:
            return
        process.join(wait)
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join()


__all__ = ["Forked", "usable"]
