"""Flux in the lab, end to end: a tree pushed with ``git`` to the lab's Git server is cloned by the real
source-controller, served as an artifact on loopback, built and applied by the real kustomize-controller.

A GitRepository and a Kustomization are created with the kubernetes client; the test watches the Kustomization
until it is Ready at the pushed revision and the ConfigMap of the tree is in the cluster. A second push, with a
reconcile requested on the GitRepository (Flux's ``reconcile.fluxcd.io/requestedAt`` annotation, what ``flux
reconcile`` writes), reaches the cluster the same way.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import rollouts
from .conftest import RunningLab

pytestmark = pytest.mark.lab
kubernetes = pytest.importorskip("kubernetes")

SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
FLUX_NS = "flux-system"
TARGET_NS = "flux-smoke"
REPO = "flux-smoke"


def _git(*args: str, cwd: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", "-c", "user.name=lab", "-c", "user.email=lab@example.invalid", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _push_configmap(work: Path, url: str, value: str) -> str:
    """Commit ``apps/configmap.yaml`` with ``value`` and push it to ``url``'s main; returns the commit."""
    (work / "apps").mkdir(parents=True, exist_ok=True)
    (work / "apps" / "configmap.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: smoke\n  namespace: {TARGET_NS}\n"
        f"data:\n  value: {value}\n", encoding="utf-8")
    _git("add", "-A", cwd=work)
    _git("commit", "--quiet", "-m", f"value {value}", cwd=work)
    _git("push", "--quiet", url, "HEAD:main", cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)


def _ready_at(revision: str) -> Callable[[list[Any]], Any]:
    def check(items: list[Any]) -> Any:
        for obj in items:
            status = obj.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if ready and status.get("lastAppliedRevision") == revision:
                return obj
        return None

    return check


def test_flux_applies_what_was_pushed_to_the_lab_git_server(lab: RunningLab, k8s: Any, tmp_path: Path,
                                                            make_namespace: Callable[[str], str]) -> None:
    git = lab.lab.git
    git.ensure_repo(REPO)
    url = git.repo_url(REPO)
    work = tmp_path / "checkout"
    work.mkdir()
    _git("init", "--quiet", "--initial-branch=main", cwd=work)
    commit = _push_configmap(work, url, "one")

    make_namespace(FLUX_NS)
    make_namespace(TARGET_NS)
    custom = kubernetes.client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object(*SOURCE[:2], FLUX_NS, SOURCE[2], {
        "apiVersion": "/".join(SOURCE[:2]), "kind": "GitRepository", "metadata": {"name": REPO},
        "spec": {"url": url, "ref": {"branch": "main"}, "interval": "10m", "timeout": "30s"}})
    custom.create_namespaced_custom_object(*KUSTOMIZE[:2], FLUX_NS, KUSTOMIZE[2], {
        "apiVersion": "/".join(KUSTOMIZE[:2]), "kind": "Kustomization", "metadata": {"name": REPO},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": REPO}, "path": "./apps", "prune": True,
                 "interval": "10m", "timeout": "1m"}})

    started = time.monotonic()
    rollouts.watch_until(custom.list_namespaced_custom_object, _ready_at(f"main@sha1:{commit}"), timeout=120,
                         what="Kustomization Ready at the pushed revision", group=KUSTOMIZE[0],
                         version=KUSTOMIZE[1], namespace=FLUX_NS, plural=KUSTOMIZE[2])
    print(f"\n[flux] push -> Kustomization Ready in {time.monotonic() - started:.1f}s")
    core = kubernetes.client.CoreV1Api(k8s)
    cm = core.read_namespaced_config_map("smoke", TARGET_NS)
    assert cm.data == {"value": "one"}
    assert cm.metadata.labels["kustomize.toolkit.fluxcd.io/name"] == REPO
    source = custom.get_namespaced_custom_object(*SOURCE[:2], FLUX_NS, SOURCE[2], REPO)
    # The artifact is served from the lab's loopback port, which kustomize-controller fetched it from.
    assert source["status"]["artifact"]["url"].startswith(f"http://{lab.lab.flux_source.storage_address}/")

    commit = _push_configmap(work, url, "two")
    custom.patch_namespaced_custom_object(*SOURCE[:2], FLUX_NS, SOURCE[2], REPO, {"metadata": {"annotations": {
        "reconcile.fluxcd.io/requestedAt": f"push-{commit[:8]}"}}})
    rollouts.watch_until(custom.list_namespaced_custom_object, _ready_at(f"main@sha1:{commit}"), timeout=120,
                         what="Kustomization Ready at the second revision", group=KUSTOMIZE[0],
                         version=KUSTOMIZE[1], namespace=FLUX_NS, plural=KUSTOMIZE[2])
    assert core.read_namespaced_config_map("smoke", TARGET_NS).data == {"value": "two"}
