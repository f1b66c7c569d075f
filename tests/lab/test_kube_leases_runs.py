"""Proof against the real kube-apiserver that :class:`~chamberlain.kube.client.KubeClient` implements
:class:`~chamberlain.kube.api.KubeLeases` and :class:`~chamberlain.kube.api.KubeRunObjects` the way the fake does:
Lease create/replace with a resourceVersion precondition (MicroTime accepted and read back to the microsecond), the
RotationRun CRD accepted as structural, a RotationRun created and its status merge-patched, and Events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chamberlain.clock import SystemClock
from chamberlain.intent.model import GROUP, VERSION
from chamberlain.kube.api import CustomResource, KubeConflict, KubeNotFound, LeaseRecord
from chamberlain.kube.client import KubeClient
from chamberlain.render.crds import rotation_run_crd
from tests.lab.conftest import RunningLab

pytestmark = pytest.mark.lab

kubernetes = pytest.importorskip("kubernetes")

NS = "kube-leases-runs"
PLURAL = "rotationruns"
T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


@pytest.fixture
def kube(lab: RunningLab, make_namespace: Callable[[str], str]) -> Iterator[KubeClient]:
    make_namespace(NS)
    client = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def run_crd(kube: KubeClient) -> str:
    kube.apply_manifest(rotation_run_crd(), field_manager="chamberlain-test")
    kube.wait_crd_established(f"{PLURAL}.{GROUP}")
    return f"{PLURAL}.{GROUP}"


def test_lease_create_get_replace_and_stale_replace(kube: KubeClient) -> None:
    name = "leader-a"
    assert kube.get_lease(NS, name) is None
    created = kube.create_lease(NS, name, LeaseRecord("replica-a", 15, T0, T0))
    assert created.resource_version
    assert (created.holder, created.duration_seconds, created.acquired, created.renewed, created.transitions) == (
        "replica-a", 15, T0, T0, 0)
    assert created.acquired is not None and created.acquired.tzinfo is not None
    assert created.acquired.utcoffset() == timedelta(0)
    with pytest.raises(KubeConflict):
        kube.create_lease(NS, name, LeaseRecord("replica-b", 15, T0, T0))
    assert kube.get_lease(NS, name) == created

    later = T0 + timedelta(seconds=5, microseconds=123456)  # MicroTime keeps the microseconds
    renewed = kube.replace_lease(NS, name, LeaseRecord("replica-a", 15, T0, later, 0, created.resource_version))
    assert renewed.renewed == later and renewed.resource_version != created.resource_version
    assert kube.get_lease(NS, name) == renewed

    # A second replica that read the first version loses: the API server enforces the precondition.
    with pytest.raises(KubeConflict):
        kube.replace_lease(NS, name, LeaseRecord("replica-b", 15, later, later, 1, created.resource_version))
    taken = kube.replace_lease(NS, name, LeaseRecord("replica-b", 15, later, later, 1, renewed.resource_version))
    assert (taken.holder, taken.transitions) == ("replica-b", 1)

    released = kube.replace_lease(NS, name, LeaseRecord(None, 15, later, None, 1, taken.resource_version))
    assert (released.holder, released.renewed) == (None, None)


def test_lease_replace_of_a_deleted_lease_is_refused(kube: KubeClient, k8s: Any) -> None:
    name = "leader-gone"
    created = kube.create_lease(NS, name, LeaseRecord("replica-a", 15, T0, T0))
    kubernetes.client.CoordinationV1Api(k8s).delete_namespaced_lease(name, NS)
    # Leases allow create-on-update: a plain PUT would bring it back. The replace must not.
    with pytest.raises(KubeNotFound):
        kube.replace_lease(NS, name, LeaseRecord("replica-a", 15, T0, T0, 0, created.resource_version))
    assert kube.get_lease(NS, name) is None
    with pytest.raises(KubeConflict):  # no precondition at all: refused before it reaches the server
        kube.replace_lease(NS, name, LeaseRecord("replica-a", 15, T0, T0))
    assert kube.get_lease(NS, name) is None


def _run(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RotationRun",
        "metadata": {"name": name, "namespace": NS, "labels": {"chamberlain.dev/secret": "orders-db"}},
        "spec": {"secret": "orders-db", "path": "secret/prod/orders-db", "trigger": "manual", "reason": "lab",
                 "mode": "rotate"},
        "status": {"phase": "ignored-on-create"},
    }


def _conditions(at: str) -> list[dict[str, str]]:
    return [
        {"type": "Ready", "status": "False", "reason": "InProgress", "message": "", "lastTransitionTime": at},
        {"type": "Promoted", "status": "True", "reason": "Promoted", "message": "version 4",
         "lastTransitionTime": at},
    ]


def test_rotation_run_create_patch_status_read_back(kube: KubeClient, run_crd: str, k8s: Any) -> None:
    crd = kubernetes.client.ApiextensionsV1Api(k8s).read_custom_resource_definition(run_crd)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions.get("Established") == "True"
    assert conditions.get("NonStructuralSchema", "False") == "False"

    created = kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run("run-1"))
    assert created["metadata"]["uid"] and "status" not in created  # status subresource: create drops it
    with pytest.raises(KubeConflict):
        kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run("run-1"))

    at = "2026-11-28T03:00:00Z"
    first = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1", {
        "phase": "staged", "runId": "run-1", "attempts": 1, "previousVersion": 3, "currentVersion": None,
        "nextRetryAt": "2026-11-28T03:01:00Z", "notes": {"a": "1"}, "rotatedKeys": ["password"],
        "lastError": None, "conditions": _conditions(at)})
    assert first["status"]["phase"] == "staged" and first["spec"] == created["spec"]
    assert first["status"]["notes"] == {"a": "1"}  # an unknown field the status schema preserves
    second = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1", {
        "phase": "promoted", "currentVersion": 4, "nextRetryAt": None, "notes": {"b": "2"}})
    status = second["status"]
    assert status["phase"] == "promoted" and status["currentVersion"] == 4 and status["attempts"] == 1
    assert "nextRetryAt" not in status and status["notes"] == {"a": "1", "b": "2"}
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Promoted"]

    back = kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1")
    assert back is not None and back["status"] == status and back["spec"]["trigger"] == "manual"
    listed = kube.list_custom_objects(CustomResource(GROUP, VERSION, PLURAL), NS)
    assert [o["metadata"]["name"] for o in listed] == ["run-1"]

    with pytest.raises(KubeNotFound):
        kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "no-such-run", {"phase": "x"})


def test_rotation_run_status_with_an_empty_transition_time(kube: KubeClient, run_crd: str) -> None:
    """A condition the controller has no time for yet (an empty lastTransitionTime) is still accepted, so one odd
    field never makes the whole status publication fail."""
    kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run("run-empty-time"))
    got = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-empty-time",
                                          {"phase": "pending", "conditions": _conditions("")})
    assert got["status"]["phase"] == "pending"


def test_events_about_a_rotation_run(kube: KubeClient, run_crd: str, k8s: Any) -> None:
    obj = kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run("run-events"))
    involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RotationRun", "name": "run-events", "namespace": NS,
                "uid": obj["metadata"]["uid"]}
    kube.create_event(NS, involved, "RotationStarted", "rotation of orders-db started")
    kube.create_event(NS, involved, "RotationHeld", "x" * 5000, "Warning")  # longer than the API server allows
    events = kubernetes.client.CoreV1Api(k8s).list_namespaced_event(
        NS, field_selector="involvedObject.name=run-events").items
    by_reason = {e.reason: e for e in events}
    assert set(by_reason) == {"RotationStarted", "RotationHeld"}
    started = by_reason["RotationStarted"]
    assert started.type == "Normal" and started.reporting_component == "chamberlain-controller"
    assert started.involved_object.kind == "RotationRun" and started.involved_object.uid == obj["metadata"]["uid"]
    assert by_reason["RotationHeld"].type == "Warning" and len(by_reason["RotationHeld"].message) <= 1024


def test_a_forbidden_event_never_fails_the_caller(lab: RunningLab, kube: KubeClient, k8s: Any,
                                                  make_service_account: Callable[[str, str], str],
                                                  sa_token: Callable[..., str]) -> None:
    """A controller without the grant to create Events (403) keeps working: the event is dropped."""
    make_service_account(NS, "no-events")
    config = kubernetes.client.Configuration()
    config.host = lab.lab.apiserver.address
    config.ssl_ca_cert = str(lab.ca_file)
    config.api_key = {"authorization": f"Bearer {sa_token(NS, 'no-events')}"}
    weak = KubeClient(kubernetes.client.ApiClient(config), clock=SystemClock())
    try:
        weak.create_event(NS, {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": NS}, "Denied", "m")
    finally:
        weak.close()
    events = kubernetes.client.CoreV1Api(k8s).list_namespaced_event(NS, field_selector="involvedObject.name=p").items
    assert [e.reason for e in events] == []  # really refused (the lab runs RBAC), and not raised
