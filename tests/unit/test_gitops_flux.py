"""Driving Flux (manifests, status reading, reconcile requests) against the fake API server, and publishing a
rendered tree to a real Git repository on disk."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chamberlain.gitops import flux
from chamberlain.gitops.git import GitError, publish_tree
from chamberlain.kube.fake import FakeKube


def _kustomization(name: str, *, ready: str | None = None, generation: int = 1, observed: int = 1,
                   revision: str = "", handled: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "Why", "message": "said Flux"}]
    if revision:
        status["lastAppliedRevision"] = revision
    if handled:
        status["lastHandledReconcileAt"] = handled
    return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": flux.NAMESPACE, "generation": generation}, "status": status}


def test_readiness_reads_ready_revision_and_generation() -> None:
    r = flux.readiness(_kustomization("a", ready="True", revision="main@sha1:abc123"))
    assert r.ready is True and r.at("abc123") and not r.at("abc") and not r.at("")
    assert flux.readiness(_kustomization("a", ready="False")).ready is False
    assert flux.readiness(_kustomization("a", ready="Unknown")).ready is None
    # A status from before the last spec change says nothing about the current spec.
    assert flux.readiness(_kustomization("a", ready="True", generation=2, observed=1)).ready is None
    assert flux.readiness(None, name="gone").reason == "NotFound"
    assert "not Ready" in flux.readiness(_kustomization("a", ready="False")).describe()


def test_root_kustomization_points_at_the_cluster_under_the_gitops_path() -> None:
    assert flux.root_kustomization("dev1")["spec"]["path"] == "./flux/dev1"
    assert flux.root_kustomization("dev1", "./deploy/")["spec"]["path"] == "./deploy/flux/dev1"


def test_a_failed_root_reconcile_is_retried_within_a_minute_not_after_the_interval() -> None:
    spec = flux.root_kustomization("dev1")["spec"]
    assert spec["interval"] == "10m" and spec["retryInterval"] == "1m"
    repo = flux.git_repository("http://127.0.0.1:1/r.git", "trunk")
    assert repo["spec"]["ref"] == {"branch": "trunk"} and repo["metadata"]["name"] == "flux-system"


def test_install_decryption_key_is_idempotent_and_updates_a_changed_key() -> None:
    kube = FakeKube()
    assert flux.install_decryption_key(kube, "AGE-SECRET-KEY-1ONE") == "created"
    assert flux.install_decryption_key(kube, "AGE-SECRET-KEY-1ONE") == "unchanged"
    assert flux.install_decryption_key(kube, "AGE-SECRET-KEY-1TWO") == "updated"
    secret = kube.get_secret("flux-system", "sops-age")
    assert secret is not None and secret.data == {flux.AGE_KEY: "AGE-SECRET-KEY-1TWO"}


def test_reconcile_waits_for_the_request_to_be_handled() -> None:
    kube = FakeKube()
    kube.add_custom_object(flux.KUSTOMIZATIONS, _kustomization("k", ready="True", handled="old"))

    def flux_handles(k: FakeKube) -> bool:
        obj = k.custom_objects[("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "flux-system", "k")]
        obj["status"]["lastHandledReconcileAt"] = obj["metadata"]["annotations"][flux.RECONCILE_REQUESTED]
        return True

    kube.on_wait.append(flux_handles)
    r = flux.reconcile(kube, "k", "2026-12-02T10:00:00Z")
    assert r.handled == "2026-12-02T10:00:00Z" and r.ready is True


def test_reconcile_not_handled_is_a_flux_error_with_fluxs_last_word() -> None:
    kube = FakeKube()
    kube.add_custom_object(flux.KUSTOMIZATIONS, _kustomization("k", ready="False", handled="old"))
    with pytest.raises(flux.FluxError, match="said Flux"):
        flux.reconcile(kube, "k", "t1", timeout=1)


def test_wait_ready_needs_the_commit() -> None:
    kube = FakeKube()
    kube.add_custom_object(flux.KUSTOMIZATIONS, _kustomization("k", ready="True", revision="main@sha1:old"))
    with pytest.raises(flux.FluxError, match="for commit new"):
        flux.wait_ready(kube, "k", commit="new", timeout=1)

    def applied(k: FakeKube) -> bool:
        k.add_custom_object(flux.KUSTOMIZATIONS, _kustomization("k", ready="True", revision="main@sha1:new"))
        return True

    kube.on_wait.append(applied)
    assert flux.wait_ready(kube, "k", commit="new").at("new")


def _bare(tmp_path: Path) -> str:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    return str(remote)


def _files(url: str, tmp_path: Path) -> dict[str, str]:
    out = tmp_path / "check"
    subprocess.run(["git", "clone", "--quiet", url, str(out)], check=True)
    return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_publish_tree_commits_exactly_the_tree_and_is_idempotent(tmp_path: Path) -> None:
    url = _bare(tmp_path)
    tree = tmp_path / "rendered"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "one.yaml").write_text("one: 1\n")
    (tree / "two.yaml").write_text("two: 2\n")
    first = publish_tree(tree, url, "render 1")
    assert first.changed and len(first.commit) == 40
    again = publish_tree(tree, url, "render 1 again")
    assert again == dataclasses.replace(first, changed=False)
    (tree / "two.yaml").unlink()  # a file that left the output leaves the branch
    (tree / "a" / "one.yaml").write_text("one: 2\n")
    second = publish_tree(tree, url, "render 2")
    assert second.changed and second.commit != first.commit
    assert _files(url, tmp_path) == {"a/one.yaml": "one: 2\n"}


def test_publish_tree_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="no rendered tree"):
        publish_tree(tmp_path / "missing", "file:///nowhere", "m")
    (tmp_path / "t").mkdir()
    with pytest.raises(GitError, match="git clone failed"):
        publish_tree(tmp_path / "t", str(tmp_path / "no-such-remote.git"), "m")


def test_publish_tree_ignores_the_callers_git_config_and_a_nested_git_dir(tmp_path: Path) -> None:
    url = _bare(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    # A user's signing and hooks must not apply to chamberlain's commit.
    (home / ".gitconfig").write_text("[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = /bin/false\n")
    tree = tmp_path / "rendered"
    (tree / ".git").mkdir(parents=True)
    (tree / ".git" / "config").write_text("[core]\n\thooksPath = /tmp/evil\n")
    (tree / "a.yaml").write_text("a: 1\n")
    published = publish_tree(tree, url, "render", base_env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert published.changed and _files(url, tmp_path) == {"a.yaml": "a: 1\n"}


def test_a_url_is_never_read_as_an_option(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    marker = tmp_path / "ran"
    with pytest.raises(GitError, match="git clone failed"):
        publish_tree(tmp_path / "t", f"--upload-pack=touch {marker}", "m")
    assert not marker.exists()


def test_install_decryption_key_keeps_other_keys() -> None:
    kube = FakeKube()
    kube.ensure_namespace("flux-system")
    kube.create_secret("flux-system", "sops-age", {"team-b.agekey": "AGE-SECRET-KEY-1B"})
    assert flux.install_decryption_key(kube, "AGE-SECRET-KEY-1A") == "updated"
    secret = kube.get_secret("flux-system", "sops-age")
    assert secret is not None and set(secret.data) == {"team-b.agekey", flux.AGE_KEY}
