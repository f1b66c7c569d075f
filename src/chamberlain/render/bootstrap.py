"""The GitOps decryption layer (Phases 1-2): bootstrap Secrets, still encrypted, placed for KSOPS and Flux.

Belongs here: for each bootstrap intent, in each cluster of its environments, the encrypted file copied byte for
byte into the output, a KSOPS generator that the Argo CD application's ``kustomization.yaml`` lists under
``generators:`` (KSOPS decrypts in-cluster with its age key), a plain ``bootstrap/kustomization.yaml`` listing the
encrypted files, which Flux's ``chamberlain-bootstrap-<env>`` Kustomization decrypts (:mod:`.flux`).
Pure: no decryption (nothing here could), no I/O; the files come from the loaded repository.

Layout inside ``envs/<env>/<cluster>/``::

    ksops-bootstrap.yaml           the KSOPS generator (``generators:`` of the application's kustomization)
    bootstrap/<intent>.sops.yaml   the encrypted Secret, byte for byte as in Git
    bootstrap/kustomization.yaml   the encrypted files as resources: what Flux's kustomize-controller decrypts

Flux's Kustomization over ``bootstrap/`` is rendered by :mod:`chamberlain.render.flux`.

Why these choices:

- The copy is byte for byte: sops' MAC covers the whole document, so not even a label may change. Kustomize
  ``patches`` in the application add the sync wave to the generated Secrets instead (wave 1: after Namespaces,
  before everything that reads Vault).
- A Secret is a cluster-scoped fact (namespace/name), so on a cluster that hosts several environments exactly one
  application carries it: the cluster's base owner if the intent lives there, else the first of the intent's
  environments on that cluster, in Platform order. Two applications never fight over one Secret.
- The Secret's own namespace is the minimal namespace it lives in; it joins ``clusters/<cluster>/namespaces.yaml``
  (wave 0), labelled ``chamberlain.dev/class: bootstrap`` when nothing else of chamberlain's lives there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.checks.sops import bootstrap_refs
from chamberlain.intent.loader import Repository
from chamberlain.intent.paths import intent_environments
from chamberlain.render import naming
from chamberlain.render.topology import RenderError, Topology
from chamberlain.render.yamlio import dump_yaml

Manifest = dict[str, Any]

KSOPS_API = "viaduct.ai/v1"
KSOPS_GENERATOR = "ksops-bootstrap.yaml"
BOOTSTRAP_DIR = "bootstrap"
BOOTSTRAP_CLASS = "bootstrap"
WAVE_BOOTSTRAP = naming.WAVE_IDENTITY  # after Namespaces (0); before stores and syncs that read Vault


@dataclass(frozen=True)
class BootstrapFile:
    """One encrypted bootstrap Secret as it is in Git. ``text`` is ciphertext (sops), safe to copy anywhere."""

    intent: str
    source: str  # repository-relative path
    text: str = field(repr=False)
    namespace: str
    name: str

    @property
    def output_name(self) -> str:
        # Intent names are unique DNS labels, so two files named alike in different directories never collide.
        return f"{self.intent}.sops.yaml"


def collect(repo: Repository) -> list[BootstrapFile]:
    """Every declared bootstrap file of a repository that validated clean, sorted by intent."""
    found: list[BootstrapFile] = []
    for ref in bootstrap_refs(repo):
        rf = ref.file
        name = ref.intent.obj.name
        if rf is None or rf.text is None or len(rf.documents) != 1:
            raise RenderError(f"SecretIntent/{name}: bootstrap file {ref.declared} is missing or unreadable; "
                              "validate the repository first")
        doc = rf.documents[0]
        if doc.namespace is None or doc.name is None:
            raise RenderError(f"SecretIntent/{name}: bootstrap file {ref.declared} names no Secret namespace/name")
        found.append(BootstrapFile(name, rf.rel, rf.text, doc.namespace, doc.name))
    return sorted(found, key=lambda f: f.intent)


@dataclass
class BootstrapLayer:
    """Which application carries which bootstrap Secret: (environment, cluster) -> files. ``emptied``: the
    applications that would carry some file but for its retirement, and now carry none (their Flux Kustomization
    stays, empty, so Flux drops the Secrets from its inventory instead of failing on a missing path)."""

    apps: dict[tuple[str, str], list[BootstrapFile]]
    emptied: frozenset[tuple[str, str]] = frozenset()

    def namespaces(self, cluster: str) -> set[str]:
        return {f.namespace for (_, c), files in self.apps.items() if c == cluster for f in files}

    def files_of(self, environment: str, cluster: str) -> list[BootstrapFile]:
        return self.apps.get((environment, cluster), [])


def assign(topo: Topology, files: Sequence[BootstrapFile]) -> BootstrapLayer:
    """Place each bootstrap file in one application per cluster its intent reaches, leaving out the environments
    that retired it (``source.bootstrap.retiredIn``): on a cluster where every environment of the intent retired
    it, no application carries it any more."""
    apps = _place(topo, files, retire=True)
    before = _place(topo, files, retire=False)
    emptied = frozenset(key for key in before if key not in apps)
    return BootstrapLayer({key: sorted(v, key=lambda f: f.intent) for key, v in apps.items()}, emptied)


def _place(topo: Topology, files: Sequence[BootstrapFile], *, retire: bool) -> dict[tuple[str, str],
                                                                                    list[BootstrapFile]]:
    platform = topo.platform
    by_name = {i.metadata.name: i for i in _intents(topo)}
    apps: dict[tuple[str, str], list[BootstrapFile]] = {}
    for bf in files:
        intent = by_name.get(bf.intent)
        if intent is None:
            continue
        source = intent.spec.source.bootstrap
        retired = set(source.retired_in) if retire and source is not None else set()
        per_cluster: dict[str, list[str]] = {}
        for env in intent_environments(platform, intent):
            if env.name in retired:
                continue
            for cluster in env.clusters:
                envs = per_cluster.setdefault(cluster, [])
                if env.name not in envs:
                    envs.append(env.name)
        for cluster, envs in per_cluster.items():
            base = topo.base_owner(cluster)
            owner = base if base in envs else envs[0]
            apps.setdefault((owner, cluster), []).append(bf)
    return apps


def _intents(topo: Topology) -> Iterable[Any]:
    seen: dict[str, Any] = {}
    for intents in topo.cluster_intents.values():
        for intent in intents:
            seen.setdefault(intent.metadata.name, intent)
    return seen.values()


def secret_identity(bf: BootstrapFile) -> Manifest:
    """The (apiVersion, kind, namespace, name) of a bootstrap Secret, for the renderer's one-definition claims."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": bf.namespace, "name": bf.name}}


def mark_bootstrap_namespace(manifest: Manifest) -> Manifest:
    manifest["metadata"].setdefault("labels", {})[wk.LABEL_CLASS] = BOOTSTRAP_CLASS
    return manifest


def ksops_generator(files: Sequence[BootstrapFile]) -> Manifest:
    return {
        "apiVersion": KSOPS_API,
        "kind": "ksops",
        "metadata": {
            "name": "chamberlain-bootstrap",
            # KSOPS v4 runs as a kustomize exec KRM function (Argo CD: --enable-alpha-plugins --enable-exec).
            "annotations": {"config.kubernetes.io/function": "exec:\n  path: ksops\n"},
        },
        "files": [f"./{BOOTSTRAP_DIR}/{f.output_name}" for f in files],
    }


def wave_patch() -> dict[str, Any]:
    """A kustomize patch giving the Secrets KSOPS generates their sync wave (the encrypted files cannot carry it)
    and ``Prune=false``: a file dropped from Git (retired) must never make Argo CD delete a Secret whose value
    handover may not have copied yet."""
    patch = (
        "apiVersion: v1\n"
        "kind: Secret\n"
        "metadata:\n"
        "  name: chamberlain-bootstrap\n"
        "  annotations:\n"
        f'    {wk.ARGOCD_SYNC_WAVE}: "{WAVE_BOOTSTRAP}"\n'
        f"    {wk.ARGOCD_SYNC_OPTIONS}: {wk.ARGOCD_PRUNE_FALSE}\n"
    )
    return {"target": {"kind": "Secret", "labelSelector": f"{wk.LABEL_CLASS}={BOOTSTRAP_CLASS}"}, "patch": patch}


def kustomization_fields(files: Sequence[BootstrapFile]) -> dict[str, Any]:
    """What the application's kustomization.yaml gains when it carries bootstrap Secrets."""
    if not files:
        return {}
    return {"generators": [KSOPS_GENERATOR], "patches": [wave_patch()]}


def app_files(files: Sequence[BootstrapFile], *, emptied: bool = False) -> dict[str, str]:
    """Files relative to ``envs/<env>/<cluster>/``. ``emptied``: every file this application carried is retired;
    the Flux kustomization stays, listing nothing."""
    if not files and not emptied:
        return {}
    out = {f"{BOOTSTRAP_DIR}/{f.output_name}": f.text for f in files}
    out[f"{BOOTSTRAP_DIR}/kustomization.yaml"] = dump_yaml({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f.output_name for f in files],
    })
    if files:
        out[KSOPS_GENERATOR] = dump_yaml(ksops_generator(files))
    return out
