"""Initial runtime values: create each ``source.generate`` secret in Vault once, with its policy and a ledger entry.

Steps, decided by the pure :func:`next_step` over what Vault holds now (so a crash anywhere resumes):

========  ================================================================================================
create    generate fresh values and write them with check-and-set 0; a conflict means someone else created
          the secret first, which is fine: it is left untouched
record    custom_metadata: ``authority=vault``, ``created-by=chamberlain``, the intent and the policy in force
ledger    append ``value-created`` and note its sequence number on the secret (``ledger-seq``)
done      nothing to do: the value exists and is recorded (or belongs to someone else's record)
========  ================================================================================================

An existing value is never rewritten. A value found at an intent's runtime path without any chamberlain record is
*adopted* (``record`` attaches the metadata, the ledger entry says ``origin: found``): the checker reserves each
runtime path for exactly one intent, and this is also how a run resumes after a crash between create and record.

Scale (issue 16): units run on ``workers`` threads; the state after a step this run made is known without reading
it back, and a folder holding several units is listed once first (a path it does not name has nothing to read), so
a new secret costs its share of one listing, the value, its marker, two metadata PATCHes and its share of a
ledger group commit (:class:`_Lane`: one writer per partition at a time, every entry waiting then goes in one
signature request, entries one by one, one head write; no worker waits for its entry). ``record`` notes
``ledger-after``, a seq at or below the partition's tail: a run that resumes a secret recorded but not yet
ledgered looks for an earlier attempt's entry only after it (a record without it, from an earlier release, is
looked up in the whole ledger as before).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Draft, Ledger, LedgerEntry, LedgerMark, LedgerReader, make_draft
from chamberlain.authority.errors import AuthorityError, CasConflict, MetadataTooLarge
from chamberlain.authority.kv import KV, SecretMetadata, update_metadata, write_and_custom
from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.faults import checkpoint
from chamberlain.handover import metadata as md
from chamberlain.intent.loader import Repository
from chamberlain.intent.model import AnyGenerator, RotationPolicySpec
from chamberlain.intent.paths import VaultPath, effective_policy, placements
from chamberlain.values.generate import generate_values
from chamberlain.values.markers import LegacyMarkers, Markers

MAX_STEPS = 8
DEFAULT_WORKERS = 8  # what the provision command runs with: the authority's raft log, not the client, is the limit
MAX_GROUP = 64  # ledger entries per group commit at most
# Units whose entry waits for the lane, at most: no new unit starts beyond it. The chain is the pace-setter; running
# ahead of it only loads the server (slowing the chain) and widens what a crash leaves to resume.
MAX_WAITING = MAX_GROUP
# Units of one folder from which a listing replaces their metadata reads: a listing costs about one read.
LIST_MIN = 4


class ProvisionError(ChamberlainError):
    """Initial values could not be created or recorded; a re-run resumes where this one stopped."""


class Step(StrEnum):
    CREATE = "create"
    RECORD = "record"
    LEDGER = "ledger"
    DONE = "done"


@dataclass(frozen=True)
class Observed:
    exists: bool
    recorded: bool  # custom_metadata says authority=vault
    ours: bool  # created-by=chamberlain
    ledgered: bool  # ledger-seq noted


def next_step(s: Observed) -> Step:
    if not s.exists:
        return Step.CREATE
    if not s.recorded:
        return Step.RECORD
    if s.ours and not s.ledgered:
        return Step.LEDGER
    return Step.DONE


@dataclass(frozen=True)
class ProvisionUnit:
    intent: str
    environment: str
    vault: VaultPath
    generators: dict[str, AnyGenerator] = field(repr=False)
    policy_name: str | None
    policy: RotationPolicySpec | None


@dataclass
class ProvisionOutcome:
    unit: ProvisionUnit
    result: Literal["created", "exists", "planned"]
    steps: list[str]
    marker: str | None = None
    ledger_seq: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "intent": self.unit.intent,
            "environment": self.unit.environment,
            "path": self.unit.vault.full,
            "result": self.result,
            "steps": list(self.steps),
            "marker": self.marker,
            "ledgerSeq": self.ledger_seq,
        }


def provision_units(repo: Repository, environment: str | None = None) -> list[ProvisionUnit]:
    """One unit per (generate intent, environment); clusters of an environment share its runtime path."""
    platform = repo.platform
    if platform is None:
        raise UsageError(f"{repo.root}: the repository needs exactly one Platform")
    if environment is not None and platform.environment(environment) is None:
        raise UsageError(f"unknown environment {environment!r}")
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    units: dict[VaultPath, ProvisionUnit] = {}
    for loaded in sorted(repo.intents, key=lambda i: i.obj.name):
        intent = loaded.obj
        generators = intent.spec.source.generate
        if generators is None:
            continue
        resolved = effective_policy(platform, policies, intent)
        for placement in placements(platform, intent):
            if environment is not None and placement.environment != environment:
                continue
            units.setdefault(placement.vault, ProvisionUnit(
                intent=intent.name,
                environment=placement.environment,
                vault=placement.vault,
                generators=dict(generators),
                policy_name=resolved[0] if resolved else None,
                policy=resolved[1] if resolved else None,
            ))
    return list(units.values())


def _observe(meta: SecretMetadata | None) -> Observed:
    custom = meta.custom if meta is not None else {}
    return Observed(
        exists=meta is not None and meta.current_version > 0,
        recorded=custom.get(wk.AUTHORITY) == wk.AUTHORITY_VAULT,
        ours=custom.get(wk.CREATED_BY) == wk.CREATED_BY_CHAMBERLAIN,
        ledgered=wk.LEDGER_SEQ in custom,
    )


class _Lane:
    """The ledger chain of one partition, as a lane (issue 16): entries are appended one writer at a time, so the
    units waiting for theirs queue here, and whichever worker finds the lane idle runs it: it appends everything
    waiting (up to :data:`MAX_GROUP`) with :meth:`Ledger.append_many`, again until nothing waits, then goes back
    to other work. No worker waits for its entry: a unit whose entry is written is finished later (its
    ``ledger-seq``) by any worker. The entries stay one per secret, hash-chained, signed and in order."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.queue: list[_Flight] = []  # guarded by the scheduler's lock
        self.running = False
        self._floor: int | None = None
        self._floor_lock = threading.Lock()
        self.head: LedgerMark | None = None  # the head as floor() read it: the first group starts there

    def floor(self) -> int:
        """A seq at or below the partition's tail now (what the last append left, else one head read)."""
        with self._floor_lock:
            if self._floor is None:
                hint = self.ledger.tail_hint
                if hint is None:
                    hint = self.head = self.ledger.mark()
                self._floor = hint.seq
            return self._floor

    def appended(self, seq: int) -> None:
        with self._floor_lock:
            self._floor = max(seq, self._floor or 0)


@dataclass(eq=False)
class _Flight:
    """One unit on its way: the steps done, what it knows, and (while queued on a lane) the entry it waits for."""

    index: int
    unit: ProvisionUnit
    done: list[str] = field(default_factory=list)
    created_here: bool = False
    marker: str | None = None
    custom: Mapping[str, str] = field(default_factory=dict)
    draft: Draft | None = None
    entry: LedgerEntry | None = None
    outcome: ProvisionOutcome | None = None
    error: BaseException | None = None
    step: Step = Step.CREATE  # the step under way (named in a failure)
    unlisted: bool = False  # its folder's listing did not name it: no metadata to read before the create


def _find_entry(ledger: LedgerReader, unit: ProvisionUnit, custom: Mapping[str, str]) -> LedgerEntry | None:
    """An earlier attempt's ``value-created`` entry for ``unit``: after the ``ledger-after`` mark its record
    notes (the slots appended since), or, for a record without one, anywhere in the ledger."""

    def match(entry: LedgerEntry) -> bool:
        return (entry.event == "value-created" and entry.result == "ok" and entry.secret == unit.intent
                and entry.path == unit.vault.full)

    after = custom.get(wk.LEDGER_AFTER, "")
    if after.isdigit():
        return ledger.find_after(LedgerMark(int(after)), match)
    for entry in reversed(ledger.for_secret(unit.intent)):
        if match(entry):
            return entry
    return None


@dataclass(frozen=True)
class _Fresh:
    """The version this run just created and its marker (computed while the values were still in hand)."""

    version: int
    marker: str
    # the custom_metadata as the create left it (KV v2 answers it; None: this KV cannot tell). Metadata can exist
    # without a version (`kv metadata put`), and the record's PATCH, which OpenBao and Vault merge without counting
    # keys, is checked against it
    custom: Mapping[str, str] | None = None


def _create(kv: KV, unit: ProvisionUnit, markers: Markers) -> _Fresh | None:
    """Write a fresh value with check-and-set 0; None when someone else created it meanwhile (theirs stands)."""
    values = generate_values(unit.generators)
    try:
        version, custom = write_and_custom(kv, unit.vault.mount, unit.vault.path, values, cas=0)
        checkpoint("provision.create")
        return _Fresh(version, markers.of(unit.vault, values), custom)
    except CasConflict:
        return None
    finally:
        values.clear()  # drop our only reference to the plaintext as soon as it is stored and marked


def _record(kv: KV, unit: ProvisionUnit, meta: SecretMetadata, fresh: _Fresh | None, r: _Run) -> dict[str, str] | None:
    """Tag the value with who made it, when, its marker and the policy in force; the update written (None: the
    value vanished). The marker of a value this run created is known; a found one is read and marked."""
    if fresh is not None and fresh.version == meta.current_version:
        version, marker = fresh.version, fresh.marker
    else:
        current = kv.read(unit.vault.mount, unit.vault.path)
        if current is None:
            return None
        version, marker = current.version, r.markers.of(unit.vault, current.data)
    update = {
        wk.AUTHORITY: wk.AUTHORITY_VAULT,
        wk.CREATED_BY: wk.CREATED_BY_CHAMBERLAIN,
        wk.CREATED_AT: rfc3339(r.clock.now()),
        wk.INTENT: unit.intent,
        wk.ENVIRONMENT: unit.environment,
        wk.ORIGIN: "generated",
        wk.VALUE_VERSION: str(version),
        wk.VALUE_MARKER: marker,
        wk.LEDGER_AFTER: str(r.lanes[unit.environment].floor()),
        **md.policy_metadata(unit.policy_name, unit.policy),
    }
    try:
        md.merged(meta.custom, update)
    except MetadataTooLarge as exc:
        raise ProvisionError(f"{unit.vault}: cannot record the new secret ({exc})") from None
    update_metadata(kv, unit.vault.mount, unit.vault.path, update, meta.custom)
    checkpoint("provision.record")
    return update


def _entry_draft(fl: _Flight, r: _Run) -> Draft:
    custom = fl.custom
    return make_draft(
        "value-created",
        actor=r.actor,
        secret=fl.unit.intent,
        path=fl.unit.vault.full,
        run=r.run,
        reason="initial value of a generated secret",
        details={
            "environment": fl.unit.environment,
            "origin": "created" if fl.created_here else "found",
            "version": custom.get(wk.VALUE_VERSION, ""),
            "marker": custom.get(wk.VALUE_MARKER, ""),
            "policy": custom.get(wk.POLICY_NAME, ""),
        },
    )


def _note_seq(kv: KV, fl: _Flight, entry: LedgerEntry) -> None:
    """The ledger step's end: the entry's seq noted on the secret (a crash before this finds the entry again)."""
    checkpoint("provision.ledger")
    unit = fl.unit
    update_metadata(kv, unit.vault.mount, unit.vault.path, {wk.LEDGER_SEQ: str(entry.seq)}, fl.custom)
    fl.done.append(Step.LEDGER.value)
    fl.custom = {**fl.custom, wk.LEDGER_SEQ: str(entry.seq)}


@dataclass(frozen=True)
class _Run:
    """One ``provision`` command: where it writes and records, who and when, and whether only to plan."""

    kv: KV
    actor: str
    run: str
    clock: Clock
    dry_run: bool
    markers: Markers
    lanes: Mapping[str, _Lane]  # by environment: its partition's ledger lane


def _advance(fl: _Flight, r: _Run) -> bool:
    """Bring a unit to DONE (``fl.outcome``), or as far as a new ledger entry (``fl.draft``: True, queue it):
    observe, decide (:func:`next_step`), do that one step, repeat. After a step of our own succeeded, its result
    is the next observation (no read back); after a lost race, Vault is read again."""
    kv, unit = r.kv, fl.unit
    mount, path = unit.vault.mount, unit.vault.path
    fresh: _Fresh | None = None
    recorded_here = False
    meta = None if fl.unlisted else kv.read_metadata(mount, path)
    for _ in range(MAX_STEPS):
        step = next_step(_observe(meta))
        fl.custom = meta.custom if meta is not None else {}
        fl.marker = fl.custom.get(wk.VALUE_MARKER, fl.marker)
        if step is Step.DONE:
            fl.outcome = _outcome(fl)
            return False
        if r.dry_run:
            order = list(Step)[:-1]
            fl.outcome = ProvisionOutcome(unit, "planned", [s.value for s in order[order.index(step):]], fl.marker)
            return False
        fl.step = step
        if step is Step.CREATE:
            if (fresh := _create(kv, unit, r.markers)) is None:
                meta = kv.read_metadata(mount, path)
                continue
            fl.created_here = True
            known = fresh.custom if fresh.custom is not None else (meta.custom if meta is not None else {})
            meta = SecretMetadata(fresh.version, fresh.version, {fresh.version: False}, dict(known))
        elif step is Step.RECORD:
            assert meta is not None
            if (update := _record(kv, unit, meta, fresh, r)) is None:
                meta = kv.read_metadata(mount, path)
                continue
            recorded_here = True
            meta = replace(meta, custom={**fl.custom, **update})
        else:
            assert meta is not None
            # Only a run that found the record already there can have a lost attempt's entry to find again.
            found = None if recorded_here else _find_entry(r.lanes[unit.environment].ledger, unit, fl.custom)
            if found is None:
                fl.draft = _entry_draft(fl, r)
                return True
            _note_seq(kv, fl, found)
            meta = replace(meta, custom=dict(fl.custom))
            continue
        fl.done.append(step.value)
    raise ProvisionError(f"initial value of {unit.intent} at {unit.vault} did not settle; re-run")


def _outcome(fl: _Flight) -> ProvisionOutcome:
    seq_text = fl.custom.get(wk.LEDGER_SEQ, "")
    return ProvisionOutcome(fl.unit, "created" if fl.created_here else "exists", fl.done, fl.marker,
                            int(seq_text) if seq_text.isdigit() else None)


def _failure(fl: _Flight, exc: BaseException) -> BaseException:
    if isinstance(exc, AuthorityError):
        return ProvisionError(f"initial value of {fl.unit.intent} at {fl.unit.vault} stopped at step "
                              f"{fl.step.value}: {exc}; re-run to resume")
    return exc


class _Scheduler:
    """``workers`` threads over the units: each takes, in this order, a unit whose entry is written (to note its
    seq), an idle lane with entries waiting (to run it), the next unit (to advance it). A failure stops new units;
    the ones in flight finish."""

    def __init__(self, flights: list[_Flight], r: _Run) -> None:
        self.flights = flights
        self.r = r
        self.cond = threading.Condition()
        self.next = 0
        self.inflight = 0
        self.stop = False
        self.finish: list[_Flight] = []

    def _fail(self, fl: _Flight, exc: BaseException) -> None:
        fl.error = _failure(fl, exc)
        self.stop = True

    def work(self) -> None:
        while True:
            with self.cond:
                job = self._take()
                if job is None:
                    return
            job()

    def _take(self) -> Callable[[], None] | None:
        while True:
            if self.finish:
                fl = self.finish.pop(0)
                return lambda: self._finish(fl)
            for lane in self.r.lanes.values():
                if lane.queue and not lane.running:
                    lane.running = True
                    return lambda: self._run_lane(lane)
            waiting = sum(len(lane.queue) for lane in self.r.lanes.values())
            if self.next < len(self.flights) and not self.stop and waiting < MAX_WAITING:
                fl = self.flights[self.next]
                self.next += 1
                self.inflight += 1
                return lambda: self._advance(fl)
            if self.inflight == 0:
                return None
            self.cond.wait()

    def _done(self, fl: _Flight) -> None:
        with self.cond:
            self.inflight -= 1
            self.cond.notify_all()

    def _advance(self, fl: _Flight) -> None:
        try:
            queued = _advance(fl, self.r)
        except BaseException as exc:  # a crash of one unit stops the run, like the process it stands for
            with self.cond:
                self._fail(fl, exc)
            self._done(fl)
            return
        if not queued:
            self._done(fl)
            return
        with self.cond:
            self.r.lanes[fl.unit.environment].queue.append(fl)
            self.cond.notify_all()

    def _run_lane(self, lane: _Lane) -> None:
        while True:
            with self.cond:
                group, lane.queue = lane.queue[:MAX_GROUP], lane.queue[MAX_GROUP:]
                if not group:
                    lane.running = False
                    self.cond.notify_all()
                    return
            try:
                entries = lane.ledger.append_many([fl.draft for fl in group if fl.draft is not None], lane.head)
            except BaseException as exc:
                with self.cond:
                    for fl in group:
                        self._fail(fl, exc)
                        self.inflight -= 1
                    self.cond.notify_all()
                continue
            lane.head = None  # only the first group may start from it: the ledger knows its tail from now on
            lane.appended(entries[-1].seq)
            with self.cond:
                for fl, entry in zip(group, entries, strict=True):
                    fl.entry = entry
                    fl.step = Step.LEDGER
                    self.finish.append(fl)
                self.cond.notify_all()

    def _finish(self, fl: _Flight) -> None:
        try:
            assert fl.entry is not None
            _note_seq(self.r.kv, fl, fl.entry)
            fl.outcome = _outcome(fl)
        except BaseException as exc:
            with self.cond:
                self._fail(fl, exc)
        self._done(fl)


def _unlisted(kv: KV, units: list[ProvisionUnit], workers: int) -> set[tuple[str, str]]:
    """The units' (mount, path) that a listing of their folder does not name: nothing is there, so the first
    metadata read is skipped (a cold run's one request per secret). The create's check-and-set 0 still refuses a
    value written since the listing, and the unit then reads as before. Folders of fewer than :data:`LIST_MIN` units,
    and folders that cannot be listed (a policy without ``list``, a refusal), are read unit by unit."""
    folders: dict[tuple[str, str], list[str]] = {}
    for unit in units:
        folder, _, leaf = unit.vault.path.rpartition("/")
        folders.setdefault((unit.vault.mount, folder), []).append(leaf)
    wanted = [(where, leaves) for where, leaves in folders.items() if len(leaves) >= LIST_MIN]

    def absent(item: tuple[tuple[str, str], list[str]]) -> set[tuple[str, str]]:
        (mount, folder), leaves = item
        try:
            keys = set(kv.list(mount, folder))
        except AuthorityError:
            return set()
        return {(mount, f"{folder}/{leaf}" if folder else leaf) for leaf in leaves if leaf not in keys}

    if not wanted:
        return set()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wanted))),
                            thread_name_prefix="provision-list") as pool:
        return set().union(*pool.map(absent, wanted))


def run_provision(
    units: list[ProvisionUnit],
    kv: KV,
    ledger: Ledger,
    *,
    actor: str,
    run: str,
    clock: Clock,
    dry_run: bool = False,
    markers: Markers | None = None,
    workers: int = 1,
) -> list[ProvisionOutcome]:
    """Create each unit's initial value once, record it on the secret and in the ledger (``dry_run``: the steps
    each unit still needs, nothing written). ``markers``: keyed by the authority in every live caller (v1 without).
    ``workers``: units in flight at once (``kv`` and ``markers`` are shared by them: thread-safe clients; one
    worker runs in the calling thread). The outcomes come in the order of ``units``; on a failure, units not
    started yet are not started, the ones in flight finish, and the first failure (in ``units`` order) is raised."""
    if workers < 1:
        raise UsageError("workers must be at least 1")
    lanes = {env: _Lane(ledger.for_environment(env)) for env in sorted({u.environment for u in units})}
    r = _Run(kv, actor, run, clock, dry_run, markers if markers is not None else LegacyMarkers(), lanes)
    unlisted = _unlisted(kv, units, workers)
    flights = [_Flight(i, unit, unlisted=(unit.vault.mount, unit.vault.path) in unlisted)
               for i, unit in enumerate(units)]
    scheduler = _Scheduler(flights, r)
    threads = [threading.Thread(target=scheduler.work, name=f"provision-{i}", daemon=True)
               for i in range(1, min(workers, len(units)))]
    for t in threads:
        t.start()
    scheduler.work()
    for t in threads:
        t.join()
    for fl in flights:
        if fl.error is not None:
            raise fl.error
    return [fl.outcome for fl in flights if fl.outcome is not None]
