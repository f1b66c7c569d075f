"""The use cases of :mod:`chamberlain.service`, each over fakes (FakeKV, FakeKube, the fake Vault) and a fake clock:
what the CLI commands, the demo phases and the controller's entry point call. Real servers: tests/lab."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.errors import NotFound
from chamberlain.authority.fake import FakeKV, FakeTransit
from chamberlain.authority.kv import SecretMetadata
from chamberlain.authority.session import Connection
from chamberlain.checks.gate import InvalidRepository
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.handover import handover_units
from chamberlain.intent.paths import TRANSIT_MOUNT, VaultPath, ledger_key, marker_key
from chamberlain.kube.api import KubeSecret, PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.kube.kubeconfig import KubeconfigSource
from chamberlain.rotation.workflow import rollback_source
from chamberlain.service import audit, authority, controller, handover, policy, repository, rotation
from chamberlain.service.context import Caller
from tests.conftest import EXAMPLES
from tests.unit.test_authority_fakes import FakeVault

ACME = EXAMPLES / "acme"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MOUNT = "secret"
GRAFANA = "secret/dev/team-observability/grafana-admin"


class ESOKube(FakeKube):
    """FakeKube where a force-sync copies the current version marker from Vault into the consumer Secret (what
    ESO does), for the consumers it is told about."""

    def __init__(self, kv: FakeKV, consumers: Mapping[tuple[str, str], str]) -> None:
        super().__init__()
        self.kv, self.consumers = kv, consumers

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        mount, _, path = self.consumers[(namespace, name)].partition("/")
        meta = self.kv.read_metadata(mount, path)
        assert meta is not None
        self.secrets[(namespace, name)] = KubeSecret(
            namespace, name, {}, annotations={wk.ANNOTATION_VERSION_MARKER: meta.custom[wk.VALUE_MARKER]})


@dataclass
class Session:
    """The orchestrator's authority session as the use cases see it."""

    kv: FakeKV
    session_generation: int = 0
    transit: FakeTransit = field(default_factory=lambda: ledger_transit())

    def ensure_fresh(self) -> None:
        return None

    @property
    def auth(self) -> Session:  # the token area: the use cases only prove the login works
        return self

    def lookup_self(self) -> None:
        return None


def ledger_transit(environments: tuple[str, ...] = ("_authority", "prod", "dev", "preview")) -> FakeTransit:
    """A transit engine holding the ledger keys configure creates."""
    transit = FakeTransit()
    for env in environments:
        transit.ensure_key(TRANSIT_MOUNT, ledger_key(env), "ed25519")
        transit.ensure_key(TRANSIT_MOUNT, marker_key(env))
    return transit


@dataclass
class FakeServers:
    """:class:`chamberlain.service.context.Servers` over fakes; records who logged in."""

    kv: FakeKV = field(default_factory=FakeKV)
    fake_kube: FakeKube = field(default_factory=FakeKube)
    vault: FakeVault = field(default_factory=FakeVault)
    kubeconfig: KubeconfigSource | None = None
    orchestrated: list[str | None] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse: Exception | None = None  # raised by every method: proves a use case failed before a server
    transit: FakeTransit = field(default_factory=ledger_transit)

    def _check(self) -> None:
        if self.refuse is not None:
            raise self.refuse

    def kube(self) -> FakeKube:
        self._check()
        return self.fake_kube

    def connection(self, platform: Any) -> Connection:
        self._check()
        return Connection(self.vault.address, clock=FakeClock())

    def anonymous(self, platform: Any) -> FakeVault:
        self._check()
        return self.vault

    def configurator(self, platform: Any, cluster: str | None = None) -> FakeVault:
        self._check()
        return self.vault.login_configurator()

    def login(self, platform: Any, role: str) -> Session:
        self._check()
        self.logins.append(role)
        return Session(self.kv, transit=self.transit)

    def orchestrator(self, platform: Any, cluster: str | None) -> Session:
        self._check()
        self.orchestrated.append(cluster)
        return Session(self.kv, transit=self.transit)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def caller(clock: FakeClock) -> Caller:
    return Caller("test:someone", clock, "run-test")


@pytest.fixture
def servers() -> FakeServers:
    kv = FakeKV()
    kube = ESOKube(kv, {("monitoring", "grafana-admin"): GRAFANA})
    kube.workloads[("Deployment", "monitoring", "grafana")] = PodTemplateState(annotations={}, generation=1)
    return FakeServers(kv=kv, fake_kube=kube)


@pytest.fixture
def provisioned(servers: FakeServers, caller: Caller) -> FakeServers:
    handover.provision(ACME, servers, caller, environment="dev", cluster="dev1")
    return servers


# ------------------------------------------------------------------------------------------------ repository


def test_the_offline_use_cases_read_the_repository_only(tmp_path: Path) -> None:
    assert repository.validate(ACME).findings == []
    repo, platform = repository.load_platform(ACME)
    assert platform.metadata.name == "acme" and repo.intents
    assert any(e.name == "grafana-admin" for e in repository.inventory(ACME).entries)
    outcome = repository.render(ACME, tmp_path / "out")
    assert outcome.findings == [] and outcome.files > 0 and (tmp_path / "out" / "crds").is_dir()
    assert {"policies", "auth"} <= {p.split("/", 1)[0] for p in repository.vault_bundle(repo)}


def test_a_repository_with_findings_is_rendered_and_acted_on_never(tmp_path: Path, servers: FakeServers,
                                                                   caller: Caller) -> None:
    bad = tmp_path / "repo"
    shutil.copytree(ACME, bad)
    f = bad / "intents" / "observability.yaml"
    f.write_text(f.read_text().replace("owner: team-observability", "owner: Team_Bad"))
    assert repository.render(bad, tmp_path / "out").findings and not (tmp_path / "out").exists()
    with pytest.raises(InvalidRepository, match="nothing was done"):
        handover.provision(bad, servers, caller)
    assert servers.orchestrated == []


@pytest.mark.parametrize("where", ["missing", "file"], ids=["missing", "a-file"])
def test_the_repository_root_must_be_a_directory(tmp_path: Path, where: str) -> None:
    path = tmp_path / "x"
    if where == "file":
        path.write_text("")
    with pytest.raises(UsageError, match="no such directory" if where == "missing" else "not a directory"):
        repository.load_valid(path)


# ------------------------------------------------------------------------------------------------ provision, handover


def test_provision_creates_every_generated_value_once_as_the_clusters_orchestrator(
        servers: FakeServers, caller: Caller) -> None:
    first = handover.provision(ACME, servers, caller, environment="dev", cluster="dev1")
    assert first.outcomes and {o.result for o in first.outcomes} == {"created"}
    assert servers.orchestrated == ["dev1"]
    again = handover.provision(ACME, servers, caller, environment="dev", cluster="dev1")
    assert {o.result for o in again.outcomes} == {"exists"}
    entries = LedgerReader(servers.kv, MOUNT).entries()
    assert len(entries) == len(first.outcomes)
    assert {(e.actor, e.run) for e in entries} == {("test:someone", "run-test")}
    data = first.as_dict()
    assert data["run"] == "run-test" and data["dryRun"] is False and len(data["values"]) == len(first.outcomes)


def test_provision_dry_run_writes_nothing(servers: FakeServers, caller: Caller) -> None:
    result = handover.provision(ACME, servers, caller, environment="dev", cluster="dev1", dry_run=True)
    assert {o.result for o in result.outcomes} == {"planned"}
    assert LedgerReader(servers.kv, MOUNT).entries() == []


def test_handover_copies_the_bootstrap_secrets_of_one_cluster_and_never_reports_a_value(
        servers: FakeServers, caller: Caller) -> None:
    canary = "canary-7Hq2Lz9Xw4Rt1Mv8"
    units = handover_units(repository.load_valid(ACME), "dev", "dev1")
    for unit in units:
        servers.fake_kube.create_secret(unit.namespace, unit.name, {"password": canary}, labels={
            "chamberlain.dev/class": "bootstrap", "chamberlain.dev/intent": unit.intent})
    result = handover.handover(ACME, servers, caller, environment="dev", cluster="dev1", reason="test")
    assert result.ok and len(result.outcomes) == len(units) and servers.orchestrated == ["dev1"]
    for unit in units:
        got = servers.kv.read(unit.vault.mount, unit.vault.path)
        assert got is not None and got.data == {"password": canary}
    assert canary not in str(result.as_dict())
    assert handover.handover(ACME, servers, caller, environment="dev", cluster="dev1").ok  # safe to re-run


def test_handover_needs_a_cluster_when_the_platform_has_several(servers: FakeServers, caller: Caller) -> None:
    servers.refuse = AssertionError("no server may be contacted")
    with pytest.raises(UsageError, match="--cluster"):
        handover.handover(ACME, servers, caller)


# ------------------------------------------------------------------------------------------------ rotation


def _rotate(servers: FakeServers, caller: Caller, **kw: Any) -> rotation.RotateResult:
    request = rotation.RotateRequest(ACME, **{"name": "grafana-admin", "reason": "test", "environment": "dev",
                                              "cluster": "dev1", "max_wait": 7200, **kw})
    return rotation.rotate(request, servers, caller)


def test_rotate_then_roll_back_then_release(provisioned: FakeServers, caller: Caller) -> None:
    before = provisioned.kv.read(MOUNT, GRAFANA.removeprefix("secret/"))
    assert before is not None
    rotated = _rotate(provisioned, caller)
    [row] = rotated.rows
    assert rotated.ok and rotated.cluster == "dev1" and row["stage"] == "revoked" and row["version"] == 2
    assert row["workloadsRestarted"] == ["Deployment/monitoring/grafana"]
    assert before.data["password"] not in str(rotated.as_dict())

    rolled = _rotate(provisioned, caller, rollback=True)
    assert rolled.ok and rolled.rows[0]["trigger"] == "rollback" and rolled.rows[0]["version"] == 3
    after = provisioned.kv.read(MOUNT, GRAFANA.removeprefix("secret/"))
    assert after is not None and dict(after.data) == dict(before.data)  # version 1's values, promoted again

    released = _rotate(provisioned, caller, release=True, reason="")
    assert released.as_dict() == {"ok": True, "cluster": "dev1",
                                  "released": [{"secret": "grafana-admin", "path": GRAFANA, "released": False}]}


def test_a_manual_rotation_obeys_the_trigger_rate_limit(provisioned: FakeServers, caller: Caller,
                                                         clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from chamberlain.triggers import limits

    # the run sleeps through grafana-admin's maxOverlap on the fake clock: an interval longer than that
    monkeypatch.setattr(limits, "trigger_interval", lambda _limits: timedelta(days=30))
    assert _rotate(provisioned, caller).ok
    again = _rotate(provisioned, caller)  # refused: nothing started, exit 1 with the reason
    [row] = again.rows
    assert not again.ok and row["stage"] == "not-started" and "rate limited" in row["error"]
    assert "triggerInterval" in row["error"]
    assert _rotate(provisioned, caller, rollback=True).ok  # the way back is never limited
    clock.advance(31 * 86400)
    assert _rotate(provisioned, caller).ok


def test_a_rotation_that_cannot_start_is_reported_not_raised(servers: FakeServers, caller: Caller) -> None:
    handover.provision(ACME, servers, caller, environment="dev", cluster="dev1")
    result = _rotate(servers, caller, rollback=True)  # only version 1 exists
    assert not result.ok and result.rows[0]["stage"] == "not-started"
    assert "no earlier version" in result.rows[0]["error"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        pytest.param({}, "exactly one", id="no-name"),
        pytest.param({"name": "grafana-admin", "namespace": "monitoring", "reason": "x"}, "exactly one",
                     id="name-and-namespace"),
        pytest.param({"name": "grafana-admin"}, "--reason", id="no-reason"),
        pytest.param({"name": "grafana-admin", "reason": "x", "rollback": True, "release": True}, "exclude",
                     id="rollback-and-release"),
        pytest.param({"namespace": "monitoring", "reason": "x", "rollback": True}, "one secret NAME",
                     id="namespace-rollback"),
        pytest.param({"name": "nope", "reason": "x", "cluster": "dev1"}, "unknown secret", id="unknown-secret"),
        pytest.param({"namespace": "nowhere", "reason": "x", "cluster": "dev1"}, "no secret", id="empty-namespace"),
    ],
)
def test_rotate_usage_errors_touch_no_server(kw: dict[str, Any], message: str, caller: Caller) -> None:
    servers = FakeServers(refuse=AssertionError("no server may be contacted"))
    with pytest.raises(UsageError, match=message):
        rotation.rotate(rotation.RotateRequest(ACME, **kw), servers, caller)


def test_status_reports_every_placed_secret_of_the_cluster(provisioned: FakeServers, caller: Caller,
                                                           clock: FakeClock) -> None:
    _rotate(provisioned, caller)
    report = rotation.status(ACME, provisioned, clock, environment="dev", cluster="dev1")
    rows = {r["secret"]: r for r in report.rows}
    assert rows["grafana-admin"]["version"] == 2 and rows["grafana-admin"]["authority"] == "vault"
    assert rows["grafana-admin"]["consumers"] == [{"namespace": "monitoring", "secret": "grafana-admin",
                                                   "exists": True, "inSync": True}]
    assert all(r["cluster"] == "dev1" and r["environment"] == "dev" for r in report.rows)
    assert report.as_dict()["at"].startswith("2026-01-01T")


@pytest.mark.parametrize(
    ("current", "gone", "to_version", "expected"),
    [
        pytest.param(3, (), None, 2, id="default-the-previous"),
        pytest.param(3, (), 1, 1, id="an-earlier-one"),
        pytest.param(3, (2,), None, None, id="previous-deleted"),
        pytest.param(3, (), 3, None, id="not-the-current"),
        pytest.param(3, (), 0, None, id="no-version-0"),
        pytest.param(1, (), None, None, id="nothing-earlier"),
    ],
)
def test_rollback_source(current: int, gone: tuple[int, ...], to_version: int | None, expected: int | None) -> None:
    meta = SecretMetadata(current, 1, {v: v in gone for v in range(1, current + 1)}, {})
    path = VaultPath(MOUNT, "dev/team/x")
    if expected is None:
        with pytest.raises(NotFound):
            rollback_source(path, meta, to_version)
    else:
        assert rollback_source(path, meta, to_version) == expected
    with pytest.raises(NotFound, match="no earlier version"):
        rollback_source(path, None)


def test_rollback_source_refuses_versions_pruned_by_max_versions_and_non_numbers() -> None:
    path = VaultPath(MOUNT, "dev/team/x")
    pruned = SecretMetadata(12, 3, {v: False for v in range(3, 13)}, {})  # versions 1 and 2 are gone
    assert rollback_source(path, pruned, 3) == 3 and rollback_source(path, pruned) == 11
    for wrong in (1, 2, 12, 13, 0, -1, True):
        with pytest.raises(NotFound):
            rollback_source(path, pruned, wrong)


# ------------------------------------------------------------------------------------------------ policy, audit


def test_policy_plan_and_apply_bring_the_policy_in_force_in_line_with_git(provisioned: FakeServers,
                                                                         caller: Caller) -> None:
    assert policy.plan(ACME, provisioned, environment="dev", cluster="dev1").drifts == []
    provisioned.kv.update_custom_metadata(MOUNT, GRAFANA.removeprefix("secret/"), {"policy.ttl": "1d"})
    plan = policy.plan(ACME, provisioned, environment="dev", cluster="dev1")
    assert [d.secret for d in plan.drifts] == ["grafana-admin"] and plan.as_dict().keys() == {"drift"}
    applied = policy.apply(ACME, provisioned, caller, environment="dev", cluster="dev1", reason="test")
    assert applied.applied == 1 and applied.as_dict()["applied"] == 1
    [entry] = [e for e in LedgerReader(provisioned.kv, MOUNT).entries() if e.event == "policy-change"]
    assert entry.actor == "test:someone" and entry.reason == "test"
    assert policy.plan(ACME, provisioned, environment="dev", cluster="dev1").drifts == []


def test_audit_shows_provenance_and_verifies_the_ledger(provisioned: FakeServers, tmp_path: Path) -> None:
    shown = audit.show("grafana-admin", ACME, provisioned, cluster="dev1")
    assert [e["event"] for e in shown.ledger] == ["value-created"]
    assert shown.metadata[GRAFANA] is not None and shown.metadata[GRAFANA]["currentVersion"] == 1
    assert "prev" not in shown.ledger[0] and "hash" not in shown.ledger[0]
    repo = tmp_path / "acme"
    shutil.copytree(ACME, repo)
    with pytest.raises(UsageError, match="no pinned ledger keys"):
        audit.verify(repo, provisioned, cluster="dev1")  # signatures are checked against Git, never the server
    pinned = audit.pin(repo, provisioned, cluster="dev1")
    assert pinned.changed and "chamberlain-ledger-dev" in pinned.keys
    assert not audit.pin(repo, provisioned, cluster="dev1").changed  # idempotent
    check = audit.verify(repo, provisioned, cluster="dev1")
    assert check.ok and check.entries == len(LedgerReader(provisioned.kv, MOUNT).entries())
    assert check.as_dict()["problems"] == [] and check.partitions == ["dev/dev1"]
    with pytest.raises(UsageError, match="no SecretIntent"):
        audit.show("nope", ACME, provisioned)


# ------------------------------------------------------------------------------------------------ authority


def test_authority_init_configures_verifies_and_records_then_plan_is_clean(tmp_path: Path, servers: FakeServers,
                                                                          caller: Caller) -> None:
    target = authority.Selection(ACME, None, "dev1")
    result = authority.initialize(authority.InitRequest(target, tmp_path / "recovery", shares=3, threshold=2),
                                  servers, caller)
    report = result.report
    assert report.initialized_now and report.root_revoked and report.configure_changes > 0
    assert report.verified_roles == ["chamberlain.dev1.orchestrator"] == servers.logins
    assert result.secret == "chamberlain-system/chamberlain-unseal"
    assert result.as_dict()["secret"] == result.secret and result.address == servers.vault.address
    events = [(e.event, e.actor, e.run) for e in LedgerReader(servers.vault.kv, MOUNT).entries()]
    assert {e for e, _, _ in events} == {"authority-init", "authority-configure"}
    assert {(a, r) for _, a, r in events} == {("test:someone", "run-test")}
    plan = authority.plan(target, servers)
    assert plan.up_to_date and plan.drift_unchecked is None and plan.as_dict()["policyDrift"] == []
    assert authority.status(ACME, servers).ready
    again = authority.configure(target, servers, caller)
    assert again.changes == [] and again.as_dict()["applied"] == 0


def test_authority_plan_still_stands_when_the_drift_cannot_be_read(tmp_path: Path, servers: FakeServers,
                                                                   caller: Caller) -> None:
    target = authority.Selection(ACME, None, "dev1")
    authority.initialize(authority.InitRequest(target, tmp_path / "recovery", 3, 2), servers, caller)

    def no_login(platform: Any, cluster: str | None) -> Session:
        raise UsageError("pass --vault-token-file")

    servers.orchestrator = no_login  # type: ignore[method-assign]
    plan = authority.plan(target, servers)
    assert plan.up_to_date and plan.drift_unchecked == "pass --vault-token-file"
    assert plan.as_dict()["policyDrift"] is None
    assert authority.plan(target, servers, policies=False).drift_unchecked == "not requested"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(authority.InitRequest(authority.Selection(ACME), Path("r"), shares=2, threshold=3),
                     "cannot exceed", id="threshold-above-shares"),
        pytest.param(authority.InitRequest(authority.Selection(ACME, cluster="nowhere"), Path("r")),
                     "not a cluster", id="unknown-cluster"),
        pytest.param(authority.InitRequest(authority.Selection(ACME, environment="nowhere"), Path("r")),
                     "not an environment", id="unknown-environment"),
    ],
)
def test_authority_init_usage_errors_touch_no_cluster(request_: authority.InitRequest, message: str,
                                                      caller: Caller) -> None:
    servers = FakeServers()
    with pytest.raises(UsageError, match=message):
        authority.initialize(request_, servers, caller)
    assert servers.fake_kube.namespaces == set() and servers.vault.init_calls == 0


# ------------------------------------------------------------------------------------------------ controller


def test_the_controller_entry_point_wires_and_stops_the_running_controller(servers: FakeServers,
                                                                           clock: FakeClock) -> None:
    scope = controller.scope_from_repository(ACME, "dev", "dev1")
    assert "grafana-admin" in scope.placed and "pg-payments-admin" in scope.intents
    stop = threading.Event()
    app = controller.start(scope, servers, clock, controller.ControllerOptions(identity="unit", interval=0.01),
                           stop=stop)
    try:
        assert app.controller.scope is scope and servers.orchestrated == ["dev1"]
        assert app.stop_event is stop and app.webhook is None and app.metrics_url is None
    finally:
        app.stop(timeout=5)
    assert controller.ControllerOptions().name.endswith(f"-{__import__('os').getpid()}")


class _Webhook(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(dict(self.headers))
        status = type(self).answers.pop(0)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"request": "r-1", "outcome": "queued"}' if status == 200 else b"{}")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/rotate"
    server.shutdown()
    server.server_close()


def test_a_signed_rotation_request_is_retried_while_the_controller_does_not_lead(webhook: str,
                                                                                 clock: FakeClock) -> None:
    from chamberlain.triggers.webhook import SIGNATURE_HEADER, WebhookKey

    _Webhook.answers, _Webhook.seen = [503, 200], []
    answer = controller.request_rotation(webhook, WebhookKey(b"k" * 32), "grafana-admin", "test", clock,
                                         request_id="id-1", retry_unavailable=5.0)
    assert answer.status == 200 and answer.json() == {"request": "r-1", "outcome": "queued"}
    assert len(_Webhook.seen) == 2 and all(h[SIGNATURE_HEADER].startswith("sha256=") for h in _Webhook.seen)
    _Webhook.answers = [503]
    assert controller.request_rotation(webhook, WebhookKey(b"k" * 32), "x", "y", clock).status == 503
    with pytest.raises(UsageError, match="http:// or https://"):
        controller.post_webhook("file:///etc/passwd", b"", {})
