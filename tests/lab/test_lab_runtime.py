"""The lab itself: every server healthy, versions as pinned, ``up`` idempotent."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from chamberlain.lab import builds
from chamberlain.lab import lab as lab_mod
from chamberlain.lab.servers import LabError
from tests.conftest import lab_authority, lab_host

from .conftest import RunningLab

pytestmark = pytest.mark.lab


def test_status_reports_every_component_healthy(lab: RunningLab) -> None:
    report = lab_mod.status(lab.lab.config.lab_dir, lab_host())
    flavor = lab.lab.authority.name
    assert set(report["components"]) == {flavor, "kube-apiserver", "etcd", "external-secrets", "postgres",
                                         "kube-controller-manager", "flux-source-controller",
                                         "flux-kustomize-controller", "git"}
    assert report["authority"] == flavor
    unhealthy = {k: v for k, v in report["components"].items() if not v["healthy"]}
    assert not unhealthy
    comps = report["components"]
    assert comps["kube-apiserver"]["version"] == builds.KUBERNETES_VERSION
    assert comps["etcd"]["version"] == builds.ETCD_VERSION.lstrip("v")
    expected = builds.VAULT_VERSION if flavor == "vault" else "v" + builds.openbao_version()
    assert comps[flavor]["version"] == expected
    assert comps["external-secrets"]["version"] == builds.ESO_VERSION
    assert comps["kube-controller-manager"]["version"] == builds.KUBERNETES_VERSION
    assert comps["flux-source-controller"]["version"] == builds.FLUX_SOURCE_VERSION
    assert comps["flux-kustomize-controller"]["version"] == builds.FLUX_KUSTOMIZE_VERSION
    assert comps["git"]["version"]
    assert all(v["address"].split("//")[1].startswith("127.0.0.1:") for v in comps.values())
    assert report["kubeconfig"] == str(lab.kubeconfig)
    assert lab.kubeconfig.stat().st_mode & 0o077 == 0


def test_up_again_is_idempotent(lab: RunningLab) -> None:
    # Compare with the processes running just before (other tests in the session may restart Vault on purpose).
    before = {}
    for name, server in lab.lab.servers().items():
        info = server.running()
        assert info is not None, f"{name} is not running"
        before[name] = info.pid
    report = lab_mod.up(lab.lab.config, progress=lambda _msg: None)
    assert lab_mod.healthy(report)
    for name, server in lab.lab.servers().items():
        info = server.running()
        assert info is not None and info.pid == before[name], f"{name} was restarted"


def test_private_keys_are_private(lab: RunningLab) -> None:
    pki = lab.lab.pki
    for key in (pki.ca.key, pki.apiserver.key, pki.admin.key, pki.vault.key, pki.sa_key, pki.controller_manager.key,
                pki.controller_manager_serving.key, lab.lab.controller_manager.kubeconfig):
        assert key.stat().st_mode & 0o077 == 0, key


def test_cli_status_json_and_exit_code(lab: RunningLab, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from chamberlain.cli.lab import lab_app

    runner = CliRunner()
    ok = runner.invoke(lab_app, ["status", "--lab-dir", str(lab.lab.config.lab_dir), "-o", "json"])
    assert ok.exit_code == 0, ok.output
    assert set(json.loads(ok.stdout)["components"]) == set(lab.status["components"])
    text = runner.invoke(lab_app, ["status", "--lab-dir", str(lab.lab.config.lab_dir)])
    assert text.exit_code == 0 and "kube-apiserver" in text.stdout
    empty = runner.invoke(lab_app, ["status", "--lab-dir", str(tmp_path), "-o", "json"])
    assert empty.exit_code == 1
    assert not any(c["healthy"] for c in json.loads(empty.stdout)["components"].values())


def test_cli_tools_json_names_every_built_tool(lab: RunningLab) -> None:
    import json

    from typer.testing import CliRunner

    from chamberlain.cli.lab import lab_app

    got = CliRunner().invoke(lab_app, ["tools", "-o", "json"])
    assert got.exit_code == 0, got.output
    tools = json.loads(got.stdout)["tools"]
    running = ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "external-secrets", "source-controller",
               "kustomize-controller", "sops", "age", "age-keygen", "git", "postgres",
               "bao" if lab.lab.config.authority == "openbao" else "vault"]
    for name in running:
        assert tools[name]["available"], (name, tools[name])
        assert Path(tools[name]["path"]).exists(), name
    assert tools["kube-controller-manager"]["path"] == str(lab.lab.controller_manager.argv()[0])


def test_failed_up_stops_what_it_started(lab: RunningLab, tmp_path: Path) -> None:
    """A port taken by someone else makes ``up`` fail cleanly: nothing it started survives."""
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 200
    config = lab_mod.LabConfig(lab_dir=tmp_path / "lab", host=lab_host(), ports=lab_mod.Ports().shifted(offset),
                               authority=lab_authority())
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", config.ports.kube_apiserver))
        blocker.listen(1)
        with pytest.raises(LabError, match="already in use"):
            lab_mod.up(config, progress=lambda _msg: None)
    finally:
        blocker.close()
        lab_mod.Lab(config).postgres.purge()
    assert not list((config.lab_dir / "run").glob("*.pid"))
    report = lab_mod.status(config.lab_dir, lab_host())
    assert not any(c["healthy"] for c in report["components"].values())
