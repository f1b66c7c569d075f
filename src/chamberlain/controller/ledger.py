"""One ledger writer per controller process: the runs of a batch append their entries one after the other.

Why: every finished run appends one hash-chained entry. Runs advancing on worker threads, each with a ledger of
its own, race for the same next sequence number; the losers read the winner's entry and try again, so a batch of
n runs costs O(n²) reads. Serialized through one :class:`SharedLedger`, an append is two writes (entry, head).

A run remembers the ledger mark of when it finished, so a finalize resumed after a crash finds the entry an
earlier attempt appended (``find``). Entries this process appended since that mark are checked in memory; only
entries written by someone else (another replica, the CLI) are read.

The clock is required: entry times come from the controller's injected clock, never from the wall clock here.

Partitions (issue 11): the controller's ledger is a *book* for its cluster (``cluster`` and ``signer``); each run
appends through ``for_environment(env)``, a SharedLedger of its own per partition (one lock and memory each: the
partitions are separate chains).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from chamberlain.audit.ledger import Draft, Ledger, LedgerEntry, LedgerMark, Partition, Signer
from chamberlain.authority.kv import KV
from chamberlain.clock import Clock

REMEMBERED = 10_000  # own entries kept in memory for the check above (older marks fall back to reads)


class SharedLedger(Ledger):
    """The process's one ledger writer: appends are serialized, and remembered for :meth:`append`'s ``find``."""

    def __init__(self, kv: KV, mount: str, clock: Clock, *, partition: Partition | None = None,
                 signer: Signer | None = None, cluster: str | None = None) -> None:
        super().__init__(kv, mount, clock, partition=partition, signer=signer, cluster=cluster)
        self._lock = threading.RLock()  # append reads mark() through the base class
        self._own: OrderedDict[int, LedgerEntry] = OrderedDict()
        self._last: LedgerMark | None = None  # after this process's last append

    def _child(self, partition: Partition) -> Ledger:
        return SharedLedger(self._kv, self._mount, self._clock, partition=partition, signer=self._signer)

    def for_environment(self, environment: str) -> Ledger:
        with self._lock:  # worker threads ask for partitions concurrently: one writer per partition
            return super().for_environment(environment)

    def mark(self) -> LedgerMark:
        with self._lock:
            return self._last if self._last is not None else super().mark()

    def _append(self, draft: Draft, after: LedgerMark | None,
                find: Callable[[LedgerEntry], bool] | None) -> LedgerEntry:
        with self._lock:
            if after is not None and find is not None and self._last is not None:
                for seq in range(after.seq + 1, self._last.seq + 1):
                    known = self._own.get(seq)
                    entry = known if known is not None else self.entry(seq)
                    if entry is not None and find(entry):
                        return entry
                if self._last.seq > after.seq:
                    after = self._last  # not found up to the tail this process knows: chain there
            entry = super()._append(draft, after, find)
            self._own[entry.seq] = entry
            while len(self._own) > REMEMBERED:
                self._own.popitem(last=False)
            # After a conflict the base class does not know where the head is: read it (a lower bound of the
            # tail; an append walks past entries beyond it).
            self._last = self._mark if self._mark is not None else super().mark()
            return entry


__all__ = ["SharedLedger"]
