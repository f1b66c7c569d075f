"""Vault becomes the authority of a cluster's secrets: provisioning the generated values, and handing the
bootstrap secrets over.

``provision`` creates the initial value of every ``source.generate`` intent (check-and-set create; existing values
are never touched) with the rotation policy in force attached; ``handover`` copies each bootstrap Secret to its
runtime path, verifies, records and retires it (:mod:`chamberlain.handover`). Both are safe to re-run; each
writes one ledger entry per secret as the :class:`~chamberlain.service.context.Caller`. Results name secrets,
paths and steps, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.handover import UnitOutcome
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


@dataclass
class ProvisionResult:
    run: str
    dry_run: bool
    outcomes: list[ProvisionOutcome]

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "dryRun": self.dry_run, "values": [o.as_dict() for o in self.outcomes]}


def handover(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
             cluster: str | None = None, dry_run: bool = False,
             reason: str = "explicit handover") -> HandoverResult:
    """Hand the bootstrap Secrets of one cluster over to the authority: copy (check-and-set), verify, record,
    retire. A different value already in Vault is a conflict that touches nothing."""
    from chamberlain.audit.ledger import Ledger
    from chamberlain.handover import RunContext, handover_units, run_handover, select_cluster

    repo, platform = load_platform(root)
    units = handover_units(repo, environment, cluster)
    chosen, _ = select_cluster(platform, environment, cluster)
    kube = servers.kube()
    kv = servers.orchestrator(platform, chosen).kv
    ctx = RunContext(actor=caller.actor, run=caller.run, clock=caller.clock, reason=reason)
    report = run_handover(units, kv, kube, Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock), ctx,
                          dry_run=dry_run)
    return HandoverResult(caller.run, dry_run, report.outcomes, report.ok)


def provision(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
              cluster: str | None = None, dry_run: bool = False) -> ProvisionResult:
    """Create the initial values of generated secrets in the authority; existing values stay untouched. Without a
    token file, ``cluster`` names the orchestrator that logs in."""
    from chamberlain.audit.ledger import Ledger
    from chamberlain.provision import provision_units, run_provision

    repo, platform = load_platform(root)
    units = provision_units(repo, environment)
    kv = servers.orchestrator(platform, cluster).kv
    outcomes = run_provision(units, kv, Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock),
                             actor=caller.actor, run=caller.run, clock=caller.clock, dry_run=dry_run)
    return ProvisionResult(caller.run, dry_run, outcomes)


__all__ = ["HandoverResult", "ProvisionResult", "handover", "provision"]
