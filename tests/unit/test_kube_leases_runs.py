"""Leases, RotationRun objects and Events on the in-memory fake (it must behave like the API server the lab test
proves), the MicroTime wire format, and the RotationRun CRD: structural, status subresource, rendered with the
other CRDs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
import yaml

from chamberlain.intent.model import GROUP, VERSION
from chamberlain.kube.api import (
    CustomResource,
    KubeConflict,
    KubeError,
    KubeLeases,
    KubeNotFound,
    KubeRunObjects,
    KubeUnavailable,
    LeaseRecord,
)
from chamberlain.kube.fake import FakeKube, merge_patch
from chamberlain.render.crds import crd, crd_file_name, crd_kinds, rotation_run_crd
from tests.unit.test_crds import structural_problems
from tests.unit.test_render import render, tree_digest
from tests.unit.test_render_eso import strict

NS, LEASE = "chamberlain-system", "chamberlain-controller"
PLURAL = "rotationruns"
T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def _record(holder: str | None = "replica-a", at: datetime = T0, rv: str = "") -> LeaseRecord:
    return LeaseRecord(holder=holder, duration_seconds=15, acquired=at, renewed=at, resource_version=rv)


def _run(name: str = "run-1", **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RotationRun",
        "metadata": {"name": name, "namespace": NS, "labels": {"chamberlain.dev/secret": "orders-db"}},
        "spec": {"secret": "orders-db", "path": "secret/prod/orders-db", "trigger": "manual",
                 "reason": "test", "mode": "rotate"},
    }
    if status:
        body["status"] = status
    return body


# ------------------------------------------------------------------------------------------------- leases


def test_the_fake_is_a_lease_store_and_a_run_object_store() -> None:
    kube = FakeKube()
    leases: KubeLeases = kube
    runs: KubeRunObjects = kube
    assert leases is runs


def test_lease_create_get_and_replace_bump_the_resource_version() -> None:
    kube = FakeKube()
    assert kube.get_lease(NS, LEASE) is None
    created = kube.create_lease(NS, LEASE, _record())
    assert created.resource_version and created.holder == "replica-a"
    assert kube.get_lease(NS, LEASE) == created
    renewed = kube.replace_lease(NS, LEASE, LeaseRecord(
        "replica-a", 15, created.acquired, T0 + timedelta(seconds=5), 0, created.resource_version))
    assert int(renewed.resource_version) > int(created.resource_version)
    assert renewed.renewed == T0 + timedelta(seconds=5) and renewed.acquired == T0
    assert kube.get_lease(NS, LEASE) == renewed


def test_lease_create_twice_is_a_conflict() -> None:
    kube = FakeKube()
    kube.create_lease(NS, LEASE, _record())
    with pytest.raises(KubeConflict):
        kube.create_lease(NS, LEASE, _record("replica-b"))
    assert kube.get_lease(NS, LEASE).holder == "replica-a"  # type: ignore[union-attr]


def test_two_replicas_racing_for_one_version_exactly_one_wins() -> None:
    kube = FakeKube()
    seen = kube.create_lease(NS, LEASE, _record())
    later = T0 + timedelta(minutes=1)
    won = kube.replace_lease(NS, LEASE, _record("replica-b", later, seen.resource_version))
    with pytest.raises(KubeConflict):
        kube.replace_lease(NS, LEASE, _record("replica-c", later, seen.resource_version))
    assert kube.get_lease(NS, LEASE) == won and won.holder == "replica-b"


@pytest.mark.parametrize(("label", "rv", "error"), [
    ("missing lease", "1", KubeNotFound),
    ("no precondition", "", KubeConflict),
])
def test_lease_replace_refusals(label: str, rv: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        FakeKube().replace_lease(NS, LEASE, _record(rv=rv))


def test_lease_release_keeps_null_holder_and_times_are_utc() -> None:
    kube = FakeKube()
    plus_two = timezone(timedelta(hours=2))
    created = kube.create_lease(NS, LEASE, _record(at=T0.astimezone(plus_two)))
    assert created.acquired == T0 and created.acquired.tzinfo == UTC  # type: ignore[union-attr]
    released = kube.replace_lease(NS, LEASE, LeaseRecord(None, 15, created.acquired, None, 1,
                                                         created.resource_version))
    assert (released.holder, released.renewed, released.transitions) == (None, None, 1)


def test_a_down_api_server_is_unavailable() -> None:
    kube = FakeKube()
    kube.down = True
    with pytest.raises(KubeUnavailable):
        kube.get_lease(NS, LEASE)
    with pytest.raises(KubeUnavailable):
        kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run())
    with pytest.raises(KubeUnavailable):
        kube.create_event(NS, {"kind": "RotationRun", "name": "x"}, "Started", "m")


# ------------------------------------------------------------------------------------------ custom objects


def test_custom_object_create_drops_status_and_conflicts_when_it_exists() -> None:
    kube = FakeKube()
    obj = kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run(phase="promoted"))
    assert "status" not in obj  # the status subresource: create ignores status, like the API server
    meta = obj["metadata"]
    assert meta["namespace"] == NS and meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1
    assert kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1") == obj
    assert [o["metadata"]["name"] for o in kube.created_custom_objects] == ["run-1"]
    with pytest.raises(KubeConflict):
        kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run())
    assert len(kube.created_custom_objects) == 1


def test_custom_object_create_refuses_a_namespace_mismatch() -> None:
    body = _run()
    body["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(KubeError):
        FakeKube().create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, body)


def test_status_patch_is_a_merge_patch_and_bumps_the_resource_version() -> None:
    kube = FakeKube()
    created = kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run())
    conditions = [{"type": "Ready", "status": "False", "reason": "InProgress", "message": "",
                   "lastTransitionTime": "2026-11-28T03:00:00Z"}]
    first = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1", {
        "phase": "staged", "runId": "run-1", "attempts": 1, "nextRetryAt": "2026-11-28T03:01:00Z",
        "notes": {"a": "1"}, "conditions": conditions})
    assert first["status"]["phase"] == "staged" and first["spec"] == created["spec"]
    assert int(first["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    second = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1", {
        "phase": "promoted", "currentVersion": 4, "nextRetryAt": None, "notes": {"b": "2"}, "conditions": []})
    status = second["status"]
    assert status["phase"] == "promoted" and status["currentVersion"] == 4 and status["attempts"] == 1
    assert "nextRetryAt" not in status  # None removes the key
    assert status["notes"] == {"a": "1", "b": "2"}  # objects merge
    assert status["conditions"] == []  # lists replace
    assert kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1") == second
    assert [p[3]["phase"] for p in kube.status_patches] == ["staged", "promoted"]
    again = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1", {"phase": "promoted"})
    assert again["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]  # a no-op


def test_status_patch_of_a_missing_object_is_not_found() -> None:
    with pytest.raises(KubeNotFound):
        FakeKube().patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "nope", {"phase": "x"})


def test_status_patch_never_leaks_into_the_caller_dict() -> None:
    kube = FakeKube()
    kube.create_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, _run())
    status: dict[str, Any] = {"notes": {"a": "1"}}
    got = kube.patch_custom_object_status(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1", status)
    got["status"]["notes"]["a"] = "changed"
    assert status == {"notes": {"a": "1"}}
    assert kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "run-1")["status"]["notes"] == {"a": "1"}  # type: ignore[index]


@pytest.mark.parametrize(("target", "patch", "expected"), [
    ({"a": 1}, {"a": None}, {}),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}, {"a": {"c": 2, "d": 3}}),
    ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
    ({"a": 1}, {"b": {"c": None}}, {"a": 1, "b": {}}),
], ids=["null-removes", "nested-merge", "list-replaces", "null-in-new-object"])
def test_merge_patch(target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_patch(target, patch) == expected


# ------------------------------------------------------------------------------------------------- events


def test_events_are_recorded_in_order() -> None:
    kube = FakeKube()
    involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RotationRun", "name": "run-1", "namespace": NS}
    kube.create_event(NS, involved, "Started", "rotation of orders-db started")
    kube.create_event(NS, involved, "Held", "needs a human", "Warning")
    assert [(e.reason, e.type) for e in kube.events] == [("Started", "Normal"), ("Held", "Warning")]
    assert kube.events[0].involved == involved and kube.events[0].namespace == NS
    assert all(e.reporting_component == "chamberlain-controller" for e in kube.events)


def test_a_forbidden_event_never_fails_the_caller() -> None:
    kube = FakeKube()
    kube.events_forbidden = True
    kube.create_event(NS, {"kind": "RotationRun", "name": "run-1"}, "Started", "m")
    assert kube.events == [] and kube.dropped_events == 1


# ------------------------------------------------------------------------------------------ wire format


def test_micro_time_always_has_six_fractional_digits_in_utc() -> None:
    pytest.importorskip("kubernetes")
    from chamberlain.kube.client import micro_time

    assert micro_time(T0) == "2026-11-28T03:00:00.000000Z"
    assert micro_time(T0.astimezone(timezone(timedelta(hours=-5))) + timedelta(microseconds=7)) == (
        "2026-11-28T03:00:00.000007Z")
    with pytest.raises(ValueError, match="naive"):
        micro_time(datetime(2026, 1, 1))  # naive on purpose


def test_lease_wire_round_trip() -> None:
    pytest.importorskip("kubernetes")
    from chamberlain.kube.client import KubeClient

    record = LeaseRecord("replica-a", 15, T0, T0 + timedelta(microseconds=5), 2)
    spec = KubeClient._lease_spec(record)
    assert spec == {"holderIdentity": "replica-a", "leaseDurationSeconds": 15,
                    "acquireTime": "2026-11-28T03:00:00.000000Z", "renewTime": "2026-11-28T03:00:00.000005Z",
                    "leaseTransitions": 2}
    back = KubeClient._to_lease({"metadata": {"resourceVersion": "42"}, "spec": spec})
    assert back == LeaseRecord("replica-a", 15, T0, T0 + timedelta(microseconds=5), 2, "42")
    released = KubeClient._lease_spec(LeaseRecord(None, 15, T0, None))
    assert released["holderIdentity"] is None and released["renewTime"] is None  # a merge patch clears them
    assert KubeClient._to_lease({"metadata": {}, "spec": {}}) == LeaseRecord(None, 0, None, None)


# ------------------------------------------------------------------------------------------------ the CRD


def _object_nodes(node: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(where, node)]
    for name, sub in node.get("properties", {}).items():
        out += _object_nodes(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += _object_nodes(node[key], f"{where}.{key}")
    return out


def _schema() -> dict[str, Any]:
    return rotation_run_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_rotation_run_crd_is_structural_and_every_node_has_a_type() -> None:
    schema = _schema()
    assert structural_problems(schema) == []
    untyped = [where for where, node in _object_nodes(schema) if "type" not in node]
    assert untyped == []
    assert "x-kubernetes-preserve-unknown-fields" not in yaml.safe_dump(schema["properties"]["spec"])


def test_rotation_run_crd_shape() -> None:
    doc = rotation_run_crd(labels={"a": "b"}, annotations={"c": "d"})
    assert doc == crd("RotationRun", labels={"a": "b"}, annotations={"c": "d"})
    assert doc["metadata"] == {"name": f"rotationruns.{GROUP}", "labels": {"a": "b"}, "annotations": {"c": "d"}}
    spec = doc["spec"]
    assert spec["group"] == GROUP and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "RotationRun" and spec["names"]["plural"] == PLURAL
    (version,) = spec["versions"]
    assert version["name"] == VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Secret", "Phase", "Trigger", "Age"]
    run_spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(run_spec["properties"]) == {"secret", "path", "trigger", "reason", "mode"}
    assert all(p["type"] == "string" for p in run_spec["properties"].values())
    assert run_spec["required"] == ["secret", "path", "trigger"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert {"phase", "runId", "attempts", "currentVersion", "previousVersion", "conditions"} <= set(
        status["properties"])
    condition = status["properties"]["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime"} <= set(condition)
    assert "RotationRun" in crd_kinds() and crd_file_name("RotationRun") == f"{GROUP}_rotationruns.yaml"


def _nullable_as_type(schema: dict[str, Any]) -> dict[str, Any]:
    """Draft 4 knows no ``nullable``: spell it as a type union so jsonschema checks what the API server does."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if node.pop("nullable", False):
            node["type"] = [node["type"], "null"]
        stack.extend(node.get("properties", {}).values())
        stack.extend(node[k] for k in ("items", "additionalProperties") if isinstance(node.get(k), dict))
    return schema


def test_rotation_run_crd_accepts_a_published_run_and_rejects_a_bad_one() -> None:
    validator = jsonschema.Draft4Validator(_nullable_as_type(strict(_schema())))
    good = _run(phase="staged", runId="run-1", attempts=2, previousVersion=3, currentVersion=None,
                nextRetryAt=None, notes={"k": "v"}, rotatedKeys=["password"],
                conditions=[{"type": "Ready", "status": "False", "reason": "InProgress", "message": "",
                             "lastTransitionTime": "2026-11-28T03:00:00Z"}])
    assert list(validator.iter_errors(good)) == []
    for mutate in (lambda d: d["spec"].pop("secret"), lambda d: d["spec"].update(colour="blue"),
                   lambda d: d["status"].update(attempts="two"),
                   lambda d: d["status"]["conditions"][0].update(status="maybe")):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert list(validator.iter_errors(bad))


def test_render_emits_the_rotation_run_crd_deterministically() -> None:
    tree = render("base")
    path = f"crds/{GROUP}_rotationruns.yaml"
    assert path in tree
    assert f"{GROUP}_rotationruns.yaml" in yaml.safe_load(tree["crds/kustomization.yaml"])["resources"]
    rendered = yaml.safe_load(tree[path])
    assert rendered["metadata"]["name"] == f"rotationruns.{GROUP}"
    assert rendered["spec"] == rotation_run_crd()["spec"]
    render.cache_clear()
    assert tree_digest(render("base")) == tree_digest(tree)


def test_a_403_names_the_verb_resource_and_identity_rbac_refused() -> None:
    """Missing RBAC is a clear error: RBAC's own sentence (verb, resource, namespace, identity), no crash."""
    import json as _json

    from kubernetes.client.rest import ApiException

    from chamberlain.kube.api import KubeForbidden
    from chamberlain.kube.client import _map_error

    exc = ApiException(status=403, reason="Forbidden")
    exc.body = _json.dumps({"kind": "Status", "message": 'secrets is forbidden: User "system:serviceaccount:'
                            'chamberlain-system:chamberlain" cannot list resource "secrets" in API group "" in the '
                            'namespace "payments"'})
    err = _map_error(exc, "Secrets payments")
    assert isinstance(err, KubeForbidden)
    assert 'cannot list resource "secrets"' in str(err) and "chamberlain-system:chamberlain" in str(err)
    garbled = ApiException(status=403, reason="Forbidden")
    garbled.body = "<html>not json</html>"
    assert str(_map_error(garbled, "Secrets payments")) == "Secrets payments: forbidden (403)"
