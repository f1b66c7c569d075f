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
it back, so a new secret costs one metadata read, the value, its marker, two metadata PATCHes and its share of a
ledger group commit (:class:`_GroupAppender`: one writer per partition at a time, every entry waiting then goes in
one signature request, entries one by one, one head write). ``record`` notes ``ledger-after``, a seq at or below the
partition's tail: a run that resumes a secret recorded but not yet ledgered looks for an earlier attempt's entry
only after it (a record without it, from an earlier release, is looked up in the whole ledger as before).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Draft, Ledger, LedgerEntry, LedgerMark, LedgerReader, make_draft
from chamberlain.authority.errors import AuthorityError, CasConflict, MetadataTooLarge
from chamberlain.authority.kv import KV, SecretMetadata, update_metadata
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


class _Pending:
    __slots__ = ("draft", "entry", "error")

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.entry: LedgerEntry | None = None
        self.error: BaseException | None = None


class _GroupAppender:
    """Group commit of one partition's ``value-created`` entries: the chain has one tail, so one writer appends
    at a time; whoever finds it free takes every entry waiting (up to :data:`MAX_GROUP`) and appends them with
    :meth:`Ledger.append_many`, then hands over to the next waiter. The entries stay one per secret, hash-chained,
    signed and in the partition's order; only the signature request and the head write are shared."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False
        self._floor: int | None = None

    def floor(self) -> int:
        """A seq at or below the partition's tail now (what the last append left, else one head read)."""
        with self._cond:
            if self._floor is not None:
                return self._floor
        hint = self.ledger.tail_hint
        seq = hint.seq if hint is not None else self.ledger.mark().seq
        with self._cond:
            self._floor = max(seq, self._floor or 0)
            return self._floor

    def append(self, draft: Draft) -> LedgerEntry:
        mine = _Pending(draft)
        with self._cond:
            self._queue.append(mine)
            while True:
                while self._busy and mine.entry is None and mine.error is None:
                    self._cond.wait()
                if mine.entry is not None or mine.error is not None:
                    break
                self._busy = True
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                self._cond.release()
                try:
                    entries = self.ledger.append_many([p.draft for p in group])
                    for pending, entry in zip(group, entries, strict=True):
                        pending.entry = entry
                except BaseException as exc:  # every writer of the group sees its failure (and re-runs resume)
                    for pending in group:
                        pending.error = exc
                finally:
                    self._cond.acquire()
                    self._busy = False
                    done = [p.entry.seq for p in group if p.entry is not None]
                    if done:
                        self._floor = max(max(done), self._floor or 0)
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.entry is not None
        return mine.entry


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


def _create(kv: KV, unit: ProvisionUnit, markers: Markers) -> _Fresh | None:
    """Write a fresh value with check-and-set 0; None when someone else created it meanwhile (theirs stands)."""
    values = generate_values(unit.generators)
    try:
        version = kv.write(unit.vault.mount, unit.vault.path, values, cas=0)
        checkpoint("provision.create")
        return _Fresh(version, markers.of(unit.vault, values))
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
        wk.LEDGER_AFTER: str(r.appenders[unit.environment].floor()),
        **md.policy_metadata(unit.policy_name, unit.policy),
    }
    try:
        md.merged(meta.custom, update)
    except MetadataTooLarge as exc:
        raise ProvisionError(f"{unit.vault}: cannot record the new secret ({exc})") from None
    update_metadata(kv, unit.vault.mount, unit.vault.path, update, meta.custom)
    checkpoint("provision.record")
    return update


def _ledger(kv: KV, unit: ProvisionUnit, custom: Mapping[str, str], r: _Run, *, created_here: bool,
            search: bool) -> int:
    """The one ``value-created`` entry (``search``: found again after a crash), then its seq on the secret."""
    appender = r.appenders[unit.environment]
    entry = _find_entry(appender.ledger, unit, custom) if search else None
    if entry is None:
        entry = appender.append(make_draft(
            "value-created",
            actor=r.actor,
            secret=unit.intent,
            path=unit.vault.full,
            run=r.run,
            reason="initial value of a generated secret",
            details={
                "environment": unit.environment,
                "origin": "created" if created_here else "found",
                "version": custom.get(wk.VALUE_VERSION, ""),
                "marker": custom.get(wk.VALUE_MARKER, ""),
                "policy": custom.get(wk.POLICY_NAME, ""),
            },
        ))
    checkpoint("provision.ledger")
    update_metadata(kv, unit.vault.mount, unit.vault.path, {wk.LEDGER_SEQ: str(entry.seq)}, custom)
    return entry.seq


@dataclass(frozen=True)
class _Run:
    """One ``provision`` command: where it writes and records, who and when, and whether only to plan."""

    kv: KV
    actor: str
    run: str
    clock: Clock
    dry_run: bool
    markers: Markers
    appenders: Mapping[str, _GroupAppender]  # by environment: its partition's group commit


def _provision(unit: ProvisionUnit, r: _Run) -> ProvisionOutcome:
    """Bring one unit to DONE: observe, decide (:func:`next_step`), do that one step, repeat. After a step of our
    own succeeded, its result is the new observation (no read back); after a lost race, Vault is read again."""
    kv, mount, path = r.kv, unit.vault.mount, unit.vault.path
    done: list[str] = []
    created_here = recorded_here = False
    fresh: _Fresh | None = None
    marker: str | None = None
    step = Step.CREATE
    try:
        meta = kv.read_metadata(mount, path)
        for _ in range(MAX_STEPS):
            step = next_step(_observe(meta))
            custom = meta.custom if meta is not None else {}
            marker = custom.get(wk.VALUE_MARKER, marker)
            if step is Step.DONE:
                seq_text = custom.get(wk.LEDGER_SEQ, "")
                return ProvisionOutcome(unit, "created" if created_here else "exists", done, marker,
                                        int(seq_text) if seq_text.isdigit() else None)
            if r.dry_run:
                order = list(Step)[:-1]
                return ProvisionOutcome(unit, "planned", [s.value for s in order[order.index(step):]], marker)
            if step is Step.CREATE:
                if (fresh := _create(kv, unit, r.markers)) is None:
                    meta = kv.read_metadata(mount, path)
                    continue
                created_here = True
                meta = SecretMetadata(fresh.version, fresh.version, {fresh.version: False}, {})
            elif step is Step.RECORD:
                assert meta is not None
                if (update := _record(kv, unit, meta, fresh, r)) is None:
                    meta = kv.read_metadata(mount, path)
                    continue
                recorded_here = True
                meta = replace(meta, custom={**custom, **update})
            else:
                assert meta is not None
                seq = _ledger(kv, unit, custom, r, created_here=created_here, search=not recorded_here)
                meta = replace(meta, custom={**custom, wk.LEDGER_SEQ: str(seq)})
            done.append(step.value)
    except AuthorityError as exc:
        raise ProvisionError(f"initial value of {unit.intent} at {unit.vault} stopped at step {step.value}: "
                             f"{exc}; re-run to resume") from None
    raise ProvisionError(f"initial value of {unit.intent} at {unit.vault} did not settle; re-run")


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
    ``workers``: units in flight at once (``kv`` and ``markers`` are shared by them: thread-safe clients). The
    outcomes come in the order of ``units``; on a failure, units not started yet are not started, the ones in
    flight finish, and the first failure (in ``units`` order) is raised."""
    if workers < 1:
        raise UsageError("workers must be at least 1")
    appenders = {env: _GroupAppender(ledger.for_environment(env)) for env in sorted({u.environment for u in units})}
    r = _Run(kv, actor, run, clock, dry_run, markers if markers is not None else LegacyMarkers(), appenders)
    if workers == 1 or len(units) <= 1:
        return [_provision(unit, r) for unit in units]
    with ThreadPoolExecutor(max_workers=min(workers, len(units)), thread_name_prefix="provision") as pool:
        futures: list[Future[ProvisionOutcome]] = [pool.submit(_provision, unit, r) for unit in units]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()  # a no-op for the ones running or done
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    return [future.result() for future in futures]
