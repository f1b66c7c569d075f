"""A share of a render built in a forked child process, beside the parent's share.

On a machine with a second CPU, ``chamberlain render`` builds the clusters' files and the Vault bundle in a child
while it builds the environments' files itself: at 10k intents that takes about a third off rendering.

Why a fork and not a process pool: the child needs the topology (every intent model and who reads what), which
would cost more to pickle than the share it builds; a fork shares it copy-on-write, and only the result crosses
the pipe. Forking a process that runs other threads can copy a lock one of them holds, so :func:`usable` says no
then. When the child cannot start, dies or sends nothing, the parent builds the share itself: the output never
depends on whether a child helped.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

T = TypeVar("T")


def usable() -> bool:
    """A child can help: fork exists, this process runs one thread, and it may use more than one CPU."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus > 1


def _serve(conn: Connection, build: Callable[[], T], send: Callable[[T], bool]) -> None:
    try:
        value = build()
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if send(value) else b""
    except BaseException:  # nothing crosses the pipe: the parent builds it and meets the error itself
        payload = b""
    conn.send_bytes(payload)
    conn.close()


class Forked(Generic[T]):
    """``build()`` running in a forked child from construction on; :meth:`result` is its value. When no child could
    build it (none started, it died, it raised, its value would not pickle or ``send`` refused it),
    :meth:`result` calls ``build`` here: an error is then raised first hand, exactly as without a child."""

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
            # Not daemonic: a daemonic process may not have children of its own, and close() always reaps it.
            process = context.Process(target=_serve, args=(send_end, build, send))
            process.start()
        except Exception:  # no child (no fork, no resources): result() builds it here
            return
        send_end.close()
        self._conn, self._process = receive, process

    def result(self) -> T:
        data: bytes | None = None
        if self._conn is not None:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                data = None  # the child died before it sent anything
            finally:
                self.close(wait=5.0)
        if not data:
            return self._build()
        return pickle.loads(data)  # type: ignore[no-any-return]  # noqa: S301 - our own child, our own pipe

    def close(self, wait: float = 0.0) -> None:
        """Reap the child, stopping it if it still runs after ``wait`` seconds (the parent failed, or was
        interrupted, and no longer wants its share)."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is not None:
            process.join(wait)
            if process.is_alive():
                process.terminate()
                process.join()


__all__ = ["Forked", "usable"]
