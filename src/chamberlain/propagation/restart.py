"""Debounced rollout restarts: a workload fed by several rotated secrets restarts once per batch.

Restarting per secret is the failure Reloader #220 and VSO #644 show: a pod reading three rotated Secrets is
rolled three times, and the middle rollouts may start pods that see a mix of versions. Here the rotation
workflow collects the secrets of one batch, waits until every consumer is in sync, and only then asks
:func:`plan_restarts` (pure) for the set of workloads to roll — each once.

:func:`restart` does what ``kubectl rollout restart`` does: patch a pod-template annotation, which makes the
workload controller roll the pods (and bumps ``metadata.generation``). The batch token goes into a second
annotation so a retried or resumed step with the same token patches nothing: restarts are idempotent per batch.

A workload that stakater Reloader rolls for one of the rotated Secrets is not patched (it would roll twice):
:func:`restart` returns ``reloader-managed`` and the caller reports it (:mod:`.reloader`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.clock import Clock, rfc3339
from chamberlain.kube.api import KubePropagation, WorkloadKind
from chamberlain.propagation.reloader import needs_secret_annotations, reloader_reason
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
    return set(restart_sources(changes))


def restart_sources(changes: Iterable[Change]) -> dict[WorkloadRef, set[str]]:
    """Each workload to roll, with the names of the changed consumer Secrets (in its namespace) that feed it."""
    out: dict[WorkloadRef, set[str]] = {}
    for change in changes:
        for consumer, workloads in change.consumers:
            for workload in workloads:
                if workload.namespace == consumer.namespace:
                    out.setdefault(workload, set()).add(consumer.name)
    return out


RestartOutcome = Literal["restarted", "already-restarted", "reloader-managed"]


@dataclass(frozen=True)
class Restarts:
    """What a restart step did: the workloads it rolled, and those it left to Reloader (``kind/ns/name
    (annotation)``), both as names only."""

    rolled: tuple[str, ...] = ()
    left_to_reloader: tuple[str, ...] = ()


def describe(workload: WorkloadRef) -> str:
    return f"{workload.kind}/{workload.namespace}/{workload.name}"


def restart(kube: KubePropagation, workload: WorkloadRef, token: str, clock: Clock,
            secrets: Collection[str] = ()) -> RestartOutcome:
    """Roll ``workload`` for batch ``token`` unless that batch already did (same token: no second patch), or
    Reloader rolls it for one of ``secrets`` (the changed consumer Secrets that feed it)."""
    state = kube.get_pod_template(workload.kind, workload.namespace, workload.name)
    if reloader_for(kube, workload, state.annotations, state.workload_annotations, secrets) is not None:
        return "reloader-managed"
    if state.annotations.get(wk.ANNOTATION_RESTART_BATCH) == token:
        return "already-restarted"
    kube.patch_pod_template_annotations(
        workload.kind, workload.namespace, workload.name,
        {wk.ANNOTATION_RESTARTED_AT: rfc3339(clock.now()), wk.ANNOTATION_RESTART_BATCH: token},
    )
    return "restarted"


def reloader_for(kube: KubePropagation, workload: WorkloadRef, template: Mapping[str, str],
                 own: Mapping[str, str], secrets: Collection[str]) -> str | None:
    """``<annotation> for Secret <name>`` when Reloader rolls ``workload`` for one of ``secrets``, else None. Reads
    a Secret's annotations (metadata only) just for search mode."""
    annotations = {**template, **own}
    for name in sorted(secrets):
        secret_annotations = (kube.get_secret_annotations(workload.namespace, name)
                              if needs_secret_annotations(annotations) else None)
        reason = reloader_reason(annotations, name, secret_annotations)
        if reason is not None:
            return f"{reason} for Secret {name}"
    return None


def restart_all(kube: KubePropagation, sources: Mapping[WorkloadRef, Collection[str]], token: str,
                clock: Clock) -> Restarts:
    """Roll every workload of ``sources`` once for ``token``; the ones Reloader rolls are left to it."""
    rolled: list[str] = []
    left: list[str] = []
    for workload in sorted(sources):
        outcome = restart(kube, workload, token, clock, sources[workload])
        if outcome == "restarted":
            rolled.append(describe(workload))
        elif outcome == "reloader-managed":
            left.append(describe(workload))
    return Restarts(tuple(rolled), tuple(left))
