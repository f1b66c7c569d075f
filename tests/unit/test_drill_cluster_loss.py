"""The cluster-loss drill's pure decisions: what a cluster loss stops and in which order, which consumer Secrets
the proof rests on, which lab and working directory it drills on. The drill itself runs against the real lab
(tests/lab/test_drill_cluster_loss.py)."""

from __future__ import annotations

import json
from pathlib import Path

from chamberlain.drill.cluster_loss import CLUSTER_SERVERS, marked, servers_to_stop, world_dirs
from chamberlain.lab.lab import Lab, LabConfig
from tests.conftest import lab_host


def test_controllers_stop_before_the_api_server_and_etcd_and_the_authority_last() -> None:
    running = ["etcd", "git", "kube-apiserver", "kube-controller-manager", "openbao", "postgres", "external-secrets",
               "flux-source-controller", "flux-kustomize-controller"]
    assert servers_to_stop(running, "openbao") == [
        "flux-kustomize-controller", "flux-source-controller", "external-secrets", "kube-controller-manager",
        "kube-apiserver", "etcd", "openbao"]


def test_what_is_not_running_is_not_stopped_and_git_and_postgres_survive() -> None:
    assert servers_to_stop(["etcd", "kube-apiserver", "git", "postgres"], "vault") == ["kube-apiserver", "etcd"]


def test_every_cluster_server_is_a_lab_server(tmp_path: Path) -> None:
    names = set(Lab(LabConfig(lab_dir=tmp_path, host=lab_host())).servers())
    assert set(CLUSTER_SERVERS) <= names


def test_only_marked_consumer_secrets_carry_the_proof() -> None:
    found, unmarked = marked({("a", "s"): "m1", ("b", "derived"): "", ("c", "t"): "m2"})
    assert found == {("a", "s"): "m1", ("c", "t"): "m2"}
    assert unmarked == [("b", "derived")]


def test_world_dirs() -> None:
    work = Path("/labs/one/demo-x")
    assert world_dirs(None, work) == (Path("/labs/one"), work)
    assert world_dirs(Path("/elsewhere"), work) == (Path("/elsewhere"), work)
    assert world_dirs(Path("/labs/two"), None) == (Path("/labs/two"), None)
    assert world_dirs(None, None) == (None, None)


def test_a_work_dir_that_is_no_demo_world_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli("drill", "cluster-loss", "--work-dir", str(tmp_path / "nope"), "-o", "json")
    assert result.code == 1 and "Traceback" not in result.out + result.err
    data = json.loads(result.out)
    assert data["ok"] is False and data["drill"] == "cluster-loss" and data["matched"] == 0
    assert "not a demo working directory" in data["error"] and data["steps"] == []
