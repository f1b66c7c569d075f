"""Render drops a retired bootstrap file from its environment's GitOps output, keeps render a pure function of Git,
and never lets GitOps prune a bootstrap Secret (Flux ``prune: false``, Argo CD ``Prune=false``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from chamberlain import wellknown as wk
from chamberlain.checks.gate import validate_repository
from chamberlain.handover.declare import write_retirement
from chamberlain.intent.loader import load_repository
from chamberlain.render import RenderedTree, render_repository
from tests.conftest import EXAMPLES


def retired(tmp_path: Path, *pairs: tuple[str, str]) -> RenderedTree:
    repo = tmp_path / "acme"
    if not repo.exists():
        shutil.copytree(EXAMPLES / "acme", repo)
    for intent, env in pairs:
        write_retirement(load_repository(repo), intent, env)
    result = validate_repository(repo)
    assert result.findings == []
    return render_repository(result.repo)


def test_a_file_retired_in_dev_leaves_dev_and_stays_in_prod(tmp_path: Path) -> None:
    tree = retired(tmp_path, ("smtp-relay", "dev"))
    gen = yaml.safe_load(tree["envs/dev/dev1/ksops-bootstrap.yaml"])
    assert gen["files"] == ["./bootstrap/registry-pull.sops.yaml"]
    assert yaml.safe_load(tree["envs/dev/dev1/bootstrap/kustomization.yaml"])["resources"] == [
        "registry-pull.sops.yaml"]
    assert "envs/dev/dev1/bootstrap/smtp-relay.sops.yaml" not in tree  # not copied where nothing needs it
    for app in ("envs/prod/prod-eu1", "envs/prod/prod-us1"):
        assert f"{app}/bootstrap/smtp-relay.sops.yaml" in tree
        assert "./bootstrap/smtp-relay.sops.yaml" in yaml.safe_load(tree[f"{app}/ksops-bootstrap.yaml"])["files"]


def _flux(tree: Any, cluster: str, name: str) -> dict[str, Any]:
    """One Flux Kustomization of ``flux/<cluster>/`` by name."""
    docs = [d for p, text in tree.files.items() if p.startswith(f"flux/{cluster}/")
            for d in yaml.safe_load_all(text) if d and d.get("kind") == "Kustomization" and "spec" in d]
    (found,) = [d for d in docs if d["metadata"]["name"] == name]
    return found


def test_every_file_retired_leaves_an_empty_flux_kustomization_and_no_generator(tmp_path: Path) -> None:
    tree = retired(tmp_path, ("smtp-relay", "dev"), ("registry-pull", "dev"))
    kust = yaml.safe_load(tree["envs/dev/dev1/kustomization.yaml"])
    assert "generators" not in kust and "patches" not in kust
    assert "envs/dev/dev1/ksops-bootstrap.yaml" not in tree
    # Flux keeps reconciling the (now empty) path, so its inventory forgets the Secrets; prune stays off
    assert yaml.safe_load(tree["envs/dev/dev1/bootstrap/kustomization.yaml"])["resources"] == []
    flux = _flux(tree, "dev1", "chamberlain-bootstrap-dev")
    assert flux["spec"]["prune"] is False and flux["spec"]["path"] == "./envs/dev/dev1/bootstrap"
    assert _flux(tree, "prod-eu1", "chamberlain-bootstrap-prod")["spec"]["path"] == "./envs/prod/prod-eu1/bootstrap"


def test_render_stays_a_pure_function_of_git(tmp_path: Path) -> None:
    first = retired(tmp_path, ("smtp-relay", "dev"))
    again = render_repository(load_repository(tmp_path / "acme"))
    assert dict(first.files) == dict(again.files)


def test_argo_never_prunes_a_bootstrap_secret() -> None:
    tree = render_repository(load_repository(EXAMPLES / "acme"))
    (patch,) = yaml.safe_load(tree["envs/dev/dev1/kustomization.yaml"])["patches"]
    annotations = yaml.safe_load(patch["patch"])["metadata"]["annotations"]
    assert annotations[wk.ARGOCD_SYNC_OPTIONS] == "Prune=false"
    assert _flux(tree, "dev1", "chamberlain-bootstrap-dev")["spec"]["prune"] is False
