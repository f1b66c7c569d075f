"""The annotation trigger (pure detection, polling and clearing through the fake Kube) and the manual trigger with
its compromised-namespace bulk selection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import FakeClock
from chamberlain.intent.model import GROUP, VERSION, SecretIntent
from chamberlain.kube.api import CustomResource
from chamberlain.kube.fake import FakeKube
from chamberlain.triggers.annotation import HANDLED, PLURAL, RESULT, AnnotationTrigger, detect
from chamberlain.triggers.manual import for_namespace, manual
from chamberlain.triggers.request import MemoryQueue

NOW = datetime(2026, 3, 1, tzinfo=UTC)
NS = "chamberlain-system"


def obj(name: str, annotation: str | None = None, kind: str = "SecretIntent", uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid or f"uid-{name}"}
    if annotation is not None:
        meta["annotations"] = {wk.ANNOTATION_ROTATE: annotation, "other": "x"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta}


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([obj("a")], []),
        ([obj("a", "leaked in ticket 12")], [("a", "leaked in ticket 12")]),
        ([obj("a", "")], [("a", "annotation")]),
        ([obj("a", "multi\nline")], [("a", "multi line")]),
        ([obj("a", "x", kind="RotationPolicy")], []),
        ([obj("Bad_Name", "x"), obj("b", "y")], [("b", "y")]),
        ([obj("a", "x"), obj("b"), obj("c", "z")], [("a", "x"), ("c", "z")]),
    ],
    ids=["no-annotation", "reason", "empty-reason", "sanitized-reason", "other-kind", "bad-name-skipped", "several"],
)
def test_detect(objects: list[dict[str, Any]], expected: list[tuple[str, str]]) -> None:
    found = detect(objects, NOW)
    assert [(r.secret, r.reason) for r in found] == expected
    assert all(r.kind == "annotation" and r.requested_at == NOW for r in found)


def test_detect_id_is_stable_per_object_and_reason() -> None:
    (a1,) = detect([obj("a", "x")], NOW)
    (a2,) = detect([obj("a", "x")], NOW)
    (a3,) = detect([obj("a", "y")], NOW)
    (a4,) = detect([obj("a", "x", uid="recreated")], NOW)
    assert a1.request_id == a2.request_id
    assert len({a1.request_id, a3.request_id, a4.request_id}) == 3


def _trigger() -> tuple[FakeKube, MemoryQueue, AnnotationTrigger]:
    kube, queue = FakeKube(), MemoryQueue()
    return kube, queue, AnnotationTrigger(kube, queue, FakeClock(NOW), NS)


def test_poll_queues_once_and_clear_ends_it() -> None:
    kube, queue, trigger = _trigger()
    kube.add_custom_object(CustomResource(GROUP, VERSION, PLURAL), obj("db", "compromised"))
    kube.add_custom_object(CustomResource(GROUP, VERSION, PLURAL), obj("quiet"))
    assert [r.secret for r in trigger.poll()] == ["db"]
    assert trigger.poll() == []  # still annotated: same key, no second request
    request = queue.take(timeout=0)
    assert request is not None
    assert trigger.poll() == []  # in flight: still no second request
    assert trigger.clear_annotation("db", request) is True
    queue.done("db")
    stored = kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "db")
    assert stored is not None
    annotations = stored["metadata"]["annotations"]
    assert annotations.pop(HANDLED).startswith("sha256:") and annotations.pop(RESULT) == "done"
    assert annotations == {"other": "x"}  # only ours removed
    assert trigger.poll() == []
    assert trigger.clear_annotation("db", request) is False  # idempotent
    assert trigger.clear_annotation("absent") is False
    # GitOps puts the same value back: it was handled, nothing is queued; a new value is
    kube.patch_custom_object_annotations(CustomResource(GROUP, VERSION, PLURAL), NS, "db",
                                         {wk.ANNOTATION_ROTATE: "compromised"})
    assert trigger.poll() == []
    kube.patch_custom_object_annotations(CustomResource(GROUP, VERSION, PLURAL), NS, "db",
                                         {wk.ANNOTATION_ROTATE: "compromised again"})
    assert [r.reason for r in trigger.poll()] == ["compromised again"]


def test_clear_keeps_a_newer_annotation() -> None:
    kube, queue, trigger = _trigger()
    kube.add_custom_object(CustomResource(GROUP, VERSION, PLURAL), obj("db", "first"))
    trigger.poll()
    request = queue.take(timeout=0)
    assert request is not None
    kube.patch_custom_object_annotations(CustomResource(GROUP, VERSION, PLURAL), NS, "db",
                                         {wk.ANNOTATION_ROTATE: "second"})
    assert trigger.clear_annotation("db", request) is False
    queue.done("db")
    (again,) = trigger.poll()
    assert again.reason == "second"


def test_clear_retries_on_conflict() -> None:
    kube, _, trigger = _trigger()
    kube.add_custom_object(CustomResource(GROUP, VERSION, PLURAL), obj("db", "x"))
    real = kube.patch_custom_object_annotations
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # someone edits the object between our read and our patch
            real(CustomResource(GROUP, VERSION, PLURAL), NS, "db", {"touched": "yes"})
        return real(*args, **kwargs)

    kube.patch_custom_object_annotations = flaky  # type: ignore[method-assign]
    assert trigger.clear_annotation("db") is True
    stored = kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "db")
    assert stored is not None and wk.ANNOTATION_ROTATE not in stored["metadata"]["annotations"]


# ------------------------------------------------------------------------------------------------- manual


def intent(name: str, consumers: list[str], producer: str | None = None) -> SecretIntent:
    source: dict[str, Any] = (
        {"publication": {"namespace": producer, "secretName": "s"}} if producer
        else {"generate": {"password": {"type": "password"}}}
    )
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1",
        "kind": "SecretIntent",
        "metadata": {"name": name},
        "spec": {
            "owner": "team",
            "purpose": "test",
            "classification": "derived" if producer else "runtime",
            "source": source,
            "consumers": [{"namespace": ns, "secretName": name} for ns in consumers],
        },
    })


def test_manual() -> None:
    request = manual("db-password", "rotation drill", NOW)
    assert (request.secret, request.kind, request.reason) == ("db-password", "manual", "rotation drill")


INTENTS = [
    intent("shop-db", ["shop", "reporting"]),
    intent("billing-key", ["billing"]),
    intent("pg-operator-creds", ["shop"], producer="databases"),
    intent("config", []),
]


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("shop", ["pg-operator-creds", "shop-db"]),
        ("reporting", ["shop-db"]),
        ("databases", ["pg-operator-creds"]),
        ("billing", ["billing-key"]),
        ("nobody", []),
    ],
    ids=["consumer-in-two-intents", "second-consumer", "producer-namespace", "single", "unknown-namespace"],
)
def test_for_namespace(namespace: str, expected: list[str]) -> None:
    requests = for_namespace(INTENTS, namespace, "compromise", NOW)
    assert [r.secret for r in requests] == expected
    assert all(r.kind == "manual" and r.reason == "compromise" for r in requests)


def test_bulk_requests_queue_one_each() -> None:
    queue = MemoryQueue()
    outcomes = [queue.put(r) for r in for_namespace(INTENTS, "shop", "compromise", NOW)]
    assert outcomes == ["queued", "queued"]
