"""Proof 3: the real External Secrets Operator against the lab Vault and kube-apiserver.

An ExternalSecret (SecretStore: vault provider, Kubernetes auth through a
serviceAccountRef, i.e. a TokenRequest token) materializes a Kubernetes Secret; a
change in Vault reaches the Secret after a ``force-sync`` annotation; a PushSecret
publishes a Kubernetes Secret into Vault.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any, cast

import hvac
import kubernetes
import pytest

from .conftest import RunningLab

pytestmark = pytest.mark.lab

GROUP = "external-secrets.io"
NS = "eso-proof"


def _wait_for(check: Callable[[], Any], *, timeout: float, what: str, describe: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s; {describe()}")


def _conditions(custom: Any, version: str, plural: str, name: str) -> str:
    try:
        obj = custom.get_namespaced_custom_object(GROUP, version, NS, plural, name)
    except kubernetes.client.ApiException as exc:
        return f"{plural}/{name}: {exc.status}"
    return f"{plural}/{name} conditions: {obj.get('status', {}).get('conditions')}"


def _secret_value(core: Any, name: str, key: str) -> str | None:
    try:
        secret = core.read_namespaced_secret(name, NS)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    raw = (secret.data or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None


@pytest.fixture(scope="module")
def secret_store(
    vault: Any,
    vault_kubernetes_auth: str,
    lab: RunningLab,
    k8s: Any,
    make_namespace: Callable[[str], str],
    make_service_account: Callable[[str, str], str],
) -> str:
    make_namespace(NS)
    make_service_account(NS, "eso-reader")
    vault.sys.create_or_update_policy(
        name=f"{NS}-rw",
        policy=f"""
path "secret/data/{NS}/*"     {{ capabilities = ["create", "read", "update", "delete"] }}
path "secret/metadata/{NS}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}
""",
    )
    vault.write_data(
        f"auth/{vault_kubernetes_auth}/role/{NS}",
        data={
            "bound_service_account_names": ["eso-reader"],
            "bound_service_account_namespaces": [NS],
            "audience": "vault",
            "token_policies": [f"{NS}-rw"],
            "token_ttl": "10m",
        },
    )
    store = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "SecretStore",
        "metadata": {"name": "vault", "namespace": NS},
        "spec": {
            "provider": {
                "vault": {
                    "server": lab.lab.authority.address,
                    "path": "secret",
                    "version": "v2",
                    "caBundle": base64.b64encode(lab.ca_pem.encode()).decode(),
                    "auth": {
                        "kubernetes": {
                            "mountPath": vault_kubernetes_auth,
                            "role": NS,
                            "serviceAccountRef": {"name": "eso-reader", "audiences": ["vault"]},
                        }
                    },
                }
            }
        },
    }
    custom = kubernetes.client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object(GROUP, "v1", NS, "secretstores", store)

    def ready() -> bool:
        obj = cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, "v1", NS, "secretstores", "vault"))
        conds = obj.get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    _wait_for(
        ready, timeout=90, what="SecretStore Ready", describe=lambda: _conditions(custom, "v1", "secretstores", "vault")
    )
    return "vault"


def test_external_secret_materializes_and_follows_force_sync(vault: Any, k8s: Any, secret_store: str) -> None:
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(path=f"{NS}/db", secret={"password": "first-value", "user": "app"}, mount_point="secret")
    custom = kubernetes.client.CustomObjectsApi(k8s)
    core = kubernetes.client.CoreV1Api(k8s)
    external_secret = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {
            # Long on purpose: the refresh below must come from force-sync, not the timer.
            "refreshInterval": "1h",
            "secretStoreRef": {"name": secret_store, "kind": "SecretStore"},
            "target": {"name": "db-credentials", "creationPolicy": "Owner"},
            "data": [
                {"secretKey": "password", "remoteRef": {"key": f"{NS}/db", "property": "password"}},
                {"secretKey": "username", "remoteRef": {"key": f"{NS}/db", "property": "user"}},
            ],
        },
    }
    custom.create_namespaced_custom_object(GROUP, "v1", NS, "externalsecrets", external_secret)
    describe = lambda: _conditions(custom, "v1", "externalsecrets", "db")  # noqa: E731
    _wait_for(
        lambda: _secret_value(core, "db-credentials", "password") == "first-value",
        timeout=90,
        what="Secret materialized",
        describe=describe,
    )
    assert _secret_value(core, "db-credentials", "username") == "app"

    kv.create_or_update_secret(
        path=f"{NS}/db", secret={"password": "second-value", "user": "app"}, mount_point="secret"
    )
    time.sleep(3)
    assert _secret_value(core, "db-credentials", "password") == "first-value"  # no timer-driven refresh
    custom.patch_namespaced_custom_object(
        GROUP,
        "v1",
        NS,
        "externalsecrets",
        "db",
        {"metadata": {"annotations": {"force-sync": str(time.time())}}},
    )
    _wait_for(
        lambda: _secret_value(core, "db-credentials", "password") == "second-value",
        timeout=60,
        what="force-sync propagated the new value",
        describe=describe,
    )


def test_push_secret_publishes_into_vault(vault: Any, k8s: Any, secret_store: str) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    custom = kubernetes.client.CustomObjectsApi(k8s)
    core.create_namespaced_secret(
        NS,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="operator-generated"),
            string_data={"token": "made-in-cluster"},
        ),
    )
    push = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "PushSecret",
        "metadata": {"name": "publish-token", "namespace": NS},
        "spec": {
            "refreshInterval": "10s",
            "secretStoreRefs": [{"name": secret_store, "kind": "SecretStore"}],
            "selector": {"secret": {"name": "operator-generated"}},
            "data": [
                {"match": {"secretKey": "token", "remoteRef": {"remoteKey": f"{NS}/published", "property": "token"}}}
            ],
        },
    }
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", NS, "pushsecrets", push)

    def pushed() -> dict[str, Any] | None:
        try:
            got = vault.secrets.kv.v2.read_secret_version(
                path=f"{NS}/published", mount_point="secret", raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:  # absent until ESO has pushed
            return None
        return dict(got["data"]["data"])

    data = _wait_for(
        pushed,
        timeout=90,
        what="PushSecret wrote to Vault",
        describe=lambda: _conditions(custom, "v1alpha1", "pushsecrets", "publish-token"),
    )
    assert data == {"token": "made-in-cluster"}
    meta = vault.secrets.kv.v2.read_secret_metadata(path=f"{NS}/published", mount_point="secret")["data"]
    # ESO marks what it owns, so it never overwrites a secret someone else manages.
    assert (meta.get("custom_metadata") or {}).get("managed-by") == "external-secrets"


def test_plan_reports_a_foreign_secret_that_eso_would_take_over(vault: Any, k8s: Any, lab: RunningLab,
                                                               secret_store: str) -> None:
    """Issue 11: a consumer Secret that already exists and is not chamberlain's is a plan conflict, read through the
    real client as metadata only. Then the takeover it prevents, with the real ESO: an ExternalSecret with
    ``creationPolicy: Owner`` adopts the existing Secret (ownerReference set, data overwritten), after which plan
    sees an ExternalSecret-owned Secret — which is why plan must run before the rendered output is applied."""
    from chamberlain.clock import SystemClock
    from chamberlain.kube.client import KubeClient
    from chamberlain.propagation.conflicts import Expected, observe

    core = kubernetes.client.CoreV1Api(k8s)
    custom = kubernetes.client.CustomObjectsApi(k8s)
    core.create_namespaced_secret(NS, {"metadata": {"name": "team-owned", "labels": {"team": "someone-else"}},
                                       "stringData": {"theirs": "their-value"}})
    vault.secrets.kv.v2.create_or_update_secret(path=f"{NS}/takeover", secret={"ours": "our-value"},
                                                mount_point="secret")
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        expected = [Expected(NS, "team-owned", "takeover"), Expected(NS, "fresh", "fresh")]
        found = observe(kube, expected)
        assert [(c.kind, c.object, c.intent) for c in found] == [("foreign-secret", "Secret/team-owned", "takeover")]
        assert "their-value" not in repr(found)  # metadata only: the value never crossed the wire

        for name, target in (("team-owned", "team-owned"), ("fresh", "fresh")):
            custom.create_namespaced_custom_object(GROUP, "v1", NS, "externalsecrets", {
                "apiVersion": f"{GROUP}/v1", "kind": "ExternalSecret", "metadata": {"name": name, "namespace": NS},
                "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": secret_store, "kind": "SecretStore"},
                         "target": {"name": target, "creationPolicy": "Owner"},
                         "data": [{"secretKey": "ours", "remoteRef": {"key": f"{NS}/takeover", "property": "ours"}}]},
            })
        for name in ("team-owned", "fresh"):
            _wait_for(lambda n=name: _secret_value(core, n, "ours") == "our-value", timeout=90,  # type: ignore[misc]
                      what=f"ESO wrote {name}", describe=lambda n=name: _conditions(custom, "v1", "externalsecrets", n))
        adopted = core.read_namespaced_secret("team-owned", NS)
        # The takeover: ESO made the team's Secret its own and replaced what the team had put there.
        assert [(o.kind, o.name) for o in adopted.metadata.owner_references or []] == [("ExternalSecret", "team-owned")]
        assert "theirs" not in (adopted.data or {})
        # A Secret ESO created (or adopted) for the ExternalSecret chamberlain renders is chamberlain's.
        assert observe(kube, expected) == []
    finally:
        kube.close()
