"""RotationRun custom resources: the Kubernetes face of a run record, and Events for runs that need a human.

The run record in Vault stays the source of truth (it is the per-secret lease and what a resumed run reads);
the ``RotationRun`` object mirrors it so ``kubectl get rotationruns`` shows what happens, with Kubernetes-style
conditions. Publishing is best effort: an API server outage never fails or blocks a rotation — the next change of
the run publishes the whole status again. A condition's ``lastTransitionTime`` changes only when its status does:
the publisher remembers the conditions it last published per run (read back from the object when a run was
published before this process started).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from chamberlain import wellknown as wk
from chamberlain.intent.model import GROUP, ROTATION_RUN_KIND, ROTATION_RUNS, VERSION
from chamberlain.kube.api import (
    CustomResource,
    KubeConflict,
    KubeCustomObjects,
    KubeError,
    KubeNotFound,
    KubeRunObjects,
)
from chamberlain.rotation.run import RotationRun

PLURAL, KIND = ROTATION_RUNS, ROTATION_RUN_KIND
RUN_OBJECTS = CustomResource(GROUP, VERSION, PLURAL)


def manifest(run: RotationRun, namespace: str) -> dict[str, Any]:
    """The RotationRun object of ``run`` (spec only; status goes through the status subresource)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": run.run_id, "namespace": namespace, "labels": {wk.LABEL_SECRET: run.secret}},
        "spec": {"secret": run.secret, "path": run.vault.full, "trigger": run.trigger, "reason": run.reason,
                 "mode": run.mode},
    }


def involved(run: RotationRun, namespace: str) -> dict[str, str]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": run.run_id, "namespace": namespace}


class RunObjectsKube(KubeRunObjects, KubeCustomObjects, Protocol):
    """What the publisher needs: create and patch RotationRuns, Events, and read one back after a restart."""


@dataclass
class RunPublisher:
    """Mirrors runs into RotationRun objects. Called from the controller's worker threads (one run per call): the
    lock guards what it remembers of each run and the failure count."""

    kube: RunObjectsKube
    namespace: str
    failures: int = 0
    _published: dict[str, RotationRun] = field(default_factory=dict)  # what the API server has, per run id
    _conditions: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # the conditions it has
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, run: RotationRun) -> bool:
        """Create the object if needed and set its status; True when the API server has the current status."""
        with self._lock:
            known, previous = self._published.get(run.run_id), self._conditions.get(run.run_id)
        if known == run:
            return True
        try:
            if known is None:  # a run this replica has not published yet: most often a new one, so create first
                previous = self._create(run)
            status = run.to_status(previous or ())
            try:
                self._patch(run, status)
            except KubeNotFound:
                with contextlib.suppress(KubeConflict):  # created meanwhile (a retried publish)
                    self._create_object(run)
                self._patch(run, status)
        except KubeError:
            with self._lock:
                self.failures += 1
            return False
        self._remember(run, status["conditions"])
        return True

    def _create(self, run: RotationRun) -> list[dict[str, str]] | None:
        """Create the object; when it exists already (a run adopted after a restart, or published by the replica
        that led before), the conditions it carries, so their transition times survive (None: unknown)."""
        try:
            self._create_object(run)
        except KubeConflict:
            with contextlib.suppress(KubeError):  # unreadable: the first publish sets the times
                obj = self.kube.get_custom_object(RUN_OBJECTS, self.namespace, run.run_id)
                conditions = ((obj or {}).get("status") or {}).get("conditions")
                return list(conditions) if isinstance(conditions, list) else None
        return None

    def _create_object(self, run: RotationRun) -> None:
        self.kube.create_custom_object(RUN_OBJECTS, self.namespace, manifest(run, self.namespace))

    def _patch(self, run: RotationRun, status: dict[str, Any]) -> None:
        self.kube.patch_custom_object_status(RUN_OBJECTS, self.namespace, run.run_id, status)

    def _remember(self, run: RotationRun, conditions: list[dict[str, str]]) -> None:
        with self._lock:
            if run.finished and run.ledger_seq is not None:  # its last publish: forget it
                self._published.pop(run.run_id, None)
                self._conditions.pop(run.run_id, None)
            else:
                self._published[run.run_id] = run
                self._conditions[run.run_id] = conditions

    def event(self, run: RotationRun, reason: str, message: str, warning: bool = False) -> None:
        try:
            self.kube.create_event(self.namespace, involved(run, self.namespace), reason, message,
                                   "Warning" if warning else "Normal")
        except KubeError:
            with self._lock:
                self.failures += 1


__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "RunObjectsKube", "RunPublisher", "involved", "manifest"]
