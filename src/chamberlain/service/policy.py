"""The rotation policy in force (the secret's custom_metadata in Vault) against Git's: plan, apply.

``plan`` reads metadata only; ``apply`` makes Git's policy the one in force, one ``policy-change`` ledger entry per
secret (:mod:`chamberlain.rotation.policy_sync`). Both are safe to re-run. ``chamberlain plan`` shows the same
drift next to the configuration diff (:func:`drift`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.authority.vault import VaultClient
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform
    from chamberlain.rotation.policy_sync import PolicyDrift
    from chamberlain.service.context import Caller, Servers


@dataclass
class PolicyResult:
    drifts: list[PolicyDrift]
    applied: int | None = None  # None for a plan

    def as_dict(self) -> dict[str, Any]:
        applied = {} if self.applied is None else {"applied": self.applied}
        return {"drift": [d.as_dict() for d in self.drifts], **applied}


def drift(repo: Repository, platform: Platform, environment: str | None, cluster: str | None,
          servers: Servers) -> tuple[VaultClient, list[PolicyDrift]]:
    """Every secret of the selected cluster (and environment) whose policy in force differs from Git's, read as
    that cluster's orchestrator (or with the token the user passed); and the KV it was read through."""
    from chamberlain.handover import select_cluster
    from chamberlain.rotation import policy_sync
    from chamberlain.service.rotation import placed_in

    chosen, envs = select_cluster(platform, environment, cluster)
    client = servers.orchestrator(platform, chosen)
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    return client, policy_sync.plan(client.kv, platform, policies, placed_in(repo, platform, chosen, envs))


def plan(root: Path, servers: Servers, *, environment: str | None = None,
         cluster: str | None = None) -> PolicyResult:
    """Where the rotation policy in force differs from Git's."""
    repo, platform = load_platform(root)
    return PolicyResult(drift(repo, platform, environment, cluster, servers)[1])


def apply(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
          cluster: str | None = None, reason: str = "policy changed in Git") -> PolicyResult:
    """Make Git's rotation policy the one in force, one audited ``policy-change`` per drifted secret."""
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.handover import select_cluster
    from chamberlain.rotation import policy_sync

    repo, platform = load_platform(root)
    client, drifts = drift(repo, platform, environment, cluster, servers)
    kv = client.kv
    chosen, _ = select_cluster(platform, environment, cluster)
    ledger = Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock, cluster=chosen,
                    signer=TransitSigner(client.transit))
    applied = policy_sync.apply(kv, ledger, drifts, actor=caller.actor, run=caller.run, reason=reason)
    return PolicyResult(drifts, applied)


__all__ = ["PolicyResult", "apply", "drift", "plan"]
