"""``chamberlain rotate`` and ``status``: usage errors before any server is contacted, and the glue
(:mod:`chamberlain.rotation.manual`) driving the real workflow over FakeKV/FakeKube with ESO simulated."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.intent.model import Platform, SecretIntent
from chamberlain.kube.api import KubeSecret, PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.rotation import manual as rm
from chamberlain.rotation import workflow as wf
from chamberlain.service import load_valid
from chamberlain.values.markers import version_marker
from tests.conftest import EXAMPLES, run_cli

ACME = str(EXAMPLES / "acme")


@pytest.mark.parametrize("args", [["rotate", "--help"], ["status", "--help"]], ids=lambda a: a[0])
def test_help(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.code == 0 and "Usage" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["rotate", ACME], "exactly one", id="no-name"),
        pytest.param(["rotate", ACME, "grafana-admin", "--namespace", "monitoring", "--reason", "x"],
                     "exactly one", id="name-and-namespace"),
        pytest.param(["rotate", ACME, "grafana-admin"], "--reason", id="no-reason"),
        pytest.param(["rotate", "grafana-admin", ACME, "--reason", "x", "--rollback", "--release"], "exclude",
                     id="rollback-and-release"),
        pytest.param(["rotate", "nope", ACME, "--reason", "x", "--cluster", "dev1"], "unknown secret",
                     id="unknown-secret"),
        pytest.param(["rotate", ACME, "--namespace", "nowhere", "--reason", "x", "--cluster", "dev1"],
                     "no secret", id="empty-namespace"),
        pytest.param(["status", ACME, "--cluster", "nowhere"], "unknown cluster", id="status-unknown-cluster"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.code == 2, result.out + result.err
    assert message in result.err and "Traceback" not in result.err


class ESOKube(FakeKube):
    """FakeKube where a force-sync copies the Vault marker into the consumer Secret (what ESO does)."""

    def __init__(self, kv: FakeKV, path: tuple[str, str]) -> None:
        super().__init__()
        self.kv, self.path = kv, path

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        meta = self.kv.read_metadata(*self.path)
        assert meta is not None
        self.secrets[(namespace, name)] = KubeSecret(namespace, name, {},
                                                     annotations={wk.ANNOTATION_VERSION_MARKER:
                                                                  meta.custom[wk.VALUE_MARKER]})


def test_an_unreadable_run_record_is_one_row_of_status_and_limits_nothing() -> None:
    from chamberlain.rotation import run as runs
    from chamberlain.triggers.limits import last_start

    placed = _grafana_admin()[2]
    kv = FakeKV()
    kv.write(placed.vault.mount, placed.vault.path, {"password": "canary-old-value-123"}, cas=0)
    kv.write(placed.vault.mount, runs.run_path(placed.vault), {"run": '{"run_id": "x", "newer": 1}'}, cas=0)
    kube = ESOKube(kv, (placed.vault.mount, placed.vault.path))
    row = rm.secret_status(kv, LedgerReader(kv, "secret"), kube, placed, datetime(2026, 1, 1, tzinfo=UTC))
    assert row["run"] == {"unreadable": row["run"]["unreadable"]} and "does not parse" in row["run"]["unreadable"]
    assert last_start(kv, placed.vault) is None


def _grafana_admin() -> tuple[Platform, dict[str, SecretIntent], rm.Placed]:
    """The example repository's platform and intents, and grafana-admin placed in dev on dev1."""
    repo = load_valid(EXAMPLES / "acme")
    platform = repo.platform
    assert platform is not None
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    return platform, intents, rm.place(platform, intents["grafana-admin"], "dev", "dev1")


def test_status_shows_a_run_stopped_after_its_promote_as_promoted() -> None:
    """A run of values kept in memory is saved at ``tested`` until propagate's save; stopped (or crashed) in
    between, its record says ``tested`` while the secret holds its version. The status says ``promoted``, as the
    next step will record; a record whose secret did not move stays ``tested``."""
    from chamberlain.rotation import run as runs

    platform, intents, placed = _grafana_admin()
    kv = FakeKV()
    data = {"username": "admin", "password": "canary-old-value-123"}
    kv.write(placed.vault.mount, placed.vault.path, data, cas=0)
    kv.update_custom_metadata(placed.vault.mount, placed.vault.path, {
        wk.AUTHORITY: "vault", wk.VALUE_MARKER: version_marker(placed.vault.full, data)})
    kube = ESOKube(kv, (placed.vault.mount, placed.vault.path))
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    deps, _ = rm.build_deps(kv, kube, platform, intents, placed, actor="test", clock=clock, poll=0.1)
    run = wf.start(kv, placed.vault, secret=placed.name, run_id="run-1", trigger="manual", reason="test",
                   now=clock.now(), pending_in=wf.pending_home(deps.rotator, "manual"))
    ledger = LedgerReader(kv, "secret")
    assert rm.secret_status(kv, ledger, kube, placed, clock.now())["run"]["stage"] == "pending"
    run = wf.advance(run, deps)  # drawn, tested, promoted: the record stays at tested
    assert runs.load(kv, placed.vault).stage == "tested" and run.stage == "promoted"  # type: ignore[union-attr]
    assert rm.secret_status(kv, ledger, kube, placed, clock.now())["run"] == {
        "id": "run-1", "stage": "promoted", "finished": False}
    assert runs.shown_stage(runs.load(kv, placed.vault), 1, {}) == "tested"  # type: ignore[arg-type]


def test_glue_drives_a_manual_rotation_and_status_reports_it() -> None:
    platform, intents, placed = _grafana_admin()
    assert placed.vault.full == "secret/dev/team-observability/grafana-admin"
    kv = FakeKV()
    data = {"username": "admin", "password": "canary-old-value-123"}
    kv.write(placed.vault.mount, placed.vault.path, data, cas=0)
    kv.update_custom_metadata(placed.vault.mount, placed.vault.path, {
        wk.AUTHORITY: "vault", wk.VALUE_MARKER: version_marker(placed.vault.full, data),
        wk.CREATED_AT: "2026-01-01T00:00:00Z", "policy.type": "time-based", "policy.ttl": "90d",
        "policy.rotate-before": "7d", "policy.revoke-old": "true", "policy.max-overlap": "1h"})
    kube = ESOKube(kv, (placed.vault.mount, placed.vault.path))
    kube.workloads[("Deployment", "monitoring", "grafana")] = PodTemplateState(annotations={}, generation=1)
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    deps, timed = rm.build_deps(kv, kube, platform, intents, placed, actor="test", clock=clock, poll=0.1)
    run = wf.start(kv, placed.vault, secret=placed.name, run_id="run-1", trigger="manual", reason="test",
                   now=clock.now())
    # maxOverlap 1h exceeds max_wait: the run stops at revoke-wait (promoted, propagated, restarted).
    run = rm.drive(run, deps, max_wait=60)
    assert run.stage == "revoke-wait" and run.current_version == 2
    run = rm.drive(run, deps, max_wait=7200)
    assert run.stage == "revoked" and run.ledger_seq is not None
    report = rm.run_report(run, timed)
    assert report["version"] == 2 and report["workloadsRestarted"] == ["Deployment/monitoring/grafana"]
    assert report["propagationSeconds"] is not None
    assert "canary-old-value-123" not in str(report)
    row = rm.secret_status(kv, LedgerReader(kv, "secret"), kube, placed, clock.now())
    assert row["version"] == 2 and row["authority"] == "vault" and not row["held"]
    assert row["lastRotation"]["run"] == "run-1" and row["lastRotation"]["result"] == "ok"
    assert row["consumers"] == [{"namespace": "monitoring", "secret": "grafana-admin", "exists": True,
                                 "inSync": True}]
    assert row["nextDue"] is not None and row["due"] is False

