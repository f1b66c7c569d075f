"""The demo's lab-free parts: its settings in the repository copy, the workload objects, the controller log hook,
and the phase order ``--through`` works with. (The demo itself runs against the lab: tests/lab/test_demo.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chamberlain.demo import Phase
from chamberlain.demo.rotations import (
    POSTGRES_SECRET,
    SHORT_TTL_SECRET,
    WEBHOOK_SECRET,
    DemoLog,
    adjust_repository,
    workload_manifest,
)
from chamberlain.demo.walkthrough import ROTATION_PHASES, DemoOptions
from chamberlain.service import load_valid, validate_repository
from tests.conftest import EXAMPLES

CA = "-----BEGIN CERTIFICATE-----\nMIIBdemo\n-----END CERTIFICATE-----\n"


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", dst)
    return dst


def test_the_copy_names_the_lab_vault_and_gets_short_rotation_policies(tmp_path: Path) -> None:
    repo_dir = _copy(tmp_path)
    before = (repo_dir / "intents" / "observability.yaml").read_text()
    changes = adjust_repository(repo_dir, vault_address="https://127.0.0.1:32500", ca_pem=CA, postgres_port=29732,
                                rotations=True)
    assert [c.split(":")[0] for c in changes] == ["platform.yaml", "platform.yaml", "intents/databases.yaml",
                                                  "intents/observability.yaml", "intents/observability.yaml",
                                                  "intents/payments.yaml"]
    assert validate_repository(repo_dir).findings == []
    repo = load_valid(repo_dir)
    assert repo.platform is not None
    authority = repo.platform.spec.authority
    assert authority.address == "https://127.0.0.1:32500" and authority.ca_bundle == CA
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    short = intents[SHORT_TTL_SECRET].spec.rotation
    assert short is not None and not hasattr(short, "policy")
    assert short.ttl.total_seconds() == 40 and short.rotate_before.total_seconds() == 30  # type: ignore[union-attr]
    webhook = intents[WEBHOOK_SECRET].spec.rotation
    assert webhook.max_overlap.total_seconds() == 2 and webhook.revoke_old  # type: ignore[union-attr]
    target = intents[POSTGRES_SECRET].spec.target
    assert target is not None
    pg = target.postgres
    assert (pg.host, pg.port, pg.strategy, pg.role, pg.admin_intent) == (
        "127.0.0.1", 29732, "alternating", "payments", "pg-payments-admin")
    # Round-trip edits: the comments of the files stay.
    after = (repo_dir / "intents" / "observability.yaml").read_text()
    assert "# Inline: only this token has a 30-day life, retried on failure." in after
    assert before.splitlines()[0] == after.splitlines()[0]
    # Everything else is as it was: the source repository is not touched either.
    assert (EXAMPLES / "acme" / "platform.yaml").read_text().count("127.0.0.1") == 0


def test_without_rotation_phases_only_the_platform_changes(tmp_path: Path) -> None:
    repo_dir = _copy(tmp_path)
    payments = (repo_dir / "intents" / "payments.yaml").read_text()
    changes = adjust_repository(repo_dir, vault_address="https://127.0.0.1:32500", ca_pem=CA, postgres_port=1,
                                rotations=False)
    assert len(changes) == 1 and changes[0].startswith("platform.yaml")
    assert (repo_dir / "intents" / "payments.yaml").read_text() == payments


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_workload_objects_are_minimal_and_selectable(kind: str) -> None:
    m = workload_manifest(kind, "payments", "payments-api")
    assert (m["kind"], m["metadata"]["namespace"], m["metadata"]["name"]) == (kind, "payments", "payments-api")
    labels = m["spec"]["template"]["metadata"]["labels"]
    assert m["spec"]["selector"]["matchLabels"] == labels
    [container] = m["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "example.invalid/x:1"
    assert ("serviceName" in m["spec"]) == (kind == "StatefulSet")


def test_the_controller_log_hook_keeps_run_facts_and_prints_no_more_than_names() -> None:
    lines: list[str] = []
    log = DemoLog(lines.append)
    log.info("run started", secret="grafana-admin", run="run-1", trigger="time")
    log.info("run step", secret="grafana-admin", run="run-1", stage="staged")
    log.info("run finished", secret="grafana-admin", run="run-1", stage="revoked", ok=True, version=2,
             propagation_seconds=0.31, restarted=["Deployment/monitoring/grafana"])
    log.warning("tick failed", error="KubeUnavailable", detail="apiserver down", extra="not shown")
    facts = log.facts("run-1")
    assert facts is not None and facts.propagation_seconds == 0.31
    assert facts.restarted == ("Deployment/monitoring/grafana",)
    assert log.facts("run-2") is None
    assert len(lines) == 3
    assert "propagated in 0.31s" in lines[1] and "not shown" not in lines[2]


def test_rotation_phases_follow_handover_and_are_the_default() -> None:
    order = list(Phase)
    assert order.index(Phase.handover) < order.index(Phase.workloads) < order.index(ROTATION_PHASES[0])
    assert [p.value for p in ROTATION_PHASES] == ["rotation-time", "rotation-webhook", "rotation-postgres"]
    assert DemoOptions().through is Phase.rotation_postgres == order[-1]
