"""Decommissioning declared in Git: ``spec.retire: {after: DAY, undoWindow: 30d}`` on a SecretIntent.

Why: removing an intent from Git makes the GitOps controller prune its ExternalSecret, and the garbage collector
deletes the consumer Secret at once — a running workload loses its credentials without warning, and the value
stays in the authority forever. So retirement is a declared, dated step (docs/decommissioning.md):

=========  ================================================================================================
scheduled  before the day: nothing changes; the controller's status condition ``Retiring`` and Events warn
mark       the day came: note on the secret what is soft-deleted and for which day (the commit point)
delete     soft-delete those versions (KV v2 delete: hidden, restorable)
ledger     append ``decommission`` and note its sequence number on the secret
waiting    soft-deleted; ``chamberlain retire --undo NAME`` restores it until the undo window ends
purge      the window passed: ``decommission-purge`` in the ledger, then every version and the metadata go
undone     an undo was done for this day: left alone until Git names another day (or drops ``retire``)
=========  ================================================================================================

The mark stores the day, the versions and the end of the undo window promised then; from the mark on, the
workflow needs nothing from Git: a soft-deleted secret whose ``spec.retire`` (or whole intent) left Git before the
purge is *stranded* (:func:`stranded`): ``chamberlain retire`` still purges it after the stored undo-until, or
``--undo`` restores it, both decided from the mark (:func:`marker_target`); ``plan`` warns about it.

:func:`next_step` is pure over what the authority holds (:class:`Observed`) and an injected ``now``, so a crash
anywhere resumes at the step it left. :func:`orphans` is the other half: runtime data whose intent is gone from
Git without a retirement, which ``chamberlain plan`` reports as an error pointing here.

Boundary: KV v2 metadata and version state only; a value is never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerReader
from chamberlain.authority.kv import KV, KVLifecycle, SecretMetadata
from chamberlain.clock import Clock, parse_rfc3339, rfc3339
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.faults import checkpoint
from chamberlain.intent.model import Retire
from chamberlain.intent.paths import VaultPath

MAX_STEPS = 8
CLEARED = "-"  # a cleared marker key: the authority refuses an empty custom_metadata value


class RetireError(ChamberlainError):
    """A decommissioning step failed; a re-run resumes where it stopped."""


class Step(StrEnum):
    NONE = "none"
    SCHEDULED = "scheduled"
    MARK = "mark"
    DELETE = "delete"
    LEDGER = "ledger"
    WAITING = "waiting"
    PURGE = "purge"
    UNDONE = "undone"


# Steps that change the authority; the others are states to report.
ACTIONS = (Step.MARK, Step.DELETE, Step.LEDGER, Step.PURGE)


@dataclass(frozen=True)
class Observed:
    """What the authority holds of one secret, as :func:`next_step` reads it."""

    exists: bool
    live: tuple[int, ...] = ()  # versions whose data is readable (neither deleted nor destroyed)
    marked_at: datetime | None = None  # when chamberlain soft-deleted it
    marked_versions: tuple[int, ...] = ()
    marked_for: str = ""  # the retire day that soft-delete was for
    undone_for: str = ""  # the retire day an undo was for
    ledgered: bool = False
    stored_until: datetime | None = None  # the undo-until promised at the mark (absent on marks before it was kept)


def _versions(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in text.split(",") if v.strip().isdigit()}))


def observe_time(text: str | None) -> datetime | None:
    return parse_rfc3339(text) if text and text != CLEARED else None


def observe(meta: SecretMetadata | None) -> Observed:
    """Pure: the decommissioning state of one secret's metadata (None: absent)."""
    if meta is None:
        return Observed(exists=False)
    custom = meta.custom
    return Observed(
        exists=True,
        live=tuple(sorted(n for n, gone in meta.versions.items() if not gone)),
        marked_at=observe_time(custom.get(wk.DECOMMISSIONED_AT)),
        marked_versions=_versions(custom.get(wk.DECOMMISSIONED_VERSIONS, "")),
        marked_for=custom.get(wk.DECOMMISSIONED_FOR, ""),
        undone_for=custom.get(wk.DECOMMISSION_UNDONE_FOR, ""),
        ledgered=custom.get(wk.DECOMMISSION_SEQ, "").isdigit(),
        stored_until=observe_time(custom.get(wk.DECOMMISSION_UNDO_UNTIL)),
    )


def retire_at(retire: Retire) -> datetime:
    """The instant the soft-delete becomes due: 00:00 UTC of ``after``."""
    return datetime.combine(retire.after, time(0), tzinfo=UTC)


def undo_until(retire: Retire, marked_at: datetime, stored: datetime | None = None) -> datetime:
    """The later of the window promised at the mark (``stored``) and the one Git declares now: shortening
    ``undoWindow`` after the soft-delete never shortens an announced window; lengthening it does lengthen it."""
    current = marked_at + retire.undo_window
    return max(current, stored) if stored is not None else current


def _until(retire: Retire, s: Observed) -> datetime | None:
    return undo_until(retire, s.marked_at, s.stored_until) if s.marked_at else None


def next_step(retire: Retire, s: Observed, now: datetime) -> Step:
    """The one thing to do now for a secret whose intent declares ``retire``. Pure."""
    if not s.exists:
        return Step.NONE
    if s.marked_at is None:
        if s.undone_for == retire.after.isoformat():
            return Step.UNDONE
        return Step.SCHEDULED if now < retire_at(retire) else Step.MARK
    if set(s.marked_versions) & set(s.live):
        return Step.DELETE
    if not s.ledgered:
        return Step.LEDGER
    return Step.PURGE if now >= undo_until(retire, s.marked_at, s.stored_until) else Step.WAITING


# --------------------------------------------------------------------------------------------- orphans (plan)


@dataclass(frozen=True, order=True)
class Orphan:
    """Runtime data no intent in Git declares any more, and that was never retired."""

    path: str  # mount/path
    intent: str  # as recorded on the secret (the path's last segment when not recorded)
    version: int

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "intent": self.intent, "version": self.version}

    def line(self) -> str:
        return (f"error (removed-intent): SecretIntent/{self.intent} at {self.path}: removed from Git while its data "
                f"is still in the authority (version {self.version}); removing it deletes its consumers' Secrets at "
                f"once: put it back with spec.retire: {{after: DAY}}, let `chamberlain retire` soft-delete it, and "
                "remove it from Git once `chamberlain retire` reports it purged")


def is_orphan(meta: SecretMetadata | None) -> bool:
    """Pure: a secret with readable data that chamberlain did not soft-delete."""
    s = observe(meta)
    return s.exists and bool(s.live) and s.marked_at is None


def orphans(kv: KV, mount: str, environments: Iterable[str], declared: set[str]) -> list[Orphan]:
    """Every ``<mount>/<env>/<owner>/<name>`` with live data that is not in ``declared`` (full paths). Reads
    listings and the metadata of undeclared paths only; chamberlain's own records (``_``-prefixed, never a DNS
    label) are skipped."""
    found: list[Orphan] = []
    for _env, path, name in _undeclared_paths(kv, mount, environments, declared):
        meta = kv.read_metadata(mount, path)
        if meta is not None and is_orphan(meta):
            found.append(Orphan(f"{mount}/{path}", meta.custom.get(wk.INTENT) or name, meta.current_version))
    return sorted(found)


def _undeclared_paths(kv: KV, mount: str, environments: Iterable[str],
                      skip: set[str]) -> Iterator[tuple[str, str, str]]:
    """``(env, "<env>/<owner>/<name>", name)`` for every secret under the environments not in ``skip`` (full
    paths); chamberlain's own records (``_``-prefixed, never a DNS label) are left out. Listings only."""
    for env in sorted(set(environments)):
        for owner in kv.list(mount, f"{env}/"):
            if not owner.endswith("/") or owner.startswith("_"):
                continue
            for name in kv.list(mount, f"{env}/{owner}"):
                path = f"{env}/{owner}{name}"
                if not name.endswith("/") and f"{mount}/{path}" not in skip:
                    yield env, path, name


@dataclass(frozen=True, order=True)
class Stranded:
    """Data chamberlain soft-deleted for a retirement that Git no longer declares (``spec.retire`` or the whole
    intent removed before the purge). ``chamberlain retire`` still finishes it from the mark; ``plan`` warns."""

    path: str  # mount/path
    intent: str
    environment: str
    day: str  # the spec.retire.after it was soft-deleted for
    undo_until: datetime
    intent_in_git: bool  # the intent is still declared, without spec.retire

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "intent": self.intent, "environment": self.environment, "after": self.day,
                "undoUntil": rfc3339(self.undo_until), "intentInGit": self.intent_in_git}

    def line(self) -> str:
        gone = "its spec.retire was removed from Git" if self.intent_in_git else "its intent was removed from Git"
        return (f"warning (retire-removed): SecretIntent/{self.intent} at {self.path}: soft-deleted for the "
                f"retirement of {self.day}, but {gone}; `chamberlain retire` still purges it after "
                f"{rfc3339(self.undo_until)} (the undo window stored at the soft-delete). To keep it: `chamberlain "
                f"retire --undo {self.intent}` before then. To retire it: put spec.retire: {{after: {self.day}}} "
                "back on the intent (or leave it as is) and remove the intent once `chamberlain retire` reports it "
                "purged")


def _default_window() -> timedelta:
    default = Retire.model_fields["undo_window"].default
    assert isinstance(default, timedelta)
    return default


def marker_target(vault: VaultPath, environment: str, meta: SecretMetadata) -> RetireTarget | None:
    """Pure: the retirement a soft-deleted (or undone) secret carries in its metadata, for when Git no longer
    declares it; None when chamberlain never marked it. The undo window is the stored one (the default window for
    marks made before it was stored)."""
    s = observe(meta)
    day_text = s.marked_for if s.marked_at is not None else s.undone_for
    if s.marked_at is None and not s.undone_for:
        return None
    try:
        day = date.fromisoformat(day_text)
    except ValueError:  # a hand-edited mark: the day of the soft-delete
        day = s.marked_at.date() if s.marked_at else date.min
    window = _default_window()
    if s.marked_at is not None and s.stored_until is not None:
        window = max(s.stored_until - s.marked_at, MIN_WINDOW)
    intent = meta.custom.get(wk.INTENT) or vault.path.rsplit("/", 1)[-1]
    return RetireTarget(intent, environment, vault, Retire(after=day, undo_window=window), from_marker=True)


MIN_WINDOW = timedelta(days=1)  # Retire refuses less; the stored until is the later one anyway (undo_until)


def _scan(kv: KV, mount: str, environments: Iterable[str], retiring: set[str],
          undone: bool) -> list[tuple[RetireTarget, Observed]]:
    found: list[tuple[RetireTarget, Observed]] = []
    for env, path, _name in _undeclared_paths(kv, mount, environments, retiring):
        meta = kv.read_metadata(mount, path)
        s = observe(meta)
        if meta is None or (s.marked_at is None and not (undone and s.undone_for)):
            continue
        target = marker_target(VaultPath(mount, path), env, meta)
        if target is not None:
            found.append((target, s))
    return sorted(found, key=lambda ts: ts[0].vault.full)


def stranded_targets(kv: KV, mount: str, environments: Iterable[str], retiring: set[str], *,
                     undone: bool = False) -> list[RetireTarget]:
    """Every ``<mount>/<env>/<owner>/<name>`` chamberlain soft-deleted whose path is not in ``retiring`` (full
    paths Git declares with ``spec.retire``), as rebuilt from its mark; ``undone``: also those whose soft-delete
    was undone (so a re-run of ``--undo`` reports it done). Reads listings and metadata; never a value."""
    return [t for t, _ in _scan(kv, mount, environments, retiring, undone)]


def stranded(kv: KV, mount: str, environments: Iterable[str], retiring: set[str],
             declared: set[str]) -> list[Stranded]:
    """``plan``'s view of :func:`stranded_targets`: soft-deleted, not yet purged, no longer retired in Git
    (``declared``: every full path Git declares, to say whether the intent or only its spec.retire left)."""
    out: list[Stranded] = []
    for t, s in _scan(kv, mount, environments, retiring, undone=False):
        until = _until(t.retire, s)
        if until is not None:
            out.append(Stranded(t.vault.full, t.intent, t.environment, t.retire.after.isoformat(), until,
                                t.vault.full in declared))
    return sorted(out)


# --------------------------------------------------------------------------------------------- the workflow


@dataclass(frozen=True)
class RetireTarget:
    """One retiring intent in one environment: the runtime path the clusters of that environment share."""

    intent: str
    environment: str
    vault: VaultPath
    retire: Retire
    from_marker: bool = False  # Git no longer declares its spec.retire: rebuilt from the mark (marker_target)


@dataclass
class RetireOutcome:
    target: RetireTarget
    state: Step  # where it stands after this run
    steps: list[str] = field(default_factory=list)  # what this run did (or, dry run, would do next)
    undo_until: datetime | None = None
    ledger_seq: int | None = None

    def as_dict(self) -> dict[str, object]:
        t = self.target
        return {"intent": t.intent, "environment": t.environment, "path": t.vault.full, "state": self.state.value,
                "steps": list(self.steps), "retireAt": rfc3339(retire_at(t.retire)),
                "undoUntil": rfc3339(self.undo_until) if self.undo_until else None, "ledgerSeq": self.ledger_seq,
                "fromMarker": t.from_marker}


@dataclass(frozen=True)
class Run:
    """One ``retire`` command: where it writes and records, who and when, and whether only to plan."""

    kv: KVLifecycle
    ledger: Ledger
    actor: str
    run: str
    clock: Clock
    dry_run: bool = False


def _find(ledger: LedgerReader, t: RetireTarget, event: str, key: str, value: str) -> LedgerEntry | None:
    """An entry a crashed run appended but did not note (so the ledger never doubles)."""
    for entry in reversed(ledger.for_secret(t.intent)):
        if entry.event == event and entry.path == t.vault.full and entry.details.get(key) == value:
            return entry
    return None


def _details(t: RetireTarget, s: Observed) -> dict[str, str]:
    marked = rfc3339(s.marked_at) if s.marked_at else ""
    return {"environment": t.environment, "after": t.retire.after.isoformat(), "decommissioned-at": marked,
            "versions": ",".join(str(v) for v in s.marked_versions),
            "undo-until": rfc3339(until) if (until := _until(t.retire, s)) else "",
            "declared": "marker only (spec.retire no longer in Git)" if t.from_marker else "spec.retire in Git"}


def _do(step: Step, t: RetireTarget, s: Observed, r: Run) -> None:
    kv, mount, path = r.kv, t.vault.mount, t.vault.path
    if step is Step.MARK:
        now = r.clock.now()
        kv.update_custom_metadata(mount, path, {
            wk.DECOMMISSIONED_AT: rfc3339(now), wk.DECOMMISSIONED_VERSIONS: ",".join(map(str, s.live)),
            wk.DECOMMISSION_UNDO_UNTIL: rfc3339(now + t.retire.undo_window),
            wk.DECOMMISSIONED_FOR: t.retire.after.isoformat(), wk.DECOMMISSION_UNDONE_FOR: CLEARED,
            wk.DECOMMISSION_SEQ: CLEARED})
        checkpoint("retire.mark")
    elif step is Step.DELETE:
        kv.delete_versions(mount, path, s.marked_versions)
        checkpoint("retire.delete")
    elif step is Step.LEDGER:
        book = r.ledger.for_environment(t.environment)
        details = _details(t, s)
        entry = _find(book, t, "decommission", "decommissioned-at", details["decommissioned-at"]) or book.append(
            "decommission", actor=r.actor, secret=t.intent, path=t.vault.full, run=r.run,
            reason=t.retire.reason or "spec.retire.after reached", details=details)
        checkpoint("retire.ledger")
        kv.update_custom_metadata(mount, path, {wk.DECOMMISSION_SEQ: str(entry.seq)})
    elif step is Step.PURGE:
        book = r.ledger.for_environment(t.environment)
        details = _details(t, s)
        _find(book, t, "decommission-purge", "decommissioned-at", details["decommissioned-at"]) or book.append(
            "decommission-purge", actor=r.actor, secret=t.intent, path=t.vault.full, run=r.run,
            reason="the undo window of the decommissioning passed", details=details)
        checkpoint("retire.purge")
        kv.delete_all(mount, path)


def apply(t: RetireTarget, r: Run) -> RetireOutcome:
    """Bring one retiring secret as far as ``now`` allows: observe, decide (:func:`next_step`), do that one step,
    repeat. ``dry_run``: the next step, nothing written."""
    done: list[str] = []
    seq: int | None = None
    for _ in range(MAX_STEPS):
        meta = r.kv.read_metadata(t.vault.mount, t.vault.path)
        s = observe(meta)
        seq_text = meta.custom.get(wk.DECOMMISSION_SEQ, "") if meta is not None else ""
        seq = int(seq_text) if seq_text.isdigit() else seq
        step = next_step(t.retire, s, r.clock.now())
        until = _until(t.retire, s)
        if step not in ACTIONS:
            return RetireOutcome(t, step, done, until, seq)
        if r.dry_run:
            return RetireOutcome(t, step, [step.value], until, seq)
        try:
            _do(step, t, s, r)
        except ChamberlainError as exc:
            raise RetireError(f"decommissioning {t.intent} at {t.vault} stopped at step {step.value}: {exc}; "
                              "re-run to resume") from None
        done.append(step.value)
        if step is Step.PURGE:
            return RetireOutcome(t, Step.NONE, done, None, seq)
    raise RetireError(f"decommissioning {t.intent} at {t.vault} did not settle; re-run")


@dataclass
class UndoOutcome:
    target: RetireTarget
    restored: tuple[int, ...]
    ledger_seq: int | None
    already: bool = False  # nothing was soft-deleted (a re-run after a finished undo)

    def as_dict(self) -> dict[str, object]:
        return {"intent": self.target.intent, "environment": self.target.environment, "path": self.target.vault.full,
                "restored": list(self.restored), "ledgerSeq": self.ledger_seq, "alreadyUndone": self.already}


def undo(t: RetireTarget, r: Run) -> UndoOutcome:
    """Restore a soft-deleted secret within its undo window: undelete the versions the soft-delete hid, append
    ``decommission-undo``, clear the mark (noting the day it was for, so it is not soft-deleted again until Git
    names another day). Resumable: each part is idempotent."""
    meta = r.kv.read_metadata(t.vault.mount, t.vault.path)
    s = observe(meta)
    if not s.exists:
        raise UsageError(f"{t.intent}: nothing at {t.vault} to restore (purged after its undo window, or never "
                         "created)")
    if s.marked_at is None:
        if s.undone_for:
            return UndoOutcome(t, (), None, already=True)
        raise UsageError(f"{t.intent}: {t.vault} is not soft-deleted; nothing to undo")
    now = r.clock.now()
    until = undo_until(t.retire, s.marked_at, s.stored_until)
    if now >= until:
        raise UsageError(f"{t.intent}: the undo window closed at {rfc3339(until)}; the data is purged at the next "
                         "`chamberlain retire`")
    if r.dry_run:
        return UndoOutcome(t, s.marked_versions, None)
    assert meta is not None  # exists
    seq = meta.custom.get(wk.DECOMMISSION_SEQ, "")
    try:
        r.kv.undelete_versions(t.vault.mount, t.vault.path, s.marked_versions)
        checkpoint("retire.undelete")
        book = r.ledger.for_environment(t.environment)
        details = _details(t, s) | {"decommission-seq": seq}
        entry = _find(book, t, "decommission-undo", "decommissioned-at", details["decommissioned-at"]) or book.append(
            "decommission-undo", actor=r.actor, secret=t.intent, path=t.vault.full, run=r.run,
            reason="chamberlain retire --undo", details=details)
        checkpoint("retire.undo-ledger")
        r.kv.update_custom_metadata(t.vault.mount, t.vault.path, {
            wk.DECOMMISSIONED_AT: CLEARED, wk.DECOMMISSIONED_VERSIONS: CLEARED, wk.DECOMMISSION_SEQ: CLEARED,
            wk.DECOMMISSION_UNDO_UNTIL: CLEARED, wk.DECOMMISSION_UNDONE_FOR: s.marked_for})
    except ChamberlainError as exc:
        raise RetireError(f"undoing the decommissioning of {t.intent} at {t.vault} stopped: {exc}; re-run to "
                          "resume") from None
    return UndoOutcome(t, s.marked_versions, entry.seq)


def status_of(retire: Retire, marked_at: datetime | None, undone_for: str, now: datetime,
              stored_until: datetime | None = None) -> tuple[str, str]:
    """Pure: (reason, message) of the ``Retiring`` status condition of an intent that declares ``retire``
    (``marked_at``: when chamberlain soft-deleted it; ``undone_for``: the day an undo was for)."""
    day = retire_at(retire)
    why = f" ({retire.reason})" if retire.reason else ""
    if marked_at is not None:
        return (SOFT_DELETED, f"soft-deleted at {rfc3339(marked_at)}{why}; restore with `chamberlain retire --undo` "
                              f"until {rfc3339(undo_until(retire, marked_at, stored_until))}, purged after")
    if undone_for == retire.after.isoformat():
        return (UNDONE, f"the soft-delete of {retire.after.isoformat()} was undone; set another spec.retire.after "
                        "or remove spec.retire")
    if now < day:
        return (SCHEDULED, f"retired on {retire.after.isoformat()}{why}, in {_days(day - now)}: consumers must stop "
                           "using it; its data is soft-deleted then")
    return (DUE, f"retired since {retire.after.isoformat()}{why}: its data is soft-deleted at the next "
                 "`chamberlain retire`")


# Reasons of the Retiring condition (and of the Events announcing each).
SCHEDULED, DUE, SOFT_DELETED, UNDONE, PURGED = (
    "RetirementScheduled", "RetirementDue", "SoftDeleted", "RetirementUndone", "Purged")


def _days(left: timedelta) -> str:
    days = left.days
    return f"{days} day{'s' if days != 1 else ''}" if days else f"{max(1, int(left.total_seconds() // 3600))}h"


__all__ = [
    "ACTIONS",
    "Observed",
    "Orphan",
    "RetireError",
    "RetireOutcome",
    "RetireTarget",
    "Run",
    "Step",
    "Stranded",
    "UndoOutcome",
    "apply",
    "is_orphan",
    "marker_target",
    "next_step",
    "observe",
    "observe_time",
    "orphans",
    "retire_at",
    "status_of",
    "stranded",
    "stranded_targets",
    "undo",
    "undo_until",
]
