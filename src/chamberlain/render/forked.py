"""A share of a render built in a forked child process, beside the parent's share.

On a machine with a second CPU, ``chamberlain render`` builds the clusters' files and the Vault bundle in a child
while it builds the environments' files itself: at 10k intents that takes about a third off rendering.

Why a fork and not a process pool: the child needs the topology (every intent model and who reads what), which
would cost more to pickle than the share it builds; a fork shares it copy-on-write, and only the result crosses
the pipe. Forking a process that runs other threads can copy a lock one of them holds, so :func:`usable` says no
then (it sees Python's threads only: a caller running native threads must not ask). When the child cannot start,
dies or sends nothing, the parent builds the share itself: the output never depends on whether a child helped.

The child never outlives its use: it holds only the pipe's write end (so a parent that is gone makes its write
fail, and it exits), it takes the default action on SIGTERM and SIGINT, it is daemonic (multiprocessing stops it
when the interpreter exits), and :meth:`Forked.close` kills what does not stop when asked.
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


def _serve(receive: Connection, send_end: Connection, build: Callable[[], T], send: Callable[[T], bool]) -> None:
    receive.close()  # only the parent reads: with its end closed here, a parent that is gone fails our write
    for signum in (signal.SIGTERM, signal.SIGINT):  # the parent's handlers may not stop a process; ours must
        signal.signal(signum, signal.SIG_DFL)
    try:
        value = build()
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if send(value) else b""
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

    def __init__(self, build: Callable[[], T], *, send: Callable[[T], bool] = lambda _value: True) -> None:
        self._build = build
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        for stream in (sys.stdout, sys.stderr):  # the child flushes its copy of what they buffer when it ends
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            context = multiprocessing.get_context("fork")
            receive, send_end = context.Pipe(duplex=False)
        except Exception:  # no pipe, no fork: result() builds it here
            return
        try:
            process = context.Process(target=_serve, args=(receive, send_end, build, send), daemon=True)
            process.start()
        except Exception:  # no child (no resources, or a daemonic process): result() builds it here
            receive.close()
            send_end.close()
            return
        send_end.close()
        self._conn, self._process = receive, process

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def result(self) -> T:
        data = b""
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
        if self._conn is not None:
            self._conn.close()
            self._conn = None
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
