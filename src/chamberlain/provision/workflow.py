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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerReader
from chamberlain.authority.errors import AuthorityError, CasConflict, MetadataTooLarge
from chamberlain.authority.kv import KV, SecretMetadata
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


def _find_entry(ledger: LedgerReader, unit: ProvisionUnit) -> LedgerEntry | None:
    for entry in reversed(ledger.for_secret(unit.intent)):
        if entry.event == "value-created" and entry.result == "ok" and entry.path == unit.vault.full:
            return entry
    return None


def _create(kv: KV, unit: ProvisionUnit) -> bool:
    """Write a fresh value with check-and-set 0; False when someone else created it meanwhile (theirs stands)."""
    values = generate_values(unit.generators)
    try:
        kv.write(unit.vault.mount, unit.vault.path, values, cas=0)
    except CasConflict:
        return False
    finally:
        values.clear()  # drop our only reference to the plaintext as soon as it is stored
    checkpoint("provision.create")
    return True


def _record(kv: KV, unit: ProvisionUnit, custom: Mapping[str, str], clock: Clock, markers: Markers) -> str | None:
    """Tag the value with who made it, when, its marker and the policy in force; the marker (None: vanished)."""
    current = kv.read(unit.vault.mount, unit.vault.path)
    if current is None:
        return None
    marker = markers.of(unit.vault, current.data)
    update = {
        wk.AUTHORITY: wk.AUTHORITY_VAULT,
        wk.CREATED_BY: wk.CREATED_BY_CHAMBERLAIN,
        wk.CREATED_AT: rfc3339(clock.now()),
        wk.INTENT: unit.intent,
        wk.ENVIRONMENT: unit.environment,
        wk.ORIGIN: "generated",
        wk.VALUE_VERSION: str(current.version),
        wk.VALUE_MARKER: marker,
        **md.policy_metadata(unit.policy_name, unit.policy),
    }
    try:
        md.merged(custom, update)
    except MetadataTooLarge as exc:
        raise ProvisionError(f"{unit.vault}: cannot record the new secret ({exc})") from None
    kv.update_custom_metadata(unit.vault.mount, unit.vault.path, update)
    checkpoint("provision.record")
    return marker


def _ledger(kv: KV, ledger: Ledger, unit: ProvisionUnit, custom: Mapping[str, str], *, actor: str, run: str,
            created_here: bool) -> None:
    """The one ``value-created`` entry (found again after a crash), then its sequence number on the secret."""
    entry = _find_entry(ledger, unit) or ledger.for_environment(unit.environment).append(
        "value-created",
        actor=actor,
        secret=unit.intent,
        path=unit.vault.full,
        run=run,
        reason="initial value of a generated secret",
        details={
            "environment": unit.environment,
            "origin": "created" if created_here else "found",
            "version": custom.get(wk.VALUE_VERSION, ""),
            "marker": custom.get(wk.VALUE_MARKER, ""),
            "policy": custom.get(wk.POLICY_NAME, ""),
        },
    )
    checkpoint("provision.ledger")
    kv.update_custom_metadata(unit.vault.mount, unit.vault.path, {wk.LEDGER_SEQ: str(entry.seq)})


@dataclass(frozen=True)
class _Run:
    """One ``provision`` command: where it writes and records, who and when, and whether only to plan."""

    kv: KV
    ledger: Ledger
    actor: str
    run: str
    clock: Clock
    dry_run: bool
    markers: Markers


def _provision(unit: ProvisionUnit, r: _Run) -> ProvisionOutcome:
    """Bring one unit to DONE: observe, decide (:func:`next_step`), do that one step, repeat."""
    kv = r.kv
    done: list[str] = []
    created_here = False
    marker: str | None = None
    step = Step.CREATE
    try:
        for _ in range(MAX_STEPS):
            meta = kv.read_metadata(unit.vault.mount, unit.vault.path)
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
                if not _create(kv, unit):
                    continue
                created_here = True
            elif step is Step.RECORD:
                if (marker := _record(kv, unit, custom, r.clock, r.markers)) is None:
                    continue
            else:
                _ledger(kv, r.ledger, unit, custom, actor=r.actor, run=r.run, created_here=created_here)
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
) -> list[ProvisionOutcome]:
    """Create each unit's initial value once, record it on the secret and in the ledger (``dry_run``: the steps
    each unit still needs, nothing written). ``markers``: keyed by the authority in every live caller (v1 without)."""
    r = _Run(kv, ledger, actor, run, clock, dry_run, markers if markers is not None else LegacyMarkers())
    return [_provision(unit, r) for unit in units]
