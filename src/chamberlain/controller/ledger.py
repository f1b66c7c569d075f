"""One ledger writer per controller process: the runs of a batch append their entries one after the other.

Why: every finished run appends one hash-chained entry. Runs advancing on worker threads, each with a ledger of
its own, race for the same next sequence number; the losers read the winner's entry and try again, so a batch of
n runs costs O(n²) reads. Serialized through one :class:`SharedLedger`, an append is two writes (entry, head), and
appends that arrive while one is written are committed together: one signature request and one head write per
group, the entries still written one at a time, in order (the chain stays one chain, the format is unchanged).

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
        # Appends arriving while another is written wait here; the next writer takes them all as one group commit
        # (one signature request and one head write for the group, entries still written one by one, in order).
        self._turn = threading.Condition(threading.Lock())
        self._waiting: list[_Waiting] = []
        self._writing = False

    def _child(self, partition: Partition) -> Ledger:
        return SharedLedger(self._kv, self._mount, self._clock, partition=partition, signer=self._signer)

    def for_environment(self, environment: str) -> Ledger:
        with self._lock:  # worker threads ask for partitions concurrently: one writer per partition
            return super().for_environment(environment)

    def mark(self) -> LedgerMark:
        # Not behind a group commit in flight: a run asks for its mark before it appends, so its entry can only come
        # after this process's last tail, and a mark a group behind only lengthens finalize's look in memory. (Under
        # the lock, the runs of a batch finishing their restart step waited for every commit of the others.)
        last = self._last
        if last is not None:
            return last
        with self._lock:
            return self._last if self._last is not None else super().mark()

    def _append(self, draft: Draft, after: LedgerMark | None,
                find: Callable[[LedgerEntry], bool] | None) -> LedgerEntry:
        me = _Waiting(draft, after, find)
        with self._turn:
            self._waiting.append(me)
            while self._writing and not me.settled:
                self._turn.wait()
            if me.settled:  # the last writer took it in its group
                return me.result()
            self._writing = True  # this thread writes next: every append waiting now, as one group
            group, self._waiting = self._waiting, []
        try:
            with self._lock:
                self._commit(group)
        finally:
            with self._turn:
                for w in group:  # never leave a waiter hanging (an error escaped _commit)
                    if not w.settled:
                        w.settle(None, RuntimeError("the ledger writer stopped before appending this entry"))
                self._writing = False
                self._turn.notify_all()
        return me.result()

    def _commit(self, group: list[_Waiting]) -> None:
        """Settle every append of ``group`` (the lock is held): found in memory, or appended together."""
        todo: list[_Waiting] = []
        for w in group:
            try:
                known = self._known(w)
            except BaseException as exc:
                w.settle(None, exc)
                continue
            if isinstance(known, LedgerEntry):
                w.settle(known)
            else:
                w.after = known
                todo.append(w)
        if not todo:
            return
        # Together only after this process's own tail (the head it wrote last): a waiter with a mark of its own
        # beyond it (someone else's entries) walks alone.
        tail = self._mark
        together = [w for w in todo if tail is not None and (w.after is None or w.after.seq <= tail.seq)]
        alone = [w for w in todo if w not in together]
        if len(together) == 1:
            alone, together = together + alone, []
        if together:
            try:
                entries = self.append_many([w.draft for w in together], finds=[w.find for w in together])
            except BaseException as exc:
                for w in together:
                    w.settle(None, exc)
                # Some entries may be written (a run's among them, its caller told it failed): forget where the
                # chain is, so the retries walk from their own marks with their finds, each alone, until an append
                # succeeds again. Grouped after a remembered tail, a retry would not look and append twice.
                self._last = self._mark = None
            else:
                for w, entry in zip(together, entries, strict=True):
                    w.settle(entry)
                    self._remember(entry)
        for w in alone:
            try:
                entry = super()._append(w.draft, w.after, w.find)
            except BaseException as exc:
                w.settle(None, exc)
                self._last = self._mark = None
                continue
            w.settle(entry)
            self._remember(entry)

    def _known(self, w: _Waiting) -> LedgerEntry | LedgerMark | None:
        """The entry this process already appended for ``w`` (its ``find`` after its mark), else the mark to chain
        after: this process's tail when the mark is behind it, else the caller's own mark."""
        after = w.after
        if after is not None and w.find is not None and self._last is not None:
            for seq in range(after.seq + 1, self._last.seq + 1):
                known = self._own.get(seq)
                entry = known if known is not None else self.entry(seq)
                if entry is not None and w.find(entry):
                    return entry
            if self._last.seq > after.seq:
                return self._last  # not found up to the tail this process knows: chain there
        return after

    def _remember(self, entry: LedgerEntry) -> None:
        self._own[entry.seq] = entry
        while len(self._own) > REMEMBERED:
            self._own.popitem(last=False)
        # After a conflict the base class does not know where the head is: read it (a lower bound of the tail; an
        # append walks past entries beyond it). Best effort: unknown, the next appends walk from their own marks.
        try:
            self._last = self._mark if self._mark is not None else super().mark()
        except Exception:
            self._last = self._mark = None


class _Waiting:
    """One append waiting for the writer: what to append, and once settled, its entry or the error."""

    def __init__(self, draft: Draft, after: LedgerMark | None, find: Callable[[LedgerEntry], bool] | None) -> None:
        self.draft, self.after, self.find = draft, after, find
        self.settled = False
        self._entry: LedgerEntry | None = None
        self._error: BaseException | None = None

    def settle(self, entry: LedgerEntry | None, error: BaseException | None = None) -> None:
        self._entry, self._error, self.settled = entry, error, True

    def result(self) -> LedgerEntry:
        if self._error is not None:
            raise self._error
        assert self._entry is not None
        return self._entry


__all__ = ["SharedLedger"]
