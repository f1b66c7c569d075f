"""Manifests that break the secret data flow: workloads on bootstrap Secrets (CH030), Secret mirroring (CH040),
the ESO kubernetes provider (CH041)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.checks.manifests import (
    POD_SPEC_PATHS,
    check_eso_kubernetes_provider,
    check_mirror_annotations,
    check_workload_bootstrap_refs,
    mirror_annotations,
    secret_references,
)
from chamberlain.findings import Finding
from chamberlain.intent.loader import load_repository

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests" / "corpus" / "base"
FIXTURES = ROOT / "tests" / "fixtures" / "scanning"
BOOTSTRAP = {
    "intents/bootstrap.yaml": (FIXTURES / "realistic" / "intents" / "bootstrap.yaml").read_text(),
    "bootstrap/smtp-relay.sops.yaml": (FIXTURES / "sops" / "smtp-relay.sops.yaml").read_text(),
}
BOOT_NS, BOOT_NAME = "chamberlain-bootstrap", "bootstrap-smtp-relay"


def make_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return repo


def dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


# ------------------------------------------------------------------------------------------------ CH030

POD_SPEC: dict[str, Any] = {
    "imagePullSecrets": [{"name": "pull"}],
    "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
    "containers": [
        {
            "name": "app",
            "env": [
                {"name": "PLAIN", "value": "x"},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "env-ref", "key": "password"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "env-from"}}],
        }
    ],
    "ephemeralContainers": [{"name": "debug", "envFrom": [{"secretRef": {"name": "debug-env"}}]}],
    "volumes": [
        {"name": "v1", "secret": {"secretName": "vol"}},
        {"name": "v2", "projected": {"sources": [{"configMap": {"name": "cm"}}, {"secret": {"name": "proj"}}]}},
        {"name": "v3", "emptyDir": {}},
    ],
}


def test_secret_references_finds_every_way_to_name_a_secret() -> None:
    found = {(how, name): loc for loc, how, name in secret_references(POD_SPEC)}
    assert found == {
        ("volume", "vol"): ("volumes", 0, "secret", "secretName"),
        ("projected volume", "proj"): ("volumes", 1, "projected", "sources", 1, "secret", "name"),
        ("imagePullSecrets", "pull"): ("imagePullSecrets", 0, "name"),
        ("envFrom secretRef", "init-env"): ("initContainers", 0, "envFrom", 0, "secretRef", "name"),
        ("env secretKeyRef", "env-ref"): ("containers", 0, "env", 1, "valueFrom", "secretKeyRef", "name"),
        ("envFrom secretRef", "env-from"): ("containers", 0, "envFrom", 1, "secretRef", "name"),
        ("envFrom secretRef", "debug-env"): ("ephemeralContainers", 0, "envFrom", 0, "secretRef", "name"),
    }


def test_secret_references_tolerates_malformed_specs() -> None:
    assert list(secret_references({"volumes": "nope", "containers": [None, {"env": [1, {"valueFrom": 2}]}]})) == []


def _workload(kind: str, namespace: str | None, pod_spec: dict[str, Any]) -> dict[str, Any]:
    path = POD_SPEC_PATHS[kind]
    body: dict[str, Any] = pod_spec
    for part in reversed(path[1:]):
        body = {str(part): body}
    meta: dict[str, Any] = {"name": "w"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "v1" if kind in ("Pod", "PodTemplate") else "apps/v1", "kind": kind, "metadata": meta,
            str(path[0]): body}


def workload_findings(tmp_path: Path, doc: dict[str, Any]) -> list[Finding]:
    repo = load_repository(make_repo(tmp_path, {**BOOTSTRAP, "apps/w.yaml": dump(doc)}))
    return list(check_workload_bootstrap_refs(repo))


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PATHS))
def test_every_workload_kind_is_checked(tmp_path: Path, kind: str) -> None:
    spec = {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": BOOT_NAME}}]}]}
    (finding,) = workload_findings(tmp_path, _workload(kind, BOOT_NS, spec))
    assert finding.rule == "CH030" and finding.file == "apps/w.yaml" and finding.object == f"{kind}/w"
    assert "SecretIntent/smtp-relay" in finding.message


@pytest.mark.parametrize(
    ("namespace", "expected", "note"),
    [(BOOT_NS, 1, False), ("notifications", 0, False), (None, 1, True)],
    ids=["same-namespace", "other-namespace", "no-namespace"],
)
def test_namespace_aware_matching(tmp_path: Path, namespace: str | None, expected: int, note: bool) -> None:
    spec = {"volumes": [{"name": "s", "secret": {"secretName": BOOT_NAME}}], "containers": [{"name": "c"}]}
    found = workload_findings(tmp_path, _workload("Deployment", namespace, spec))
    assert len(found) == expected
    assert all(("matched by Secret name alone" in f.message) is note for f in found)


def test_finding_points_at_the_reference(tmp_path: Path) -> None:
    manifest = f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: notifier, namespace: {BOOT_NS}}}
spec:
  template:
    spec:
      imagePullSecrets:
        - name: registry-pull
        - name: {BOOT_NAME}
"""
    repo = load_repository(make_repo(tmp_path, {**BOOTSTRAP, "apps/notifier.yaml": manifest}))
    assert [(f.file, f.line) for f in check_workload_bootstrap_refs(repo)] == [("apps/notifier.yaml", 9)]


def test_materialized_consumer_secret_is_fine(tmp_path: Path) -> None:
    # The consumer Secret ESO materializes from Vault (smtp-relay in notifications) is the right thing to use.
    spec = {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "smtp-relay"}}]}]}
    assert workload_findings(tmp_path, _workload("Deployment", "notifications", spec)) == []


def test_no_bootstrap_intents_means_nothing_to_check(tmp_path: Path) -> None:
    spec = {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": BOOT_NAME}}]}]}
    repo = load_repository(make_repo(tmp_path, {"apps/w.yaml": dump(_workload("Pod", None, spec))}))
    assert list(check_workload_bootstrap_refs(repo)) == []


# ------------------------------------------------------------------------------------------------ CH040


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"reflector.v1.k8s.emberstack.com/reflection-allowed": "true"}, ["emberstack reflector"]),
        ({"reflector.v1.k8s.emberstack.com/reflects": "platform/registry-pull"}, ["emberstack reflector"]),
        ({"replicator.v1.mittwald.de/replicate-to": "app-.*"}, ["kubernetes-replicator"]),
        ({"replicator.v1.mittwald.de/replicate-from": "databases/orders-db-app"}, ["kubernetes-replicator"]),
        ({"kubed.appscode.com/sync": "app=payments"}, ["kubed/config-syncer"]),
        ({"reflector.v1.k8s.emberstack.com/reflection-allowed": "false"}, []),
        ({"argocd.argoproj.io/sync-wave": "3", "reflector.example/other": "true"}, []),
        (None, []),
    ],
    ids=["reflector-allowed", "reflector-reflects", "replicate-to", "replicate-from", "kubed", "opt-out", "others",
         "none"],
)
def test_mirror_annotations(annotations: dict[str, str] | None, expected: list[str]) -> None:
    assert [tool for _, tool in mirror_annotations(annotations)] == expected


REFLECT = {"reflector.v1.k8s.emberstack.com/reflection-auto-enabled": "true"}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": REFLECT}}, 1),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": REFLECT}}, 0),
        ({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "e"},
          "spec": {"target": {"template": {"metadata": {"annotations": REFLECT}}}}}, 1),
        ({"apiVersion": "external-secrets.io/v1beta1", "kind": "ClusterExternalSecret", "metadata": {"name": "c"},
          "spec": {"externalSecretSpec": {"target": {"template": {"metadata": {"annotations": REFLECT}}}}}}, 1),
        ({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
          "commonAnnotations": REFLECT}, 1),
        ({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
          "secretGenerator": [{"name": "g", "options": {"annotations": REFLECT}}]}, 1),
        ({"apiVersion": "clustersecret.io/v1", "kind": "ClusterSecret", "metadata": {"name": "c"}}, 1),
        ({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "sync"},
          "spec": {"rules": [{"name": "clone", "generate": {"kind": "Secret", "clone": {"namespace": "a",
                                                                                         "name": "b"}}}]}}, 1),
        ({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "sync"},
          "spec": {"rules": [{"name": "l", "generate": {"cloneList": {"kinds": ["v1/Secret"]}}}]}}, 1),
        ({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "np"},
          "spec": {"rules": [{"name": "n", "generate": {"kind": "NetworkPolicy", "data": {}}}]}}, 0),
    ],
    ids=["secret", "configmap-exempt", "externalsecret-template", "clusterexternalsecret-template",
         "kustomize-common", "kustomize-generator", "clustersecret", "kyverno-clone", "kyverno-clone-list",
         "kyverno-other"],
)
def test_mirror_findings(tmp_path: Path, doc: dict[str, Any], expected: int) -> None:
    repo = load_repository(make_repo(tmp_path, {"manifests/m.yaml": dump(doc)}))
    found = list(check_mirror_annotations(repo))
    assert len(found) == expected and all(f.rule == "CH040" for f in found)


def test_mirror_finding_points_at_the_annotation(tmp_path: Path) -> None:
    manifest = """apiVersion: v1
kind: Secret
metadata:
  name: orders-db
  annotations:
    argocd.argoproj.io/sync-wave: "1"
    replicator.v1.mittwald.de/replicate-from: databases/orders-db-app
"""
    repo = load_repository(make_repo(tmp_path, {"manifests/replica.yaml": manifest}))
    assert [(f.line, f.object) for f in check_mirror_annotations(repo)] == [(7, "Secret/orders-db")]


# ------------------------------------------------------------------------------------------------ CH041


@pytest.mark.parametrize(
    ("api", "kind", "provider", "expected"),
    [
        ("external-secrets.io/v1", "ClusterSecretStore", {"kubernetes": {"remoteNamespace": "databases"}}, 1),
        ("external-secrets.io/v1beta1", "SecretStore", {"kubernetes": {"remoteNamespace": "databases"}}, 1),
        ("external-secrets.io/v1alpha1", "SecretStore", {"kubernetes": None}, 1),
        ("external-secrets.io/v1", "ClusterSecretStore", {"vault": {"server": "https://vault:8200"}}, 0),
        ("external-secrets.io/v1", "ExternalSecret", {"kubernetes": {}}, 0),
        ("example.com/v1", "SecretStore", {"kubernetes": {}}, 0),
    ],
    ids=["cluster-store", "namespaced-store", "null-provider-body", "vault-provider", "not-a-store",
         "other-group"],
)
def test_eso_kubernetes_provider(tmp_path: Path, api: str, kind: str, provider: dict[str, Any], expected: int) -> None:
    doc = {"apiVersion": api, "kind": kind, "metadata": {"name": "s"}, "spec": {"provider": provider}}
    repo = load_repository(make_repo(tmp_path, {"manifests/store.yaml": dump(doc)}))
    found = list(check_eso_kubernetes_provider(repo))
    assert len(found) == expected
    assert all(f.rule == "CH041" and f.line == 7 for f in found)  # the line of `kubernetes:`


def test_clean_repositories_have_no_manifest_findings() -> None:
    for path in (BASE, ROOT / "examples" / "acme"):
        repo = load_repository(path)
        assert [*check_workload_bootstrap_refs(repo), *check_mirror_annotations(repo),
                *check_eso_kubernetes_provider(repo)] == []
