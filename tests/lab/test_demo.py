"""``chamberlain demo`` against the real lab: from an empty lab (Vault never initialized) through handover to three
rotations by the real controller and ESO, in a subprocess as a user runs it, with ``-o json``. Prints the measured
durations (per phase, empty Vault -> authoritative, each rotation's propagation).

Runs its own lab in a temporary directory on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 600, kept
running between the two tests (``--keep``: the first test reads every value from Vault afterwards, to prove none
reached the output) and stopped at the end, checking no process is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chamberlain.clock import SystemClock
from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod
from tests.conftest import holds_authority_token, lab_authority, lab_host, unbuilt

pytestmark = [pytest.mark.lab, pytest.mark.own_lab]  # its own lab: runs beside the shared lab

PHASES = ["lab", "root", "bootstrap", "gitops", "authority", "provision", "handover", "workloads", "rotation-time",
          "rotation-webhook", "rotation-postgres", "audit"]
ROTATIONS = {"rotation-time": ("grafana-admin", "time"), "rotation-webhook": ("log-shipper-token", "webhook"),
             "rotation-postgres": ("payments-db", "manual")}


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SOPS_", "KUBECONFIG"))}
    return subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "demo", "--authority", lab_authority(), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    d = tmp_path_factory.mktemp("demo") / "lab"
    pids: dict[str, int] = {}
    try:
        yield d
    finally:
        if (d / "lab.json").exists():
            lab = lab_mod.Lab(lab_mod.LabConfig.load(d, lab_host()))
            pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
            lab_mod.down(d, lab_host(), progress=lambda _m: None)
            lab.postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def offset() -> int:
    return int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 600


def _values_in_vault(lab_dir: Path, report: dict[str, Any]) -> list[str]:
    """Every version of every value the demo wrote or handed over, read as the orchestrator from the kept lab, plus
    the lab's PostgreSQL superuser password and the webhook key. User names (not secret, and printed on purpose)
    are left out."""
    from chamberlain.authority.session import Connection, orchestrator_kv
    from chamberlain.kube.client import KubeClient
    from chamberlain.service import load_valid

    lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
    platform = load_valid(Path(report["work_dir"]) / "repo").platform
    assert platform is not None
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        kv = orchestrator_kv(Connection(lab.authority.address, lab.pki.ca.cert, clock=SystemClock()), platform, kube,
                             "chamberlain.dev1.orchestrator", "kubernetes-dev1")
        facts = {p["phase"]: p["facts"] for p in report["phases"]}
        paths = list(facts["provision"]["paths"]) + [h.split(" -> ")[1] for h in facts["handover"]["handed_over"]]
        values: list[str] = []
        for full in paths:
            mount, _, path = full.partition("/")
            meta = kv.read_metadata(mount, path)
            assert meta is not None, full
            for version in range(1, meta.current_version + 1):
                got = kv.read(mount, path, version)
                assert got is not None
                values += [v for k, v in got.data.items() if k not in ("username", "user")]
    finally:
        kube.close()
    values.append(lab.postgres.password())
    values.append((Path(report["work_dir"]) / "webhook.key").read_text().strip())
    return [v for v in values if len(v) >= 8]


def test_demo_from_an_empty_lab_through_rotations(lab_dir: Path, offset: int) -> None:
    proc = _demo("-o", "json", "--lab-dir", str(lab_dir), "--port-offset", str(offset), "--keep")
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["ok"] is True and report["skipped"] == [] and report["through"] == "rotation-postgres"
    assert [p["phase"] for p in report["phases"]] == PHASES
    for phase in report["phases"]:
        assert phase["ok"] is True, phase
        assert isinstance(phase["seconds"], float | int) and phase["seconds"] >= 0
    facts = {p["phase"]: p["facts"] for p in report["phases"]}
    flavor = lab_authority()
    assert facts["lab"]["authority"] == flavor
    expected = builds.VAULT_VERSION if flavor == "vault" else "v" + builds.openbao_version()
    assert "v" + facts["lab"]["versions"][flavor].lstrip("v") == expected
    assert any("caBundle" in c for c in facts["root"]["demo_settings"])
    assert facts["bootstrap"]["findings"] == 0 and len(facts["bootstrap"]["re_encrypted"]) == 2
    # Git -> cluster through the real Flux, decrypting with the cluster's own key (not the root's).
    recipients = facts["root"]["gitops_recipients"]
    assert set(recipients) >= {"dev1"} and facts["root"]["recipient"] not in recipients.values()
    gitops = facts["gitops"]
    assert gitops["controller"] == "flux" and gitops["bootstrap_secrets_applied"] == 2
    assert gitops["ready"][0] == "GitRepository/flux-system" and len(gitops["commit"]) == 40
    authority = facts["authority"]
    assert authority["initialized_now"] and authority["root_token_revoked"]
    assert (authority["shares"], authority["threshold"]) == (3, 2)
    # Custody: the Platform's custodians decide the layout; each opens exactly their own share.
    assert authority["share_holders"] == ["alice", "bob", "carol"] == list(facts["root"]["custodians"])
    assert authority["one_share_per_custodian"] is True
    assert authority["verified_roles"] == ["chamberlain.dev1.orchestrator"]
    assert authority["gitops_environment_ready"] is True and authority["gitops_key_opens_unseal_share"] is False
    assert facts["provision"]["results"] == {"created": facts["provision"]["values"]}
    # Flux applied both bootstrap Secrets: the first handover wrote their retirement into Git instead of retiring
    # them; once Flux applied the retirement commit, the second retired them, and no reconcile brought one back.
    handover = facts["handover"]
    assert handover["first_run"] == {"awaiting-retirement": 2} and len(handover["retirement_commit"]) == 40
    assert handover["results"] == {"handed-over": 2} and handover["retired"] == 2
    assert report["gitops"]["controller"] == "flux" and report["gitops"]["resurrectedAfterHandover"] == 0
    assert report["gitops"]["reconciles"] >= handover["reconcile_rounds_after"] * 6
    # The controller ran as the chart's ServiceAccount under the RBAC render wrote (Flux applied it), and the API
    # server refused every request of the negative matrix made with that account's token.
    controller = report["controller"]
    assert controller["rbac"] == "chart" and controller["serviceAccount"] == "chamberlain-system/chamberlain"
    assert controller["deniedChecks"] == controller["deniedOk"] >= 20, controller
    assert facts["workloads"]["workloads_created"] == sum(facts["workloads"]["workloads"].values()) > 0
    assert facts["workloads"]["consumer_secrets_in_sync"] > 0

    # Three rotations, each through the controller and ESO: one version up, propagated, workloads restarted.
    rows = {r["phase"]: r for r in report["rotations"]}
    assert list(rows) == list(ROTATIONS)
    for phase, (secret, trigger) in ROTATIONS.items():
        row = rows[phase]
        assert (row["secret"], row["trigger"], row["ok"], row["stage"]) == (secret, trigger, True, "revoked"), row
        assert row["version"] == row["previousVersion"] + 1, row
        assert isinstance(row["propagationSeconds"], float | int) and 0 < row["propagationSeconds"] < 60, row
        assert row["workloadsRestarted"], row
        # a webhook run takes the name of its persisted request (rq-...), the others a fresh run id
        assert row["run"].startswith("rq-" if trigger == "webhook" else "run-") and row["ledgerSeq"] is not None
    assert rows["rotation-webhook"]["workloadsRestarted"] == ["DaemonSet/logging/fluent-bit",
                                                              "Deployment/logging/loki-gateway"]
    assert facts["rotation-webhook"]["unsigned_request"] == 401 and facts["rotation-webhook"]["signed_request"] == 200
    pg = facts["rotation-postgres"]
    assert pg["strategy"] == "alternating" and pg["users"] == "payments -> payments_alt"
    assert pg["new_credential_logs_in"] is True and pg["old_credential_rejected_after_revoke"] is True
    assert pg["client_failed_logins"] == 0 and pg["client_logins"] > 20
    assert pg["client_users_seen"] == ["payments", "payments_alt"], "the client never switched credentials"

    # authority-init, authority-configure, one per provisioned value, a handover and a retire per bootstrap Secret
    # (retired in a second run, after Flux applied the retirement commit), one per finished run
    audit = facts["audit"]
    assert audit["runs_finished_by_controller"] >= 3
    assert audit["entries"] == 2 + facts["provision"]["values"] + 2 * 2 + audit["runs_finished_by_controller"]
    assert audit["rotations_counted_by_metrics"] == audit["runs_finished_by_controller"]
    assert report["total_seconds"] >= sum(p["seconds"] for p in report["phases"]) - 0.5
    assert report["authoritative_after_seconds"] is not None
    # The progress went to stderr, one line per phase start and end; stdout is only the report.
    assert all(f"[demo] {name}: ok" in proc.stderr for name in PHASES)
    print("\n[demo] " + ", ".join(f"{p['phase']} {p['seconds']:.1f}s" for p in report["phases"])
          + f"; empty Vault -> authoritative {report['authoritative_after_seconds']:.1f}s; "
          f"total {report['total_seconds']:.1f}s")
    for row in report["rotations"]:
        print(f"[demo] {row['phase']}: {row['secret']} ({row['trigger']}) v{row['previousVersion']} -> "
              f"v{row['version']}, propagated in {row['propagationSeconds']:.2f}s, restarted "
              f"{', '.join(row['workloadsRestarted'])}")
    print(f"[demo] postgres: {pg['client_logins']} client logins during the rotation, "
          f"{pg['client_failed_logins']} failed")
    # The repository the demo was given is untouched: the work happened on a copy.
    assert "examples/acme" not in facts["root"]["repo_copy"]
    # No secret in the report or the progress: no identity, no token, no share, no value Vault holds.
    outputs = proc.stdout + proc.stderr
    assert "AGE-SECRET-KEY" not in outputs and not holds_authority_token(outputs)
    values = _values_in_vault(lab_dir, report)
    assert len(values) > 10
    leaked = [i for i, v in enumerate(values) if v in outputs]
    assert not leaked, f"{len(leaked)} secret values appear in the demo's output"


def test_demo_refuses_a_lab_whose_vault_is_initialized(lab_dir: Path, offset: int) -> None:
    # The kept lab of the test above: the demo needs an empty Vault and says how to get one.
    proc = _demo("-o", "json", "--lab-dir", str(lab_dir), "--port-offset", str(offset), "--keep",
                 "--through", "root")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["skipped"] == ["root"]
    [lab] = report["phases"]
    assert lab["ok"] is False and "already initialized" in lab["error"] and "--lab-dir" in lab["error"]
    assert "Traceback" not in proc.stderr
