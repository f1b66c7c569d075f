"""RotationRun objects published from background threads (controller.resources.BackgroundPublisher): coalescing,
the final state always published, per-run order, failures counted and retried, leader loss, draining on close; and
the controller handing it each step while its tick never waits for the API server."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chamberlain.controller.resources import RUN_OBJECTS, BackgroundPublisher, RunPublisher
from chamberlain.kube.api import CustomResource, KubeError, KubeForbidden, KubeUnavailable
from chamberlain.kube.fake import FakeKube
from chamberlain.rotation.run import RotationRun

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NS = "chamberlain-system"
ORDER = ("pending", "staged", "tested", "promoted", "propagated", "restarted", "done")


def state(run_id: str, i: int) -> RotationRun:
    """The ``i``-th state of a run (``ORDER``); the last one is final (finished and ledgered)."""
    stage = ORDER[i]
    done = stage == "done"
    return RotationRun(run_id=run_id, secret=f"s-{run_id}", path=f"dev/shop/{run_id}", mount="secret",
                       trigger="manual", reason="x", stage=stage, started_at=T0,
                       updated_at=T0 + timedelta(seconds=i), previous_version=1, staging_base=0,
                       current_version=2 if i >= 3 else None, finished_at=T0 if done else None,
                       ledger_seq=7 if done else None)


class GatedKube(FakeKube):
    """FakeKube whose status patches wait for ``gate``, may be refused, and are recorded per run, in order."""

    def __init__(self, gate: threading.Event | None = None, refuse: int = 0,
                 error: type[KubeError] = KubeUnavailable, jitter: float = 0.0) -> None:
        super().__init__()
        self.gate, self.refuse, self.error, self.jitter = gate, refuse, error, jitter
        self.lock = threading.Lock()
        self.phases: dict[str, list[str]] = {}
        self.in_flight: dict[str, int] = {}
        self.overlap = False  # two sends of the same run at once (order could break)

    def create_custom_object(self, resource: CustomResource, namespace: str, body: Mapping[str, Any]
                             ) -> dict[str, Any]:
        with self.lock:
            return super().create_custom_object(resource, namespace, body)

    def patch_custom_object_status(self, resource: CustomResource, namespace: str, name: str,
                                   status: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.in_flight[name] = self.in_flight.get(name, 0) + 1
            self.overlap |= self.in_flight[name] > 1
        try:
            if self.gate is not None:
                self.gate.wait(5)
            if self.jitter:
                time.sleep(random.uniform(0, self.jitter))
            with self.lock:
                if self.refuse > 0:
                    self.refuse -= 1
                    raise self.error("the API server said no")
                self.phases.setdefault(name, []).append(str(status["phase"]))
                return super().patch_custom_object_status(resource, namespace, name, status)
        finally:
            with self.lock:
                self.in_flight[name] -= 1

    def phase(self, name: str) -> str | None:
        obj = self.get_custom_object(RUN_OBJECTS, NS, name)
        return None if obj is None else (obj.get("status") or {}).get("phase")


def test_a_busy_api_server_gets_the_newest_state_only_and_the_caller_never_waits() -> None:
    gate = threading.Event()
    kube = GatedKube(gate)
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=1, pace=0.0)
    started = time.monotonic()
    pub.publish(state("r1", 0))
    deadline = time.monotonic() + 5
    while not kube.in_flight.get("r1") and time.monotonic() < deadline:  # the first state is being sent
        time.sleep(0.001)
    for i in range(1, 7):
        pub.publish(state("r1", i))
    assert time.monotonic() - started < 1.0, "publish returns at once"
    assert pub.pending == 1
    gate.set()
    assert pub.flush(5)
    assert kube.phases["r1"] == ["pending", "done"], "the states in between were skipped"
    assert kube.phase("r1") == "done" and pub.failures == 0
    assert pub.close(1)


def test_objects_appear_at_once_final_states_go_first_and_statuses_between_are_paced() -> None:
    kube = GatedKube()
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=1, pace=3600.0)  # one routine send an hour
    for r in ("a", "b", "c"):
        pub.publish(state(r, 0))
    deadline = time.monotonic() + 5
    while len(kube.list_custom_objects(RUN_OBJECTS, NS)) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(kube.list_custom_objects(RUN_OBJECTS, NS)) == 3, "every run's object appears, unpaced"
    for r in ("a", "b", "c"):
        pub.publish(state(r, 2))  # routine statuses: one goes, the others wait an hour
    pub.publish(state("c", 6))  # final: at once, ahead of the routine ones
    while kube.phase("c") != "done" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert kube.phase("c") == "done" and kube.phases["c"] == ["done"], "created, then its final status"
    assert [kube.phase("a"), kube.phase("b")].count(None) == 1, "one routine status per pace"
    assert not pub.flush(0.05)
    assert not pub.close(0.05) and pub.dropped in (1, 2)  # b's, and a's "tested" unless it went first


def test_a_quiet_run_gets_its_status_right_after_its_object() -> None:
    kube = GatedKube()
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=1)  # default pace: nothing else is waiting
    pub.publish(state("r1", 3))
    assert pub.flush(5)
    assert kube.phases["r1"] == ["promoted"] and kube.phase("r1") == "promoted"
    assert pub.close(1)


def test_each_runs_states_arrive_in_order_from_many_threads() -> None:
    kube = GatedKube(jitter=0.002)
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=4, pace=0.0)
    ids = [f"r{i}" for i in range(20)]

    def drive(rid: str) -> None:
        for i in range(len(ORDER)):
            pub.publish(state(rid, i))
            time.sleep(random.uniform(0, 0.003))

    workers = [threading.Thread(target=drive, args=(rid,)) for rid in ids]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert pub.flush(10)
    assert not kube.overlap, "never two sends of one run at once"
    for rid in ids:
        seen = [ORDER.index(p) for p in kube.phases[rid]]
        assert seen == sorted(seen) and len(seen) == len(set(seen)), (rid, kube.phases[rid])
        assert kube.phases[rid][-1] == "done"
    assert pub.close(1)


def test_a_refused_send_is_counted_and_tried_again_until_the_final_state_is_there() -> None:
    kube = GatedKube(refuse=3)
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=2, pace=0.0, retry=0.01)
    pub.publish(state("r1", 6))
    assert pub.flush(5)
    assert kube.phase("r1") == "done"
    assert pub.failures == 3 and pub.dropped == 0
    assert pub.close(1)


def test_a_refusal_that_is_not_transient_is_given_up_after_a_few_tries() -> None:
    kube = GatedKube(refuse=100, error=KubeForbidden)
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=1, pace=0.0, retry=0.001, attempts=3)
    pub.publish(state("r1", 6))
    assert pub.flush(5)
    assert pub.failures == 3 and pub.dropped == 1 and kube.phase("r1") is None
    assert pub.close(1)


def test_leader_loss_drops_unfinished_states_but_sends_final_ones() -> None:
    gate = threading.Event()
    kube = GatedKube(gate)
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=1, pace=0.0)
    pub.publish(state("blocker", 0))
    deadline = time.monotonic() + 5
    while not kube.in_flight.get("blocker") and time.monotonic() < deadline:
        time.sleep(0.001)
    pub.publish(state("unfinished", 3))
    pub.publish(state("finished", 6))
    assert pub.forget_unfinished() == 1
    gate.set()
    assert pub.flush(5)
    assert kube.phase("finished") == "done" and kube.phase("unfinished") is None
    assert pub.close(1)


def test_close_drains_what_waits_within_its_bound_then_stops_the_threads() -> None:
    kube = GatedKube(jitter=0.001)
    pub = BackgroundPublisher(RunPublisher(kube, NS), threads=2, pace=0.0)
    for i in range(30):
        pub.publish(state(f"r{i}", 6))
    assert pub.close(10)
    assert all(kube.phase(f"r{i}") == "done" for i in range(30)) and pub.dropped == 0
    assert not any(t.is_alive() for t in pub._threads)

    gate = threading.Event()
    slow = BackgroundPublisher(RunPublisher(GatedKube(gate), NS), threads=1, pace=0.0)
    for i in range(5):
        slow.publish(state(f"r{i}", 6))
    threading.Timer(0.3, gate.set).start()  # the send in flight ends after the bound
    assert not slow.close(0.05), "the bound holds"
    assert slow.dropped == 4  # one was being sent


def test_states_forgotten_before_the_lease_goes_are_never_sent_after_it() -> None:
    """What ``serve`` does before it gives up the Lease: the unfinished runs' states are forgotten (the next leader
    adopts those runs and publishes them), final states are still sent. Closing later never sends an older state
    over the next leader's newer one."""
    kube = GatedKube()
    old = BackgroundPublisher(RunPublisher(kube, NS), threads=2, pace=0.2)
    ids = [f"r{i}" for i in range(6)]
    for r in ids:
        old.publish(state(r, 0))
    assert old.flush(5)
    for r in ids:  # a batch mid-flight at shutdown: routine statuses, paced
        old.publish(state(r, 1))
    old.publish(state("r-ended", 0))
    old.publish(state("r-ended", len(ORDER) - 1))  # a run this replica finished: only it knows
    old.forget_unfinished()
    assert old.flush(2)  # only the final state was left, sent at once
    new = RunPublisher(kube, NS)  # the next leader
    for r in ids:
        assert new.publish(state(r, 4))
    assert old.close(3.0)
    assert {r: kube.phase(r) for r in ids} == dict.fromkeys(ids, "propagated")
    assert kube.phase("r-ended") == "done"


def test_a_run_taken_over_has_its_waiting_states_dropped() -> None:
    kube = GatedKube()
    p = BackgroundPublisher(RunPublisher(kube, NS), threads=1, pace=60.0)  # routine states wait a minute
    p.publish(state("r1", 0))
    assert p.flush(5)
    p.publish(state("r1", 1))
    assert p.pending == 1
    p.forget("r1")  # another executor took the run: its states are newer
    assert p.pending == 0 and p.flush(1)
    assert p.close(1)
    assert kube.phases.get("r1") == ["pending"]  # the state sent before the takeover; the waiting one never
