"""The authority ledger: append-only, hash-chained, signed records in a KV v2 mount, one chain per partition.

Layout under ``<mount>/_chamberlain/ledger/`` (issue 11):

- ``<env>/<cluster>/<seq:012d>`` one entry of the partition of that environment and cluster, written with
  check-and-set 0 (create only: concurrent writers cannot overwrite each other, and a Vault policy grants
  ``create`` without ``update``); ``<env>/<cluster>/head`` the partition's last sequence number and the hash the
  next entry chains to, rewritten after each append. A cluster's orchestrator may write only its own partitions
  (its policy), and signs with its environment's transit key (``chamberlain-ledger-<env>``, ed25519), which only
  the orchestrators of that environment may use. ``_authority/configurator`` is the configurator's partition.
- the previous release's layout, one chain for everything: ``<seq:012d>`` entries directly below the prefix and
  ``_chamberlain/ledger-head``. Still read and verified (unsigned: reported as a warning), never written by a
  partitioned writer; the upgrade command migrates it.

Every entry names its partition (``partition``, covered by the hash) and carries ``sig``, the transit signature
(``vault:v<n>:<base64>``) of ``chamberlain-ledger:<partition>:<hash>``: an entry copied to another partition, or
forged and well-chained by someone without the key, fails verification against the public keys pinned in Git.

A damaged slot (no entry, garbage JSON, wrong schema, a sequence number or partition that is not its place) is
reported by ``verify`` with its partition, seq and reason, and never blocks an append: the writer walks past it and
the next entry chains to the last intact entry before it (deterministic: every writer that reads the slot makes the
same choice, and check-and-set 0 still decides which one of concurrent writers gets the next seq).

Calls per append (the head names the last seq *and* hash, and a read returns the head's KV version): read the
head (skipped when this instance appended last), sign, create entry ``seq + 1`` with CAS 0, write the head with
CAS = the version read. Only a refused CAS costs more: a refused entry means the head lags or another writer got
there first, so the slot at that seq is read and the chain continues after it; a refused head is read again and
rewritten only when it still names an earlier entry. A group of entries (:meth:`Ledger.append_many`: many
secrets provisioned at once) costs one signature request, its entries and one head write. A caller that must
append an entry at most once across crashes (a rotation run's one entry) keeps a :class:`LedgerMark` from before its
first attempt and passes it with ``find``: entries after the mark are the only places an earlier attempt can have
written to.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chamberlain.authority.errors import CasConflict, Forbidden
from chamberlain.authority.kv import KV, SecretVersion
from chamberlain.clock import Clock, rfc3339
from chamberlain.intent.paths import AUTHORITY_PARTITION, LEDGER_HEAD_NAME, LEDGER_PREFIX, TRANSIT_MOUNT, ledger_key
from chamberlain.intent.paths import LEDGER_HEAD as HEAD_PATH

GENESIS = "0" * 64
MAX_DETAIL_CHARS = 256
MAX_APPEND_STEPS = 10_000  # slots walked past in one append (a lagging head, contention) before giving up
_SIGNATURE = re.compile(r"vault:v([1-9][0-9]{0,8}):([A-Za-z0-9+/=]{1,200})")

Event = Literal[
    "authority-init",
    "authority-configure",
    "authority-rekey",
    "authority-unseal",
    "authority-restore",  # a snapshot restored, or the sealed shares' Secret re-created from a backup or export
    "handover",
    "retire",
    "value-created",
    "policy-change",
    "rotation",
    "upgrade",  # chamberlain upgrade: one entry per step; in each new partition, the link to the old layout
    "playbook",  # chamberlain playbook / root rotate / gitops-key --rotate: what was done and why
    "decommission",  # spec.retire: the data soft-deleted (undoable)
    "decommission-undo",  # chamberlain retire --undo: the soft-deleted versions restored
    "decommission-purge",  # the undo window passed: every version and the metadata removed
    "env-teardown",  # chamberlain env down: an ephemeral instance's secrets removed
    "adopt",  # chamberlain adopt verify: a value already in a cluster Secret imported (source.existingSecret)
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


def make_draft(event: Event, *, actor: str, secret: str | None = None, path: str | None = None,
               run: str | None = None, reason: str | None = None, result: Result = "ok",
               details: Mapping[str, str] | None = None) -> Draft:
    """A draft as :meth:`Ledger.append` makes it: reason and detail values cut to :data:`MAX_DETAIL_CHARS`."""
    return Draft(event=event, result=result, secret=secret, path=path, actor=actor, run=run,
                 reason=reason[:MAX_DETAIL_CHARS] if reason else None,
                 details={k: str(v)[:MAX_DETAIL_CHARS] for k, v in sorted((details or {}).items())})


class LedgerEntry(Draft):
    """One chained entry: the draft, its place (``partition``, ``seq``), when, the previous entry's hash, its own,
    and the transit signature of its hash (empty in the old layout)."""

    seq: int
    time: str
    prev: str
    partition: str = ""  # "<env>/<cluster>"; empty in the previous release's one chain
    hash: str = ""
    sig: str = ""

    def computed_hash(self) -> str:
        body = self.model_dump(exclude={"hash", "sig"})
        if not body["partition"]:
            del body["partition"]  # old-layout entries were hashed without the field: their hashes still verify
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, order=True)
class Partition:
    """One chain: the entries of one environment written from one cluster."""

    environment: str
    cluster: str

    @property
    def name(self) -> str:
        return f"{self.environment}/{self.cluster}"

    @property
    def prefix(self) -> str:
        return f"{LEDGER_PREFIX}/{self.name}"

    @property
    def key(self) -> str:
        """The transit key that signs this partition."""
        return ledger_key(self.environment)


AUTHORITY = Partition(*AUTHORITY_PARTITION)


def signing_message(partition: str, entry_hash: str) -> bytes:
    """What the transit key signs for an entry (domain-separated; the hash covers the whole entry)."""
    return f"chamberlain-ledger:{partition}:{entry_hash}".encode()


@dataclass(frozen=True)
class Damaged:
    """A slot that holds no valid entry for its place, and why (never the slot's content)."""

    seq: int
    reason: str


Slot = LedgerEntry | Damaged


class Signer(Protocol):
    def sign(self, key: str, message: bytes) -> str:
        """The signature (``vault:v<n>:<base64>``) of ``message`` with transit key ``key``."""
        ...


class TransitAPI(Protocol):
    def sign(self, mount: str, name: str, data: bytes) -> str: ...


@dataclass(frozen=True)
class TransitSigner:
    """Signs with the authority's transit engine at ``mount`` (the key never leaves the authority)."""

    transit: TransitAPI
    mount: str = TRANSIT_MOUNT

    def sign(self, key: str, message: bytes) -> str:
        return self.transit.sign(self.mount, key, message)

    def sign_many(self, key: str, messages: list[bytes]) -> list[str]:
        """Every message's signature, in order: one request when the transit client batches (``sign_batch``)."""
        batch = getattr(self.transit, "sign_batch", None)
        if batch is not None and len(messages) > 1:
            signatures: list[str] = batch(self.mount, key, messages)
            return signatures
        return [self.transit.sign(self.mount, key, m) for m in messages]


class PublicKeys(Protocol):
    def verify(self, key: str, version: int, signature: bytes, message: bytes) -> str | None:
        """None when ``signature`` verifies; else why not (the key or version is not pinned, it does not match)."""
        ...


@dataclass
class Verification:
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged: list[tuple[str, int, str]] = field(default_factory=list)  # (partition, seq, reason): the evidence
    partitions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class LedgerMark:
    """Where the head stood: the last slot it named and the hash the next entry chains to (0 and :data:`GENESIS`
    for an empty ledger) and the head record's KV version (the CAS of the next head write; 0: no head)."""

    seq: int = 0
    hash: str = GENESIS
    head_version: int = 0


def _seq_of(key: str) -> int | None:
    return int(key) if len(key) == 12 and key.isdigit() else None


class LedgerReader:
    """The ledger in ``mount``, for reading and verifying (an auditor, ``status``, ``audit show``): every partition
    and the old layout. ``partition`` is the chain :meth:`entry`, :meth:`mark` and :meth:`find_after` look at
    (None: the old layout's one chain)."""

    def __init__(self, kv: KV, mount: str, partition: Partition | None = None) -> None:
        self._kv = kv
        self._mount = mount
        self._partition = partition

    # ------------------------------------------------------------------ layout

    @property
    def partition(self) -> Partition | None:
        return self._partition

    def _entry_path(self, seq: int, partition: Partition | None = None) -> str:
        part = partition if partition is not None else self._partition
        return f"{part.prefix if part else LEDGER_PREFIX}/{seq:012d}"

    def _head_path(self) -> str:
        return f"{self._partition.prefix}/{LEDGER_HEAD_NAME}" if self._partition else HEAD_PATH

    # ------------------------------------------------------------------ reading

    def _parse(self, version: SecretVersion, seq: int, partition: Partition | None) -> Slot:
        raw = version.data.get("entry")
        if version.deleted or not isinstance(raw, str):
            return Damaged(seq, "the slot holds no entry (deleted, destroyed or foreign data)")
        try:
            entry = LedgerEntry.model_validate_json(raw)
        except ValidationError as exc:
            kinds = sorted({str(e["type"]) for e in exc.errors()})
            return Damaged(seq, f"not a ledger entry ({', '.join(kinds)[:120]})")  # never the content itself
        if entry.seq != seq:
            return Damaged(seq, f"holds entry {entry.seq} in the place of {seq} (moved or reordered)")
        want = partition.name if partition else ""
        if entry.partition != want:
            found = entry.partition or "(old layout)"
            return Damaged(seq, f"names partition {found!r}, not {want or '(old layout)'!r}")
        return entry

    def _slot(self, seq: int, partition: Partition | None = None) -> Slot | None:
        part = partition if partition is not None else self._partition
        version = self._kv.read(self._mount, self._entry_path(seq, part))
        return None if version is None else self._parse(version, seq, part)

    def entry(self, seq: int) -> LedgerEntry | None:
        """Entry number ``seq`` of this reader's partition (one read), or None when there is none or it is
        damaged."""
        slot = self._slot(seq)
        return slot if isinstance(slot, LedgerEntry) else None

    def mark(self) -> LedgerMark:
        """Where the head stands now (one read). The head may lag behind entries whose writer crashed before
        moving it; :meth:`append` walks past those, so a mark is a lower bound of the tail. A damaged head is
        replaced by a scan of the partition's slots."""
        head = self._kv.read(self._mount, self._head_path())
        if head is None:
            return LedgerMark()
        seq, hash_ = head.data.get("seq", ""), head.data.get("hash", "")
        if isinstance(seq, str) and seq.isdigit() and len(seq) <= 12 and re.fullmatch(r"[0-9a-f]{64}", str(hash_)):
            return LedgerMark(int(seq), str(hash_), head.version)
        return self._scan_tail(head.version)

    def _scan_tail(self, head_version: int) -> LedgerMark:
        slots = self._chain(self._partition)
        last = max(slots, default=0)
        for seq in sorted(slots, reverse=True):
            if isinstance(slots[seq], LedgerEntry):
                return LedgerMark(last, slots[seq].hash, head_version)  # type: ignore[union-attr]
        return LedgerMark(last, GENESIS, head_version)

    def find_after(self, mark: LedgerMark, match: Callable[[LedgerEntry], bool]) -> LedgerEntry | None:
        """The first entry after ``mark`` for which ``match`` is true, walking forward (past damaged slots) to the
        real tail (one read per slot appended since the mark, plus one)."""
        seq = mark.seq
        while (slot := self._slot(seq + 1)) is not None:
            if isinstance(slot, LedgerEntry) and match(slot):
                return slot
            seq += 1
        return None

    def _keys(self, prefix: str) -> list[str]:
        return self._kv.list(self._mount, prefix)

    def partitions(self) -> list[Partition | None]:
        """Every chain in the mount: None (the old layout) when it has entries or a head, then each partition."""
        out: list[Partition | None] = []
        top = self._keys(LEDGER_PREFIX)
        if any(_seq_of(k) is not None for k in top) or self._kv.read_metadata(self._mount, HEAD_PATH) is not None:
            out.append(None)
        for env in sorted(k for k in top if k.endswith("/")):
            for cluster in sorted(k for k in self._keys(f"{LEDGER_PREFIX}/{env}") if k.endswith("/")):
                out.append(Partition(env.rstrip("/"), cluster.rstrip("/")))
        return out

    def _chain(self, partition: Partition | None) -> dict[int, Slot]:
        prefix = partition.prefix if partition else LEDGER_PREFIX
        slots: dict[int, Slot] = {}
        for key in self._keys(prefix):
            seq = _seq_of(key)
            if seq is None:
                continue
            version = self._kv.read(self._mount, f"{prefix}/{key}")
            if version is not None:
                slots[seq] = self._parse(version, seq, partition)
        return dict(sorted(slots.items()))

    def entries(self) -> list[LedgerEntry]:
        """Every intact entry of every chain: the old layout first, then partition by partition, in seq order."""
        return [slot for part in self.partitions() for slot in self._chain(part).values()
                if isinstance(slot, LedgerEntry)]

    def for_secret(self, name: str) -> list[LedgerEntry]:
        return [e for e in self.entries() if e.secret == name]

    # ------------------------------------------------------------------ verifying

    def verify(self, keys: PublicKeys | None = None) -> Verification:
        """Every chain: hashes, links, the heads, rewrites, damaged slots; with ``keys`` (pinned in Git) every
        partition entry's signature too (old-layout entries are unsigned: one warning)."""
        report = Verification()
        for part in self.partitions():
            report.partitions.append(part.name if part else "(old layout)")
            self._verify_chain(part, keys, report)
        return report

    def _verify_chain(self, part: Partition | None, keys: PublicKeys | None, report: Verification) -> None:
        where = f"partition {part.name}: " if part else ""
        slots = self._chain(part)
        report.entries += sum(isinstance(s, LedgerEntry) for s in slots.values())
        prev_hash, expected = GENESIS, 1
        for seq, slot in slots.items():
            if seq != expected:
                report.problems.append(f"{where}entry {expected} is missing or out of order (found seq {seq} in "
                                       "its place)")
            expected = seq + 1
            if isinstance(slot, Damaged):
                report.damaged.append((part.name if part else "", seq, slot.reason))
                report.problems.append(f"{where}entry {seq} is damaged: {slot.reason}")
                continue
            if slot.computed_hash() != slot.hash:
                report.problems.append(f"{where}entry {seq} was edited: its hash does not match its content")
            if slot.prev != prev_hash:
                report.problems.append(f"{where}entry {seq} does not chain to the entry before it")
            prev_hash = slot.hash
            if keys is not None and part is not None:
                reason = _signature_problem(slot, part, keys)
                if reason is not None:
                    report.problems.append(f"{where}entry {seq} {reason}")
            meta = self._kv.read_metadata(self._mount, self._entry_path(seq, part))
            if meta is not None and meta.current_version != 1:
                report.problems.append(f"{where}entry {seq} was rewritten (KV version {meta.current_version})")
        if keys is not None and part is None and slots:
            report.warnings.append(f"{len(slots)} entries of the previous release's layout are unsigned (hash "
                                   "chain only); `chamberlain upgrade` moves new entries to signed partitions")
        self._verify_head(part, where, slots, prev_hash, report)

    def _verify_head(self, part: Partition | None, where: str, slots: Mapping[int, Slot], tail_hash: str,
                     report: Verification) -> None:
        head_path = f"{part.prefix}/{LEDGER_HEAD_NAME}" if part else HEAD_PATH
        head = self._kv.read(self._mount, head_path)
        last = max(slots, default=0)
        if head is None:
            if slots:
                report.problems.append(f"{where}entries exist but the head is missing")
            return
        raw = head.data.get("seq", "")
        if not (isinstance(raw, str) and raw.isdigit() and len(raw) <= 12):
            report.problems.append(f"{where}the head is damaged (no sequence number); the next append repairs it")
            return
        head_seq = int(raw)
        if head_seq > last:
            report.problems.append(f"{where}the head names entry {head_seq}, but the ledger ends at {last}: "
                                   "entries were deleted")
        elif head_seq == last and head.data.get("hash") != tail_hash:
            report.problems.append(f"{where}the head hash does not match the last entry")
        elif head_seq < last:
            report.warnings.append(f"{where}the head lags at {head_seq} of {last} (a writer stopped before "
                                   "updating it); the next append repairs it")


def _signature_problem(entry: LedgerEntry, part: Partition, keys: PublicKeys) -> str | None:
    if not entry.sig:
        return "is not signed"
    m = _SIGNATURE.fullmatch(entry.sig)
    if m is None:
        return "has a malformed signature"
    try:
        signature = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        return "has a malformed signature"
    reason = keys.verify(part.key, int(m.group(1)), signature, signing_message(part.name, entry.hash))
    return None if reason is None else f"has a bad signature: {reason}"


class Ledger(LedgerReader):
    """The ledger in ``mount``, for appending too: every entry is stamped with ``clock.now()``.

    Three forms: a partition's writer (``partition`` and ``signer``: entries signed with the partition's key); a
    cluster's book (``cluster`` and ``signer``: :meth:`for_environment` hands out the partition writers, cached);
    and, with neither, the old layout's one unsigned chain (the previous release's format, kept for tests)."""

    def __init__(self, kv: KV, mount: str, clock: Clock, *, partition: Partition | None = None,
                 signer: Signer | None = None, cluster: str | None = None) -> None:
        super().__init__(kv, mount, partition)
        self._clock = clock
        self._signer = signer
        self._cluster = cluster
        self._children: dict[str, Ledger] = {}
        self._mark: LedgerMark | None = None  # the tail after this instance's last append (saves a head read)

    def for_environment(self, environment: str) -> Ledger:
        """The writer of ``environment``'s partition on this book's cluster (itself when it is not a book)."""
        if self._cluster is None:
            return self
        child = self._children.get(environment)
        if child is None:
            child = self._children[environment] = self._child(Partition(environment, self._cluster))
        return child

    @property
    def tail_hint(self) -> LedgerMark | None:
        """The tail after this instance's last append (None: none yet, or it is unknown): a lower bound of the
        partition's tail, known without a read."""
        return self._mark

    def _child(self, partition: Partition) -> Ledger:
        return Ledger(self._kv, self._mount, self._clock, partition=partition, signer=self._signer)

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
        self._writer_check()
        draft = make_draft(event, actor=actor, secret=secret, path=path, run=run, reason=reason, result=result,
                           details=details)
        return self._append(draft, after, find)

    def _writer_check(self) -> None:
        if self._cluster is not None and self._partition is None:
            raise TypeError("a ledger book appends through for_environment(env), never directly")

    def append_many(self, drafts: Sequence[Draft], after: LedgerMark | None = None,
                    finds: Sequence[Callable[[LedgerEntry], bool] | None] | None = None) -> list[LedgerEntry]:
        """Append ``drafts`` in order and return their entries (a group commit). They are sealed together and
        signed in one request where the signer batches; the entries are still created one at a time, in order,
        with CAS 0 (two at once could not be safe: if another writer took the first one's seq, the second would
        chain to a hash that is not in the ledger); the head moves once, after the last. Calls for n drafts: 1
        signature, n entries, 1 head (plus the head read when this instance has not appended before). A refused
        entry (another writer, a lagging head) hands it and the rest to :meth:`append`'s walk, one by one. ``after``:
        a mark the caller read (used when this instance has appended nothing yet, instead of reading the head);
        ``finds``: each draft's ``find`` (see :meth:`append`), used by that walk."""
        self._writer_check()
        if not drafts:
            return []
        tail = self._mark or after or self.mark()
        sealed = self._seal_many(list(drafts), tail)
        written: list[LedgerEntry] = []
        for entry in sealed:
            try:
                self._kv.write(self._mount, self._entry_path(entry.seq), {"entry": entry.model_dump_json()}, cas=0)
            except (CasConflict, Forbidden):
                after = LedgerMark(written[-1].seq, written[-1].hash, tail.head_version) if written else tail
                self._mark = None
                return written + self._append_rest(list(drafts[len(written):]),
                                                   list(finds[len(written):]) if finds else None, after)
            written.append(entry)
        self._mark = self._update_head(written[-1], tail.head_version)
        return written

    def _append_rest(self, drafts: list[Draft], finds: list[Callable[[LedgerEntry], bool] | None] | None,
                     after: LedgerMark) -> list[LedgerEntry]:
        """A group commit met a slot it did not expect: the slots past ``after`` are read once, so each draft's
        earlier attempt (its ``find``) is found wherever it lies among them (one draft's walk would pass another's),
        and the others are appended one by one, each walking on from the tail."""
        found: dict[int, LedgerEntry] = {}
        if finds and any(f is not None for f in finds):
            seq = after.seq
            while (slot := self._slot(seq + 1)) is not None:
                if isinstance(slot, LedgerEntry):
                    hit = next((i for i, f in enumerate(finds) if f is not None and i not in found and f(slot)),
                               None)
                    if hit is not None:
                        found[hit] = slot
                seq += 1
        out: list[LedgerEntry] = []
        first = True
        for i, draft in enumerate(drafts):
            if i in found:
                out.append(found[i])
                continue
            out.append(self._append(draft, after if first else None, finds[i] if finds else None))
            first = False
        return out

    def _seal(self, draft: Draft, tail: LedgerMark) -> LedgerEntry:
        part = self._partition
        entry = LedgerEntry(seq=tail.seq + 1, time=rfc3339(self._clock.now()), prev=tail.hash,
                            partition=part.name if part else "", **draft.model_dump())
        entry = entry.model_copy(update={"hash": entry.computed_hash()})
        if part is not None and self._signer is not None:
            entry = entry.model_copy(update={"sig": self._signer.sign(part.key,
                                                                      signing_message(part.name, entry.hash))})
        return entry

    def _seal_many(self, drafts: list[Draft], tail: LedgerMark) -> list[LedgerEntry]:
        """``drafts`` chained after ``tail`` and each other, signed together."""
        part = self._partition
        entries: list[LedgerEntry] = []
        prev = tail
        for draft in drafts:
            entry = LedgerEntry(seq=prev.seq + 1, time=rfc3339(self._clock.now()), prev=prev.hash,
                                partition=part.name if part else "", **draft.model_dump())
            entry = entry.model_copy(update={"hash": entry.computed_hash()})
            entries.append(entry)
            prev = LedgerMark(entry.seq, entry.hash)
        if part is None or self._signer is None:
            return entries
        messages = [signing_message(part.name, e.hash) for e in entries]
        sign_many = getattr(self._signer, "sign_many", None)
        signatures: list[str] = (sign_many(part.key, messages) if sign_many is not None
                                 else [self._signer.sign(part.key, m) for m in messages])
        return [e.model_copy(update={"sig": sig}) for e, sig in zip(entries, signatures, strict=True)]

    def _append(self, draft: Draft, after: LedgerMark | None,
                find: Callable[[LedgerEntry], bool] | None) -> LedgerEntry:
        """Chain ``draft`` after ``after`` (default: the head), walking past slots others (or damage) hold."""
        tail = after if after is not None else (self._mark or self.mark())
        for _ in range(MAX_APPEND_STEPS):
            entry = self._seal(draft, tail)
            try:
                self._kv.write(self._mount, self._entry_path(entry.seq), {"entry": entry.model_dump_json()}, cas=0)
            except (CasConflict, Forbidden) as exc:
                # The head lags (a writer crashed before moving it) or another writer appended: chain after the
                # slot that holds this seq (or, if it vanished meanwhile, start again from the head). A writer
                # whose policy grants only `create` on entries gets 403, not a CAS error, for an existing one.
                taken = self._slot(entry.seq)
                if taken is None:
                    if isinstance(exc, Forbidden):
                        raise
                    tail = self.mark()
                    continue
                if isinstance(taken, Damaged):
                    # Walk past it: the next entry chains to the last intact one (verify reports the slot).
                    tail = LedgerMark(entry.seq, tail.hash, tail.head_version)
                    continue
                if find is not None and find(taken):
                    self._mark = None
                    return taken
                tail = LedgerMark(taken.seq, taken.hash, tail.head_version)
                continue
            self._mark = self._update_head(entry, tail.head_version)
            return entry
        raise CasConflict(f"ledger: could not append after {MAX_APPEND_STEPS} attempts (heavy contention)")

    def _update_head(self, entry: LedgerEntry, head_version: int) -> LedgerMark | None:
        """Point the head at ``entry`` (CAS = ``head_version``); the mark after it, None when it is unknown."""
        body = {"seq": str(entry.seq), "hash": entry.hash}
        path = self._head_path()
        try:
            return LedgerMark(entry.seq, entry.hash, self._kv.write(self._mount, path, body, cas=head_version))
        except CasConflict:
            pass  # another append moved the head since it was read: look again
        head = self._kv.read(self._mount, path)
        current = head.version if head is not None else 0
        raw = head.data.get("seq", "") if head is not None else ""
        if isinstance(raw, str) and raw.isdigit() and len(raw) <= 12 and int(raw) >= entry.seq:
            return None
        # On conflict a later append moved the head; verification walks past a lagging head anyway.
        with contextlib.suppress(CasConflict):
            return LedgerMark(entry.seq, entry.hash, self._kv.write(self._mount, path, body, cas=current))
        return None


__all__ = [
    "AUTHORITY",
    "GENESIS",
    "HEAD_PATH",
    "LEDGER_PREFIX",
    "Damaged",
    "Draft",
    "Ledger",
    "LedgerEntry",
    "LedgerMark",
    "LedgerReader",
    "Partition",
    "PublicKeys",
    "Signer",
    "TransitAPI",
    "TransitSigner",
    "Verification",
    "make_draft",
    "signing_message",
]
