"""``chamberlain adopt verify``: the values that already live in cluster Secrets (``source.existingSecret``) come
under the authority, once, each with its adopt marker checked first (:mod:`chamberlain.handover.adopt`).

For each such intent placed in the environment on the cluster: import the declared keys of the marked Secret into
``<runtime>/<env>/<owner>/<name>`` (check-and-set create), read back, record (``origin: adopted``, the keyed
version marker, the policy in force), one ``adopt`` ledger entry. ``wait`` keeps polling the units that are not
ready yet (no marker, Secret or key yet) until every one is adopted or the time is up. Safe to re-run. Results
carry names, paths, versions and markers; never a value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.handover.adopt import AdoptOutcome
    from chamberlain.handover.takeover import TakeoverOutcome
    from chamberlain.service.context import Caller, Servers


@dataclass
class AdoptVerifyResult:
    run: str
    dry_run: bool
    outcomes: list[AdoptOutcome]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "dryRun": self.dry_run, "ok": self.ok,
                "imports": [o.as_dict() for o in self.outcomes]}


def verify(root: Path, servers: Servers, caller: Caller, *, environment: str | None = None,
           cluster: str | None = None, only: set[str] | None = None, dry_run: bool = False,
           wait: float = 0.0, poll: float = 2.0, reason: str | None = None) -> AdoptVerifyResult:
    """Import and record every existing-Secret value of one environment on one cluster."""
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.errors import UsageError
    from chamberlain.handover import select_cluster
    from chamberlain.handover.adopt import DEFAULT_REASON, AdoptContext, adopt, adopt_units
    from chamberlain.values.markers import TransitMarkers

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    env = environment or (envs[0] if len(envs) == 1 else None)
    if env is None:
        raise UsageError(f"pass --environment: cluster {chosen} serves {', '.join(envs)}")
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    units = adopt_units(platform, policies, [i.obj for i in repo.intents], env, chosen, only)
    if only:
        unknown = sorted(only - {u.intent for u in units})
        if unknown:
            raise UsageError(f"no source.existingSecret intent placed in {env} on {chosen}: {', '.join(unknown)}")
    kube = servers.kube()
    client = servers.orchestrator(platform, chosen)
    kv = client.kv
    ctx = AdoptContext(actor=caller.actor, run=caller.run, clock=caller.clock, reason=reason or DEFAULT_REASON,
                       markers=TransitMarkers(client.transit))
    ledger = Ledger(kv, platform.spec.authority.mounts.runtime, caller.clock, cluster=chosen,
                    signer=TransitSigner(client.transit))
    deadline = time.monotonic() + max(wait, 0.0)
    done: dict[str, AdoptOutcome] = {}
    while True:
        for unit in units:
            if unit.intent in done and done[unit.intent].ok:
                continue
            done[unit.intent] = adopt(unit, kv, kube, ledger, ctx, dry_run=dry_run)
        waiting = [o for o in done.values() if not o.ok and o.result != "conflict"]
        if dry_run or not waiting or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    return AdoptVerifyResult(caller.run, dry_run, [done[u.intent] for u in units])


@dataclass
class TakeoverResult:
    dry_run: bool
    outcomes: list[TakeoverOutcome]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {"dryRun": self.dry_run, "ok": self.ok, "takeovers": [o.as_dict() for o in self.outcomes]}


def takeover(root: Path, servers: Servers, *, environment: str | None = None, cluster: str | None = None,
             only: set[str] | None = None, dry_run: bool = False, timeout: float = 60.0) -> TakeoverResult:
    """chamberlain's ExternalSecrets take over the consumer Secrets of the adopted values, one by one, with no
    moment without a controller and no change of data (:mod:`chamberlain.handover.takeover`)."""
    from chamberlain.handover import select_cluster
    from chamberlain.handover.takeover import take_over, takeover_units

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    env = environment or (envs[0] if len(envs) == 1 else None)
    if env is None:
        from chamberlain.errors import UsageError

        raise UsageError(f"pass --environment: cluster {chosen} serves {', '.join(envs)}")
    units = takeover_units(platform, [i.obj for i in repo.intents], env, chosen, only)
    kube = servers.kube()
    kv = servers.orchestrator(platform, chosen).kv
    return TakeoverResult(dry_run, [take_over(u, kv, kube, dry_run=dry_run, timeout=timeout) for u in units])


__all__ = ["AdoptVerifyResult", "TakeoverResult", "takeover", "verify"]
