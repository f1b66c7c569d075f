"""Instances of an ephemeral environment (``preview/<id>``): their names, paths and ESO objects. Pure.

An environment declared ``ephemeral: true`` in the Platform is the template; an instance ``<env>/<id>`` (one per
pull request, say) exists only between ``chamberlain env up`` and ``env down``. Nothing exists that Git does not
describe and no policy is written at runtime: the Vault bundle of the declared environment already covers every
instance through the path shape (:mod:`chamberlain.render.vault_bundle`, ``instance-reader`` roles).

Naming (instances never collide; every name carries the instance id):

- Vault: ``<runtime>/<env>/_instances/<id>/<owner>/<name>`` is the value ``env up`` generates, and
  ``<runtime>/<env>/_instances/<id>/_ns/<ns>-<id>/<owner>/<name>`` the copy ESO of instance namespace ``<ns>-<id>``
  reads (same data, same version marker). ``_instances`` and ``_ns`` cannot be owners (a DNS label never starts with
  ``_``), so an instance never lands on the declared environment's own paths, and ``env down`` lists and removes
  exactly ``<env>/_instances/<id>/``. The orchestrator's ``<runtime>/<env>/*`` grant covers all of it.
- Kubernetes: each consumer namespace ``<ns>`` of the environment becomes ``<ns>-<id>``; the reader ServiceAccount,
  SecretStores and ExternalSecrets inside it are named as in the declared environment.

Least privilege: the ``instance-reader`` role of ``<ns>`` logs in the reader ServiceAccount of namespaces ``<ns>-*``;
its policy is templated on the namespace of the ServiceAccount that logged in (the Kubernetes auth alias's
``service_account_namespace``), so ESO of ``web-preview-pr-1`` reads ``…/_ns/web-preview-pr-1/…`` and nothing of
another instance, with no policy written at runtime. Templating substitutes whole values only, hence one copy per
consumer namespace (docs/ephemeral-environments.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.errors import UsageError
from chamberlain.intent.model import Environment, Platform, SecretIntent
from chamberlain.intent.paths import INSTANCES_SEGMENT, READERS_SEGMENT, VaultPath, intent_environments
from chamberlain.render import eso, naming
from chamberlain.render.topology import Read

INSTANCES = INSTANCES_SEGMENT
READERS = READERS_SEGMENT
MAX_ID = 20  # leaves 42 characters of a consumer namespace for <ns>-<id> (a DNS label has 63)
_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_INSTANCE = wk.PREFIX + "instance"  # "<env>.<id>" on every object env up creates (a label value has no '/')
FIELD_MANAGER = "chamberlain-env"


@dataclass(frozen=True, order=True)
class Instance:
    environment: str
    id: str

    def __str__(self) -> str:
        return f"{self.environment}/{self.id}"

    @property
    def label(self) -> str:
        return f"{self.environment}.{self.id}"


def parse_instance(platform: Platform, text: str) -> tuple[Instance, Environment]:
    """``<env>/<id>`` of an ephemeral environment of the Platform; :class:`UsageError` (exit 2) saying why not."""
    env_name, sep, ident = text.partition("/")
    env = platform.environment(env_name)
    if env is None:
        known = ", ".join(e.name for e in platform.spec.environments if e.ephemeral) or "none"
        raise UsageError(f"{text!r}: {env_name!r} is not an environment of the Platform (ephemeral ones: {known})")
    if not env.ephemeral:
        raise UsageError(f"{text!r}: environment {env_name!r} is not ephemeral (spec.environments[].ephemeral in the "
                         "Platform); env up/down act only on instances of an ephemeral environment")
    if not sep or not ident:
        raise UsageError(f"{text!r}: name an instance as {env_name}/<id>, e.g. {env_name}/pr-42")
    if len(ident) > MAX_ID or not _ID.match(ident):
        raise UsageError(f"{text!r}: the instance id must be a DNS label of at most {MAX_ID} characters (lower-case "
                         "letters, digits and '-', starting and ending with a letter or digit)")
    return Instance(env_name, ident), env


def instance_namespace(namespace: str, instance: Instance) -> str:
    name = f"{namespace}-{instance.id}"
    if len(name) > 63:
        raise UsageError(f"namespace {namespace!r} of instance {instance}: {name!r} is longer than 63 characters; "
                         "use a shorter instance id")
    return name


def instance_path(platform: Platform, intent: SecretIntent, instance: Instance) -> VaultPath:
    return VaultPath(platform.spec.authority.mounts.runtime,
                     f"{instance.environment}/{INSTANCES}/{instance.id}/{intent.spec.owner}/{intent.metadata.name}")


def reader_path(platform: Platform, intent: SecretIntent, instance: Instance, namespace: str) -> VaultPath:
    """The copy ESO in the instance namespace ``namespace`` (``<ns>-<id>``) reads; the instance-reader policy is
    templated on the logged-in ServiceAccount's namespace, so only ESO of that namespace can."""
    return VaultPath(platform.spec.authority.mounts.runtime,
                     f"{instance.environment}/{INSTANCES}/{instance.id}/{READERS}/{namespace}/{intent.spec.owner}/"
                     f"{intent.metadata.name}")


def instance_prefix(instance: Instance) -> str:
    """Everything of the instance in the runtime mount lives below this prefix."""
    return f"{instance.environment}/{INSTANCES}/{instance.id}/"


def intents_of(platform: Platform, intents: list[SecretIntent], environment: str) -> list[SecretIntent]:
    """The runtime intents (generated values) placed in the ephemeral environment; an instance gets each anew."""
    return sorted((i for i in intents if any(e.name == environment for e in intent_environments(platform, i))
                   and i.spec.source.generate is not None), key=lambda i: i.metadata.name)


def manifests(platform: Platform, intents: list[SecretIntent], instance: Instance,
              cluster: str) -> list[dict[str, Any]]:
    """Namespaces, reader ServiceAccounts, SecretStores and ExternalSecrets of one instance on one cluster, each
    labelled with the instance (what ``env down`` removes). ESO materializes the Secrets."""
    by_ns: dict[str, list[Read]] = {}
    for intent in intents:
        for c in intent.spec.consumers:
            ns = instance_namespace(c.namespace, instance)
            by_ns.setdefault(c.namespace, []).append(Read(intent, c.model_copy(update={"namespace": ns}),
                                                          reader_path(platform, intent, instance, ns)))
    env = instance.environment
    out: list[dict[str, Any]] = []
    for base_ns in sorted(by_ns):
        ns = instance_namespace(base_ns, instance)
        objects = [eso.namespace(ns), *eso.reader_objects(platform, env, cluster, ns, by_ns[base_ns])]
        role = naming.instance_reader_policy(env, cluster, base_ns)
        for obj in objects:
            meta = obj["metadata"]
            meta.setdefault("labels", {})[LABEL_INSTANCE] = instance.label
            meta["annotations"] = {k: v for k, v in meta.get("annotations", {}).items()
                                   if k not in (wk.ARGOCD_SYNC_WAVE, wk.ARGOCD_SYNC_OPTIONS, wk.FLUX_PRUNE)}
            if obj["kind"] == "SecretStore":
                obj["spec"]["provider"]["vault"]["auth"]["kubernetes"]["role"] = role
        out.extend(objects)
    return out


__all__ = [
    "FIELD_MANAGER",
    "INSTANCES",
    "LABEL_INSTANCE",
    "MAX_ID",
    "Instance",
    "instance_namespace",
    "instance_path",
    "instance_prefix",
    "intents_of",
    "manifests",
    "parse_instance",
    "reader_path",
]
