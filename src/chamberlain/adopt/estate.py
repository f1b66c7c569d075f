"""The estate as ``adopt`` sees it: names, keys, owners and references, never a value.

:func:`reduce` is the one door from a Kubernetes object (a plain dict from a manifest or the API server) to these
types. It keeps what mapping needs and drops the rest on purpose: a Secret's ``data``/``stringData`` values (only
the key names survive), a SealedSecret's ciphertexts, a workload's literal ``env`` values, and every annotation
except the few named here (``kubectl.kubernetes.io/last-applied-configuration`` repeats a whole Secret, values
included). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chamberlain.intent.model import DNS_LABEL_PATTERN, SECRET_KEY_PATTERN

# The annotations mapping reads (everything else is dropped at the reader).
RELOADER_AUTO = "reloader.stakater.com/auto"
RELOADER_SECRET_AUTO = "secret.reloader.stakater.com/auto"  # noqa: S105 - an annotation name
RELOADER_SECRET_RELOAD = "secret.reloader.stakater.com/reload"  # noqa: S105 - an annotation name
RELOADER_SEARCH = "reloader.stakater.com/search"
RELOADER_MATCH = "reloader.stakater.com/match"
CERT_MANAGER_CERTIFICATE = "cert-manager.io/certificate-name"
ADOPT_MARKER = "chamberlain.dev/adopt"
KEPT_ANNOTATIONS = frozenset({RELOADER_AUTO, RELOADER_SECRET_AUTO, RELOADER_SECRET_RELOAD, RELOADER_SEARCH,
                              RELOADER_MATCH, CERT_MANAGER_CERTIFICATE, ADOPT_MARKER})

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
STORE_KINDS = ("SecretStore", "ClusterSecretStore")
MAX_NAME = 253
MAX_KEYS = 1024  # keys of one Secret; a Secret holds at most 1 MiB, so more keys than this is not a real one

_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None  # match() takes "name\n" (the $)


def is_secret_key(value: str) -> bool:
    return len(value) <= MAX_NAME and _SECRET_KEY.fullmatch(value) is not None


@dataclass(frozen=True)
class Origin:
    """Where an object was read: ``file:line`` of a manifest, or ``cluster`` / ``authority``."""

    where: str


@dataclass(frozen=True)
class SecretObj:
    namespace: str
    name: str
    type: str
    keys: tuple[str, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owners: tuple[tuple[str, str], ...]  # ownerReferences: (kind, name)
    origin: Origin


@dataclass(frozen=True)
class DataRef:
    """One ``spec.data[]`` item of an ExternalSecret: Secret key <- (remote key, property)."""

    secret_key: str
    remote_key: str
    property: str | None


@dataclass(frozen=True)
class ExternalSecretObj:
    namespace: str
    name: str
    store_kind: str
    store_name: str
    target: str  # the Secret it writes (spec.target.name, default: its own name)
    creation_policy: str
    templated: bool  # spec.target.template changes data or type: the Secret's values are not the remote ones
    data: tuple[DataRef, ...]
    extract_keys: tuple[str, ...]  # spec.dataFrom[].extract.key
    unsupported: tuple[str, ...]  # dataFrom find/rewrite/sourceRef, data[].sourceRef: what is not one path
    labels: Mapping[str, str]
    origin: Origin


@dataclass(frozen=True)
class StoreObj:
    kind: str  # SecretStore | ClusterSecretStore
    namespace: str | None
    name: str
    provider: str  # the provider's key under spec.provider (vault, aws, kubernetes, ...), "" when none
    vault_mount: str | None  # spec.provider.vault.path
    vault_version: str  # v1 | v2
    origin: Origin


@dataclass(frozen=True)
class SealedSecretObj:
    namespace: str
    name: str
    keys: tuple[str, ...]  # spec.encryptedData keys (the ciphertexts are dropped)
    type: str  # spec.template.type
    synced: bool | None  # status condition Synced: True/False, None when there is no status
    labels: Mapping[str, str]
    origin: Origin


@dataclass(frozen=True)
class SecretUse:
    """A workload's reference to a Secret: which keys (None: all, through envFrom or a volume) and how."""

    secret: str
    keys: tuple[str, ...] | None
    how: Literal["env", "envFrom", "volume"]


@dataclass(frozen=True)
class WorkloadObj:
    kind: str
    namespace: str
    name: str
    annotations: Mapping[str, str]
    uses: tuple[SecretUse, ...]
    origin: Origin


@dataclass(frozen=True)
class NamespaceObj:
    name: str
    labels: Mapping[str, str]
    origin: Origin


@dataclass(frozen=True)
class Problem:
    """Something read that cannot be understood at all (bad YAML, an object without a name): reported, never
    guessed around."""

    where: str
    reason: str
    rule: str = "CH123"
    kind: str = ""
    namespace: str = ""
    name: str = ""


EstateObject = SecretObj | ExternalSecretObj | StoreObj | SealedSecretObj | WorkloadObj | NamespaceObj


@dataclass
class Estate:
    secrets: list[SecretObj] = field(default_factory=list)
    external_secrets: list[ExternalSecretObj] = field(default_factory=list)
    stores: list[StoreObj] = field(default_factory=list)
    sealed_secrets: list[SealedSecretObj] = field(default_factory=list)
    workloads: list[WorkloadObj] = field(default_factory=list)
    namespaces: list[NamespaceObj] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, item: EstateObject | Problem | None) -> None:
        if item is None:
            return
        lists: dict[type, list[Any]] = {
            SecretObj: self.secrets, ExternalSecretObj: self.external_secrets, StoreObj: self.stores,
            SealedSecretObj: self.sealed_secrets, WorkloadObj: self.workloads, NamespaceObj: self.namespaces,
            Problem: self.problems,
        }
        target = lists[type(item)]
        target.append(item)

    def only(self, namespaces: Iterable[str]) -> Estate:
        """The part of the estate in ``namespaces`` (cluster-scoped stores always stay)."""
        keep = set(namespaces)
        return Estate(
            [s for s in self.secrets if s.namespace in keep],
            [e for e in self.external_secrets if e.namespace in keep],
            [s for s in self.stores if s.namespace is None or s.namespace in keep],
            [s for s in self.sealed_secrets if s.namespace in keep],
            [w for w in self.workloads if w.namespace in keep],
            [n for n in self.namespaces if n.name in keep],
            [p for p in self.problems if not p.namespace or p.namespace in keep],
        )


# --------------------------------------------------------------------------------------------------- reduce


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(meta.get("labels")).items() if isinstance(v, str | int | bool)}


def _annotations(meta: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in _map(meta.get("annotations")).items() if k in KEPT_ANNOTATIONS}


def _key_names(*maps: Any) -> tuple[str, ...]:
    names: set[str] = set()
    for m in maps:
        names.update(str(k) for k in _map(m))  # the values are never looked at
    return tuple(sorted(names))


def reduce(obj: Any, origin: Origin) -> EstateObject | Problem | None:
    """The value-free form of one Kubernetes object (None: a kind adopt does not read)."""
    if not isinstance(obj, dict):
        return None
    kind = _str(obj.get("kind"))
    meta = _map(obj.get("metadata"))
    name, namespace = _str(meta.get("name")), _str(meta.get("namespace")) or "default"
    if kind not in ("Secret", "ExternalSecret", "SealedSecret", "Namespace", *STORE_KINDS, *WORKLOAD_KINDS):
        return None
    if not name or len(name) > MAX_NAME:
        return Problem(origin.where, f"a {kind} without a usable metadata.name", kind=kind, namespace=namespace)
    spec = _map(obj.get("spec"))
    if kind == "Secret":
        keys = _key_names(obj.get("data"), obj.get("stringData"))
        if len(keys) > MAX_KEYS:
            return Problem(origin.where, f"more than {MAX_KEYS} keys", kind=kind, namespace=namespace, name=name)
        owners = tuple((_str(o.get("kind")), _str(o.get("name")))
                       for o in _list(meta.get("ownerReferences")) if isinstance(o, dict))
        return SecretObj(namespace, name, _str(obj.get("type")) or "Opaque", keys, _labels(meta),
                         _annotations(meta), owners, origin)
    if kind == "ExternalSecret":
        return _external_secret(namespace, name, meta, spec, origin)
    if kind in STORE_KINDS:
        provider = _map(spec.get("provider"))
        vault = _map(provider.get("vault"))
        return StoreObj(kind, None if kind == "ClusterSecretStore" else namespace, name,
                        next(iter(sorted(provider)), ""), _str(vault.get("path")).strip("/") or None,
                        _str(vault.get("version")) or "v2", origin)
    if kind == "SealedSecret":
        template = _map(spec.get("template"))
        synced: bool | None = None
        for cond in _list(_map(obj.get("status")).get("conditions")):
            if isinstance(cond, dict) and cond.get("type") == "Synced":
                synced = str(cond.get("status")) == "True"
        return SealedSecretObj(namespace, name, _key_names(spec.get("encryptedData")),
                               _str(template.get("type")) or "Opaque", synced, _labels(meta), origin)
    if kind == "Namespace":
        return NamespaceObj(name, _labels(meta), origin)
    return WorkloadObj(kind, namespace, name, _annotations(meta), _uses(spec), origin)


def _external_secret(namespace: str, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any],
                     origin: Origin) -> ExternalSecretObj:
    store = _map(spec.get("secretStoreRef"))
    target = _map(spec.get("target"))
    template = _map(target.get("template"))
    templated = bool(template.get("data") or template.get("templateFrom") or template.get("type")
                     or template.get("engineVersion") == "v1")
    data: list[DataRef] = []
    unsupported: list[str] = []
    for item in _list(spec.get("data")):
        item = _map(item)
        ref = _map(item.get("remoteRef"))
        if item.get("sourceRef"):
            unsupported.append("data[].sourceRef (a generator or another store)")
            continue
        prop = _str(ref.get("property")) or None
        data.append(DataRef(_str(item.get("secretKey")), _str(ref.get("key")), prop))
    extract: list[str] = []
    for item in _list(spec.get("dataFrom")):
        item = _map(item)
        if item.get("find"):
            unsupported.append("dataFrom[].find (a search, not one path)")
        elif item.get("rewrite") or item.get("sourceRef"):
            unsupported.append("dataFrom[].rewrite/sourceRef (key names rewritten or generated)")
        elif item.get("extract"):
            extract.append(_str(_map(item.get("extract")).get("key")))
    return ExternalSecretObj(
        namespace, name, _str(store.get("kind")) or "SecretStore", _str(store.get("name")),
        _str(target.get("name")) or name, _str(target.get("creationPolicy")) or "Owner", templated,
        tuple(data), tuple(extract), tuple(unsupported), _labels(meta), origin)


def _uses(spec: Mapping[str, Any]) -> tuple[SecretUse, ...]:
    pod = _map(_map(spec.get("template")).get("spec"))
    uses: list[SecretUse] = []
    by_secret: dict[str, set[str]] = {}
    containers = [*_list(pod.get("initContainers")), *_list(pod.get("containers"))]
    for c in containers:
        c = _map(c)
        for env in _list(c.get("env")):
            ref = _map(_map(_map(env).get("valueFrom")).get("secretKeyRef"))  # literal `value`s never read
            if _str(ref.get("name")):
                by_secret.setdefault(_str(ref.get("name")), set()).add(_str(ref.get("key")))
        for env_from in _list(c.get("envFrom")):
            ref = _map(_map(env_from).get("secretRef"))
            if _str(ref.get("name")):
                uses.append(SecretUse(_str(ref.get("name")), None, "envFrom"))
    for volume in _list(pod.get("volumes")):
        volume = _map(volume)
        secret = _map(volume.get("secret"))
        names = [_str(secret.get("secretName"))]
        for source in _list(_map(volume.get("projected")).get("sources")):
            names.append(_str(_map(_map(source).get("secret")).get("name")))
        uses.extend(SecretUse(n, None, "volume") for n in names if n)
    uses.extend(SecretUse(n, tuple(sorted(k)), "env") for n, k in sorted(by_secret.items()))
    return tuple(uses)


__all__ = [
    "ADOPT_MARKER",
    "DataRef",
    "Estate",
    "ExternalSecretObj",
    "NamespaceObj",
    "Origin",
    "Problem",
    "SealedSecretObj",
    "SecretObj",
    "SecretUse",
    "StoreObj",
    "WorkloadObj",
    "is_dns_label",
    "is_secret_key",
    "reduce",
]
