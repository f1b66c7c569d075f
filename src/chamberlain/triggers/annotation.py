"""The annotation trigger: ``chamberlain.dev/rotate: "<reason>"`` on a SecretIntent custom resource.

Belongs here: :func:`detect`, pure over the intent objects as the API server returns them (plain dicts), and
:class:`AnnotationTrigger`, which lists the intents through the :class:`~chamberlain.kube.api.KubeCustomObjects`
protocol, queues what :func:`detect` finds, and removes the annotation when the workflow says the run ended
(:meth:`AnnotationTrigger.clear_annotation`). Not here: rotating, or deciding when a run has ended.

The annotation stays on the object while the run is pending and in flight, so every poll sees it again: the
request id (``annotation:<uid>:<hash of the reason>``) is the same each time and the queue drops the repeats.

Once per value: when the run ends (or the request is refused), :meth:`AnnotationTrigger.clear_annotation`
removes the annotation *and* records a hash of the value it acted on in ``chamberlain.dev/rotate-handled`` on
the same object, in the same patch. A GitOps controller that re-applies the same value (the annotation committed
to Git, re-synced every few minutes) therefore rotates nothing: :func:`detect` skips a value whose hash is the
recorded one. A new value (a ticket id, a date) acts once. The record lives on the object in the cluster, so it
survives restarts and leader changes; server-side apply and ``kubectl apply`` keep annotations they do not
manage, so re-applying the intent does not remove it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.clock import Clock
from chamberlain.intent.model import GROUP, SECRET_INTENTS, VERSION
from chamberlain.kube.api import CustomResource, KubeConflict, KubeCustomObjects, KubeNotFound
from chamberlain.triggers.request import RequestError, RequestQueue, RotationRequest

log = logging.getLogger(__name__)

PLURAL = SECRET_INTENTS
INTENT_OBJECTS = CustomResource(GROUP, VERSION, PLURAL)
KIND = "SecretIntent"


HANDLED = "chamberlain.dev/rotate-handled"  # sha256 of the last rotate value acted on (or refused)
RESULT = "chamberlain.dev/rotate-result"  # what became of it: done, or refused and why (no value)


def value_hash(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def handled(obj: Mapping[str, Any]) -> bool:
    """Whether the rotate value on ``obj`` is the one already acted on (a re-application of the same value)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(wk.ANNOTATION_ROTATE)
    return isinstance(value, str) and annotations.get(HANDLED) == value_hash(value)


def request_id(obj: Mapping[str, Any]) -> str | None:
    """The idempotency key of the annotation on ``obj`` (None when it carries none)."""
    meta = obj.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(wk.ANNOTATION_ROTATE)
    if not isinstance(value, str):
        return None
    who = meta.get("uid") or f"{meta.get('namespace', '')}.{meta.get('name', '')}"
    return f"annotation:{who}:{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def detect(objects: Iterable[Mapping[str, Any]], now: datetime) -> list[RotationRequest]:
    """A request for each SecretIntent carrying the rotate annotation. An empty value still requests a rotation
    (the reason becomes "annotation"); objects of other kinds or with unusable names are skipped."""
    requests = []
    for obj in objects:
        if obj.get("kind", KIND) != KIND:
            continue
        key = request_id(obj)
        if key is None or handled(obj):
            continue
        meta = obj["metadata"]
        try:
            requests.append(
                RotationRequest(
                    secret=str(meta.get("name", "")),
                    kind="annotation",
                    reason=str(meta["annotations"][wk.ANNOTATION_ROTATE]).strip() or "annotation",
                    requested_at=now,
                    request_id=key,
                )
            )
        except RequestError as exc:
            log.warning("annotation trigger: skipped an object (%s)", exc)
    return requests


class AnnotationTrigger:
    """Polls the SecretIntents in ``namespace`` (the controller namespace they are rendered into)."""

    def __init__(
        self,
        kube: KubeCustomObjects,
        queue: RequestQueue,
        clock: Clock,
        namespace: str,
    ) -> None:
        self._kube = kube
        self._queue = queue
        self._clock = clock
        self._namespace = namespace

    def poll(self) -> list[RotationRequest]:
        """One pass; returns the requests newly queued."""
        objects = self._kube.list_custom_objects(INTENT_OBJECTS, self._namespace)
        queued = []
        for request in detect(objects, self._clock.now()):
            if self._queue.put(request) == "queued":
                queued.append(request)
                log.info("annotation trigger queued a rotation",
                         extra={"secret": request.secret, "request_id": request.request_id})
        return queued

    def clear_annotation(self, name: str, request: RotationRequest | None = None, result: str = "done") -> bool:
        """Remove the annotation from SecretIntent ``name`` (the workflow calls this when a run ends), recording
        the hash of the value acted on (:data:`HANDLED`) and ``result`` (:data:`RESULT`) in the same patch.

        With ``request``, only the annotation that caused it is removed: if someone re-annotated with a new reason
        meanwhile, that newer signal stays (and is picked up by the next poll). The patch carries the
        resourceVersion read, so a concurrent edit makes it retry instead of removing a newer value. Returns True
        when an annotation was removed; absence (object or annotation) is not an error — the step is idempotent.
        """
        for _ in range(5):
            current = self._kube.get_custom_object(INTENT_OBJECTS, self._namespace, name)
            if current is None or request_id(current) is None:
                return False
            if request is not None and request_id(current) not in request.keys:
                return False
            meta = current["metadata"]
            value = str(meta["annotations"][wk.ANNOTATION_ROTATE])
            try:
                self._kube.patch_custom_object_annotations(
                    INTENT_OBJECTS, self._namespace, name,
                    {wk.ANNOTATION_ROTATE: None, HANDLED: value_hash(value), RESULT: result[:200]},
                    resource_version=meta.get("resourceVersion") or None,
                )
                return True
            except KubeNotFound:
                return False
            except KubeConflict:
                continue
        raise KubeConflict(f"SecretIntent {self._namespace}/{name}: kept changing while clearing "
                           f"{wk.ANNOTATION_ROTATE}")
