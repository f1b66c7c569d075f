"""Proof against the real kube-apiserver: the annotation trigger finds ``chamberlain.dev/rotate`` on a SecretIntent
custom resource through :class:`~chamberlain.kube.client.KubeClient`, queues exactly one request however often it
polls, and clearing removes only that annotation (with a resourceVersion precondition the API server enforces)."""

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
from chamberlain.triggers.annotation import PLURAL, AnnotationTrigger
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
