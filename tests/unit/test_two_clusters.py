"""One environment on two clusters, with fakes: FakeKV as the one authority, an EsoKube (ESO simulated on
force-sync) per cluster, a fake clock. The real-server proof is tests/lab/test_two_clusters.py.

Who rotates (the Platform's ``rotationCluster``, default the first cluster), how the other follows (refresh, wait,
restart once, acknowledge under its own path), and ``revokeOld`` waiting for every acknowledgement (alerting once
past the deadline), as pure decisions with the clock passed in and through the controller loop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from chamberlain import wellknown as wk
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.controller import loop
from chamberlain.controller.collaborators import Collaborators
from chamberlain.controller.config import ControllerConfig
from chamberlain.controller.ledger import SharedLedger
from chamberlain.controller.loop import Controller, scope_of
from chamberlain.handover import metadata as md
from chamberlain.intent.model import Environment, Platform, RotationPolicySpec
from chamberlain.intent.paths import VaultPath
from chamberlain.kube.api import PodTemplateState
from chamberlain.rotation import clusters
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.triggers import MemoryQueue, manual
from chamberlain.values.markers import version_marker
from tests.unit.test_controller import CANARY, MOUNT, PLATFORM, T0, EsoKube, ListLog, intent

A, B = "eu", "us"
SECRET = VaultPath(MOUNT, "prod/shop/api-token")
REVOKING = {"type": "time-based", "ttl": "10m", "rotateBefore": "2m", "revokeOld": True, "maxOverlap": "1m",
            "failureStrategy": "retry"}


def platform(rotation_cluster: str | None = None) -> Platform:
    env: dict[str, Any] = {"name": "prod", "clusters": [A, B]}
    if rotation_cluster is not None:
        env["rotationCluster"] = rotation_cluster
    data = PLATFORM.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["environments"] = [env]
    return Platform.model_validate(data)


def ack(cluster: str, version: int) -> clusters.Acknowledgement:
    return clusters.Acknowledgement(cluster, version, f"m{version}", "run-x", T0)


# --------------------------------------------------------------------------------------------------- pure


def test_the_first_cluster_rotates_unless_the_platform_names_another() -> None:
    assert clusters.rotating_cluster(platform(), "prod") == A
    assert clusters.followers(platform(), "prod") == (B,)
    assert clusters.rotating_cluster(platform(B), "prod") == B
    assert clusters.followers(platform(B), "prod") == (A,)
    assert clusters.is_follower(platform(), "prod", B) and not clusters.is_follower(platform(), "prod", A)
    assert clusters.rotating_cluster(platform(), "nowhere") is None and clusters.followers(platform(), "x") == ()


def test_a_rotation_cluster_outside_the_environment_is_refused() -> None:
    with pytest.raises(ValidationError, match="rotationCluster 'ap' is not one of the environment's clusters"):
        Environment.model_validate({"name": "prod", "clusters": [A, B], "rotationCluster": "ap"})


def test_each_cluster_acknowledges_under_its_own_path() -> None:
    assert clusters.ack_path(SECRET, B) == VaultPath(MOUNT, "_chamberlain/acks/prod/us/shop/api-token")
    got = ack(B, 3)
    assert clusters.Acknowledgement.from_data(B, got.to_data()) == got
    assert clusters.Acknowledgement.from_data(B, {"version": "x", "marker": "m", "at": "2030-01-01T00:00:00Z"}) is None
    assert clusters.Acknowledgement.from_data(B, {"version": "2", "marker": "m"}) is None


@pytest.mark.parametrize(("custom", "acknowledged", "expected"), [
    pytest.param({wk.VALUE_VERSION: "2", wk.VALUE_MARKER: "m2", wk.LAST_RUN: "r2"}, None,
                 clusters.Follow(2, "m2", "r2", restart=False), id="first-sight-acknowledges-without-restart"),
    pytest.param({wk.VALUE_VERSION: "2", wk.VALUE_MARKER: "m2", wk.LAST_RUN: "r2"}, ack(B, 1),
                 clusters.Follow(2, "m2", "r2", restart=True), id="a-new-version-restarts"),
    pytest.param({wk.VALUE_VERSION: "2", wk.VALUE_MARKER: "m2"}, ack(B, 2), None, id="acknowledged"),
    pytest.param({wk.VALUE_VERSION: "2"}, ack(B, 1), None, id="no-marker-nothing-to-wait-for"),
    pytest.param({wk.VALUE_MARKER: "m"}, None, None, id="no-version"),
])
def test_follow_due(custom: dict[str, str], acknowledged: clusters.Acknowledgement | None,
                    expected: clusters.Follow | None) -> None:
    assert clusters.follow_due(custom, acknowledged) == expected


def test_unacknowledged_lists_the_clusters_behind_the_version() -> None:
    acks = {"b": ack("b", 2), "c": ack("c", 1), "d": None}
    assert clusters.unacknowledged(("b", "c", "d"), acks, 2) == ("c", "d")
    assert clusters.unacknowledged(("b",), acks, 2) == ()


@pytest.mark.parametrize(("now", "missing", "gate"), [
    pytest.param(T0 - timedelta(seconds=1), (), clusters.RevokeGate.OVERLAP, id="overlap-first"),
    pytest.param(T0, (), clusters.RevokeGate.REVOKE, id="everyone-acknowledged"),
    pytest.param(T0, ("us",), clusters.RevokeGate.AWAIT, id="a-follower-is-behind"),
    pytest.param(T0 + timedelta(minutes=59), ("us",), clusters.RevokeGate.AWAIT, id="within-the-deadline"),
    pytest.param(T0 + timedelta(hours=1), ("us",), clusters.RevokeGate.OVERDUE, id="past-the-deadline"),
])
def test_revoke_gate(now: Any, missing: tuple[str, ...], gate: clusters.RevokeGate) -> None:
    assert clusters.revoke_gate(T0, missing, now, timedelta(hours=1)) is gate


# --------------------------------------------------------------------------------------------------- workflow


def test_revoke_waits_for_the_follower_and_alerts_once_past_the_deadline() -> None:
    from tests.unit.test_rotation_workflow import SECRET as WF_SECRET
    from tests.unit.test_rotation_workflow import make_world

    w = make_world()
    overdue: list[str] = []
    deps = w.deps(followers=(B,), ack_deadline=timedelta(minutes=10), on_overdue=lambda r: overdue.append(r.run_id))
    run = w.start()
    while run.stage != "revoke-wait":
        run = wf.advance(run, deps)
    w.clock.advance(3600)  # maxOverlap passed
    run = wf.advance(run, deps)
    assert run.stage == "revoke-wait" and run.notes[clusters.AWAITING_NOTE] == B
    assert wf.advance(run, deps) == run, "waiting: nothing to write while the same cluster is awaited"
    w.clock.advance(600)
    run = wf.advance(run, deps)
    assert overdue == [run.run_id] and clusters.OVERDUE_NOTE in run.notes and run.stage == "revoke-wait"
    w.clock.advance(600)
    assert wf.advance(run, deps) == run and overdue == [run.run_id], "alerted once"
    assert w.rotator.revoked == []
    clusters.write_acknowledgement(w.kv, WF_SECRET, ack(B, 1), 0)  # an old version: still waiting
    assert wf.advance(run, deps) == run
    _, cas = clusters.read_acknowledgement(w.kv, WF_SECRET, B)
    clusters.write_acknowledgement(w.kv, WF_SECRET, ack(B, 2), cas)
    run = wf.run_to_completion(run, deps)
    assert run.stage == "revoked" and len(w.rotator.revoked) == 1
    assert run.notes[clusters.ACKNOWLEDGED_NOTE] == B and clusters.AWAITING_NOTE not in run.notes


# --------------------------------------------------------------------------------------------------- controllers


class Clusters:
    """Two controllers (one per cluster) over one FakeKV; each cluster its own ESO, Secret and Deployment."""

    def __init__(self, rotation_cluster: str | None = None) -> None:
        self.clock = FakeClock(T0)
        self.kv = FakeKV()
        self.platform = platform(rotation_cluster)
        intents = {"api-token": intent("api-token", policy=REVOKING)}
        self.scopes = {c: scope_of(self.platform, intents, "prod", c) for c in (A, B)}
        path = self.scopes[A].placed["api-token"].vault.path
        assert path == SECRET.path == self.scopes[B].placed["api-token"].vault.path, "one path, both clusters"
        self.kubes = {c: EsoKube(self.kv, {("shop", "api-token"): path}) for c in (A, B)}
        data = {"token": f"{CANARY}-api"}
        self.kv.write(MOUNT, path, data, cas=0)
        self.kv.update_custom_metadata(MOUNT, path, {
            **md.policy_metadata(None, RotationPolicySpec.model_validate(REVOKING)),
            wk.VALUE_MARKER: version_marker(SECRET.full, data), wk.VALUE_VERSION: "1",
            wk.CREATED_AT: "2030-01-01T12:00:00Z", wk.AUTHORITY: "vault"})
        for kube in self.kubes.values():
            kube.workloads[("Deployment", "shop", "api")] = PodTemplateState({}, 1)
            kube.external_secrets[("shop", "api-token")] = {"metadata": {"name": "api-token", "namespace": "shop"}}
        self.logs = {c: ListLog() for c in (A, B)}
        self.queues = {c: MemoryQueue() for c in (A, B)}
        ids = iter(f"run-{i:04d}" for i in range(1000))
        self.controllers = {c: Controller(self.scopes[c], Collaborators(
            kv=self.kv, kube=self.kubes[c], clock=self.clock,
            ledger=SharedLedger(self.kv, MOUNT, self.clock, cluster=c), queue=self.queues[c], log=self.logs[c],
            new_run_id=lambda: next(ids)),
            ControllerConfig(evaluate_every=0.0, propagation_timeout=5.0, poll=1.0)) for c in (A, B)}

    def version(self) -> int:
        meta = self.kv.read_metadata(MOUNT, SECRET.path)
        assert meta is not None
        return meta.current_version

    def marker(self, cluster: str) -> str:
        return self.kubes[cluster].secrets[("shop", "api-token")].annotations[wk.ANNOTATION_VERSION_MARKER]

    def rolls(self, cluster: str) -> int:
        return len(self.kubes[cluster].workload_patches)


def test_the_rotating_cluster_rotates_once_and_the_follower_restarts_its_own_workloads() -> None:
    w = Clusters()
    owner, follower = w.controllers[A], w.controllers[B]
    assert not owner.following and follower.following
    follower.tick()  # first sight of version 1: acknowledged, nothing restarted
    assert clusters.read_acknowledgement(w.kv, SECRET, B)[0] is not None and w.rolls(B) == 0
    w.queues[A].put(manual("api-token", "test", w.clock.now()))
    owner.tick()
    assert w.version() == 2 and w.rolls(A) == 1
    run = runs.load(w.kv, SECRET)
    assert run is not None and run.stage == "revoke-wait"
    w.clock.advance(61)  # maxOverlap
    owner.tick()
    run = runs.load(w.kv, SECRET)
    assert run is not None and run.stage == "revoke-wait" and run.notes[clusters.AWAITING_NOTE] == B
    follower.tick()
    got, _ = clusters.read_acknowledgement(w.kv, SECRET, B)
    assert got is not None and got.version == 2 and got.run == run.run_id
    assert w.marker(B) == w.marker(A) and w.rolls(B) == 1
    assert w.kubes[B].workloads[("Deployment", "shop", "api")].annotations[wk.ANNOTATION_RESTART_BATCH] == run.run_id
    owner.tick()
    still = runs.load(w.kv, SECRET)
    assert still is not None and still.stage == "revoke-wait", "acknowledgements are looked at every few seconds"
    w.clock.advance(loop.ACK_LOOK_EVERY)
    owner.tick()
    run = runs.load(w.kv, SECRET)
    assert run is not None and run.stage == "revoked" and run.notes[clusters.ACKNOWLEDGED_NOTE] == B
    follower.tick()
    assert w.version() == 2 and w.rolls(B) == 1, "the follower never writes a version and rolls once"


def test_a_follower_drops_rotation_requests_and_writes_no_runtime_value() -> None:
    w = Clusters()
    follower = w.controllers[B]
    w.queues[B].put(manual("api-token", "test", w.clock.now()))
    follower.tick()
    assert w.version() == 1 and runs.load(w.kv, SECRET) is None
    assert any("rotated by cluster eu" in line for line in w.logs[B].lines) or any(
        "another cluster rotates" in line for line in w.logs[B].lines)


def test_the_platform_can_name_the_second_cluster_as_the_rotating_one() -> None:
    w = Clusters(rotation_cluster=B)
    assert w.controllers[A].following and not w.controllers[B].following
    w.queues[B].put(manual("api-token", "test", w.clock.now()))
    w.controllers[B].tick()
    assert w.version() == 2 and w.rolls(B) == 1 and w.rolls(A) == 0


def test_a_follower_that_was_down_catches_up_with_one_restart() -> None:
    w = Clusters()
    owner, follower = w.controllers[A], w.controllers[B]
    follower.tick()
    w.queues[A].put(manual("api-token", "test", w.clock.now()))  # while cluster B is down: it does not tick
    owner.tick()
    w.clock.advance(61)
    owner.tick()
    run = runs.load(w.kv, SECRET)
    assert run is not None and run.stage == "revoke-wait", "the rotation went through; revokeOld waits"
    assert w.version() == 2 and w.rolls(A) == 1
    w.kubes[B].down = True  # back, but its API server still down: nothing acknowledged
    follower.tick()
    got, _ = clusters.read_acknowledgement(w.kv, SECRET, B)
    assert got is not None and got.version == 1
    w.kubes[B].down = False
    follower.tick()
    assert w.rolls(B) == 1 and clusters.read_acknowledgement(w.kv, SECRET, B)[0].version == 2  # type: ignore[union-attr]
    w.clock.advance(loop.ACK_LOOK_EVERY)
    owner.tick()
    run = runs.load(w.kv, SECRET)
    assert run is not None and run.stage == "revoked"


def test_a_stopping_follower_cuts_its_wait_for_eso_short_and_acknowledges_nothing() -> None:
    """Cluster B's ESO is down: its controller waits for its consumer Secret (here 5 s; 120 s by default, per
    secret). A graceful stop ends the wait at its next look, with nothing restarted or acknowledged; the next
    leader follows once ESO is back."""
    import threading

    from chamberlain.kube.fake import FakeKube

    w = Clusters()
    owner, follower = w.controllers[A], w.controllers[B]
    follower.tick()
    w.queues[A].put(manual("api-token", "test", w.clock.now()))
    owner.tick()
    assert w.version() == 2
    kube_b = w.kubes[B]
    sync, read = kube_b.annotate_external_secret, kube_b.get_secret_annotations
    stop, looks = threading.Event(), []

    def eso_down(namespace: str, name: str, annotations: Any) -> None:
        FakeKube.annotate_external_secret(kube_b, namespace, name, annotations)

    def sigterm_while_waiting(namespace: str, name: str) -> Any:
        looks.append(name)
        stop.set()
        return read(namespace, name)

    kube_b.annotate_external_secret = eso_down  # type: ignore[method-assign]
    kube_b.get_secret_annotations = sigterm_while_waiting  # type: ignore[method-assign]
    follower.serve(stop, 0.0)
    assert looks == ["api-token"], "one look, then the wait ended"
    assert w.rolls(B) == 0 and clusters.read_acknowledgement(w.kv, SECRET, B)[0].version == 1  # type: ignore[union-attr]
    kube_b.annotate_external_secret, kube_b.get_secret_annotations = sync, read  # type: ignore[method-assign]
    again = Controller(w.scopes[B], follower.parts, follower.config)
    again.tick()
    assert w.rolls(B) == 1 and clusters.read_acknowledgement(w.kv, SECRET, B)[0].version == 2  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------------- render


def test_the_same_intents_are_rendered_for_every_cluster_of_an_environment() -> None:
    """acme's prod is on prod-eu1 and prod-us1: the same consumer objects in both, each cluster's SecretStores
    logging in through its own auth mount and roles (the only difference is the cluster's name)."""
    from tests.unit.test_render import render

    tree = render("acme")
    eu, us = ({p.removeprefix(f"envs/prod/{c}/"): p for p in tree.paths() if p.startswith(f"envs/prod/{c}/namespaces/")}
              for c in ("prod-eu1", "prod-us1"))
    assert eu and set(eu) == set(us)
    for name in eu:
        assert tree[eu[name]].replace("prod-eu1", "prod-us1") == tree[us[name]], name
    assert "kubernetes-prod-us1" in "".join(tree[p] for p in us.values())
