"""The authority ledger: append-only, hash-chained records in a KV v2 mount.

Layout under ``<mount>/_chamberlain/``: ``ledger/<seq:012d>`` holds one entry, written with check-and-set 0 (create
only, so concurrent writers cannot overwrite each other, and a Vault policy can grant ``create`` without
``update``); ``ledger-head`` holds the last sequence number and hash, rewritten after each append. The ``_`` prefix
keeps it apart from ``<environment>/…`` paths, which are DNS labels and cannot start with ``_``.

Verification recomputes every hash and link: an edited entry breaks its own hash, a deleted or reordered one
breaks the chain, and a deleted tail disagrees with the head.

Calls per append (the head names the last entry's seq *and* hash, and a read returns the head's KV version): read
the head (skipped when this instance appended last), create entry ``seq + 1`` with CAS 0, write the head with CAS =
the version read. Only a refused CAS costs more: a refused entry means the head lags or another writer got there
first, so the entry at that seq is read and the chain continues after it; a refused head is read again and
rewritten only when it still names an earlier entry. A caller that must append an entry at most once across
crashes (a rotation run's one entry) keeps a :class:`LedgerMark` from before its first attempt and passes it with
``find``: entries after the mark are the only places an earlier attempt can have written to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chamberlain.authority.errors import CasConflict, Forbidden
from chamberlain.authority.kv import KV
from chamberlain.clock import Clock, rfc3339
from chamberlain.intent.paths import LEDGER_HEAD as HEAD_PATH
from chamberlain.intent.paths import LEDGER_PREFIX

GENESIS = "0" * 64
MAX_DETAIL_CHARS = 256

Event = Literal[
    "authority-init",
    "authority-configure",
    "authority-rekey",
    "authority-unseal",
    "handover",
    "retire",
    "value-created",
    "policy-change",
    "rotation",
]
Result = Literal["ok", "failed", "noop"]


class Draft(BaseModel):
    """What an entry says, before the chain gives it a sequence number, a time and its links."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: Event
    result: Result = "ok"
    secret: str | None = None
    path: str | None = None
    actor: str
    run: str | None = None
    reason: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


class LedgerEntry(Draft):
    """One chained entry: the draft, its place (``seq``), when, the previous entry's hash and its own."""

    seq: int
    time: str
    prev: str
    hash: str = ""

    def computed_hash(self) -> str:
        body = self.model_dump(exclude={"hash"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Verification:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class LedgerMark:
    """Where the head stood: the last entry it named (seq and hash; 0 and :data:`GENESIS` for an empty ledger) and
    the head record's KV version (the CAS of the next head write; 0 when there is no head)."""

    seq: int = 0
    hash: str = GENESIS
    head_version: int = 0


def _entry_path(seq: int) -> str:
    return f"{LEDGER_PREFIX}/{seq:012d}"


class LedgerReader:
    """The ledger in ``mount``, for reading and verifying (an auditor, ``status``, ``audit show``)."""

    def __init__(self, kv: KV, mount: str) -> None:
        self._kv = kv
        self._mount = mount

    # ------------------------------------------------------------------ reading

    def _read(self, seq: int) -> LedgerEntry | None:
        version = self._kv.read(self._mount, _entry_path(seq))
        if version is None:
            return None
        return LedgerEntry.model_validate_json(version.data["entry"])

    def entry(self, seq: int) -> LedgerEntry | None:
        """Entry number ``seq`` (one read), or None when there is none."""
        return self._read(seq)

    def mark(self) -> LedgerMark:
        """Where the head stands now (one read). The head may lag behind entries whose writer crashed before
        moving it; :meth:`append` walks past those, so a mark is a lower bound of the tail."""
        head = self._kv.read(self._mount, HEAD_PATH)
        if head is None or "seq" not in head.data:
            return LedgerMark()
        return LedgerMark(int(head.data["seq"]), head.data.get("hash", GENESIS), head.version)

    def find_after(self, mark: LedgerMark, match: Callable[[LedgerEntry], bool]) -> LedgerEntry | None:
        """The first entry after ``mark`` for which ``match`` is true, walking forward to the real tail (one read
        per entry appended since the mark, plus one)."""
        seq = mark.seq
        while (entry := self._read(seq + 1)) is not None:
            if match(entry):
                return entry
            seq += 1
        return None

    def entries(self) -> list[LedgerEntry]:
        keys = sorted(k for k in self._kv.list(self._mount, LEDGER_PREFIX) if not k.endswith("/"))
        out = []
        for key in keys:
            version = self._kv.read(self._mount, f"{LEDGER_PREFIX}/{key}")
            if version is not None:
                out.append(LedgerEntry.model_validate_json(version.data["entry"]))
        return out

    def for_secret(self, name: str) -> list[LedgerEntry]:
        return [e for e in self.entries() if e.secret == name]

    # ------------------------------------------------------------------ verifying

    def verify(self) -> Verification:
        report = Verification()
        entries = self.entries()
        report.entries = len(entries)
        prev_hash = GENESIS
        for expected_seq, entry in enumerate(entries, start=1):
            if entry.seq != expected_seq:
                report.problems.append(
                    f"entry {expected_seq} is missing or out of order (found seq {entry.seq} in its place)"
                )
            if entry.computed_hash() != entry.hash:
                report.problems.append(f"entry {entry.seq} was edited: its hash does not match its content")
            if entry.prev != prev_hash:
                report.problems.append(f"entry {entry.seq} does not chain to the entry before it")
            prev_hash = entry.hash
            meta = self._kv.read_metadata(self._mount, _entry_path(entry.seq))
            if meta is not None and meta.current_version != 1:
                report.problems.append(f"entry {entry.seq} was rewritten (KV version {meta.current_version})")
        head = self._kv.read(self._mount, HEAD_PATH)
        if head is not None:
            head_seq = int(head.data["seq"])
            last = entries[-1] if entries else None
            if last is None or head_seq > last.seq:
                report.problems.append(f"the head names entry {head_seq}, but the ledger ends at "
                                       f"{last.seq if last else 0}: entries were deleted")
            elif head_seq == last.seq and head.data["hash"] != last.hash:
                report.problems.append("the head hash does not match the last entry")
            elif head_seq < last.seq:
                report.warnings.append(f"the head lags at {head_seq} of {last.seq} (a writer stopped before "
                                       "updating it); the next append repairs it")
        elif entries:
            report.problems.append("entries exist but the head is missing")
        return report


class Ledger(LedgerReader):
    """The ledger in ``mount``, for appending too: every entry is stamped with ``clock.now()``."""

    def __init__(self, kv: KV, mount: str, clock: Clock) -> None:
        super().__init__(kv, mount)
        self._clock = clock
        self._mark: LedgerMark | None = None  # the tail after this instance's last append (saves a head read)

    # ------------------------------------------------------------------ writing

    def append(
        self,
        event: Event,
        *,
        actor: str,
        secret: str | None = None,
        path: str | None = None,
        run: str | None = None,
        reason: str | None = None,
        result: Result = "ok",
        details: Mapping[str, str] | None = None,
        after: LedgerMark | None = None,
        find: Callable[[LedgerEntry], bool] | None = None,
    ) -> LedgerEntry:
        """Append one entry and return it. ``after``: start from this mark instead of the head (no read); ``find``:
        an entry after the mark for which it is true is returned instead of appending (an earlier attempt of the
        same caller that crashed before recording it)."""
        draft = Draft(event=event, result=result, secret=secret, path=path, actor=actor, run=run,
                      reason=reason[:MAX_DETAIL_CHARS] if reason else None,
                      details={k: str(v)[:MAX_DETAIL_CHARS] for k, v in sorted((details or {}).items())})
        return self._append(draft, after, find)

    def _append(self, draft: Draft, after: LedgerMark | None,
                find: Callable[[LedgerEntry], bool] | None) -> LedgerEntry:
        """Chain ``draft`` after ``after`` (default: the head), walking past entries others appended."""
        tail = after if after is not None else (self._mark or self.mark())
        for _ in range(50):
            entry = LedgerEntry(seq=tail.seq + 1, time=rfc3339(self._clock.now()), prev=tail.hash,
                                **draft.model_dump())
            entry = entry.model_copy(update={"hash": entry.computed_hash()})
            try:
                self._kv.write(self._mount, _entry_path(entry.seq), {"entry": entry.model_dump_json()}, cas=0)
            except (CasConflict, Forbidden) as exc:
                # The head lags (a writer crashed before moving it) or another writer appended: chain after the
                # entry that holds this seq (or, if it vanished meanwhile, start again from the head). A writer
                # whose policy grants only `create` on entries gets 403, not a CAS error, for an existing one.
                taken = self._read(entry.seq)
                if taken is None:
                    if isinstance(exc, Forbidden):
                        raise
                    tail = self.mark()
                    continue
                if find is not None and find(taken):
                    self._mark = None
                    return taken
                tail = LedgerMark(taken.seq, taken.hash, tail.head_version)
                continue
            self._mark = self._update_head(entry, tail.head_version)
            return entry
        raise CasConflict("ledger: could not append after 50 attempts (heavy contention)")

    def _update_head(self, entry: LedgerEntry, head_version: int) -> LedgerMark | None:
        """Point the head at ``entry`` (CAS = ``head_version``); the mark after it, None when it is unknown."""
        body = {"seq": str(entry.seq), "hash": entry.hash}
        try:
            return LedgerMark(entry.seq, entry.hash, self._kv.write(self._mount, HEAD_PATH, body, cas=head_version))
        except CasConflict:
            pass  # another append moved the head since it was read: look again
        head = self._kv.read(self._mount, HEAD_PATH)
        current = head.version if head is not None else 0
        if head is not None and int(head.data.get("seq", "0")) >= entry.seq:
            return None
        # On conflict a later append moved the head; verification walks past a lagging head anyway.
        with contextlib.suppress(CasConflict):
            return LedgerMark(entry.seq, entry.hash, self._kv.write(self._mount, HEAD_PATH, body, cas=current))
        return None
