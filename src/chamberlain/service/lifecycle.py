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
    from chamberlain.lifecycle.retire import Orphan, RetireOutcome, RetireTarget, Run, UndoOutcome
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
    after the undo window; report the rest (scheduled, waiting). Idempotent; resumes after a crash."""
    from chamberlain.handover import select_cluster
    from chamberlain.lifecycle import retire as lr

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    found = targets(repo, platform, envs)
    if not found:
        return RetireResult(caller.run, dry_run)
    run = _run(platform, servers, caller, chosen, dry_run)
    return RetireResult(caller.run, dry_run, [lr.apply(t, run) for t in found])


def undo(root: Path, name: str, servers: Servers, caller: Caller, *, environment: str | None = None,
         cluster: str | None = None, dry_run: bool = False) -> list[UndoOutcome]:
    """Restore NAME's soft-deleted data within its undo window (every environment of the cluster it retired in)."""
    from chamberlain.handover import select_cluster
    from chamberlain.lifecycle import retire as lr

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    if name not in repo.intent_index():
        raise UsageError(f"{name}: no such SecretIntent in {root} (an undo needs the intent, with its spec.retire, "
                         "still in Git)")
    found = [t for t in targets(repo, platform, envs) if t.intent == name]
    if not found:
        raise UsageError(f"{name}: the intent declares no spec.retire (nothing was decommissioned)")
    run = _run(platform, servers, caller, chosen, dry_run)
    return [lr.undo(t, run) for t in found]


def orphans(repo: Repository, platform: Platform, environment: str | None, cluster: str | None,
            servers: Servers) -> tuple[list[Orphan], str | None]:
    """Runtime data of the selected cluster's environments that no intent in Git declares any more, and that
    was never retired: (found, None), or ([], why it could not be checked)."""
    from chamberlain.handover import select_cluster
    from chamberlain.intent.paths import placements
    from chamberlain.lifecycle.retire import orphans as scan

    try:
        chosen, envs = select_cluster(platform, environment, cluster)
        declared = {p.vault.full for i in repo.intents for p in placements(platform, i.obj)}
        kv = servers.orchestrator(platform, chosen).kv
        return scan(kv, platform.spec.authority.mounts.runtime, envs, declared), None
    except ChamberlainError as exc:  # no orchestrator login from here; our messages carry no value
        return [], str(exc)


__all__ = ["RetireResult", "orphans", "retire", "targets", "undo"]
