"""The lab's new servers without running them (command lines, ports, the Git server's CGI plumbing), and the Git
server for real: it needs only the ``git`` binary, so it runs with the unit tests."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from chamberlain.clock import FakeClock
from chamberlain.lab import gitserver
from chamberlain.lab import lab as lab_mod
from chamberlain.lab.servers import PROFILING_ENV, GitServer, LabHost
from tests.conftest import run_cli


def _lab(tmp_path: Path, offset: int = 0) -> lab_mod.Lab:
    host = LabHost(tmp_path / "cache", {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, FakeClock())
    return lab_mod.Lab(lab_mod.LabConfig(lab_dir=tmp_path / "lab", host=host,
                                         ports=lab_mod.Ports().shifted(offset)))


def test_ports_are_distinct_and_all_move_with_the_offset() -> None:
    ports = lab_mod.Ports()
    values = list(vars(ports).values())
    assert len(set(values)) == len(values)
    shifted = ports.shifted(1580)
    assert all(b - a == 1580 for a, b in zip(values, vars(shifted).values(), strict=True))


def test_a_lab_json_from_before_the_new_servers_keeps_its_offset() -> None:
    """A lab brought up before kcm/Flux/git existed stored no port for them: they follow its offset, so the next
    ``up`` does not take the lab for one whose ports changed (and restart it)."""
    old = {k: v + 1630 for k, v in vars(lab_mod.Ports()).items() if not k.startswith(("flux", "git", "kube_c"))}
    old["vault"] = old.pop("authority")
    assert lab_mod.Ports.from_json(old) == lab_mod.Ports().shifted(1630)
    assert lab_mod.Ports.from_json(json.loads(json.dumps(vars(lab_mod.Ports())))) == lab_mod.Ports()


def test_status_names_every_server(tmp_path: Path) -> None:
    assert set(_lab(tmp_path).servers()) == {"etcd", "git", "kube-apiserver", "kube-controller-manager", "openbao",
                                             "postgres", "external-secrets", "flux-source-controller",
                                             "flux-kustomize-controller"}


def test_controller_manager_command_line(tmp_path: Path) -> None:
    lab = _lab(tmp_path, 1580)
    kcm = lab.controller_manager
    argv = kcm.argv()
    assert f"--secure-port={lab_mod.Ports().kube_controller_manager + 1580}" in argv
    assert "--bind-address=127.0.0.1" in argv and "--leader-elect=false" in argv
    assert f"--service-account-private-key-file={lab.pki.sa_key}" in argv
    assert f"--kubeconfig={kcm.kubeconfig}" in argv
    controllers = next(a for a in argv if a.startswith("--controllers=")).split("=", 1)[1].split(",")
    for needed in ("namespace-controller", "garbage-collector-controller", "deployment-controller",
                   "replicaset-controller", "statefulset-controller", "serviceaccount-token-controller"):
        assert needed in controllers
    assert kcm.listens_on() == (lab_mod.Ports().kube_controller_manager + 1580,)


def test_the_api_server_serves_pprof_only_when_asked(tmp_path: Path) -> None:
    def argv(value: str | None) -> list[str]:
        env = {"PATH": "/usr/bin:/bin"} | ({PROFILING_ENV: value} if value is not None else {})
        host = LabHost(tmp_path / "cache", env, FakeClock())
        return lab_mod.Lab(lab_mod.LabConfig(lab_dir=tmp_path / "lab", host=host)).apiserver.argv()

    assert "--profiling=false" in argv(None)
    assert "--profiling=true" in argv("1")
    assert "--profiling=false" in argv("yes")  # only "1" turns it on


def test_flux_command_lines_stay_on_loopback_and_advertise_what_they_bind(tmp_path: Path) -> None:
    lab = _lab(tmp_path, 1050)
    p = lab_mod.Ports().shifted(1050)
    source = lab.flux_source.argv()
    assert f"--storage-addr=127.0.0.1:{p.flux_source_storage}" in source
    assert f"--storage-adv-addr=127.0.0.1:{p.flux_source_storage}" in source
    assert f"--storage-path={lab.flux_source.dir / 'storage'}" in source
    kustomize = lab.flux_kustomize.argv()
    for argv, metrics, health in ((source, p.flux_source_metrics, p.flux_source_health),
                                  (kustomize, p.flux_kustomize_metrics, p.flux_kustomize_health)):
        assert f"--metrics-addr=127.0.0.1:{metrics}" in argv and f"--health-addr=127.0.0.1:{health}" in argv
        assert "--enable-leader-election=false" in argv
        assert not any(a.startswith("--events-addr") for a in argv)  # no events receiver in the lab
    assert "--no-remote-bases=true" in kustomize
    assert set(lab.flux_source.listens_on()) == {p.flux_source_health, p.flux_source_metrics, p.flux_source_storage}


def test_cgi_environment_of_a_push() -> None:
    env = gitserver.cgi_environment(
        root=Path("/lab/git/repos"), method="POST", target="/lab.git/git-receive-pack?x=1",
        headers={"Content-Type": "application/x-git-receive-pack-request", "Content-Encoding": "gzip",
                 "Git-Protocol": "version=2", "Authorization": "Basic c2VjcmV0"},
        remote="127.0.0.1", body_length=12)
    assert env["PATH_INFO"] == "/lab.git/git-receive-pack" and env["QUERY_STRING"] == "x=1"
    assert env["CONTENT_TYPE"] == "application/x-git-receive-pack-request" and env["CONTENT_LENGTH"] == "12"
    assert env["HTTP_CONTENT_ENCODING"] == "gzip" and env["GIT_PROTOCOL"] == "version=2"
    assert env["GIT_PROJECT_ROOT"] == "/lab/git/repos" and env["GIT_HTTP_EXPORT_ALL"] == "1"
    assert "c2VjcmV0" not in json.dumps(env)  # headers it does not need are not passed on


def test_split_cgi_output() -> None:
    status, headers, body = gitserver.split_cgi_output(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno")
    assert (status, headers, body) == (404, [("Content-Type", "text/plain")], b"no")
    assert gitserver.split_cgi_output(b"Content-Type: a/b\n\n\x00\x01")[::2] == (200, b"\x00\x01")


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_server_serves_push_and_clone(tmp_path: Path, unused_port: int) -> None:
    lab = _lab(tmp_path)
    server = GitServer(lab.config.lab_dir, lab.config.host, unused_port)
    proc = server.start()
    try:
        server.wait(proc, timeout=20)
        health = server.health()
        assert health.healthy and health.version
        work = tmp_path / "work"
        work.mkdir()
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}

        def run(*args: str, cwd: Path = work) -> str:
            return subprocess.run([*git, *args], cwd=cwd, env=env, check=True, capture_output=True,
                                  text=True).stdout.strip()

        run("init", "--quiet", "--initial-branch=main")
        (work / "a.yaml").write_text("a: 1\n")
        run("add", "a.yaml")
        run("commit", "--quiet", "-m", "one")
        # Large enough to go chunked past a small postBuffer: the server decodes it.
        (work / "big.bin").write_bytes(bytes(range(256)) * 8192)
        run("add", "big.bin")
        run("commit", "--quiet", "-m", "big")
        run("-c", "http.postBuffer=65536", "push", "--quiet", server.repo_url(), "HEAD:main")
        run("clone", "--quiet", server.repo_url(), str(tmp_path / "clone"), cwd=tmp_path)
        assert (tmp_path / "clone" / "a.yaml").read_text() == "a: 1\n"
        assert run("rev-parse", "HEAD", cwd=tmp_path / "clone") == run("rev-parse", "HEAD")
    finally:
        assert server.stop()
    assert server.running() is None


def test_cli_lab_tools_json_on_an_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAMBERLAIN_CACHE_DIR", str(tmp_path))
    got = run_cli("lab", "tools", "-o", "json")
    assert got.code == 0, got.err
    report = json.loads(got.out)
    assert report["tools"]["kube-controller-manager"]["available"] is False
    assert report["tools"]["source-controller"]["path"] is None
    text = run_cli("lab", "tools")
    assert text.code == 0
    assert "missing (not built: python -m chamberlain.lab build flux-kustomize-controller)" in text.out
