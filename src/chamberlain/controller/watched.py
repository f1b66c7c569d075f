"""What a controller driven by the cluster reads from its watches instead of listing every tick.

``controller run --from-cluster`` already watches its SecretIntents (:mod:`.source`). Three readers of the same
objects used to LIST them on their own: the annotation trigger (every tick: 10k objects a second), the status
reporter (generation, uid and status of every intent, every 30 s) and the persisted webhook requests (RotationRun
objects, every tick). Here they read what the watches saw:

- :class:`IntentObjects` is fed by the SecretIntent reflector (:meth:`seen`, :meth:`gone`, :meth:`listed`). It
  keeps the few objects carrying the rotate annotation (their name, uid and two annotations) and queues, per
  object changed since the last drain, its generation, uid and a summary of its status, which the loop thread
  drains into :class:`~.status.IntentStatus` once per tick. Nothing else of an object is kept.
- :class:`WatchedAnnotations` is the annotation trigger over that table; it remembers the requests it cleared
  itself until the watch shows the change, so a watch event older than the clearing patch never requests the
  same rotation twice.
- :class:`ListWatch` is one kind in one namespace, list then watch, with a label selector; :class:`WatchedRequests`
  keeps the pending persisted webhook requests from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from chamberlain import wellknown as wk
from chamberlain.clock import Clock
from chamberlain.controller.collaborators import Logger, Silent
from chamberlain.controller.source import ObjectSink
from chamberlain.controller.status import Observed, Written
from chamberlain.kube.api import (
    CustomResource,
    KubeCustomObjects,
    KubeError,
    KubeGone,
    KubeWatch,
)
from chamberlain.triggers.annotation import HANDLED, AnnotationTrigger, request_id
from chamberlain.triggers.request import RequestQueue, RotationRequest
from chamberlain.triggers.store import LABEL_REQUEST, RUN_OBJECTS, RunObjectStore, StoreKube, is_stored
from chamberlain.triggers.store import _pending as pending_request
from chamberlain.triggers.store import _request_of as request_of


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class IntentObjects:
    """SecretIntent objects as the watch sees them, for the annotation trigger and the status reporter.
    Thread-safe: the reflector thread feeds it, the loop thread reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.on_rotate: Callable[[], None] | None = None  # a new rotate annotation: the loop ticks at once
        self._names: set[str] = set()
        self._rotate: dict[str, dict[str, Any]] = {}  # name -> the minimal object the annotation trigger reads
        self._changed: dict[str, Observed | None] = {}  # since the last drain (None: gone)

    def seen(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = _name(obj)
        if not name:
            return
        generation = meta.get("generation")
        status = obj.get("status")
        observed = Observed(generation if isinstance(generation, int) else None, str(meta.get("uid") or "") or None,
                            Written.of(status) if isinstance(status, Mapping) and status else None)
        annotations = meta.get("annotations") or {}
        rotate = annotations.get(wk.ANNOTATION_ROTATE)
        with self._lock:
            self._names.add(name)
            self._changed[name] = observed
            if isinstance(rotate, str):
                kept = {wk.ANNOTATION_ROTATE: rotate, **({HANDLED: annotations[HANDLED]} if HANDLED in annotations
                                                        else {})}
                fresh = self._rotate.get(name, {}).get("metadata", {}).get("annotations") != kept
                self._rotate[name] = {"kind": "SecretIntent", "metadata": {
                    "name": name, "namespace": meta.get("namespace"), "uid": meta.get("uid"), "annotations": kept}}
            else:
                fresh = False
                self._rotate.pop(name, None)
        if fresh and self.on_rotate is not None:
            self.on_rotate()

    def gone(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)
            self._rotate.pop(name, None)
            self._changed[name] = None

    def listed(self, names: set[str]) -> None:
        with self._lock:
            missing = self._names - names
        for name in missing:
            self.gone(name)

    def drain(self) -> dict[str, Observed | None]:
        """The objects changed since the last drain (None: deleted), and forget them (loop thread)."""
        with self._lock:
            changed, self._changed = self._changed, {}
        return changed

    def rotate_objects(self) -> list[dict[str, Any]]:
        """The objects carrying the rotate annotation, shaped as :func:`~chamberlain.triggers.annotation.detect`
        reads them."""
        with self._lock:
            return list(self._rotate.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)


class WatchedAnnotations(AnnotationTrigger):
    """The annotation trigger over :class:`IntentObjects`: a poll asks the API server nothing."""

    def __init__(self, kube: KubeCustomObjects, queue: RequestQueue, clock: Clock, namespace: str,
                 objects: IntentObjects) -> None:
        super().__init__(kube, queue, clock, namespace)
        self.objects = objects
        self._cleared: dict[str, str] = {}  # name -> request id cleared by me, until the watch shows it

    def poll(self) -> list[RotationRequest]:
        from chamberlain.triggers.annotation import detect

        objects = self.objects.rotate_objects()
        current = {_name(o): request_id(o) for o in objects}
        for name in [n for n, key in self._cleared.items() if current.get(n) != key]:
            del self._cleared[name]  # the watch saw the clearing patch (or a new value): nothing to guard
        fresh = [o for o in objects if self._cleared.get(_name(o)) != current.get(_name(o))]
        queued = []
        for request in detect(fresh, self._clock.now()):
            if self._queue.put(request) == "queued":
                queued.append(request)
        return queued

    def clear_annotation(self, name: str, request: RotationRequest | None = None, result: str = "done") -> bool:
        seen = next((request_id(o) for o in self.objects.rotate_objects() if _name(o) == name), None)
        cleared = super().clear_annotation(name, request, result)
        if cleared and seen is not None:
            self._cleared[name] = seen
        return cleared


class ListWatch:
    """One kind of custom object in one namespace, with an optional label selector: list (paged), then watch from
    the list's resourceVersion; a 410 Gone lists again. Feeds an :class:`ObjectSink`. :meth:`step` runs one list
    or one watch (tests drive it); :meth:`start` runs steps on a daemon thread."""

    def __init__(self, kube: KubeWatch, resource: CustomResource, namespace: str, sink: ObjectSink, *,
                 label: str | None = None, watch_seconds: int = 240, retry: float = 5.0,
                 log: Logger | None = None) -> None:
        self.kube, self.resource, self.namespace, self.sink = kube, resource, namespace, sink
        self.label, self.watch_seconds, self.retry = label, watch_seconds, retry
        self.log = log if log is not None else Silent()
        self.resource_version: str | None = None
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.lists = 0

    def step(self) -> None:
        if self.resource_version is None:
            self.list()
            return
        try:
            for event in self.kube.watch_custom_objects(self.resource, self.namespace, self.resource_version,
                                                        self.watch_seconds, label=self.label):
                if event.type == "DELETED":
                    self.sink.gone(event.name)
                elif event.type in ("ADDED", "MODIFIED"):
                    self.sink.seen(event.object)
                if event.resource_version:
                    self.resource_version = event.resource_version
        except KubeGone:
            self.resource_version = None

    def list(self) -> None:
        names: set[str] = set()
        page = ""
        while True:
            got = self.kube.list_custom_objects_versioned(self.resource, self.namespace, page=page, label=self.label)
            for obj in got.items:
                names.add(_name(obj))
                self.sink.seen(obj)
            if not got.next_page:
                break
            page = got.next_page
        self.sink.listed(names)
        self.resource_version = got.resource_version
        self.lists += 1

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"chamberlain-watch-{self.resource.plural}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                before = self.resource_version
                self.step()
                if before is not None and before == self.resource_version:
                    self.stop_event.wait(1.0)  # a watch that ended at once without news (a proxy): never spin
            except KubeError as exc:
                self.log.warning("cannot watch", resource=self.resource.describe(self.namespace),
                                 error=type(exc).__name__, detail=str(exc)[:200])
                self.resource_version = None
                self.stop_event.wait(self.retry)
            except Exception as exc:  # a bug must not end the watch silently
                self.log.warning("watch failed (internal error)", resource=self.resource.describe(self.namespace),
                                 error=type(exc).__name__)
                self.resource_version = None
                self.stop_event.wait(self.retry)


class WatchKube(KubeWatch, StoreKube, Protocol):
    """What :class:`WatchedRequests` needs: the store's calls and a watch."""


class _Pending:
    """The pending persisted requests, by object name (an :class:`ObjectSink`)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.objects: dict[str, RotationRequest] = {}

    def seen(self, obj: Mapping[str, Any]) -> None:
        name = _name(obj)
        request = request_of(obj, self.clock.now()) if pending_request(obj) and is_stored(name) else None
        with self.lock:
            if request is None:
                self.objects.pop(name, None)
            else:
                self.objects[name] = request

    def gone(self, name: str) -> None:
        with self.lock:
            self.objects.pop(name, None)

    def listed(self, names: set[str]) -> None:
        with self.lock:
            for name in set(self.objects) - names:
                del self.objects[name]


class WatchedRequests(RunObjectStore):
    """Persisted webhook requests (:class:`~chamberlain.triggers.store.RunObjectStore`) whose :meth:`pending` reads
    a watch of the request objects (label ``chamberlain.dev/request``) instead of listing them every tick. The
    first call lists (so the first tick sees what is already pending), then a daemon thread watches."""

    def __init__(self, kube: WatchKube, namespace: str, clock: Clock, log: Logger | None = None) -> None:
        super().__init__(kube, namespace)
        self._pending = _Pending(clock)
        self.watch = ListWatch(kube, RUN_OBJECTS, namespace, self._pending, label=LABEL_REQUEST, log=log)

    def pending(self, now: datetime) -> list[RotationRequest]:
        if self.watch.resource_version is None and self.watch.lists == 0:
            self.watch.list()  # KubeError: the loop logs it and asks again next tick
            self.watch.start()
        with self._pending.lock:
            found = list(self._pending.objects.values())
        return sorted(found, key=lambda r: (r.requested_at, r.request_id))

    def stop(self) -> None:
        self.watch.stop()


__all__ = ["IntentObjects", "ListWatch", "ObjectSink", "Observed",
           "WatchedAnnotations", "WatchedRequests"]
