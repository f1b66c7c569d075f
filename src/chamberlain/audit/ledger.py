"""The authority ledger: append-only, hash-chained records in a KV v2 mount.

Layout under ``<mount>/_chamberlain/``: ``ledger/<seq:012d>`` holds one entry, written with check-and-set 0 (create
only, so concurrent writers cannot overwrite each other, and a Vault policy can grant ``create`` without
``update``); ``ledger-head`` holds the last sequence number and hash, rewritten after each append. The ``_`` prefix
keeps it apart from ``<environment>/…`` paths, which are DNS labels and cannot start with ``_``.

Verification recomputes every hash and link: an edited entry breaks its own hash, a deleted or reordered one
breaks the chain, and a deleted tail disagrees with the head.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chamberlain.authority.errors import CasConflict
from chamberlain.authority.kv import KV
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
    "value-created",
    "policy-change",
    "rotation",
]
Result = Literal["ok", "failed", "noop"]


class LedgerEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    time: str
    event: Event
    result: Result = "ok"
    secret: str | None = None
    path: str | None = None
    actor: str
    run: str | None = None
    reason: str | None = None
    details: dict[str, str] = Field(default_factory=dict)
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


def _entry_path(seq: int) -> str:
    return f"{LEDGER_PREFIX}/{seq:012d}"


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    def __init__(self, kv: KV, mount: str, clock: Callable[[], datetime] = _now) -> None:
        self._kv = kv
        self._mount = mount
        self._clock = clock
        self._last: LedgerEntry | None = None  # cached tail, re-read when another writer got there first

    # ------------------------------------------------------------------ reading

    def _read(self, seq: int) -> LedgerEntry | None:
        version = self._kv.read(self._mount, _entry_path(seq))
        if version is None:
            return None
        return LedgerEntry.model_validate_json(version.data["entry"])

    def _tail(self) -> LedgerEntry | None:
        if self._last is not None:
            return self._last
        head = self._kv.read(self._mount, HEAD_PATH)
        seq = int(head.data["seq"]) if head is not None else 0
        # The head may lag by entries whose writer crashed before updating it: walk forward to the real tail.
        last = self._read(seq) if seq else None
        while (nxt := self._read(seq + 1)) is not None:
            last, seq = nxt, seq + 1
        self._last = last
        return last

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
    ) -> LedgerEntry:
        clean = {k: str(v)[:MAX_DETAIL_CHARS] for k, v in sorted((details or {}).items())}
        for _ in range(50):
            tail = self._tail()
            entry = LedgerEntry(
                seq=(tail.seq + 1) if tail else 1,
                time=self._clock().astimezone(UTC).isoformat(timespec="seconds"),
                event=event,
                result=result,
                secret=secret,
                path=path,
                actor=actor,
                run=run,
                reason=reason[:MAX_DETAIL_CHARS] if reason else None,
                details=clean,
                prev=tail.hash if tail else GENESIS,
            )
            entry = entry.model_copy(update={"hash": entry.computed_hash()})
            try:
                self._kv.write(self._mount, _entry_path(entry.seq), {"entry": entry.model_dump_json()}, cas=0)
            except CasConflict:
                self._last = None  # another writer appended; re-read the tail and chain after it
                continue
            self._last = entry
            self._update_head(entry)
            return entry
        raise CasConflict("ledger: could not append after 50 attempts (heavy contention)")

    def _update_head(self, entry: LedgerEntry) -> None:
        meta = self._kv.read_metadata(self._mount, HEAD_PATH)
        current = meta.current_version if meta else 0
        head = self._kv.read(self._mount, HEAD_PATH) if current else None
        if head is not None and int(head.data["seq"]) >= entry.seq:
            return
        # On conflict a later append moved the head; verification walks past a lagging head anyway.
        with contextlib.suppress(CasConflict):
            self._kv.write(self._mount, HEAD_PATH, {"seq": str(entry.seq), "hash": entry.hash}, cas=current)

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
