"""The durable rotation workflow with fakes: FakeKV as Vault, FakeKube as the cluster (ESO simulated), a fake
rotator and a fake clock. Crashes are injected at every checkpoint and the run is resumed from its record by a
fresh executor; the invariants checked are the ones of SPEC §2 and issue 5 item 3: exactly one new version,
never two current, one ledger entry per run, no value in any record."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger
from chamberlain.authority.counting import CountingKV
from chamberlain.authority.errors import NotFound
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.handover import metadata as md
from chamberlain.intent.model import RotationPolicySpec, SecretIntent
from chamberlain.intent.paths import VaultPath
from chamberlain.kube.api import KubeSecret, PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.propagation import ConsumerRef, ExternalSecretRef, Restarts, WorkloadRef
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.rotators import (
    CredentialTestFailed,
    PendingVersion,
    RotationContext,
    TargetRejected,
    TargetUnavailable,
)
from chamberlain.rotation.run import RotationRun, RunActive
from chamberlain.values.markers import LegacyMarkers, version_marker

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MOUNT = "secret"
SECRET = VaultPath(MOUNT, "prod/shop/api-token")
OLD = "CANARY-old-0123456789abcdef"
ESO_NS, ESO_NAME = "shop", "api-token"
WORKLOAD = WorkloadRef("Deployment", "shop", "api")
ADMIN = {"username": "postgres", "password": "CANARY-admin-5e5e5e5e5e5e"}  # a target's admin login


# --------------------------------------------------------------------------------------------------- fakes


class FixedDraw:
    def __init__(self, value: float = 0.5) -> None:
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


@dataclass
class FakeRotator:
    """Values are canaries, so any leak into a record is caught by a substring search."""

    name: str = "fake"
    created: int = 0
    fail: dict[str, list[Exception]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def _maybe_fail(self, step: str) -> None:
        self.calls.append(step)
        queue = self.fail.get(step)
        if queue:
            raise queue.pop(0)

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        self._maybe_fail("create_pending")
        self.created += 1
        return PendingVersion({**ctx.current, "token": f"CANARY-new-{self.created}-fedcba9876543210"},
                              frozenset({"token"}), {"fake-user": "blue"})

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        self._maybe_fail("set_at_target")

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        self._maybe_fail("test")

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        self._maybe_fail("revoke_old")
        assert previous["token"] != ctx.current["token"]
        self.revoked.append(version_marker("x", previous))


class SimulatedESO:
    """The real KubeConsumers, plus what ESO would do on a force-sync: copy data and the value-marker."""

    def __init__(self, kv: FakeKV, kube: FakeKube, clock: FakeClock, *, lag: int = 0) -> None:
        self.kv, self.kube = kv, kube
        self.inner = wf.KubeConsumers(
            kube, "api-token",
            [wf.Consumer(ExternalSecretRef(ESO_NS, ESO_NAME), ConsumerRef(ESO_NS, ESO_NAME), (WORKLOAD,))],
            clock, timeout=5.0, poll=1.0,
        )
        self.lag = lag  # refreshes that do nothing (ESO slow), to drive the retry path

    def refresh(self, token: str) -> None:
        self.inner.refresh(token)
        if self.lag:
            self.lag -= 1
            return
        meta = self.kv.read_metadata(MOUNT, SECRET.path)
        latest = self.kv.read(MOUNT, SECRET.path)
        assert meta is not None and latest is not None
        self.kube.secrets[(ESO_NS, ESO_NAME)] = KubeSecret(
            ESO_NS, ESO_NAME, dict(latest.data),
            annotations={wk.ANNOTATION_VERSION_MARKER: meta.custom[wk.VALUE_MARKER]}
        )

    def wait(self, marker: str) -> None:
        self.inner.wait(marker)

    def restart(self, token: str) -> Restarts:
        return self.inner.restart(token)


class Crash(BaseException):
    """Stands in for os._exit at a checkpoint: nothing after it runs."""


def arm(monkeypatch: pytest.MonkeyPatch, point: str) -> list[str]:
    """Crash once, at the checkpoint ``point``; returns the checkpoints crashed at (filled when it happens)."""
    hit: list[str] = []

    def crash_at(name: str) -> None:
        if name == point and not hit:
            hit.append(name)
            raise Crash(name)

    monkeypatch.setattr(wf, "checkpoint", crash_at)
    return hit


@dataclass
class World:
    kv: FakeKV
    kube: FakeKube
    clock: FakeClock
    ledger: Ledger
    rotator: FakeRotator
    rng: FixedDraw
    eso: SimulatedESO
    alerts: list[str] = field(default_factory=list)

    def deps(self, **overrides: Any) -> wf.RotationDeps:
        base: dict[str, Any] = {
            "kv": self.kv, "ledger": Ledger(self.kv, MOUNT, self.clock), "rotator": self.rotator,
            "intent": INTENT, "propagation": self.eso, "clock": self.clock,
            "rng": self.rng, "on_alert": lambda run: self.alerts.append(run.run_id),
        }
        base.update(overrides)
        return wf.RotationDeps(**base)

    def start(self, run_id: str = "run-1", **kw: Any) -> RotationRun:
        return wf.start(self.kv, SECRET, secret="api-token", run_id=run_id, trigger=kw.pop("trigger", "manual"),
                        reason=kw.pop("reason", "test"), now=self.clock.now(), **kw)

    def versions(self) -> int:
        meta = self.kv.read_metadata(MOUNT, SECRET.path)
        return meta.current_version if meta else 0

    def custom(self) -> Mapping[str, str]:
        meta = self.kv.read_metadata(MOUNT, SECRET.path)
        assert meta is not None
        return meta.custom

    def rotations(self) -> list[Any]:
        return [e for e in self.ledger.entries() if e.event == "rotation"]


INTENT = SecretIntent.model_validate({
    "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "api-token"},
    "spec": {"owner": "shop", "purpose": "tests", "classification": "runtime",
             "source": {"generate": {"token": {"type": "token"}}}},
})


def make_world(strategy: str = "retry", *, revoke_old: bool = True, lag: int = 0) -> World:
    kv = FakeKV()
    kv.write(MOUNT, SECRET.path, {"token": OLD, "user": "svc"}, cas=0)
    policy = RotationPolicySpec(type="time-based", ttl=timedelta(days=30), rotate_before=timedelta(days=3),
                                revoke_old=revoke_old, max_overlap=timedelta(hours=1),
                                failure_strategy=strategy)
    kv.update_custom_metadata(MOUNT, SECRET.path, {
        **md.policy_metadata("standard", policy),
        wk.VALUE_MARKER: version_marker(SECRET.full, {"token": OLD, "user": "svc"}), wk.VALUE_VERSION: "1",
    })
    kube = FakeKube()
    kube.external_secrets[(ESO_NS, ESO_NAME)] = {"metadata": {"name": ESO_NAME, "annotations": {}}}
    kube.workloads[(WORKLOAD.kind, WORKLOAD.namespace, WORKLOAD.name)] = PodTemplateState({}, 1)
    clock = FakeClock(T0)
    return World(kv, kube, clock, Ledger(kv, MOUNT, clock), FakeRotator(), FixedDraw(),
                 SimulatedESO(kv, kube, clock, lag=lag))


def everything_recorded(w: World) -> str:
    """Every record the workflow leaves behind, as one string: run record versions, ledger, metadata."""
    parts: list[str] = []
    run_path = runs.run_path(SECRET)
    meta = w.kv.read_metadata(MOUNT, run_path)
    for v in range(1, (meta.current_version if meta else 0) + 1):
        got = w.kv.read(MOUNT, run_path, v)
        assert got is not None
        parts.append(got.data["run"])
        parts.append(json.dumps(RotationRun.model_validate_json(got.data["run"]).to_status()))
    parts += [e.model_dump_json() for e in w.ledger.entries()]
    parts.append(json.dumps(dict(w.custom())))
    parts += [json.dumps(dict(s.annotations)) for s in w.kube.secrets.values()]
    return "\n".join(parts)


def assert_one_clean_rotation(w: World, run: RotationRun) -> None:
    assert run.stage == "revoked" and run.ledger_seq is not None
    assert w.versions() == 2, "exactly one new version promoted"
    latest = w.kv.read(MOUNT, SECRET.path)
    assert latest is not None and latest.data["token"].startswith("CANARY-new-")
    assert not any(k.startswith("_chamberlain.") for k in latest.data), "staging bookkeeping never promoted"
    custom = w.custom()
    assert custom[wk.VALUE_VERSION] == "2"
    assert custom[wk.VALUE_MARKER] == version_marker(SECRET.full, latest.data) == run.pending_marker
    assert custom[wk.LAST_RUN] == run.run_id and custom[wk.LAST_RESULT] == f"{run.run_id}:ok"
    entries = w.rotations()
    assert [(e.run, e.result) for e in entries] == [(run.run_id, "ok")]
    assert w.ledger.verify().ok
    assert len(w.kube.workload_patches) == 1, "one restart for the batch"
    assert len(set(w.rotator.revoked)) == 1, "only the previous version is revoked (repeating is idempotent)"
    assert "CANARY" not in everything_recorded(w)


# --------------------------------------------------------------------------------------------------- full run


def test_full_run_reaches_revoked_with_one_version_one_entry_and_no_values() -> None:
    w = make_world()
    run = wf.run_to_completion(w.start(), w.deps())
    assert_one_clean_rotation(w, run)
    assert w.rotator.created == 1
    assert run.previous_version == 1 and run.current_version == 2 and run.rotated_keys == ("token",)
    assert run.notes["fake-user"] == "blue"
    assert w.clock.sleeps == [3600.0], "revoke waited exactly maxOverlap"
    assert w.kube.secrets[(ESO_NS, ESO_NAME)].annotations[wk.ANNOTATION_VERSION_MARKER] == run.pending_marker
    status = run.to_status()
    assert status["phase"] == "revoked"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Promoted": "True", "Propagated": "True", "Retrying": "False", "Failed": "False",
        "Held": "False"}


def test_without_revoke_old_the_run_ends_done_without_waiting() -> None:
    w = make_world(revoke_old=False)
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.stage == "done" and w.clock.sleeps == [] and w.rotator.revoked == []
    assert w.versions() == 2 and len(w.rotations()) == 1


def test_consumers_never_see_a_pending_value_before_promote() -> None:
    w = make_world()
    run, deps = w.start(), w.deps()
    while run.stage != "tested":
        run = wf.advance(run, deps)
        latest = w.kv.read(MOUNT, SECRET.path)
        assert latest is not None and latest.version == 1 and latest.data["token"] == OLD
    staged = w.kv.read(MOUNT, runs.staging_path(SECRET))
    assert staged is not None and staged.data[wf.STAGED_RUN] == "run-1"


def test_every_advance_is_persisted_and_a_fresh_load_equals_it() -> None:
    w = make_world()
    run, stages = w.start(), []
    while not (run.finished and run.ledger_seq is not None):
        deps = w.deps(rotator=w.rotator)  # a fresh executor for every step
        after = wf.advance(run, deps)
        if after == run:
            w.clock.sleep(3600)
        loaded = runs.load(w.kv, SECRET)
        assert loaded == after
        run = loaded
        stages.append(run.stage)
    # the restart step goes on to schedule the revoke itself: "restarted" is never saved on its own
    assert stages[:7] == ["staged", "set-at-target", "tested", "promoted", "propagated", "revoke-wait",
                          "revoke-wait"]
    assert_one_clean_rotation(w, run)


# --------------------------------------------------------------------------------------------------- crashes

CHECKPOINTS = ["rotation.stage", "rotation.set-at-target", "rotation.test", "rotation.before-promote",
               "rotation.promote.write", "rotation.promote", "rotation.propagate", "rotation.restart",
               "rotation.revoke", "rotation.finalize"]


@pytest.mark.parametrize("point", CHECKPOINTS, ids=[p.removeprefix("rotation.") for p in CHECKPOINTS])
def test_a_crash_at_any_checkpoint_resumes_to_exactly_one_rotation(point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world()
    hit = arm(monkeypatch, point)
    with pytest.raises(Crash):
        wf.run_to_completion(w.start(), w.deps())
    assert hit == [point]
    # the process is gone; a fresh controller finds the record and finishes the run
    resumed = wf.resume(w.deps(), SECRET)
    assert resumed is not None
    assert_one_clean_rotation(w, resumed)
    assert w.rotator.created == 1, "a staged version is adopted, never drawn again"
    staging = w.kv.read_metadata(MOUNT, runs.staging_path(SECRET))
    assert staging is not None and staging.current_version == 1


def test_resuming_a_finished_run_does_nothing_more() -> None:
    w = make_world()
    run = wf.run_to_completion(w.start(), w.deps())
    again = wf.resume(w.deps(), SECRET)
    assert again == run and w.versions() == 2 and len(w.rotations()) == 1


# --------------------------------------------------------------------------------------------------- lease


def test_a_second_run_is_refused_while_one_is_active_and_the_same_id_joins() -> None:
    w = make_world()
    first = w.start("run-1")
    first = wf.advance(first, w.deps())
    with pytest.raises(RunActive, match="run-1"):
        w.start("run-2")
    assert w.start("run-1") == first, "a retried start joins the run"
    wf.run_to_completion(first, w.deps())
    second = wf.run_to_completion(w.start("run-2"), w.deps())
    assert second.stage == "revoked" and w.versions() == 3
    assert [e.run for e in w.rotations()] == ["run-1", "run-2"]


def test_two_executors_on_one_run_the_slower_loses_and_acts_no_further() -> None:
    w = make_world()
    run = w.start()
    wf.advance(run, w.deps())
    with pytest.raises(runs.RunLost):
        wf.advance(run, w.deps())  # a stale copy: its CAS on the run record fails
    staging = w.kv.read_metadata(MOUNT, runs.staging_path(SECRET))
    assert staging is not None and staging.current_version == 1


def test_a_foreign_write_during_a_run_is_a_conflict_never_an_overwrite() -> None:
    w = make_world()
    run, deps = w.start(), w.deps()
    run = wf.advance(wf.advance(run, deps), deps)  # staged, set at target
    w.kv.write(MOUNT, SECRET.path, {"token": "CANARY-someone-else-0000"}, cas=1)
    run = wf.run_to_completion(run, deps)
    assert run.stage == "failed" and "WriteConflict" in (run.last_error or "")
    assert w.versions() == 2
    latest = w.kv.read(MOUNT, SECRET.path)
    assert latest is not None and latest.data["token"] == "CANARY-someone-else-0000"
    assert [e.result for e in w.rotations()] == ["failed"]


# --------------------------------------------------------------------------------------------------- failures


def test_retryable_failures_back_off_with_jitter_then_succeed() -> None:
    w = make_world()
    w.rotator.fail["set_at_target"] = [TargetUnavailable("db restarting"), TargetUnavailable("db restarting")]
    run = wf.run_to_completion(w.start(), w.deps())
    assert_one_clean_rotation(w, run)
    # base 10s, factor 2, equal jitter with draw 0.5: 5 + 2.5, then 10 + 5 (then maxOverlap before revoking)
    assert w.clock.sleeps == [7.5, 15.0, 3600.0]
    assert w.rng.draws == 2
    assert w.rotator.calls.count("set_at_target") == 3


def test_slow_propagation_is_retried_with_a_new_force_sync_token() -> None:
    w = make_world(lag=1)
    run = wf.run_to_completion(w.start(), w.deps())
    assert_one_clean_rotation(w, run)
    annotations = w.kube.external_secrets[(ESO_NS, ESO_NAME)]["metadata"]["annotations"]
    assert annotations["force-sync"] == "run-1.1"


@pytest.mark.parametrize(
    ("delays", "draw", "expected"),
    [
        ((1,), 0.0, 5.0),
        ((1,), 0.999, 9.995),
        ((3,), 0.5, 30.0),
        ((20,), 0.0, 450.0),  # capped at 15 minutes, half of it fixed
    ],
    ids=["first-no-jitter", "first-max-jitter", "third-mid", "capped"],
)
def test_retry_delay_table(delays: tuple[int], draw: float, expected: float) -> None:
    assert wf.retry_delay(delays[0], wf.Backoff(), draw).total_seconds() == pytest.approx(expected)


def test_retry_gives_up_after_max_attempts_and_fails() -> None:
    w = make_world()
    w.rotator.fail["test"] = [CredentialTestFailed("auth failed") for _ in range(10)]
    run = wf.run_to_completion(w.start(), w.deps(backoff=wf.Backoff(max_attempts=3)))
    assert run.stage == "failed" and run.attempts == 3 and w.versions() == 1
    assert [e.result for e in w.rotations()] == ["failed"]
    assert w.alerts == []


def test_a_permanent_error_fails_at_once_even_under_retry() -> None:
    w = make_world()
    w.rotator.fail["set_at_target"] = [TargetRejected("permission denied (42501)")]
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.stage == "failed" and run.attempts == 1 and w.clock.sleeps == []
    assert run.last_error == "TargetRejected: permission denied (42501)"


def test_alert_stops_at_failed_and_calls_the_hook_once() -> None:
    w = make_world("alert")
    w.rotator.fail["set_at_target"] = [TargetUnavailable("db restarting")]
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.stage == "failed" and w.alerts == ["run-1"]
    assert w.versions() == 1 and w.custom()[wk.LAST_RESULT] == "run-1:failed"
    assert [(e.result, e.details["stage"]) for e in w.rotations()] == [("failed", "failed")]
    assert {c["type"]: c["status"] for c in run.to_status()["conditions"]}["Failed"] == "True"


def test_hold_stops_at_held_marks_the_secret_and_release_lets_rotation_run_again() -> None:
    w = make_world("hold")
    w.rotator.fail["test"] = [CredentialTestFailed("cannot log in")]
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.stage == "held" and w.custom()[wk.HELD] == "true" and w.custom()[wk.HELD_RUN] == "run-1"
    with pytest.raises(wf.SecretHeld):
        w.start("run-2")
    assert wf.release(w.kv, SECRET) is True
    assert wf.release(w.kv, SECRET) is False
    again = wf.run_to_completion(w.start("run-2"), w.deps())
    assert again.stage == "revoked" and w.versions() == 2
    assert [(e.run, e.result) for e in w.rotations()] == [("run-1", "failed"), ("run-2", "ok")]


@dataclass
class Leaky(FakeRotator):
    """A rotator whose error quotes a value: a pending one at ``test``, the admin login at ``set_at_target``."""

    leak: str = "test"

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        if self.leak == "set_at_target":
            raise TargetRejected(f"login as {dict(ctx.admin or {}).get('password')} refused")

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        if self.leak == "test":
            raise CredentialTestFailed(f"login with {pending.data['token']} failed")


@pytest.mark.parametrize("leak", ["test", "set_at_target"], ids=["pending-value", "admin-login"])
def test_an_error_quoting_a_value_is_scrubbed_before_it_is_recorded(leak: str) -> None:
    w = make_world("alert")
    w.rotator = Leaky(leak=leak)
    run = wf.run_to_completion(w.start(), w.deps(admin=lambda: dict(ADMIN)))
    assert run.stage == "failed" and "[redacted]" in (run.last_error or "")
    assert "CANARY" not in everything_recorded(w)


# --------------------------------------------------------------------------------------------------- rollback


def test_rollback_re_promotes_the_previous_values_as_a_new_version_and_is_ledgered() -> None:
    w = make_world()
    wf.run_to_completion(w.start(), w.deps())
    back = wf.rollback(w.deps(), SECRET, secret="api-token", run_id="rb-1", reason="bad deploy")
    assert back.stage == "done" and back.mode == "rollback" and back.source_version == 1
    assert w.versions() == 3
    v1, v3 = w.kv.read(MOUNT, SECRET.path, 1), w.kv.read(MOUNT, SECRET.path, 3)
    assert v1 is not None and v3 is not None and dict(v3.data) == dict(v1.data)
    assert w.custom()[wk.VALUE_MARKER] == version_marker(SECRET.full, v1.data)
    assert [(e.run, e.details["mode"]) for e in w.rotations()] == [("run-1", "rotate"), ("rb-1", "rollback")]
    assert len(w.rotator.revoked) == 1, "a rollback never revokes"
    assert "CANARY" not in everything_recorded(w)


def test_rollback_needs_an_earlier_version() -> None:
    w = make_world()
    with pytest.raises(NotFound):
        wf.rollback(w.deps(), SECRET, secret="api-token", run_id="rb-1", reason="nothing to go back to")


# --------------------------------------------------------------------------------------------------- next_step


def _run(stage: str, **kw: Any) -> RotationRun:
    base: dict[str, Any] = {"run_id": "r", "secret": "s", "path": "p/o/s", "mount": MOUNT, "trigger": "manual",
                            "reason": "x", "stage": stage, "started_at": T0, "updated_at": T0,
                            "previous_version": 4, "staging_base": 2, "pending_marker": "v1:new"}
    base.update(kw)
    return RotationRun.model_validate(base)


def _seen(current: int = 4, marker: str = "v1:old", staged: int = 2, staged_run: str | None = None,
          outage: str | None = None) -> wf.Observed:
    return wf.Observed(current, marker, staged, staged_run, outage=outage)


DOWN = "AuthorityUnavailable: connection refused"


LATER = T0 + timedelta(hours=2)
NEXT_STEP_CASES = [
    ("pending-nothing-staged", _run("pending", pending_marker=None), _seen(), T0, wf.Step.STAGE),
    ("pending-our-write-landed", _run("pending", pending_marker=None), _seen(staged=3, staged_run="r"), T0,
     wf.Step.RECORD_STAGED),
    ("pending-foreign-staging", _run("pending", pending_marker=None), _seen(staged=3, staged_run="other"), T0,
     wf.Step.CONFLICT),
    ("staged", _run("staged"), _seen(staged=3), T0, wf.Step.SET_AT_TARGET),
    ("set-at-target", _run("set-at-target"), _seen(staged=3), T0, wf.Step.TEST),
    ("tested", _run("tested"), _seen(staged=3), T0, wf.Step.PROMOTE),
    ("tested-promote-write-landed", _run("tested"), _seen(current=5, marker="v1:new"), T0, wf.Step.RECORD_PROMOTED),
    ("tested-foreign-write", _run("tested"), _seen(current=5, marker="v1:other"), T0, wf.Step.CONFLICT),
    ("staged-foreign-write", _run("staged"), _seen(current=5, marker="v1:new"), T0, wf.Step.CONFLICT),
    ("promoted", _run("promoted"), _seen(current=5, marker="v1:new"), T0, wf.Step.PROPAGATE),
    ("propagated", _run("propagated"), _seen(current=5), T0, wf.Step.RESTART),
    ("restarted-revoke-old", _run("restarted", revoke_old=True), _seen(current=5), T0, wf.Step.SCHEDULE_REVOKE),
    ("restarted-keep-old", _run("restarted"), _seen(current=5), T0, wf.Step.FINISH),
    ("restarted-rollback", _run("restarted", revoke_old=True, mode="rollback"), _seen(current=5), T0,
     wf.Step.FINISH),
    ("revoke-wait-early", _run("revoke-wait", revoke_at=T0 + timedelta(hours=1)), _seen(current=5), T0,
     wf.Step.WAIT),
    ("revoke-wait-over", _run("revoke-wait", revoke_at=T0 + timedelta(hours=1)), _seen(current=5), LATER,
     wf.Step.REVOKE),
    ("backing-off", _run("staged", next_retry_at=T0 + timedelta(seconds=5)), _seen(staged=3), T0, wf.Step.WAIT),
    ("backoff-over", _run("staged", next_retry_at=T0 + timedelta(seconds=5)), _seen(staged=3), LATER,
     wf.Step.SET_AT_TARGET),
    ("finished-unrecorded", _run("failed"), _seen(), T0, wf.Step.FINALIZE),
    ("finished-recorded", _run("done", ledger_seq=7), _seen(current=5), T0, wf.Step.NONE),
    # an authority outage interrupted the run: the failure strategy decides, as for any failure
    ("outage-alert-stops", _run("staged", failure_strategy="alert"), _seen(staged=3, outage=DOWN), T0,
     wf.Step.STOP),
    ("outage-hold-stops", _run("tested", failure_strategy="hold"), _seen(staged=3, outage=DOWN), T0, wf.Step.STOP),
    ("outage-hold-stops-a-backoff", _run("staged", failure_strategy="hold", next_retry_at=T0 + timedelta(hours=1)),
     _seen(staged=3, outage=DOWN), T0, wf.Step.STOP),
    ("outage-hold-stops-the-overlap-wait", _run("revoke-wait", failure_strategy="hold",
                                                 revoke_at=T0 + timedelta(hours=1)),
     _seen(current=5, outage=DOWN), T0, wf.Step.STOP),
    ("outage-alert-even-past-promote", _run("propagated", failure_strategy="alert"), _seen(current=5, outage=DOWN),
     T0, wf.Step.STOP),
    ("outage-retry-goes-on", _run("staged"), _seen(staged=3, outage=DOWN), T0, wf.Step.SET_AT_TARGET),
    ("outage-retry-keeps-waiting", _run("staged", next_retry_at=T0 + timedelta(seconds=5)),
     _seen(staged=3, outage=DOWN), T0, wf.Step.WAIT),
    ("outage-after-the-end-records", _run("failed", failure_strategy="hold"), _seen(outage=DOWN), T0,
     wf.Step.FINALIZE),
    ("outage-after-the-record-nothing", _run("held", failure_strategy="hold", ledger_seq=7), _seen(outage=DOWN), T0,
     wf.Step.NONE),
]


@pytest.mark.parametrize(("run", "seen", "now", "expected"), [c[1:] for c in NEXT_STEP_CASES],
                         ids=[c[0] for c in NEXT_STEP_CASES])
def test_next_step_table(run: RotationRun, seen: wf.Observed, now: datetime, expected: wf.Step) -> None:
    assert wf.next_step(run, seen, now) is expected


def test_the_run_record_round_trips_and_its_status_is_kubernetes_shaped() -> None:
    run = _run("staged", next_retry_at=T0 + timedelta(seconds=5), last_error="TargetUnavailable: down", attempts=1)
    again = RotationRun.model_validate_json(run.model_dump_json())
    assert again == run
    status = run.to_status()
    assert status["phase"] == "staged" and status["nextRetryAt"] == "2030-01-01T12:00:05Z"
    retrying = next(c for c in status["conditions"] if c["type"] == "Retrying")
    assert retrying == {"type": "Retrying", "status": "True", "reason": "BackingOff",
                        "message": "TargetUnavailable: down", "lastTransitionTime": "2030-01-01T12:00:00Z"}


# --------------------------------------------------------------------------------------------------- economy paths


def test_a_foreign_write_after_test_is_refused_by_the_promote_cas_never_overwritten() -> None:
    w = make_world()
    run, deps = w.start(), w.deps()
    while run.stage != "tested":
        run = wf.advance(run, deps)
    assert wf.observe(run, w.kv).current_version == 1, "at tested nothing is read: the promote CAS checks"
    w.kv.write(MOUNT, SECRET.path, {"token": "CANARY-someone-else-0000"}, cas=1)
    run = wf.run_to_completion(run, deps)
    assert run.stage == "failed" and "WriteConflict" in (run.last_error or "")
    latest = w.kv.read(MOUNT, SECRET.path)
    assert w.versions() == 2 and latest is not None and latest.data["token"] == "CANARY-someone-else-0000"
    assert w.custom()[wk.VALUE_VERSION] == "1", "no marker recorded for a foreign write"
    assert [e.result for e in w.rotations()] == ["failed"]
    assert "CANARY" not in everything_recorded(w)


def test_a_waiting_run_and_a_run_past_promote_read_nothing_to_decide() -> None:
    w = make_world()
    run, deps = w.start(), w.deps()
    while run.stage != "revoke-wait":
        run = wf.advance(run, deps)
    before = w.kv.calls.total()
    assert wf.advance(run, deps) == run  # maxOverlap not over yet
    assert w.kv.calls.total() == before
    retrying = run.model_copy(update={"stage": "staged", "next_retry_at": T0 + timedelta(days=1)})
    assert wf.advance(retrying, deps) == retrying
    assert w.kv.calls.total() == before


def test_other_appends_between_finish_and_finalize_and_a_crash_still_leave_one_chained_entry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world(revoke_old=False)
    run, deps = w.start(), w.deps()
    while not run.finished:
        run = wf.advance(run, deps)
    assert run.ledger_mark is not None and run.ledger_mark.seq == 0
    other = Ledger(w.kv, MOUNT, w.clock)
    other.append("handover", actor="someone", secret="other-1")
    arm(monkeypatch, "rotation.finalize")
    with pytest.raises(Crash):
        wf.advance(run, deps)
    other.append("handover", actor="someone", secret="other-2")  # the head moves on after the crashed attempt
    resumed = wf.resume(w.deps(), SECRET)
    assert resumed is not None and resumed.ledger_seq == 2
    assert [(e.run, e.seq) for e in w.rotations()] == [("run-1", 2)]
    assert w.ledger.verify().ok and not w.ledger.verify().warnings


def test_alert_is_not_called_again_when_the_crashed_finalize_already_appended(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world("alert")
    w.rotator.fail["set_at_target"] = [TargetUnavailable("db restarting")]
    arm(monkeypatch, "rotation.finalize")
    with pytest.raises(Crash):
        wf.run_to_completion(w.start(), w.deps())
    resumed = wf.resume(w.deps(), SECRET)
    assert resumed is not None and resumed.stage == "failed"
    assert w.alerts == ["run-1"] and [e.result for e in w.rotations()] == ["failed"]


def test_a_run_recorded_before_the_policy_and_ledger_snapshots_still_finishes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world()
    run, deps = w.start(), w.deps()
    while run.stage != "revoke-wait":
        run = wf.advance(run, deps)
    # what an older controller persisted: no policy snapshot, and (below) no ledger mark
    run = runs.save(w.kv, run.model_copy(update={"policy_metadata": None}))
    seen: list[Any] = []

    class Recording(FakeRotator):
        def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
            seen.append(ctx.policy)
            super().revoke_old(ctx, previous)

    w.rotator = Recording()
    deps = w.deps()
    while not run.finished:
        after = wf.advance(run, deps)
        if after == run:
            w.clock.sleep(3600)
        run = after
    assert seen and seen[0] is not None and seen[0].max_overlap == timedelta(hours=1), "policy read from metadata"
    run = runs.save(w.kv, run.model_copy(update={"ledger_mark": None}))
    run = wf.run_to_completion(run, deps)
    assert run.ledger_seq == 1 and [e.run for e in w.rotations()] == ["run-1"]


def test_a_run_an_older_controller_saved_at_restarted_goes_on_to_its_end() -> None:
    w = make_world(revoke_old=False)
    run, deps = w.start(), w.deps()
    while run.stage != "propagated":
        run = wf.advance(run, deps)
    # an older controller saved the restart step on its own, before the end of the run
    run = runs.save(w.kv, run.model_copy(update={"stage": "restarted"}))
    assert wf.next_step(run, wf.observe(run, w.kv), w.clock.now()) is wf.Step.FINISH
    run = wf.run_to_completion(run, deps)
    assert run.stage == "done" and run.ledger_seq is not None
    assert w.versions() == 2 and [e.result for e in w.rotations()] == ["ok"]


class CountedMarkers(LegacyMarkers):
    """Counts the markers asked for: with TransitMarkers each is a Vault call."""

    def __init__(self) -> None:
        self.calls = 0

    def of(self, vault: VaultPath, data: Mapping[str, str]) -> str:
        self.calls += 1
        return super().of(vault, data)


def test_a_run_asks_for_a_marker_only_of_the_staged_values() -> None:
    w = make_world()
    markers = CountedMarkers()
    run = wf.run_to_completion(w.start(), w.deps(markers=markers))
    assert_one_clean_rotation(w, run)
    # once when staged, once when promote checks the staged copy; the current version never (it had not moved)
    assert markers.calls == 2


def test_the_restart_step_reads_the_ledger_mark_before_any_workload_rolls() -> None:
    from chamberlain.authority.errors import AuthorityUnavailable

    w = make_world(revoke_old=False)

    class FlakyMark(Ledger):
        failures = 1

        def mark(self) -> Any:
            if FlakyMark.failures:
                FlakyMark.failures -= 1
                raise AuthorityUnavailable("ledger head unreachable")
            return super().mark()

    deps = w.deps(ledger=FlakyMark(w.kv, MOUNT, w.clock))
    run = w.start()
    while run.stage != "propagated":
        run = wf.advance(run, deps)
    run = wf.advance(run, deps)
    assert run.stage == "propagated" and run.attempts == 1 and w.kube.workload_patches == [], "nothing rolled"
    run = wf.run_to_completion(run, deps)
    assert run.stage == "done" and len(w.kube.workload_patches) == 1 and len(w.rotations()) == 1


@pytest.mark.parametrize(("body", "says"), [("not json", "is not a JSON object"), ("[1, 2]", "is not a JSON object"),
                                            ('{"run_id": "r"}', "does not parse (fields: ")])
def test_a_run_record_that_does_not_parse_is_a_clear_error(body: str, says: str) -> None:
    w = make_world()
    w.kv.write(MOUNT, runs.run_path(SECRET), {"run": body}, cas=0)
    with pytest.raises(runs.RunUnreadable, match=re.escape(says)):
        runs.load(w.kv, SECRET)
    with pytest.raises(runs.RunUnreadable):
        w.start()


class RecordingKV(FakeKV):
    """Records the ``known`` map each metadata PATCH was checked against."""

    def __init__(self) -> None:
        super().__init__()
        self.known: list[dict[str, str]] = []

    def patch_custom_metadata(self, mount: str, path: str, update: Mapping[str, str],
                              known: Mapping[str, str]) -> None:
        self.known.append(dict(known))
        super().patch_custom_metadata(mount, path, update, known)


def test_the_metadata_a_run_records_is_patched_and_checked_against_the_map_as_it_is() -> None:
    w = make_world()
    kv = RecordingKV()
    kv.write(MOUNT, SECRET.path, {"token": OLD, "user": "svc"}, cas=0)
    kv.update_custom_metadata(MOUNT, SECRET.path, dict(w.custom()))
    w.kv = w.eso.kv = kv
    counting = CountingKV(kv)
    run = w.start()
    kv.patch_custom_metadata(MOUNT, SECRET.path, {"team.note": "added during the run"}, w.custom())
    at_promote = dict(w.custom())
    kv.known.clear()
    run = wf.run_to_completion(run, w.deps(kv=counting))
    assert run.stage == "revoked" and run.ledger_seq is not None
    assert counting.counts["update_custom_metadata"] == 0 and counting.counts["patch_custom_metadata"] == 2
    # promote: the map as its write answered it; the end: as read just before (one read, no write back)
    assert kv.known[0] == at_promote and "team.note" in kv.known[1] and wk.LAST_RUN in kv.known[1]
    # the staging path's latest version at stage (one request whatever its state), the map before the end's PATCH
    assert counting.counts["read_metadata"] == 2
    after = w.custom()
    assert after["team.note"] == "added during the run" and after[wk.LAST_RESULT] == "run-1:ok"


def test_a_full_custom_metadata_fails_the_run_before_anything_is_staged() -> None:
    """The stage step's read of the current version answers the custom_metadata: a map with no room for what the
    run records fails it before anything is staged or promoted."""
    w = make_world(strategy="alert")
    run, deps = w.start(), w.deps()
    free = 64 - len(w.custom())
    w.kv.patch_custom_metadata(MOUNT, SECRET.path, {f"team.k{i}": "v" for i in range(free)}, w.custom())
    run = wf.run_to_completion(run, deps)
    assert run.stage == "failed" and "no room in the secret's custom_metadata" in (run.last_error or "")
    assert w.versions() == 1 and w.kv.read_metadata(MOUNT, runs.staging_path(SECRET)) is None, "nothing staged"
    assert len(w.custom()) == 64 and wk.LAST_RUN not in w.custom()
    # the end cannot record last-result either: the run still alerts and gets its ledger entry, which says so
    entry = w.rotations()[-1]
    assert w.alerts == ["run-1"] and entry.result == "failed" and run.ledger_seq == entry.seq
    assert entry.details["metadata"].startswith("not recorded (custom_metadata has")


def test_keys_added_after_staging_count_at_promote_before_anything_is_sent() -> None:
    """OpenBao's PATCH merges without counting keys (the fake does the same): promote checks against the map its
    write answered, so keys added after the stage step's check are counted too."""
    w = make_world(strategy="alert")
    w.rotator = TargetlessRotator()

    def fill(tested: RotationRun) -> None:
        free = 64 - len(w.custom())
        w.kv.patch_custom_metadata(MOUNT, SECRET.path, {f"team.k{i}": "v" for i in range(free)}, w.custom())

    run = wf.advance(w.start(), w.deps(), then_promote=fill)
    run = wf.run_to_completion(run, w.deps())
    assert run.stage == "failed" and "cannot record the promoted version" in (run.last_error or "")
    assert len(w.custom()) == 64 and wk.LAST_RUN not in w.custom(), "nothing was sent"
    assert w.alerts == ["run-1"] and run.ledger_seq is not None


# --------------------------------------------------------------------------------------------------- outage


@pytest.mark.parametrize(("strategy", "stage"), [("alert", "failed"), ("hold", "held")])
def test_an_outage_under_alert_or_hold_ends_the_run_and_finalize_records_it(strategy: str, stage: str) -> None:
    w = make_world(strategy)
    run, deps = w.start(), w.deps()
    run = wf.advance(wf.advance(run, deps), deps)  # staged, set at target: then the authority went away
    assert run.stage == "set-at-target"
    ended = wf.advance(run, deps, outage=DOWN)
    assert ended.stage == stage and ended.finished and ended.attempts == 1 and ended.next_retry_at is None
    assert ended.last_error == f"authority unavailable during set-at-target: {DOWN}"
    assert ended.ledger_mark is not None and runs.load(w.kv, SECRET) == ended
    final = wf.run_to_completion(ended, deps)
    assert final.ledger_seq is not None and w.versions() == 1
    assert [(e.result, e.details["stage"]) for e in w.rotations()] == [("failed", stage)]
    assert (w.custom().get(wk.HELD) == "true") is (strategy == "hold")
    assert w.alerts == (["run-1"] if strategy == "alert" else [])
    assert "CANARY" not in everything_recorded(w)


def test_an_outage_under_retry_carries_on_where_the_run_was() -> None:
    w = make_world()
    run, deps = w.start(), w.deps()
    run = wf.advance(run, deps)
    after = wf.advance(run, deps, outage=DOWN)
    assert after.stage == "set-at-target" and after.last_error is None
    assert_one_clean_rotation(w, wf.run_to_completion(after, deps))


# --------------------------------------------------------------------------------------------------- admin login


def strings_reachable(root: object, *, outside: tuple[type, ...]) -> set[str]:
    """Every str reachable from ``root`` through attributes, containers and closures, not entering ``outside``
    (the authority itself holds the admin values, by definition)."""
    import types

    seen: set[int] = set()
    found: set[str] = set()
    todo: list[object] = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (type, types.ModuleType, *outside)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.add(obj)
        elif isinstance(obj, dict):
            todo += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo += list(obj)
        elif isinstance(obj, types.FunctionType):
            todo += [c.cell_contents for c in obj.__closure__ or ()]
        elif isinstance(obj, types.MethodType):
            todo.append(obj.__self__)
        else:
            todo += list(getattr(obj, "__dict__", {}).values())
            todo += [getattr(obj, n) for n in getattr(type(obj), "__slots__", ()) if hasattr(obj, n)]
    return found


@dataclass
class AdminRotator(FakeRotator):
    """Logs in as the target's admin where a real one would; records *whether* it got the login, never the login."""

    logins: list[tuple[str, bool]] = field(default_factory=list)

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        self.logins.append(("create_pending", ctx.admin is not None))
        return super().create_pending(ctx)

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        self.logins.append(("set_at_target", dict(ctx.admin or {}) == ADMIN))
        super().set_at_target(ctx, pending)

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        self.logins.append(("test", dict(ctx.admin or {}) == ADMIN))
        super().test(ctx, pending)

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        self.logins.append(("revoke_old", dict(ctx.admin or {}) == ADMIN))
        super().revoke_old(ctx, previous)


def test_the_admin_login_is_read_inside_the_steps_that_need_it_and_held_by_nothing_between_steps() -> None:
    w = make_world()
    reads: list[int] = []

    def admin() -> dict[str, str]:
        reads.append(1)
        return dict(ADMIN)

    w.rotator = AdminRotator()
    run, deps = w.start(), w.deps(admin=admin)
    while not (run.finished and run.ledger_seq is not None):
        after = wf.advance(run, deps)
        if after == run:
            w.clock.sleep(3600)
        run = after
        held = strings_reachable(deps, outside=(FakeKV,)) | strings_reachable(run, outside=(FakeKV,))
        assert ADMIN["password"] not in held, f"the admin login outlived the step before {run.stage}"
    assert w.rotator.logins == [("create_pending", False), ("set_at_target", True), ("test", True),
                                ("revoke_old", True)]
    assert len(reads) == 3, "one read per step that logs in as admin"
    assert_one_clean_rotation(w, run)



def test_a_refused_destroy_of_the_staged_copy_never_strands_a_promoted_run() -> None:
    """The staged copy is destroyed once the run is recorded; when the authority refuses (a policy without
    destroy), the rotation still completes (consumers refreshed, workloads restarted) and the ledger says so."""
    from chamberlain.authority.errors import Forbidden

    w = make_world("hold")

    def refuse(mount: str, path: str, versions: Any) -> None:
        raise Forbidden(f"{mount}/{path}: permission denied (403)")

    w.kv.destroy = refuse  # type: ignore[method-assign]
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.succeeded and run.ledger_seq is not None and w.custom().get(wk.HELD) != "true"
    assert w.kube.workload_patches, "consumers' workloads restarted"
    [entry] = [e for e in w.ledger.entries() if e.event == "rotation"]
    assert entry.details["staged"] == "kept (Forbidden)"


def test_the_staged_copy_is_destroyed_once_the_run_is_recorded() -> None:
    w = make_world()
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.succeeded and run.staged_version is not None
    staged = w.kv.read(MOUNT, runs.staging_path(SECRET), run.staged_version)
    assert staged is None or (staged.deleted and not staged.data)
    [entry] = [e for e in w.ledger.entries() if e.event == "rotation"]
    assert entry.details["staged"] == "destroyed"


def test_a_reloader_managed_workload_is_left_to_reloader_and_noted_in_the_run() -> None:
    w = make_world()
    w.kube.workloads[(WORKLOAD.kind, WORKLOAD.namespace, WORKLOAD.name)] = PodTemplateState(
        {}, 1, {wk.RELOADER_AUTO: "true"})
    run = wf.run_to_completion(w.start(), w.deps())
    assert run.stage == "revoked" and w.kube.workload_patches == []  # Reloader rolls it: never twice
    assert run.notes["left-to-reloader"] == f"{WORKLOAD.kind}/{WORKLOAD.namespace}/{WORKLOAD.name}"
    assert "restarted" not in run.notes


# --------------------------------------------------------------------------------------------------- no target


@dataclass
class TargetlessRotator(FakeRotator):
    """Like the generated rotators: nothing outside Vault holds the value (``rotators.base.has_target``)."""

    has_target: bool = False


def test_a_rotator_without_target_is_staged_and_tested_in_one_persisted_step() -> None:
    w = make_world()
    w.rotator = TargetlessRotator()
    run, deps = w.start(), w.deps()
    before = w.kv.read_metadata(MOUNT, runs.run_path(SECRET))
    run = wf.advance(run, deps)
    assert run.stage == "tested" and run.staged_version == 1 and run.pending_marker is not None
    after = w.kv.read_metadata(MOUNT, runs.run_path(SECRET))
    assert before is not None and after is not None and after.current_version == before.current_version + 1
    assert w.rotator.calls == ["create_pending", "test"], "tested from memory, never set anywhere"
    final = wf.run_to_completion(run, deps)
    assert w.rotator.revoked == [] and "revoke_old" not in w.rotator.calls, "nothing to revoke: no value read"
    assert final.stage == "revoked" and final.ledger_seq is not None and w.versions() == 2
    assert w.custom()[wk.VALUE_MARKER] == final.pending_marker
    assert "CANARY" not in everything_recorded(w)


def test_a_run_tested_from_memory_promotes_in_the_same_call_from_the_values_in_hand() -> None:
    w = make_world()
    w.rotator = TargetlessRotator()
    markers, counting = CountedMarkers(), CountingKV(w.kv)
    deps = w.deps(kv=counting, markers=markers)
    kept: list[RotationRun] = []
    run = wf.advance(w.start(), deps, then_promote=kept.append)
    assert [r.stage for r in kept] == ["tested"] and run.stage == "promoted" and run.revision == kept[0].revision + 1
    assert w.versions() == 2 and w.custom()[wk.VALUE_MARKER] == run.pending_marker
    # the real path read once and the staging path's version asked once (stage); promote read neither, nor asked
    # for a marker
    assert counting.counts["read"] == 1 and markers.calls == 1
    final = wf.run_to_completion(run, deps)
    assert final.ledger_seq is not None and [e.result for e in w.rotations()] == ["ok"]
    assert "CANARY" not in everything_recorded(w)


def test_an_outage_after_the_tested_save_resumes_from_it_and_promotes_once() -> None:
    from chamberlain.authority.errors import AuthorityUnavailable

    w = make_world()
    w.rotator = TargetlessRotator()
    kept: list[RotationRun] = []

    def then_down(tested: RotationRun) -> None:
        kept.append(tested)
        w.kv.down = True

    with pytest.raises(AuthorityUnavailable):
        wf.advance(w.start(), w.deps(), then_promote=then_down)
    w.kv.down = False
    assert runs.load(w.kv, SECRET) == kept[0] and w.versions() == 1, "tested saved, nothing promoted"
    final = wf.run_to_completion(kept[0], w.deps())  # from the staging path this time
    assert w.rotator.created == 1 and final.ledger_seq is not None and w.versions() == 2
    assert len(w.rotations()) == 1


# the combined step saves nothing before the test passed; promote follows in the same call once "tested" is saved
@pytest.mark.parametrize(("point", "recorded"), [("rotation.stage", "pending"), ("rotation.test", "pending"),
                                                 ("rotation.before-promote", "tested"),
                                                 ("rotation.promote.write", "tested"), ("rotation.promote", "tested")])
def test_a_crash_in_the_combined_step_resumes_to_one_rotation_with_the_staged_values(
        point: str, recorded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world()
    w.rotator = TargetlessRotator()
    arm(monkeypatch, point)
    run = w.start()
    with pytest.raises(Crash):
        wf.run_to_completion(run, w.deps())
    resumed = runs.load(w.kv, SECRET)
    assert resumed is not None and resumed.stage == recorded
    final = wf.run_to_completion(resumed, w.deps())
    assert w.rotator.created == 1, "the staged values are adopted, never drawn twice"
    assert final.ledger_seq is not None and w.versions() == 2 and len(w.rotations()) == 1


def test_a_failed_test_in_the_combined_step_keeps_the_staging_and_retries_the_usual_steps() -> None:
    from chamberlain.rotation.rotators import CredentialTestFailed

    w = make_world()
    w.rotator = TargetlessRotator(fail={"test": [CredentialTestFailed("pending version lacks a key")]})
    run, deps = w.start(), w.deps()
    run = wf.advance(run, deps)
    assert run.stage == "staged" and run.attempts == 1 and run.next_retry_at is not None, "the staging is kept"
    final = wf.run_to_completion(run, deps)
    assert w.rotator.created == 1 and final.ledger_seq is not None and w.versions() == 2
    assert w.rotator.calls.count("test") == 2


# --------------------------------------------------------------------------------------------------- in memory


@dataclass
class LocalDrawRotator(TargetlessRotator):
    """Like the generated rotators: a draw has no effect outside the process (``rotators.base.draws_locally``).
    Keeps what it drew, as an executor's memory would, so a test can play an executor that lost the run."""

    draws_locally: bool = True
    drawn: list[dict[str, str]] = field(default_factory=list)

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        pending = super().create_pending(ctx)
        self.drawn.append(dict(pending.data))
        return pending


class StagingRefused:
    """The KV, failing any call that names the staging path: a run in memory never touches it."""

    def __init__(self, inner: FakeKV) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            named = [a for a in (*args, *kw.values()) if isinstance(a, str) and a.startswith("_chamberlain/pending")]
            assert not named, f"{name} on the staging path {named}"
            return attr(*args, **kw)
        return call


def memory_world(**kw: Any) -> World:
    w = make_world(**kw)
    w.rotator = LocalDrawRotator()
    return w


class Stop(BaseException):
    """The executor is gone between two calls (a crash, or a leader that lost its lease)."""


def gone(tested: RotationRun) -> None:
    raise Stop(tested.stage)


def assert_promoted_once(w: World, final: RotationRun, draw: dict[str, str]) -> None:
    """One new version, holding ``draw``, its marker recorded everywhere; one ledger entry; nothing staged."""
    assert final.succeeded and final.ledger_seq is not None
    latest = w.kv.read(MOUNT, SECRET.path)
    assert latest is not None and latest.version == 2 and dict(latest.data) == draw
    marker = version_marker(SECRET.full, draw)
    assert final.pending_marker == marker == w.custom()[wk.VALUE_MARKER]
    assert w.kube.secrets[(ESO_NS, ESO_NAME)].annotations[wk.ANNOTATION_VERSION_MARKER] == marker
    entries = w.rotations()
    assert [(e.run, e.result, e.details["marker"]) for e in entries] == [(final.run_id, "ok", marker)]
    assert "staged" not in entries[0].details and w.ledger.verify().ok
    assert w.kv.read_metadata(MOUNT, runs.staging_path(SECRET)) is None, "nothing was ever staged"
    assert "CANARY" not in everything_recorded(w)


def test_only_a_draw_that_stays_in_the_process_keeps_its_pending_values_in_memory() -> None:
    from chamberlain.rotation.rotators.generated import KeypairRotator, RandomRotator
    from chamberlain.rotation.rotators.x509 import X509SelfSignedRotator

    @dataclass
    class Claims(FakeRotator):  # says it draws locally, but sets its values at a target: staged all the same
        draws_locally: bool = True

    assert wf.pending_home(RandomRotator(), "time") == wf.pending_home(KeypairRotator(), "webhook") == "memory"
    assert wf.pending_home(LocalDrawRotator(), "manual") == "memory"
    assert wf.pending_home(LocalDrawRotator(), "import") == "staging", "an imported value cannot be drawn again"
    assert wf.pending_home(TargetlessRotator(), "time") == "staging", "a plug-in's draw may issue something"
    assert wf.pending_home(Claims(), "time") == wf.pending_home(FakeRotator(), "time") == "staging"
    assert wf.pending_home(X509SelfSignedRotator(), "time") == "staging"

    class Issuing(RandomRotator):  # a plug-in built on a generated rotator: its draw may issue something
        name = "issuing"

    assert wf.pending_home(Issuing(), "time") == "staging", "declared by the class itself, never inherited"


def test_a_run_in_memory_rotates_once_and_never_touches_the_staging_path() -> None:
    w = memory_world(revoke_old=False)
    kv = StagingRefused(w.kv)
    counting = CountingKV(kv)  # type: ignore[arg-type]
    run = wf.start(counting, SECRET, secret="api-token", run_id="run-1", trigger="manual", reason="test",
                   now=w.clock.now(), pending_in="memory")
    assert run.pending_in == "memory" and run.staging_base == 0
    assert counting.counts == {"read": 1, "read_metadata": 1, "write": 1}, "the staging path's version is not asked"
    final = wf.run_to_completion(run, w.deps(kv=counting))
    assert final.stage == "done" and final.staged_version is None
    assert (final.pending_in, final.drawn_markers) == ("staging", ()), "cleared once promoted: nothing is pending"
    assert w.rotator.created == 1 and w.rotator.calls == ["create_pending", "test"]
    assert_promoted_once(w, final, w.rotator.drawn[0])


def test_a_caller_that_does_not_ask_still_gets_the_draw_promoted_in_the_same_call() -> None:
    w = memory_world()
    run = wf.advance(w.start(pending_in="memory"), w.deps())  # no then_promote: the CLI's drive
    assert run.stage == "promoted" and w.versions() == 2 and w.rotator.created == 1


MEMORY_CHECKPOINTS = [("rotation.test", "pending", 2), ("rotation.before-promote", "tested", 2),
                      ("rotation.promote.write", "tested", 1), ("rotation.promote", "tested", 1),
                      ("rotation.propagate", "tested", 1), ("rotation.restart", "propagated", 1),
                      ("rotation.finalize", "done", 1)]


@pytest.mark.parametrize(("point", "recorded", "draws"), MEMORY_CHECKPOINTS,
                         ids=[p.removeprefix("rotation.") for p, _, _ in MEMORY_CHECKPOINTS])
def test_a_crash_of_a_run_in_memory_resumes_to_exactly_one_rotation(
        point: str, recorded: str, draws: int, monkeypatch: pytest.MonkeyPatch) -> None:
    w = memory_world(revoke_old=False)
    hit = arm(monkeypatch, point)
    with pytest.raises(Crash):
        wf.run_to_completion(w.start(pending_in="memory"), w.deps())
    assert hit == [point]
    resumed = runs.load(w.kv, SECRET)
    assert resumed is not None and resumed.stage == recorded
    final = wf.resume(w.deps(rotator=w.rotator), SECRET)
    assert final is not None
    assert w.rotator.created == draws, "a draw lost before its save is made again; a written one is adopted"
    assert_promoted_once(w, final, w.rotator.drawn[-1])


def test_values_lost_after_the_tested_save_are_drawn_again_and_promoted_once() -> None:
    w = memory_world()
    with pytest.raises(Stop):
        wf.advance(w.start(pending_in="memory"), w.deps(), then_promote=gone)
    saved = runs.load(w.kv, SECRET)
    assert saved is not None and saved.stage == "tested" and w.versions() == 1
    assert saved.drawn_markers == (saved.pending_marker,)
    assert wf.observe(saved, w.kv).pending_in_hand is False
    redrawn: list[RotationRun] = []
    final = wf.run_to_completion(wf.advance(saved, w.deps(), then_promote=redrawn.append), w.deps())
    assert w.rotator.created == 2, "the lost draw is made again"
    assert [r.drawn_markers for r in redrawn] == [(saved.pending_marker, redrawn[0].pending_marker)]
    assert final.pending_marker == redrawn[0].pending_marker != saved.pending_marker
    assert_promoted_once(w, final, w.rotator.drawn[1])


def test_a_late_write_of_an_earlier_draw_by_an_executor_that_lost_the_run_is_the_runs_own() -> None:
    w = memory_world()
    with pytest.raises(Stop):  # executor A saved its draw, then lost the run before writing it
        wf.advance(w.start(pending_in="memory"), w.deps(), then_promote=gone)
    a_draw = w.rotator.drawn[0]
    saved = runs.load(w.kv, SECRET)
    assert saved is not None

    def a_writes_now(tested: RotationRun) -> None:  # B saved its own draw; A's write lands before B's
        assert tested.drawn_markers[0] == saved.pending_marker and len(tested.drawn_markers) == 2
        w.kv.write(MOUNT, SECRET.path, a_draw, cas=1)

    b = wf.advance(saved, w.deps(), then_promote=a_writes_now)
    assert b.stage == "promoted" and b.pending_marker == saved.pending_marker, "A's draw is what was promoted"
    final = wf.run_to_completion(b, w.deps())
    assert_promoted_once(w, final, a_draw)


def test_a_foreign_write_while_the_values_were_lost_fails_the_run_before_any_new_draw() -> None:
    w = memory_world()
    with pytest.raises(Stop):
        wf.advance(w.start(pending_in="memory"), w.deps(), then_promote=gone)
    w.kv.write(MOUNT, SECRET.path, {"token": "CANARY-someone-else-0123456789", "user": "svc"}, cas=1)
    saved = runs.load(w.kv, SECRET)
    assert saved is not None and wf.next_step(saved, wf.observe(saved, w.kv), w.clock.now()) is wf.Step.CONFLICT
    final = wf.run_to_completion(saved, w.deps())
    assert final.stage == "failed" and "changed outside run" in (final.last_error or "")
    assert w.rotator.created == 1 and w.versions() == 2, "nothing drawn again, the foreign version kept"
    latest = w.kv.read(MOUNT, SECRET.path)
    assert latest is not None and latest.data["token"] == "CANARY-someone-else-0123456789"
    assert [e.result for e in w.rotations()] == ["failed"] and "CANARY" not in everything_recorded(w)


def test_a_run_in_memory_whose_rotator_now_has_a_target_fails_before_drawing() -> None:
    w = make_world(revoke_old=False)  # FakeRotator sets its values at a target: it must stage
    final = wf.run_to_completion(w.start(pending_in="memory"), w.deps())
    assert final.stage == "failed" and "must stage them" in (final.last_error or "")
    assert w.rotator.created == 0 and w.versions() == 1
    assert w.kv.read_metadata(MOUNT, runs.staging_path(SECRET)) is None


def test_a_failed_test_of_a_draw_in_memory_leaves_the_run_pending_and_draws_again() -> None:
    w = memory_world(revoke_old=False)
    w.rotator.fail = {"test": [CredentialTestFailed("pending version lacks a key")]}
    run, deps = w.start(pending_in="memory"), w.deps()
    run = wf.advance(run, deps)
    assert run.stage == "pending" and run.attempts == 1 and run.drawn_markers == () and w.versions() == 1
    final = wf.run_to_completion(run, deps)
    assert w.rotator.created == 2
    assert_promoted_once(w, final, w.rotator.drawn[1])


def test_only_a_run_with_values_in_memory_in_flight_has_a_record_the_release_before_cannot_read() -> None:
    before = set(RotationRun.model_fields) - {"pending_in", "drawn_markers"}  # that release's fields, extra=forbid

    def stored() -> dict[str, Any]:
        got = w.kv.read(MOUNT, runs.run_path(SECRET))
        assert got is not None
        body: dict[str, Any] = json.loads(got.data["run"])
        return body

    w = memory_world()
    staged = w.start("run-s")
    assert staged.pending_in == "staging" and set(stored()) <= before
    wf.run_to_completion(staged, w.deps())
    assert set(stored()) <= before
    with pytest.raises(Stop):
        wf.advance(w.start("run-m", pending_in="memory"), w.deps(), then_promote=gone)
    tested = runs.load(w.kv, SECRET)
    assert tested is not None and tested.stage == "tested"
    assert stored()["pending_in"] == "memory" and stored()["drawn_markers"] == [tested.pending_marker]
    promoted = wf.advance(tested, w.deps())
    assert promoted.stage == "promoted" and promoted.drawn_markers == () and promoted.pending_in == "staging"
    assert stored()["pending_in"] == "memory", "promote is saved with the next step"
    finished = wf.run_to_completion(promoted, w.deps())
    assert finished.ledger_seq is not None and set(stored()) <= before, "nothing pending is left: readable again"


def test_the_promote_of_a_value_kept_in_memory_is_saved_with_propagates_result() -> None:
    w = memory_world(revoke_old=False)
    run = wf.advance(w.start(pending_in="memory"), w.deps())  # drawn, tested (saved), promoted (kept)
    stored = runs.load(w.kv, SECRET)
    assert run.stage == "promoted" and w.versions() == 2
    assert stored is not None and stored.stage == "tested" and run.revision == stored.revision
    run = wf.advance(run, w.deps())
    assert run.stage == "propagated" and runs.load(w.kv, SECRET) == run, "propagate is the fence: saved alone"
    assert_promoted_once(w, wf.run_to_completion(run, w.deps()), w.rotator.drawn[-1])


def test_a_run_in_memory_lost_after_its_promote_resumes_from_tested_to_one_rotation() -> None:
    w = memory_world(revoke_old=False)
    run = wf.advance(w.start(pending_in="memory"), w.deps())
    assert run.stage == "promoted"
    # the executor is gone: a fresh one finds "tested", recognises the write by its marker and records it
    resumed = wf.resume(w.deps(rotator=w.rotator), SECRET)
    assert resumed is not None and w.rotator.created == 1
    assert_promoted_once(w, resumed, w.rotator.drawn[-1])


def test_only_a_first_promote_of_a_value_in_memory_without_an_outage_waits_for_the_next_save() -> None:
    w = memory_world()
    tested = w.start(pending_in="memory").model_copy(update={"stage": "tested"})
    promoted = tested.model_copy(update={"stage": "promoted"})
    assert wf.saved_with_the_next_step(wf.Step.PROMOTE, tested, promoted, None)
    # an outage may have lost the answer to a write: the executor recognises its own record only at a save
    assert not wf.saved_with_the_next_step(wf.Step.PROMOTE, tested, promoted, "connection reset")
    # a first success after failed attempts: the retry count is reset on the record at once
    retried = tested.model_copy(update={"attempts": 2})
    assert not wf.saved_with_the_next_step(wf.Step.PROMOTE, retried, promoted, None)
    # a failed attempt, with its retry time
    failed = tested.model_copy(update={"attempts": 1, "next_retry_at": w.clock.now()})
    assert not wf.saved_with_the_next_step(wf.Step.PROMOTE, tested, failed, None)
    # a staged run's promote, and every other step (propagate is the fence before any restart)
    staged = tested.model_copy(update={"pending_in": "staging"})
    assert not wf.saved_with_the_next_step(wf.Step.PROMOTE, staged, promoted, None)
    assert not wf.saved_with_the_next_step(wf.Step.PROPAGATE, promoted, promoted.model_copy(
        update={"stage": "propagated"}), None)


def test_a_promote_that_keeps_failing_backs_off_and_ends_the_run_instead_of_redrawing_forever() -> None:
    from chamberlain.authority.errors import AuthorityUnavailable

    w = memory_world(revoke_old=False)

    class RealPathDown(FakeKV):
        def write(self, mount: str, path: str, data: Mapping[str, str], cas: int | None = None) -> int:
            if path == SECRET.path:
                raise AuthorityUnavailable("503 from the real path's write")
            return super().write(mount, path, data, cas)

    kv = RealPathDown()
    kv.__dict__.update(w.kv.__dict__)  # the same store, writes to the secret refused
    deps = w.deps(kv=kv, backoff=wf.Backoff(max_attempts=5))
    final = wf.run_to_completion(w.start(pending_in="memory"), deps)
    assert final.stage == "failed" and final.attempts == 5 and w.versions() == 1
    assert w.rotator.created == 5, "one draw per attempt, each attempt counted"
    delays = w.clock.sleeps
    assert len(delays) == 4 and delays == sorted(delays), "the backoff grows"
    assert (final.pending_in, final.drawn_markers) == ("staging", ())


def test_a_run_remembers_a_bounded_number_of_draws() -> None:
    w = memory_world(revoke_old=False)
    run = w.start(pending_in="memory")
    for _ in range(wf.MAX_DRAWN + 3):
        with pytest.raises(Stop):
            wf.advance(run, w.deps(), then_promote=gone)
        loaded = runs.load(w.kv, SECRET)
        assert loaded is not None
        run = loaded
    assert len(run.drawn_markers) == wf.MAX_DRAWN and run.drawn_markers[-1] == run.pending_marker


def test_an_earlier_draw_written_late_is_recognised_by_the_next_look_and_recorded() -> None:
    w = memory_world(revoke_old=False)
    with pytest.raises(Stop):  # A saved draw 1 and stalls before writing it
        wf.advance(w.start(pending_in="memory"), w.deps(), then_promote=gone)
    first = runs.load(w.kv, SECRET)
    assert first is not None
    with pytest.raises(Stop):  # B draws again (2), saved, and is gone too
        wf.advance(first, w.deps(), then_promote=gone)
    second = runs.load(w.kv, SECRET)
    assert second is not None and second.drawn_markers == (first.pending_marker, second.pending_marker)
    w.kv.write(MOUNT, SECRET.path, w.rotator.drawn[0], cas=1)  # A's write lands now
    seen = wf.observe(second, w.kv)
    assert wf.next_step(second, seen, w.clock.now()) is wf.Step.RECORD_PROMOTED
    final = wf.run_to_completion(second, w.deps())
    assert w.rotator.created == 2
    assert_promoted_once(w, final, w.rotator.drawn[0])
