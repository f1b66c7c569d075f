"""The Kubernetes side: a narrow typed interface over the cluster chamberlain reads and writes.

Belongs here: the :class:`Kube` protocol, its typed errors, an in-memory fake (``fake``) and the implementation on
the official ``kubernetes`` client (``client``, and ``kubeconfig``: merged kubeconfig files and contexts) — the
only modules that import it. Custom resources are addressed by one :class:`~chamberlain.kube.api.CustomResource`
(group, version, plural) each.
"""

from chamberlain.kube.api import (
    Kube,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubePropagation,
    KubeSecret,
    KubeUnavailable,
    PodTemplateState,
    WorkloadKind,
)

__all__ = [
    "Kube",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeNotFound",
    "KubePropagation",
    "KubeSecret",
    "KubeUnavailable",
    "PodTemplateState",
    "WorkloadKind",
]
