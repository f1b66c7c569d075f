"""``chamberlain demo`` against the real lab: from an empty lab (Vault never initialized) to handover, in a
subprocess as a user runs it, with ``-o json``. Prints the measured durations (empty Vault -> authoritative).

Runs its own lab in a temporary directory on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 600, kept
running between the two tests (``--keep``) and stopped at the end, checking no process is left behind.
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

from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod

pytestmark = pytest.mark.lab

PHASES = ["lab", "root", "bootstrap", "apply", "authority", "provision", "handover", "audit"]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SOPS_", "KUBECONFIG"))}
    return subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "demo", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    missing = [n for n in builds.BUILD_ORDER if not builds.is_built(builds.COMPONENTS[n])]
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    d = tmp_path_factory.mktemp("demo") / "lab"
    pids: dict[str, int] = {}
    try:
        yield d
    finally:
        if (d / "lab.json").exists():
            lab = lab_mod.Lab(lab_mod.LabConfig.load(d))
            pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
            lab_mod.down(d, progress=lambda _m: None)
            lab.postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def offset() -> int:
    return int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 600


def test_demo_from_an_empty_lab_to_handover(lab_dir: Path, offset: int) -> None:
    proc = _demo("-o", "json", "--lab-dir", str(lab_dir), "--port-offset", str(offset), "--keep")
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["ok"] is True and report["skipped"] == [] and report["through"] == "handover"
    assert [p["phase"] for p in report["phases"]] == PHASES
    for phase in report["phases"]:
        assert phase["ok"] is True, phase
        assert isinstance(phase["seconds"], float | int) and phase["seconds"] >= 0
    facts = {p["phase"]: p["facts"] for p in report["phases"]}
    assert facts["lab"]["versions"]["vault"].lstrip("v") == "1.21.0"
    assert facts["bootstrap"]["findings"] == 0 and len(facts["bootstrap"]["re_encrypted"]) == 2
    assert facts["apply"]["bootstrap_secrets_decrypted"] == 2 and facts["apply"]["cluster"] == "dev1"
    authority = facts["authority"]
    assert authority["initialized_now"] and authority["root_token_revoked"]
    assert (authority["shares"], authority["threshold"]) == (3, 2)
    assert authority["verified_roles"] == ["chamberlain.dev1.orchestrator"]
    assert facts["provision"]["results"] == {"created": facts["provision"]["values"]}
    assert facts["handover"]["results"] == {"handed-over": 2}
    # authority-init, authority-configure, one per provisioned value, one per handover
    assert facts["audit"]["entries"] == 2 + facts["provision"]["values"] + 2
    assert report["total_seconds"] >= sum(p["seconds"] for p in report["phases"]) - 0.5
    assert report["authoritative_after_seconds"] is not None
    # The progress went to stderr, one line per phase start and end; stdout is only the report.
    assert all(f"[demo] {name}: ok" in proc.stderr for name in PHASES)
    print("\n[demo] " + ", ".join(f"{p['phase']} {p['seconds']:.1f}s" for p in report["phases"])
          + f"; empty Vault -> authoritative {report['authoritative_after_seconds']:.1f}s; "
          f"total {report['total_seconds']:.1f}s")
    # The repository the demo was given is untouched: the work happened on a copy.
    assert "examples/acme" not in facts["root"]["repo_copy"]
    # No secret in the report: no identity, no token, no share.
    assert "AGE-SECRET-KEY" not in proc.stdout + proc.stderr and "hvs." not in proc.stdout + proc.stderr


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
