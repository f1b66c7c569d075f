"""``chamberlain env up|down <env>/<id>``: instances of an ephemeral environment (see
:mod:`chamberlain.lifecycle.ephemeral`).

``up`` generates every secret of the instance in the authority (the provisioning workflow, at the instance's paths,
as the cluster's orchestrator), copies each to the path ESO of each of its consumer namespaces reads, and applies
the instance's namespaces, reader ServiceAccounts, SecretStores and ExternalSecrets (ESO materializes them).
``down`` deletes the instance's ExternalSecrets, SecretStores and namespaces, appends an ``env-teardown`` ledger
entry and removes every version and the metadata under the instance's prefix. Both are idempotent; an interrupted
``down`` is re-run. Never a value in a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.authority.kv import KV
    from chamberlain.intent.model import Environment, Platform, SecretIntent
    from chamberlain.lifecycle.ephemeral import Instance
    from chamberlain.service.context import Caller, ClusterAPI, Servers

EXTERNAL_SECRETS = ("external-secrets.io", "v1", "externalsecrets")
SECRET_STORES = ("external-secrets.io", "v1", "secretstores")


class NotMaterialized(ChamberlainError):
    """The instance is generated and applied, but a consumer Secret did not get its value in time."""

    retryable = True


class InstanceNotGone(ChamberlainError):
    """Everything was deleted but a namespace of the instance is still terminating; a re-run checks again."""

    retryable = True


@dataclass
class EnvResult:
    instance: str
    cluster: str
    secrets: list[str] = field(default_factory=list)  # Vault paths created (up) or removed (down)
    objects: list[str] = field(default_factory=list)  # Kind/namespace/name applied (up) or deleted (down)
    ledger_seq: int | None = None
    copies: list[str] = field(default_factory=list)  # up: the per-namespace copies ESO reads, written this run

    def as_dict(self) -> dict[str, Any]:
        return {"instance": self.instance, "cluster": self.cluster, "secrets": self.secrets, "objects": self.objects,
                "copies": self.copies, "ledgerSeq": self.ledger_seq}


def _cluster(env: Environment, cluster: str | None) -> str:
    if cluster is None:
        if len(env.clusters) != 1:
            raise UsageError(f"pass --cluster (one of {', '.join(env.clusters)})")
        return env.clusters[0]
    if cluster not in env.clusters:
        raise UsageError(f"--cluster {cluster}: environment {env.name} is not on it ({', '.join(env.clusters)})")
    return cluster


def up(root: Path, name: str, servers: Servers, caller: Caller, *, cluster: str | None = None,
       wait_seconds: float = 120.0) -> EnvResult:
    """Generate, apply, then (``wait_seconds`` > 0) force ESO to sync and wait until every consumer Secret
    carries its secret's version marker, so a CI job can deploy right after; :class:`NotMaterialized` when one
    does not within the time (a re-run generates nothing again and waits anew)."""
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
    copies = _copy_for_readers(client.kv, platform, intents, instance)
    kube = servers.kube()
    for obj in objects:
        kube.apply_manifest(obj, eph.FIELD_MANAGER)
    if wait_seconds > 0:
        _wait_materialized(servers, client.kv, platform, intents, instance, caller, wait_seconds)
    meta = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects]
    return EnvResult(str(instance), chosen, [o.unit.vault.full for o in outcomes],
                     [f"{k}/{ns + '/' if ns else ''}{n}" for k, ns, n in meta], copies=copies)


def _copy_for_readers(kv: KV, platform: Platform, intents: list[SecretIntent], instance: Instance) -> list[str]:
    """Copy each generated value, with its custom metadata (the version marker ESO puts on the Secret), to the
    path ESO of each consumer namespace reads; an up-to-date copy is left alone. Returns the copies written."""
    from chamberlain.lifecycle import ephemeral as eph

    written: list[str] = []
    for intent in intents:
        source = eph.instance_path(platform, intent, instance)
        value, meta = kv.read(source.mount, source.path), kv.read_metadata(source.mount, source.path)
        if value is None or meta is None:  # pragma: no cover - provisioning just wrote it
            raise UsageError(f"{source.full}: the generated value is not readable back")
        for ns in sorted({eph.instance_namespace(c.namespace, instance) for c in intent.spec.consumers}):
            copy = eph.reader_path(platform, intent, instance, ns)
            have, have_meta = kv.read(copy.mount, copy.path), kv.read_metadata(copy.mount, copy.path)
            if have is not None and have_meta is not None and have.data == value.data \
                    and have_meta.custom == meta.custom:
                continue
            if have is None or have.data != value.data:
                kv.write(copy.mount, copy.path, value.data, cas=have_meta.current_version if have_meta else 0)
            kv.update_custom_metadata(copy.mount, copy.path, meta.custom)
            written.append(copy.full)
    return written


def _wait_materialized(servers: Servers, kv: KV, platform: Platform, intents: list[SecretIntent],
                       instance: Instance, caller: Caller, seconds: float) -> None:
    from chamberlain import wellknown as wk
    from chamberlain.lifecycle import ephemeral as eph
    from chamberlain.propagation import ConsumerRef, ExternalSecretRef, force_refresh, wait_in_sync

    kube = servers.kube()
    deadline = caller.clock.monotonic() + seconds
    late: list[str] = []
    for intent in intents:
        path = eph.instance_path(platform, intent, instance)
        meta = kv.read_metadata(path.mount, path.path)
        marker = meta.custom.get(wk.VALUE_MARKER) if meta is not None else None
        consumers = [ConsumerRef(eph.instance_namespace(c.namespace, instance), c.secret_name)
                     for c in intent.spec.consumers]
        if marker is None or not consumers:
            continue
        # The ExternalSecret is named after its target Secret (render.eso.external_secret).
        force_refresh(kube, [ExternalSecretRef(c.namespace, c.name) for c in consumers], caller.run)
        left = max(0.0, deadline - caller.clock.monotonic())
        late += [f"{s.consumer.namespace}/{s.consumer.name}"
                 for s in wait_in_sync(kube, consumers, marker, caller.clock, left) if not s.in_sync]
    if late:
        raise NotMaterialized(f"{instance}: ESO did not materialize {', '.join(late)} within {seconds:.0f}s "
                              "(kubectl describe externalsecret there says why); re-run env up to wait again")


def _paths_below(kv: KV, mount: str, prefix: str) -> list[str]:
    found: list[str] = []
    for key in kv.list(mount, prefix):
        if key.endswith("/"):
            found.extend(_paths_below(kv, mount, prefix + key))
        else:
            found.append(prefix + key)
    return found


def down(root: Path, name: str, servers: Servers, caller: Caller, *, cluster: str | None = None,
         wait_seconds: float = 120.0) -> EnvResult:
    """Remove the instance from the cluster, then from the authority. What to remove is found by looking (the
    instance label in the cluster, the instance prefix in Vault), not from Git: an intent dropped from the pull
    request after ``up`` still goes. Waits up to ``wait_seconds`` for the namespaces to be gone (the namespace
    controller deletes their content, consumer Secrets included); a re-run resumes wherever a crash stopped it."""
    from chamberlain.audit.ledger import Ledger, TransitSigner
    from chamberlain.faults import checkpoint
    from chamberlain.kube.api import CustomResource
    from chamberlain.lifecycle import ephemeral as eph

    _repo, platform = load_platform(root)
    instance, env = eph.parse_instance(platform, name)  # a non-ephemeral environment stops here (exit 2)
    chosen = _cluster(env, cluster)
    mount = platform.spec.authority.mounts.runtime
    kube = servers.kube()
    client = servers.orchestrator(platform, chosen)
    kv = client.kv
    selector = f"{eph.LABEL_INSTANCE}={instance.label}"
    namespaces = kube.list_namespaces(selector)  # only namespaces env up labelled: never a look-alike name
    deleted: list[str] = []
    # ExternalSecrets first, so nothing asks Vault for data that is about to go; then the stores; then the
    # namespaces, which take the consumer Secrets and the reader ServiceAccounts with them.
    for ns in namespaces:
        for kind, resource in (("ExternalSecret", CustomResource(*EXTERNAL_SECRETS)),
                               ("SecretStore", CustomResource(*SECRET_STORES))):
            for obj in kube.list_custom_objects(resource, ns):
                meta = obj.get("metadata") or {}
                if (meta.get("labels") or {}).get(eph.LABEL_INSTANCE) == instance.label:
                    kube.delete_custom_object(resource, ns, str(meta["name"]))
                    deleted.append(f"{kind}/{ns}/{meta['name']}")
        kube.delete_namespace(ns)
        deleted.append(f"Namespace/{ns}")
    checkpoint("env-down.cluster-removed")
    paths = _paths_below(kv, mount, eph.instance_prefix(instance))
    seq = None
    if paths or namespaces:  # one entry per run that removed something; a run that found nothing records nothing
        book = Ledger(kv, mount, caller.clock, cluster=chosen, signer=TransitSigner(client.transit))
        seq = book.for_environment(instance.environment).append(
            "env-teardown", actor=caller.actor, path=f"{mount}/{eph.instance_prefix(instance)}", run=caller.run,
            reason=f"chamberlain env down {instance}",
            details={"instance": str(instance), "cluster": chosen, "secrets": str(len(paths)),
                     "namespaces": str(len(namespaces))}).seq
    for path in paths:
        kv.delete_all(mount, path)  # every version and the metadata
        checkpoint("env-down.secret-removed")
    _wait_gone(kube, selector, caller, wait_seconds)
    return EnvResult(str(instance), chosen, [f"{mount}/{p}" for p in paths], deleted, seq)


def _wait_gone(kube: ClusterAPI, selector: str, caller: Caller, seconds: float) -> None:
    deadline = caller.clock.monotonic() + seconds
    while left := kube.list_namespaces(selector):
        if caller.clock.monotonic() >= deadline:
            raise InstanceNotGone(f"namespaces {', '.join(left)} are still terminating after {seconds:.0f}s "
                                  "(a finalizer the namespace controller waits for?); re-run env down to check")
        caller.clock.sleep(1.0)


__all__ = ["EnvResult", "InstanceNotGone", "NotMaterialized", "down", "up"]
