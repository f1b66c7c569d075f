"""Propagation against the real ESO 0.16.2, Vault and kube-apiserver (issue 5 item 4).

ExternalSecrets shaped as chamberlain renders them, plus the version-marker extension
(:func:`chamberlain.render.eso.add_version_marker`): a change of value and ``value-marker`` in Vault, then
:func:`force_refresh`, reaches the consumer Secret's annotation and data; :func:`wait_in_sync` sees it from the
annotations alone. The test reads data to check; production code never does. Latency over ten rotations is
printed as p50/p95. A rollout restart patches a real Deployment's or StatefulSet's pod template once per
batch, and kube-controller-manager rolls out exactly one new ReplicaSet or ControllerRevision for it.
"""

from __future__ import annotations

import base64
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import kubernetes
import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import SystemClock
from chamberlain.kube.api import WorkloadKind
from chamberlain.kube.client import KubeClient
from chamberlain.propagation import (
    Change,
    ConsumerRef,
    ExternalSecretRef,
    WorkloadRef,
    force_refresh,
    plan_restarts,
    restart,
    wait_in_sync,
)
from chamberlain.render import eso
from chamberlain.values.markers import version_marker

from . import rollouts
from .conftest import RunningLab

pytestmark = pytest.mark.lab

GROUP = "external-secrets.io"
NS = "propagation-lab"
STORE = "chamberlain-lab-secret"
ROTATIONS = 10
# Values a naive YAML/JSON round trip inside ESO's template would mangle.
AWKWARD = {"multi": "line one\nline two\n", "quoted": "a: 'b' \"c\" {{ d }}", "looks_bool": "true",
           "looks_num": "0123", "spaces": "  padded  ", "unicode": "pässwörd ✓"}


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s")


def _data(core: Any, name: str) -> dict[str, str] | None:
    try:
        secret = core.read_namespaced_secret(name, NS)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _write(vault: Any, path: str, data: dict[str, str]) -> str:
    """What the rotation workflow does: the new version, then its marker in custom_metadata — both before any
    refresh is forced."""
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(path=path, secret=data, mount_point="secret")
    marker = version_marker(f"secret/{path}", data)
    kv.update_metadata(path=path, custom_metadata={"value-marker": marker, "intent": path.rsplit("/", 1)[-1]},
                       mount_point="secret")
    return marker


@pytest.fixture(scope="module")
def store(vault: Any, vault_kubernetes_auth: str, lab: RunningLab, k8s: Any,
          make_namespace: Callable[[str], str], make_service_account: Callable[[str, str], str]) -> str:
    make_namespace(NS)
    make_service_account(NS, "chamberlain-lab-reader")
    # The reader policy the marker needs: read on data (the value) and on metadata (the marker).
    vault.sys.create_or_update_policy(name=f"{NS}-reader", policy=f"""
path "secret/data/{NS}/*"     {{ capabilities = ["read"] }}
path "secret/metadata/{NS}/*" {{ capabilities = ["read"] }}
""")
    vault.write_data(f"auth/{vault_kubernetes_auth}/role/{NS}", data={
        "bound_service_account_names": ["chamberlain-lab-reader"], "bound_service_account_namespaces": [NS],
        "audience": "vault", "token_policies": [f"{NS}-reader"], "token_ttl": "10m"})
    manifest = {
        "apiVersion": eso.ESO_V1, "kind": "SecretStore", "metadata": {"name": STORE, "namespace": NS},
        "spec": {"provider": {"vault": {
            "server": lab.lab.authority.address, "path": "secret", "version": "v2",
            "caBundle": base64.b64encode(lab.ca_pem.encode()).decode(),
            "auth": {"kubernetes": {"mountPath": vault_kubernetes_auth, "role": NS, "serviceAccountRef": {
                "name": "chamberlain-lab-reader", "audiences": [eso.VAULT_AUDIENCE]}}}}}},
    }
    custom = kubernetes.client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object(GROUP, "v1", NS, "secretstores", manifest)

    def ready() -> bool:
        obj = cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, "v1", NS, "secretstores", STORE))
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in obj.get("status", {}).get("conditions") or [])

    _wait_for(ready, 90, "SecretStore Ready")
    return STORE


def _external_secret(name: str, vault_key: str, keys: dict[str, str] | None) -> dict[str, Any]:
    """The shape :func:`chamberlain.render.eso.external_secret` renders (refreshInterval 1h, Owner, Retain, intent
    label template), extended by :func:`~chamberlain.render.eso.add_version_marker`."""
    spec: dict[str, Any] = {
        "refreshInterval": eso.MATERIALIZE_REFRESH,
        "secretStoreRef": {"kind": "SecretStore", "name": STORE},
        "target": {"name": name, "creationPolicy": "Owner", "deletionPolicy": "Retain",
                   "template": {"metadata": {"labels": {"chamberlain.dev/intent": name}}}},
    }
    if keys:
        spec["data"] = [{"secretKey": k, "remoteRef": {"key": vault_key, "property": p}}
                        for k, p in sorted(keys.items())]
    else:
        spec["dataFrom"] = [{"extract": {"key": vault_key}}]
    eso.add_version_marker(spec, vault_key)
    return {"apiVersion": eso.ESO_V1, "kind": "ExternalSecret", "metadata": {"name": name, "namespace": NS},
            "spec": spec}


def test_marker_reaches_consumers_after_force_refresh(vault: Any, k8s: Any, lab: RunningLab, store: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s)
    core = kubernetes.client.CoreV1Api(k8s)
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    mapped_path, whole_path = f"{NS}/app-db", f"{NS}/orders-db"
    mapping = {"DB_PASSWORD": "password", "DB_USER": "username"}

    # A Vault secret without any custom_metadata (a derived one ESO pushed, say) must still materialize.
    vault.secrets.kv.v2.create_or_update_secret(path=whole_path, secret={"v": "0", **AWKWARD}, mount_point="secret")
    marker_mapped = _write(vault, mapped_path, {"password": "p-0", "username": "app"})
    custom.create_namespaced_custom_object(GROUP, "v1", NS, "externalsecrets",
                                           _external_secret("app-db", mapped_path, mapping))
    custom.create_namespaced_custom_object(GROUP, "v1", NS, "externalsecrets",
                                           _external_secret("orders-db", whole_path, None))
    _wait_for(lambda: _data(core, "orders-db") == {"v": "0", **AWKWARD}, 90, "orders-db materialized")
    # ... with an empty marker, which in_sync never takes for any version.
    assert (kube.get_secret_annotations(NS, "orders-db") or {}).get(wk.ANNOTATION_VERSION_MARKER) == ""
    consumers = [ConsumerRef(NS, "app-db"), ConsumerRef(NS, "orders-db")]
    refs = [ExternalSecretRef(NS, "app-db"), ExternalSecretRef(NS, "orders-db")]
    first = wait_in_sync(kube, consumers[:1], marker_mapped, SystemClock(), timeout=90)
    assert first[0].in_sync, first
    # The reserved metadata key never lands in the Secret: the consumer sees exactly its mapped keys.
    assert _data(core, "app-db") == {"DB_PASSWORD": "p-0", "DB_USER": "app"}

    latencies: list[float] = []
    for i in range(1, ROTATIONS + 1):
        m1 = _write(vault, mapped_path, {"password": f"p-{i}", "username": "app"})
        m2 = _write(vault, whole_path, {"v": str(i), **AWKWARD})
        started = time.monotonic()
        assert force_refresh(kube, refs, token=f"run-{i}-{uuid.uuid4().hex[:8]}") == []
        results = wait_in_sync(kube, consumers[:1], m1, SystemClock(), timeout=60, poll=0.05)
        results += wait_in_sync(kube, consumers[1:], m2, SystemClock(), timeout=60, poll=0.05)
        latencies.append(time.monotonic() - started)
        assert all(r.in_sync for r in results), results
        # ESO writes annotations and data in one update, but reads the value and the metadata (the marker) in two
        # requests: a refresh already in flight when the new version was written can pair the old value with the
        # new marker for one sync (seen once on OpenBao); the forced refresh then brings the value. Known, open.
        _wait_for(lambda i=i: _data(core, "app-db") == {"DB_PASSWORD": f"p-{i}", "DB_USER": "app"}, 30,
                  "app-db value after its marker")
        _wait_for(lambda i=i: _data(core, "orders-db") == {"v": str(i), **AWKWARD}, 30,
                  "orders-db value after its marker")

    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(f"\n[propagation] trigger -> both consumer Secrets carry the new marker, {ROTATIONS} rotations: "
          f"p50 {p50:.3f}s p95 {p95:.3f}s max {latencies[-1]:.3f}s")
    assert p95 < 30

    # Without a forced refresh nothing moves (refreshInterval is 1h): the forced refresh is what propagates. ESO may
    # still run a reconcile queued by the last forced refresh (its own status update requeues it): let it settle.
    time.sleep(5)
    stale = _write(vault, mapped_path, {"password": "not-forced", "username": "app"})
    assert not wait_in_sync(kube, consumers[:1], stale, SystemClock(), timeout=3)[0].in_sync
    kube.close()


def _workload(kind: str, name: str) -> dict[str, Any]:
    """A Deployment or StatefulSet object (no kubelet: its pods are created but never run)."""
    spec: dict[str, Any] = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": name, "image": "example.invalid/api:1"}]}}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_restart_rolls_out_a_real_workload_once_per_batch(kind: WorkloadKind, k8s: Any, lab: RunningLab,
                                                          make_namespace: Callable[[str], str]) -> None:
    """The restart is proven by what kube-controller-manager makes of the patch: one new ReplicaSet (Deployment)
    or ControllerRevision (StatefulSet) per batch, made from the template that carries the batch's token."""
    ns = make_namespace(f"{NS}-restart-{kind.lower()}")
    apps: Any = kubernetes.client.AppsV1Api(k8s)
    create = apps.create_namespaced_deployment if kind == "Deployment" else apps.create_namespaced_stateful_set
    create(ns, _workload(kind, "api"))
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    api = WorkloadRef(kind, ns, "api")
    first = rollouts.rollout(k8s, kind, ns, "api")
    assert first.revision == 1
    # Three rotated secrets feed the same workload: one restart.
    changes = [Change(f"s{i}", ((ConsumerRef(ns, f"s{i}"), (api,)),)) for i in range(3)]
    planned = plan_restarts(changes)
    assert planned == {api}
    outcomes = [restart(kube, w, "batch-1", SystemClock()) for w in planned]
    assert outcomes == ["restarted"]
    # A resumed step with the same batch token does not roll the pods again.
    assert restart(kube, api, "batch-1", SystemClock()) == "already-restarted"
    after = rollouts.rollout(k8s, kind, ns, "api")
    assert (after.generation, after.revision) == (first.generation + 1, 2), "exactly one new revision"
    assert after.template_annotations["chamberlain.dev/restart-batch"] == "batch-1"
    assert "chamberlain.dev/restartedAt" in after.template_annotations
    # The next batch rolls out again.
    assert restart(kube, api, "batch-2", SystemClock()) == "restarted"
    again = rollouts.rollout(k8s, kind, ns, "api")
    assert (again.generation, again.revision) == (first.generation + 2, 3)
    assert again.template_annotations["chamberlain.dev/restart-batch"] == "batch-2"
    kube.close()
