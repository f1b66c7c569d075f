"""Driving a real Flux (source-controller + kustomize-controller) the way ``flux bootstrap`` and ``flux reconcile``
do: the Git source and root Kustomization a cluster starts from, the in-cluster age key Flux decrypts bootstrap files
with, asking for a reconcile, and reading what Flux reports.

The manifests and :func:`readiness` are pure; the rest talks to the cluster through
:class:`~chamberlain.kube.api.KubeCustomObjects` / :class:`~chamberlain.kube.api.KubeApply` and waits with watches.

What Flux reports (``kustomize.toolkit.fluxcd.io/v1``, ``source.toolkit.fluxcd.io/v1``): the ``Ready`` condition
(True, False, or Unknown while it works), ``status.lastHandledReconcileAt`` echoing the
``reconcile.fluxcd.io/requestedAt`` annotation once a requested reconcile ran, ``status.lastAppliedRevision``
(Kustomization) and ``status.artifact.revision`` (GitRepository) as ``<branch>@sha1:<commit>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chamberlain.errors import ChamberlainError
from chamberlain.handover.gitops import FLUX_KUSTOMIZATIONS
from chamberlain.kube.api import CustomResource, Kube, KubeApply, KubeCustomObjects, KubeError
from chamberlain.render.flux import NAMESPACE, SOPS_AGE_SECRET, SOURCE

GIT_REPOSITORIES = CustomResource("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZATIONS = FLUX_KUSTOMIZATIONS
RECONCILE_REQUESTED = "reconcile.fluxcd.io/requestedAt"
#: The key kustomize-controller reads age identities from (any key ending in ``.agekey``).
AGE_KEY = "identity.agekey"
FIELD_MANAGER = "chamberlain-gitops"
ROOT = "flux-system"  # the root Kustomization, named as `flux bootstrap` names it
MESSAGE_MAX = 300  # Flux's messages can quote whole build errors; ours quote the start


class FluxError(ChamberlainError):
    """Flux did not get where it was asked to: which object, what Flux said last."""


@dataclass(frozen=True)
class Readiness:
    """What one Flux object reports (pure data; the message is Flux's own and never carries a Secret's value)."""

    kind: str
    name: str
    ready: bool | None  # None: Unknown or not reported yet (Flux is working on it)
    reason: str = ""
    message: str = ""
    revision: str = ""  # the applied (Kustomization) or fetched (GitRepository) revision
    handled: str = ""  # status.lastHandledReconcileAt
    current: bool = False  # observedGeneration caught up with generation

    def at(self, commit: str) -> bool:
        """Whether the reported revision is ``commit`` (Flux writes ``<branch>@sha1:<commit>``)."""
        return bool(commit) and self.revision.rpartition(":")[2] == commit

    def describe(self) -> str:
        state = {True: "Ready", False: "not Ready", None: "reconciling"}[self.ready]
        rev = f" at {self.revision}" if self.revision else ""
        message = self.message if len(self.message) <= MESSAGE_MAX else self.message[:MESSAGE_MAX] + "…"
        why = f" ({self.reason}: {message})" if self.reason or message else ""
        return f"{self.kind} {NAMESPACE}/{self.name}: {state}{rev}{why}"


def readiness(obj: Mapping[str, Any] | None, kind: str = "Kustomization", name: str = "") -> Readiness:
    """Read a Flux object's status (pure). An absent object is simply not ready."""
    if obj is None:
        return Readiness(kind, name, None, "NotFound", "the object does not exist")
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    ready: bool | None = None
    reason = message = ""
    observed = status.get("observedGeneration")
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ready = {"True": True, "False": False}.get(str(cond.get("status")))
            reason, message = str(cond.get("reason") or ""), str(cond.get("message") or "")
            # A failed reconcile may leave status.observedGeneration behind; the condition says which spec it is about.
            observed = cond.get("observedGeneration", observed)
    revision = str(status.get("lastAppliedRevision") or (status.get("artifact") or {}).get("revision") or "")
    generation = meta.get("generation")
    current = generation is not None and observed == generation
    return Readiness(str(obj.get("kind") or kind), str(meta.get("name") or name), ready if current else None,
                     reason, message, revision, str(status.get("lastHandledReconcileAt") or ""), current)


# ---------------------------------------------------------------------------------------------- manifests (pure)

def git_repository(url: str, branch: str = "main", *, interval: str = "1m") -> dict[str, Any]:
    """The cluster's Git source (``flux-system``, as ``flux bootstrap`` creates it)."""
    return {
        "apiVersion": f"{GIT_REPOSITORIES.group}/{GIT_REPOSITORIES.version}",
        "kind": "GitRepository",
        "metadata": {"name": SOURCE, "namespace": NAMESPACE},
        "spec": {"url": url, "ref": {"branch": branch}, "interval": interval},
    }


def root_kustomization(cluster: str, gitops_path: str = ".", *, interval: str = "10m",
                       retry_interval: str = "1m") -> dict[str, Any]:
    """The root Kustomization: applies ``flux/<cluster>`` of the rendered tree, i.e. chamberlain's own
    Kustomizations, which apply the rest in ``dependsOn`` order. A failed attempt (an artifact that could not be
    fetched or unpacked, often transient) is tried again after ``retry_interval``, as the rendered ones are, not
    after the whole ``interval``."""
    root = gitops_path.removeprefix("./").strip("/")
    path = "./" + "/".join(p for p in (root if root not in ("", ".") else "", "flux", cluster) if p)
    return {
        "apiVersion": f"{KUSTOMIZATIONS.group}/{KUSTOMIZATIONS.version}",
        "kind": "Kustomization",
        "metadata": {"name": ROOT, "namespace": NAMESPACE},
        "spec": {"interval": interval, "retryInterval": retry_interval, "path": path, "prune": True, "wait": False,
                 "sourceRef": {"kind": "GitRepository", "name": SOURCE}},
    }


# ---------------------------------------------------------------------------------------------- acting

def install_source(kube: KubeApply, url: str, cluster: str, *, branch: str = "main", gitops_path: str = ".") -> None:
    """Apply the Git source and the root Kustomization (server-side apply: idempotent)."""
    kube.apply_manifest(git_repository(url, branch), FIELD_MANAGER)
    kube.apply_manifest(root_kustomization(cluster, gitops_path), FIELD_MANAGER)


def install_decryption_key(kube: Kube, identity: str) -> str:
    """Put the cluster's age identity into ``flux-system/sops-age`` (created, or updated when it differs) and
    return what happened. ``identity`` is secret: it goes to the API server and nowhere else."""
    kube.ensure_namespace(NAMESPACE)
    existing = kube.get_secret(NAMESPACE, SOPS_AGE_SECRET)
    if existing is None:
        kube.create_secret(NAMESPACE, SOPS_AGE_SECRET, {AGE_KEY: identity})
        return "created"
    if existing.data.get(AGE_KEY) == identity:
        return "unchanged"
    # Other *.agekey entries are someone else's keys for other files: kept. The resourceVersion guards the update.
    kube.update_secret(dataclasses.replace(existing, data={**existing.data, AGE_KEY: identity}))
    return "updated"


class Bootstrapping(Kube, KubeApply, Protocol):
    """What :func:`bootstrap` needs of the cluster: Secrets and namespaces, and server-side apply."""


def bootstrap(kube: Bootstrapping, url: str, cluster: str, identity: str, *, branch: str = "main",
              gitops_path: str = ".") -> str:
    """What an operator does once per cluster (``flux bootstrap`` + the SOPS key): the cluster's age identity into
    ``flux-system/sops-age``, then the Git source and the root Kustomization. Returns what happened to the key
    Secret. Idempotent; the same call re-bootstraps a cluster that was rebuilt empty."""
    key_state = install_decryption_key(kube, identity)
    install_source(kube, url, cluster, branch=branch, gitops_path=gitops_path)
    return key_state


def _resource(kind: str) -> CustomResource:
    return GIT_REPOSITORIES if kind == "GitRepository" else KUSTOMIZATIONS


def wait_ready(kube: KubeCustomObjects, name: str, *, kind: str = "Kustomization", commit: str = "",
               timeout: float = 180.0) -> Readiness:
    """Wait until Flux reports the object Ready (at ``commit`` when given). :class:`FluxError` with Flux's last
    word when it does not get there in ``timeout`` seconds."""
    last = readiness(None, kind, name)

    def done(obj: dict[str, Any] | None) -> bool:
        nonlocal last
        last = readiness(obj, kind, name)
        return last.ready is True and (not commit or last.at(commit))

    try:
        kube.wait_custom_object(_resource(kind), NAMESPACE, name, done, timeout)
    except KubeError as exc:
        raise FluxError(f"{last.describe()}; waited {timeout:.0f}s"
                        + (f" for commit {commit[:12]}" if commit else "") + f" ({exc})") from None
    return last


def reconcile(kube: KubeCustomObjects, name: str, token: str, *, kind: str = "Kustomization",
              timeout: float = 180.0) -> Readiness:
    """``flux reconcile``: ask Flux to reconcile now (the ``requestedAt`` annotation, set to ``token``, a fresh
    timestamp) and wait until it reports having handled that request. Returns what it reported then, Ready or not:
    the caller decides what a not-Ready outcome means."""
    kube.patch_custom_object_annotations(_resource(kind), NAMESPACE, name, {RECONCILE_REQUESTED: token})
    last = readiness(None, kind, name)

    def handled(obj: dict[str, Any] | None) -> bool:
        nonlocal last
        last = readiness(obj, kind, name)
        return last.handled == token and last.ready is not None

    try:
        kube.wait_custom_object(_resource(kind), NAMESPACE, name, handled, timeout)
    except KubeError as exc:
        raise FluxError(f"{last.describe()}; the reconcile requested at {token} was not handled within "
                        f"{timeout:.0f}s ({exc})") from None
    return last


def reconcile_all(kube: KubeCustomObjects, names: Sequence[str], token: str, *,
                  timeout: float = 180.0) -> list[Readiness]:
    """Reconcile the source first (so every Kustomization sees the newest commit), then each Kustomization in
    order."""
    out = [reconcile(kube, SOURCE, token, kind="GitRepository", timeout=timeout)]
    out += [reconcile(kube, name, token, timeout=timeout) for name in names]
    return out


__all__ = [
    "AGE_KEY",
    "FIELD_MANAGER",
    "GIT_REPOSITORIES",
    "KUSTOMIZATIONS",
    "NAMESPACE",
    "RECONCILE_REQUESTED",
    "ROOT",
    "SOURCE",
    "Bootstrapping",
    "FluxError",
    "Readiness",
    "bootstrap",
    "git_repository",
    "install_decryption_key",
    "install_source",
    "readiness",
    "reconcile",
    "reconcile_all",
    "root_kustomization",
    "wait_ready",
]
