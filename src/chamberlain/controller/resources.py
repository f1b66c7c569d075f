"""RotationRun custom resources: the Kubernetes face of a run record, and Events for runs that need a human.

The run record in Vault stays the source of truth (it is the per-secret lease and what a resumed run reads);
the ``RotationRun`` object mirrors it so ``kubectl get rotationruns`` shows what happens, with Kubernetes-style
conditions. Publishing is best effort: an API server outage never fails or blocks a rotation — the next change of
the run publishes the whole status again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.kube.api import KubeConflict, KubeError, KubeNotFound, KubeRunObjects
from chamberlain.rotation.run import RotationRun

GROUP, VERSION, PLURAL, KIND = "chamberlain.dev", "v1alpha1", "rotationruns", "RotationRun"


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


@dataclass
class RunPublisher:
    kube: KubeRunObjects
    namespace: str
    _published: dict[str, RotationRun] = field(default_factory=dict)
    failures: int = 0

    def publish(self, run: RotationRun) -> bool:
        """Create the object if needed and set its status; True when the API server has the current status."""
        known = self._published.get(run.run_id)
        if known == run:
            return True
        try:
            if known is None:  # a run this replica has not published yet: most often a new one, so create first
                with contextlib.suppress(KubeConflict):
                    self.kube.create_custom_object(GROUP, VERSION, PLURAL, self.namespace,
                                                   manifest(run, self.namespace))
            try:
                self.kube.patch_custom_object_status(GROUP, VERSION, PLURAL, self.namespace, run.run_id,
                                                     run.to_status())
            except KubeNotFound:
                with contextlib.suppress(KubeConflict):  # created meanwhile (a retried publish)
                    self.kube.create_custom_object(GROUP, VERSION, PLURAL, self.namespace,
                                                   manifest(run, self.namespace))
                self.kube.patch_custom_object_status(GROUP, VERSION, PLURAL, self.namespace, run.run_id,
                                                     run.to_status())
        except KubeError:
            self.failures += 1
            return False
        if run.finished and run.ledger_seq is not None:
            self._published.pop(run.run_id, None)
        else:
            self._published[run.run_id] = run
        return True

    def event(self, run: RotationRun, reason: str, message: str, warning: bool = False) -> None:
        try:
            self.kube.create_event(self.namespace, involved(run, self.namespace), reason, message,
                                   "Warning" if warning else "Normal")
        except KubeError:
            self.failures += 1


__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "RunPublisher", "involved", "manifest"]
