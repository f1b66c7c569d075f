"""SecretIntent status, Events on the SecretIntent, bounded RotationRun history and the failure back-off — with
fakes (FakeKV as Vault, FakeKube as the API server, ESO simulated on force-sync) and a fake clock. The real
API server reads the same status back in tests/lab/test_controller.py (``test_status_events_columns_history``)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import rfc3339
from chamberlain.controller.config import ControllerConfig
from chamberlain.controller.history import RunHistory, prunable
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.status import (
    INTENT_OBJECTS,
    Consumers,
    IntentFacts,
    IntentStatus,
    StatusWriter,
    compute_status,
    condition,
    transitions,
)
from chamberlain.intent.model import RotationPolicySpec
from chamberlain.kube.fake import FakeKube
from chamberlain.render.crds import crd
from chamberlain.rotation.policy import FailureBackoff, failure_backoff, failure_retry_at, jitter_of, overdue
from chamberlain.rotation.run import RotationRun
from chamberlain.triggers import MemoryQueue, manual
from chamberlain.triggers.timer import SecretSchedule, evaluate
from tests.unit.test_controller import CANARY, MOUNT, NS, T0, ListLog, World

TIMED = RotationPolicySpec.model_validate({"type": "time-based", "ttl": "10m", "rotateBefore": "2m"})
BACKOFF = FailureBackoff(base=timedelta(minutes=1), cap=timedelta(minutes=8))


def _run(stage: str = "staged", **kw: Any) -> RotationRun:
    return RotationRun(run_id="run-1", secret="api-token", path="dev/shop/api-token", mount=MOUNT, trigger="time",
                       reason="ttl-window", stage=stage, started_at=T0, updated_at=T0, previous_version=3,
                       staging_base=0, **kw)  # type: ignore[arg-type]


def _facts(**kw: Any) -> IntentFacts:
    base: dict[str, Any] = {"name": "api-token", "generation": 2, "exists": True, "current_version": 3,
                            "last_rotated": T0, "policy": TIMED, "consumers": Consumers(2, 2), "last_run": "run-0"}
    return IntentFacts(**{**base, **kw})


def _conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


# --------------------------------------------------------------------------------------------------- pure status

CASES = {
    "ready": (_facts(), 60, "Ready", {"Ready": ("True", "Current"), "Rotating": ("False", "Idle"),
                                      "Held": ("False", "NotHeld"), "Degraded": ("False", "AsExpected")}),
    "not-provisioned": (_facts(exists=False, current_version=None, consumers=None), 60, "Pending",
                        {"Ready": ("False", "NotProvisioned"), "Degraded": ("False", "AsExpected")}),
    "rotating-keeps-ready": (_facts(active=_run()), 60, "Rotating",
                             {"Ready": ("True", "Current"), "Rotating": ("True", "InProgress")}),
    "retrying": (_facts(active=_run(next_retry_at=T0 + timedelta(minutes=2), last_error="E: x")), 60, "Rotating",
                 {"Rotating": ("True", "Retrying")}),
    "held": (_facts(held=True, held_run="run-7"), 60, "Held",
             {"Ready": ("False", "Held"), "Held": ("True", "Held"), "Degraded": ("True", "Held"),
              "Rotating": ("False", "Held")}),
    "overdue": (_facts(held=True), 11 * 60, "Held", {"Ready": ("False", "Held"), "Degraded": ("True", "Held")}),
    "overdue-failing": (_facts(failures=2, last_failure=T0 + timedelta(minutes=9)), 11 * 60, "Overdue",
                        {"Ready": ("False", "Overdue"), "Degraded": ("True", "Overdue"),
                         "Rotating": ("False", "BackingOff")}),
    "overdue-but-rotating": (_facts(active=_run()), 11 * 60, "Rotating",
                             {"Ready": ("True", "Current"), "Degraded": ("False", "AsExpected")}),
    "failing": (_facts(failures=1, last_failure=T0 + timedelta(minutes=8)), 9 * 60, "Failing",
                {"Ready": ("False", "RotationFailed"), "Degraded": ("True", "RotationFailed"),
                 "Rotating": ("False", "BackingOff")}),
    "out-of-sync": (_facts(consumers=Consumers(1, 2)), 60, "OutOfSync",
                    {"Ready": ("False", "ConsumersOutOfSync"), "Degraded": ("False", "AsExpected")}),
    "invalid": (_facts(invalid=(("CH077", "ttl below the platform floor"),)), 60, "Invalid",
                {"Ready": ("False", "Invalid"), "Degraded": ("True", "Invalid")}),
}


@pytest.mark.parametrize(("facts", "seconds", "phase", "conditions"), CASES.values(), ids=CASES.keys())
def test_status_table(facts: IntentFacts, seconds: int, phase: str, conditions: dict[str, tuple[str, str]]) -> None:
    status = compute_status(facts, T0 + timedelta(seconds=seconds), BACKOFF)
    assert status["phase"] == phase
    got = _conds(status)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Rotating", "Held", "Degraded"]
    for kind, want in conditions.items():
        assert got[kind] == want, (kind, status["conditions"])
    # kstatus shape: every condition has the five fields and the generation it describes
    for c in status["conditions"]:
        assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
        assert c["observedGeneration"] == 2 and status["observedGeneration"] == 2


def test_status_fields_versions_times_and_consumers() -> None:
    status = compute_status(_facts(), T0 + timedelta(minutes=1), BACKOFF)
    assert status["currentVersion"] == 3 and status["lastRotated"] == rfc3339(T0)
    assert status["nextRotation"] == rfc3339(T0 + timedelta(minutes=8))  # ttl 10m - rotateBefore 2m
    assert status["expiresAt"] == rfc3339(T0 + timedelta(minutes=10))
    assert status["consumers"] == {"synced": 2, "total": 2} and status["consumersSynced"] == "2/2"
    assert status["overdue"] is False and status["failedRuns"] == 0
    # backing off: the next rotation is the retry time, later than the window
    failing = compute_status(_facts(failures=3, last_failure=T0 + timedelta(minutes=9)),
                             T0 + timedelta(minutes=9, seconds=5), BACKOFF)
    retry = failure_retry_at(3, T0 + timedelta(minutes=9), BACKOFF, jitter_of("api-token", 3))
    assert retry is not None and failing["nextRotation"] == rfc3339(retry)
    assert "3 consecutive failed run(s)" in condition(failing, "Degraded")["message"]
    assert compute_status(_facts(held=True), T0, BACKOFF)["nextRotation"] is None


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = compute_status(_facts(), T0, BACKOFF)
    later = compute_status(_facts(consumers=Consumers(1, 2)), T0 + timedelta(minutes=1), BACKOFF,
                           first["conditions"])
    assert condition(later, "Rotating")["lastTransitionTime"] == rfc3339(T0)  # unchanged status
    assert condition(later, "Ready")["lastTransitionTime"] == rfc3339(T0 + timedelta(minutes=1))  # flipped
    again = compute_status(_facts(consumers=Consumers(1, 2)), T0 + timedelta(minutes=5), BACKOFF,
                           later["conditions"])
    assert again == later  # nothing changed: the same status, so the writer sends nothing


def test_the_status_never_holds_a_value() -> None:
    run = _run(last_error="PermanentError: refused (no value)")
    text = json.dumps([compute_status(_facts(active=run, failures=1, last_failure=T0, last_error=run.last_error),
                                      T0 + timedelta(minutes=20), BACKOFF)])
    assert CANARY not in text


# --------------------------------------------------------------------------------------------------- transitions


def test_transitions_announce_each_change_once() -> None:
    ok = compute_status(_facts(), T0, BACKOFF)
    late = compute_status(_facts(failures=1, last_failure=T0), T0 + timedelta(minutes=11), BACKOFF, ok["conditions"])
    assert [n.reason for n in transitions(ok, late)] == ["TTLOverdue"]
    assert transitions(late, late) == []  # still overdue: no second event
    held = compute_status(_facts(held=True, held_run="run-9"), T0 + timedelta(minutes=12), BACKOFF)
    assert [n.reason for n in transitions(late, held)] == ["RotationHeld"]
    bad = compute_status(_facts(invalid=(("CH012", "unknown policy"),)), T0, BACKOFF)
    [notice] = transitions(ok, bad)
    assert notice.reason == "InvalidIntent" and "CH012" in notice.message and notice.warning
    back = compute_status(_facts(last_rotated=T0 + timedelta(minutes=12)), T0 + timedelta(minutes=13), BACKOFF)
    [recovered] = transitions(late, back)
    assert recovered.reason == "Recovered" and not recovered.warning
    assert [n.reason for n in transitions(None, late)] == ["TTLOverdue"]  # first status ever: announced too


# --------------------------------------------------------------------------------------------------- back-off


@pytest.mark.parametrize(("failures", "after", "jitter", "due"), [
    (0, 0, 0.0, True),  # no streak: nothing to wait for
    (1, 29, 0.0, False), (1, 30, 0.0, True),  # 1 min nominal, jitter 0: half of it
    (1, 59, 0.99, False), (1, 60, 0.999, True),
    (2, 119, 0.999, False), (2, 120, 0.999, True),
    (4, 479, 0.999, False), (9, 479, 0.999, False), (9, 480, 0.999, True),  # capped at 8 min
], ids=lambda v: str(v))
def test_failure_backoff_is_exponential_jittered_and_capped(failures: int, after: int, jitter: float,
                                                            due: bool) -> None:
    d = failure_backoff(failures, T0, T0 + timedelta(seconds=after), BACKOFF, jitter)
    assert d.due is due and d.reason == ("no-failures" if not failures else "backoff-passed" if due
                                         else "backing-off")


def test_failure_retry_times() -> None:
    nominal = [failure_retry_at(n, T0, BACKOFF, 1.0) for n in range(1, 8)]
    assert [(t - T0).total_seconds() if t else None for t in nominal] == [60, 120, 240, 480, 480, 480, 480]
    half = failure_retry_at(3, T0, BACKOFF, 0.0)
    assert half is not None and (half - T0).total_seconds() == 120  # never less than half the nominal delay


def test_jitter_is_stable_per_secret_and_streak_and_differs_between_secrets() -> None:
    assert jitter_of("a", 2) == jitter_of("a", 2)
    assert len({jitter_of(f"s{i}", 1) for i in range(50)}) == 50
    assert all(0.0 <= jitter_of(f"s{i}", 3) < 1.0 for i in range(50))


def test_the_time_trigger_skips_a_secret_while_it_backs_off() -> None:
    s = SecretSchedule("api-token", TIMED, T0, failures=1, last_failure=T0 + timedelta(minutes=8, seconds=1))
    at = T0 + timedelta(minutes=8, seconds=10)
    assert [r.secret for r in evaluate([s], at)] == ["api-token"]  # no back-off configured: the old behaviour
    assert evaluate([s], at, BACKOFF) == []
    retry = failure_retry_at(1, s.last_failure, BACKOFF, jitter_of("api-token", 1))
    assert retry is not None
    [request] = evaluate([s], retry, BACKOFF)
    assert request.request_id == f"time:api-token:{(T0 + timedelta(minutes=8)).isoformat()}"  # the window's id
    assert overdue(TIMED, T0, T0 + timedelta(minutes=10)) and not overdue(TIMED, T0, T0 + timedelta(minutes=9))


# --------------------------------------------------------------------------------------------------- the writer


def _intent_object(kube: FakeKube, name: str = "api-token", generation: int = 1) -> None:
    kube.add_custom_object(INTENT_OBJECTS, {"apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent",
                                            "metadata": {"name": name, "namespace": NS, "generation": generation},
                                            "spec": {}})


def test_the_writer_patches_only_what_changed() -> None:
    kube = FakeKube()
    _intent_object(kube)
    w = StatusWriter(kube, NS)
    status = compute_status(_facts(), T0, BACKOFF)
    assert w.write("api-token", status) is True
    assert w.write("api-token", status) is False
    assert w.write("api-token", compute_status(_facts(), T0 + timedelta(minutes=1), BACKOFF,
                                               status["conditions"])) is False  # same facts, later tick
    assert w.write("api-token", compute_status(_facts(current_version=4), T0, BACKOFF, status["conditions"]))
    assert len(kube.status_patches) == 2 and w.patches == 2
    kube.down = True
    assert w.write("api-token", compute_status(_facts(current_version=5), T0, BACKOFF)) is False
    assert w.failures == 1  # best effort: counted, never raised


# --------------------------------------------------------------------------------------------------- the loop


def _status_world(**policy: Any) -> tuple[World, IntentStatus, ControllerMetrics]:
    w = World(policy=policy or None)
    _intent_object(w.kube)
    metrics = ControllerMetrics()
    status = IntentStatus(w.kube, w.kv, NS, w.clock, metrics, ListLog(), backoff=BACKOFF, list_every=0.0)
    return w, status, metrics


def _intent_status(w: World) -> dict[str, Any]:
    obj = w.kube.get_custom_object(INTENT_OBJECTS, NS, "api-token")
    assert obj is not None
    return dict(obj.get("status") or {})


def _intent_events(w: World) -> list[str]:
    return [e.reason for e in w.kube.events if e.involved.get("kind") == "SecretIntent"]


def _jsonpath(obj: dict[str, Any], path: str) -> Any:
    """The subset of kubectl's JSONPath printer columns use: ``.a.b`` and ``.a[?(@.k=="v")].f``."""
    node: Any = obj
    for part in re.findall(r'\.([A-Za-z]+)(?:\[\?\(@\.(\w+)=="(\w+)"\)\])?', path):
        key, fkey, fval = part
        node = node.get(key) if isinstance(node, dict) else None
        if fkey:
            node = next((i for i in node or [] if i.get(fkey) == fval), None)
    return node


def test_a_rotation_fills_status_columns_and_events_and_a_steady_state_sends_no_patch() -> None:
    w, status, _ = _status_world()
    c = w.controller(status=status)
    c.tick()
    first = _intent_status(w)
    # the consumer Secret does not exist yet (ESO has not synced it): out of sync
    assert first["phase"] == "OutOfSync" and first["currentVersion"] == 1 and first["consumersSynced"] == "0/1"
    patches = len(w.kube.status_patches)
    for _ in range(5):  # nothing changes: no PATCH per tick
        w.clock.advance(30)
        c.tick()
    assert len(w.kube.status_patches) == patches
    w.clock.advance(9 * 60)  # into the window: one time-triggered rotation
    c.tick()
    c.tick()
    s = _intent_status(w)
    assert s["phase"] == "Ready" and s["currentVersion"] == 2 and s["consumersSynced"] == "1/1"
    assert _conds(s)["Ready"] == ("True", "Current") and s["lastRun"] == "run-0000"
    assert s["observedGeneration"] == 1 and s["failedRuns"] == 0
    assert _intent_events(w)[-2:] == ["RotationStarted", "RotationSucceeded"]
    assert all(e.involved["namespace"] == NS and e.involved["name"] == "api-token" for e in w.kube.events
               if e.involved.get("kind") == "SecretIntent")
    # every printer column of the CRD resolves against the written object
    obj = w.kube.get_custom_object(INTENT_OBJECTS, NS, "api-token")
    assert obj is not None
    for col in crd("SecretIntent")["spec"]["versions"][0]["additionalPrinterColumns"]:
        if col["jsonPath"].startswith(".status"):
            assert _jsonpath(obj, col["jsonPath"]) not in (None, ""), col
    assert CANARY not in json.dumps(obj) + json.dumps([e.message for e in w.kube.events])


def test_a_secret_past_its_ttl_is_flagged_once_condition_event_metric() -> None:
    w, status, metrics = _status_world(type="time-based", ttl="10m", rotateBefore="2m", failureStrategy="hold")
    w.kv.update_custom_metadata(MOUNT, w.scope.placed["api-token"].vault.path, {wk.HELD: "true",
                                                                               wk.HELD_RUN: "run-x"})
    c = w.controller(status=status)
    c.tick()
    assert _intent_status(w)["phase"] == "Held" and _intent_events(w) == ["RotationHeld"]
    for _ in range(30):  # 15 minutes of ticks: past the ttl at 10 minutes
        w.clock.advance(30)
        c.tick()
    s = _intent_status(w)
    assert s["overdue"] is True and _conds(s)["Ready"] == ("False", "Held") and _conds(s)["Degraded"][0] == "True"
    assert _intent_events(w) == ["RotationHeld", "TTLOverdue"]  # once per transition, not per tick
    assert metrics.overdue.labels("api-token", w.scope.placed["api-token"].vault.full)._value.get() == 1
    assert w.version() == 1  # held: nothing rotated


def test_a_permanently_failing_rotation_backs_off_and_alerts_once() -> None:
    from chamberlain.rotation.rotators import Registry

    class Refused:
        name = "random"

        def create_pending(self, ctx: Any) -> Any:
            from chamberlain.rotation.rotators.base import RotatorError

            raise RotatorError("the target refused the new credential")

        def set_at_target(self, ctx: Any, pending: Any) -> None: ...

        def test(self, ctx: Any, pending: Any) -> None: ...

        def revoke_old(self, ctx: Any, previous: Any) -> None: ...

    w, status, metrics = _status_world(type="time-based", ttl="10m", rotateBefore="2m", failureStrategy="alert")
    c = w.controller(status=status, registry=Registry({"random": Refused()}), metrics=metrics)  # type: ignore[dict-item]
    c.config = replace(c.config, failure_backoff=BACKOFF)  # cap 8 min
    w.clock.advance(8 * 60)
    starts = []
    for tick in range(2 * 60 * 2):  # two hours of 30 s ticks
        before = len(w.rotations())
        c.tick()
        if len(w.rotations()) != before:
            starts.append(tick * 30)
        w.clock.advance(30)
    assert all(e.result == "failed" for e in w.rotations())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    print(f"\n[backoff] failed runs at {starts} s (gaps {gaps})")
    # a run per back-off step (60, 120, 240, 480 s nominal, jittered in its upper half, capped at 8 min), not one
    # per 30 s tick (240 runs in two hours)
    assert len(starts) <= 2 * 3600 // 240 + 4 and max(gaps) <= 8 * 60 + 30
    assert gaps[:3] == [60, 120, 180] and min(gaps[4:]) >= 240
    assert metrics.alerts.labels("api-token")._value.get() == 1  # alerted once
    assert _intent_events(w).count("RotationFailed") == 1
    assert _intent_events(w).count("TTLOverdue") == 1  # past the ttl at 10 minutes, once
    s = _intent_status(w)
    assert s["phase"] == "Overdue" and s["failedRuns"] == len(starts) and s["nextRotation"] is not None
    assert _conds(s)["Rotating"] == ("False", "BackingOff")
    # a person's trigger is not backed off
    q: MemoryQueue = c.parts.queue  # type: ignore[assignment]
    q.put(manual("api-token", "retry now", w.clock.now()))
    before = len(w.rotations())
    c.tick()
    assert len(w.rotations()) == before + 1


def test_an_invalid_intent_is_degraded_with_its_rule_id_and_others_are_served() -> None:
    w, status, _ = _status_world()
    _intent_object(w.kube, "not-in-scope")
    status.set_rejected({"not-in-scope": [("CH031", "consumer namespace not allowed")]})
    c = w.controller(status=status)
    c.tick()
    obj = w.kube.get_custom_object(INTENT_OBJECTS, NS, "not-in-scope")
    assert obj is not None and obj["status"]["phase"] == "Invalid"
    assert condition(obj["status"], "Degraded")["message"].startswith("CH031")
    assert [e.reason for e in w.kube.events if e.involved.get("name") == "not-in-scope"] == ["InvalidIntent"]
    assert _conds(_intent_status(w))["Degraded"] == ("False", "AsExpected")  # the other intent is unaffected
    status.set_rejected({})
    c.tick()  # no longer rejected and not placed here: left as is (the integrator's source decides)


# --------------------------------------------------------------------------------------------------- history


def _rr(name: str, secret: str, phase: str | None, finished_minute: int | None = None,
        request: dict[str, Any] | None = None, requested_minute: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if finished_minute is not None:
        status["finishedAt"] = rfc3339(T0 + timedelta(minutes=finished_minute))
    if request:
        status["request"] = request
    meta: dict[str, Any] = {"name": name, "namespace": NS, "resourceVersion": "1", "labels": {wk.LABEL_SECRET: secret}}
    if requested_minute is not None:
        meta["annotations"] = {"chamberlain.dev/requested-at": rfc3339(T0 + timedelta(minutes=requested_minute))}
    return {"metadata": meta, "spec": {"secret": secret}, "status": status}


RQ = "rq-" + "a" * 40


def test_pruning_keeps_n_finished_per_secret_and_never_an_unfinished_one() -> None:
    objs = [_rr(f"run-a{i}", "a", "revoked", i) for i in range(8)]
    objs += [_rr("run-a-live", "a", "promoted"), _rr("run-a-unpublished", "a", None)]
    objs += [_rr(f"run-b{i}", "b", "failed", i) for i in range(2)]
    objs += [_rr(RQ, "a", None, requested_minute=0)]  # a pending webhook request
    objs += [_rr("rq-" + "b" * 40, "a", None, request={"state": "merged"}, requested_minute=0)]  # settled, old
    objs += [_rr("rq-" + "c" * 40, "a", None, request={"state": "refused"}, requested_minute=59)]  # settled, young
    objs += [_rr("rq-" + "d" * 40, "a", "done", 9, requested_minute=58)]  # a run, newest, of a young request
    now = T0 + timedelta(hours=1)
    doomed = {o.name for o in prunable(objs, 3, now, timedelta(minutes=30))}
    # kept for a: the request's run, run-a7, run-a6 (newest finished first)
    assert doomed == {f"run-a{i}" for i in range(0, 6)} | {"rq-" + "b" * 40}
    assert {o.name for o in prunable(objs, 0, now, timedelta(minutes=30))} >= {"run-b0", "run-b1"}
    assert not {"run-a-live", "run-a-unpublished", RQ} & {
        o.name for o in prunable(objs, 0, now, timedelta(0))}


def test_the_controller_prunes_rotationrun_objects_to_keep_runs() -> None:
    w, status, metrics = _status_world(type="time-based", ttl="2m", rotateBefore="1m", failureStrategy="retry")
    history = RunHistory(w.kube, NS, w.clock, 2, timedelta(days=1), metrics, ListLog(), every=0.0)
    c = w.controller(status=status, history=history)
    for _ in range(40):  # 20 minutes: a rotation every minute
        c.tick()
        w.clock.advance(30)
    left = [o for o in w.kube.list_custom_objects(INTENT_OBJECTS.__class__("chamberlain.dev", "v1alpha1",
                                                                           "rotationruns"), NS)]
    assert len(w.rotations()) >= 10
    assert len(left) == 2 and history.deleted == len(w.rotations()) - 2
    assert all(o["status"]["phase"] in ("revoked", "done") for o in left)


def test_config_validates_history_and_retention() -> None:
    with pytest.raises(ValueError, match="keep_runs"):
        ControllerConfig(keep_runs=-1)
    with pytest.raises(ValueError, match="request_retention"):
        ControllerConfig(request_retention=10)
    assert ControllerConfig().keep_runs == 5


def test_events_of_the_first_tick_carry_the_secretintents_uid_and_none_without_an_object() -> None:
    w, status, _ = _status_world()
    q = MemoryQueue()
    c = w.controller(status=status, queue=q)
    q.put(manual("api-token", "first tick", w.clock.now()))  # a run starts before the tick's report lists
    c.tick()
    mine = [e for e in w.kube.events if e.involved.get("kind") == "SecretIntent"]
    assert [e.reason for e in mine][:1] == ["RotationStarted"]
    assert all(e.involved.get("uid") == "uid-api-token" for e in mine)
    # a controller run from a checkout whose intents were never applied: no status, no Event on a missing object
    bare = World()
    plain = IntentStatus(bare.kube, bare.kv, NS, bare.clock, ControllerMetrics(), ListLog(), list_every=0.0)
    q2 = MemoryQueue()
    c2 = bare.controller(status=plain, queue=q2)
    q2.put(manual("api-token", "no object", bare.clock.now()))
    c2.tick()
    assert bare.version() == 2 and not [e for e in bare.kube.events if e.involved.get("kind") == "SecretIntent"]
    assert not [p for p in bare.kube.status_patches if p[0] == "secretintents"]


def test_a_restarted_controller_reads_the_status_back_no_patch_no_repeated_event() -> None:
    w, status, _ = _status_world(type="time-based", ttl="10m", rotateBefore="2m", failureStrategy="hold")
    w.kv.update_custom_metadata(MOUNT, w.scope.placed["api-token"].vault.path, {wk.HELD: "true",
                                                                               wk.HELD_RUN: "run-x"})
    c = w.controller(status=status)
    w.clock.advance(11 * 60)  # held and past the ttl
    c.tick()
    before = _intent_status(w)
    events, patches = len(w.kube.events), len(w.kube.status_patches)
    assert before["overdue"] and sorted(_intent_events(w)) == ["RotationHeld", "TTLOverdue"]
    # a new process (or a new leader): it knows nothing but what the object says
    fresh = IntentStatus(w.kube, w.kv, NS, w.clock, ControllerMetrics(), ListLog(), backoff=BACKOFF, list_every=0.0)
    c2 = w.controller(status=fresh)
    w.clock.advance(60)
    c2.tick()
    assert len(w.kube.status_patches) == patches and len(w.kube.events) == events
    assert _intent_status(w) == before  # transition times kept


def test_a_restarted_controller_takes_the_reported_consumers_as_its_last_look() -> None:
    w, status, _ = _status_world()
    c = w.controller(status=status)
    c.tick()
    before = _intent_status(w)
    assert before["consumersSynced"] == "0/1"
    looks: list[str] = []
    read = w.kube.get_secret_annotations

    def counted(namespace: str, name: str) -> Any:
        looks.append(name)
        return read(namespace, name)

    w.kube.get_secret_annotations = counted  # type: ignore[method-assign]
    patches = len(w.kube.status_patches)
    # a new process: the status on the object says 0/1 for version 1 at generation 1; no Secret is read at once
    fresh = IntentStatus(w.kube, w.kv, NS, w.clock, ControllerMetrics(), ListLog(), backoff=BACKOFF,
                         list_every=0.0, consumer_check_every=300.0)
    c2 = w.controller(status=fresh)
    w.clock.advance(1)
    c2.tick()
    assert looks == [] and len(w.kube.status_patches) == patches and _intent_status(w) == before
    w.clock.advance(300)  # due within consumer_check_every (spread by name): looked at again
    c2.tick()
    assert looks == ["api-token"]


def test_the_reported_consumers_stand_only_for_the_same_version_and_generation() -> None:
    w = StatusWriter(FakeKube(), NS)
    w.seen("a", compute_status(_facts(consumers=Consumers(1, 2), generation=3), T0, BACKOFF))
    assert w.reported("a", _facts().current_version, 3) == Consumers(1, 2)
    assert w.reported("a", (_facts().current_version or 0) + 1, 3) is None  # a newer value: look again
    assert w.reported("a", _facts().current_version, 4) is None  # the spec changed: its consumers may have
    assert w.reported("b", _facts().current_version, 3) is None
    w.seen("c", compute_status(_facts(generation=3, consumers=None), T0, BACKOFF))  # no look reported
    assert w.reported("c", _facts().current_version, 3) is None


def _many_world(parallel: int, names: tuple[str, ...]) -> tuple[World, IntentStatus]:
    w = World(names=names)
    for n in names:
        _intent_object(w.kube, n)
    status = IntentStatus(w.kube, w.kv, NS, w.clock, ControllerMetrics(), ListLog(), backoff=BACKOFF,
                          list_every=0.0, parallel=parallel)
    return w, status


def test_a_parallel_report_writes_what_a_serial_one_writes_and_its_workers_stop() -> None:
    names = tuple(f"s-{i}" for i in range(12))
    got = []
    for parallel in (1, 4):
        w, status = _many_world(parallel, names)
        w.controller(status=status).tick()
        objects = {n: w.kube.get_custom_object(INTENT_OBJECTS, NS, n) for n in names}
        got.append({n: (o or {}).get("status") for n, o in objects.items()})
        assert status.writer.patches == len(names) and status.writer.failures == 0
        assert (status._pool is not None) == (parallel > 1)
        status.close()
        assert status._pool is None
    assert got[0] == got[1] and all(s and s["phase"] == "OutOfSync" for s in got[1].values())


def test_a_parallel_report_requeues_every_secret_when_the_authority_is_down() -> None:
    from chamberlain.authority.errors import AuthorityUnavailable

    names = tuple(f"s-{i}" for i in range(6))
    w, status = _many_world(3, names)
    c = w.controller(status=status)
    status._list()
    w.kv.down = True
    with pytest.raises(AuthorityUnavailable):
        status.report(c.scope.placed, {}, w.clock.now())
    assert status.backlog and status.writer.patches == 0
    w.kv.down = False
    assert status.report(c.scope.placed, {}, w.clock.now()) == len(names)
    status.close()


def test_controller_run_options_reach_the_configuration() -> None:
    from chamberlain.service.controller import ControllerOptions, config_options
    from tests.conftest import run_cli

    tuned = ControllerConfig(**config_options(ControllerOptions(keep_runs=3, failure_backoff_cap=600.0,
                                                                request_retention=900.0)))
    assert tuned.keep_runs == 3 and tuned.request_retention == 900.0
    assert tuned.failure_backoff.cap == timedelta(minutes=10) and tuned.failure_backoff.base == timedelta(minutes=1)
    assert ControllerConfig(**config_options(ControllerOptions())).keep_runs == 5
    short = ControllerConfig(**config_options(ControllerOptions(failure_backoff_cap=30.0))).failure_backoff
    assert short.base == short.cap == timedelta(seconds=30)
    helped = run_cli("controller", "run", "--help")
    assert all(flag in helped.out for flag in ("--keep-runs", "--failure-backoff-cap", "--request-retention"))
