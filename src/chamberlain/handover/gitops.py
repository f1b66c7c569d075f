"""Does a GitOps controller still apply this bootstrap Secret? The check that orders retire-in-Git before consume.

A bootstrap Secret that handover deleted (or emptied) while Flux or Argo CD still applies its file would be
recreated (or refilled) at the controller's next reconcile. So the consume step runs only once Git no longer
declares the Secret: its retirement is committed (``source.bootstrap.retiredIn``), rendered, and the controller has
reconciled without it. What the controllers say:

- **Flux** labels what a Kustomization applied with ``kustomize.toolkit.fluxcd.io/name`` and ``.../namespace``,
  and that Kustomization (``kustomize.toolkit.fluxcd.io/v1``, ``kustomizations``) lists what it applies in
  ``status.inventory.entries[].id`` as ``<namespace>_<name>_<group>_<kind>`` (``<ns>_<name>__Secret`` for a
  Secret). Labelled, and listed: Flux applies it. A Kustomization that is gone, or no longer lists it: Flux will
  not touch it again (the rendered bootstrap Kustomization has ``prune: false``, so it never deletes it either).
- **Argo CD** marks what an Application applied with the ``argocd.argoproj.io/tracking-id`` annotation
  (``<app>:<group>/<kind>:<namespace>/<name>``) or the ``app.kubernetes.io/instance`` label (``<app>``; an
  Application outside Argo CD's own namespace is ``<namespace>_<app>``), and the Application
  (``argoproj.io/v1alpha1``, ``applications``) lists it in ``status.resources``. An entry with
  ``requiresPruning: true`` is live but no longer in Git: Argo CD will not sync it again (and ``Prune=false`` keeps
  it from deleting it).
- No such CRD on the cluster (404): that controller does not exist there, so it applies nothing.

Anything else — forbidden, unreachable — raises: not knowing is never "not managed", or a Secret could be consumed
and resurrected. :func:`applied_by` is the one entry point (the handover calls it; an end-to-end test with the real
Flux controllers can call it too); the parsing is pure.

Boundary: reads custom objects through :class:`~chamberlain.kube.api.KubeCustomObjects`; never a Secret's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chamberlain import wellknown as wk
from chamberlain.kube.api import CustomResource, KubeCustomObjects

FLUX_KUSTOMIZATIONS = CustomResource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
ARGO_APPLICATIONS = CustomResource("argoproj.io", "v1alpha1", "applications")
ARGOCD_NAMESPACE = "argocd"  # where Argo CD keeps Applications unless the tracking names another namespace

Controller = Literal["flux", "argocd", "none"]


@dataclass(frozen=True)
class Tracking:
    """What a Secret's own labels and annotations say applied it (pure; no API call)."""

    controller: Controller
    namespace: str | None = None  # of the Kustomization or Application
    name: str | None = None

    @property
    def owner(self) -> str | None:
        return f"{self.namespace}/{self.name}" if self.name else None


@dataclass(frozen=True)
class GitOpsOwner:
    """Who applied the Secret (:attr:`tracked`: from its labels) and whether that controller still applies it."""

    tracked: Tracking
    applies: bool

    @property
    def controller(self) -> Controller:
        return self.tracked.controller

    def describe(self) -> str:
        if self.tracked.controller == "none":
            return "no GitOps controller"
        kind = "Kustomization" if self.tracked.controller == "flux" else "Application"
        return f"{self.tracked.controller} {kind} {self.tracked.owner}"


NOT_TRACKED = Tracking("none")


def trackings(labels: Mapping[str, str], annotations: Mapping[str, str],
              argocd_namespace: str = ARGOCD_NAMESPACE) -> list[Tracking]:
    """Every controller the Secret's metadata names (Flux first), pure."""
    found: list[Tracking] = []
    flux_name, flux_ns = labels.get(wk.FLUX_NAME_LABEL), labels.get(wk.FLUX_NAMESPACE_LABEL)
    if flux_name and flux_ns:
        found.append(Tracking("flux", flux_ns, flux_name))
    app = annotations.get(wk.ARGOCD_TRACKING_ID, "").partition(":")[0] or labels.get(wk.ARGOCD_INSTANCE_LABEL, "")
    if app:
        namespace, sep, name = app.partition("_")
        found.append(Tracking("argocd", namespace, name) if sep and name else Tracking("argocd", argocd_namespace, app))
    return found


def flux_lists(kustomization: Mapping[str, Any], namespace: str, name: str) -> bool:
    """Whether a Kustomization's inventory holds the Secret ``namespace/name`` (pure)."""
    wanted = f"{namespace}_{name}__Secret"
    inventory = (kustomization.get("status") or {}).get("inventory") or {}
    return any(isinstance(e, Mapping) and e.get("id") == wanted for e in inventory.get("entries") or [])


def argo_lists(application: Mapping[str, Any], namespace: str, name: str) -> bool:
    """Whether an Application still syncs the Secret ``namespace/name`` from Git (pure): listed in its
    ``status.resources`` and not marked ``requiresPruning`` (live, but no longer in Git)."""
    for r in (application.get("status") or {}).get("resources") or []:
        if (isinstance(r, Mapping) and r.get("kind") == "Secret" and not r.get("group")
                and r.get("namespace") == namespace and r.get("name") == name):
            return not r.get("requiresPruning", False)
    return False


def applied_by(kube: KubeCustomObjects, namespace: str, name: str, labels: Mapping[str, str],
               annotations: Mapping[str, str], *, argocd_namespace: str = ARGOCD_NAMESPACE) -> GitOpsOwner:
    """Whether a GitOps controller still applies the Secret ``namespace/name`` (labels and annotations as read
    from it). One GET per controller that the Secret names; :class:`~chamberlain.kube.api.KubeError` when the
    cluster cannot say (403, unreachable), never a guess."""
    found = trackings(labels, annotations, argocd_namespace)
    for tracking in found:
        if tracking.name is None or tracking.namespace is None:  # pragma: no cover - trackings sets both
            continue
        resource = FLUX_KUSTOMIZATIONS if tracking.controller == "flux" else ARGO_APPLICATIONS
        obj = kube.get_custom_object(resource, tracking.namespace, tracking.name)
        if obj is None:
            continue
        lists = flux_lists if tracking.controller == "flux" else argo_lists
        if lists(obj, namespace, name):
            return GitOpsOwner(tracking, applies=True)
    return GitOpsOwner(found[0] if found else NOT_TRACKED, applies=False)


__all__ = [
    "ARGOCD_NAMESPACE",
    "ARGO_APPLICATIONS",
    "FLUX_KUSTOMIZATIONS",
    "NOT_TRACKED",
    "Controller",
    "GitOpsOwner",
    "Tracking",
    "applied_by",
    "argo_lists",
    "flux_lists",
    "trackings",
]
