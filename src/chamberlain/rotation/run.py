"""The rotation run record: the persisted status one rotation hands off through, and the per-secret lease.

A :class:`RotationRun` is everything the durable workflow (:mod:`.workflow`) needs to resume a rotation after a
crash, and nothing secret: names, stages, Vault version numbers, non-reversible markers, key *names*, notes the
rotator declared non-secret, and error messages (which carry no values by contract, and are scrubbed of the
values the executor holds anyway). It has a home and a mirror:

* the home: KV v2 custom data at ``<runtime>/_chamberlain/runs/<env>/<owner>/<name>`` (next to the secret, in
  the mount the orchestrator already owns), written with check-and-set. That record is the **lease**: while it
  holds a run that is not finished, :func:`~chamberlain.rotation.workflow.start` refuses a second run (or joins
  the same run id), so one secret never has two concurrent runs. ``revision`` is the record's KV version, used as
  the CAS of the next write, the way a ``resourceVersion`` is used on a Kubernetes object;
* the mirror: the ``status`` of a ``RotationRun`` custom resource (:meth:`RotationRun.to_status`, Kubernetes-style
  ``conditions``), published by the controller (``controller.resources.RunPublisher``), never read back as truth.

Boundary: the record, its storage and its lease. Deciding the next step and acting live in :mod:`.workflow`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerMark
from chamberlain.authority.errors import CasConflict
from chamberlain.authority.kv import KV
from chamberlain.clock import rfc3339
from chamberlain.errors import ChamberlainError
from chamberlain.intent.paths import PENDING_PREFIX, RUNS_PREFIX, VaultPath

Stage = Literal[
    "pending",  # the run exists (the lease is taken); nothing was written yet
    "staged",  # the new values are in the staging path (not readable by consumers)
    "set-at-target",  # the target system accepts the new credential
    "tested",  # the new credential was proven to work
    "promoted",  # the new values are the latest version of the real path, marker recorded in metadata
    "propagated",  # every consumer Secret carries the new marker
    "restarted",  # the declared workloads were rolled (once, with the run id as batch token)
    "revoke-wait",  # waiting for maxOverlap before revoking the previous credential
    "revoked",  # finished: the previous credential was revoked
    "done",  # finished: nothing to revoke
    "failed",  # finished without success (permanent error, retries exhausted, or failureStrategy alert)
    "held",  # finished without success, secret marked held until released (failureStrategy hold)
]
STAGES: tuple[Stage, ...] = (
    "pending", "staged", "set-at-target", "tested", "promoted", "propagated", "restarted", "revoke-wait",
    "revoked", "done", "failed", "held",
)
TERMINAL: frozenset[Stage] = frozenset({"revoked", "done", "failed", "held"})
SUCCEEDED: frozenset[Stage] = frozenset({"revoked", "done"})
PROMOTED_OR_LATER: frozenset[Stage] = frozenset({"promoted", "propagated", "restarted", "revoke-wait", "revoked",
                                                 "done"})

# "import": a value issued upstream (``chamberlain import``), staged from what the user supplied, never generated;
# "external": a version a producer pushed (PushSecret), observed by the controller (rotation.external)
TriggerKind = Literal["time", "webhook", "annotation", "manual", "policy-change", "rollback", "import", "external"]
FailureStrategy = Literal["retry", "alert", "hold"]
Mode = Literal["rotate", "rollback"]
# Where a run's pending values wait for promote: "staging", the staging path (written before the values are used
# anywhere: a draw that cannot be made twice, or values set at a target first); "memory", the executor's memory
# from the draw to the promote write of the same call (a draw with no effect outside the process: a crash in
# between loses a draw nobody saw, and the run draws again)
PendingHome = Literal["staging", "memory"]

MAX_ERROR_CHARS = 300


class RunError(ChamberlainError):
    """Base of the errors about run records and the lease."""


class RunActive(RunError):
    """Another run of this secret is not finished: the lease is taken (a second start is refused)."""


class RunLost(RunError):
    """The run record changed under this executor (another executor advanced it): stop, do not act further."""


class RunUnreadable(RunError):
    """The run record does not parse: written by a newer release (a field this one does not know), or damaged.
    Permanent for this secret; the other secrets' runs go on."""


def _iso(t: datetime | None) -> str | None:
    return rfc3339(t) if t is not None else None


class RotationRun(BaseModel):
    """One rotation of one secret (or one rollback), as persisted between steps. Never holds a value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    secret: str  # the intent name
    path: str  # the secret's Vault path inside the runtime mount (<env>/<owner>/<name>)
    mount: str
    trigger: TriggerKind
    reason: str
    mode: Mode = "rotate"
    stage: Stage = "pending"
    revision: int = 0  # KV version of the run record this value was read from / written as (the CAS)
    attempts: int = 0  # failed attempts of the current step
    next_retry_at: datetime | None = None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    # policy in force, snapshotted at start so a decision needs nothing but the run
    failure_strategy: FailureStrategy = "retry"
    revoke_old: bool = False
    max_overlap_seconds: float = 0.0
    # the policy.* custom metadata in force at start, for the rotator's context (None: a record from before it was
    # snapshotted; the workflow then reads the secret's metadata)
    policy_metadata: dict[str, str] | None = None
    # Vault bookkeeping (version numbers and non-reversible markers only)
    previous_version: int  # the real path's current version when the run started (the CAS of promote)
    current_version: int | None = None  # the version promote wrote
    staging_base: int  # the staging path's version when the run started (the CAS of stage; 0, unread: memory)
    staged_version: int | None = None
    # where the pending values are until promote; cleared (to the default) once the run is promoted or finished
    pending_in: PendingHome = "staging"
    # pending_in "memory": the marker of every draw saved before its promote write, the last being pending_marker;
    # a real path holding an earlier one is this run's own write (an executor that lost the run while writing).
    # Cleared with pending_in.
    drawn_markers: tuple[str, ...] = ()
    source_version: int | None = None  # rollback: the version whose values are re-promoted
    pending_marker: str | None = None  # marker of the staged values *as they will be at the real path*
    rotated_keys: tuple[str, ...] = ()
    revoke_at: datetime | None = None
    notes: dict[str, str] = Field(default_factory=dict)
    last_error: str | None = None
    # where the ledger's head stood before the run's one entry was first attempted: that entry, if an attempt
    # crashed before recording it, can only be after this mark (None: unknown, the whole ledger is searched)
    ledger_mark: LedgerMark | None = None
    ledger_seq: int | None = None
    # consecutive runs of this secret that had failed when this one started (the secret's ``failed-runs``): the
    # first failure of a streak alerts, the next ones only back off (controller)
    failures_before: int = 0

    @property
    def vault(self) -> VaultPath:
        return VaultPath(self.mount, self.path)

    @property
    def finished(self) -> bool:
        return self.stage in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.stage in SUCCEEDED

    def to_status(self, previous: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The ``status`` of a ``RotationRun`` custom resource: camelCase fields plus ``conditions``.

        ``previous``: the conditions last published for this run. A condition whose status did not change keeps
        its ``lastTransitionTime`` (the Kubernetes convention: the time of the last *transition*, not of the last
        write); a new or flipped one takes ``updated_at``."""
        at = _iso(self.updated_at) or ""
        since = {c.get("type"): c for c in previous}

        def cond(kind: str, ok: bool, reason: str, message: str = "") -> dict[str, str]:
            status = "True" if ok else "False"
            before = since.get(kind)
            kept = before is not None and before.get("status") == status and before.get("lastTransitionTime")
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": str(kept) if kept else at}

        promoted = self.stage in PROMOTED_OR_LATER
        retrying = self.next_retry_at is not None and not self.finished
        conditions = [
            cond("Ready", self.succeeded, "Succeeded" if self.succeeded else ("Failed" if self.finished else
                                                                               "InProgress")),
            cond("Promoted", promoted, "Promoted" if promoted else "NotYet",
                 f"version {self.current_version}" if promoted else ""),
            cond("Propagated", self.stage in PROMOTED_OR_LATER - {"promoted"}, self.stage),
            cond("Retrying", retrying, "BackingOff" if retrying else "NotRetrying", self.last_error or ""),
            cond("Failed", self.stage == "failed", "Failed" if self.stage == "failed" else "NotFailed",
                 self.last_error or "" if self.stage == "failed" else ""),
            cond("Held", self.stage == "held", "Held" if self.stage == "held" else "NotHeld",
                 self.last_error or "" if self.stage == "held" else ""),
        ]
        return {
            "phase": self.stage,
            "runId": self.run_id,
            "secret": self.secret,
            "path": self.vault.full,
            "trigger": self.trigger,
            "reason": self.reason,
            "mode": self.mode,
            "attempts": self.attempts,
            "nextRetryAt": _iso(self.next_retry_at),
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "previousVersion": self.previous_version,
            "currentVersion": self.current_version,
            "rotatedKeys": list(self.rotated_keys),
            "notes": dict(self.notes),
            "lastError": self.last_error,
            "ledgerSeq": self.ledger_seq,
            "conditions": conditions,
        }


# --------------------------------------------------------------------------------------------------- storage


def run_path(secret: VaultPath) -> str:
    """Where the run record (the lease) of ``secret`` lives, inside the same mount."""
    return f"{RUNS_PREFIX}/{secret.path}"


def staging_path(secret: VaultPath) -> str:
    """Where the pending values of ``secret`` wait until promote: not a path any consumer reads."""
    return f"{PENDING_PREFIX}/{secret.path}"


def load(kv: KV, secret: VaultPath) -> RotationRun | None:
    """The last run record of ``secret`` (finished or not), or None when it never rotated through a run."""
    version = kv.read(secret.mount, run_path(secret))
    if version is None or "run" not in version.data:
        return None
    try:
        return RotationRun.model_validate({**json.loads(version.data["run"]), "revision": version.version})
    except ValidationError as exc:  # field names only: the record holds no value, but keep errors terse
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(record)" for e in exc.errors()})
        raise RunUnreadable(f"{secret}: run record version {version.version} does not parse (fields: "
                            f"{', '.join(fields[:5])}); a newer chamberlain may have written it") from None
    except (ValueError, TypeError):
        raise RunUnreadable(f"{secret}: run record version {version.version} is not a JSON object") from None


def save(kv: KV, run: RotationRun) -> RotationRun:
    """Write ``run`` with CAS = its revision; returns it with the new revision. :class:`RunLost` on a conflict."""
    run = settled(run)
    # Left out while unused: the record of a staging run, and of any run past promote or finished, stays readable
    # by the release before these fields (its extra="forbid" refuses unknown ones): a rollback, an old replica.
    left_out = {"revision"}
    if run.pending_in == "staging":
        left_out.add("pending_in")
    if not run.drawn_markers:
        left_out.add("drawn_markers")
    body = run.model_dump(mode="json", exclude=left_out)
    try:
        revision = kv.write(run.mount, run_path(run.vault), {"run": json.dumps(body, sort_keys=True)},
                            cas=run.revision)
    except CasConflict:
        raise RunLost(f"run {run.run_id} of {run.secret}: the run record changed under this executor") from None
    return run.model_copy(update={"revision": revision})


def shown_stage(run: RotationRun, current_version: int | None, custom: Mapping[str, str]) -> str:
    """The stage to report for ``run`` beside its secret's metadata (pure). The promote of values kept in memory
    is saved with propagate's result, so a record still at ``tested`` whose secret holds the version one past its
    base, recorded by this run, was promoted (a stop or a crash leaves it so until the next leader's first step).
    Anything else is shown as recorded."""
    if (run.stage == "tested" and run.pending_in == "memory" and run.previous_version + 1 == current_version
            and custom.get(wk.LAST_RUN) == run.run_id):
        return "promoted"
    return run.stage


def settled(run: RotationRun) -> RotationRun:
    """``run`` as its record holds it: without where its pending values were once nothing pending is left
    (promoted, or finished)."""
    if run.pending_in == "staging" and not run.drawn_markers:
        return run
    if run.stage in PROMOTED_OR_LATER or run.finished:
        return run.model_copy(update={"pending_in": "staging", "drawn_markers": ()})
    return run


def take_lease(kv: KV, fresh: RotationRun, existing: RotationRun | None = None, *, loaded: bool = False
               ) -> RotationRun:
    """Persist ``fresh`` as the run of its secret unless another unfinished run holds the lease.

    Same run id already recorded (a retried start): that run is returned (joined). Another unfinished run:
    :class:`RunActive`. A finished run is replaced (its story is in the ledger). ``loaded``: ``existing`` is what
    :func:`load` just returned (saves reading the record again; a stale one only costs a retry, the write is CAS).
    """
    for attempt in range(3):
        if attempt or not loaded:
            existing = load(kv, fresh.vault)
        if existing is not None and existing.run_id == fresh.run_id:
            return existing
        if existing is not None and not existing.finished:
            raise RunActive(f"{fresh.secret}: run {existing.run_id} is still {existing.stage}; "
                            f"refusing to start {fresh.run_id}")
        try:
            return save(kv, fresh.model_copy(update={"revision": existing.revision if existing else 0}))
        except RunLost:
            continue  # someone started (or finished) a run meanwhile: look again
    raise RunActive(f"{fresh.secret}: could not take the run lease (contention)")


def clean_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """An error message fit for a run record: type and message, any value the executor holds scrubbed out."""
    text = f"{type(exc).__name__}: {exc}"
    for value in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, "[redacted]")
    return text[:MAX_ERROR_CHARS]
