"""Debounced rollout restarts: a workload fed by several rotated secrets restarts once per batch.

Restarting per secret is the failure Reloader #220 and VSO #644 show: a pod reading three rotated Secrets is
rolled three times, and the middle rollouts may start pods that see a mix of versions. Here the rotation
workflow collects the secrets of one batch, waits until every consumer is in sync, and only then asks
:func:`plan_restarts` (pure) for the set of workloads to roll — each once.

:func:`restart` does what ``kubectl rollout restart`` does: patch a pod-template annotation, which makes the
workload controller roll the pods (and bumps ``metadata.generation``). The batch token goes into a second
annotation so a retried or resumed step with the same token patches nothing: restarts are idempotent per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.clock import Clock, rfc3339
from chamberlain.kube.api import KubePropagation, WorkloadKind
from chamberlain.propagation.sync import ConsumerRef


@dataclass(frozen=True, order=True)
class WorkloadRef:
    kind: WorkloadKind
    namespace: str
    name: str


@dataclass(frozen=True)
class Change:
    """One rotated secret of a batch: the consumer Secrets it reached and the workloads that read each of them."""

    secret: str  # the intent (or Vault path) that got a new version; used only for reporting
    consumers: tuple[tuple[ConsumerRef, tuple[WorkloadRef, ...]], ...]


def plan_restarts(changes: Iterable[Change]) -> set[WorkloadRef]:
    """Every workload fed by any changed secret, once. A workload in another namespace than its consumer Secret
    cannot mount it, so such a declaration is dropped rather than restarted for nothing."""
    return {
        workload
        for change in changes
        for consumer, workloads in change.consumers
        for workload in workloads
        if workload.namespace == consumer.namespace
    }


RestartOutcome = Literal["restarted", "already-restarted"]


def restart(kube: KubePropagation, workload: WorkloadRef, token: str, clock: Clock) -> RestartOutcome:
    """Roll ``workload`` for batch ``token`` unless that batch already did (same token: no second patch)."""
    state = kube.get_pod_template(workload.kind, workload.namespace, workload.name)
    if state.annotations.get(wk.ANNOTATION_RESTART_BATCH) == token:
        return "already-restarted"
    kube.patch_pod_template_annotations(
        workload.kind, workload.namespace, workload.name,
        {wk.ANNOTATION_RESTARTED_AT: rfc3339(clock.now()), wk.ANNOTATION_RESTART_BATCH: token},
    )
    return "restarted"
