"""Read an estate from a live cluster, through the narrow :class:`~chamberlain.kube.api.KubeList` protocol.

The same kinds the manifest reader takes, listed cluster-wide or in the namespaces given: Namespaces (for owner
labels), Secrets (the client blanks their values before they get here), Deployments, StatefulSets, DaemonSets,
ExternalSecrets and (Cluster)SecretStores (external-secrets.io v1, else v1beta1), SealedSecrets (bitnami.com).
A kind the server does not serve (no ESO, no sealed-secrets) is simply absent. Every object then goes through
:func:`~chamberlain.adopt.estate.reduce`, like a manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chamberlain.adopt.estate import Estate, Origin, Problem, reduce
from chamberlain.kube.api import KubeForbidden, KubeList

# (kind, API group path(s) tried in order, resource, namespaced)
RESOURCES: tuple[tuple[str, tuple[str, ...], str, bool], ...] = (
    ("Secret", ("/api/v1",), "secrets", True),
    ("Deployment", ("/apis/apps/v1",), "deployments", True),
    ("StatefulSet", ("/apis/apps/v1",), "statefulsets", True),
    ("DaemonSet", ("/apis/apps/v1",), "daemonsets", True),
    ("ExternalSecret", ("/apis/external-secrets.io/v1", "/apis/external-secrets.io/v1beta1"), "externalsecrets",
     True),
    ("SecretStore", ("/apis/external-secrets.io/v1", "/apis/external-secrets.io/v1beta1"), "secretstores", True),
    ("ClusterSecretStore", ("/apis/external-secrets.io/v1", "/apis/external-secrets.io/v1beta1"),
     "clustersecretstores", False),
    ("SealedSecret", ("/apis/bitnami.com/v1alpha1",), "sealedsecrets", True),
)


def _list(kube: KubeList, groups: Sequence[str], resource: str, namespace: str | None) -> list[dict[str, Any]]:
    for group in groups:
        path = f"{group}/namespaces/{namespace}/{resource}" if namespace else f"{group}/{resource}"
        items = kube.list_objects(path)
        if items is not None:
            return items
    return []


def read_cluster(kube: KubeList, namespaces: Sequence[str] | None = None) -> Estate:
    """The estate of the cluster ``kube`` reaches (only ``namespaces`` when given)."""
    estate = Estate()
    origin = Origin("cluster")
    wanted = set(namespaces or ())
    try:
        for item in kube.list_objects("/api/v1/namespaces") or []:
            item.setdefault("kind", "Namespace")
            if not wanted or (item.get("metadata") or {}).get("name") in wanted:
                estate.add(reduce(item, origin))
    except KubeForbidden:  # owner labels on namespaces are a convenience; the namespace name still works
        estate.add(Problem("cluster", "listing namespaces is forbidden: owner labels on namespaces not read",
                           kind="Namespace"))
    for kind, groups, resource, namespaced in RESOURCES:
        scopes: list[str | None] = [*sorted(wanted)] if (namespaced and wanted) else [None]
        for ns in scopes:
            try:
                items = _list(kube, groups, resource, ns)
            except KubeForbidden:  # reported (and so exit 1), never read as "there are none"
                estate.add(Problem("cluster", f"listing {resource}{' in ' + ns if ns else ''} is forbidden: not "
                                              "read", kind=kind, namespace=ns or ""))
                continue
            for item in items:
                item["kind"] = kind  # list items carry no kind
                estate.add(reduce(item, origin))
    return estate


__all__ = ["RESOURCES", "read_cluster"]
