"""Observed external rotations: the pure decisions (rotation.external, fake clock tables) and the controller's pass
(controller.external) over fakes — FakeKV for the authority, FakeKube for the API server, and a few lines standing
in for ESO (a push replaces the custom_metadata with ESO's ``managed-by`` only; a force-sync copies the marker into
the consumer Secret). The real ESO, OpenBao and kube-apiserver run in tests/lab/test_external_rotation.py."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.authority.kv import merge_custom_metadata
from chamberlain.clock import FakeClock
from chamberlain.controller.external import PUSH_SECRETS, ExternalRotations, published_of
from chamberlain.controller.ledger import SharedLedger
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import RunPublisher
from chamberlain.controller.scope import Scope
from chamberlain.intent.paths import VaultPath
from chamberlain.kube.api import KubeSecret, PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.render.crds import RUN_TRIGGERS, crd
from chamberlain.rotation import external as ext
from chamberlain.rotation.run import TriggerKind
from chamberlain.values.markers import LegacyMarkers

# ----------------------------------------------------------------------------------------------- pure decisions

REC = ext.ExternalRecord(version=3, marker="v2:aa", run="run-1")
READY = ext.PushState("p", True, "Synced", "PushSecret synced successfully")
MISSING = ext.PushState("p", False, "Errored", "set secret failed: secret key url does not exist")


@pytest.mark.parametrize(("record", "current", "seen", "push", "now", "action", "restart"), [
    pytest.param(None, 0, None, None, 0.0, "none", True, id="nothing-pushed-yet"),
    pytest.param(None, 1, ext.Seen(1, 0.0, 0.0), READY, 0.5, "wait", True, id="first-version-settles"),
    pytest.param(None, 1, ext.Seen(1, 0.0, 0.0), READY, 2.0, "start", False, id="first-version-is-a-baseline"),
    pytest.param(REC, 3, None, READY, 9.0, "none", True, id="in-sync"),
    pytest.param(REC, 5, ext.Seen(5, 0.0, 1.5), READY, 3.0, "wait", True, id="burst-still-moving"),
    pytest.param(REC, 5, ext.Seen(5, 0.0, 1.5), READY, 3.5, "start", True, id="burst-settled-one-run"),
    pytest.param(REC, 9, ext.Seen(9, 0.0, 29.5), READY, 30.0, "start", True, id="max-settle-caps-a-long-burst"),
    pytest.param(REC, 3, None, MISSING, 9.0, "hold", True, id="missing-key-held"),
    pytest.param(REC, 4, ext.Seen(4, 0.0, 0.0), MISSING, 9.0, "hold", True, id="partial-push-held-not-started"),
    pytest.param(ext.ExternalRecord(3, "m", "run-2", "refreshed", pending=4), 4, None, MISSING, 0.0, "resume", True,
                 id="a-run-in-flight-resumes-first"),
])
def test_decide(record: ext.ExternalRecord | None, current: int, seen: ext.Seen | None, push: ext.PushState,
                now: float, action: str, restart: bool) -> None:
    d = ext.decide(record, current, {wk.VALUE_MARKER: "v2:aa"}, seen, push, ["url"], now, quiet=2.0)
    assert d.action == action
    if action == "start":
        assert d.restart is restart and d.version == current
    if action == "hold":
        assert d.key == "url"


def test_a_lost_marker_is_written_again_without_a_run() -> None:
    d = ext.decide(REC, 3, {ext.ESO_MANAGED_BY: ext.ESO_MANAGER}, None, READY, ["url"], 0.0)
    assert d.action == "remark"


def test_settle_keeps_the_first_sighting_and_moves_the_last() -> None:
    s = ext.settle(None, 4, 1.0)
    assert ext.settle(s, 4, 2.0) == s
    assert ext.settle(s, 5, 2.0) == ext.Seen(5, 1.0, 2.0)


def test_missing_key_reads_esos_message_only_when_not_ready() -> None:
    assert ext.missing_key(MISSING, ["url"]) == "url"
    assert ext.missing_key(READY, ["url"]) is None
    assert ext.missing_key(ext.PushState("p", False, "Errored", "could not get source secret"), ["url"]) is None
    assert ext.missing_key(None, ["url"]) is None


def test_push_state_of_a_pushsecret_object() -> None:
    obj = {"metadata": {"name": "p"}, "status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Errored", "message": MISSING.message}]}}
    assert ext.PushState.of(obj) == MISSING
    assert ext.PushState.of({"metadata": {"name": "p"}}) == ext.PushState("p", None)


def test_marked_metadata_leaves_esos_managed_by_marker_to_the_merge() -> None:
    current = {ext.ESO_MANAGED_BY: ext.ESO_MANAGER}
    got = ext.marked_metadata(current, "v2:bb", 7, "run-9", "2026-01-01T00:00:00Z")
    assert ext.ESO_MANAGED_BY not in got and got[wk.VALUE_MARKER] == "v2:bb" and got[wk.VALUE_VERSION] == "7"
    assert merge_custom_metadata(current, got)[ext.ESO_MANAGED_BY] == ext.ESO_MANAGER


def test_record_round_trips_and_a_damaged_one_is_none() -> None:
    r = ext.ExternalRecord(3, "m", "run-1", "refreshed", pending=4, held=2, restart=False, started="t")
    assert ext.ExternalRecord.from_data(r.to_data()) == r
    assert ext.ExternalRecord.from_data({"record": "{"}) is None


def test_record_path_is_under_the_clusters_own_subtree() -> None:
    got = ext.record_path("secret", VaultPath("platform-config", "dev/dev1/search/search-endpoint"), "dev1")
    assert got.full == "secret/_chamberlain/external/dev/dev1/platform-config/search/search-endpoint"


@pytest.mark.parametrize(("record", "current", "held", "phase", "ready"), [
    pytest.param(None, 0, None, "Pending", "False", id="nothing-pushed"),
    pytest.param(ext.ExternalRecord(3, "m", "r"), 3, None, "Ready", "True", id="ready"),
    pytest.param(ext.ExternalRecord(3, "m", "r", "refreshed", pending=4), 4, None, "Rotating", "False",
                 id="rotating"),
    pytest.param(ext.ExternalRecord(3, "m", "r"), 4, None, "Pending", "False", id="a-version-not-followed-yet"),
    pytest.param(ext.ExternalRecord(3, "m", "r"), 3, "the producer Secret lacks url", "Held", "False", id="held"),
])
def test_published_status(record: ext.ExternalRecord | None, current: int, held: str | None, phase: str,
                          ready: str) -> None:
    status = ext.published_status(record, current, held, (), "2026-01-01T00:00:00Z")
    conditions = {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined]
    assert status["phase"] == phase and conditions["Ready"]["status"] == ready
    assert conditions["Held"]["status"] == ("True" if held else "False")
    if held:
        assert conditions["Held"]["reason"] == ext.HELD_REASON and "url" in conditions["Held"]["message"]


def test_the_rotationrun_crd_knows_every_trigger_a_run_records() -> None:
    assert set(RUN_TRIGGERS) == set(get_args(TriggerKind))
    spec = crd("RotationRun")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "external" in spec["properties"]["trigger"]["enum"]


# ------------------------------------------------------------------------------------- the controller's pass


NS = "chamberlain-system"
NAME = "search-endpoint"
VAULT = VaultPath("platform-config", "dev/dev1/search/search-endpoint")
PUSH = "chamberlain-dev-publish-search-endpoint"
CONSUMERS = (("web", "search-endpoint"), ("catalog", "search-endpoint"))
WORKLOADS = (("Deployment", "web", "storefront"), ("Deployment", "catalog", "catalog-api"))


@pytest.fixture(scope="module")
def acme_scope() -> Scope:
    from chamberlain.service.controller import load_scope
    from tests.conftest import EXAMPLES

    return load_scope(EXAMPLES / "acme", "dev", "dev1")


class Eso:
    """What ESO does, in the few lines these tests need (fakes: no values travel anywhere)."""

    def __init__(self, kv: FakeKV, kube: FakeKube) -> None:
        self.kv, self.kube = kv, kube
        self.seen: dict[tuple[str, str], str] = {}
        for ns, name in CONSUMERS:
            kube.external_secrets[(ns, name)] = {"metadata": {"name": name, "namespace": ns}}
            kube.secrets[(ns, name)] = KubeSecret(ns, name, {}, {}, {})
        for kind, ns, name in WORKLOADS:
            kube.workloads[(kind, ns, name)] = PodTemplateState(annotations={}, generation=1)
        kube.custom_objects[("chamberlain.dev", "v1alpha1", "secretintents", NS, NAME)] = {
            "metadata": {"name": NAME, "namespace": NS}}
        self.set_push(True)

    def push(self, value: str) -> None:
        """The PushSecret wrote a new version: ESO replaces the custom_metadata with its own marker only."""
        meta = self.kv.read_metadata(VAULT.mount, VAULT.path)
        self.kv.write(VAULT.mount, VAULT.path, {"url": value}, cas=meta.current_version if meta else 0)
        self.kv._store[(VAULT.mount, VAULT.path)].custom = {ext.ESO_MANAGED_BY: ext.ESO_MANAGER}

    def set_push(self, ready: bool, message: str = "PushSecret synced successfully") -> None:
        self.kube.custom_objects[(PUSH_SECRETS.group, PUSH_SECRETS.version, PUSH_SECRETS.plural, "search", PUSH)] = {
            "metadata": {"name": PUSH, "namespace": "search"},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "Synced" if ready else "Errored", "message": message}]}}

    def sync(self) -> None:
        """ESO refreshes each force-synced ExternalSecret: the consumer carries the path's current marker."""
        meta = self.kv.read_metadata(VAULT.mount, VAULT.path)
        marker = meta.custom.get(wk.VALUE_MARKER, "") if meta else ""
        for ns, name in CONSUMERS:
            es = self.kube.external_secrets[(ns, name)]
            token = (es.get("metadata") or {}).get("annotations", {}).get(wk.ESO_FORCE_SYNC)
            if token and self.seen.get((ns, name)) != token:  # ESO reconciles when the annotation changed
                self.seen[(ns, name)] = token
                self.kube.secrets[(ns, name)] = KubeSecret(ns, name, {}, {}, {wk.ANNOTATION_VERSION_MARKER: marker})

    def marker_of(self, ns: str, name: str) -> str | None:
        return self.kube.secrets[(ns, name)].annotations.get(wk.ANNOTATION_VERSION_MARKER)


def rotations(clock: FakeClock, scope: Scope, eso: Eso | None = None
              ) -> tuple[ExternalRotations, FakeKV, FakeKube, Eso]:
    """The controller's pass over a fresh authority and API server, or over ``eso``'s (a process restarted)."""
    kv, kube = (eso.kv, eso.kube) if eso is not None else (FakeKV(), FakeKube())
    ledger = SharedLedger(kv, "secret", clock, cluster="dev1")
    ids = iter(f"run-{i}" for i in range(1, 100))
    er = ExternalRotations(kv, kube, clock, LegacyMarkers(), ledger, NS, "secret", "controller:test",
                           lambda: next(ids), publisher=RunPublisher(kube, NS), metrics=ControllerMetrics(), quiet=2.0,
                           resync=0.0, repoke=10.0)
    return er, kv, kube, eso if eso is not None else Eso(kv, kube)


def restarts(kube: FakeKube) -> list[tuple[str, str, str]]:
    return list(kube.workload_patches)


def run_objects(kube: FakeKube) -> list[dict[str, Any]]:
    return [o for o in kube.created_custom_objects if o.get("kind") == "RotationRun"]


def drive(er: ExternalRotations, scope: Scope, eso: Eso, clock: FakeClock, ticks: int = 6) -> None:
    for _ in range(ticks):
        er.step(scope)
        eso.sync()
        clock.advance(1.0)


def test_the_published_intents_of_a_cluster(acme_scope: Scope) -> None:
    got = published_of(acme_scope)
    assert got[NAME].placed.vault == VAULT and got[NAME].push == PUSH and got[NAME].producer == f"search/{NAME}"
    assert all(p.placed.vault.mount != "secret" for p in got.values())


def test_first_version_is_a_baseline_then_a_producer_change_restarts_each_workload_once(acme_scope: Scope) -> None:
    clock = FakeClock()
    er, kv, kube, eso = rotations(clock, acme_scope)
    eso.push("https://search-1.example")
    drive(er, acme_scope, eso, clock)
    first = kv.read_metadata(VAULT.mount, VAULT.path)
    assert first is not None and first.custom[ext.ESO_MANAGED_BY] == ext.ESO_MANAGER
    assert all(eso.marker_of(ns, n) == first.custom[wk.VALUE_MARKER] for ns, n in CONSUMERS)
    assert restarts(kube) == [], "the first version a controller sees restarts nothing"

    # a burst: three pushes within the quiet window -> one run, each workload restarted once
    for i in range(2, 5):
        eso.push(f"https://search-{i}.example")
        er.step(acme_scope)
        clock.advance(0.5)
    drive(er, acme_scope, eso, clock, ticks=8)
    meta = kv.read_metadata(VAULT.mount, VAULT.path)
    assert meta is not None and meta.current_version == 4 and meta.custom[wk.VALUE_VERSION] == "4"
    assert meta.custom[ext.ESO_MANAGED_BY] == ext.ESO_MANAGER
    assert all(eso.marker_of(ns, n) == meta.custom[wk.VALUE_MARKER] for ns, n in CONSUMERS)
    assert sorted(restarts(kube)) == sorted(WORKLOADS)
    entries = [e for e in LedgerReader(kv, "secret").for_secret(NAME) if e.details.get("trigger") == "external"]
    assert [e.details["version"] for e in entries] == ["1", "4"]
    assert entries[-1].details["producer"] == f"search/{NAME}" and entries[-1].details["pushSecret"] == PUSH
    assert entries[-1].details["previousVersion"] == "1"
    specs = [o["spec"] for o in run_objects(kube)]
    assert [s["trigger"] for s in specs] == ["external", "external"]
    last = [p for p in kube.status_patches if p[0] == "rotationruns"][-1][3]
    assert last["phase"] == "done" and last["currentVersion"] == 4 and last["previousVersion"] == 1

    drive(er, acme_scope, eso, clock)  # steady: nothing more
    assert len(restarts(kube)) == 2 and len(run_objects(kube)) == 2
    assert er.metrics is not None
    assert er.metrics.rotations.labels(NAME, "external", "ok")._value.get() == 2


def test_a_missing_declared_key_holds_and_consumers_keep_their_value(acme_scope: Scope) -> None:
    clock = FakeClock()
    er, kv, kube, eso = rotations(clock, acme_scope)
    eso.push("https://search-1.example")
    drive(er, acme_scope, eso, clock)
    good = eso.marker_of("web", NAME)
    pokes = [dict(kube.external_secrets[c]["metadata"]["annotations"]) for c in CONSUMERS]

    eso.set_push(False, "set secret failed: secret key url does not exist")
    drive(er, acme_scope, eso, clock)
    intents = [p for p in kube.status_patches if p[0] == "secretintents" and p[2] == NAME]
    held = {c["type"]: c for c in intents[-1][3]["conditions"]}["Held"]
    assert held["status"] == "True" and held["reason"] == ext.HELD_REASON
    assert "url" in held["message"] and f"search/{NAME}" in held["message"]
    assert intents[-1][3]["phase"] == "Held"
    assert [dict(kube.external_secrets[c]["metadata"]["annotations"]) for c in CONSUMERS] == pokes, "no force-sync"
    assert eso.marker_of("web", NAME) == good and restarts(kube) == []
    assert [e.reason for e in kube.events if e.reason == ext.HELD_REASON] == [ext.HELD_REASON]  # once

    # a partial push while held: recorded once as a held run, still nothing refreshed
    eso.push("https://partial.example")
    eso.set_push(False, "set secret failed: secret key url does not exist")
    drive(er, acme_scope, eso, clock)
    held_runs = [p[3] for p in kube.status_patches if p[0] == "rotationruns" and p[3]["phase"] == "held"]
    assert len({r["runId"] for r in held_runs}) == 1 and "url" in held_runs[0]["lastError"]
    failed = [e for e in LedgerReader(kv, "secret").for_secret(NAME) if e.result == "failed"]
    assert len(failed) == 1 and failed[0].details["missingKey"] == "url"
    assert eso.marker_of("web", NAME) == good and restarts(kube) == []

    # the producer fixed its Secret: ESO pushes, the pipeline runs
    eso.set_push(True)
    eso.push("https://search-2.example")
    drive(er, acme_scope, eso, clock, ticks=8)
    assert eso.marker_of("web", NAME) != good and sorted(restarts(kube)) == sorted(WORKLOADS)
    intents = [p for p in kube.status_patches if p[0] == "secretintents" and p[2] == NAME]
    assert intents[-1][3]["phase"] == "Ready"


def test_a_run_interrupted_after_the_refresh_resumes_without_a_second_restart(acme_scope: Scope) -> None:
    clock = FakeClock()
    er, kv, kube, eso = rotations(clock, acme_scope)
    eso.push("https://search-1.example")
    drive(er, acme_scope, eso, clock)
    eso.push("https://search-2.example")
    for _ in range(4):  # settle, start, refresh; ESO has not synced yet
        er.step(acme_scope)
        clock.advance(1.0)
    record = ext.ExternalRecord.from_data(kv.read("secret", ext.record_path("secret", VAULT, "dev1").path).data)
    assert record is not None and record.pending == 2 and record.stage == "refreshed"

    er2, _, _, _ = rotations(clock, acme_scope, eso)  # a new process (same authority and cluster)
    drive(er2, acme_scope, eso, clock, ticks=6)
    assert sorted(restarts(kube)) == sorted(WORKLOADS)
    done = ext.ExternalRecord.from_data(kv.read("secret", ext.record_path("secret", VAULT, "dev1").path).data)
    assert done is not None and done.version == 2 and done.pending == 0 and done.run == record.run


def test_the_pushsecret_watch_lists_then_watches_and_wakes_the_loop() -> None:
    import threading

    from chamberlain.controller.external import PushSecretWatch

    kube = FakeKube()
    kube.add_custom_object(PUSH_SECRETS, {"metadata": {"name": PUSH, "namespace": "search"}})
    woken: list[tuple[str, str]] = []
    changed = threading.Event()

    def on_change(ns: str, name: str) -> None:
        woken.append((ns, name))
        changed.set()

    watch = PushSecretWatch(kube, on_change)
    watch.ensure({"search"})
    try:
        assert changed.wait(5) and watch.state("search", PUSH) == ext.PushState(PUSH, None)
        changed.clear()
        kube.add_custom_object(PUSH_SECRETS, {"metadata": {"name": PUSH, "namespace": "search"}, "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "Errored", "message": MISSING.message}]}})
        assert changed.wait(5)
        assert ext.missing_key(watch.state("search", PUSH), ["url"]) == "url"
        watches = kube.watches
        changed.clear()
        assert not changed.wait(1.5) and kube.watches <= watches + 2, "an empty watch does not spin"
    finally:
        watch.stop()


def test_a_published_part_of_a_template_reaches_the_templated_secret(acme_scope: Scope) -> None:
    """reporting/orders-dsn (declared by orders-db-app) also reads orders-db-endpoint: a producer-side change of
    the endpoint waits for the DSN Secret's part annotation, not its own marker."""
    endpoint = published_of(acme_scope)["orders-db-endpoint"]
    dsn = [c for c in endpoint.consumers if (c.secret.namespace, c.secret.name) == ("reporting", "orders-dsn")]
    assert len(dsn) == 1 and dsn[0].secret.annotation.endswith("orders-db-endpoint")
