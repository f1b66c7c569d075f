"""``chamberlain adopt --from-cluster`` against the lab's real kube-apiserver (with ESO's CRDs served).

A small estate in its own namespace ``legacy-adopt-<id>`` (never another): a plain Secret, a Vault SecretStore with
an ExternalSecret on the conventional path and the Secret it writes, a docker-config Secret, a Deployment with a
Reloader annotation that reads both. adopt reads it through the real client (paged lists, values blanked at the
reader), maps it, and writes a repository that names keys and owners only: the canary value is nowhere.

With ``--from-authority`` the real authority's KV metadata is read with a token that may list and read
``secret/metadata/*`` only: any read of data would be refused, so the test also proves none is made.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.conftest import run_cli

from .conftest import RunningLab

pytestmark = pytest.mark.lab

CANARY = "CANARY-LAB-VALUE-91c2"
RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
ESO = ("external-secrets.io", "v1")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def legacy_estate(k8s: Any, make_namespace: Any) -> str:
    ns = make_namespace(f"legacy-adopt-{uuid.uuid4().hex[:6]}")
    core, apps = kubernetes.client.CoreV1Api(k8s), kubernetes.client.AppsV1Api(k8s)
    custom = kubernetes.client.CustomObjectsApi(k8s)
    core.patch_namespace(ns, {"metadata": {"labels": {"team": "team-legacy"}}})
    data = {"username": _b64("app"), "password": _b64(CANARY)}
    last_applied = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": data})
    core.create_namespaced_secret(ns, {"metadata": {"name": "app-db", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied}}, "type": "Opaque", "data": data})
    core.create_namespaced_secret(ns, {"metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
                                       "data": {".dockerconfigjson": _b64('{"auths": {}}')}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "api-token"}, "data": {"token": _b64(CANARY)}})
    custom.create_namespaced_custom_object(*ESO, ns, "secretstores", {
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "vault"},
        "spec": {"provider": {"vault": {"server": "https://vault.invalid:8200", "path": "secret", "version": "v2",
                                        "auth": {"tokenSecretRef": {"name": "absent", "key": "token"}}}}}})
    custom.create_namespaced_custom_object(*ESO, ns, "externalsecrets", {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "api-token"},
        "spec": {"refreshInterval": "1h", "secretStoreRef": {"kind": "SecretStore", "name": "vault"},
                 "target": {"name": "api-token"},
                 "data": [{"secretKey": "token", "remoteRef": {"key": f"prod/{ns}/api-token",
                                                               "property": "token"}}]}})
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "web", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "example.invalid/web",
                                     "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                                         "name": "api-token", "key": "token"}}}],
                                     "envFrom": [{"secretRef": {"name": "app-db"}}]}]}}}})
    return str(ns)


def test_adopt_from_cluster(lab: RunningLab, legacy_estate: str, tmp_path: Path) -> None:
    ns = legacy_estate
    result = run_cli("adopt", "--from-cluster", "--kubeconfig", str(lab.kubeconfig), "-n", ns,
                     "--out", str(tmp_path / "repo"), "-e", "prod", "-c", "lab", "--age-recipient", RECIPIENT,
                     "-o", "json")
    assert CANARY not in result.out + result.err and _b64(CANARY) not in result.out + result.err
    data = json.loads(result.out)
    spec = data["plan"]["spec"]
    intents = {i["name"]: i for i in spec["intents"]}
    assert sorted(intents) == ["api-token", "app-db"]
    assert intents["app-db"]["owner"] == "team-legacy"  # the namespace's team label
    assert intents["app-db"]["ownerFrom"] == f"label team on Namespace {ns}"
    assert intents["api-token"]["path"] == f"secret/prod/{ns}/api-token"  # conventional: path and owner kept
    assert intents["app-db"]["keys"] == ["password", "username"]
    for intent in intents.values():
        assert intent["consumers"][0]["restart"] == ["Deployment/web"]  # Reloader auto + a reference
    assert [(u["kind"], u["name"]) for u in spec["unmapped"]] == [("Secret", "pull")]
    assert result.code == 1  # something unmapped: listed, exit 1
    for path in (tmp_path / "repo").rglob("*"):
        if path.is_file():
            body = path.read_text()
            assert CANARY not in body and _b64(CANARY) not in body, path


def test_adopt_checks_external_secrets_against_the_authority_metadata(
        lab: RunningLab, legacy_estate: str, vault: Any, tmp_path: Path) -> None:
    ns = legacy_estate
    vault.secrets.kv.v2.create_or_update_secret(path=f"prod/{ns}/api-token", secret={"token": CANARY},
                                                mount_point="secret")
    vault.secrets.kv.v2.create_or_update_secret(path=f"prod/{ns}/orphan", secret={"k": CANARY},
                                                mount_point="secret")
    vault.sys.create_or_update_policy(name="adopt-metadata-only",
                                      policy='path "secret/metadata/*" { capabilities = ["list", "read"] }')
    token = vault.auth.token.create(policies=["adopt-metadata-only"], ttl="10m")["auth"]["client_token"]
    (tmp_path / "token").write_text(token)
    result = run_cli("adopt", "--from-cluster", "--from-authority", "--kubeconfig", str(lab.kubeconfig), "-n", ns,
                     "--vault-addr", lab.lab.authority.address, "--vault-cacert", str(lab.ca_file),
                     "--vault-token-file", str(tmp_path / "token"), "--out", str(tmp_path / "repo"),
                     "-e", "prod", "-c", "lab", "--age-recipient", RECIPIENT, "-o", "json")
    assert CANARY not in result.out + result.err, result.err
    spec = json.loads(result.out)["plan"]["spec"]
    assert sorted(i["name"] for i in spec["intents"]) == ["api-token", "app-db"], result.err
    skipped = {s["name"]: s["reason"] for s in spec["skipped"]}
    assert "no ExternalSecret of the estate reads it" in skipped[f"secret/prod/{ns}/orphan"]
    assert any(r.startswith("authority metadata") for r in spec["read"])

    # the ExternalSecret's path gone from the authority: refused with CH124, nothing guessed
    vault.secrets.kv.v2.delete_metadata_and_all_versions(path=f"prod/{ns}/api-token", mount_point="secret")
    again = run_cli("adopt", "--from-cluster", "--from-authority", "--kubeconfig", str(lab.kubeconfig), "-n", ns,
                    "--vault-addr", lab.lab.authority.address, "--vault-cacert", str(lab.ca_file),
                    "--vault-token-file", str(tmp_path / "token"), "--out", str(tmp_path / "repo"),
                    "-e", "prod", "-c", "lab", "--age-recipient", RECIPIENT, "-o", "json")
    refused = {(u["kind"], u["name"]): u for u in json.loads(again.out)["plan"]["spec"]["unmapped"]}
    assert refused[("ExternalSecret", "api-token")]["rule"] == "CH124"
    assert "does not hold" in refused[("ExternalSecret", "api-token")]["reason"]
