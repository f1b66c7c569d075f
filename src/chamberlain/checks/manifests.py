"""Kubernetes manifests in the intent repository that break the secret data flow (CH030, CH040, CH041).

Concept: secrets reach workloads one way only — Vault → ESO ExternalSecret → Kubernetes Secret → workload.

- ``workload-bootstrap-refs`` (CH030): a workload (Pod or anything with a pod template) that references a
  bootstrap Secret — volume, projected volume, ``secretKeyRef``, ``envFrom.secretRef``, ``imagePullSecrets`` —
  consumes scaffolding that is retired after handover (Inv. 2).
- ``mirror-annotations`` (CH040): annotations of Secret replicators/reflectors (emberstack reflector,
  kubernetes-replicator, kubed/config-syncer), ClusterSecret objects and Kyverno rules that clone Secrets copy a
  secret namespace to namespace instead of through Vault (Inv. 7).
- ``eso-kubernetes-provider`` (CH041): an ESO SecretStore/ClusterSecretStore with the ``kubernetes`` provider is
  the same copy by other means (Inv. 7).

Boundary: reads parsed documents of :attr:`Repository.manifests` (plus the chamberlain documents for CH040);
pure, no cluster access. Which Secrets are bootstrap Secrets comes from :mod:`chamberlain.checks.sops`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from chamberlain import safeyaml
from chamberlain import wellknown as wk
from chamberlain.checks.registry import check
from chamberlain.checks.sops import BootstrapSecret, bootstrap_secrets
from chamberlain.findings import Finding
from chamberlain.intent.loader import Document, Repository

Loc = tuple[int | str, ...]

# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, Loc] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _get(node: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(part, str) and isinstance(node, dict):
            node = node.get(part)
        elif isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _items(node: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, x) for i, x in enumerate(node) if isinstance(x, dict)] if isinstance(node, list) else []


# ------------------------------------------------------------------------------------------------ CH030


def secret_references(pod_spec: Mapping[str, Any]) -> Iterator[tuple[Loc, str, str]]:
    """Every Secret a pod spec names: (location relative to the pod spec, how, Secret name). Pure."""
    for i, volume in _items(pod_spec.get("volumes")):
        name = _get(volume, ("secret", "secretName"))
        if isinstance(name, str):
            yield ("volumes", i, "secret", "secretName"), "volume", name
        for j, source in _items(_get(volume, ("projected", "sources"))):
            name = _get(source, ("secret", "name"))
            if isinstance(name, str):
                yield ("volumes", i, "projected", "sources", j, "secret", "name"), "projected volume", name
    for i, pull in _items(pod_spec.get("imagePullSecrets")):
        if isinstance(pull.get("name"), str):
            yield ("imagePullSecrets", i, "name"), "imagePullSecrets", pull["name"]
    for group in CONTAINER_LISTS:
        for i, container in _items(pod_spec.get(group)):
            for j, env in _items(container.get("env")):
                name = _get(env, ("valueFrom", "secretKeyRef", "name"))
                if isinstance(name, str):
                    yield (group, i, "env", j, "valueFrom", "secretKeyRef", "name"), "env secretKeyRef", name
            for j, source in _items(container.get("envFrom")):
                name = _get(source, ("secretRef", "name"))
                if isinstance(name, str):
                    yield (group, i, "envFrom", j, "secretRef", "name"), "envFrom secretRef", name


@check("workload-bootstrap-refs")
def check_workload_bootstrap_refs(repo: Repository) -> Iterator[Finding]:
    by_name: dict[str, list[BootstrapSecret]] = {}
    for secret in bootstrap_secrets(repo):
        by_name.setdefault(secret.name, []).append(secret)
    if not by_name:
        return
    for doc in repo.manifests:
        kind = doc.kind
        if not isinstance(kind, str) or kind not in POD_SPEC_PATHS:
            continue
        path = POD_SPEC_PATHS[kind]
        pod_spec = _get(doc.data, path)
        if not isinstance(pod_spec, dict):
            continue
        namespace = doc.namespace
        for loc, how, name in secret_references(pod_spec):
            for secret in by_name.get(name, ()):
                # Unknown namespaces on either side match by name: the manifest lands wherever it is applied.
                if namespace is not None and secret.namespace is not None and namespace != secret.namespace:
                    continue
                note = ""
                if namespace is None:
                    note = " (the workload names no namespace, so it is matched by Secret name alone)"
                where = f"{secret.namespace}/{name}" if secret.namespace else name
                yield Finding(
                    doc.file, doc.line_of((*path, *loc)), "CH030",
                    f"{kind}/{doc.name or '?'} uses bootstrap Secret {where} ({how}) declared by "
                    f"SecretIntent/{secret.ref.intent.obj.name}; workloads consume the Vault-materialized Secret "
                    f"of a consumer instead{note}",
                    object=f"{kind}/{doc.name}" if doc.name else kind,
                )


# ------------------------------------------------------------------------------------------------ CH040

# Annotation prefixes of controllers that copy Secrets between namespaces.
MIRROR_ANNOTATION_PREFIXES: dict[str, str] = {
    "reflector.v1.k8s.emberstack.com/": "emberstack reflector",
    "replicator.v1.mittwald.de/": "kubernetes-replicator",
    "kubed.appscode.com/sync": "kubed/config-syncer",
    "config-syncer.appscode.com/sync": "config-syncer",
}
# Custom resources whose whole job is to copy a Secret into many namespaces.
MIRROR_KINDS: dict[str, str] = {"clustersecret.io": "ClusterSecret"}


def mirror_annotations(annotations: Any) -> Iterator[tuple[str, str]]:
    """(annotation key, tool) for every mirror annotation that is not explicitly switched off. Pure."""
    if not isinstance(annotations, dict):
        return
    for key, value in annotations.items():
        for prefix, tool in MIRROR_ANNOTATION_PREFIXES.items():
            if isinstance(key, str) and key.startswith(prefix):
                if str(value).strip().lower() != "false":  # an explicit opt-out is not a copy
                    yield key, tool
                break


def _annotation_sites(doc: Document) -> Iterator[tuple[Loc, Any]]:
    """Annotation maps of a document that end up on a Secret or on the object itself."""
    data = doc.data
    yield ("metadata", "annotations"), _get(data, ("metadata", "annotations"))
    kind = doc.kind
    api = doc.api_version or ""
    if api.startswith("external-secrets.io/") and kind in ("ExternalSecret", "ClusterExternalSecret"):
        # The Secret ESO creates carries the target template's annotations, mirroring included.
        base: Loc = ("spec", "externalSecretSpec") if kind == "ClusterExternalSecret" else ("spec",)
        yield (*base, "target", "template", "metadata", "annotations"), _get(
            data, (*base, "target", "template", "metadata", "annotations"))
    if kind == "Kustomization":
        yield ("commonAnnotations",), _get(data, ("commonAnnotations",))
        yield ("generatorOptions", "annotations"), _get(data, ("generatorOptions", "annotations"))
        for i, gen in _items(_get(data, ("secretGenerator",))):
            yield ("secretGenerator", i, "options", "annotations"), _get(gen, ("options", "annotations"))


@check("mirror-annotations", per_file=True)
def check_mirror_annotations(repo: Repository) -> Iterator[Finding]:
    for rf in repo.files:
        for doc in rf.documents:
            if not isinstance(doc.data, dict):
                continue
            label = f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind)
            # ConfigMaps hold non-sensitive configuration; copying them is not a secret leaving Vault's path.
            if doc.kind == "ConfigMap":
                continue
            for loc, found in _annotation_sites(doc):
                for key, tool in mirror_annotations(found):
                    yield Finding(
                        doc.file, doc.line_of((*loc, key)), "CH040",
                        f"{label}: annotation {key} ({tool}) copies a Secret across namespaces; publish it to "
                        f"Vault with a derived intent (PushSecret) and let each consumer pull it (ExternalSecret)",
                        object=label,
                    )
            yield from _mirror_kind(doc, label)


def _mirror_kind(doc: Document, label: str) -> Iterator[Finding]:
    api = doc.api_version or ""
    group = api.split("/", 1)[0] if "/" in api else ""
    if group in MIRROR_KINDS and MIRROR_KINDS[group] == doc.kind:
        yield Finding(
            doc.file, doc.line_of(("kind",)), "CH040",
            f"{label}: a ClusterSecret copies a Secret into many namespaces; use a derived intent (PushSecret to "
            f"Vault, ExternalSecret per consumer) instead",
            object=label,
        )
    if group == "kyverno.io" and doc.kind in ("ClusterPolicy", "Policy"):
        for i, rule in _items(_get(doc.data, ("spec", "rules"))):
            generate = rule.get("generate")
            if not isinstance(generate, dict):
                continue
            kinds = _get(generate, ("cloneList", "kinds"))
            clones_secret = (generate.get("kind") == "Secret" and isinstance(generate.get("clone"), dict)) or (
                isinstance(kinds, list) and any(str(k).split("/")[-1] == "Secret" for k in kinds))
            if clones_secret:
                yield Finding(
                    doc.file, doc.line_of(("spec", "rules", i, "generate")), "CH040",
                    f"{label}: Kyverno rule {rule.get('name', i)!s} clones a Secret into other namespaces; "
                    f"secrets traverse Vault instead (PushSecret, ExternalSecret)",
                    object=label,
                )


# ------------------------------------------------------------------------------------------------ CH041

ESO_STORE_KINDS = ("SecretStore", "ClusterSecretStore")


@check("eso-kubernetes-provider", per_file=True)
def check_eso_kubernetes_provider(repo: Repository) -> Iterator[Finding]:
    for doc in repo.manifests:
        api = doc.api_version or ""
        if not api.startswith("external-secrets.io/") or doc.kind not in ESO_STORE_KINDS:
            continue
        provider = _get(doc.data, ("spec", "provider"))
        if not isinstance(provider, dict) or "kubernetes" not in provider:
            continue
        label = f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind)
        yield Finding(
            doc.file, doc.line_of(("spec", "provider", "kubernetes")), "CH041",
            f"{label}: the ESO kubernetes provider reads Secrets from another namespace; internal secrets are "
            f"pushed to and pulled from Vault (a derived intent renders the PushSecret and ExternalSecrets)",
            object=label,
        )


# ------------------------------------------------------------------------------------------------ CH107

# chamberlain's identities at the authority: Vault roles ``chamberlain.<...>`` and ServiceAccounts ``chamberlain-*``
# (readers, publishers, the controller). Only render writes stores that use them, one namespace each.
_CHAMBERLAIN_ROLE_PREFIX = "chamberlain."
_CHAMBERLAIN_ACCOUNT_PREFIX = "chamberlain-"


def _store_identities(provider: object) -> Iterator[tuple[Loc, str]]:
    """(location, why) of every chamberlain identity a store's provider authenticates as (any provider, any auth
    method: walked generically, iteratively)."""
    stack: list[tuple[Any, Loc]] = [(provider, ("spec", "provider"))]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                at = (*where, key)
                if key == "role" and isinstance(child, str) and child.startswith(_CHAMBERLAIN_ROLE_PREFIX):
                    yield at, f"Vault role {child} is one of chamberlain's identities"
                elif key == "serviceAccountRef" and isinstance(child, dict):
                    name = child.get("name")
                    if isinstance(name, str) and name.startswith(_CHAMBERLAIN_ACCOUNT_PREFIX):
                        yield at, f"ServiceAccount {name} is one of chamberlain's identities"
                elif isinstance(child, (dict, list)):
                    stack.append((child, at))
        elif isinstance(node, list):
            stack.extend((child, (*where, i)) for i, child in enumerate(node) if isinstance(child, (dict, list)))


@check("eso-borrowed-identity", per_file=True)
def check_eso_borrowed_identity(repo: Repository) -> Iterator[Finding]:
    """CH107: a ClusterSecretStore that logs in as a chamberlain reader/publisher/controller hands that identity's
    secrets to every namespace."""
    for doc in repo.manifests:
        api = doc.api_version or ""
        # A namespaced SecretStore can only log in with a ServiceAccount of its own namespace, which is what Vault
        # binds each chamberlain role to: a hand-written copy of render's store reads nothing more. A cluster-wide
        # store serves every namespace.
        if not api.startswith("external-secrets.io/") or doc.kind != "ClusterSecretStore":
            continue
        provider = _get(doc.data, ("spec", "provider"))
        if not isinstance(provider, dict):
            continue
        label = f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind)
        for loc, why in _store_identities(provider):
            yield Finding(
                doc.file, doc.line_of(loc), "CH107",
                f"{label}: {why}; only chamberlain render writes stores that log in as its identities, each in its "
                "own namespace (a hand-written store would read another namespace's secrets)",
                object=label,
            )
            break


# ------------------------------------------------------------------------------------------------ CH074

# How the rotate annotation can be spelled in a committed file: as a key, or inside an inline patch (a strategic
# merge patch's text, or a JSON patch path with '/' escaped as '~1').
_ROTATE_SPELLINGS = (wk.ANNOTATION_ROTATE, wk.ANNOTATION_ROTATE.replace("/", "~1"))


MAX_PATCH_CHARS = 1024 * 1024  # an inline patch is a few lines; larger strings are not parsed


def _parsed_patch(text: str) -> Any:
    """The YAML an inline patch holds (every document, as a list), or None when it is not YAML."""
    if len(text) > MAX_PATCH_CHARS or safeyaml.flow_depth(text) > safeyaml.MAX_DEPTH:
        return None  # libyaml composes flow nesting recursively: never hand it a hostile depth
    try:
        return [doc for doc in safeyaml.load_all(text) if doc is not None]
    except (yaml.YAMLError, safeyaml.YamlLimitError, RecursionError, ValueError, TypeError):
        return None


def _rotate_locations(node: Any, loc: Loc) -> Iterator[Loc]:
    """Every key equal to the rotate annotation, and every string that carries it (an inline patch). Iterative, so
    a deep document cannot exhaust the stack; linear in the document's size."""
    stack: list[tuple[Any, Loc]] = [(node, loc)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if key == wk.ANNOTATION_ROTATE:
                    yield (*where, key)
                elif isinstance(child, (dict, list, str)):
                    stack.append((child, (*where, key)))
        elif isinstance(value, list):
            stack.extend((child, (*where, i)) for i, child in enumerate(value) if isinstance(child, (dict, list, str)))
        elif isinstance(value, str) and any(s in value for s in _ROTATE_SPELLINGS):
            yield where
        elif isinstance(value, str) and "\n" in value and ":" in value:
            # An inline patch is YAML text: a key spelled with escapes ("chamberlain.dev\x2frotate") only shows
            # once parsed, the way kustomize parses it.
            parsed = _parsed_patch(value)
            if parsed is not None:
                stack.append((parsed, where))


# The annotation as a key in YAML or JSON text ('key:', '"key":', "'key' :"); no nested quantifier, so linear.
_ROTATE_KEY = re.compile(re.escape(wk.ANNOTATION_ROTATE) + r"""["']?[ \t]*:""")


def _text_lines(text: str) -> Iterator[int]:
    """Lines where the annotation appears as a key; line numbers counted incrementally (linear overall)."""
    line, pos = 1, 0
    for m in _ROTATE_KEY.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        yield line


def _json_has_rotate(text: str) -> bool:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return next(_rotate_locations(data, ()), None) is not None


@check("rotate-annotation", per_file=True)
def check_rotate_annotation(repo: Repository) -> Iterator[Finding]:
    """CH074: ``chamberlain.dev/rotate`` committed on any object (intent or manifest, rendered output included):
    GitOps would apply it again after every rotation, an endless trigger."""
    for rf in repo.files:
        text = rf.text
        # Only what a GitOps controller applies (YAML, JSON); a README may explain the annotation. A cheap
        # substring test first: most files never mention it.
        # An inline patch may spell the key with escapes ("chamberlain.dev\x2frotate"): a parsed file with a
        # backslash is walked too (its patch strings are parsed the way kustomize parses them).
        if text is None or not (rf.is_yaml or rf.rel.lower().endswith(".json")) \
                or not (any(s in text for s in _ROTATE_SPELLINGS) or "\\" in text):
            continue
        if not rf.documents:  # rendered output, templates and JSON manifests are scanned as text only
            lines = list(_text_lines(text))
            if not lines and rf.rel.lower().endswith(".json") and _json_has_rotate(text):
                lines = [1]  # spelled with escapes ("\u002f"): the API server decodes them
            for line in lines:
                yield Finding(rf.rel, line, "CH074",
                              f"the rotate annotation {wk.ANNOTATION_ROTATE} is committed in Git; GitOps would "
                              "re-apply it forever (request a rotation with `chamberlain rotate` or by annotating "
                              "the object in the cluster)")
            continue
        for doc in rf.documents:
            label = f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind or "document")
            for where in _rotate_locations(doc.data, ()):
                yield Finding(doc.file, doc.line_of(where), "CH074",
                              f"{label}: the rotate annotation {wk.ANNOTATION_ROTATE} is committed in Git; GitOps "
                              "would re-apply it after every rotation, which then never stops (request a rotation "
                              "with `chamberlain rotate` or annotate the object in the cluster)",
                              object=label)


# ------------------------------------------------------------------------------------------------ CH075


@check("restart-consumes", per_file=True)
def check_restart_consumes(repo: Repository) -> Iterator[Finding]:
    """CH075: a consumer's restart target whose manifest is in the repository (same kind and name, in the consumer's
    namespace or with no namespace) references none of the Secrets that consumer writes. A workload whose manifest
    is not in the repository cannot be checked here (with spec.tenancy, CH081 confines it to the owner's
    namespaces)."""
    wanted = {(r.kind, r.name) for item in repo.intents for c in item.obj.spec.consumers for r in c.restart}
    if not wanted:
        return
    workloads: dict[tuple[str, str], list[Document]] = {}
    for doc in repo.manifests:
        key = (doc.kind or "", doc.name or "")
        if key in wanted:
            workloads.setdefault(key, []).append(doc)
    if not workloads:  # no restart target has its manifest here: nothing to check
        return
    referenced: dict[int, frozenset[str]] = {}  # per workload document, computed once: the Secrets it names

    def names(doc: Document, kind: str) -> frozenset[str]:
        if id(doc) not in referenced:
            pod = _get(doc.data, POD_SPEC_PATHS[kind])
            referenced[id(doc)] = frozenset(n for _, _, n in secret_references(pod)) if isinstance(pod, dict) \
                else frozenset()
        return referenced[id(doc)]

    for item in repo.intents:
        label = f"SecretIntent/{item.obj.metadata.name}"
        for i, consumer in enumerate(item.obj.spec.consumers):
            for j, ref in enumerate(consumer.restart):
                docs = [d for d in workloads.get((ref.kind, ref.name), ())
                        if d.namespace in (None, consumer.namespace)]
                if not docs or any(consumer.secret_name in names(d, ref.kind) for d in docs):
                    continue
                where = ", ".join(f"{d.file}:{d.line}" for d in docs)
                yield Finding(
                    item.file, item.line_of("spec", "consumers", i, "restart", j), "CH075",
                    f"{label}: restart {ref.kind}/{ref.name} in {consumer.namespace} does not reference consumer "
                    f"Secret {consumer.secret_name} ({where}); an intent restarts only workloads that consume it",
                    object=label, subject=f"{consumer.namespace}/{ref.kind}/{ref.name}",
                )
