"""From an estate to intents: what each existing secret becomes, and what cannot be mapped, with the reason.

The decisions (docs/adoption.md says why):

- An ExternalSecret on a Vault path becomes a ``runtime`` intent on the conventional path
  ``<runtime>/<env>/<owner>/<name>``. When it already reads that path, owner and name come from the path; when it
  reads another path the value is *copied* to the conventional one (an ``existingSecret`` import from the Secret
  the ExternalSecret wrote), never referenced there through a path override.
- A plain Secret or a SealedSecret's Secret becomes a ``runtime`` intent with ``source.existingSecret``: a one-time
  import of the value that already lives in the cluster.
- Consumers keep their Secret names and keys; restarts come from Reloader annotations (only workloads Reloader
  restarted before are restarted after: nothing restarts that did not before).
- Everything ambiguous is refused with a reason, never guessed: two writers of one Secret, a SealedSecret nothing
  shows its controller can open, a name that is not DNS-safe, a typed Secret whose type would be lost, a store
  that is not Vault, an ExternalSecret that combines paths or templates its values.

Pure: an :class:`~chamberlain.adopt.estate.Estate` (and, optionally, the authority's metadata) in, an
:class:`Adoption` out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.adopt.estate import (
    ADOPT_MARKER,
    CERT_MANAGER_CERTIFICATE,
    RELOADER_AUTO,
    RELOADER_MATCH,
    RELOADER_SEARCH,
    RELOADER_SECRET_AUTO,
    RELOADER_SECRET_RELOAD,
    Estate,
    ExternalSecretObj,
    SealedSecretObj,
    SecretObj,
    StoreObj,
    WorkloadObj,
    is_dns_label,
    is_secret_key,
)
from chamberlain.intent.model import API_VERSION, DNS_SUBDOMAIN_PATTERN

RULE_UNMAPPED = "CH123"  # an object of the estate that adopt cannot map (the reason says why)
RULE_AUTHORITY = "CH124"  # the authority's metadata contradicts what the estate says
DEFAULT_OWNER_LABELS = ("chamberlain.dev/owner", "owner", "team", "app.kubernetes.io/part-of")
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
SKIPPED_TYPES = {
    "kubernetes.io/service-account-token": "a ServiceAccount token the API server issues and rotates",
    "bootstrap.kubernetes.io/token": "a node bootstrap token, managed by the cluster",
    "helm.sh/release.v1": "Helm's release storage, not an application secret",
}
_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)

Origin = Literal["external-secret", "secret", "sealed-secret"]


@dataclass(frozen=True)
class Settings:
    """Where the adopted intents live and how owners are found."""

    environment: str
    cluster: str
    runtime_mount: str = "secret"
    internal_mounts: tuple[str, ...] = ("platform-data", "platform-config")
    owner_labels: tuple[str, ...] = DEFAULT_OWNER_LABELS
    holders: Mapping[str, str] = field(default_factory=dict)  # namespace -> owner, from the Platform's tenancy
    other_environments: tuple[str, ...] = ()  # the Platform's other environments (their paths are not adopted)
    owners: tuple[str, ...] = ()  # the Platform's tenancy owners; empty: no tenancy, any owner segment is one


@dataclass(frozen=True)
class PathMeta:
    """What the authority's KV metadata says about one path (never its data)."""

    current_version: int
    deleted: bool  # the current version is deleted or destroyed
    intent: str | None  # custom_metadata ``intent``: chamberlain already records it for that intent
    recorded: bool  # custom_metadata ``authority=vault``


@dataclass(frozen=True)
class AuthorityView:
    """The authority's metadata of the paths adopt asked about: ``paths`` maps ``mount/path`` to its metadata
    (absent: no such secret); ``listed`` are the runtime paths found under the environment."""

    paths: Mapping[str, PathMeta]
    listed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class ReloaderUse:
    """A Reloader annotation that restarts a workload when an adopted Secret changes (cleaned up at the end)."""

    workload: Workload
    annotation: str
    value: str  # the annotation's value today (a reload list is edited, not dropped, at cleanup)


@dataclass(frozen=True)
class Consumer:
    namespace: str
    secret_name: str
    keys: Mapping[str, str]  # Secret key -> intent key
    restart: tuple[Workload, ...]
    readers: tuple[Workload, ...]  # reference the Secret but were never restarted on change (and still are not)
    reloader: tuple[ReloaderUse, ...]
    writer: tuple[str, str, str]  # (kind, namespace, name) of what writes the Secret today


@dataclass(frozen=True)
class Adopted:
    intent: str
    owner: str
    owner_from: str  # how the owner was found (a label, the namespace, the path)
    origin: Origin
    keys: tuple[str, ...]
    path: str  # the conventional runtime path, mount included
    copied_from: str | None  # the non-conventional path an ExternalSecret read (copied, never overridden)
    import_from: tuple[str, str]  # (namespace, Secret) the one-time import reads
    consumers: tuple[Consumer, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unmapped:
    kind: str
    namespace: str
    name: str
    reason: str
    rule: str = RULE_UNMAPPED
    where: str = ""


@dataclass(frozen=True)
class Skipped:
    kind: str
    namespace: str
    name: str
    reason: str


@dataclass(frozen=True)
class Adoption:
    settings: Settings
    adopted: tuple[Adopted, ...]
    unmapped: tuple[Unmapped, ...]
    skipped: tuple[Skipped, ...]
    stores: tuple[tuple[str, str, str], ...]  # Vault (kind, namespace, name) stores only adopted objects used

    @property
    def complete(self) -> bool:
        return not self.unmapped


# --------------------------------------------------------------------------------------------------- helpers


def _ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}"


def owner_of(settings: Settings, namespace: str, chain: Iterable[tuple[str, Mapping[str, str]]],
             namespace_labels: Mapping[str, str]) -> tuple[str | None, str]:
    """(owner, how it was found) from the first owner label on the objects of ``chain`` (what, labels), then on
    the namespace, else the namespace itself; (None, why) when the label found is not a DNS-1123 label. With a
    tenancy in the Platform, the namespace's holder is the owner (an import reads into the holder's path only)."""
    holder = settings.holders.get(namespace)
    if holder is not None:
        return holder, f"the Platform's tenancy (namespace {namespace} is held by {holder})"
    for what, labels in [*chain, (f"Namespace {namespace}", namespace_labels)]:
        for label in settings.owner_labels:
            value = labels.get(label)
            if value:
                if not is_dns_label(value):
                    return None, f"owner label {label}={value[:64]!r} on {what} is not a DNS-1123 label"
                return value, f"label {label} on {what}"
    return namespace, "the namespace (no owner label)"


def vault_location(es: ExternalSecretObj, store: StoreObj) -> tuple[str, str] | None:
    """(mount, path) of the one Vault secret ``es`` reads, or None when it reads more than one."""
    keys = {d.remote_key for d in es.data} | set(es.extract_keys)
    if len(keys) != 1:
        return None
    key = next(iter(keys)).strip("/")
    mount = store.vault_mount
    if mount is None:
        mount, _, key = key.partition("/")
    elif key.startswith(f"{mount}/"):
        key = key[len(mount) + 1:]
    if key.startswith("data/"):  # written with the KV v2 API prefix; ESO adds it itself
        key = key[5:]
    return mount, key


def vault_paths(estate: Estate) -> list[str]:
    """Every ``mount/path`` the estate's ExternalSecrets read through Vault stores (what the authority is asked
    about)."""
    stores = {(s.kind, s.namespace, s.name): s for s in estate.stores}
    out: set[str] = set()
    for es in estate.external_secrets:
        store = stores.get(_store_key(es))
        if store is not None and store.provider == "vault":
            loc = vault_location(es, store)
            if loc is not None and loc[0] and loc[1]:
                out.add(f"{loc[0]}/{loc[1]}")
    return sorted(out)


def _store_key(es: ExternalSecretObj) -> tuple[str, str | None, str]:
    if es.store_kind == "ClusterSecretStore":
        return ("ClusterSecretStore", None, es.store_name)
    return ("SecretStore", es.namespace, es.store_name)


def _managed(labels: Mapping[str, str]) -> bool:
    return labels.get(wk.MANAGED_BY) == wk.MANAGER or wk.LABEL_INTENT in labels


def _split(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


# --------------------------------------------------------------------------------------------------- mapping


@dataclass
class _Work:
    settings: Settings
    estate: Estate
    view: AuthorityView | None
    unmapped: list[Unmapped] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    candidates: list[Adopted] = field(default_factory=list)
    # the objects behind each candidate (by its import source, unique), so a late refusal reports every one
    sources: dict[tuple[str, str], list[tuple[str, str, str, str]]] = field(default_factory=dict)

    secret_index: dict[tuple[str, str], SecretObj] = field(default_factory=dict)
    # (namespace, Secret) -> the workloads that reference it or name it in a Reloader reload list
    workloads_of: dict[tuple[str, str], list[WorkloadObj]] = field(default_factory=dict)
    ns_labels: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def index(self, estate: Estate) -> None:
        """Look-ups by name, so mapping stays linear in the estate."""
        self.estate = estate
        self.secret_index = {(x.namespace, x.name): x for x in estate.secrets}
        self.workloads_of = defaultdict(list)
        for wl in sorted(estate.workloads, key=lambda x: (x.kind, x.name)):
            for name in sorted({u.secret for u in wl.uses} | _split(wl.annotations.get(RELOADER_SECRET_RELOAD))):
                self.workloads_of[(wl.namespace, name)].append(wl)
        self.ns_labels = {n.name: n.labels for n in estate.namespaces}

    def refuse(self, kind: str, namespace: str, name: str, reason: str, where: str = "",
               rule: str = RULE_UNMAPPED) -> None:
        self.unmapped.append(Unmapped(kind, namespace, name, reason, rule, where))


def adopt(estate: Estate, settings: Settings, view: AuthorityView | None = None) -> Adoption:
    """Map ``estate`` to intents for ``settings.environment``; ``view``: the authority's metadata, when read."""
    w = _Work(settings, estate, view)
    for p in estate.problems:
        w.refuse(p.kind or "File", p.namespace, p.name or p.where.rsplit(":", 1)[0], p.reason, p.where, p.rule)
    system = {ns for ns in [*(s.namespace for s in estate.secrets), *(e.namespace for e in estate.external_secrets),
                            *(s.namespace for s in estate.sealed_secrets)] if ns in SYSTEM_NAMESPACES}
    for ns in sorted(system):
        w.skipped.append(Skipped("Namespace", "", ns, "a system namespace: its Secrets are the cluster's"))
    estate = estate.only({*(n for n in _namespaces(estate) if n not in SYSTEM_NAMESPACES)})
    w.index(estate)

    writers: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # Secret -> [(kind, name)]
    for es in estate.external_secrets:
        writers[(es.namespace, es.target)].append(("ExternalSecret", es.name))
    for ss in estate.sealed_secrets:
        writers[(ss.namespace, ss.name)].append(("SealedSecret", ss.name))
    conflicted = {key for key, who in writers.items() if len(who) > 1}
    for (ns, secret) in sorted(conflicted):
        names = ", ".join(f"{k} {n}" for k, n in sorted(writers[(ns, secret)]))
        reason = f"Secret {ns}/{secret} has two writers ({names}): which one holds the value is a guess"
        for kind, name in sorted(writers[(ns, secret)]):
            w.refuse(kind, ns, name, reason)
        w.refuse("Secret", ns, secret, reason)

    _map_stores(w)
    _map_external_secrets(w, conflicted)
    _map_plain_secrets(w, writers)
    _map_sealed_secrets(w, conflicted)
    adopted = _check_markers(w, _resolve_names(w))
    adopted = _check_authority(w, adopted)
    if view is not None:
        claimed = {a.path for a in adopted} | {a.copied_from for a in adopted if a.copied_from}
        for path in view.listed:
            if path not in claimed:
                meta = view.paths.get(path)
                why = (f"recorded for intent {meta.intent}: already under chamberlain" if meta and meta.intent else
                       "no ExternalSecret of the estate reads it: write its intent by hand (a `generate` source "
                       "adopts the value found there, never regenerates it)")
                w.skipped.append(Skipped("VaultPath", "", path, why))
    used = _stores_in_use(w, adopted)
    return Adoption(settings, tuple(sorted(adopted, key=lambda a: a.intent)),
                    tuple(sorted(set(w.unmapped), key=lambda u: (u.namespace, u.kind, u.name, u.reason))),
                    tuple(sorted(set(w.skipped), key=lambda s: (s.namespace, s.kind, s.name))), used)


def _namespaces(estate: Estate) -> set[str]:
    return {*(s.namespace for s in estate.secrets), *(e.namespace for e in estate.external_secrets),
            *(s.namespace for s in estate.sealed_secrets), *(x.namespace for x in estate.workloads),
            *(n.name for n in estate.namespaces), *(s.namespace for s in estate.stores if s.namespace)}


def _ns_labels(w: _Work, namespace: str) -> Mapping[str, str]:
    return w.ns_labels.get(namespace, {})


def _map_stores(w: _Work) -> None:
    for store in w.estate.stores:
        if store.provider != "vault":
            provider = store.provider or "none"
            w.refuse(store.kind, store.namespace or "", store.name,
                     f"provider {provider}: chamberlain's authority is Vault/OpenBao; ExternalSecrets on this store "
                     "are not adopted", store.origin.where)
        elif store.vault_version != "v2":
            w.refuse(store.kind, store.namespace or "", store.name,
                     f"Vault KV {store.vault_version}: chamberlain's runtime mount is KV v2", store.origin.where)


def _map_external_secrets(w: _Work, conflicted: set[tuple[str, str]]) -> None:
    s = w.settings
    stores = {(x.kind, x.namespace, x.name): x for x in w.estate.stores}
    secrets = w.secret_index
    groups: dict[str, list[tuple[ExternalSecretObj, dict[str, str]]]] = defaultdict(list)
    for es in sorted(w.estate.external_secrets, key=lambda e: (e.namespace, e.name)):
        where = es.origin.where
        if _managed(es.labels):
            w.skipped.append(Skipped("ExternalSecret", es.namespace, es.name, "already rendered by chamberlain"))
            continue
        if (es.namespace, es.target) in conflicted:
            continue
        refusal = _es_refusal(es, stores.get(_store_key(es)))
        if refusal is None and not is_dns_label(es.namespace):
            refusal = f"namespace {es.namespace!r} is not a DNS-1123 label"
        if refusal is None and not (len(es.target) <= 253 and _SUBDOMAIN.fullmatch(es.target)):
            refusal = f"target Secret name {es.target!r} is not DNS-safe"
        keymap: dict[str, str] = {}
        if refusal is None:
            for d in es.data:
                if d.property is None:
                    refusal = (f"data[{d.secret_key}] has no remoteRef.property: it reads the whole secret as one "
                               "JSON value, which no intent key can hold")
                    break
                if not (is_secret_key(d.secret_key) and is_secret_key(d.property)):
                    refusal = f"key {d.secret_key!r} <- {d.property!r} is not a valid Secret key name"
                    break
                keymap[d.secret_key] = d.property
        if refusal is None and es.extract_keys:
            target = secrets.get((es.namespace, es.target))
            if target is None:
                refusal = ("dataFrom.extract: its keys are only known from the Secret it writes, which is not in "
                           "the estate (read the cluster, or add that Secret's manifest)")
            else:
                bad = [k for k in target.keys if not is_secret_key(k)]
                if bad:
                    refusal = f"key {bad[0]!r} is not a valid Secret key name"
                keymap.update({k: k for k in target.keys if k not in keymap})
        if refusal is None and not keymap:
            refusal = "reads no key"
        if refusal is not None:
            w.refuse("ExternalSecret", es.namespace, es.name, refusal, where)
            continue
        store = stores[_store_key(es)]
        mount, path = vault_location(es, store) or ("", "")
        if not mount or not path:
            w.refuse("ExternalSecret", es.namespace, es.name, "no Vault path (empty remoteRef.key)", where)
            continue
        if mount in s.internal_mounts:
            w.refuse("ExternalSecret", es.namespace, es.name,
                     f"reads {mount}, chamberlain's mount of published (derived/config) secrets: declare the "
                     "producer's intent (source.publication) instead", where)
            continue
        groups[f"{mount}/{path}"].append((es, keymap))
    for full, members in sorted(groups.items()):
        _map_es_group(w, full, members)


def _es_refusal(es: ExternalSecretObj, store: StoreObj | None) -> str | None:
    if es.unsupported:
        return f"{es.unsupported[0]}: not one Vault path read key by key"
    if es.templated:
        return ("spec.target.template changes the data or the type: the Secret's values are not the authority's "
                "(a templated consumer, declared by hand)")
    if es.creation_policy != "Owner":
        return (f"creationPolicy {es.creation_policy}: the Secret has another writer (or none), so replacing "
                "this ExternalSecret could leave it without one")
    if store is None:
        return f"its {es.store_kind} {es.store_name} is not in the estate (which authority it reads is a guess)"
    if store.provider != "vault":
        return f"its {store.kind} {store.name} uses provider {store.provider or 'none'}, not Vault"
    if store.vault_version != "v2":
        return f"its {store.kind} {store.name} reads KV {store.vault_version}, not v2"
    if vault_location(es, store) is None:
        return "reads several Vault paths into one Secret: split it, or declare a templated consumer by hand"
    return None


def _map_es_group(w: _Work, full: str, members: list[tuple[ExternalSecretObj, dict[str, str]]]) -> None:
    s = w.settings
    mount, _, path = full.partition("/")
    segments = path.split("/")
    shaped = mount == s.runtime_mount and len(segments) == 3 and all(is_dns_label(x) for x in segments)
    # with a tenancy, <env>/<x>/<name> is only the convention when x is a declared owner (else: copied)
    conventional = shaped and segments[0] == s.environment and (not s.owners or segments[1] in s.owners)
    first = members[0][0]

    def refuse_all(reason: str, rule: str = RULE_UNMAPPED) -> None:
        for es, _ in members:
            w.refuse("ExternalSecret", es.namespace, es.name, reason, es.origin.where, rule)

    keys = tuple(sorted({v for _, keymap in members for v in keymap.values()}))
    if shaped and segments[0] in s.other_environments:
        refuse_all(f"reads {full}, a path of environment {segments[0]}: adopt one environment per run "
                   f"(-e {segments[0]})")
        return
    if conventional:
        _, owner, name = segments
        owner_from = f"the path {full}"
        notes: list[str] = []
    else:
        name = first.target
        if not is_dns_label(name):
            refuse_all(f"Secret name {name!r} is not a DNS-1123 label (an intent name is one Vault path segment)")
            return
        found, owner_from = owner_of(s, first.namespace, [(_ref("ExternalSecret", first.namespace, first.name),
                                                           first.labels)], _ns_labels(w, first.namespace))
        if found is None:
            refuse_all(owner_from)
            return
        owner = found
        notes = [f"reads {full}, outside the path convention: the value is copied to the conventional path "
                 "(the old path stays until cleanup)"]
    source = next(((es.namespace, es.target) for es, keymap in members
                   if set(keymap.values()) == set(keys) and all(k == v for k, v in keymap.items())), None)
    if source is None:
        refuse_all(f"no Secret written from {full} holds every key ({', '.join(keys)}) under its Vault name: the "
                   "one-time import needs one that does")
        return
    consumers = tuple(_consumer(w, es.namespace, es.target, keymap, ("ExternalSecret", es.namespace, es.name))
                      for es, keymap in members)
    adopted = Adopted(name, owner, owner_from, "external-secret", keys, f"{s.runtime_mount}/{s.environment}/"
                      f"{owner}/{name}", None if conventional else full, source, consumers, tuple(notes))
    w.sources[adopted.import_from] = [("ExternalSecret", es.namespace, es.name, es.origin.where) for es, _ in members]
    w.candidates.append(adopted)


def _map_plain_secrets(w: _Work, writers: Mapping[tuple[str, str], list[tuple[str, str]]]) -> None:
    s = w.settings
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for secret in w.estate.secrets:
        seen[(secret.namespace, secret.name)].append(secret.origin.where)
    for secret in sorted(w.estate.secrets, key=lambda x: (x.namespace, x.name)):
        ns, name, where = secret.namespace, secret.name, secret.origin.where
        if (ns, name) in writers:
            continue  # an ExternalSecret's or SealedSecret's Secret: mapped (or refused) with its writer
        if len(seen[(ns, name)]) > 1:
            # two manifests of one Secret (a base and an overlay, an export and a repository): which one the
            # cluster holds is a guess
            w.refuse("Secret", ns, name, f"declared {len(seen[(ns, name)])} times ({', '.join(seen[(ns, name)])}): "
                                         "which one the cluster holds is a guess; read the cluster, or keep one",
                     where)
            continue
        owner_kinds = {k for k, _ in secret.owners}
        if owner_kinds & {"ExternalSecret", "SealedSecret"}:
            continue
        skip = _skip_reason(secret)
        if skip is not None:
            w.skipped.append(Skipped("Secret", ns, name, skip))
            continue
        refusal = _secret_refusal(secret)
        owner, owner_from = (None, "")
        if refusal is None:
            owner, owner_from = owner_of(s, ns, [(_ref("Secret", ns, name), secret.labels)], _ns_labels(w, ns))
            if owner is None:
                refusal = owner_from
        if refusal is not None or owner is None:
            w.refuse("Secret", ns, name, refusal or "no owner", where)
            continue
        consumer = _consumer(w, ns, name, {k: k for k in secret.keys}, ("Secret", ns, name))
        adopted = Adopted(name, owner, owner_from, "secret", secret.keys,
                          f"{s.runtime_mount}/{s.environment}/{owner}/{name}", None, (ns, name), (consumer,))
        w.sources[adopted.import_from] = [("Secret", ns, name, where)]
        w.candidates.append(adopted)


def _skip_reason(secret: SecretObj) -> str | None:
    if secret.type in SKIPPED_TYPES:
        return f"type {secret.type}: {SKIPPED_TYPES[secret.type]}"
    if CERT_MANAGER_CERTIFICATE in secret.annotations:
        return "issued and renewed by cert-manager (Certificate " + secret.annotations[CERT_MANAGER_CERTIFICATE] + ")"
    if _managed(secret.labels):
        return "already materialized by chamberlain"
    return None


def _secret_refusal(secret: SecretObj) -> str | None:
    if secret.type != "Opaque":
        return (f"type {secret.type}: chamberlain's consumer Secrets are Opaque, and this type must be kept "
                "(imagePullSecrets, Ingress TLS, ...); keep it out of adoption or declare it by hand")
    others = sorted({f"{k} {n}" for k, n in secret.owners})
    if others:
        return (f"written by its owner {', '.join(others)} (a controller): publish it through the authority "
                "(source.publication) instead")
    return _name_refusal(secret.namespace, secret.name, secret.keys)


def _name_refusal(namespace: str, name: str, keys: tuple[str, ...]) -> str | None:
    if not is_dns_label(namespace):
        return f"namespace {namespace!r} is not a DNS-1123 label"
    if not is_dns_label(name):
        return f"name {name!r} is not a DNS-1123 label (an intent name is one Vault path segment)"
    if not keys:
        return "holds no key"
    bad = [k for k in keys if not is_secret_key(k)]
    if bad:
        return f"key {bad[0]!r} is not a valid Secret key name"
    return None


def _map_sealed_secrets(w: _Work, conflicted: set[tuple[str, str]]) -> None:
    s = w.settings
    secrets = w.secret_index
    for ss in sorted(w.estate.sealed_secrets, key=lambda x: (x.namespace, x.name)):
        ns, name, where = ss.namespace, ss.name, ss.origin.where
        if (ns, name) in conflicted:
            continue
        unsealed = secrets.get((ns, name))
        refusal = _sealed_refusal(ss, unsealed)
        owner: str | None = None
        owner_from = ""
        if refusal is None:
            chain = [(_ref("SealedSecret", ns, name), ss.labels)]
            if unsealed is not None:
                chain.append((_ref("Secret", ns, name), unsealed.labels))
            owner, owner_from = owner_of(s, ns, chain, _ns_labels(w, ns))
            if owner is None:
                refusal = owner_from
        if refusal is not None or owner is None:
            w.refuse("SealedSecret", ns, name, refusal or "no owner", where)
            continue
        keys = unsealed.keys if unsealed is not None else ss.keys
        consumer = _consumer(w, ns, name, {k: k for k in keys}, ("SealedSecret", ns, name))
        adopted = Adopted(name, owner, owner_from, "sealed-secret", keys,
                          f"{s.runtime_mount}/{s.environment}/{owner}/{name}", None, (ns, name), (consumer,))
        w.sources[adopted.import_from] = [("SealedSecret", ns, name, where)]
        w.candidates.append(adopted)


def _sealed_refusal(ss: SealedSecretObj, unsealed: SecretObj | None) -> str | None:
    opened = unsealed is not None and any(k == "SealedSecret" for k, _ in unsealed.owners)
    if ss.synced is False:
        return "its controller could not unseal it (condition Synced=False): the value may not exist"
    if not opened and ss.synced is not True:
        return ("controller key unknown: no Synced condition and no unsealed Secret owned by it in the estate, so "
                "nothing shows the controller holds the key it was sealed to (read the cluster, or export it with "
                "its status)")
    if ss.type != "Opaque":
        return f"template type {ss.type}: chamberlain's consumer Secrets are Opaque, and this type must be kept"
    return _name_refusal(ss.namespace, ss.name, unsealed.keys if unsealed is not None else ss.keys)


def _consumer(w: _Work, namespace: str, secret_name: str, keys: Mapping[str, str],
              writer: tuple[str, str, str]) -> Consumer:
    """The consumer Secret with its restarts: a workload Reloader restarted on a change of this Secret is
    restarted by chamberlain; one that only reads it stays as it was (it restarts with its next rollout)."""
    secret = w.secret_index.get((namespace, secret_name))
    match = secret is not None and secret.annotations.get(RELOADER_MATCH) == "true"
    restart: list[Workload] = []
    readers: list[Workload] = []
    reloader: list[ReloaderUse] = []
    for wl in w.workloads_of.get((namespace, secret_name), []):
        ref = Workload(wl.kind, wl.namespace, wl.name)
        uses = any(u.secret == secret_name for u in wl.uses)
        by = _reloaded_by(wl, secret_name, uses=uses, match=match)
        if by is not None:
            restart.append(ref)
            reloader.append(ReloaderUse(ref, by, wl.annotations.get(by, "")))
        elif uses:
            readers.append(ref)
    return Consumer(namespace, secret_name, dict(sorted(keys.items())), tuple(restart), tuple(readers),
                    tuple(reloader), writer)


def _reloaded_by(wl: WorkloadObj, secret: str, *, uses: bool, match: bool) -> str | None:
    """The Reloader annotation of ``wl`` that restarts it when ``secret`` changes, or None."""
    a = wl.annotations
    if secret in _split(a.get(RELOADER_SECRET_RELOAD)):
        return RELOADER_SECRET_RELOAD
    if uses and a.get(RELOADER_AUTO) == "true":
        return RELOADER_AUTO
    if uses and a.get(RELOADER_SECRET_AUTO) == "true":
        return RELOADER_SECRET_AUTO
    if uses and match and a.get(RELOADER_SEARCH) == "true":
        return RELOADER_SEARCH
    return None


def _resolve_names(w: _Work) -> list[Adopted]:
    """Intent names are unique per repository. A path-named intent keeps its name; the others that collide are
    qualified with their namespace (``<namespace>-<name>``), and refused when even that collides."""
    s = w.settings
    by_name: dict[str, list[Adopted]] = defaultdict(list)
    for a in w.candidates:
        by_name[a.intent].append(a)
    out: list[Adopted] = []
    for name, group in sorted(by_name.items()):
        if len(group) == 1:
            out.append(group[0])
            continue
        fixed = [a for a in group if a.origin == "external-secret" and a.copied_from is None]
        out.extend(fixed[:1])
        for a in [*fixed[1:], *(a for a in group if a not in fixed)]:
            qualified = f"{a.import_from[0]}-{name}"
            if a in fixed[1:] or not is_dns_label(qualified) or qualified in by_name:
                _refuse_sources(w, a, f"intent name {name} is taken by another secret of the estate, and "
                                      f"{qualified!r} is no free DNS-1123 label either: name it by hand")
                continue
            by_name[qualified] = [a]
            out.append(replace(a, intent=qualified, path=f"{s.runtime_mount}/{s.environment}/{a.owner}/{qualified}",
                               notes=(*a.notes, f"named {qualified}: {name} is taken by another secret")))
    return out


def _check_markers(w: _Work, adopted: list[Adopted]) -> list[Adopted]:
    """A Secret someone already marked for another intent (``chamberlain.dev/adopt``) is theirs to import."""
    out: list[Adopted] = []
    for a in adopted:
        source = w.secret_index.get(a.import_from)
        marker = source.annotations.get(ADOPT_MARKER) if source is not None else None
        if marker and marker != a.intent:
            _refuse_sources(w, a, f"Secret {a.import_from[0]}/{a.import_from[1]} is already marked for intent "
                                  f"{marker} ({ADOPT_MARKER}): one Secret, one importing intent")
            continue
        out.append(a)
    return out


def _refuse_sources(w: _Work, a: Adopted, reason: str, rule: str = RULE_UNMAPPED) -> None:
    for kind, ns, name, where in w.sources.get(a.import_from, []):
        w.refuse(kind, ns, name, reason, where, rule)


def _check_authority(w: _Work, adopted: list[Adopted]) -> list[Adopted]:
    """With the authority's metadata: an ExternalSecret's path must exist (not deleted), and no path may already
    be recorded for another intent (nor, for a copy or an import, hold a value at all)."""
    view = w.view
    if view is None:
        return adopted
    out: list[Adopted] = []
    for a in adopted:
        reason: str | None = None
        read = a.copied_from or (a.path if a.origin == "external-secret" else None)
        if read is not None:
            meta = view.paths.get(read)
            if meta is None:
                reason = f"reads {read}, which the authority does not hold: its Secret is stale or failing"
            elif meta.deleted:
                reason = f"reads {read}, whose current version is deleted in the authority"
            elif meta.intent and meta.intent != a.intent:
                reason = f"{read} is recorded for intent {meta.intent}, not {a.intent}"
        if reason is None and read != a.path:
            meta = view.paths.get(a.path)
            if meta is not None and not meta.deleted:
                reason = (f"the authority already holds a value at {a.path} (recorded for "
                          f"{meta.intent or 'nobody'}): importing over it would replace a value")
        if reason is not None:
            _refuse_sources(w, a, reason, RULE_AUTHORITY)
            continue
        out.append(a)
    return out


def _stores_in_use(w: _Work, adopted: list[Adopted]) -> tuple[tuple[str, str, str], ...]:
    """The Vault stores whose every ExternalSecret is adopted: removed at cleanup, once nothing reads them."""
    taken = {(c.writer[1], c.writer[2]) for a in adopted for c in a.consumers if c.writer[0] == "ExternalSecret"}
    by_store: dict[tuple[str, str | None, str], list[bool]] = defaultdict(list)
    for es in w.estate.external_secrets:
        by_store[_store_key(es)].append((es.namespace, es.name) in taken)
    return tuple(sorted((kind, ns or "", name) for (kind, ns, name), flags in by_store.items()
                        if flags and all(flags) and kind in ("SecretStore", "ClusterSecretStore")
                        and any(s.provider == "vault" and (s.kind, s.namespace, s.name) == (kind, ns, name)
                                for s in w.estate.stores)))


# --------------------------------------------------------------------------------------------------- intents


def intent_document(a: Adopted, settings: Settings) -> dict[str, object]:
    """The SecretIntent of ``a`` (SPEC §9, with the ``source.existingSecret`` extension)."""
    what = {"external-secret": "an ExternalSecret", "secret": "a plain Secret",
            "sealed-secret": "a SealedSecret"}[a.origin]
    ns, secret = a.import_from
    consumers: list[dict[str, object]] = []
    for c in a.consumers:
        entry: dict[str, object] = {"namespace": c.namespace, "secretName": c.secret_name, "keys": dict(c.keys)}
        if c.restart:
            entry["restart"] = [{"kind": r.kind, "name": r.name} for r in c.restart]
        consumers.append(entry)
    return {
        "apiVersion": API_VERSION,
        "kind": "SecretIntent",
        "metadata": {"name": a.intent},
        "spec": {
            "owner": a.owner,
            "purpose": f"Adopted from {what} ({ns}/{secret}); describe what it is for",
            "classification": "runtime",
            "environments": [settings.environment],
            "source": {"existingSecret": {"namespace": ns, "secretName": secret, "keys": list(a.keys)}},
            # an imported value is never regenerated (CH122); switch to `generate` once imported to rotate it
            "rotation": {"type": "static"},
            "consumers": consumers,
        },
    }


__all__ = [
    "DEFAULT_OWNER_LABELS",
    "RULE_AUTHORITY",
    "RULE_UNMAPPED",
    "Adopted",
    "Adoption",
    "AuthorityView",
    "Consumer",
    "PathMeta",
    "ReloaderUse",
    "Settings",
    "Skipped",
    "Unmapped",
    "Workload",
    "adopt",
    "intent_document",
    "owner_of",
    "vault_location",
    "vault_paths",
]
