"""Propagation decisions and acting functions on the fake Kubernetes API (issue 5 item 4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import FakeClock
from chamberlain.kube.api import KubeSecret, PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.propagation import (
    Change,
    ConsumerRef,
    ExternalSecretRef,
    WorkloadRef,
    force_refresh,
    in_sync,
    plan_restarts,
    restart,
    wait_in_sync,
)

NEW, OLD = "v1:" + "a" * 32, "v1:" + "b" * 32


def clock_at(mono: float = 1000.0) -> FakeClock:
    return FakeClock(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), mono)


@pytest.mark.parametrize(("annotations", "marker", "expected"), [
    (None, NEW, False),  # the Secret does not exist (yet)
    ({}, NEW, False),  # materialized without the marker template
    ({wk.ANNOTATION_VERSION_MARKER: ""}, NEW, False),  # the Vault secret had no marker
    ({wk.ANNOTATION_VERSION_MARKER: OLD}, NEW, False),  # still the previous version
    ({wk.ANNOTATION_VERSION_MARKER: NEW}, NEW, True),
    ({wk.ANNOTATION_VERSION_MARKER: NEW, "other": "x"}, NEW, True),
    ({wk.ANNOTATION_VERSION_MARKER: NEW.upper()}, NEW, False),  # exact comparison only
    ({wk.ANNOTATION_VERSION_MARKER: ""}, "", False),  # an empty expectation proves nothing
    ({"chamberlain.dev/version": NEW}, NEW, False),  # only the one annotation counts
])
def test_in_sync(annotations: dict[str, str] | None, marker: str, expected: bool) -> None:
    assert in_sync(annotations, marker) is expected


def _secret(kube: FakeKube, name: str, marker: str, ns: str = "app") -> None:
    kube.secrets[(ns, name)] = KubeSecret(ns, name, {"password": "never-read"},
                                          annotations={wk.ANNOTATION_VERSION_MARKER: marker})


class ESOAfter:
    """A fake whose consumer Secret reaches the new marker after ``polls`` reads (as ESO would, eventually)."""

    def __init__(self, kube: FakeKube, name: str, polls: int) -> None:
        self.kube, self.name, self.polls = kube, name, polls

    def __getattr__(self, attr: str) -> object:
        return getattr(self.kube, attr)

    def get_secret_annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        if name == self.name:
            self.polls -= 1
            if self.polls <= 0:
                _secret(self.kube, name, NEW)
        got = self.kube.get_secret_annotations(namespace, name)
        return dict(got) if got is not None else None


def test_wait_in_sync_reports_per_consumer_latency_and_never_reads_data() -> None:
    kube = FakeKube()
    _secret(kube, "fast", NEW)
    _secret(kube, "slow", OLD)
    clock = clock_at()
    got = wait_in_sync(ESOAfter(kube, "slow", 4), [ConsumerRef("app", "slow"), ConsumerRef("app", "fast")],  # type: ignore[arg-type]
                       NEW, clock, timeout=10, poll=0.5)
    by_name = {r.consumer.name: r for r in got}
    assert by_name["fast"].in_sync and by_name["fast"].latency == 0.0
    # the 4th look: pauses of 0.05, 0.1 and 0.2 s (ESO usually writes within a tenth of a second)
    assert by_name["slow"].in_sync and by_name["slow"].latency == pytest.approx(0.35)
    assert [r.consumer.name for r in got] == ["fast", "slow"]  # stable order


def test_wait_in_sync_pauses_double_up_to_the_poll_interval() -> None:
    kube = FakeKube()
    _secret(kube, "slow", OLD)
    [got] = wait_in_sync(ESOAfter(kube, "slow", 8), [ConsumerRef("app", "slow")],  # type: ignore[arg-type]
                         NEW, clock_at(), timeout=10, poll=0.5)
    # looks at 0, 0.05, 0.15, 0.35, 0.75, then every 0.5 s: 1.25, 1.75, 2.25
    assert got.in_sync and got.latency == pytest.approx(2.25)


def test_wait_in_sync_times_out_with_what_it_saw() -> None:
    kube = FakeKube()
    _secret(kube, "stuck", OLD)
    clock = clock_at()
    [result] = wait_in_sync(kube, [ConsumerRef("app", "stuck")], NEW, clock, timeout=5, poll=1)
    assert not result.in_sync and result.latency is None and result.observed == OLD
    assert clock.mono - 1000.0 == pytest.approx(5)
    [missing] = wait_in_sync(kube, [ConsumerRef("app", "missing")], NEW, clock_at(), timeout=1, poll=1)
    assert not missing.in_sync and missing.observed is None


def test_wait_in_sync_is_cut_short_when_its_caller_stops_and_never_when_all_are_in_sync() -> None:
    from chamberlain.propagation import WaitInterrupted

    kube = FakeKube()
    _secret(kube, "stuck", OLD)
    _secret(kube, "fast", NEW)
    clock = clock_at()
    asked: list[float] = []

    def stopping() -> bool:
        asked.append(clock.mono)
        return len(asked) >= 3

    with pytest.raises(WaitInterrupted):
        wait_in_sync(kube, [ConsumerRef("app", "stuck")], NEW, clock, timeout=120, poll=1, interrupted=stopping)
    assert len(asked) == 3 and clock.mono - 1000.0 < 1, "asked before each pause; the 120 s were not waited out"
    [done] = wait_in_sync(kube, [ConsumerRef("app", "fast")], NEW, clock_at(), timeout=1, interrupted=lambda: True)
    assert done.in_sync, "all in sync at the first look: nothing to cut short"


def test_wait_in_sync_rides_out_an_unavailable_api_server() -> None:
    kube = FakeKube()
    _secret(kube, "s", NEW)
    kube.down = True
    clock = clock_at()

    def heal(seconds: float) -> None:
        clock.mono += seconds
        kube.down = False

    clock.sleep = heal  # type: ignore[method-assign]
    [result] = wait_in_sync(kube, [ConsumerRef("app", "s")], NEW, clock, timeout=10, poll=1)
    assert result.in_sync and result.latency == pytest.approx(0.05)  # the next look, after the first pause


def test_force_refresh_annotates_each_external_secret_once_and_reports_missing() -> None:
    kube = FakeKube()
    kube.external_secrets[("app", "db")] = {"metadata": {"name": "db", "annotations": {"keep": "me"}}}
    refs = [ExternalSecretRef("app", "db"), ExternalSecretRef("app", "db"), ExternalSecretRef("app", "gone")]
    assert force_refresh(kube, refs, "run-7-1") == [ExternalSecretRef("app", "gone")]
    annotations = kube.external_secrets[("app", "db")]["metadata"]["annotations"]
    assert annotations == {"keep": "me", wk.ESO_FORCE_SYNC: "run-7-1"}


def test_500_secrets_feeding_50_workloads_restart_each_workload_once() -> None:
    workloads = [WorkloadRef("Deployment" if i % 3 else "StatefulSet", f"ns{i % 5}", f"w{i}") for i in range(50)]
    changes = []
    for s in range(500):
        # Each secret reaches one consumer Secret per namespace of three of the workloads it feeds.
        fed = [workloads[(s + k * 7) % 50] for k in range(3)]
        consumers = tuple((ConsumerRef(w.namespace, f"secret-{s}"), (w,)) for w in fed)
        changes.append(Change(f"secret-{s}", consumers))
    planned = plan_restarts(changes)
    assert planned == set(workloads)

    kube = FakeKube()
    for w in workloads:
        kube.workloads[(w.kind, w.namespace, w.name)] = PodTemplateState({}, 1)
    for w in sorted(planned):
        assert restart(kube, w, "batch-1", clock_at()) == "restarted"
    assert len(kube.workload_patches) == 50 and len(set(kube.workload_patches)) == 50


def test_plan_restarts_ignores_a_workload_that_cannot_mount_the_secret() -> None:
    elsewhere = WorkloadRef("Deployment", "other", "api")
    here = WorkloadRef("DaemonSet", "app", "agent")
    assert plan_restarts([Change("s", ((ConsumerRef("app", "s"), (elsewhere, here)),))]) == {here}
    assert plan_restarts([]) == set()


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_restart_is_idempotent_per_batch_token(kind: str) -> None:
    kube = FakeKube()
    w = WorkloadRef(kind, "app", "api")  # type: ignore[arg-type]
    kube.workloads[(kind, "app", "api")] = PodTemplateState({"unrelated": "x"}, 3)
    clock = clock_at()
    assert restart(kube, w, "batch-1", clock) == "restarted"
    assert restart(kube, w, "batch-1", clock) == "already-restarted"
    state = kube.workloads[(kind, "app", "api")]
    assert state.generation == 4 and len(kube.workload_patches) == 1
    assert state.annotations == {"unrelated": "x", wk.ANNOTATION_RESTARTED_AT: "2025-01-02T03:04:05Z",
                                 wk.ANNOTATION_RESTART_BATCH: "batch-1"}
    assert restart(kube, w, "batch-2", clock) == "restarted"
    assert kube.workloads[(kind, "app", "api")].generation == 5
