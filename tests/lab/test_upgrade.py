"""``chamberlain upgrade`` on an installation made by the previous release (v0.4.0), against the real servers.

The fixture extracts the ``v0.4.0`` tag (``git archive``) and runs *its* demo through ``workloads`` in a
subprocess (its own sources first on ``PYTHONPATH``, this venv): lab up, render + Flux, authority init/configure
(one shared Kubernetes auth mount, the configurator on the controller's ServiceAccount), provision, handover, the
declared workloads with ESO-materialized consumer Secrets (v1 markers), an unsigned one-chain ledger. Then this
release's ``upgrade plan`` and ``apply`` (one crash injected and resumed), the "Git" step (re-render with this
release, publish, Flux applies the SecretStores at the per-cluster mount), ``apply`` again, ``audit pin/verify``.

Own lab on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 1700. Tests run in file order and build on
each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chamberlain.clock import SystemClock
from tests.conftest import REPO_ROOT, lab_authority, run_cli, unbuilt

pytestmark = pytest.mark.own_lab  # its own lab (the previous release's): runs beside the shared lab

PREVIOUS = "v0.4.0"
# The tag's commit, an ancestor of main: a clone without tags still has it.
PREVIOUS_COMMIT = "13fd72339bbfce9627f52e0be9233d0d639da185"
SRC = REPO_ROOT / "src"


@dataclass
class Old:
    lab_dir: Path
    work: Path
    repo: Path
    report: dict[str, Any]
    address: str
    old_src: Path

    @property
    def kubeconfig(self) -> Path:
        return self.lab_dir / "kubeconfig"

    @property
    def ca(self) -> Path:
        return self.lab_dir / "pki" / "ca.crt"

    def conn(self) -> list[str]:
        return ["--cluster", "dev1", "--vault-addr", self.address, "--vault-cacert", str(self.ca),
                "--kubeconfig", str(self.kubeconfig)]

    def upgrade_args(self) -> list[str]:
        # The previous release's lab Vault reviews tokens with a reviewer JWT (it runs outside the cluster), and
        # its OpenBao declares no audit device in its configuration file: both carried over, as an operator would.
        return ["-e", "dev", *self.conn(), "--token-reviewer-jwt-file", str(self.work / "reviewer.jwt"),
                "--audit-file", ""]


def _old_cli(src: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", "from chamberlain.cli.main import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Old]:
    from chamberlain.lab import builds

    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    found = [ref for ref in (f"{PREVIOUS}^{{commit}}", PREVIOUS_COMMIT) if subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", ref], capture_output=True,
        check=False).returncode == 0]
    if not found:
        pytest.fail(f"{PREVIOUS} ({PREVIOUS_COMMIT}) is not in this clone: the upgrade is tested from it")
    base = tmp_path_factory.mktemp("upgrade")
    old_src = base / "previous"
    old_src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", found[0]], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive.stdout, check=True)
    lab_dir = base / "lab"
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 1700
    try:
        proc = _old_cli(old_src / "src", "demo", "-o", "json", "--through", "workloads", "--lab-dir", str(lab_dir),
                        "--port-offset", str(offset), "--keep", "--authority", lab_authority(), timeout=900)
        assert proc.returncode == 0, f"{PREVIOUS} demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        report = json.loads(proc.stdout)
        facts = {p["phase"]: p["facts"] for p in report["phases"]}
        work = Path(report["work_dir"])
        yield Old(lab_dir, work, work / "repo", report, facts["lab"]["authority_address"], old_src / "src")
    finally:
        if (lab_dir / "lab.json").exists():
            _old_cli(old_src / "src", "lab", "down", "--lab-dir", str(lab_dir), timeout=300)


# ------------------------------------------------------------------------------------------------ helpers


def _kube(o: Old) -> Any:
    from chamberlain.kube.client import KubeClient

    return KubeClient.from_kubeconfig(o.kubeconfig, clock=SystemClock())


def _orchestrator_kv(o: Old, mount: str) -> Any:
    from chamberlain.authority.session import Connection, orchestrator_kv
    from chamberlain.service import load_valid

    platform = load_valid(o.repo).platform
    assert platform is not None
    return orchestrator_kv(Connection(o.address, o.ca, clock=SystemClock()), platform, _kube(o),
                           "chamberlain.dev1.orchestrator", mount)


def _paths(o: Old) -> list[str]:
    facts = {p["phase"]: p["facts"] for p in o.report["phases"]}
    return list(facts["provision"]["paths"]) + [h.split(" -> ")[1] for h in facts["handover"]["handed_over"]]


def _versions(o: Old, mount: str) -> dict[str, tuple[int, str]]:
    """Per secret: its Vault version and the value-version chamberlain recorded (never a value)."""
    kv = _orchestrator_kv(o, mount)
    out = {}
    for full in _paths(o):
        m, _, path = full.partition("/")
        meta = kv.read_metadata(m, path)
        assert meta is not None, full
        out[full] = (meta.current_version, meta.custom.get("value-version", ""))
    return out


def _values(o: Old) -> list[tuple[str, str]]:
    """(path, value) of every version of every secret, read as the orchestrator (only to search output for)."""
    kv = _orchestrator_kv(o, "kubernetes-dev1")
    out = []
    for full in _paths(o):
        m, _, path = full.partition("/")
        meta = kv.read_metadata(m, path)
        for version in range(1, meta.current_version + 1):
            got = kv.read(m, path, version)
            out += [(full, v) for k, v in (got.data.items() if got else ()) if k not in ("username", "user")
                    and len(v) >= 8]
    return out


def _workloads(o: Old) -> dict[str, tuple[int, dict[str, str]]]:
    """Every workload's generation and pod-template annotations (a restart changes both)."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(o.kubeconfig))
    apps = kubernetes.client.AppsV1Api(api)
    out = {}
    for kind, lister in (("Deployment", apps.list_deployment_for_all_namespaces),
                         ("StatefulSet", apps.list_stateful_set_for_all_namespaces),
                         ("DaemonSet", apps.list_daemon_set_for_all_namespaces)):
        for w in lister().items:
            out[f"{kind}/{w.metadata.namespace}/{w.metadata.name}"] = (
                w.metadata.generation, dict(w.spec.template.metadata.annotations or {}))
    return out


def _consumers(o: Old) -> list[tuple[str, str, bool]]:
    """(namespace, consumer Secret, in sync) per consumer of every existing secret, as ``chamberlain status``
    judges it (a v1 annotation counts when the secret's metadata records it as the same Vault version)."""
    got = run_cli("status", str(o.repo), "-e", "dev", *o.conn(), "-o", "json")
    assert got.code == 0, got.err
    rows = json.loads(got.out)["secrets"]
    return [(c["namespace"], c["secret"], c["inSync"]) for r in rows if r["exists"] for c in r["consumers"]]


def _annotations(o: Old) -> dict[str, str]:
    """Every Secret of the cluster that carries a version-marker annotation, and that marker."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(o.kubeconfig))
    out = {}
    for secret in kubernetes.client.CoreV1Api(api).list_secret_for_all_namespaces().items:
        marker = (secret.metadata.annotations or {}).get("chamberlain.dev/version-marker")
        if marker:
            out[f"{secret.metadata.namespace}/{secret.metadata.name}"] = marker
    return out


def _plan(o: Old) -> tuple[int, dict[str, Any]]:
    got = run_cli("upgrade", "plan", str(o.repo), *o.upgrade_args(), "-o", "json")
    assert got.code in (0, 1), got.out + got.err
    return got.code, json.loads(got.out)


# ------------------------------------------------------------------------------------------------ tests

BEFORE: dict[str, Any] = {}


def test_plan_lists_the_steps_and_changes_nothing(old: Old) -> None:
    BEFORE["versions"] = _versions(old, "kubernetes")  # the previous release's orchestrator, shared mount
    BEFORE["workloads"] = _workloads(old)
    BEFORE["markers"] = _annotations(old)
    assert BEFORE["workloads"] and BEFORE["markers"]
    assert all(m.startswith("v1:") for m in BEFORE["markers"].values())
    code, plan = _plan(old)
    assert code == 1 and plan["complete"] is False
    states = {s["id"]: s["state"] for s in plan["steps"]}
    assert states["authority-configuration"] == "needed" and states["configurator-account"] == "needed"
    assert states["legacy-configurator-role"] == "waiting"  # the new configurator is not proven yet
    assert states["markers"] == "needed" and states["ledger-link"] == "needed"
    assert states["legacy-roles"] == "waiting" and states["custody"] == "done"
    markers = next(s for s in plan["steps"] if s["id"] == "markers")
    assert sorted(markers["items"]) == sorted(BEFORE["versions"])
    assert _plan(old)[1]["steps"] == plan["steps"]  # plan changed nothing


def test_apply_resumes_after_a_crash_and_restarts_nothing(old: Old) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "CHAMBERLAIN_CRASH_AT": "upgrade.markers.after-first"}
    crashed = subprocess.run([sys.executable, "-c", "from chamberlain.cli.main import main; main()", "upgrade",
                              "apply", str(old.repo), *old.upgrade_args()], capture_output=True, text=True,
                             timeout=300, env=env, check=False)
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    _, plan = _plan(old)
    states = {s["id"]: s["state"] for s in plan["steps"]}
    assert states["authority-configuration"] == "done" and states["markers"] == "needed"  # resumes there
    assert states["legacy-configurator-role"] == "done"

    got = run_cli("upgrade", "apply", str(old.repo), *old.upgrade_args(), "-o", "json")
    assert got.code == 3, got.out + got.err  # the old roles wait for Git
    result = json.loads(got.out)
    assert [r["step"] for r in result["applied"]] == ["markers", "ledger-link"]
    left = {s["id"]: s["state"] for s in result["steps"] if s["state"] != "done"}
    assert left == {"legacy-roles": "waiting"}
    assert "waiting for Git re-render" in next(s for s in result["steps"] if s["id"] == "legacy-roles")["changes"]

    again = run_cli("upgrade", "apply", str(old.repo), *old.upgrade_args(), "-o", "json")
    assert again.code == 3 and json.loads(again.out)["applied"] == []  # a second apply plans nothing
    text = run_cli("upgrade", "plan", str(old.repo), *old.upgrade_args())
    printed = crashed.stdout + crashed.stderr + got.out + got.err + again.out + again.err + text.out + text.err
    leaked = [full for full, value in _values(old) if value in printed]
    assert not leaked, f"values of {leaked} printed"

    # Nothing lost, nothing restarted, every consumer current though its annotation still holds the v1 marker.
    assert _versions(old, "kubernetes-dev1") == BEFORE["versions"]
    # The consumers' workloads are untouched; the new release's render adds the controller's own Deployments.
    after = _workloads(old)
    assert {k: v for k, v in after.items() if k in BEFORE["workloads"]} == BEFORE["workloads"]
    assert set(after) - set(BEFORE["workloads"]) <= {"Deployment/chamberlain-system/chamberlain-dev",
                                                      "Deployment/chamberlain-system/chamberlain-preview"}
    now = _annotations(old)  # still the v1 marker, or the v2 one if ESO refreshed meanwhile (no new data)
    assert now.keys() == BEFORE["markers"].keys()
    assert all(now[k] == BEFORE["markers"][k] or now[k].startswith("v2:") for k in now), now
    consumers = _consumers(old)
    assert consumers and all(ok for _, _, ok in consumers), consumers
    kv = _orchestrator_kv(old, "kubernetes-dev1")
    for full in BEFORE["versions"]:
        m, _, path = full.partition("/")
        custom = kv.read_metadata(m, path).custom
        assert custom["value-marker"].startswith("v2:") and custom["value-marker-v1"].startswith("v1:")
        assert custom["value-marker-v1-version"] == custom["value-version"]


def test_git_rerender_moves_the_stores_then_apply_removes_the_old_roles(old: Old) -> None:
    from chamberlain.authority.session import Connection, login_as
    from chamberlain.errors import ChamberlainError
    from chamberlain.gitops import flux
    from chamberlain.gitops.git import publish_tree
    from chamberlain.render.flux import CLUSTER, CRDS, bootstrap_name, env_name
    from chamberlain.service import load_valid, repository

    url = next(p for p in old.report["phases"] if p["phase"] == "gitops")["facts"]["repository"]
    out = old.work / "rendered-upgrade"
    rendered = repository.render(old.repo, out)
    assert rendered.rendered, [f.rule for f in rendered.findings]
    publish_tree(out, url, "chamberlain render: this release (SecretStores at the per-cluster auth mount)")
    kube = _kube(old)
    flux.reconcile_all(kube, [flux.ROOT, CRDS, CLUSTER, bootstrap_name("dev"), env_name("dev")],
                       f"upgrade/{time.time()}", timeout=180)
    # Every other Kustomization the render left on the cluster (the ephemeral preview environment's too): its
    # SecretStore moves as well, and waiting for Flux's own interval would make the test depend on timing.
    present = {o["metadata"]["name"] for o in kube.list_custom_objects(flux.KUSTOMIZATIONS, "flux-system")}
    others = sorted(present - {flux.ROOT, CRDS, CLUSTER, bootstrap_name("dev"), env_name("dev")})
    if others:
        # Applied at once; its health (the ephemeral environment's store, never provisioned) may lag.
        with contextlib.suppress(flux.FluxError):
            flux.reconcile_all(kube, others, f"upgrade-others/{time.time()}", timeout=60)
    for _ in range(120):  # the stores are moved once Flux has applied them: then the old roles may go
        _, plan = _plan(old)
        states = {s["id"]: s["state"] for s in plan["steps"]}
        if states["legacy-roles"] == "needed":
            break
        time.sleep(1)
    assert states["legacy-roles"] == "needed", plan

    got = run_cli("upgrade", "apply", str(old.repo), *old.upgrade_args(), "-o", "json")
    assert got.code == 0, got.out + got.err
    assert [r["step"] for r in json.loads(got.out)["applied"]] == ["legacy-roles", "authority-configuration"]
    code, plan = _plan(old)
    assert code == 0 and plan["complete"] is True  # a second plan is empty

    platform = load_valid(old.repo).platform
    assert platform is not None
    with pytest.raises(ChamberlainError):  # the shared mount holds no chamberlain role any more
        login_as(Connection(old.address, old.ca, clock=SystemClock()), platform, kube,
                 "chamberlain.dev1.orchestrator", "kubernetes")
    # ESO now logs in at the cluster's own mount; consumers stay current, nothing restarted, nothing lost.
    for _ in range(60):
        consumers = _consumers(old)
        if consumers and all(ok for _, _, ok in consumers):
            break
        time.sleep(1)
    assert all(ok for _, _, ok in consumers), consumers
    # The consumers' workloads are untouched; the new release's render adds the controller's own Deployments.
    after = _workloads(old)
    assert {k: v for k, v in after.items() if k in BEFORE["workloads"]} == BEFORE["workloads"]
    assert set(after) - set(BEFORE["workloads"]) <= {"Deployment/chamberlain-system/chamberlain-dev",
                                                      "Deployment/chamberlain-system/chamberlain-preview"}
    assert _versions(old, "kubernetes-dev1") == BEFORE["versions"]


def test_audit_verifies_across_layouts(old: Old) -> None:
    from chamberlain.audit.ledger import LedgerReader, Partition

    pinned = run_cli("audit", "pin", str(old.repo), *old.conn())
    assert pinned.code == 0, pinned.out + pinned.err
    verified = run_cli("audit", "verify", str(old.repo), *old.conn(), "-o", "json")
    assert verified.code == 0, verified.out + verified.err
    kv = _orchestrator_kv(old, "kubernetes-dev1")
    every = LedgerReader(kv, "secret").entries()
    entries = [e for e in every if e.partition == Partition("dev", "dev1").name]
    links = [e for e in entries if e.event == "upgrade" and e.details.get("step") == "ledger-link"]
    old_entries = [e for e in every if not e.partition]
    assert len(links) == 1 and old_entries
    assert links[0].details["old-layout-seq"] == str(old_entries[-1].seq)
    assert links[0].details["old-layout-hash"] == old_entries[-1].hash
    assert any(e.event == "upgrade" and e.details.get("step") == "markers" for e in entries)
    configurator = {e.details.get("step") for e in every if e.partition == "_authority/configurator"
                    and e.event == "upgrade"}
    assert configurator >= {"authority-configuration", "configurator-account", "legacy-configurator-role",
                            "ledger-link", "legacy-roles"}, configurator  # every step on the ledger
