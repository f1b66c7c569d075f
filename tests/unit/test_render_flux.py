"""The Flux layer of the rendered output: per cluster, Kustomizations ordered by dependsOn (CRDs → cluster →
bootstrap → stores and consumers), health checks only on CRDs and SecretStores, nothing that prunes a CRD, a
namespace or a bootstrap Secret, and paths under ``spec.gitops.path``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from chamberlain import wellknown as wk
from chamberlain.intent.loader import load_repository
from chamberlain.render import render_repository
from tests.conftest import EXAMPLES

ACME = EXAMPLES / "acme"


def _cluster(tree: Any, cluster: str) -> dict[str, dict[str, Any]]:
    listed = yaml.safe_load(tree[f"flux/{cluster}/kustomization.yaml"])["resources"]
    out: dict[str, dict[str, Any]] = {}
    for name in listed:
        for doc in yaml.safe_load_all(tree[f"flux/{cluster}/{name}"]):
            if doc:
                out[doc["metadata"]["name"]] = doc
    return out


def test_every_cluster_gets_its_kustomizations_in_dependency_order() -> None:
    tree = render_repository(load_repository(ACME))
    ks = _cluster(tree, "dev1")
    assert set(ks) == {"chamberlain-crds", "chamberlain-cluster", "chamberlain-bootstrap-dev", "chamberlain-env-dev",
                       "chamberlain-env-preview"}
    deps = {name: [d["name"] for d in k["spec"].get("dependsOn", [])] for name, k in ks.items()}
    assert deps == {
        "chamberlain-crds": [],
        "chamberlain-cluster": ["chamberlain-crds"],
        "chamberlain-bootstrap-dev": ["chamberlain-cluster"],
        "chamberlain-env-dev": ["chamberlain-bootstrap-dev"],
        "chamberlain-env-preview": ["chamberlain-cluster"],
    }
    for k in ks.values():
        spec = k["spec"]
        assert k["metadata"]["namespace"] == "flux-system"
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
        assert spec["wait"] is False
    paths = {name: k["spec"]["path"] for name, k in ks.items()}
    assert paths["chamberlain-crds"] == "./crds" and paths["chamberlain-cluster"] == "./clusters/dev1"
    assert paths["chamberlain-env-dev"] == "./envs/dev/dev1/namespaces"
    for path in paths.values():  # every path points at a directory with a kustomization.yaml
        assert f"{path.removeprefix('./')}/kustomization.yaml" in tree.files


def test_health_checks_name_only_crds_and_secret_stores() -> None:
    tree = render_repository(load_repository(ACME))
    for cluster in ("dev1", "prod-eu1", "prod-us1"):
        for k in _cluster(tree, cluster).values():
            kinds = {h["kind"] for h in k["spec"].get("healthChecks", [])}
            assert kinds <= {"CustomResourceDefinition", "SecretStore"}, (cluster, k["metadata"]["name"], kinds)
    crds = _cluster(tree, "dev1")["chamberlain-crds"]["spec"]["healthChecks"]
    names = {h["name"] for h in crds}
    assert {"secretintents.chamberlain.dev", "platforms.chamberlain.dev", "secretstores.external-secrets.io"} <= names
    stores = _cluster(tree, "dev1")["chamberlain-env-dev"]["spec"]["healthChecks"]
    rendered = {(d["metadata"]["namespace"], d["metadata"]["name"])
                for p, text in tree.files.items() if p.startswith("envs/dev/dev1/namespaces/")
                for d in yaml.safe_load_all(text) if d and d.get("kind") == "SecretStore"}
    assert {(h["namespace"], h["name"]) for h in stores} == rendered and rendered


def test_nothing_flux_prunes_can_delete_a_crd_a_namespace_or_a_bootstrap_secret() -> None:
    tree = render_repository(load_repository(ACME))
    ks = _cluster(tree, "prod-eu1")
    assert ks["chamberlain-crds"]["spec"]["prune"] is False
    assert ks["chamberlain-bootstrap-prod"]["spec"]["prune"] is False
    assert ks["chamberlain-cluster"]["spec"]["prune"] is True
    for doc in yaml.safe_load_all(tree["clusters/prod-eu1/namespaces.yaml"]):
        assert doc["metadata"]["annotations"][wk.FLUX_PRUNE] == "disabled"
    for path, text in tree.files.items():
        if path.startswith("crds/") and path != "crds/kustomization.yaml":
            assert yaml.safe_load(text)["metadata"]["annotations"][wk.FLUX_PRUNE] == "disabled"


def test_the_argo_cd_application_still_carries_the_crds_and_the_cluster() -> None:
    tree = render_repository(load_repository(ACME))
    base = yaml.safe_load(tree["envs/dev/dev1/kustomization.yaml"])["resources"]
    assert base[:2] == ["../../../crds", "../../../clusters/dev1"]
    preview = yaml.safe_load(tree["envs/preview/dev1/kustomization.yaml"])["resources"]
    assert not any(r.startswith("../") for r in preview)
    assert "../../crds" not in yaml.safe_load(tree["clusters/dev1/kustomization.yaml"])["resources"]


def test_paths_follow_the_gitops_path_of_the_platform(tmp_path: Path) -> None:
    repo = tmp_path / "acme"
    shutil.copytree(ACME, repo)
    platform = repo / "platform.yaml"
    text = platform.read_text()
    anchor = "  controller: {namespace: chamberlain-system, serviceAccount: chamberlain}\n"
    assert anchor in text
    platform.write_text(text.replace(anchor, anchor + "  gitops: {path: deploy/chamberlain}\n"))
    tree = render_repository(load_repository(repo))
    ks = _cluster(tree, "dev1")
    assert ks["chamberlain-crds"]["spec"]["path"] == "./deploy/chamberlain/crds"
    assert ks["chamberlain-bootstrap-dev"]["spec"]["path"] == "./deploy/chamberlain/envs/dev/dev1/bootstrap"
