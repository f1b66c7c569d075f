"""Proof against the real kube-apiserver: the annotation trigger finds ``chamberlain.dev/rotate`` on a SecretIntent
custom resource through :class:`~chamberlain.kube.client.KubeClient`, queues exactly one request however often it
polls, and clearing removes only that annotation (with a resourceVersion precondition the API server enforces);
a value acted on is recorded on the object, so GitOps re-applying it rotates nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import FakeClock, SystemClock
from chamberlain.intent.model import GROUP, VERSION
from chamberlain.kube.api import CustomResource, KubeConflict
from chamberlain.kube.client import KubeClient
from chamberlain.render.crds import crd
from chamberlain.triggers.annotation import HANDLED, PLURAL, AnnotationTrigger
from chamberlain.triggers.request import MemoryQueue
from tests.lab.conftest import RunningLab

pytestmark = pytest.mark.lab

NS = "triggers-annotation"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def kube(lab: RunningLab) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        client.apply_manifest(crd("SecretIntent"), field_manager="chamberlain-test")
        client.wait_crd_established(f"{PLURAL}.{GROUP}")
        client.ensure_namespace(NS)
        yield client
    finally:
        client.close()


def _intent(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SecretIntent",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {
            "owner": "team",
            "purpose": "annotation trigger test",
            "classification": "runtime",
            "source": {"generate": {"password": {"type": "password"}}},
        },
    }


def test_annotation_trigger_against_the_real_apiserver(kube: KubeClient) -> None:
    kube.apply_manifest(_intent("leaky", {wk.ANNOTATION_ROTATE: "found in a paste site", "keep": "me"}),
                        "chamberlain-test")
    kube.apply_manifest(_intent("quiet", {"keep": "me"}), "chamberlain-test")
    queue = MemoryQueue()
    trigger = AnnotationTrigger(kube, queue, FakeClock(NOW), NS)

    (request,) = trigger.poll()
    assert (request.secret, request.kind, request.reason) == ("leaky", "annotation", "found in a paste site")
    assert trigger.poll() == []  # the annotation is still there: same key, nothing new queued
    taken = queue.take(timeout=0)
    assert taken is not None

    # A stale resourceVersion is refused by the API server: nothing is removed behind a concurrent edit.
    stale = kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "leaky")
    assert stale is not None
    kube.patch_custom_object_annotations(CustomResource(GROUP, VERSION, PLURAL), NS, "leaky", {"touched": "yes"})
    with pytest.raises(KubeConflict):
        kube.patch_custom_object_annotations(CustomResource(GROUP, VERSION, PLURAL), NS, "leaky",
                                             {wk.ANNOTATION_ROTATE: None},
                                             resource_version=stale["metadata"]["resourceVersion"])

    assert trigger.clear_annotation("leaky", taken) is True
    queue.done("leaky")
    after = kube.get_custom_object(CustomResource(GROUP, VERSION, PLURAL), NS, "leaky")
    assert after is not None
    assert wk.ANNOTATION_ROTATE not in after["metadata"]["annotations"]
    assert after["metadata"]["annotations"]["keep"] == "me"
    assert trigger.poll() == []
    assert trigger.clear_annotation("leaky", taken) is False  # idempotent


def test_a_rotate_annotation_acts_once_per_value_whatever_gitops_reapplies(kube: KubeClient) -> None:
    """A GitOps controller (server-side apply, its own field manager) keeps re-applying the same rotate value: once
    the controller acted on it, the value is recorded as handled on the object and never queues again; a new
    value does, once."""
    si = CustomResource(GROUP, VERSION, PLURAL)
    gitops = "flux-kustomize-controller"
    kube.apply_manifest(_intent("reapplied", {wk.ANNOTATION_ROTATE: "INC-1"}), gitops)
    queue = MemoryQueue()
    trigger = AnnotationTrigger(kube, queue, FakeClock(NOW), NS)
    (request,) = trigger.poll()
    taken = queue.take(timeout=0)
    assert taken == request
    assert trigger.clear_annotation("reapplied", taken) is True  # the run ended: handled, and removed
    queue.done("reapplied")
    for _ in range(3):  # every GitOps sync puts the same value back
        kube.apply_manifest(_intent("reapplied", {wk.ANNOTATION_ROTATE: "INC-1"}), gitops)
        obj = kube.get_custom_object(si, NS, "reapplied")
        assert obj is not None and obj["metadata"]["annotations"][wk.ANNOTATION_ROTATE] == "INC-1"
        assert obj["metadata"]["annotations"][HANDLED].startswith("sha256:"), "server-side apply kept our record"
        assert trigger.poll() == []
    # a fresh trigger (a restarted controller, or a new leader) reads the record from the object
    assert AnnotationTrigger(kube, MemoryQueue(), FakeClock(NOW), NS).poll() == []
    kube.apply_manifest(_intent("reapplied", {wk.ANNOTATION_ROTATE: "INC-2"}), gitops)
    (second,) = trigger.poll()
    assert second.reason == "INC-2"
