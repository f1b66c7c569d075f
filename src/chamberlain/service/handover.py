"""Vault becomes the authority of a cluster's secrets: provisioning the generated values, and handing the
bootstrap secrets over.

``provision`` creates the initial value of every ``source.generate`` intent (check-and-set create; existing values
are never touched) with the rotation policy in force attached; ``handover`` copies each bootstrap Secret to its
runtime path, verifies, records and retires it (:mod:`chamberlain.handover`). Both are safe to re-run; each
writes one ledger entry per secret as the :class:`~chamberlain.service.context.Caller`. Results name secrets,
paths and steps, never a value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import UsageError
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.handover import UnitOutcome
    from chamberlain.handover.declare import Declaration
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform
    from chamberlain.provision.workflow import ProvisionOutcome
    from chamberlain.service.context import Caller, Servers


@dataclass
class HandoverResult:
    run: str
    dry_run: bool
    outcomes: list[UnitOutcome]
    ok: bool  # False on a conflict, a blocked secret or an interrupted run

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "dryRun": self.dry_run, "handovers": [o.as_dict() for o in self.outcomes]}

    @property
    def awaiting(self) -> list[UnitOutcome]:
        return [o for o in self.outcomes if o.result == "awaiting-retirement"]


@dataclass(frozen=True)
class GitOptions:
    """What handover may do with the repository checkout it reads: write a retirement it needs into the intent
    file (always, unless a dry run), and with ``commit`` commit that file alone; ``env`` is what ``git`` starts
    from."""

    commit: bool = False
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass
class ProvisionResult:
    run: str
    dry_run: bool
    outcomes: list[ProvisionOutcome]

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "dryRun": self.dry_run, "values": [o.as_dict() for o in self.outcomes]}


def handover(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
             cluster: str | None = None, dry_run: bool = False,
             reason: str = "explicit handover", git: GitOptions | None = None) -> HandoverResult:
    """Hand the bootstrap Secrets of one cluster over to the authority: copy (check-and-set), verify, record,
    retire. A different value already in Vault is a conflict that touches nothing. A bootstrap Secret that GitOps
    still applies is not retired: its retirement is written into the checkout at ``root`` (and committed with
    ``git.commit``) for the user to push, and the next run retires it."""
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.handover import RunContext, handover_units, run_handover, select_cluster
    from chamberlain.handover.declare import check_work_tree
    from chamberlain.intent.loader import load_repository
    from chamberlain.values.markers import TransitMarkers

    git = git or GitOptions()
    repo, platform = load_platform(root)
    units = handover_units(repo, environment, cluster)
    chosen, _ = select_cluster(platform, environment, cluster)
    if git.commit and not dry_run:
        check_work_tree(repo.root, git.env, [])
    kube = servers.kube()
    client = servers.orchestrator(platform, chosen)
    kv = client.kv
    ctx = RunContext(actor=caller.actor, run=caller.run, clock=caller.clock, reason=reason,
                     markers=TransitMarkers(client.transit))
    ledger = Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock, cluster=chosen,
                    signer=TransitSigner(client.transit))
    report = run_handover(units, kv, kube, ledger, ctx, dry_run=dry_run, gitops=kube)
    result = HandoverResult(caller.run, dry_run, report.outcomes, report.ok)
    for outcome in result.awaiting:
        # Read again for each: an earlier declaration may have rewritten the same file (several intents per file).
        fresh = load_repository(repo.root)
        outcome.git = _declare(fresh, outcome.unit.intent, outcome.unit.environment, git).as_dict()
    return result


def _declare(repo: Repository, intent: str, environment: str, git: GitOptions) -> Declaration:
    """Write the retirement of ``intent`` in ``environment`` into the checkout (and commit that file alone)."""
    from chamberlain.handover.declare import check_work_tree, git_commit, write_retirement

    loaded = repo.intent_index()[intent]
    if git.commit:
        check_work_tree(repo.root, git.env, [loaded.file])
    declared = write_retirement(repo, intent, environment)
    if not (git.commit and declared.changed):
        return declared
    message = (f"Retire the bootstrap file of {intent} in {environment}: handed over to the authority, GitOps "
               "stops applying it\n\nWritten by `chamberlain handover --commit`.")
    return dataclasses.replace(declared, commit=git_commit(repo.root, git.env, declared.file, message))


def provision(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
              cluster: str | None = None, dry_run: bool = False) -> ProvisionResult:
    """Create the initial values of generated secrets in the authority; existing values stay untouched. Without a
    token file, ``cluster`` names the orchestrator that logs in."""
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.provision import provision_units, run_provision
    from chamberlain.provision.workflow import DEFAULT_WORKERS
    from chamberlain.values.markers import TransitMarkers

    repo, platform = load_platform(root)
    units = provision_units(repo, environment)
    client = servers.orchestrator(platform, cluster)
    kv = client.kv
    # The partition of the cluster logged in as; with a token file and no --cluster, the environment's first
    # cluster (a token that may write there: an operator's, not an orchestrator of another cluster).
    book = Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock, signer=TransitSigner(client.transit),
                  cluster=cluster or _first_cluster(platform, environment))
    outcomes = run_provision(units, kv, book,
                             actor=caller.actor, run=caller.run, clock=caller.clock, dry_run=dry_run,
                             markers=TransitMarkers(client.transit), workers=DEFAULT_WORKERS)
    return ProvisionResult(caller.run, dry_run, outcomes)


def _first_cluster(platform: Platform, environment: str | None) -> str:
    for env in platform.spec.environments:
        if (environment is None or env.name == environment) and env.clusters:
            return env.clusters[0]
    raise UsageError("pass --cluster: no cluster hosts the environment to provision")


__all__ = ["GitOptions", "HandoverResult", "ProvisionResult", "handover", "provision"]
