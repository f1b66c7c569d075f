"""Other owners in the cluster (issue 10, item 6): a foreign ExternalSecret writing a Secret chamberlain
materializes, and stakater Reloader on a restart target. plan reports both as conflicts; propagation never
restarts a workload Reloader restarts for the rotated Secret (no double restart), and reports it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import FakeClock
from chamberlain.controller.batch import RestartWave
from chamberlain.kube.api import KubeSecret, PodTemplateState, SecretOwnership
from chamberlain.kube.fake import FakeKube
from chamberlain.propagation import Change, ConsumerRef, WorkloadRef, reloader_reason, restart, restart_all
from chamberlain.propagation.conflicts import (
    Expected,
    expected_consumers,
    foreign_external_secrets,
    foreign_secrets,
    is_chamberlains,
    observe,
    reloader_conflicts,
    target_name,
)
from chamberlain.render.topology import build_topology
from chamberlain.service.repository import load_valid
from tests.conftest import EXAMPLES

T0 = datetime(2026, 1, 1, tzinfo=UTC)
API = WorkloadRef("Deployment", "app", "api")
AUTO = {wk.RELOADER_AUTO: "true"}


# ------------------------------------------------------------------------------------------------ the decision


@pytest.mark.parametrize(("annotations", "secret_annotations", "expected"), [
    pytest.param({}, None, None, id="no-reloader"),
    pytest.param(AUTO, None, wk.RELOADER_AUTO, id="auto"),
    pytest.param({wk.RELOADER_AUTO: "True "}, None, wk.RELOADER_AUTO, id="auto-spelling"),
    pytest.param({wk.RELOADER_AUTO: "false"}, None, None, id="auto-opted-out"),
    pytest.param({wk.RELOADER_SECRET_AUTO: "true"}, None, wk.RELOADER_SECRET_AUTO, id="secret-auto"),
    pytest.param({wk.RELOADER_SECRET_RELOAD: "other, db"}, None, wk.RELOADER_SECRET_RELOAD, id="reload-names-it"),
    pytest.param({wk.RELOADER_SECRET_RELOAD: "other,db-old"}, None, None, id="reload-names-others"),
    pytest.param({wk.RELOADER_SEARCH: "true"}, {wk.RELOADER_MATCH: "true"}, wk.RELOADER_SEARCH, id="search-match"),
    pytest.param({wk.RELOADER_SEARCH: "true"}, {}, None, id="search-no-match"),
    pytest.param({"configmap.reloader.stakater.com/reload": "db"}, None, None, id="configmap-only"),
])
def test_reloader_reason(annotations: dict[str, str], secret_annotations: dict[str, str] | None,
                         expected: str | None) -> None:
    assert reloader_reason(annotations, "db", secret_annotations) == expected


# ------------------------------------------------------------------------------------------------ propagation


def kube_with(workload_annotations: dict[str, str], template: dict[str, str] | None = None) -> FakeKube:
    kube = FakeKube()
    kube.workloads[("Deployment", "app", "api")] = PodTemplateState(template or {}, 1, workload_annotations)
    return kube


def test_a_workload_reloader_rolls_for_the_secret_is_left_to_it() -> None:
    kube = kube_with(AUTO)
    assert restart(kube, API, "run-1", FakeClock(T0), ["db"]) == "reloader-managed"
    assert kube.workload_patches == []  # never rolled twice


def test_reloader_in_the_pod_template_counts_too() -> None:
    kube = kube_with({}, {wk.RELOADER_SECRET_RELOAD: "db"})
    assert restart(kube, API, "run-1", FakeClock(T0), ["db"]) == "reloader-managed"


def test_reloader_for_other_secrets_does_not_stop_chamberlains_restart() -> None:
    kube = kube_with({wk.RELOADER_SECRET_RELOAD: "tls"})
    assert restart(kube, API, "run-1", FakeClock(T0), ["db"]) == "restarted"
    assert kube.workload_patches == [("Deployment", "app", "api")]


def test_search_mode_reads_the_secrets_annotations_only() -> None:
    kube = kube_with({wk.RELOADER_SEARCH: "true"})
    kube.secrets[("app", "db")] = KubeSecret("app", "db", {"password": "x"}, annotations={wk.RELOADER_MATCH: "true"})
    assert restart(kube, API, "run-1", FakeClock(T0), ["db"]) == "reloader-managed"
    assert kube.secret_annotation_reads == 1


def test_restart_all_reports_rolled_and_left_to_reloader() -> None:
    kube = kube_with(AUTO)
    kube.workloads[("Deployment", "app", "worker")] = PodTemplateState({}, 1)
    worker = WorkloadRef("Deployment", "app", "worker")
    done = restart_all(kube, {API: {"db"}, worker: {"db"}}, "run-1", FakeClock(T0))
    assert done.rolled == ("Deployment/app/worker",)
    assert done.left_to_reloader == ("Deployment/app/api",)


def test_the_controllers_restart_wave_leaves_reloader_workloads_alone_once_per_batch() -> None:
    kube = kube_with(AUTO)
    wave = RestartWave(kube, FakeClock(T0))
    wave.begin(["run-1", "run-2"])
    change = Change("db", ((ConsumerRef("app", "db"), (API,)),))
    first = wave.restart(change, "run-1")
    second = wave.restart(change, "run-2")
    assert first.left_to_reloader == ("Deployment/app/api",) and first.rolled == ()
    assert second.left_to_reloader == () and kube.workload_patches == []


# ------------------------------------------------------------------------------------------------ plan conflicts


def es(name: str, target: str | None = None, ns: str = "app") -> dict[str, Any]:
    spec: dict[str, Any] = {"target": {"name": target}} if target else {}
    return {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


EXPECTED = [Expected("app", "db", "app-db", (API,))]


def test_target_name_defaults_to_the_external_secrets_own_name() -> None:
    assert target_name(es("db")) == "db"
    assert target_name(es("other", "db")) == "db"
    assert target_name({"metadata": {}}) is None


def test_a_foreign_external_secret_writing_our_secret_is_a_conflict() -> None:
    observed = {"app": [es("db"), es("legacy-db", "db"), es("db-copy"), es("unrelated", "other")]}
    found = foreign_external_secrets(EXPECTED, observed)
    assert [(c.kind, c.namespace, c.object, c.intent) for c in found] == [
        ("foreign-external-secret", "app", "ExternalSecret/legacy-db", "app-db")]
    assert "two owners" in found[0].detail


def test_our_own_external_secret_and_other_namespaces_are_not_conflicts() -> None:
    assert foreign_external_secrets(EXPECTED, {"app": [es("db")], "other": [es("x", "db", ns="other")]}) == []


def test_an_existing_secret_that_is_not_chamberlains_is_a_conflict_not_a_takeover() -> None:
    """ESO's Owner policy adopts an existing Secret without an owner (external-secrets#2416): plan must say so."""
    ours = SecretOwnership({}, (("ExternalSecret", "db"),))
    labelled = SecretOwnership({wk.LABEL_INTENT: "app-db"}, ())
    foreign = SecretOwnership({"app.kubernetes.io/part-of": "argocd"}, ())
    other_owner = SecretOwnership({wk.LABEL_INTENT: "app-db"}, (("Deployment", "x"),))
    assert is_chamberlains(EXPECTED[0], ours) and is_chamberlains(EXPECTED[0], labelled)
    assert not is_chamberlains(EXPECTED[0], foreign) and not is_chamberlains(EXPECTED[0], other_owner)
    assert foreign_secrets(EXPECTED, {("app", "db"): None}) == []  # absent: ESO creates it
    assert foreign_secrets(EXPECTED, {("app", "db"): ours}) == []
    [conflict] = foreign_secrets(EXPECTED, {("app", "db"): foreign})
    assert (conflict.kind, conflict.namespace, conflict.object, conflict.intent) == (
        "foreign-secret", "app", "Secret/db", "app-db")
    assert "take it over" in conflict.detail
    [owned] = foreign_secrets(EXPECTED, {("app", "db"): other_owner})
    assert "Deployment/x" in owned.detail


def test_observe_finds_a_foreign_secret_reading_metadata_only() -> None:
    kube = FakeKube()
    kube.create_secret("app", "db", {"password": "x"}, labels={"team": "someone-else"})
    found = observe(kube, EXPECTED)
    assert [c.kind for c in found] == ["foreign-secret"]
    assert kube.secret_annotation_reads == 0
    kube.secret_owners[("app", "db")] = (("ExternalSecret", "db"),)
    assert observe(kube, EXPECTED) == []


def test_reloader_on_a_restart_target_is_a_conflict_saying_who_restarts() -> None:
    covered = reloader_conflicts(EXPECTED, {API: PodTemplateState({}, 1, AUTO)})
    assert [(c.kind, c.object) for c in covered] == [("reloader", "Deployment/api")]
    assert "leaves this restart to Reloader" in covered[0].detail
    other = reloader_conflicts(EXPECTED, {API: PodTemplateState({}, 1, {wk.RELOADER_SECRET_RELOAD: "tls"})})
    assert "chamberlain rolls it" in other[0].detail
    assert reloader_conflicts(EXPECTED, {API: PodTemplateState({}, 1, {wk.RELOADER_AUTO: "false"})}) == []
    assert reloader_conflicts(EXPECTED, {}) == []  # not deployed yet: nothing to conflict with


def test_expected_consumers_follow_the_rendered_topology() -> None:
    repo = load_valid(EXAMPLES / "acme")
    assert repo.platform is not None
    topo = build_topology(repo.platform, [p.obj for p in repo.policies], [i.obj for i in repo.intents])
    dev = expected_consumers(topo, "dev1")
    prod = expected_consumers(topo, "prod-eu1", "prod")
    assert dev and prod and len({(e.namespace, e.secret) for e in dev}) == len(dev)
    assert all(w.namespace == e.namespace for e in dev for w in e.workloads)
    assert {e.intent for e in expected_consumers(topo, "dev1", "preview")} == {"preview-api-token"}


def test_observe_reads_external_secrets_and_workloads_from_the_fake_cluster() -> None:
    kube = kube_with(AUTO)
    kube.external_secrets[("app", "db")] = es("db")
    kube.external_secrets[("app", "legacy")] = es("legacy", "db")
    found = observe(kube, EXPECTED)
    assert [c.kind for c in found] == ["foreign-external-secret", "reloader"]
    assert kube.workload_patches == [] and kube.secret_annotation_reads == 0  # reads metadata only, writes nothing


def test_plan_reports_conflicts_and_is_not_up_to_date(tmp_path: Path) -> None:
    from chamberlain.service import authority
    from tests.unit.test_service import FakeServers

    servers = FakeServers()
    target = authority.Selection(EXAMPLES / "acme", None, "dev1")
    repo = load_valid(EXAMPLES / "acme")
    assert repo.platform is not None
    consumer = next(c for i in repo.intents if i.obj.name == "storefront-session" for c in i.obj.spec.consumers)
    servers.fake_kube.external_secrets[(consumer.namespace, "old-session")] = es(
        "old-session", consumer.secret_name, ns=consumer.namespace)
    servers.fake_kube.workloads[("Deployment", consumer.namespace, "storefront")] = PodTemplateState({}, 1, AUTO)
    found, unchecked = authority.conflicts(repo, repo.platform, target, servers)
    assert unchecked is None
    assert {(c.kind, c.object) for c in found} == {("foreign-external-secret", "ExternalSecret/old-session"),
                                                   ("reloader", "Deployment/storefront")}
    several = authority.conflicts(repo, repo.platform, authority.Selection(EXAMPLES / "acme"), servers)
    assert several[0] == [] and several[1] is not None and "--cluster" in several[1]
    servers.fake_kube.down = True
    down = authority.conflicts(repo, repo.platform, target, servers)
    assert down[0] == [] and "down" in str(down[1])


def test_plan_with_a_conflict_is_not_up_to_date_and_says_so_in_json(tmp_path: Path) -> None:
    from chamberlain.service import authority
    from chamberlain.service.context import Caller
    from tests.unit.test_service import FakeServers

    servers = FakeServers()
    target = authority.Selection(EXAMPLES / "acme", None, "dev1")
    authority.initialize(authority.InitRequest(target, tmp_path / "recovery", 3, 2), servers,
                         Caller("test:someone", FakeClock(T0), "run-test"))
    assert authority.plan(target, servers).up_to_date
    servers.fake_kube.workloads[("Deployment", "web", "storefront")] = PodTemplateState({}, 1, AUTO)
    plan = authority.plan(target, servers)
    assert not plan.up_to_date and not plan.changes
    # storefront reads two Secrets of two intents: one conflict per Secret it would be rolled for
    assert {(c["kind"], c["object"], c["intent"]) for c in plan.as_dict()["conflicts"]} == {
        ("reloader", "Deployment/storefront", "storefront-session"),
        ("reloader", "Deployment/storefront", "search-endpoint")}
    assert plan.as_dict()["conflictsUnchecked"] is None
