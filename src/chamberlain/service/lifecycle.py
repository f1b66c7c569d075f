"""Decommissioning use cases: ``chamberlain retire`` (apply what ``spec.retire`` makes due), ``retire --undo NAME``,
and the removed-intent check of ``chamberlain plan``.

Each loads the repository, logs in as the selected cluster's orchestrator (or the token the user passed: its
policy already holds the KV v2 life cycle of its environments, delete, undelete and destroy included) and calls
:mod:`chamberlain.lifecycle.retire`. Results carry names, paths, states and times; never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.authority.kv import KVLifecycle
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform
    from chamberlain.lifecycle.retire import Orphan, RetireOutcome, RetireTarget, Run, Stranded, UndoOutcome
    from chamberlain.service.context import Caller, Servers


@dataclass
class RetireResult:
    run: str
    dry_run: bool
    outcomes: list[RetireOutcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "dryRun": self.dry_run, "secrets": [o.as_dict() for o in self.outcomes]}


def targets(repo: Repository, platform: Platform, environments: list[str]) -> list[RetireTarget]:
    """Every runtime path of an intent that declares ``spec.retire``, in the given environments (clusters of one
    environment share the path: one target). Derived and config data belong to their producers: not here."""
    from chamberlain.intent.paths import placements
    from chamberlain.lifecycle.retire import RetireTarget

    runtime = platform.spec.authority.mounts.runtime
    out: dict[str, RetireTarget] = {}
    for loaded in sorted(repo.intents, key=lambda i: i.obj.name):
        intent = loaded.obj
        if intent.spec.retire is None:
            continue
        for p in placements(platform, intent):
            if p.environment in environments and p.vault.mount == runtime:
                out.setdefault(p.vault.full, RetireTarget(intent.name, p.environment, p.vault, intent.spec.retire))
    return list(out.values())


def _stranded(platform: Platform, run: Run, envs: list[str], retiring: list[RetireTarget], *,
              undone: bool = False) -> list[RetireTarget]:
    """Data soft-deleted for a retirement Git no longer declares, rebuilt from the mark on the secret."""
    from chamberlain.lifecycle.retire import stranded_targets

    return stranded_targets(run.kv, platform.spec.authority.mounts.runtime, envs, {t.vault.full for t in retiring},
                            undone=undone)


def _run(platform: Platform, servers: Servers, caller: Caller, cluster: str, dry_run: bool) -> Run:
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.lifecycle.retire import Run

    client = servers.orchestrator(platform, cluster)
    kv: KVLifecycle = client.kv
    book = Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock, signer=TransitSigner(client.transit),
                  cluster=cluster)
    return Run(kv, book, caller.actor, caller.run, caller.clock, dry_run)


def retire(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
           cluster: str | None = None, dry_run: bool = False) -> RetireResult:
    """Apply what ``spec.retire`` makes due on the selected cluster's environments: soft-delete on the day, purge
    after the undo window; report the rest (scheduled, waiting). Data soft-deleted for a retirement Git no longer
    declares (``spec.retire`` or the intent removed before the purge) is finished from its mark: purged after
    the undo-until stored at the soft-delete. Idempotent; resumes after a crash."""
    from chamberlain.handover import select_cluster
    from chamberlain.lifecycle import retire as lr

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    found = targets(repo, platform, envs)
    run = _run(platform, servers, caller, chosen, dry_run)
    found += _stranded(platform, run, envs, found)
    return RetireResult(caller.run, dry_run, [lr.apply(t, run) for t in found])


def undo(root: Path, name: str, servers: Servers, caller: Caller, *, environment: str | None = None,
         cluster: str | None = None, dry_run: bool = False) -> list[UndoOutcome]:
    """Restore NAME's soft-deleted data within its undo window (every environment of the cluster it retired in).
    When Git no longer declares NAME's spec.retire (or NAME), the mark on the secret says what to restore."""
    from chamberlain.handover import select_cluster
    from chamberlain.lifecycle import retire as lr

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    retiring = targets(repo, platform, envs)
    run = _run(platform, servers, caller, chosen, dry_run)
    found = [t for t in retiring + _stranded(platform, run, envs, retiring, undone=True) if t.intent == name]
    if not found:
        declared = name in repo.intent_index()
        raise UsageError(f"{name}: nothing of it was soft-deleted in {', '.join(envs)} ("
                         + ("the intent declares no spec.retire" if declared else f"no such SecretIntent in {root}")
                         + " and no data carries a decommissioning mark for it)")
    return [lr.undo(t, run) for t in found]


@dataclass
class RemovedIntents:
    """``plan``'s decommissioning findings: live data whose intent left Git without a retirement (errors), and
    soft-deleted data whose retirement left Git before the purge (warnings); ``unchecked``: why not looked at."""

    orphans: list[Orphan] = field(default_factory=list)
    stranded: list[Stranded] = field(default_factory=list)
    unchecked: str | None = None


def orphans(repo: Repository, platform: Platform, environment: str | None, cluster: str | None,
            servers: Servers) -> RemovedIntents:
    """Runtime data of the selected cluster's environments that no intent in Git declares any more and that was
    never retired, and data soft-deleted for a retirement Git no longer declares."""
    from chamberlain.handover import select_cluster
    from chamberlain.intent.paths import placements
    from chamberlain.lifecycle.retire import orphans as scan
    from chamberlain.lifecycle.retire import stranded

    try:
        chosen, envs = select_cluster(platform, environment, cluster)
        declared = {p.vault.full for i in repo.intents for p in placements(platform, i.obj)}
        retiring = {t.vault.full for t in targets(repo, platform, envs)}
        kv = servers.orchestrator(platform, chosen).kv
        mount = platform.spec.authority.mounts.runtime
        return RemovedIntents(scan(kv, mount, envs, declared), stranded(kv, mount, envs, retiring, declared))
    except ChamberlainError as exc:  # no orchestrator login from here; our messages carry no value
        return RemovedIntents(unchecked=str(exc))


__all__ = ["RemovedIntents", "RetireResult", "orphans", "retire", "targets", "undo"]
