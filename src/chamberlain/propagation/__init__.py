"""Propagation: after a new version is in Vault, make every consumer carry it, then restart what reads it.

Belongs here (SPEC §2 "propagation guaranteed", §5): forcing ESO to refresh the affected
ExternalSecrets (:mod:`.refresh`), waiting until each consumer Secret carries the new version marker
(:mod:`.sync`), and debounced rollout restarts of the declared workloads (:mod:`.restart`), except those stakater
Reloader rolls itself (:mod:`.reloader`). Decisions
(:func:`in_sync`, :func:`plan_restarts`) are pure; the acting functions take a
:class:`~chamberlain.kube.api.KubePropagation` and an injected :class:`~chamberlain.clock.Clock`.

Not here: writing the value or its marker to Vault (the rotation workflow does that, *before* calling
:func:`force_refresh`), and deciding what to do on failure (the workflow's ``failureStrategy``). Nothing here
reads a Secret's data or logs a value: consumers are compared by their ``chamberlain.dev/version-marker``
annotation only.
"""

from chamberlain.propagation.refresh import ExternalSecretRef, force_refresh
from chamberlain.propagation.reloader import reloader_annotations, reloader_reason
from chamberlain.propagation.restart import (
    Change,
    RestartOutcome,
    Restarts,
    WorkloadRef,
    describe,
    plan_restarts,
    restart,
    restart_all,
    restart_sources,
)
from chamberlain.propagation.sync import ConsumerRef, ConsumerSync, WaitInterrupted, in_sync, wait_in_sync

__all__ = [
    "Change",
    "ConsumerRef",
    "ConsumerSync",
    "ExternalSecretRef",
    "RestartOutcome",
    "Restarts",
    "WaitInterrupted",
    "WorkloadRef",
    "describe",
    "force_refresh",
    "in_sync",
    "plan_restarts",
    "reloader_annotations",
    "reloader_reason",
    "restart",
    "restart_all",
    "restart_sources",
    "wait_in_sync",
]
