"""Force ESO to refresh ExternalSecrets now instead of at their ``refreshInterval`` (a safety net of 1h).

ESO reconciles an ExternalSecret whenever its metadata changes; the ``force-sync`` annotation is the documented
way to trigger it. The value must be new each time, so it is a caller-supplied token (the rotation run's id plus
an attempt number works: a retried step re-annotates with a new token, a resumed one with the same token costs
one harmless extra reconcile).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chamberlain import wellknown as wk
from chamberlain.kube.api import KubeNotFound, KubePropagation


@dataclass(frozen=True, order=True)
class ExternalSecretRef:
    namespace: str
    name: str


def force_refresh(kube: KubePropagation, refs: Iterable[ExternalSecretRef], token: str) -> list[ExternalSecretRef]:
    """Annotate each ExternalSecret ``force-sync: <token>``; returns the ones that do not exist (the caller decides
    whether a missing consumer is an error: GitOps may not have synced it yet). Other errors propagate typed
    (:class:`~chamberlain.kube.api.KubeUnavailable` is retryable)."""
    missing: list[ExternalSecretRef] = []
    for ref in sorted(set(refs)):
        try:
            kube.annotate_external_secret(ref.namespace, ref.name, {wk.ESO_FORCE_SYNC: token})
        except KubeNotFound:
            missing.append(ref)
    return missing
