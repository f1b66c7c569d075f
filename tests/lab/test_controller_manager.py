"""kube-controller-manager in the lab: what a cluster does beside its API server now happens here too.

A deleted namespace finalizes (its contents go, then it does), garbage collection deletes what an owner owned,
and Deployments and StatefulSets roll out: a Deployment gets a ReplicaSet and a new one when its pod template is
patched the way :func:`chamberlain.propagation.restart` patches it; a StatefulSet gets a ControllerRevision and a
new one likewise. No kubelet runs, so no pod ever starts; the revision objects are what a restart is proven by.
Everything is watched, nothing slept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chamberlain.clock import SystemClock
from chamberlain.kube.api import WorkloadKind
from chamberlain.kube.client import KubeClient
from chamberlain.propagation import WorkloadRef, restart

from . import rollouts
from .conftest import RunningLab

pytestmark = pytest.mark.lab
kubernetes = pytest.importorskip("kubernetes")


def _gone(name: str) -> Callable[[list[Any]], bool]:
    return lambda items: all(rollouts.name_of(o) != name for o in items)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_a_deleted_namespace_finalizes(k8s: Any, make_namespace: Callable[[str], str]) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    ns = make_namespace(_unique("kcm-finalize"))
    core.create_namespaced_config_map(ns, {"metadata": {"name": "content"}, "data": {"k": "v"}})
    core.delete_namespace(ns)
    rollouts.watch_until(core.list_namespace, _gone(ns), timeout=60, what=f"namespace {ns} gone",
                         field_selector=f"metadata.name={ns}")
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.read_namespaced_config_map("content", ns)
    assert err.value.status == 404


def test_garbage_collection_deletes_what_an_owner_owned(k8s: Any, make_namespace: Callable[[str], str]) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    ns = make_namespace("kcm-gc")
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "owned", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "bystander"}})
    core.delete_namespaced_config_map("owner", ns)
    rollouts.watch_until(core.list_namespaced_config_map, _gone("owned"), timeout=60,
                         what="the owned ConfigMap collected", namespace=ns)
    assert core.read_namespaced_config_map("bystander", ns).metadata.name == "bystander"


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_a_workload_rolls_out_and_a_restart_patch_rolls_it_out_again(
        kind: WorkloadKind, k8s: Any, lab: RunningLab, make_namespace: Callable[[str], str]) -> None:
    apps = kubernetes.client.AppsV1Api(k8s)
    ns = make_namespace("kcm-rollout")
    name = f"web-{kind.lower()}"
    spec: dict[str, Any] = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": "web", "image": "example.invalid/w:1"}]}}}
    if kind == "Deployment":
        apps.create_namespaced_deployment(ns, {"metadata": {"name": name}, "spec": spec})
    else:
        apps.create_namespaced_stateful_set(ns, {"metadata": {"name": name}, "spec": {**spec, "serviceName": name}})
    first = rollouts.rollout(k8s, kind, ns, name)
    assert first.revision == 1
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        assert restart(kube, WorkloadRef(kind, ns, name), "kcm-batch", SystemClock()) == "restarted"
    finally:
        kube.close()
    second = rollouts.rollout(k8s, kind, ns, name)
    assert second.revision == 2 and second.generation == first.generation + 1
    assert second.template_annotations.get("chamberlain.dev/restart-batch") == "kcm-batch"
    # The first revision is still there (history), so a rollback would have something to go back to.
    owner_uid = (apps.read_namespaced_deployment(name, ns) if kind == "Deployment"
                 else apps.read_namespaced_stateful_set(name, ns)).metadata.uid
    if kind == "Deployment":
        owned = [rs for rs in apps.list_namespaced_replica_set(ns).items
                 if any(r.uid == owner_uid for r in rs.metadata.owner_references or [])]
    else:
        owned = [cr for cr in apps.list_namespaced_controller_revision(ns).items
                 if any(r.uid == owner_uid for r in cr.metadata.owner_references or [])]
    assert len(owned) == 2, [o.metadata.name for o in owned]


def test_service_accounts_get_their_default(k8s: Any, make_namespace: Callable[[str], str]) -> None:
    """The serviceaccount controller gives every namespace its ``default`` ServiceAccount, and the root CA
    publisher its ``kube-root-ca.crt`` (so a pod spec that needs neither explicitly is admitted)."""
    core = kubernetes.client.CoreV1Api(k8s)
    ns = make_namespace(_unique("kcm-sa"))
    rollouts.watch_until(core.list_namespaced_service_account,
                         lambda items: any(rollouts.name_of(o) == "default" for o in items),
                         timeout=60, what=f"ServiceAccount {ns}/default", namespace=ns)
    rollouts.watch_until(core.list_namespaced_config_map,
                         lambda items: any(rollouts.name_of(o) == "kube-root-ca.crt" for o in items),
                         timeout=60, what=f"ConfigMap {ns}/kube-root-ca.crt", namespace=ns)
