"""Rollouts as kube-controller-manager records them, read through watches (never a sleep loop).

A pod-template patch is only a request; the proof that a workload restarted is what its controller made of it: a
new ReplicaSet for a Deployment (its revision is the Deployment's ``deployment.kubernetes.io/revision``), a new
ControllerRevision for a StatefulSet or DaemonSet (the highest ``revision`` owned by it). There is no kubelet, so
no pod ever runs; the revision objects are created all the same.

:func:`rollout` waits until the workload's controller has seen its current spec (``status.observedGeneration``
reached ``metadata.generation``), then returns the revision and the pod-template annotations that revision was
made from, so a test can tell which restart batch produced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes

DEPLOYMENT_REVISION = "deployment.kubernetes.io/revision"


def name_of(obj: Any) -> str:
    """The name of a typed object or of a custom object (a dict)."""
    return str(obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name)


def _listed(listed: Any) -> tuple[list[Any], str]:
    """Items and resourceVersion of a typed list or of a custom object list (a dict)."""
    if isinstance(listed, dict):
        return list(listed["items"]), str(listed["metadata"]["resourceVersion"])
    return list(listed.items), str(listed.metadata.resource_version)


def watch_until(list_call: Callable[..., Any], check: Callable[[list[Any]], Any], *, timeout: float, what: str,
                **kwargs: Any) -> Any:
    """List with ``kwargs``, then watch from that list's resourceVersion, keeping the objects current; return the
    first truthy ``check(objects)``. Fails the test (naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        items, resource_version = _listed(list_call(**kwargs))
        objects = {name_of(o): o for o in items}
        result = check(list(objects.values()))
        if result:
            return result
        watch = kubernetes.watch.Watch()
        try:
            for event in watch.stream(list_call, resource_version=resource_version,
                                      timeout_seconds=max(1, int(deadline - time.monotonic())), **kwargs):
                obj = event["object"]
                if event["type"] == "DELETED":
                    objects.pop(name_of(obj), None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    objects[name_of(obj)] = obj
                result = check(list(objects.values()))
                if result:
                    return result
        except kubernetes.client.ApiException as exc:
            if exc.status != 410:  # 410 Gone: the resourceVersion is too old, list again
                raise
        finally:
            watch.stop()
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not seen within {timeout:.0f}s")


@dataclass(frozen=True)
class Rollout:
    generation: int
    revision: int
    template_annotations: dict[str, str]  # of the ReplicaSet / ControllerRevision that holds ``revision``


def _owned_by(obj: Any, uid: str) -> bool:
    return any(ref.uid == uid and ref.controller for ref in obj.metadata.owner_references or [])


def _settled(apps: Any, kind: str, namespace: str, name: str, timeout: float) -> Any:
    """The workload once its controller observed its current generation (a Deployment also names its revision)."""
    lists = {"Deployment": apps.list_namespaced_deployment, "StatefulSet": apps.list_namespaced_stateful_set,
             "DaemonSet": apps.list_namespaced_daemon_set}

    def seen(items: list[Any]) -> Any:
        for obj in items:
            observed = obj.status.observed_generation if obj.status else None
            if observed is None or observed < obj.metadata.generation:
                continue
            if kind == "Deployment" and DEPLOYMENT_REVISION not in (obj.metadata.annotations or {}):
                continue
            return obj
        return None

    return watch_until(lists[kind], seen, timeout=timeout, what=f"{kind} {namespace}/{name} observed by its controller",
                       namespace=namespace, field_selector=f"metadata.name={name}")


def rollout(api: Any, kind: str, namespace: str, name: str, *, timeout: float = 60) -> Rollout:
    """The newest rollout of a workload, once its controller has caught up with its spec."""
    apps = kubernetes.client.AppsV1Api(api)
    obj = _settled(apps, kind, namespace, name, timeout)
    uid, generation = obj.metadata.uid, int(obj.metadata.generation)
    if kind == "Deployment":
        revision = int(obj.metadata.annotations[DEPLOYMENT_REVISION])
        sets = [rs for rs in apps.list_namespaced_replica_set(namespace).items if _owned_by(rs, uid)
                and (rs.metadata.annotations or {}).get(DEPLOYMENT_REVISION) == str(revision)]
        assert len(sets) == 1, f"{namespace}/{name}: {len(sets)} ReplicaSets at revision {revision}"
        return Rollout(generation, revision, dict(sets[0].spec.template.metadata.annotations or {}))
    revisions = [cr for cr in apps.list_namespaced_controller_revision(namespace).items if _owned_by(cr, uid)]
    assert revisions, f"{kind} {namespace}/{name} has no ControllerRevision"
    newest = max(revisions, key=lambda cr: int(cr.revision))
    template = (newest.data or {}).get("spec", {}).get("template", {})
    return Rollout(generation, int(newest.revision), dict(template.get("metadata", {}).get("annotations") or {}))
