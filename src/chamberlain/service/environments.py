"""``chamberlain env up|down <env>/<id>``: instances of an ephemeral environment (see
:mod:`chamberlain.lifecycle.ephemeral`).

``up`` generates every secret of the instance in the authority (the provisioning workflow, at the instance's paths,
as the cluster's orchestrator) and applies the instance's namespaces, reader ServiceAccounts, SecretStores and
ExternalSecrets (ESO materializes them). ``down`` removes every version and the metadata under the instance's
prefix, deletes its ExternalSecrets and SecretStores, and appends one ``env-teardown`` ledger entry. Both are
idempotent; an interrupted ``down`` is re-run. Never a value in a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import UsageError
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.authority.kv import KV
    from chamberlain.intent.model import Environment
    from chamberlain.service.context import Caller, Servers

EXTERNAL_SECRETS = ("external-secrets.io", "v1", "externalsecrets")
SECRET_STORES = ("external-secrets.io", "v1", "secretstores")


@dataclass
class EnvResult:
    instance: str
    cluster: str
    secrets: list[str] = field(default_factory=list)  # Vault paths created (up) or removed (down)
    objects: list[str] = field(default_factory=list)  # Kind/namespace/name applied (up) or deleted (down)
    ledger_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"instance": self.instance, "cluster": self.cluster, "secrets": self.secrets, "objects": self.objects,
                "ledgerSeq": self.ledger_seq}


def _cluster(env: Environment, cluster: str | None) -> str:
    if cluster is None:
        if len(env.clusters) != 1:
            raise UsageError(f"pass --cluster (one of {', '.join(env.clusters)})")
        return env.clusters[0]
    if cluster not in env.clusters:
        raise UsageError(f"--cluster {cluster}: environment {env.name} is not on it ({', '.join(env.clusters)})")
    return cluster


def up(root: Path, name: str, servers: Servers, caller: Caller, *, cluster: str | None = None) -> EnvResult:
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.intent.paths import effective_policy
    from chamberlain.lifecycle import ephemeral as eph
    from chamberlain.provision import ProvisionUnit, run_provision
    from chamberlain.values.markers import TransitMarkers

    repo, platform = load_platform(root)
    instance, env = eph.parse_instance(platform, name)
    chosen = _cluster(env, cluster)
    intents = eph.intents_of(platform, [i.obj for i in repo.intents], instance.environment)
    objects = eph.manifests(platform, intents, instance, chosen)  # name errors before anything is written
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    units = []
    for intent in intents:
        resolved = effective_policy(platform, policies, intent)
        units.append(ProvisionUnit(intent.metadata.name, instance.environment,
                                   eph.instance_path(platform, intent, instance),
                                   dict(intent.spec.source.generate or {}),
                                   resolved[0] if resolved else None, resolved[1] if resolved else None))
    client = servers.orchestrator(platform, chosen)
    book = Ledger(client.kv, platform.spec.authority.mounts.runtime, caller.clock, cluster=chosen,
                  signer=TransitSigner(client.transit))
    outcomes = run_provision(units, client.kv, book, actor=caller.actor, run=caller.run, clock=caller.clock,
                             markers=TransitMarkers(client.transit))
    kube = servers.kube()
    for obj in objects:
        kube.apply_manifest(obj, eph.FIELD_MANAGER)
    meta = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects]
    return EnvResult(str(instance), chosen, [o.unit.vault.full for o in outcomes],
                     [f"{k}/{ns + '/' if ns else ''}{n}" for k, ns, n in meta])


def _paths_below(kv: KV, mount: str, prefix: str) -> list[str]:
    found: list[str] = []
    for key in kv.list(mount, prefix):
        if key.endswith("/"):
            found.extend(_paths_below(kv, mount, prefix + key))
        else:
            found.append(prefix + key)
    return found


def down(root: Path, name: str, servers: Servers, caller: Caller, *, cluster: str | None = None) -> EnvResult:
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.kube.api import CustomResource
    from chamberlain.lifecycle import ephemeral as eph

    repo, platform = load_platform(root)
    instance, env = eph.parse_instance(platform, name)
    chosen = _cluster(env, cluster)
    intents = eph.intents_of(platform, [i.obj for i in repo.intents], instance.environment)
    objects = eph.manifests(platform, intents, instance, chosen)
    mount = platform.spec.authority.mounts.runtime
    client = servers.orchestrator(platform, chosen)
    kv = client.kv
    kube = servers.kube()
    deleted: list[str] = []
    # The cluster first: an ExternalSecret left behind would only fail once its data is gone.
    for kind, resource in (("ExternalSecret", CustomResource(*EXTERNAL_SECRETS)),
                           ("SecretStore", CustomResource(*SECRET_STORES))):
        for obj in objects:
            if obj["kind"] == kind:
                kube.delete_custom_object(resource, obj["metadata"]["namespace"], obj["metadata"]["name"])
                deleted.append(f"{kind}/{obj['metadata']['namespace']}/{obj['metadata']['name']}")
    paths = _paths_below(kv, mount, eph.instance_prefix(instance))
    book = Ledger(kv, mount, caller.clock, cluster=chosen, signer=TransitSigner(client.transit))
    entry = book.for_environment(instance.environment).append(
        "env-teardown", actor=caller.actor, path=f"{mount}/{eph.instance_prefix(instance)}", run=caller.run,
        reason=f"chamberlain env down {instance}",
        details={"instance": str(instance), "cluster": chosen, "secrets": str(len(paths)),
                 "objects": str(len(deleted))})
    for path in paths:
        kv.delete_all(mount, path)  # every version and the metadata
    return EnvResult(str(instance), chosen, [f"{mount}/{p}" for p in paths], deleted, entry.seq)


__all__ = ["EnvResult", "down", "up"]
