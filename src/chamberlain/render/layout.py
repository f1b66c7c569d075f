"""Where each rendered object goes: the directory layout, kustomizations and the intents as custom resources.

Belongs here: placing manifests into files (one Argo CD application per environment and cluster), listing them in
``kustomization.yaml`` files in a stable order, and refusing output in which two files would define one object.
Pure: returns ``{relative path: text}``; writing is :func:`chamberlain.render.write_tree`'s job.

Layout::

    crds/                          the CRDs: three intent kinds and RotationRun (+ kustomization.yaml)
    clusters/<cluster>/            cluster-wide objects, applied once per cluster (the CRDs apart):
        namespaces.yaml            every namespace chamberlain renders into (controller, consumers, producers)
        controller.yaml            the controller's installation (:mod:`.install`): its ServiceAccount (the one
                                   the authority's orchestrator role is bound to), least-privilege Roles and
                                   bindings (controller namespace, each Lease, each consumer namespace by name),
                                   and per environment a Deployment, Service, PodDisruptionBudget, NetworkPolicy
        admission/                 the ValidatingAdmissionPolicy (+ binding) that lets only the GitOps identity
                                   write chamberlain's resources: opt-in, not in the kustomization below
        monitoring/                ServiceMonitors, the PrometheusRule and the Grafana dashboard's ConfigMap:
                                   opt-in (they need the Prometheus Operator's CRDs), not in the kustomization
        chart-values.json          the Helm chart's values for this cluster: `helm template` of
                                   deploy/helm/chamberlain with them yields exactly controller.yaml, admission/
                                   and monitoring/
        platform.yaml              the Platform and the RotationPolicies, in the controller namespace
        intents/<owner>.yaml       the SecretIntents present on this cluster, grouped by owning team
    envs/<env>/<cluster>/          the Argo CD application of one environment on one cluster:
        kustomization.yaml         ../../../crds and ../../../clusters/<cluster> (base owner only, see below) +
                                   namespaces/*.yaml
        namespaces/<ns>.yaml       ServiceAccounts, SecretStores, PushSecrets, ExternalSecrets of that namespace
        namespaces/kustomization.yaml  those files alone: Flux's path for the environment
        ksops-bootstrap.yaml       KSOPS generator of the bootstrap Secrets this application carries (wave 1)
        bootstrap/                 those Secrets' SOPS files, byte for byte (see :mod:`.bootstrap`)
    flux/<cluster>/                Flux Kustomizations that apply all of the above in order (see :mod:`.flux`)
    vault/                         the Vault configuration bundle (see :mod:`.vault_bundle`)

A cluster can host several environments (acme's ``preview`` lives on ``dev1``). Cluster-wide objects would then
be claimed by two applications that fight over them, so exactly one environment per cluster — the first
non-ephemeral one — includes ``clusters/<cluster>``; everything under ``envs/`` carries the environment in its
name. Namespaces and CRDs are never pruned or deleted by Argo CD (``Prune=false,Delete=false``): removing them
would delete workloads or every intent.

Sync waves (``argocd.argoproj.io/sync-wave``, lower first, each wave healthy before the next):
0 CRDs and Namespaces → 1 ServiceAccounts, the controller's Roles and RoleBindings → 2 Platform, RotationPolicies,
SecretIntents (the orchestrator can now generate runtime values in Vault) → 3 SecretStores → 4 PushSecrets and
ExternalSecrets. Intents come before the ESO objects on purpose: an ExternalSecret is unhealthy until its value
exists in Vault, and it is the orchestrator, reading the intents, that creates it. The controller's Deployment
(with its Service, budget and policies) is in wave 4 too: it cannot log in before the authority is configured,
and nothing waits for it. Waves order one application; the base owner's application must sync before other
environments' applications on the same cluster (an app-of-apps wave, or just order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from chamberlain import wellknown as wk
from chamberlain.intent.model import Platform, RotationPolicy, SecretIntent
from chamberlain.intent.paths import VaultPath
from chamberlain.render import bootstrap as boot
from chamberlain.render import eso, flux, install, naming
from chamberlain.render.crds import crd, crd_file_name, crd_kinds
from chamberlain.render.forked import Forked
from chamberlain.render.topology import (
    PieceName,
    RenderError,
    Topology,
    cluster_piece,
    derived_key,
    namespace_piece,
    owner_piece,
)
from chamberlain.render.vault_bundle import bundle
from chamberlain.render.yamlio import dump_json, dump_yaml, dump_yaml_documents, join_documents

Manifest = dict[str, Any]
T = TypeVar("T")
CHART_VALUES = "chart-values.json"
VAULT_DIR = "vault"  # the Vault bundle (:mod:`.vault_bundle`)
CRDS_PIECE: PieceName = ("crds",)
CLUSTER_PIECE_FILES = (CHART_VALUES, "namespaces.yaml", "controller.yaml", "admission/admission.yaml",
                       "admission/kustomization.yaml", "monitoring/monitoring.yaml", "monitoring/kustomization.yaml")
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


def kustomization(resources: Iterable[str], extra: Mapping[str, Any] | None = None) -> str:
    return dump_yaml({"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": list(resources),
                      **(extra or {})})


def intent_manifest(obj: Platform | RotationPolicy | SecretIntent, namespace: str) -> Manifest:
    """An intent object as the custom resource the controller reads: as written (unset fields stay unset), in
    the controller namespace, with chamberlain's labels and wave."""
    doc: Manifest = obj.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")
    meta = obj.metadata
    labels = naming.intent_labels(obj) if isinstance(obj, SecretIntent) else naming.common_labels()
    doc["metadata"] = {
        "name": meta.name,
        "namespace": namespace,
        "labels": {**meta.labels, **labels},
        # Marked as rendered, so `validate` of a repository that holds this output never reads it as intent.
        "annotations": {**meta.annotations, **naming.wave(naming.WAVE_INTENT, {wk.ANNOTATION_RENDERED: "true"})},
    }
    return doc


Claim = tuple[tuple[str, str, str, str, str], str]  # (cluster, group, kind, namespace, name), the file


class _Claims:
    """Each (cluster, kind, namespace, name) is defined once, or rendering fails: two definitions of one object
    would make two intents (or two Argo CD applications) the authority of one thing. Claims are recorded as the
    files are built and checked by :func:`_assemble`, in the order the parts of the build run one after another,
    so the first duplicate reported is the same whether or not a child process built a part."""

    def __init__(self) -> None:
        self.records: list[Claim] = []

    def claim(self, cluster: str, manifests: Iterable[Manifest], where: str) -> None:
        for m in manifests:
            meta = m["metadata"]
            self.claim_one(cluster, str(m["apiVersion"]).rpartition("/")[0], str(m["kind"]),
                           str(meta.get("namespace", "")), str(meta["name"]), where)

    def claim_one(self, cluster: str, group: str, kind: str, namespace: str, name: str, where: str) -> None:
        self.records.append(((cluster, group, kind, namespace, name), where))


def _check_claims(records: Iterable[Claim], seen: dict[tuple[str, str, str, str, str], str]) -> None:
    for key, where in records:
        other = seen.get(key)
        if other is not None:
            cluster, _group, kind, namespace, name = key
            raise RenderError(
                f"{kind} {namespace}/{name} on cluster {cluster} would be defined twice "
                f"({other} and {where}); two intents or two environments claim the same object"
            )
        seen[key] = where


ClaimKey = tuple[str, str, str, str, str]


@dataclass
class Piece:
    """Files of the render that depend on a few inputs only, so a later render can keep them when those inputs
    and the files on disk are unchanged (:mod:`chamberlain.render.incremental`): one namespace of one application
    (its ESO objects, and its Vault reader and publisher policies and roles), one owner's intents on one cluster,
    one cluster's namespaces and controller installation, or the CRDs. ``claims``: the objects its files define;
    ``stores``: the SecretStores among them (Flux waits for them)."""

    paths: list[str] = field(default_factory=list)
    claims: list[ClaimKey] = field(default_factory=list)
    stores: list[flux.Store] = field(default_factory=list)
    key: str = ""  # a key the build derived (a cluster's installation, the CRDs), else "": keyed by its inputs


Pieces = dict[PieceName, Piece]


def _nothing_kept(_name: PieceName, _key: str) -> Piece | None:
    return None


@dataclass(frozen=True)
class Reuse:
    """What an incremental render keeps (:mod:`chamberlain.render.incremental`): ``pieces``, decided before the
    build from their inputs; ``derived(name, key)``, the kept piece for a key only the build can derive (a
    cluster's installation is a function of its chart values), or None to build it. Kept pieces' files are not
    built, and their claims are not checked here."""

    pieces: Pieces = field(default_factory=dict)
    derived: Callable[[PieceName, str], Piece | None] = _nothing_kept


_BUILD_ALL = Reuse()


@dataclass
class _Part:
    """What one part of the build made: its files, its claims (up to the error, when it failed), the pieces its
    files belong to, and its error."""

    files: dict[str, str] = field(default_factory=dict)
    claims: _Claims = field(default_factory=_Claims)
    pieces: Pieces = field(default_factory=dict)
    error: Exception | None = None


def _part(build: Callable[[_Part], object]) -> _Part:
    part = _Part()
    try:
        build(part)
    except Exception as exc:  # raised by _assemble, after the claims made before it (as when run in sequence)
        part.error = exc
    return part


@dataclass(frozen=True)
class Built:
    """Every file built, the pieces they belong to, and every object claimed (the file claiming it)."""

    files: dict[str, str]
    pieces: Pieces
    claims: dict[ClaimKey, str]


def _assemble(parts: Iterable[_Part]) -> Built:
    """The parts' files, in the order they would run one after another; raises the first error that order meets
    (a duplicate claim, or a part's own error)."""
    seen: dict[ClaimKey, str] = {}
    files: dict[str, str] = {}
    pieces: Pieces = {}
    for part in parts:
        _check_claims(part.claims.records, seen)
        if part.error is not None:
            raise part.error
        files.update(part.files)
        for name, piece in part.pieces.items():  # a namespace's piece: ESO files here, Vault files in another part
            mine = pieces.setdefault(name, Piece())
            mine.paths += piece.paths
            mine.claims += piece.claims
            mine.stores += piece.stores
            mine.key = mine.key or piece.key
    return Built(files, pieces, seen)


def _crd_files(part: _Part, reuse: Reuse) -> None:
    """The CRDs: a piece of their own, whose files depend on chamberlain's source alone (which every record's
    location names already: :mod:`.incremental`)."""
    name, key = CRDS_PIECE, derived_key(["crds"])
    if reuse.derived(name, key) is not None:
        return
    keep = naming.wave(naming.WAVE_FOUNDATION, naming.keep())
    crd_files = []
    for kind in crd_kinds():
        file = crd_file_name(kind)
        part.files[f"crds/{file}"] = dump_yaml(crd(kind, labels=naming.common_labels(), annotations=keep))
        crd_files.append(file)
    part.files["crds/kustomization.yaml"] = kustomization(crd_files)
    part.pieces[name] = Piece(sorted(part.files), key=key)


def _cluster_files(part: _Part, topo: Topology, layer: boot.BootstrapLayer, reuse: Reuse) -> None:
    """Per cluster: namespaces, the controller's identity, the Platform and policies, the intents by owner. Each
    owner's file is a piece, and so are the namespaces and the controller's installation (keyed by what they are
    made from); ``reuse`` says which are kept."""
    files, claims = part.files, part.claims
    platform = topo.platform
    controller_ns = naming.controller_namespace(platform)
    # Intents are dumped once and reused on every cluster they appear on.
    platform_text = dump_yaml_documents(
        [intent_manifest(platform, controller_ns)] + [intent_manifest(p, controller_ns) for p in topo.policies]
    )
    intent_texts: dict[str, str] = {}
    groups, dashboard = install.alert_groups(), install.dashboard_text()
    for cluster in topo.clusters:
        base = f"clusters/{cluster}"
        plain = set(topo.namespaces(cluster))
        all_namespaces = sorted(plain | layer.namespaces(cluster))
        # The controller's installation: the same objects as the Helm chart with these values (one source,
        # chamberlain.render.install). Admission and monitoring are optional parts outside the kustomization.
        access = install.cluster_access(topo, cluster)
        name = cluster_piece(cluster)
        key = derived_key([f"cluster {cluster} {controller_ns} {naming.controller_service_account(platform)}",
                           *(f"environment {e}" for e in topo.cluster_environments[cluster]), *access.lines(),
                           *(f"namespace {ns} {ns in plain}" for ns in all_namespaces)])
        if reuse.derived(name, key) is None:
            piece = part.pieces[name] = Piece(key=key)
            values = install.cluster_values(topo, cluster, access)
            files[f"{base}/{CHART_VALUES}"] = dump_json(values)
            namespaces = [eso.namespace(ns) if ns in plain else boot.mark_bootstrap_namespace(eso.namespace(ns))
                          for ns in all_namespaces]
            files[f"{base}/namespaces.yaml"] = dump_yaml_documents(namespaces)
            parts = install.install_objects(values, groups, dashboard)
            for file, objects in ((f"{base}/controller.yaml", parts["controller"]),
                                  (f"{base}/admission/admission.yaml", parts["admission"]),
                                  (f"{base}/monitoring/monitoring.yaml", parts["monitoring"])):
                before = len(claims.records)
                claims.claim(cluster, objects, file)
                piece.claims += [claim for claim, _ in claims.records[before:]]
                files[file] = dump_yaml_documents(objects)
            for optional in ("admission", "monitoring"):
                files[f"{base}/{optional}/kustomization.yaml"] = kustomization([f"{optional}.yaml"])
            piece.paths += [f"{base}/{rel}" for rel in CLUSTER_PIECE_FILES]
        files[f"{base}/platform.yaml"] = platform_text
        by_owner: dict[str, list[SecretIntent]] = {}
        for intent in topo.cluster_intents[cluster]:
            by_owner.setdefault(intent.spec.owner, []).append(intent)
        for owner, intents in by_owner.items():
            name = owner_piece(cluster, owner)
            if name in reuse.pieces:
                continue
            texts = []
            for intent in intents:
                text = intent_texts.get(intent.metadata.name)
                if text is None:
                    text = intent_texts[intent.metadata.name] = dump_yaml(intent_manifest(intent, controller_ns))
                texts.append(text)
            path = f"{base}/intents/{owner}.yaml"
            files[path] = join_documents(texts)
            part.pieces[name] = Piece([path])
        # The CRDs are a layer of their own (Flux: chamberlain-crds, which this one depends on); the Argo CD
        # application of the base owner lists them beside this directory.
        files[f"{base}/kustomization.yaml"] = kustomization(
            ["namespaces.yaml", "controller.yaml", "platform.yaml"]
            + [f"intents/{owner}.yaml" for owner in sorted(by_owner)]
        )


def _environment_files(part: _Part, topo: Topology, layer: boot.BootstrapLayer,
                       reuse: Reuse) -> dict[tuple[str, str], list[flux.Store]]:
    """Per environment and cluster: each namespace's ESO objects and identities (also listed on their own in
    ``namespaces/kustomization.yaml``, Flux's path; each namespace a piece, taken from ``reuse`` when it has it),
    and the bootstrap layer. Returns each application's SecretStores, which its Flux Kustomization waits for."""
    files, claims = part.files, part.claims
    stores: dict[tuple[str, str], list[flux.Store]] = {}
    # An ExternalSecret names no cluster: a plain consumer's is the same text on every cluster of its environment
    # that reads the same Vault path, so it is built and dumped once (the largest share of rendering).
    external_secrets: dict[tuple[str, int, VaultPath], str] = {}
    for unit in topo.units:
        env, cluster = unit.environment, unit.cluster
        root = f"envs/{env}/{cluster}"
        base = topo.base_owner(cluster) == env
        resources = ["../../../crds", f"../../../clusters/{cluster}"] if base else []
        for ns in unit.namespaces:
            path = f"namespaces/{ns}.yaml"
            resources.append(path)
            name = namespace_piece(env, cluster, ns)
            reused = reuse.pieces.get(name)
            if reused is not None:  # its claims are checked by the incremental render, against what is built
                stores.setdefault((env, cluster), []).extend(reused.stores)
                continue
            piece = part.pieces[name] = Piece([f"{root}/{path}"])
            docs = eso.publisher_documents(topo.platform, env, cluster, ns, unit.publishes.get(ns, []))
            reads = eso.sorted_reads(unit.reads[ns]) if ns in unit.reads else []
            if ns in unit.reads:
                docs += map(eso.document, eso.reader_identity(topo.platform, env, cluster, ns, unit.reads[ns]))
            # Identities first, then stores, then the objects that use them (the ExternalSecrets, last): easy to
            # read top to bottom.
            docs.sort(key=lambda d: _KIND_ORDER.get(d.kind, 99))
            piece.claims += [(cluster, d.api_version.rpartition("/")[0], d.kind, d.namespace, d.name) for d in docs]
            texts = [d.text for d in docs]
            for read in reads:
                consumer = read.consumer
                piece.claims.append((cluster, eso.ESO_GROUP, "ExternalSecret", consumer.namespace,
                                     consumer.secret_name))
                key = (env, id(consumer), read.vault)
                text = None if read.parts else external_secrets.get(key)
                if text is None:
                    text = eso.external_secret_text(read, env)
                    if text is None:
                        text = dump_yaml(eso.external_secret(read, env, version_marker=True))
                    if not read.parts:
                        external_secrets[key] = text
                texts.append(text)
            for claim in piece.claims:
                claims.claim_one(*claim, f"{root}/{path}")
            files[f"{root}/{path}"] = join_documents(texts)
            piece.stores += [flux.Store(d.api_version, ns, d.name) for d in docs if d.kind == "SecretStore"]
            stores.setdefault((env, cluster), []).extend(piece.stores)
        if unit.namespaces:
            files[f"{root}/namespaces/kustomization.yaml"] = kustomization([f"{ns}.yaml" for ns in unit.namespaces])
            stores.setdefault((env, cluster), [])
        carried = layer.files_of(env, cluster)
        claims.claim(cluster, [boot.secret_identity(f) for f in carried], f"{root}/{boot.KSOPS_GENERATOR}")
        emptied = (env, cluster) in layer.emptied
        files.update({f"{root}/{rel}": text for rel, text in boot.app_files(carried, emptied=emptied).items()})
        files[f"{root}/kustomization.yaml"] = kustomization(resources, boot.kustomization_fields(carried))
    return stores


def _environments_and_flux(part: _Part, topo: Topology, layer: boot.BootstrapLayer, reuse: Reuse) -> None:
    stores = _environment_files(part, topo, layer, reuse)
    carrying = {key for key, carried in layer.apps.items() if carried} | layer.emptied
    part.files.update(flux.flux_files(topo, stores, carrying))


ChildShare = tuple[_Part, _Part]  # the clusters' files and the Vault bundle


def child_share(topo: Topology, layer: boot.BootstrapLayer, reuse: Reuse = _BUILD_ALL) -> ChildShare:
    """The share of the build a forked child can make: the clusters' files and the Vault bundle (each part keeps
    its own error, raised when the parts are assembled). ``layer``: ``boot.assign(topo, bootstrap)``; ``reuse``:
    the pieces not to build (an incremental render keeps their files)."""
    return (_part(lambda part: _cluster_files(part, topo, layer, reuse)),
            _part(lambda part: _vault_files(part, topo, reuse)))


def _vault_files(part: _Part, topo: Topology, reuse: Reuse) -> None:
    bundle_pieces: dict[PieceName, list[str]] = {}
    part.files.update({f"{VAULT_DIR}/{rel}": text
                       for rel, text in bundle(topo, reuse.pieces, bundle_pieces).items()})
    for name, paths in bundle_pieces.items():
        part.pieces[name] = Piece([f"{VAULT_DIR}/{rel}" for rel in paths])


class ShareHelper(Protocol):
    """A child building the :func:`child_share` (a :class:`~chamberlain.render.forked.Forked` one)."""

    def result(self) -> ChildShare: ...

    def close(self) -> None: ...


def fork_child_share(build: Callable[[], tuple[ChildShare, T]],
                     then: Callable[[tuple[ChildShare, T], object], tuple[ChildShare, T]] | None = None,
                     ) -> Forked[tuple[ChildShare, T]]:
    """``build`` (a :func:`child_share` and whatever else the child reports) running in a forked child from now on;
    ``then``: its step after the parent's word (:meth:`.Forked.go`). A share with a failed part is not sent back:
    the parent builds it again and meets the error first hand, traceback and all."""
    return Forked(build, send=lambda value: all(part.error is None for part in value[0]), then=then)


class _Forked:
    """:func:`fork_child_share` of :func:`child_share` alone, as a :class:`ShareHelper`."""

    def __init__(self, build: Callable[[], ChildShare]) -> None:
        self._forked = fork_child_share(lambda: (build(), None))

    def result(self) -> ChildShare:
        return self._forked.result()[0]

    def close(self) -> None:
        self._forked.close()


def build_files(topo: Topology, bootstrap: Iterable[boot.BootstrapFile] = (), *, fork: bool = False,
                helper: ShareHelper | None = None) -> dict[str, str]:
    """Every rendered file, keyed by its posix path relative to the output directory (see :func:`build`)."""
    return build(topo, bootstrap, fork=fork, helper=helper).files


def build(topo: Topology, bootstrap: Iterable[boot.BootstrapFile] = (), *, fork: bool = False,
          helper: ShareHelper | None = None, reuse: Reuse = _BUILD_ALL) -> Built:
    """Every rendered file, keyed by its posix path relative to the output directory, with the pieces they belong
    to and the objects they claim. ``bootstrap``: the encrypted bootstrap files, placed by
    :mod:`chamberlain.render.bootstrap`. ``fork``: build the clusters' files and the Vault bundle in a child
    process meanwhile (:mod:`.forked`; the caller checks it is safe to fork); ``helper``: a child already building
    them from the same inputs (:func:`fork_child_share`), closed here. The files are the same either way.
    ``reuse``: pieces whose files are not built (an incremental render keeps them from the disk; their claims
    are not checked here)."""
    layer = boot.assign(topo, list(bootstrap))
    if helper is None and fork:
        helper = _Forked(lambda: child_share(topo, layer, reuse))
    try:
        crds = _part(lambda part: _crd_files(part, reuse))
        environments = _part(lambda part: _environments_and_flux(part, topo, layer, reuse))
        clusters, vault = helper.result() if helper is not None else child_share(topo, layer, reuse)
    finally:
        if helper is not None:
            helper.close()
    return _assemble([crds, clusters, environments, vault])


_KIND_ORDER: Mapping[str, int] = {"ServiceAccount": 0, "SecretStore": 1, "PushSecret": 2, "ExternalSecret": 3}
