"""The durable rotation workflow: one rotation of one secret as small idempotent steps handing off through a record.

Shape (cert-manager's, with AWS Secrets Manager's steps): :func:`start` takes the per-secret lease by writing a
:class:`~chamberlain.rotation.run.RotationRun`; then, repeatedly, :func:`observe` reads what Vault holds, the
pure :func:`next_step` decides from the run and that observation (and an injected ``now``), and :func:`advance`
does exactly that one step and persists the updated run with check-and-set. :func:`run_to_completion` loops with
an injected clock and sleep. A crash anywhere resumes at the right step from the persisted run.

Pending vs current — where the new values live before they are promoted:

* ESO (and anyone with ``read`` on the secret) always reads the **latest** KV v2 version, so a new version written
  to the real path is live at once. A pending value must therefore never be a version of the real path.
* Pending values are written to a **staging path** ``<runtime>/_chamberlain/pending/<env>/<owner>/<name>`` (CAS =
  the staging version recorded when the run started), which only the orchestrator may read. The run records the
  staged version number, the rotated key *names* and the value's marker *as it will be at the real path*; the
  staged data also carries ``_chamberlain.run`` so a resumed run recognises its own write.
* **Promote** copies the staged values to the real path with CAS = the version the run started from, then writes
  ``value-marker``/``value-version``/``last-*`` custom metadata. There is exactly one current version (the latest)
  at every moment; a crash between the write and the metadata is recognised (version = previous + 1 and its marker
  equals the staged marker) and only the metadata is completed, never a second write.
* Anything else moving the real path during a run is a conflict (a second writer): the run fails, it never
  overwrites.
* A rotator whose draw has no effect outside the process (the generated ones:
  :func:`~chamberlain.rotation.rotators.base.draws_locally`) keeps its pending values in **memory** instead
  (:func:`pending_home`, recorded as the run's ``pending_in``): drawn, tested and saved as ``tested`` with their
  marker (added to ``drawn_markers``), then promoted in the same call. Nothing is staged, so nothing is destroyed
  after. A crash before the promote write loses a draw nobody saw: the run draws again (:attr:`Step.REDRAW`), from
  the real path it reads to check for a conflict. A crash after it is recognised by the marker, of the last draw
  or of an earlier one (an executor that lost the run while it wrote), never written twice. A draw that may issue
  or reserve something, a value set at a target, an import and a rollback go through the staging path.

Grants (rendered per environment by ``render/vault_bundle.py``): the orchestrator has ``create``/``read``/
``update`` on ``<runtime>/data/_chamberlain/runs/<env>/*`` and ``<runtime>/data/_chamberlain/pending/<env>/*``,
``read`` on their ``metadata/``, and ``delete``/``destroy`` on the pending path (for destroying staged values after
promote); no other identity may read them.

Failures: an error with ``retryable`` under ``failureStrategy: retry`` is retried with exponential backoff and
jitter (drawn from an injected RNG) up to ``Backoff.max_attempts``; anything else stops the run: ``retry`` and
``alert`` at ``failed`` (``alert`` also calls the alert hook), ``hold`` at ``held`` with ``held=true`` on the
secret until :func:`release`. An outage of the authority itself cannot be recorded while it lasts; the executor
that lived through it says so to :func:`advance` (``outage=``), and :func:`next_step` then decides like for any
other failure: ``retry`` carries on where the run was, ``alert``/``hold`` end it (:attr:`Step.STOP`). Every
finished run appends exactly one ``rotation`` ledger entry (found again by its run id after a crash).
:func:`rollback` re-promotes an earlier version's values through the same machine.

Admin credentials (``target.postgres.adminIntent``) are values too: :class:`RotationDeps` holds an
:class:`AdminSource`, never the values. The executor calls it inside the steps that log in as admin
(set at target, test, revoke), scrubs what it returned from error messages, and drops it with the step.

Vault calls (``benchmarks/bench_rotation_vault_calls.py`` counts them against the protocol's minimum): values are
never kept between steps, so a step reads what it needs, and nothing more. :func:`observe` reads only what
:func:`next_step` needs for the run's stage: the real path's latest version (its data is the current values the
same step hands the rotator) while a foreign write must stop the run before the target moves (``pending`` to
``set-at-target``), and the staging path only while ``pending``. Promote relies on its check-and-set alone: only
a refused write reads the real path, to tell an earlier attempt's own write from a second writer. A waiting run
and a run past promote read nothing to decide. The policy is snapshotted in the run at start; the ledger head is
read once, when the run finishes, and recorded in the run (:class:`~chamberlain.audit.ledger.LedgerMark`): the
run's one entry is chained after it, and a crashed earlier attempt's entry can only be after it. A rotator without
a target (:func:`~chamberlain.rotation.rotators.base.has_target`) is tested from memory in the step that staged
(``pending`` → ``tested``, no set-at-target step) and its revoke reads no value; one that also draws locally
stages nothing: 15 calls a rotation (keep old) where a staged one makes 20.

Saves: a step's result is saved to the run record (CAS) before the next step acts, with one exception
(:func:`saved_with_the_next_step`): the promote of a value kept in memory, whose result a resume reads back from
Vault. The record stays at ``tested``, which names the draw's marker and the version it builds on, so a resumed run
finds the real path one version ahead with that marker, recognises its own write and completes its metadata (one
PATCH of the same keys). The promote is saved with propagate's result, and propagate stays saved on its own: it is
the check-and-set fence before any workload restarts, so an executor that lost the run never rolls a workload.
Under an outage, after failed attempts, and for a staged run, promote is saved as every step is. One save a
rotation fewer: the run record is the heaviest write of a batch (on raft storage each save is a commit).

Boundary: no Kubernetes or Vault client here (the KV and KubePropagation protocols only), no wall clock, no
randomness except through the injected RNG, and no value in any record, metadata, ledger entry or error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerMark, Result
from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable, CasConflict, MetadataTooLarge, NotFound
from chamberlain.authority.kv import (
    KV,
    SecretMetadata,
    SecretVersion,
    merge_custom_metadata,
    update_metadata,
    write_and_custom,
)
from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError
from chamberlain.faults import checkpoint
from chamberlain.intent.model import RotationPolicySpec, SecretIntent
from chamberlain.intent.paths import VaultPath
from chamberlain.kube.api import KubeError, KubePropagation
from chamberlain.propagation import (
    Change,
    ConsumerRef,
    ExternalSecretRef,
    Restarts,
    WorkloadRef,
    force_refresh,
    restart_all,
    restart_sources,
    wait_in_sync,
)
from chamberlain.rotation import clusters
from chamberlain.rotation import run as runs
from chamberlain.rotation.policy import failure_streak, from_metadata
from chamberlain.rotation.rotators.base import (
    CertificateIssuer,
    PendingVersion,
    RotationContext,
    Rotator,
    RotatorError,
    draws_locally,
    has_target,
)
from chamberlain.rotation.rotators.imported import ImportedRotator
from chamberlain.rotation.run import (
    PROMOTED_OR_LATER,
    PendingHome,
    RotationRun,
    RunLost,
    TriggerKind,
    clean_error,
    staging_path,
)
from chamberlain.values.markers import LegacyMarkers, Markers

# reserved keys of the staged data (never promoted)
STAGED_RUN = "_chamberlain.run"
STAGED_ROTATED = "_chamberlain.rotated"
STAGED_NOTES = "_chamberlain.notes"
RESERVED_PREFIX = "_chamberlain."

# the custom_metadata keys promote records, in the order record_promoted gives their values
PROMOTE_METADATA = (wk.VALUE_MARKER, wk.VALUE_VERSION, wk.LAST_ROTATED, wk.LAST_RUN, wk.LAST_REASON)
# ... and what the end records, whichever way the run ends (hold adds HELD and HELD_RUN)
END_METADATA = (wk.LAST_RESULT, wk.FAILED_RUNS, wk.LAST_FAILED)

MAX_STEPS = 64
MAX_DRAWN = 16  # markers of draws kept in memory a run remembers (see RotationRun.drawn_markers)
ACK_POLL_SECONDS = 1.0  # run_to_completion: a revoke waiting for follower clusters looks again this often


class RotationError(ChamberlainError):
    """A rotation step failed for a reason of the workflow itself (not of a rotator, Vault or Kubernetes)."""


class WriteConflict(RotationError):
    """The secret (or its staging path) moved outside this run: a second writer exists; never overwrite it."""


class PropagationIncomplete(RotationError):
    """Some consumer Secrets did not carry the new marker before the deadline (retryable: ESO may be slow)."""

    retryable = True


class SecretHeld(RotationError):
    """The secret is held after a failed rotation; ``chamberlain rotate NAME --release`` first."""


STEP_ERRORS = (RotatorError, AuthorityError, KubeError, RotationError)


# --------------------------------------------------------------------------------------------------- decision


class Step(StrEnum):
    WAIT = "wait"  # a retry or the revoke time is in the future
    STAGE = "stage"  # create the pending values and write them to the staging path
    RECORD_STAGED = "record-staged"  # the staging write happened (crash before the run was saved): adopt it
    REDRAW = "redraw"  # pending values kept in memory were lost before promote (a crash): draw them again
    SET_AT_TARGET = "set-at-target"
    TEST = "test"
    PROMOTE = "promote"  # copy the staged values to the real path (CAS), then record the marker
    RECORD_PROMOTED = "record-promoted"  # the promote write happened: complete the metadata only
    PROPAGATE = "propagate"
    RESTART = "restart"
    SCHEDULE_REVOKE = "schedule-revoke"
    AWAIT_ACKS = "await-acks"  # maxOverlap passed, a follower cluster has not acknowledged: note whom we wait for
    ACKS_OVERDUE = "acks-overdue"  # ... past the acknowledgement deadline: alert once, keep waiting
    REVOKE = "revoke"
    FINISH = "finish"  # nothing to revoke: done
    CONFLICT = "conflict"  # someone else wrote: fail, never overwrite
    FINALIZE = "finalize"  # a finished run: held flag, alert, ledger entry, last-result (each idempotent)
    STOP = "stop"  # an authority outage interrupted the run under failureStrategy alert/hold: end it failed/held
    NONE = "none"  # finished and recorded


@dataclass(frozen=True)
class Observed:
    """What Vault holds now, as far as the run's next step cares, and whether an authority outage interrupted the
    run. Markers only, never values.

    :func:`observe` reads only the paths :func:`next_step` looks at in the run's stage; a path it does not read is
    reported as the run expects it (its recorded versions and marker)."""

    current_version: int  # latest version of the real path (0: absent)
    current_marker: str | None  # marker of that version's data (None: not read)
    staged_version: int  # latest version of the staging path (0: absent)
    staged_run: str | None  # the run id the staged data one past the base was written by (None: not that version)
    held: bool = False  # not read by observe (next_step does not depend on it; start refuses a held secret)
    # not read by observe either: the authority was unreachable while this run was in flight (the cleaned error),
    # as the executor that lived through the outage saw it; None when no outage interrupted the run
    outage: str | None = None
    # read while ``revoke-wait`` is past maxOverlap only: the follower clusters that have not acknowledged the
    # run's version yet (rotation.clusters; empty: none, or a single-cluster environment)
    unacknowledged: tuple[str, ...] = ()
    # not read either: the pending values a run keeps in memory came with this call from the draw (``tested`` of a
    # ``pending_in: memory`` run promotes them; without them, it draws again)
    pending_in_hand: bool = False


def saved_with_the_next_step(step: Step, run: RotationRun, updated: RotationRun, outage: str | None) -> bool:
    """Whether ``step``'s result is kept in memory and saved with the next step's (pure; the module docstring,
    "Saves"): a promote of values kept in memory that succeeded at the first attempt, by an executor that lived
    through no outage. A resume reads it back from the real path's version and marker. Anything else is saved now:
    a failed attempt and its retry count, a write whose answer an outage may have lost (the executor recognises its
    own record one revision ahead only when it saves next), a staged run's promote."""
    # a promote that failed leaves the run at tested (retried) or ended: "promoted" is a success
    return (step is Step.PROMOTE and run.pending_in == "memory" and outage is None and run.attempts == 0
            and updated.stage == "promoted")


def wake_at(run: RotationRun) -> datetime | None:
    """When a waiting run may act next (a retry, or the end of maxOverlap)."""
    if run.next_retry_at is not None:
        return run.next_retry_at
    return run.revoke_at if run.stage == "revoke-wait" else None


def next_step(run: RotationRun, seen: Observed, now: datetime,
              ack_deadline: timedelta = clusters.DEFAULT_ACK_DEADLINE) -> Step:
    """The one step to do next (pure). Safe to ask again after any crash: a done write is recognised, not redone.

    ``revokeOld`` waits for maxOverlap and then for every follower cluster's acknowledgement of the new version
    (:func:`~chamberlain.rotation.clusters.revoke_gate`); ``ack_deadline`` past maxOverlap, the wait alerts once.

    An outage of the authority during the run (``seen.outage``) ends it under ``alert``/``hold`` even while it
    waits: the policy said a failure needs a human. Under ``retry`` the run goes on where it was."""
    if seen.outage is not None and not run.finished and run.failure_strategy != "retry":
        return Step.STOP
    if run.next_retry_at is not None and now < run.next_retry_at:
        return Step.WAIT
    if run.finished:
        return Step.FINALIZE if run.ledger_seq is None else Step.NONE
    if run.stage not in PROMOTED_OR_LATER and seen.current_version != run.previous_version:
        return Step.RECORD_PROMOTED if _our_promote(run, seen) else Step.CONFLICT
    match run.stage:
        case "pending":
            if seen.staged_version == run.staging_base:
                return Step.STAGE
            if seen.staged_version == run.staging_base + 1 and seen.staged_run == run.run_id:
                return Step.RECORD_STAGED
            return Step.CONFLICT
        case "staged":
            return Step.SET_AT_TARGET
        case "set-at-target":
            return Step.TEST
        case "tested":
            return Step.REDRAW if run.pending_in == "memory" and not seen.pending_in_hand else Step.PROMOTE
        case "promoted":
            return Step.PROPAGATE
        case "propagated":
            return Step.RESTART
        case "restarted":  # a record saved before the restart step went on to these itself
            return _after_restart(run)
        case "revoke-wait":
            return _revoke_step(run, seen, now, ack_deadline)
    return Step.NONE  # pragma: no cover - every unfinished stage is matched above


def _after_restart(run: RotationRun) -> Step:
    return Step.SCHEDULE_REVOKE if run.revoke_old and run.mode == "rotate" else Step.FINISH


def _revoke_step(run: RotationRun, seen: Observed, now: datetime, ack_deadline: timedelta) -> Step:
    gate = clusters.revoke_gate(run.revoke_at, seen.unacknowledged, now, ack_deadline)
    if gate is clusters.RevokeGate.OVERLAP:
        return Step.WAIT
    if gate is clusters.RevokeGate.REVOKE:
        return Step.REVOKE
    if gate is clusters.RevokeGate.OVERDUE and clusters.OVERDUE_NOTE not in run.notes:
        return Step.ACKS_OVERDUE
    awaited = ",".join(seen.unacknowledged)
    return Step.WAIT if run.notes.get(clusters.AWAITING_NOTE) == awaited else Step.AWAIT_ACKS


def _our_promote(run: RotationRun, seen: Observed) -> bool:
    """The real path moved by exactly one version, to the staged values (or, kept in memory, to any draw the run
    saved before writing it): this run's own promote write."""
    return (run.stage == "tested" and seen.current_version == run.previous_version + 1
            and seen.current_marker is not None
            and (seen.current_marker == run.pending_marker or seen.current_marker in run.drawn_markers))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits ``min(cap, base * factor**(n-1))``, of which the upper
    half is drawn at random ("equal jitter": never less than half the nominal delay, never a synchronized herd)."""

    base: timedelta = timedelta(seconds=10)
    factor: float = 2.0
    cap: timedelta = timedelta(minutes=15)
    max_attempts: int = 12  # then the run needs a human: failed


def retry_delay(attempt: int, backoff: Backoff, draw: float) -> timedelta:
    """Pure: the delay before retry number ``attempt`` (1-based), ``draw`` in [0, 1) from the injected RNG."""
    nominal = min(backoff.cap.total_seconds(), backoff.base.total_seconds() * backoff.factor ** (attempt - 1))
    return timedelta(seconds=nominal / 2 + draw * nominal / 2)


# --------------------------------------------------------------------------------------------------- dependencies


class RandomSource(Protocol):
    def random(self) -> float: ...


class Propagation(Protocol):
    """How a promoted version reaches consumers: refresh, wait for the marker, restart (each idempotent)."""

    def refresh(self, token: str) -> None: ...

    def wait(self, marker: str) -> None:
        """Return when every consumer carries ``marker``; raise :class:`PropagationIncomplete` otherwise."""
        ...

    def restart(self, token: str) -> Restarts:
        """Roll the declared workloads once for batch ``token``; returns the ones actually patched and the ones
        left to Reloader (which rolls them itself: never twice)."""
        ...


@dataclass(frozen=True)
class Consumer:
    """One consumer of the rotating secret: its ExternalSecret, the Secret it materializes, the workloads reading
    it (all in the same namespace)."""

    external_secret: ExternalSecretRef
    secret: ConsumerRef
    workloads: tuple[WorkloadRef, ...] = ()


@dataclass
class KubeConsumers:
    """:class:`Propagation` over the :mod:`chamberlain.propagation` functions and a KubePropagation API."""

    kube: KubePropagation
    secret: str
    consumers: Sequence[Consumer]
    clock: Clock
    timeout: float = 120.0
    poll: float = 1.0
    # asked between looks: True cuts the wait short with WaitInterrupted (a stopping controller; no failure)
    interrupted: Callable[[], bool] | None = None

    def refresh(self, token: str) -> None:
        force_refresh(self.kube, [c.external_secret for c in self.consumers], token)

    def wait(self, marker: str) -> None:
        results = wait_in_sync(self.kube, [c.secret for c in self.consumers], marker, self.clock, self.timeout,
                               self.poll, self.interrupted)
        late = [f"{r.consumer.namespace}/{r.consumer.name}" for r in results if not r.in_sync]
        if late:
            raise PropagationIncomplete(f"{self.secret}: consumers not in sync after {self.timeout:g}s: "
                                        f"{', '.join(late)}")

    def restart(self, token: str) -> Restarts:
        change = Change(self.secret, tuple((c.secret, c.workloads) for c in self.consumers))
        return restart_all(self.kube, restart_sources([change]), token, self.clock)


class AdminSource(Protocol):
    """The admin login of a rotation's target (the values of ``target.postgres.adminIntent``), read from the
    authority when called. Holds no value itself: the executor calls it inside the one step that needs it."""

    def __call__(self) -> Mapping[str, str]: ...


def _no_alert(run: RotationRun) -> None:
    return None


@dataclass
class RotationDeps:
    """Everything :func:`advance` acts through. No values: ``admin`` reads the target's admin login on demand
    (inside set at target, test and revoke only), so deps kept for the length of a run hold none."""

    kv: KV
    ledger: Ledger
    rotator: Rotator
    intent: SecretIntent
    propagation: Propagation
    clock: Clock
    rng: RandomSource
    actor: str = "chamberlain-controller"
    backoff: Backoff = field(default_factory=Backoff)
    admin: AdminSource | None = None
    on_alert: Callable[[RotationRun], None] = _no_alert  # event + metric hook of failureStrategy alert
    pki: CertificateIssuer | None = None  # signs/revokes for the x509-vault-pki rotator
    # Version markers, keyed by the authority (TransitMarkers) in every live caller; v1 only for fakes (issue 11).
    markers: Markers = field(default_factory=LegacyMarkers)
    # The environment's follower clusters (rotation.clusters): revokeOld waits for their acknowledgements.
    followers: tuple[str, ...] = ()
    ack_deadline: timedelta = clusters.DEFAULT_ACK_DEADLINE
    on_overdue: Callable[[RotationRun], None] = _no_alert  # a follower's acknowledgement is overdue (once per run)


# --------------------------------------------------------------------------------------------------- start


def _policy(custom: Mapping[str, str]) -> RotationPolicySpec | None:
    return from_metadata(custom)


def pending_home(rotator: Rotator, trigger: TriggerKind) -> PendingHome:
    """Where a new run of ``rotator`` keeps its pending values (pure): in memory when its draw can be made again
    (:func:`~chamberlain.rotation.rotators.base.draws_locally`); on the staging path for every other rotator and
    for an import, whose value was supplied once and cannot be drawn again."""
    return "memory" if trigger != "import" and draws_locally(rotator) else "staging"


def start(
    kv: KV,
    secret_path: VaultPath,
    *,
    secret: str,
    run_id: str,
    trigger: TriggerKind,
    reason: str,
    now: datetime,
    source_version: int | None = None,
    ignore_held: bool = False,
    existing: RotationRun | None = None,
    loaded: bool = False,
    pending_in: PendingHome = "staging",
) -> RotationRun:
    """Take the lease and record a new run (or join the same run id). Refuses while another run is unfinished
    (:class:`~chamberlain.rotation.run.RunActive`) or while the secret is held (:class:`SecretHeld`). ``loaded``:
    ``existing`` is the record :func:`~chamberlain.rotation.run.load` just returned (the caller read it for its
    rate limit; a stale one only costs a retry, the lease write is check-and-set). ``pending_in``: where the run
    keeps its pending values (:func:`pending_home` of the rotator that will act); "memory" never reads the staging
    path."""
    if not loaded:
        existing = runs.load(kv, secret_path)
    if existing is not None and existing.run_id == run_id:
        return existing
    meta = kv.read_metadata(secret_path.mount, secret_path.path)
    return _begin(kv, secret_path, existing, meta, secret=secret, run_id=run_id, trigger=trigger, reason=reason,
                  now=now, source_version=source_version, ignore_held=ignore_held,
                  pending_in=pending_in if source_version is None else "staging")


def _begin(
    kv: KV,
    secret_path: VaultPath,
    existing: RotationRun | None,
    meta: SecretMetadata | None,
    *,
    secret: str,
    run_id: str,
    trigger: TriggerKind,
    reason: str,
    now: datetime,
    source_version: int | None,
    ignore_held: bool,
    pending_in: PendingHome = "staging",
) -> RotationRun:
    """:func:`start` once the run record (``existing``) and the secret's metadata are read."""
    if meta is None or meta.current_version == 0:
        raise NotFound(f"{secret_path}: no secret to rotate")
    if meta.custom.get(wk.HELD) == "true" and not ignore_held:
        raise SecretHeld(f"{secret}: held after run {meta.custom.get(wk.HELD_RUN, '?')}; release it first")
    staging = kv.read_metadata(secret_path.mount, staging_path(secret_path)) if pending_in == "staging" else None
    policy = _policy(meta.custom)
    fresh = RotationRun(
        run_id=run_id, secret=secret, path=secret_path.path, mount=secret_path.mount, trigger=trigger,
        reason=reason, mode="rollback" if source_version is not None else "rotate",
        started_at=now, updated_at=now,
        failure_strategy=policy.failure_strategy if policy else "retry",
        # an imported value was issued upstream: the upstream revokes its old credential, chamberlain cannot
        revoke_old=policy.revoke_old if policy and trigger != "import" else False,
        max_overlap_seconds=policy.max_overlap.total_seconds() if policy and policy.max_overlap else 0.0,
        policy_metadata={k: v for k, v in meta.custom.items() if k.startswith(wk.POLICY_PREFIX)},
        previous_version=meta.current_version,
        staging_base=staging.current_version if staging else 0,
        pending_in=pending_in,
        source_version=source_version,
        failures_before=failure_streak(meta.custom)[0],
    )
    return runs.take_lease(kv, fresh, existing, loaded=True)


# --------------------------------------------------------------------------------------------------- observe/act


def _public(data: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in data.items() if not k.startswith(RESERVED_PREFIX)}


@dataclass(frozen=True)
class _Seen:
    """An observation and the versions read for it: the executor of the same step uses their data instead of
    reading them again (values stay in memory for the duration of the step only, or, staged and tested from
    memory, until the promote that follows in the same call)."""

    observed: Observed
    real: SecretVersion | None = None  # latest version of the real path, when read
    staged: SecretVersion | None = None  # the staging version one past the base, when read (see _staging_latest)


# stages in which a foreign write to the real path must stop the run before it acts (at ``tested`` the promote
# write's check-and-set is the check); their steps also need the current values, which the same read returns
_READS_REAL: frozenset[runs.Stage] = frozenset({"pending", "staged", "set-at-target"})


def _look(run: RotationRun, kv: KV, markers: Markers, outage: str | None = None,
          followers: Sequence[str] = (), now: datetime | None = None, in_hand: bool = False) -> _Seen:
    # pending values kept in memory and lost (not in hand at ``tested``): drawn again, from the current values
    redraw = run.pending_in == "memory" and run.stage == "tested" and not in_hand
    read_real = not run.finished and (run.stage in _READS_REAL or redraw)
    read_staged = not run.finished and run.stage == "pending" and run.pending_in == "staging"
    real = kv.read(run.mount, run.path) if read_real else None
    staged_version, staged = _staging_latest(kv, run) if read_staged else (0, None)
    if read_real:
        current_version = real.version if real else 0
        # next_step looks at the marker only once the version moved (to tell this run's own promote apart): a
        # marker is a Vault call (transit HMAC), so it is not asked for otherwise
        moved = real is not None and real.version != run.previous_version
        current_marker = markers.of(run.vault, real.data) if real is not None and moved else None
    else:  # as the run expects it
        current_version = run.current_version or run.previous_version
        current_marker = run.pending_marker if run.stage in PROMOTED_OR_LATER else None
    if read_staged:
        staged_run = staged.data.get(STAGED_RUN) if staged else None
    else:
        staged_version = run.staged_version or run.staging_base
        staged_run = run.run_id if run.staged_version else None
    missing: tuple[str, ...] = ()
    past_overlap = run.revoke_at is None or (now is not None and now >= run.revoke_at)
    if followers and not run.finished and run.stage == "revoke-wait" and past_overlap:
        acks = {c: clusters.read_acknowledgement(kv, run.vault, c)[0] for c in followers}
        missing = clusters.unacknowledged(followers, acks, run.current_version or 0)
    return _Seen(Observed(current_version, current_marker, staged_version, staged_run, outage=outage,
                          unacknowledged=missing, pending_in_hand=in_hand), real, staged)


def _staging_latest(kv: KV, run: RotationRun) -> tuple[int, SecretVersion | None]:
    """The staging path's latest version number and, only when it is one past the run's base (this run's own
    staging write, a crash before the run was saved), that version. The metadata answers the number in one request
    whether the latest version is live, destroyed (as a run that promoted leaves it) or absent, and no staged value
    is read unless it may be this run's own."""
    meta = kv.read_metadata(run.mount, staging_path(run.vault))
    version = meta.current_version if meta is not None else 0
    if version != run.staging_base + 1:
        return version, None
    return version, kv.read(run.mount, staging_path(run.vault), version)


def staged_marker(kv: KV, run: RotationRun, markers: Markers) -> str | None:
    """The marker of the values ``run`` staged, recorded in the run or not (a crash between the staging write and
    saving the run leaves it unrecorded); None when it staged nothing."""
    if run.pending_marker is not None:
        return run.pending_marker
    staged = kv.read(run.mount, staging_path(run.vault))
    if staged is None or staged.version != run.staging_base + 1 or staged.data.get(STAGED_RUN) != run.run_id:
        return None
    return markers.of(run.vault, _public(staged.data))


def observe(run: RotationRun, kv: KV, markers: Markers | None = None) -> Observed:
    """What :func:`next_step` needs to know of Vault for ``run``, read with as few calls as its stage allows:
    the real path while a foreign write must stop the run (``pending`` to ``set-at-target``, and ``tested`` of a
    run whose pending values were in a memory this call does not have), the staging path while ``pending`` (a run
    that stages), nothing else at ``tested`` (promote's check-and-set checks), past promote or when finished."""
    return _look(run, kv, markers if markers is not None else LegacyMarkers()).observed


def rotator_for(run: RotationRun, rotator: Rotator) -> Rotator:
    """The rotator that acts for ``run``: an import run is only ever staged from the value its ``chamberlain
    import`` supplied (an :class:`ImportedRotator` holding it); any other executor — the controller adopting the
    run, a resume — gets one that holds no value, so a run interrupted before staging fails instead of generating
    or guessing one, and one past staging goes on from what Vault staged."""
    if run.trigger == "import" and not isinstance(rotator, ImportedRotator):
        return ImportedRotator()
    return rotator


class _Executor:
    """One step of one run. Holds values in memory only for the duration of the step."""

    def __init__(self, run: RotationRun, deps: RotationDeps, now: datetime, seen: _Seen | None = None) -> None:
        self.run, self.deps, self.now = run, deps, now
        self.kv = deps.kv
        self.rotator = rotator_for(run, deps.rotator)
        self.seen = seen or _Seen(Observed(run.previous_version, None, run.staging_base, None))
        self.held_values: list[str] = []  # every value read in this step, to scrub error messages
        self.tested_in_hand: SecretVersion | None = None  # stage tested these staged values from memory
        for version in (self.seen.real, self.seen.staged):
            if version is not None:
                self.held_values.extend(version.data.values())

    # -------------------------------------------------------------- reads

    def _read(self, path: str, version: int | None = None) -> dict[str, str]:
        got = self.kv.read(self.run.mount, path, version)
        if got is None:
            raise WriteConflict(f"{self.run.mount}/{path}: version {version or 'latest'} is missing")
        self.held_values.extend(got.data.values())
        return dict(got.data)

    def _current(self) -> dict[str, str]:
        """The values of the version the run started from: observed this step (latest = previous version, or
        next_step would have named a conflict), else read."""
        real = self.seen.real
        if real is not None and real.version == self.run.previous_version:
            return dict(real.data)
        return self._read(self.run.path, self.run.previous_version)

    def _policy(self) -> RotationPolicySpec | None:
        if self.run.policy_metadata is not None:
            return _policy(self.run.policy_metadata)
        meta = self.kv.read_metadata(self.run.mount, self.run.path)  # a run recorded before the snapshot
        return _policy(meta.custom) if meta is not None else None

    def context(self, current: Mapping[str, str], *, admin: bool = False) -> RotationContext:
        """The rotator's view of this step; ``admin``: the step logs in as the target's admin, whose values are
        read now and live as long as this executor (one step)."""
        return RotationContext(intent=self.deps.intent, now=self.now, current=current, policy=self._policy(),
                               admin=self._admin() if admin else None, pki=self.deps.pki)

    def _admin(self) -> dict[str, str] | None:
        if self.deps.admin is None:
            return None
        values = dict(self.deps.admin())
        self.held_values.extend(values.values())
        return values

    def _in_hand(self) -> SecretVersion | None:
        """The staged version, when its values came with this step (see :func:`advance`'s ``then_promote``)."""
        staged = self.seen.staged  # kept in memory: version 0, nothing staged
        if self.run.stage == "tested" and staged is not None and staged.version == (self.run.staged_version or 0):
            return staged
        return None

    def pending(self) -> PendingVersion:
        in_hand = self._in_hand()
        if in_hand is not None:
            staged = dict(in_hand.data)
        else:
            staged = self._read(staging_path(self.run.vault), self.run.staged_version)
        return PendingVersion(data=_public(staged), rotated=frozenset(self.run.rotated_keys),
                              notes=dict(self.run.notes))

    # -------------------------------------------------------------- steps

    def _room_for_the_record(self) -> None:
        """Before anything is staged: the secret's custom_metadata, as the read of its current version answered
        it, has room for what the run will record (else its new value would go live unrecorded). Promote checks
        again against the map its write answers."""
        real = self.seen.real
        if real is None or real.custom is None:
            return
        keys = (*PROMOTE_METADATA, *END_METADATA, *((wk.HELD, wk.HELD_RUN) if self.run.failure_strategy == "hold"
                                                    else ()))
        try:
            merge_custom_metadata(real.custom, dict.fromkeys(keys, "-"))
        except MetadataTooLarge as exc:
            raise RotationError(f"{self.run.secret}: no room in the secret's custom_metadata to record the run "
                                f"({exc}); nothing was staged") from None

    def stage(self) -> RotationRun:
        in_memory = self.run.pending_in == "memory"
        if in_memory and not draws_locally(self.rotator):  # checked before anything is drawn
            raise RotationError(f"{self.run.secret}: run {self.run.run_id} keeps its pending values in memory, but "
                                f"rotator {getattr(self.rotator, 'name', '?')!r} must stage them (the intent's "
                                "rotator changed during the run); nothing was drawn, the next run stages")
        current = self._current()
        self._room_for_the_record()
        if self.run.mode == "rollback" and self.run.source_version is not None:
            source = self._read(self.run.path, self.run.source_version)
            data = source
            rotated = frozenset(k for k in set(source) | set(current) if source.get(k) != current.get(k))
            notes: dict[str, str] = {"rollback-to": str(self.run.source_version)}
        else:
            fresh = self.rotator.create_pending(self.context(current))
            data, rotated, notes = dict(fresh.data), fresh.rotated, dict(fresh.notes)
            self.held_values.extend(data.values())
        if any(k.startswith(RESERVED_PREFIX) for k in data):
            raise RotationError(f"{self.run.secret}: a key starts with the reserved prefix {RESERVED_PREFIX!r}")
        staged = {**data, STAGED_RUN: self.run.run_id, STAGED_ROTATED: json.dumps(sorted(rotated)),
                  STAGED_NOTES: json.dumps(notes, sort_keys=True)}
        if in_memory:  # nothing goes to the staging path: the run stays where it was until "tested" is saved
            run = self._staged(None, staged)
        else:
            version = self.kv.write(self.run.mount, staging_path(self.run.vault), staged, cas=self.run.staging_base)
            checkpoint("rotation.stage")
            run = self._staged(version, staged)
            if has_target(self.rotator):
                return run
            # A failed test below is recorded at "staged" (the retry goes through the usual steps from there)
            self.run = run
        # Nothing outside Vault to set: test the pending version now, from memory, and persist "tested" (two
        # persisted steps fewer, each of which read both versions again). Kept in memory, the draw's marker joins
        # the run's drawn markers before the promote write that follows in the same call: it recognises that write
        # after a crash (bounded by the attempts a run may make; past the cap, a forgotten draw is a conflict).
        self.rotator.test(self.context(current), PendingVersion(data=_public(staged), rotated=frozenset(rotated),
                                                                notes=notes))
        checkpoint("rotation.test")
        self.tested_in_hand = SecretVersion(run.staged_version or 0, staged)
        drawn = (*run.drawn_markers, run.pending_marker or "")[-MAX_DRAWN:] if in_memory else run.drawn_markers
        return run.model_copy(update={"stage": "tested", "drawn_markers": drawn})

    def record_staged(self) -> RotationRun:
        version = self.run.staging_base + 1
        staged = self.seen.staged
        if staged is not None and staged.version == version:
            return self._staged(version, staged.data)
        return self._staged(version, self._read(staging_path(self.run.vault), version))

    def _staged(self, version: int | None, staged: Mapping[str, str]) -> RotationRun:
        """The run with the pending values' marker, rotated keys and notes; ``version``: where they were staged
        (None: kept in memory)."""
        return self.run.model_copy(update={
            "stage": "staged",
            "staged_version": version,
            "pending_marker": self.deps.markers.of(self.run.vault, _public(staged)),
            "rotated_keys": tuple(json.loads(staged.get(STAGED_ROTATED, "[]"))),
            "notes": {**self.run.notes, **json.loads(staged.get(STAGED_NOTES, "{}"))},
        })

    def set_at_target(self) -> RotationRun:
        current = self._current()
        self.rotator.set_at_target(self.context(current, admin=True), self.pending())
        checkpoint("rotation.set-at-target")
        return self.run.model_copy(update={"stage": "set-at-target"})

    def test(self) -> RotationRun:
        current = self._current()
        self.rotator.test(self.context(current, admin=True), self.pending())
        checkpoint("rotation.test")
        return self.run.model_copy(update={"stage": "tested"})

    def promote(self) -> RotationRun:
        checkpoint("rotation.before-promote")  # values kept in memory die here with the process: drawn again
        pending = self.pending()
        # values read back from the staging path are checked against the marker recorded when they were staged;
        # values still in hand are the ones that marker was made of
        if self._in_hand() is None and self.deps.markers.of(self.run.vault, pending.data) != self.run.pending_marker:
            raise WriteConflict(f"{self.run.secret}: the staged version changed since it was staged")
        known: Mapping[str, str] | None = None  # the custom_metadata as the write left it, when the KV answers it
        try:
            _, known = write_and_custom(self.kv, self.run.mount, self.run.path, pending.data,
                                        cas=self.run.previous_version)
        except CasConflict:
            # The real path moved: this run's own write of an earlier attempt (crashed before it was recorded),
            # or a second writer. Only now is the real path read, to tell which.
            latest = self.kv.read(self.run.mount, self.run.path)
            if latest is not None:
                self.held_values.extend(latest.data.values())
            seen = Observed(latest.version if latest else 0,
                            self.deps.markers.of(self.run.vault, latest.data) if latest else None,
                            self.run.staged_version or 0, self.run.run_id)
            if not _our_promote(self.run, seen):
                raise WriteConflict(f"{self.run.secret}: {self.run.vault} changed outside run {self.run.run_id}; "
                                    "not overwritten") from None
            self._adopt_draw(seen.current_marker)
        else:
            checkpoint("rotation.promote.write")
        return self.record_promoted(known)

    def _adopt_draw(self, marker: str | None) -> None:
        """The real path holds this run's own write with ``marker``: when that is an earlier draw of the run (kept
        in memory, written by an executor that lost the run meanwhile), it is the draw recorded as promoted."""
        if marker is not None and marker != self.run.pending_marker and marker in self.run.drawn_markers:
            self.run = self.run.model_copy(update={"pending_marker": marker})

    def record_promoted(self, known: Mapping[str, str] | None = None) -> RotationRun:
        self._adopt_draw(self.seen.observed.current_marker)  # None unless observe read the real path
        version = self.run.previous_version + 1
        values = (self.run.pending_marker or "", str(version), rfc3339(self.now), self.run.run_id,
                  self.run.reason[:200])
        update = dict(zip(PROMOTE_METADATA, values, strict=True))
        try:  # the KV checks the merged custom_metadata against Vault's limits before it writes
            self._record(update, known)
        except MetadataTooLarge as exc:
            raise RotationError(f"{self.run.secret}: cannot record the promoted version ({exc})") from None
        checkpoint("rotation.promote")
        return self.run.model_copy(update={"stage": "promoted", "current_version": version})

    def _record(self, update: Mapping[str, str], known: Mapping[str, str] | None = None) -> None:
        """Merge ``update`` into the secret's custom_metadata with one PATCH (no lost update of a key someone else
        wrote meanwhile, ESO's marker among them), checked against the map the write just before answered
        (``known``), else read now: never a map kept from the start of the run."""
        update_metadata(self.kv, self.run.mount, self.run.path, update, known)

    def propagate(self) -> RotationRun:
        token = f"{self.run.run_id}.{self.run.attempts}"  # a retried refresh needs a new force-sync value
        self.deps.propagation.refresh(token)
        self.deps.propagation.wait(self.run.pending_marker or "")
        checkpoint("rotation.propagate")
        return self.run.model_copy(update={"stage": "propagated"})

    def restart(self) -> RotationRun:
        finishing = _after_restart(self.run) is Step.FINISH
        # the ledger mark the end needs, read before any workload rolls: a failed read retries the step unrolled
        mark = self.deps.ledger.mark() if finishing else None
        done = self.deps.propagation.restart(self.run.run_id)
        checkpoint("rotation.restart")
        notes = dict(self.run.notes)
        if done.rolled:
            notes["restarted"] = str(len(done.rolled))
        if done.left_to_reloader:  # names only: reported so nobody wonders why chamberlain did not roll them
            notes["left-to-reloader"] = ",".join(done.left_to_reloader)
        # The step after a restart acts on nothing outside the run (a revoke time, or the end with the ledger's
        # mark): done in the same step, one save fewer. A crash before the save restarts again, as it always did.
        self.run = self.run.model_copy(update={"stage": "restarted", "notes": notes})
        return self._finish("done", mark) if finishing else self.schedule_revoke()

    def schedule_revoke(self) -> RotationRun:
        at = self.now + timedelta(seconds=self.run.max_overlap_seconds)
        return self.run.model_copy(update={"stage": "revoke-wait", "revoke_at": at})

    def await_acks(self) -> RotationRun:
        """Name the follower clusters revokeOld waits for (shown in the run's status; names only)."""
        awaited = ",".join(self.seen.observed.unacknowledged)
        return self.run.model_copy(update={"notes": {**self.run.notes, clusters.AWAITING_NOTE: awaited}})

    def acks_overdue(self) -> RotationRun:
        """Past the acknowledgement deadline: alert once (recorded in the run), keep waiting."""
        notes = {**self.run.notes, clusters.AWAITING_NOTE: ",".join(self.seen.observed.unacknowledged),
                 clusters.OVERDUE_NOTE: rfc3339(self.now)}
        run = self.run.model_copy(update={"notes": notes})
        self.deps.on_overdue(run)
        return run

    def revoke(self) -> RotationRun:
        mark = self.deps.ledger.mark()
        if has_target(self.rotator):  # a target-less rotator has nothing to revoke: its values are not read
            previous = self._read(self.run.path, self.run.previous_version)
            current = self._read(self.run.path, self.run.current_version)
            self.rotator.revoke_old(self.context(current, admin=True), previous)
        checkpoint("rotation.revoke")
        finished = self._finish("revoked", mark)
        if not self.deps.followers:
            return finished
        notes = {k: v for k, v in finished.notes.items() if k != clusters.AWAITING_NOTE}
        notes[clusters.ACKNOWLEDGED_NOTE] = ",".join(self.deps.followers)
        return finished.model_copy(update={"notes": notes})

    def finish(self) -> RotationRun:
        return self._finish("done", self.deps.ledger.mark())

    def _finish(self, stage: runs.Stage, mark: LedgerMark | None) -> RotationRun:
        """The terminal stage, with the ledger mark the run's one entry will be chained after (read before the
        first attempt to append it, so an attempt that crashed before recording it is found after the mark)."""
        return self.run.model_copy(update={"stage": stage, "finished_at": self.now, "next_retry_at": None,
                                           "ledger_mark": mark})

    def _mark_or_none(self) -> LedgerMark | None:
        try:
            return self.deps.ledger.mark()
        except (*STEP_ERRORS, KeyError, ValueError):
            return None  # finalize searches the whole ledger instead

    def finalize(self) -> RotationRun:
        run = self.run
        result: Result = "ok" if run.succeeded else "failed"
        update = {wk.LAST_RESULT: f"{run.run_id}:{result}",
                  wk.FAILED_RUNS: "0" if run.succeeded else str(run.failures_before + 1)}
        if not run.succeeded:
            update[wk.LAST_FAILED] = rfc3339(run.finished_at or self.now)
        if run.stage == "held":
            update.update({wk.HELD: "true", wk.HELD_RUN: run.run_id})
        try:
            self._record(update)
            unrecorded: dict[str, str] = {}
        except MetadataTooLarge as exc:  # a full custom_metadata must not keep the run from its alert and entry
            unrecorded = {"metadata": f"not recorded ({exc})"[:200]}
        staged = self._destroy_staged()
        ledger, mark = self.deps.ledger, run.ledger_mark

        def ours(entry: LedgerEntry) -> bool:
            return entry.event == "rotation" and entry.run == run.run_id and entry.secret == run.secret

        alert = run.failure_strategy == "alert" and not run.succeeded
        entry = None
        if mark is None:  # unknown where the entry would be (an older record, or the head was unreadable)
            entry = _find_entry(ledger, run)
        elif alert:  # alert only while no entry exists: look after the mark first
            entry = ledger.find_after(mark, ours)
        if entry is None:
            if alert:
                self.deps.on_alert(run)  # at least once: a crash before the entry is appended alerts again
            entry = ledger.append(
                "rotation", actor=self.deps.actor, secret=run.secret, path=run.vault.full, run=run.run_id,
                reason=run.reason, result=result, details={**_ledger_details(run), **staged, **unrecorded},
                after=mark,
                find=ours if mark is not None else None,
            )
        checkpoint("rotation.finalize")
        return run.model_copy(update={"ledger_seq": entry.seq})

    def _destroy_staged(self) -> dict[str, str]:
        """Once the real path holds the promoted values, their staged copy is plaintext nobody needs: destroyed
        (again after a crash: a no-op). Never before promote, where it may be the only copy of a credential already
        set at the target; and never at the cost of the run: a refusal is noted in the ledger entry (an outage is
        retried with the rest of the finalize step)."""
        run = self.run
        if run.current_version is None or not run.staged_version:
            return {}
        try:
            self.kv.destroy(run.mount, staging_path(run.vault), [run.staged_version])
        except AuthorityUnavailable:
            raise
        except AuthorityError as exc:
            return {"staged": f"kept ({type(exc).__name__})"}
        return {"staged": "destroyed"}

    # -------------------------------------------------------------- failure

    def fail(self, exc: ChamberlainError) -> RotationRun:
        run = self.run
        attempts = run.attempts + 1
        if run.finished:  # recording a finished run failed: retry the recording, the outcome stands
            delay = retry_delay(min(attempts, 8), self.deps.backoff, self.deps.rng.random())
            return run.model_copy(update={"attempts": attempts, "next_retry_at": self.now + delay})
        message = clean_error(exc, tuple(self.held_values))
        if exc.retryable and run.failure_strategy == "retry" and attempts < self.deps.backoff.max_attempts:
            delay = retry_delay(attempts, self.deps.backoff, self.deps.rng.random())
            return run.model_copy(update={"attempts": attempts, "next_retry_at": self.now + delay,
                                          "last_error": message})
        return self._stop(message)

    def stop(self) -> RotationRun:
        """An authority outage interrupted the run under ``alert``/``hold``: end it now that the authority answers
        (finalize then marks the secret held, alerts and ledgers, like after any other failure)."""
        return self._stop(f"authority unavailable during {self.run.stage}: {self.seen.observed.outage}")

    def _stop(self, message: str) -> RotationRun:
        """The end of a run that failed: ``held`` under failureStrategy hold, else ``failed``; one more attempt."""
        run = self.run
        stage: runs.Stage = "held" if run.failure_strategy == "hold" else "failed"
        return run.model_copy(update={"stage": stage, "attempts": run.attempts + 1, "next_retry_at": None,
                                      "last_error": message[:runs.MAX_ERROR_CHARS], "finished_at": self.now,
                                      "ledger_mark": self._mark_or_none()})


def _ledger_details(run: RotationRun) -> dict[str, str]:
    details = {
        "trigger": run.trigger,
        "mode": run.mode,
        "stage": run.stage,
        "attempts": str(run.attempts),
        "previous-version": str(run.previous_version),
        "version": str(run.current_version or ""),
        "marker": run.pending_marker or "",
        "rotated": ",".join(run.rotated_keys),
    }
    if run.last_error and not run.succeeded:
        details["error"] = run.last_error
    details.update({f"note.{k}": v for k, v in run.notes.items()})
    return details


def _find_entry(ledger: Ledger, run: RotationRun) -> LedgerEntry | None:
    for entry in reversed(ledger.for_secret(run.secret)):
        if entry.event == "rotation" and entry.run == run.run_id:
            return entry
    return None


def advance(run: RotationRun, deps: RotationDeps, *, outage: str | None = None,
            then_promote: Callable[[RotationRun], None] | None = None) -> RotationRun:
    """Do the one step :func:`next_step` names and persist the result (CAS on the run record). Returns the run as
    persisted; unchanged when there is nothing to do yet (WAIT, NONE). :class:`RunLost` when another executor
    moved the record. ``outage``: the authority was unreachable while this run was in flight (the cleaned error;
    see :attr:`Observed.outage`).

    ``then_promote``: a run whose rotator has no target is staged and tested in one step; with this callable, once
    ``tested`` is saved the callable gets that run and promote follows in the same call, with the staged values
    still in hand (no read of the staging path, no marker of it). Two persisted steps and their crash points, as in
    two calls; the callable keeps the caller's copy current should the promote half raise. A run that keeps its
    pending values in memory is always promoted in the same call (the next would not have them); the callable, if
    given, is told all the same."""
    return _advance(run, deps, outage, then_promote, None)


def _advance(run: RotationRun, deps: RotationDeps, outage: str | None,
             then_promote: Callable[[RotationRun], None] | None, in_hand: SecretVersion | None) -> RotationRun:
    now = deps.clock.now()
    if outage is None and run.next_retry_at is not None and now < run.next_retry_at:
        return run  # WAIT, decided from the run alone: nothing to read
    try:
        seen = _look(run, deps.kv, deps.markers, outage, deps.followers, now, in_hand=in_hand is not None)
    except AuthorityUnavailable:
        raise
    except AuthorityError as exc:  # refused (403, 404, ...): a failure of this run, which its policy decides
        return runs.save(deps.kv, _Executor(run, deps, now).fail(exc).model_copy(update={"updated_at": now}))
    if in_hand is not None:
        seen = _Seen(seen.observed, seen.real, in_hand)
    step = next_step(run, seen.observed, now, deps.ack_deadline)
    if step in (Step.WAIT, Step.NONE):
        return run
    ex = _Executor(run, deps, now, seen)
    try:
        actions: dict[Step, Callable[[], RotationRun]] = {
            Step.STAGE: ex.stage,
            Step.RECORD_STAGED: ex.record_staged,
            Step.REDRAW: ex.stage,
            Step.SET_AT_TARGET: ex.set_at_target,
            Step.TEST: ex.test,
            Step.PROMOTE: ex.promote,
            Step.RECORD_PROMOTED: ex.record_promoted,
            Step.PROPAGATE: ex.propagate,
            Step.RESTART: ex.restart,
            Step.SCHEDULE_REVOKE: ex.schedule_revoke,
            Step.AWAIT_ACKS: ex.await_acks,
            Step.ACKS_OVERDUE: ex.acks_overdue,
            Step.REVOKE: ex.revoke,
            Step.FINISH: ex.finish,
            Step.FINALIZE: ex.finalize,
            Step.STOP: ex.stop,
        }
        if step is Step.CONFLICT:
            raise WriteConflict(f"{run.secret}: {run.vault} or its staging path changed outside run {run.run_id}")
        updated = actions[step]()
        # A draw kept in memory is not progress until it is promoted: a promote that keeps failing would otherwise
        # redraw at the first backoff forever, never reaching max_attempts
        drawn = run.pending_in == "memory" and step in (Step.STAGE, Step.REDRAW)
        kept = step in (Step.FINALIZE, Step.STOP) or drawn
        keep = {"attempts": updated.attempts if kept else 0}
        updated = updated.model_copy(update={**keep, "next_retry_at": None})
    except STEP_ERRORS as exc:
        updated = ex.fail(exc)
    except Exception as exc:  # a rotator plug-in's own bug fails this run, never the controller; its text may
        # quote values, so only its type is kept
        updated = ex.fail(RotatorError(f"{run.secret}: step {step.value} raised {type(exc).__name__}"))
    updated = updated.model_copy(update={"updated_at": now})
    if saved_with_the_next_step(step, run, updated, outage):
        saved = runs.settled(updated)  # as the record would hold it; the revision stays the last save's
    else:
        saved = runs.save(deps.kv, updated)
    # values kept in memory are promoted in this call whatever the caller asked: the next call would not have them
    promote_now = then_promote is not None or saved.pending_in == "memory"
    if promote_now and ex.tested_in_hand is not None and saved.stage == "tested":
        if then_promote is not None:
            then_promote(saved)
        return _advance(saved, deps, outage, None, ex.tested_in_hand)
    return saved


def _nothing(run: RotationRun) -> None:
    return None


def run_to_completion(run: RotationRun, deps: RotationDeps, max_steps: int = MAX_STEPS) -> RotationRun:
    """Advance until the run is finished and recorded, sleeping (injected) while it waits."""
    for _ in range(max_steps):
        if run.finished and run.ledger_seq is not None:
            return run
        after = advance(run, deps, then_promote=_nothing)  # a raise leaves the run to resume from its record
        if after == run:  # waiting: sleep until it may act again
            at = wake_at(run)
            if at is None:  # pragma: no cover - a run that neither waits nor acts would loop
                raise RotationError(f"run {run.run_id} of {run.secret} made no progress")
            # past its time, it waits for follower clusters' acknowledgements: look again a little later
            floor = ACK_POLL_SECONDS if clusters.AWAITING_NOTE in run.notes else 0.0
            deps.clock.sleep(max((at - deps.clock.now()).total_seconds(), floor))
        run = after
    raise RotationError(f"run {run.run_id} of {run.secret} did not finish within {max_steps} steps; "
                        "it resumes from its record")


def resume(deps: RotationDeps, secret_path: VaultPath) -> RotationRun | None:
    """Pick up the recorded run of ``secret_path`` (after a crash or a restart of the controller) and finish it."""
    run = runs.load(deps.kv, secret_path)
    if run is None:
        return None
    return run_to_completion(run, deps)


# --------------------------------------------------------------------------------------------------- hold, rollback


def release(kv: KV, secret_path: VaultPath) -> bool:
    """Clear ``held`` on a secret so rotations may run again (``chamberlain rotate NAME --release``). Returns
    whether it was held."""
    meta = kv.read_metadata(secret_path.mount, secret_path.path)
    if meta is None or meta.custom.get(wk.HELD) != "true":
        return False
    kv.update_custom_metadata(secret_path.mount, secret_path.path, {wk.HELD: "false"})
    return True


def rollback_source(secret_path: VaultPath, meta: SecretMetadata | None, to_version: int | None = None) -> int:
    """The version a rollback re-promotes (pure): ``to_version``, by default the one before the current; it must be
    an earlier version that is neither deleted nor destroyed, else :class:`NotFound` saying why."""
    if meta is None or meta.current_version < 2:
        raise NotFound(f"{secret_path}: no earlier version to roll back to")
    source = to_version if to_version is not None else meta.current_version - 1
    # Versions older than the oldest kept (max_versions pruned them) and deleted or destroyed ones are gone.
    kept = type(source) is int and max(meta.oldest_version, 1) <= source < meta.current_version
    if not kept or source not in meta.versions or meta.versions[source]:
        raise NotFound(f"{secret_path}: version {source} is not available to roll back to")
    return source


def start_rollback(kv: KV, secret_path: VaultPath, *, secret: str, run_id: str, reason: str, now: datetime,
                   to_version: int | None = None) -> RotationRun:
    """Take the lease for a rollback: re-promote an earlier version's values (default: the one before the
    current, :func:`rollback_source`) as a new version, through the same durable steps (set at target, test,
    promote, propagate, restart; never revoke), ledgered as a ``rotation`` with ``mode: rollback``. Allowed on a
    held secret (it is the way out of a bad promote); the hold itself stays until :func:`release`. The same run
    id joins the run already recorded."""
    existing = runs.load(kv, secret_path)
    if existing is not None and existing.run_id == run_id:
        return existing
    meta = kv.read_metadata(secret_path.mount, secret_path.path)
    source = rollback_source(secret_path, meta, to_version)
    return _begin(kv, secret_path, existing, meta, secret=secret, run_id=run_id, trigger="rollback",
                  reason=reason, now=now, source_version=source, ignore_held=True)


def rollback(deps: RotationDeps, secret_path: VaultPath, *, secret: str, run_id: str, reason: str,
             to_version: int | None = None) -> RotationRun:
    """:func:`start_rollback`, then the run to its end."""
    run = start_rollback(deps.kv, secret_path, secret=secret, run_id=run_id, reason=reason,
                         now=deps.clock.now(), to_version=to_version)
    return run_to_completion(run, deps)


__all__ = [
    "AdminSource",
    "Backoff",
    "Consumer",
    "KubeConsumers",
    "Observed",
    "Propagation",
    "PropagationIncomplete",
    "RotationDeps",
    "RotationError",
    "RunLost",
    "SecretHeld",
    "Step",
    "WriteConflict",
    "advance",
    "next_step",
    "observe",
    "pending_home",
    "release",
    "resume",
    "retry_delay",
    "rollback",
    "rollback_source",
    "run_to_completion",
    "saved_with_the_next_step",
    "staged_marker",
    "start",
    "start_rollback",
    "wake_at",
]
