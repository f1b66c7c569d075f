"""Rotation on request: rotate, roll back, release, and where every secret stands.

``rotate`` starts a run through the same durable workflow every trigger uses (:mod:`chamberlain.rotation.workflow`,
glued to a loaded repository by :mod:`chamberlain.rotation.manual`) and drives it until it is finished and
recorded; a wait longer than ``max_wait`` (a revoke after a long maxOverlap) leaves the run to resume from its
record. A rollback re-promotes an earlier version (:func:`~chamberlain.rotation.workflow.rollback_source`); a
release clears a hold. It takes the same per-secret lease as the controller: while a run of that secret is
unfinished it changes nothing. ``status`` reads metadata, the ledger and consumer annotations only.

Results carry ids, stages, versions and timings; never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.clock import rfc3339
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.service.context import new_run_id
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from chamberlain.authority.kv import KV
    from chamberlain.authority.vault import VaultClient
    from chamberlain.clock import Clock
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform, SecretIntent
    from chamberlain.rotation.manual import Placed
    from chamberlain.service.context import Caller, ClusterAPI, Servers


@dataclass(frozen=True)
class RotateRequest:
    """One secret (``name``) or every secret with a consumer or producer in ``namespace``; rotate it, roll it back
    to the previous version, or release its hold."""

    root: Path
    name: str | None = None
    namespace: str | None = None
    reason: str = ""
    rollback: bool = False
    release: bool = False
    environment: str | None = None
    cluster: str | None = None
    max_wait: float = 120.0  # the longest wait inside a run to sleep through
    timeout: float = 120.0  # for consumers to sync
    # Sees (secret, stage) before each step of a run: the CLI's progress display. Never given a value.
    on_stage: Callable[[str, str], None] | None = field(default=None, compare=False, repr=False)

    def check(self) -> None:
        """Usage errors, before anything is loaded or contacted."""
        if (self.name is None) == (self.namespace is None):
            raise UsageError("pass a secret NAME or --namespace (exactly one)")
        if self.rollback and self.release:
            raise UsageError("--rollback and --release exclude each other")
        if self.namespace is not None and (self.rollback or self.release):
            raise UsageError("--rollback and --release take one secret NAME, not --namespace")
        if not self.release and not self.reason.strip():
            raise UsageError("--reason is required (it is recorded on the run and in the ledger)")


@dataclass
class RotateResult:
    ok: bool  # False when a run failed or is held
    cluster: str
    release: bool
    rows: list[dict[str, Any]] = field(default_factory=list)  # per secret: a run report, or whether it was held

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "cluster": self.cluster, "released" if self.release else "runs": self.rows}


@dataclass
class StatusReport:
    cluster: str
    at: datetime
    rows: list[dict[str, Any]]  # per placed secret (rotation.manual.secret_status)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "at": rfc3339(self.at), "secrets": self.rows}


def placed_in(repo: Repository, platform: Platform, cluster: str, environments: list[str]) -> list[Placed]:
    """Every intent placed in ``cluster`` for one of ``environments``, in name order, then Platform order."""
    from chamberlain.intent.paths import placements
    from chamberlain.rotation.manual import Placed

    return [Placed(loaded.obj, p.environment, p.cluster, p.vault)
            for loaded in sorted(repo.intents, key=lambda i: i.obj.metadata.name)
            for p in placements(platform, loaded.obj) if p.cluster == cluster and p.environment in environments]


def _selected(request: RotateRequest, intents: dict[str, SecretIntent], now: datetime) -> list[SecretIntent]:
    from chamberlain.rotation.manual import pick
    from chamberlain.triggers.manual import for_namespace, manual

    if request.namespace is not None:
        names = [r.secret for r in for_namespace(intents.values(), request.namespace, request.reason, now)]
        if not names:
            raise UsageError(f"no secret has a consumer or producer in namespace {request.namespace!r}")
    elif request.name is not None:
        names = [manual(request.name, request.reason, now).secret]
    else:
        raise UsageError("pass a secret NAME or --namespace (exactly one)")
    return pick(list(intents.values()), names)


def rotate(request: RotateRequest, servers: Servers, caller: Caller) -> RotateResult:
    """Rotate (or roll back, or release) the selected secrets now, one run each, through the durable workflow."""
    request.check()
    repo, _ = load_platform(request.root)
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    selected = _selected(request, intents, caller.clock.now())
    return rotate_many(request, [i.metadata.name for i in selected], servers, caller)


def rotate_many(request: RotateRequest, names: Sequence[str], servers: Servers, caller: Caller, *,
                rate_limit: bool = True) -> RotateResult:
    """Rotate (or release) ``names`` in that order, one run each, ignoring ``request.name``/``namespace`` (a
    playbook chose them). ``rate_limit=False``: a compromise playbook's runs, confirmed by a person, are not held
    back by the trigger rate limit (like a rollback; a run already unfinished still refuses)."""
    from chamberlain.handover import select_cluster
    from chamberlain.rotation import manual as rm
    from chamberlain.rotation import workflow as wf

    repo, platform = load_platform(request.root)
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    chosen, _ = select_cluster(platform, request.environment, request.cluster)
    placed = [rm.place(platform, i, request.environment, chosen) for i in rm.pick(list(intents.values()), names)]
    kube = servers.kube()
    client = servers.orchestrator(platform, chosen)
    result = RotateResult(ok=True, cluster=chosen, release=request.release)
    for p in placed:
        if request.release:
            result.rows.append({"secret": p.name, "path": p.vault.full, "released": wf.release(client.kv, p.vault)})
            continue
        row, ok = _run_one(request, p, client, kube, platform, intents, caller, rate_limit=rate_limit)
        result.rows.append(row)
        result.ok = result.ok and ok
    return result


def _run_one(request: RotateRequest, p: Placed, client: VaultClient, kube: ClusterAPI, platform: Platform,
             intents: dict[str, SecretIntent], caller: Caller, *, rate_limit: bool = True
             ) -> tuple[dict[str, Any], bool]:
    """One run of one placed secret, driven as far as ``max_wait`` allows: (its report row, whether it is good:
    succeeded, or promoted and waiting to revoke)."""
    from chamberlain.audit.ledger import TransitSigner
    from chamberlain.authority.pki import VaultCertificateIssuer
    from chamberlain.rotation import manual as rm
    from chamberlain.rotation import workflow as wf
    from chamberlain.values.markers import TransitMarkers

    kv = client.kv
    deps, timed = rm.build_deps(kv, kube, platform, intents, p, actor=caller.actor, clock=caller.clock,
                                timeout=request.timeout, pki=VaultCertificateIssuer(client),
                                signer=TransitSigner(client.transit), markers=TransitMarkers(client.transit))
    run_id = new_run_id()
    try:
        if request.rollback:
            run = wf.start_rollback(kv, p.vault, secret=p.name, run_id=run_id, reason=request.reason,
                                    now=caller.clock.now())
        else:
            if rate_limit:
                _rate_limit(kv, p, platform, caller.clock.now())
            run = wf.start(kv, p.vault, secret=p.name, run_id=run_id, trigger="manual", reason=request.reason,
                           now=caller.clock.now(), pending_in=wf.pending_home(deps.rotator, "manual"))
        on_stage = request.on_stage
        run = rm.drive(run, deps, max_wait=request.max_wait,
                       on_step=None if on_stage is None else lambda r: on_stage(r.secret, r.stage))
    except ChamberlainError as exc:  # our messages name secrets and states, never values
        return {"secret": p.name, "path": p.vault.full, "run": run_id, "stage": "not-started", "ok": False,
                "finished": True, "previousVersion": None, "version": None, "propagationSeconds": None,
                "workloadsRestarted": [], "error": str(exc)}, False
    row = rm.run_report(run, timed)
    if not run.finished:
        row["message"] = (f"run {run.run_id} is {run.stage}; it resumes from its record"
                          + (f" (revoke at {row['revokeAt']})" if row.get("revokeAt") else ""))
    return row, run.succeeded or (run.stage == "revoke-wait" and run.last_error is None)


def _rate_limit(kv: KV, p: Placed, platform: Platform, now: datetime) -> None:
    """A manual rotation obeys the Platform's trigger rate limit like every other trigger (a rollback does not:
    it is the way back from a bad rotation)."""
    from chamberlain.triggers import limits

    at = limits.allowed_at(limits.last_start(kv, p.vault), limits.trigger_interval(platform.spec.limits))
    refused = limits.refusal(p.name, "manual", at, now)
    if refused is not None:
        raise limits.RateLimited(refused)


def status(root: Path, servers: Servers, clock: Clock, *, environment: str | None = None,
           cluster: str | None = None) -> StatusReport:
    """Per secret of the selected cluster: classification, authority, version, last rotation, next due, held, and
    whether each consumer Secret carries the current version marker."""
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.handover import select_cluster
    from chamberlain.intent.paths import effective_policy
    from chamberlain.intent.templates import templated_readers
    from chamberlain.rotation import manual as rm

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    kube = servers.kube()
    kv = servers.orchestrator(platform, chosen).kv
    ledger = LedgerReader(kv, platform.spec.authority.mounts.runtime)
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    now = clock.now()
    rows = []
    for placed in placed_in(repo, platform, chosen, envs):
        git = effective_policy(platform, policies, placed.intent)
        templated = templated_readers(platform, [i.obj for i in repo.intents], placed.name, placed.environment)
        rows.append(rm.secret_status(kv, ledger, kube, placed, now, git[1] if git else None, templated))
    return StatusReport(chosen, now, rows)


__all__ = ["RotateRequest", "RotateResult", "StatusReport", "placed_in", "rotate", "rotate_many", "status"]
