"""Accepted webhook requests, persisted create-only: the replay record that survives restarts and leader changes.

Belongs here: the :class:`RequestStore` protocol, :class:`MemoryStore` (one process, tests) and
:class:`RunObjectStore`, which keeps each accepted request as a ``RotationRun`` object in the controller's
namespace. The object's name is derived from the request's replay id (:func:`object_name`), and it is created
with *create*, never *apply*: a second create of the same name is refused by the API server (409), and that
refusal is what makes a replay a replay. So:

* a request that reaches a follower is persisted there; the leader lists the pending ones (:meth:`pending`) and
  acts on them, whichever replica answered the sender;
* a restart or a leader change loses nothing (the objects are in the cluster, not in a process) and forgets no
  replay id (a captured request replays into a 409);
* the run the leader starts for a persisted request takes the object's name as its run id, so the same object
  then shows that run's progress (``kubectl get rotationruns``).

A request is *pending* while its object has no status: the run publisher writes ``status.phase`` and
:meth:`settle` writes ``status.request`` (refused, merged into another run, or dropped). Not here: verifying
senders (:mod:`.webhook`) or deciding what to run (the controller).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from chamberlain.clock import parse_rfc3339, rfc3339
from chamberlain.intent.model import GROUP, ROTATION_RUN_KIND, ROTATION_RUNS, VERSION
from chamberlain.kube.api import CustomResource, KubeConflict, KubeCustomObjects, KubeNotFound, KubeRunObjects
from chamberlain.triggers.request import RequestError, RotationRequest

PREFIX = "rq-"
LABEL_REQUEST = "chamberlain.dev/request"  # on RotationRun objects created for a persisted webhook request
RUN_OBJECTS = CustomResource(GROUP, VERSION, ROTATION_RUNS)


def object_name(scheme: str, replay_id: str) -> str:
    """The persisted request's name (and its run's id): a hash of the scheme and the replay id, so the same
    request always lands on the same name, and the id itself (a MAC, a sender's key) never appears."""
    return PREFIX + hashlib.sha256(f"{scheme}\0{replay_id}".encode()).hexdigest()[:40]


def is_stored(request_id: str) -> bool:
    """Whether a request id names a persisted request (and so the run id it starts)."""
    return request_id.startswith(PREFIX) and len(request_id) == len(PREFIX) + 40


class RequestStore(Protocol):
    def exists(self, name: str) -> bool:
        """Whether a request of that name was persisted (a retry or a replay)."""
        ...

    def accept(self, request: RotationRequest, path: str) -> bool:
        """Persist ``request`` (named by its ``request_id``) create-only; False when that name exists (a replay
        or a retry). ``path`` is the secret's Vault path (the RotationRun spec requires it)."""
        ...

    def pending(self, now: datetime) -> list[RotationRequest]:
        """The persisted requests no run has taken yet, oldest first."""
        ...

    def settle(self, name: str, state: str, message: str = "", run: str | None = None) -> None:
        """Mark a persisted request as no longer pending (``refused``, ``merged``, ``dropped``, ``taken``)."""
        ...


class MemoryStore:
    """One process's store (tests, and a controller without a cluster). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[RotationRequest, dict[str, Any] | None]] = {}

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._objects

    def accept(self, request: RotationRequest, path: str) -> bool:
        with self._lock:
            if request.request_id in self._objects:
                return False
            self._objects[request.request_id] = (request, None)
            return True

    def pending(self, now: datetime) -> list[RotationRequest]:
        with self._lock:
            return [r for r, status in self._objects.values() if status is None]

    def settle(self, name: str, state: str, message: str = "", run: str | None = None) -> None:
        with self._lock:
            if name in self._objects:
                self._objects[name] = (self._objects[name][0], {"state": state, "message": message, "run": run})

    def status(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects[name][1] if name in self._objects else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


class StoreKube(KubeRunObjects, KubeCustomObjects, Protocol):
    """What :class:`RunObjectStore` needs: create, list and status-patch RotationRun objects."""


def manifest(request: RotationRequest, namespace: str, path: str) -> dict[str, Any]:
    """The RotationRun object of a persisted request: the spec of the run it will start."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": ROTATION_RUN_KIND,
        "metadata": {
            "name": request.request_id, "namespace": namespace,
            "labels": {LABEL_REQUEST: request.kind, "chamberlain.dev/secret": request.secret},
            "annotations": {"chamberlain.dev/requested-at": rfc3339(request.requested_at)},
        },
        "spec": {"secret": request.secret, "path": path, "trigger": request.kind, "reason": request.reason,
                 "mode": "rotate"},
    }


def _pending(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    status = obj.get("status") or {}
    return LABEL_REQUEST in labels and not status.get("phase") and not status.get("request")


def _request_of(obj: Mapping[str, Any], now: datetime) -> RotationRequest | None:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    at = parse_rfc3339(str((meta.get("annotations") or {}).get("chamberlain.dev/requested-at", ""))) or now
    try:
        return RotationRequest(secret=str(spec.get("secret", "")), kind="webhook",
                               reason=str(spec.get("reason", "")) or "webhook", requested_at=at,
                               request_id=str(meta.get("name", "")))
    except RequestError:
        return None


class RunObjectStore:
    """Persisted requests as RotationRun objects in ``namespace`` (the controller's), created create-only."""

    def __init__(self, kube: StoreKube, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace

    def exists(self, name: str) -> bool:
        return self._kube.get_custom_object(RUN_OBJECTS, self._namespace, name) is not None

    def accept(self, request: RotationRequest, path: str) -> bool:
        try:
            self._kube.create_custom_object(RUN_OBJECTS, self._namespace, manifest(request, self._namespace, path))
        except KubeConflict:
            return False
        return True

    def pending(self, now: datetime) -> list[RotationRequest]:
        objects = self._kube.list_custom_objects(RUN_OBJECTS, self._namespace, label=LABEL_REQUEST)
        found = [r for o in objects if _pending(o) and is_stored(str((o.get("metadata") or {}).get("name", "")))
                 and (r := _request_of(o, now)) is not None]
        return sorted(found, key=lambda r: (r.requested_at, r.request_id))

    def settle(self, name: str, state: str, message: str = "", run: str | None = None) -> None:
        status: dict[str, Any] = {"request": {"state": state, "message": message[:200], "run": run}}
        try:
            self._kube.patch_custom_object_status(RUN_OBJECTS, self._namespace, name, status)
        except KubeNotFound:
            return


__all__ = ["LABEL_REQUEST", "PREFIX", "MemoryStore", "RequestStore", "RunObjectStore", "StoreKube", "is_stored",
           "manifest", "object_name"]
