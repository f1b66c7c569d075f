"""The real client's controller calls that are raw requests (no typed CoreV1Api/AppsV1Api: constructing those
imports a model module per kind, 20+ MiB resident): the method, path, headers and body each sends, the answer read
as is, errors mapped. A stub stands in for ``kubernetes.client.ApiClient``'s request methods; the lab tests run the
same calls against the real kube-apiserver."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiException

from chamberlain.clock import FakeClock
from chamberlain.kube.api import KubeError, KubeNotFound, OwnerRef
from chamberlain.kube.client import KubeClient
from tests.unit.test_controller import T0


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.data = status, json.dumps(body).encode()

    def read(self) -> bytes:
        return self.data


class StubApi:
    """Records each request; answers from ``answers`` (path -> (status, body))."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers, self.sent = answers, []  # type: ignore[var-annotated]

    def param_serialize(self, method: str, path: str, header_params: dict[str, str], body: Any,
                        auth_settings: list[str]) -> tuple[str, str, dict[str, str], Any]:
        assert auth_settings == ["BearerToken"]
        return method, path, header_params, body

    def call_api(self, method: str, path: str, headers: dict[str, str], body: Any, **_: Any) -> _Response:
        self.sent.append((method, path, headers, body))
        status, answer = self.answers.get(path, (404, {"kind": "Status", "code": 404}))
        return _Response(status, answer)

    def response_deserialize(self, response: _Response, _types: Any) -> None:
        raise ApiException(status=response.status, reason="stub")


def _client(answers: dict[str, tuple[int, Any]]) -> tuple[KubeClient, StubApi]:
    api = StubApi(answers)
    return KubeClient(api, clock=FakeClock(T0)), api


SECRET = "/api/v1/namespaces/shop/secrets/db"


def test_consumer_looks_ask_for_metadata_only_and_never_take_a_full_secret() -> None:
    meta = {"kind": "PartialObjectMetadata", "metadata": {"annotations": {"m": "1"}, "labels": {"l": "x"},
                                                          "ownerReferences": [{"kind": "ExternalSecret",
                                                                               "name": "db"}]}}
    kube, api = _client({SECRET: (200, meta)})
    assert kube.get_secret_annotations("shop", "db") == {"m": "1"}
    method, path, headers, body = api.sent[0]
    assert (method, path, body) == ("GET", SECRET, None)
    assert headers["Accept"] == "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    ownership = kube.get_secret_ownership("shop", "db")
    assert ownership is not None and ownership.owners == (("ExternalSecret", "db"),)
    assert kube.get_secret_annotations("shop", "gone") is None  # 404: no Secret
    full, _ = _client({SECRET: (200, {"kind": "Secret", "data": {"password": "c2VjcmV0"}, "metadata": {}})})
    with pytest.raises(KubeError, match="metadata only") as err:
        full.get_secret_annotations("shop", "db")
    assert "c2VjcmV0" not in str(err.value)
    assert kube._core_api is None and full._core_api is None  # the typed API was never made


def test_token_request_posts_audiences_and_ttl_and_needs_a_token_back() -> None:
    path = "/api/v1/namespaces/chamberlain-system/serviceaccounts/chamberlain/token"
    kube, api = _client({path: (201, {"status": {"token": "tok"}})})
    assert kube.service_account_token("chamberlain-system", "chamberlain", ["vault"], 900) == "tok"
    method, sent_path, _headers, body = api.sent[0]
    assert (method, sent_path) == ("POST", path)
    assert body["kind"] == "TokenRequest" and body["spec"] == {"audiences": ["vault"], "expirationSeconds": 900}
    empty, _ = _client({path: (201, {"status": {}})})
    with pytest.raises(KubeError, match="no token"):
        empty.service_account_token("chamberlain-system", "chamberlain", ["vault"])
    denied, _ = _client({path: (403, {"kind": "Status", "code": 403})})
    with pytest.raises(KubeError):
        denied.service_account_token("chamberlain-system", "chamberlain", ["vault"])


def test_workload_restarts_read_and_merge_patch_the_pod_template() -> None:
    path = "/apis/apps/v1/namespaces/shop/statefulsets/db"
    obj = {"metadata": {"generation": 4, "annotations": {"w": "1"}},
           "spec": {"template": {"metadata": {"annotations": {"chamberlain.dev/restart": "v3"}}}}}
    kube, api = _client({path: (200, obj)})
    state = kube.get_pod_template("StatefulSet", "shop", "db")
    assert state.generation == 4 and state.annotations == {"chamberlain.dev/restart": "v3"}
    assert state.workload_annotations == {"w": "1"}
    kube.patch_pod_template_annotations("StatefulSet", "shop", "db", {"chamberlain.dev/restart": "v4"})
    method, sent_path, headers, body = api.sent[-1]
    assert (method, sent_path, headers["Content-Type"]) == ("PATCH", path, "application/merge-patch+json")
    assert body == {"spec": {"template": {"metadata": {"annotations": {"chamberlain.dev/restart": "v4"}}}}}
    bare, _ = _client({"/apis/apps/v1/namespaces/shop/deployments/web": (200, {"metadata": {}})})
    assert bare.get_pod_template("Deployment", "shop", "web").annotations == {}
    with pytest.raises(KubeNotFound):
        kube.get_pod_template("DaemonSet", "shop", "missing")


def test_taking_a_secret_over_is_a_conditional_merge_patch_of_its_owners() -> None:
    meta = {"kind": "PartialObjectMetadata", "metadata": {"resourceVersion": "9", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "old", "uid": "u0"}]}}
    kube, api = _client({SECRET: (200, meta)})
    ref = OwnerRef("external-secrets.io/v1", "ExternalSecret", "db", "u1", True)
    kube.set_secret_controller("shop", "db", ref, "9")
    method, path, headers, body = api.sent[-1]
    assert (method, path, headers["Content-Type"]) == ("PATCH", SECRET, "application/merge-patch+json")
    assert body["metadata"]["resourceVersion"] == "9"
    assert [o["name"] for o in body["metadata"]["ownerReferences"]] == ["old", "db"]
    assert body["metadata"]["ownerReferences"][-1]["controller"] is True


# --------------------------------------------------------------------------- a silent API server


@pytest.fixture
def silent_kubeconfig(tmp_path: Any) -> Any:
    """A kubeconfig for an "API server" on loopback that accepts connections and never answers."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    port = server.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "silent",
        "clusters": [{"name": "silent", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    yield path
    server.close()
    for conn in held:
        conn.close()


def test_a_silent_api_server_fails_each_request_after_its_timeout_instead_of_hanging_the_thread(
        silent_kubeconfig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubernetes client sends a request without a timeout unless the call gives one: a connection that went
    silent held the controller's thread (and the Lease's lock) forever. Every request now has one; Lease requests
    a shorter one."""
    import time

    from chamberlain.kube import bounded, client
    from chamberlain.kube.api import CustomResource, KubeUnavailable, LeaseRecord

    monkeypatch.setattr(bounded, "DEFAULT_TIMEOUT", (1.0, 0.5))
    monkeypatch.setattr(client, "_LEASE_TIMEOUT", (1.0, 0.3))
    kube = KubeClient.from_kubeconfig(silent_kubeconfig, clock=FakeClock(T0))
    things = CustomResource("example.io", "v1", "things")
    lease = LeaseRecord(holder="me", duration_seconds=15, acquired=T0, renewed=T0, transitions=0,
                        resource_version="7")
    # (the call, its read timeout, its attempts: urllib3 tries a GET 4 times, a PATCH once)
    for call, read, attempts in ((lambda: kube.replace_lease("ns", "lease", lease), 0.3, 1),
                                 (lambda: kube.get_lease("ns", "lease"), 0.3, 4),
                                 (lambda: kube.get_secret_annotations("ns", "db"), 0.5, 4),  # a raw request
                                 (lambda: kube.list_custom_objects(things, "ns"), 0.5, 4)):  # a typed one
        began = time.monotonic()
        with pytest.raises(KubeUnavailable, match="unreachable"):
            call()
        assert read <= time.monotonic() - began < read * attempts + 3
