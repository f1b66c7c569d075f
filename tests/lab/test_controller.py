"""``chamberlain controller run`` against the real lab: Vault 1.21 (raft, TLS), kube-apiserver, etcd, the real ESO.

A fresh lab (ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 1300) runs the demo's phases through handover
on a copy of examples/acme whose secrets under test carry short policies (see ``controller_helpers.TARGETS``); the
consumer namespaces' SecretStores point at the lab's loopback Vault and ESO materializes every consumer Secret. The
controller runs as a real process (``python -m chamberlain.cli.main controller run``), JSON logs in a file, stopped
with SIGTERM or SIGKILL, or killed by ``CHAMBERLAIN_CRASH_AT`` at a step boundary of the rotation workflow.

What is asserted is Vault's state through the orchestrator's own KV (version, ``value-marker``, ``last-*``,
``held``), the ledger (one verified ``rotation`` entry per run), the consumer Secrets' version-marker annotation,
the workloads' restart annotation and generation, the ReplicaSet or ControllerRevision kube-controller-manager
rolled out for each restart (exactly one per batch, carrying the batch's token), RotationRun objects and Events —
and that no value leaks.

Outages are real: the lab Vault is stopped, started and unsealed with ``chamberlain authority unseal`` (the demo's
offline root identity), the kube-apiserver is killed and started (etcd stays up). Where the controller's behaviour
depends on the exact tick Vault comes back on (failureStrategy hold), the controller reaches Vault through a
loopback forwarder the test cuts and heals at a chosen moment (``controller_helpers.Partition``).

The controller leaves derived and config secrets (``platform-data``/``platform-config``) out of its scope by itself
(``test_full_example_scope_acts`` runs it on the unmodified repository). Most tests leave out the one time-based
short-ttl secret, so its timer cannot interfere with their counts or crash points;
``test_time_trigger_rotates_once_per_window`` includes it.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.kube.api import CustomResource
from chamberlain.lab import procs

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.lab import builds  # noqa: E402
from chamberlain.rotation import workflow  # noqa: E402
from chamberlain.triggers.annotation import HANDLED, RESULT  # noqa: E402
from chamberlain.triggers.webhook import (  # noqa: E402
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    StandardSecret,
    WebhookKey,
    sign,
    sign_standard,
)
from tests.conftest import REPO_ROOT, unbuilt  # noqa: E402
from tests.lab import controller_helpers as ch  # noqa: E402
from tests.lab.controller_helpers import (  # noqa: E402
    CONTROLLER_NS,
    GRAFANA,
    HOOK,
    SHIPPER,
    TARGETS,
    TICKING,
    ControllerProc,
    Target,
    World,
    advanced,
    post,
    wait_for,
)

RR_GROUP, RR_VERSION, RR_PLURAL = "chamberlain.dev", "v1alpha1", "rotationruns"

# Every step boundary of the rotation workflow, in step order, read from the source so a new one is covered too;
# each once. GRAFANA's rotator has no target and draws locally: its draw is tested in memory and promoted in the same
# call, so it never stages nor reaches set-at-target.
CHECKPOINTS = [c for c in dict.fromkeys(re.findall(r'checkpoint\("(rotation\.[a-z.-]+)"\)',
                                                   Path(workflow.__file__).read_text()))
               if c not in ("rotation.stage", "rotation.set-at-target")]
PROMOTE_WRITE = "rotation.promote.write"  # from here on the new version is in Vault
CHAIN = list(reversed(CHECKPOINTS))  # see test_crash_at_each_step_boundary_then_restart_converges
# Died before its promote, a run whose values were in memory draws them again when resumed, passing these checkpoints
# once more; died after it, before propagate's save (a promote of values in memory is saved with it), it resumes
# from ``tested`` and completes the promote's metadata again: the controller that resumes it must not be the one
# armed to die at them.
PASSED_AGAIN = {"rotation.before-promote": {"rotation.test"},
                "rotation.propagate": {"rotation.promote"}}
FINALIZE = "rotation.finalize"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    base = tmp_path_factory.mktemp("controller")
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 1300
    pids: dict[str, int] = {}
    w: World | None = None
    started = time.monotonic()
    try:
        w = ch.build_world(base, offset)
        print(f"\n[controller] lab, demo through handover and consumers materialized in "
              f"{time.monotonic() - started:.1f}s")
        yield w
    finally:
        if w is not None:
            w.stop_all()
            w.kube.close()
            w.api.close()
            alive = [c.identity for c in w.controllers if c.alive]
            assert not alive, f"controller processes left behind: {alive}"
        pids = ch.teardown_world(base / "lab")
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


_chain: dict[str, ControllerProc] = {}  # the controller the crash chain hands from one checkpoint to the next


@pytest.fixture(autouse=True)
def _stop_controllers(world: World) -> Iterator[None]:
    """Each test stops what it started; a controller still running afterwards (a failed test) is killed."""
    yield
    keep = set(map(id, _chain.values()))
    for c in world.controllers:
        if c.alive and id(c) not in keep:
            c.kill()


# ------------------------------------------------------------------------------------------------ helpers


def _ts(doc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00"))


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _rotation_runs(w: World) -> dict[str, dict[str, Any]]:
    items = w.custom().list_namespaced_custom_object(RR_GROUP, RR_VERSION, CONTROLLER_NS, RR_PLURAL)["items"]
    return {i["metadata"]["name"]: i for i in items}


def _final_object(w: World, run_id: str, phases: tuple[str, ...]) -> dict[str, Any]:
    """The RotationRun object of a run recorded as finished: published from the controller's background threads,
    so it may show the final phase a moment after the run record does."""

    def final() -> dict[str, Any] | None:
        rr = _rotation_runs(w).get(run_id)
        return rr if rr is not None and (rr.get("status") or {}).get("phase") in phases else None

    got: dict[str, Any] = wait_for(final, 10, f"RotationRun {run_id} in phase {'/'.join(phases)}", every=0.2)
    return got


def _new_entries(w: World, t: Target, known: set[int]) -> list[Any]:
    return [e for e in w.rotations(t) if e.seq not in known]


def _seqs(w: World, t: Target) -> set[int]:
    return {e.seq for e in w.rotations(t)}


def _assert_one_good_run(w: World, t: Target, run_id: str, before: int, gens: dict[Any, tuple[int, int]],
                         known: set[int], *, trigger: str, actor: str | None = None) -> None:
    """Exactly one new version, one ok ledger entry for ``run_id``, marker everywhere, each workload rolled once."""
    w.assert_converged(t, before + 1)
    meta = w.meta(t)
    assert meta.custom["last-run"] == run_id and meta.custom["last-result"] == f"{run_id}:ok"
    assert meta.custom.get("held", "false") != "true"
    [entry] = _new_entries(w, t, known)
    assert entry.run == run_id and entry.result == "ok", entry
    assert entry.details["trigger"] == trigger
    assert entry.details["previous-version"] == str(before) and entry.details["version"] == str(before + 1)
    assert entry.details["marker"] == meta.custom["value-marker"]
    if actor is not None:
        assert entry.actor == actor
    assert advanced(gens, 1) == w.generations(t), "each workload rolled out exactly once"
    assert w.restart_batches(t) == {run_id}
    assert w.ledger().verify().ok
    rr = _final_object(w, run_id, ("revoked", "done"))
    assert rr["status"]["currentVersion"] == before + 1


def _webhook_ok(w: World, c: ControllerProc, t: Target, reason: str) -> None:
    status, answer = w.webhook(c, t.name, reason)
    assert status == 200 and answer["outcome"] == "queued", (status, answer)


# ------------------------------------------------------------------------------------------------ 1. time


def test_time_trigger_rotates_once_per_window(world: World) -> None:
    """ttl 20s, rotateBefore 10s: a window opens 10 s after each rotation; the controller (evaluating every second)
    rotates exactly once in each, and never twice in one."""
    w = world
    period = 10.0  # ttl - rotateBefore
    known, v0 = _seqs(w, TICKING), w.version(TICKING)
    gens = w.generations(TICKING)
    c = w.start_controller("timer", repo=w.timed)
    t0 = time.monotonic()

    def idle_after_enough() -> bool:
        """~35 s in, between two runs: the last one recorded, the next window at least 2 s away."""
        w.remember(TICKING)
        r = w.run_record(TICKING)
        if time.monotonic() - t0 < 33 or r is None or not r.finished or r.ledger_seq is None:
            return False
        opens = _parse(w.meta(TICKING).custom["last-rotated"]) + timedelta(seconds=period)
        return datetime.now(UTC) < opens - timedelta(seconds=2)

    wait_for(idle_after_enough, 60, "35 s of timer rotations, ending between two runs", every=0.2)
    stopped_at = datetime.now(UTC)
    w.stop(c)

    started = [d for d in c.events("run started") if d["secret"] == TICKING.name]
    promoted = {d["run"]: _ts(d) for d in c.events("run step", stage="promoted") if d["secret"] == TICKING.name}
    finished = [d for d in c.events("run finished") if d["secret"] == TICKING.name]
    runs = [d["run"] for d in started]
    n = len(runs)
    print(f"\n[time] {n} rotations of {TICKING.name} in {time.monotonic() - t0:.1f}s: "
          + ", ".join(f"{_ts(d):%H:%M:%S.%f}"[:-3] for d in started))
    assert n >= 3, f"only {n} rotations in ~35 s with a 10 s window"
    assert {d["trigger"] for d in started} == {"time"}
    assert [d["run"] for d in finished] == runs and all(d["ok"] for d in finished)
    assert {d["secret"] for d in c.events("run started")} == {TICKING.name}, "only the due secret rotated"

    # One ledger entry per run, consecutive versions, all by time.
    entries = sorted(_new_entries(w, TICKING, known), key=lambda e: e.seq)
    assert [e.run for e in entries] == runs
    assert all(e.result == "ok" and e.details["trigger"] == "time" and e.actor == "controller:timer"
               for e in entries)
    assert [(int(e.details["previous-version"]), int(e.details["version"])) for e in entries] == \
        [(v0 + i, v0 + i + 1) for i in range(n)]
    assert w.version(TICKING) == v0 + n

    # Exactly once per window: each run starts once the previous promote's window opened (last-rotated is recorded
    # to the second, so up to 1 s early), soon after it (evaluation every 1 s), and no window opened unserved.
    for prev, nxt in itertools.pairwise(runs):
        gap = (_ts(started[runs.index(nxt)]) - promoted[prev]).total_seconds()
        assert period - 1.5 <= gap <= period + 3.5, f"run {nxt} started {gap:.2f}s after {prev} promoted"
    next_due = _parse(w.meta(TICKING).custom["last-rotated"]) + timedelta(seconds=period)
    assert stopped_at < next_due, "a window opened before the stop and was not served"

    w.assert_converged(TICKING, v0 + n)
    assert advanced(gens, n) == w.generations(TICKING), "one rollout per rotation"
    assert w.restart_batches(TICKING) == {runs[-1]}
    objects = _rotation_runs(w)
    assert all(objects[r]["status"]["phase"] == "revoked" and objects[r]["spec"]["trigger"] == "time" for r in runs)
    assert w.ledger().verify().ok


# ------------------------------------------------------------------------------------------------ 2. webhook


def test_webhook_signed_replayed_forged(world: World) -> None:
    w = world
    c = w.start_controller("hook")
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    last = w.run_record(GRAFANA)

    body = json.dumps({"secret": GRAFANA.name, "reason": "webhook drill"}).encode()
    headers = sign(body, WebhookKey(w.key), datetime.now(UTC))
    status, answer = post(c.webhook_url, body, headers)
    assert status == 200 and answer["outcome"] == "queued", answer
    run = w.wait_run_done(GRAFANA, not_run=last.run_id if last else None)
    assert run.trigger == "webhook" and run.reason == "webhook drill"
    _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook", actor="controller:hook")
    print(f"\n[webhook] {GRAFANA.name}: v{before} -> v{before + 1} by {run.run_id}")

    # The same request again (within its window): refused, nothing queued.
    assert post(c.webhook_url, body, headers)[0] == 401
    # Forged: a signature over another body, a flipped digit, no signature, a stale (but correct) one.
    other = json.dumps({"secret": GRAFANA.name, "reason": "forged"}).encode()
    forged = dict(headers)
    digest = forged[SIGNATURE_HEADER]
    forged[SIGNATURE_HEADER] = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    assert post(c.webhook_url, other, headers)[0] == 401
    assert post(c.webhook_url, body, forged)[0] == 401
    assert post(c.webhook_url, other, {TIMESTAMP_HEADER: headers[TIMESTAMP_HEADER]})[0] == 401
    stale = sign(other, WebhookKey(w.key), datetime.now(UTC) - timedelta(hours=1))
    assert post(c.webhook_url, other, stale)[0] == 401
    wrong_key = sign(other, WebhookKey(b"not-the-key-0123456789"), datetime.now(UTC))
    assert post(c.webhook_url, other, wrong_key)[0] == 401
    # Authentic but for secrets outside the controller's scope: 404, nothing queued.
    for name in ("no-such-secret", TICKING.name):
        unknown = json.dumps({"secret": name}).encode()
        assert post(c.webhook_url, unknown, sign(unknown, WebhookKey(w.key), datetime.now(UTC)))[0] == 404
    time.sleep(3)  # several ticks
    assert w.version(GRAFANA) == before + 1 and len(_new_entries(w, GRAFANA, known)) == 1
    rejected = [d for d in c.lines() if "rejected request" in str(d.get("event"))]
    assert len(rejected) >= 6

    # The sender CLI (what a CI job runs): one more rotation.
    sent = w.cli("controller", "webhook", GRAFANA.name, "--url", c.webhook_url, "--webhook-key-file",
                 str(w.key_file), "--reason", "sent by the CLI", "--id", "ci-job-17")
    assert sent.returncode == 0 and sent.stdout.startswith("200"), sent.stdout + sent.stderr
    second = w.wait_run_done(GRAFANA, not_run=run.run_id)
    assert second.reason == "sent by the CLI" and second.current_version == before + 2
    w.assert_converged(GRAFANA, before + 2)
    w.stop(c)


# ------------------------------------------------------------------------------------------------ 3. annotation


def test_annotation_on_the_secretintent(world: World) -> None:
    w = world
    intent = w.custom().get_namespaced_custom_object(RR_GROUP, RR_VERSION, CONTROLLER_NS, "secretintents",
                                                     GRAFANA.name)
    assert wk.ANNOTATION_ROTATE not in (intent["metadata"].get("annotations") or {}), "rendered and applied by the demo"
    c = w.start_controller("annot")
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    last = w.run_record(GRAFANA)
    reason = "suspected leak INC-4711"
    intents = CustomResource(RR_GROUP, RR_VERSION, "secretintents")
    w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name, {wk.ANNOTATION_ROTATE: reason})
    run = w.wait_run_done(GRAFANA, not_run=last.run_id if last else None)
    assert run.trigger == "annotation" and run.reason == reason
    _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="annotation",
                         actor="controller:annot")
    [entry] = _new_entries(w, GRAFANA, known)
    assert entry.reason == reason

    def cleared() -> bool:
        obj = w.kube.get_custom_object(intents, CONTROLLER_NS, GRAFANA.name)
        return obj is not None and wk.ANNOTATION_ROTATE not in (obj["metadata"].get("annotations") or {})

    wait_for(cleared, 10, "the rotate annotation removed after the run")
    time.sleep(3)  # further polls see no annotation: no second run
    assert w.version(GRAFANA) == before + 1 and len(_new_entries(w, GRAFANA, known)) == 1
    # GitOps re-applies the same value (it is in Git, or a sync brings it back): handled once, never again
    w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name, {wk.ANNOTATION_ROTATE: reason})
    time.sleep(4)
    assert w.version(GRAFANA) == before + 1 and len(_new_entries(w, GRAFANA, known)) == 1
    obj = w.kube.get_custom_object(intents, CONTROLLER_NS, GRAFANA.name)
    assert obj is not None
    notes = obj["metadata"]["annotations"]
    assert notes[HANDLED].startswith("sha256:") and notes[RESULT].startswith(("revoked", "done"))
    w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name, {wk.ANNOTATION_ROTATE: None})
    w.stop(c)


# ------------------------------------------------------------------------------------------------ 4. manual


def _rotate_cli(w: World, reason: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
    return subprocess.Popen(
        [sys.executable, "-m", "chamberlain.cli.main", "rotate", GRAFANA.name, str(w.quiet), "--reason", reason,
         "-o", "json", *w.vault_args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=REPO_ROOT)


def test_manual_rotation_while_the_controller_runs(world: World) -> None:
    w = world
    c = w.start_controller("manual")
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    got = w.cli("rotate", GRAFANA.name, str(w.quiet), "--reason", "manual drill", "-o", "json", *w.vault_args())
    assert got.returncode == 0, got.stdout + got.stderr
    [row] = json.loads(got.stdout)["runs"]
    assert row["ok"] and row["version"] == before + 1
    time.sleep(2)  # the controller does not add a run of its own
    [entry] = _new_entries(w, GRAFANA, known)
    assert entry.details["trigger"] == "manual" and entry.reason == "manual drill"
    assert not entry.actor.startswith("controller:")
    w.assert_converged(GRAFANA, before + 1)
    assert advanced(gens, 1) == w.generations(GRAFANA)

    # A webhook and the CLI at the same moment: the run record is the lease, so the two runs never overlap —
    # whichever starts second either is refused (CLI) or waits (controller) — and every new version has exactly
    # one ledger entry.
    before, known = w.version(GRAFANA), _seqs(w, GRAFANA)
    proc = _rotate_cli(w, "concurrent manual")
    _webhook_ok(w, c, GRAFANA, "concurrent webhook")
    out, err = proc.communicate(timeout=120)
    w.outputs.append(out + err)

    def settled() -> bool:
        r = w.run_record(GRAFANA)
        entries = _new_entries(w, GRAFANA, known)
        return (r is not None and r.finished and r.ledger_seq is not None
                and len(entries) == w.version(GRAFANA) - before and len(entries) >= 1
                and any(e.details["trigger"] == "webhook" for e in entries))

    wait_for(settled, 60, "both requests handled")
    time.sleep(2)
    entries = sorted(_new_entries(w, GRAFANA, known), key=lambda e: e.seq)
    after = w.version(GRAFANA)
    print(f"\n[manual] concurrent CLI (exit {proc.returncode}) + webhook: v{before} -> v{after}, "
          f"{[(e.details['trigger'], e.run) for e in entries]}")
    assert len(entries) == after - before and 1 <= len(entries) <= 2
    assert all(e.result == "ok" for e in entries)
    assert [(int(e.details["previous-version"]), int(e.details["version"])) for e in entries] == \
        [(before + i, before + i + 1) for i in range(len(entries))]
    triggers = sorted(e.details["trigger"] for e in entries)
    if "still" in out + err or "rate limited" in out + err:
        # the CLI came while the controller's run held the lease, or after it ended within the trigger interval:
        # refused, did nothing
        assert proc.returncode == 1 and triggers == ["webhook"], (proc.returncode, triggers)
    else:  # one after the other
        assert triggers == ["manual", "webhook"], (out + err, triggers)
    w.assert_converged(GRAFANA, after)
    assert w.ledger().verify().ok
    w.stop(c)


# ------------------------------------------------------------------------------------------------ 5. crashes


@pytest.mark.parametrize("point", CHAIN)
def test_crash_at_each_step_boundary_then_restart_converges(world: World, point: str) -> None:
    """Kill the controller (``os._exit(137)``) at ``point`` during a webhook-triggered rotation, start it again:
    exactly one new version, one ledger entry, consumer marker = Vault marker = marker of the data, one restart.

    The restarted controller is the next test's crashing one: checkpoints go in reverse step order, so resuming a
    run (which only moves forward from where it died) never passes the next, earlier, crash point. One controller
    start per checkpoint; the same identity, so the restart leads at once (a restarted pod keeps its name)."""
    assert len(CHECKPOINTS) >= 8 and PROMOTE_WRITE in CHECKPOINTS
    w = world
    c = _chain.pop("next", None)
    if c is None or not c.alive or c.crash_at != point:
        if c is not None and c.alive:
            w.stop(c)
        c = w.start_controller("crashy", crash_at=point)
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    last = w.run_record(GRAFANA)
    _webhook_ok(w, c, GRAFANA, f"crash drill {point}")
    assert c.wait_exit(60) == 137, c.text()[-2000:]

    crashed = w.run_record(GRAFANA)
    assert crashed is not None and (last is None or crashed.run_id != last.run_id), "the run was recorded"
    assert not (crashed.finished and crashed.ledger_seq is not None)
    promoted = CHECKPOINTS.index(point) >= CHECKPOINTS.index(PROMOTE_WRITE)
    assert w.version(GRAFANA) == before + (1 if promoted else 0), "never more than the one new version"

    i = CHAIN.index(point)
    nxt = CHAIN[i + 1] if i + 1 < len(CHAIN) else None
    if nxt in PASSED_AGAIN.get(point, set()):
        nxt = None  # the next test arms a controller of its own
    restarted = w.start_controller("crashy", crash_at=nxt)
    run = w.wait_run_done(GRAFANA, run_id=crashed.run_id, timeout=60)
    assert run.succeeded, run
    _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook",
                         actor="controller:crashy")
    assert restarted.events("adopted run", run=crashed.run_id), "the restarted controller resumed the run"
    time.sleep(0.5)  # a second completion of the adopted run (its stored request taken again) comes within a tick
    assert len(restarted.events("run finished", run=crashed.run_id)) == 1, "the adopted run completed once"
    print(f"\n[crash] {point}: died at stage {crashed.stage}, resumed to {run.stage}, v{before} -> v{before + 1}")
    if nxt is None:
        w.stop(restarted)
    else:
        _chain["next"] = restarted


# ------------------------------------------------------------------------------------------------ 6. Vault down


def _wait_stage(w: World, c: ControllerProc, t: Target, stage: str, timeout: float = 30) -> str:
    def seen() -> str | None:
        got = [d for d in c.events("run step", stage=stage) if d["secret"] == t.name]
        return str(got[-1]["run"]) if got else None

    run: str = wait_for(seen, timeout, f"{t.name} reaching {stage}", every=0.1)
    return run


def _outage_warnings(c: ControllerProc, since: int = 0) -> list[dict[str, Any]]:
    return [d for d in c.lines()[since:] if d.get("event") == "authority unavailable; retrying"]


def test_crash_then_vault_down_then_restart(world: World) -> None:
    """Killed right after promote, then Vault goes down: a controller started meanwhile cannot log in (it exits 1
    with a clean message, changing nothing); once Vault is back and unsealed, a new one finishes the run."""
    w = world
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    c = w.start_controller("vdown-1", crash_at="rotation.promote")
    _webhook_ok(w, c, GRAFANA, "crash then vault down")
    assert c.wait_exit(60) == 137
    crashed = w.run_record(GRAFANA)
    assert crashed is not None and crashed.stage == "tested" and w.version(GRAFANA) == before + 1
    w.stop_vault()
    try:
        with pytest.raises(AssertionError, match="exited with 1 before it started"):
            w.start_controller("vdown-2", wait_leader=False)
        failed = w.controllers[-1]
        assert "Vault unreachable" in failed.text() and "Traceback" not in failed.text()
    finally:
        w.start_vault()
    assert w.version(GRAFANA) == before + 1
    c3 = w.start_controller("vdown-3")
    run = w.wait_run_done(GRAFANA, run_id=crashed.run_id)
    _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook",
                         actor="controller:vdown-3")
    w.stop(c3)


def test_request_arriving_while_vault_is_down_is_carried_out(world: World) -> None:
    w = world
    c = w.start_controller("vdown-q", evaluate_every=600)
    before, last = w.version(GRAFANA), w.run_record(GRAFANA)
    time.sleep(2)  # a few good ticks: unfinished runs adopted, evaluation done (the next one in 600 s)
    assert not _outage_warnings(c)
    w.stop_vault()
    try:
        _webhook_ok(w, c, GRAFANA, "while Vault is down")
        mark = len(c.lines())
        wait_for(lambda: _outage_warnings(c, mark), 20, "an authority-unavailable warning after the request")
        assert c.alive
        # unready while the authority is down, alive all the same (a restart would not bring Vault back)
        wait_for(lambda: ch.probe(c, "/readyz")[0] == 503, 20, "/readyz failing during the outage")
        assert ch.probe(c, "/readyz")[1]["checks"]["authority"]["ok"] is False
        assert ch.probe(c, "/healthz")[0] == 200
        assert "chamberlain_authority_up 0.0" in ch.get_text(c.metrics_url)
    finally:
        w.start_vault()
    try:
        run = w.wait_run_done(GRAFANA, not_run=last.run_id if last else None, timeout=12)
        assert run.current_version == before + 1
    finally:
        w.stop(c)


def _vault_outage_during_revoke_wait(w: World, t: Target, identity: str) -> tuple[ControllerProc, str, int]:
    """Trigger ``t``, stop Vault while its run waits out maxOverlap (promoted and propagated), keep it down until
    the controller logged two outage warnings and is still alive, start and unseal it (``chamberlain authority
    unseal``). Returns (controller, run
    id, version before)."""
    # Evaluation only on the first tick: the outage then hits the run's own step, the case failureStrategy covers.
    c = w.start_controller(identity, evaluate_every=600)
    before = w.version(t)
    _webhook_ok(w, c, t, f"vault outage drill ({identity})")
    run_id = _wait_stage(w, c, t, "revoke-wait")
    mark = len(c.lines())
    w.stop_vault()
    try:
        wait_for(lambda: len(_outage_warnings(c, mark)) >= 2, 30, "two authority-unavailable warnings")
        assert c.alive, c.text()[-2000:]
        assert not [d for d in c.lines()[mark:] if d.get("event") in ("tick failed", "stopped")]
    finally:
        w.start_vault()
    return c, run_id, before


def test_vault_stopped_mid_run_retry_resumes(world: World) -> None:
    """failureStrategy retry: the controller keeps running through the outage (warnings, backoff) and the run
    completes once Vault is back: revoked, one version, one ok entry."""
    w = world
    gens, known = w.generations(SHIPPER), _seqs(w, SHIPPER)
    c, run_id, before = _vault_outage_during_revoke_wait(w, SHIPPER, "vdown-retry")
    run = w.wait_run_done(SHIPPER, run_id=run_id, timeout=60)
    assert run.stage == "revoked", run
    _assert_one_good_run(w, SHIPPER, run_id, before, gens, known, trigger="webhook", actor="controller:vdown-retry")
    warnings = _outage_warnings(c)
    print(f"\n[vault down, retry] {len(warnings)} outage warnings "
          f"({sorted({str(d.get('error')) for d in warnings})}), then {run.stage}")
    w.stop(c)


def _hold_through_partition(w: World, identity: str, heal_after: int) -> tuple[ControllerProc, str, int]:
    """HOOK (failureStrategy hold) rotated by a controller that reaches Vault through a :class:`Partition`; the
    partition is cut while the run waits out maxOverlap (promoted and propagated) and healed right after the
    controller logged ``heal_after`` outage warnings (each tick logs one while Vault is unreachable, and the next
    tick comes at least a second later). Returns (controller, run id, version before); the run is finished."""
    partition = ch.Partition(w.lab.authority.port)
    try:
        c = w.start_controller(identity, evaluate_every=600, vault_addr=partition.address)
        before = w.version(HOOK)
        _webhook_ok(w, c, HOOK, f"partition drill ({identity})")
        run_id = _wait_stage(w, c, HOOK, "revoke-wait")
        mark = len(c.lines())
        partition.cut()
        wait_for(lambda: len(_outage_warnings(c, mark)) >= heal_after, 30,
                 f"{heal_after} authority-unavailable warnings", every=0.05)
        partition.heal()
        assert c.alive, c.text()[-2000:]
        run = w.wait_run_done(HOOK, run_id=run_id, timeout=60)
        print(f"\n[partition, hold, healed after {heal_after} outage ticks] run ended {run.stage}: "
              f"{run.last_error}")
        w.stop(c)
    finally:
        partition.close()
    return c, run_id, before


def _assert_held_after_outage(w: World, c: ControllerProc, run_id: str, before: int, known: set[int]) -> None:
    """What loop.py documents for failureStrategy hold after an authority outage: the run ends held — even in
    revoke-wait, with the new version promoted and in every consumer; the secret is held until released; one
    failed ledger entry; the old credential is not revoked."""
    run = w.run_record(HOOK)
    assert run is not None and run.run_id == run_id
    assert run.stage == "held" and "authority unavailable during revoke-wait" in (run.last_error or ""), run
    assert c.events("run stopped after an authority outage", run=run_id, stage="held")
    meta = w.meta(HOOK)
    assert meta.custom["held"] == "true" and meta.custom["held-run"] == run_id
    assert meta.custom["last-result"] == f"{run_id}:failed"
    w.assert_converged(HOOK, before + 1)  # the promoted version stays current and in every consumer
    [entry] = _new_entries(w, HOOK, known)
    assert entry.result == "failed" and entry.run == run_id and entry.details["stage"] == "held"
    _final_object(w, run_id, ("held",))


def _assert_held_status(w: World, run_id: str) -> None:
    """The SecretIntent says so too (docs/status.md): phase Held, Held and Degraded True, Ready False, and a
    Warning Event RotationHeld on the SecretIntent."""
    intents = CustomResource(RR_GROUP, RR_VERSION, "secretintents")

    def held_status() -> dict[str, Any] | None:
        obj = w.kube.get_custom_object(intents, CONTROLLER_NS, HOOK.name)
        status: dict[str, Any] = (obj or {}).get("status") or {}
        return status if status.get("phase") == "Held" and status.get("heldRun") == run_id else None

    status = wait_for(held_status, 15, f"the SecretIntent {HOOK.name} says Held")
    conditions = {x["type"]: x for x in status["conditions"]}
    assert conditions["Held"]["status"] == "True" and run_id in conditions["Held"]["message"]
    assert (conditions["Degraded"]["status"], conditions["Degraded"]["reason"]) == ("True", "Held")
    assert conditions["Ready"]["status"] == "False" and "nextRotation" not in status
    core = kubernetes.client.CoreV1Api(w.api)
    events = core.list_namespaced_event(
        CONTROLLER_NS, field_selector=f"involvedObject.kind=SecretIntent,involvedObject.name={HOOK.name}").items
    assert any(e.reason == "RotationHeld" and e.type == "Warning" for e in events), [e.reason for e in events]


def _release(w: World) -> None:
    released = w.cli("rotate", HOOK.name, str(w.quiet), "--release", *w.vault_args())
    assert released.returncode == 0, released.stdout + released.stderr
    assert w.meta(HOOK).custom.get("held", "false") == "false"


def test_vault_unreachable_mid_run_hold_holds(world: World) -> None:
    """failureStrategy hold, Vault unreachable for one controller tick during the run: the run ends held once
    Vault answers (the workflow's ``next_step`` returns ``Step.STOP`` for the outage); requests for the held secret
    are dropped until ``chamberlain rotate --release``."""
    w = world
    known = _seqs(w, HOOK)
    c, run_id, before = _hold_through_partition(w, "partition-1", heal_after=1)
    _assert_held_after_outage(w, c, run_id, before, known)

    held = w.start_controller("partition-1b")
    _webhook_ok(w, held, HOOK, "while held")
    wait_for(lambda: held.events("secret is held; request dropped"), 10, "the held secret's request dropped")
    assert w.version(HOOK) == before + 1
    _assert_held_status(w, run_id)
    w.stop(held)
    _release(w)
    assert w.ledger().verify().ok


def test_vault_unreachable_for_two_ticks_hold_still_holds(world: World) -> None:
    w = world
    known = _seqs(w, HOOK)
    try:
        c, run_id, before = _hold_through_partition(w, "partition-2", heal_after=2)
        _assert_held_after_outage(w, c, run_id, before, known)
    finally:
        _release(w)


# ------------------------------------------------------------------------------------------------ 7. kube down


def test_kube_apiserver_down_after_promote(world: World) -> None:
    """Killed right after promote, then the kube-apiserver dies: Vault holds exactly the one new version; a
    controller started meanwhile (Vault token from a file: its Kubernetes login needs the API server) runs but
    never leads; when the API server is back it leads, and propagation and the single restart complete."""
    w = world
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    c = w.start_controller("kdown-1", crash_at="rotation.promote")
    _webhook_ok(w, c, GRAFANA, "kube down drill")
    assert c.wait_exit(60) == 137
    crashed = w.run_record(GRAFANA)
    assert crashed is not None and crashed.stage == "tested"
    token = w.base / "orchestrator.token"
    token.write_text(w.login()._hvac.token + "\n")
    token.chmod(0o600)
    w.kill_apiserver()
    try:
        c2 = w.start_controller("kdown-2", token_file=token, wait_leader=False,
                                extra=["--propagation-timeout", "90"])
        time.sleep(6)
        assert c2.alive and not c2.leader
        assert w.version(GRAFANA) == before + 1, "exactly the one new version while the API server is down"
        record = w.run_record(GRAFANA)
        assert record is not None and record.run_id == crashed.run_id and record.stage == "tested"
    finally:
        w.start_apiserver()
    c2.wait_leader(30)
    run = w.wait_run_done(GRAFANA, run_id=crashed.run_id, timeout=120)
    assert w.lab.eso.running() is not None, "ESO survived the API server outage"
    _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook",
                         actor="controller:kdown-2")
    print(f"\n[kube down] resumed {run.run_id}: propagation {c2.events('run finished')[-1]['propagation_seconds']}s "
          "after the API server came back")
    w.stop(c2)


def test_alertmanager_bearer_and_standard_webhooks_rotate_once(world: World) -> None:
    """The other two schemes against a real `controller run`: an Alertmanager notification (bearer token, the
    secret named by the chamberlain_secret label) rotates once however often Alertmanager repeats it; a Standard
    Webhooks request rotates once however often its sender retries it."""
    import base64

    w = world
    token = os.urandom(24).hex()
    bearer_file, std_file = w.base / "bearer.token", w.base / "standard.secret"
    bearer_file.write_text(token + "\n")
    std = StandardSecret(os.urandom(24))
    std_file.write_text("whsec_" + base64.b64encode(std.value).decode() + "\n")
    for f in (bearer_file, std_file):
        f.chmod(0o600)
    c = w.start_controller("schemes", extra=["--webhook-bearer-token-file", str(bearer_file),
                                             "--webhook-standard-secret-file", str(std_file)])
    try:
        before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
        last = w.run_record(GRAFANA)
        starts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        labels = {"alertname": "GrafanaAdminLeaked", "chamberlain_secret": GRAFANA.name}
        payload = json.dumps({
            "version": "4", "groupKey": '{}:{alertname="GrafanaAdminLeaked"}', "status": "firing",
            "receiver": "chamberlain", "groupLabels": {"alertname": "GrafanaAdminLeaked"}, "commonLabels": labels,
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "admin password in a paste"},
                        "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                        "fingerprint": "5a1e0ba1c0ffee00"}],
        }).encode()
        bearer = {"Authorization": f"Bearer {token}"}
        status, answer = post(c.webhook_url, payload, bearer)
        assert status == 200 and answer["outcome"] == "queued", (status, answer)
        run = w.wait_run_done(GRAFANA, not_run=last.run_id if last else None)
        assert run.trigger == "webhook" and run.reason == "alert: admin password in a paste"
        _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook",
                             actor="controller:schemes")
        for _ in range(2):  # Alertmanager's repeat_interval: the same firing again
            status, answer = post(c.webhook_url, payload, bearer)
            assert status == 200 and answer["outcome"] == "duplicate", (status, answer)
        plain = json.dumps({"secret": GRAFANA.name, "reason": "no key"}).encode()
        assert post(c.webhook_url, plain, bearer)[0] == 400  # bearer without an idempotency key
        assert post(c.webhook_url, payload, {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        time.sleep(3)
        assert w.version(GRAFANA) == before + 1 and len(_new_entries(w, GRAFANA, known)) == 1

        before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
        body = json.dumps({"secret": GRAFANA.name, "reason": "standard webhooks drill"}).encode()
        status, answer = post(c.webhook_url, body, sign_standard(body, std, "msg_lab_schemes", datetime.now(UTC)))
        assert status == 200 and answer["outcome"] == "queued", (status, answer)
        second = w.wait_run_done(GRAFANA, not_run=run.run_id)
        assert second.reason == "standard webhooks drill"
        _assert_one_good_run(w, GRAFANA, second.run_id, before, gens, known, trigger="webhook",
                             actor="controller:schemes")
        retry = post(c.webhook_url, body, sign_standard(body, std, "msg_lab_schemes", datetime.now(UTC)))
        assert retry[0] == 200 and retry[1]["outcome"] == "duplicate"
        time.sleep(3)
        assert w.version(GRAFANA) == before + 1 and len(_new_entries(w, GRAFANA, known)) == 1
        print(f"\n[schemes] alertmanager bearer {run.run_id}, standard webhooks {second.run_id}")
    finally:
        w.stop(c)


# ------------------------------------------------------------------------------------------------ 8. two replicas


def _tgkill(pid: int, tid: int, signum: int) -> None:
    """Send a signal to one thread of another process (glibc's ``tgkill``; Python has no binding)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {signum})")


def test_sigterm_taken_by_a_worker_thread_stops_the_controller(world: World) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads; CPython runs the Python handler only in the
    main thread, which a blocked wait never lets run. Sent here to the newest worker thread (``tgkill``), so no
    thread choice by the kernel decides the outcome: the controller stops gracefully and gives up its Lease."""
    w = world
    c = w.start_controller("sig-worker")
    time.sleep(1)
    pid = c.proc.pid
    workers = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert len(workers) >= 3, workers  # the loop, the probe server, the watches...
    began = time.monotonic()
    _tgkill(pid, workers[-1], signal.SIGTERM)  # the oldest worker is the signal watcher itself
    try:
        code = c.proc.wait(10)
    except subprocess.TimeoutExpired:
        c.terminate()  # dumps every thread's stack into the assertion
        raise
    print(f"\n[sigterm to worker threads] exit {code} after {time.monotonic() - began:.1f}s")
    assert code == 0
    assert [d for d in c.lines() if d.get("event") == "signal received; stopping"]
    lease = w.kube.get_lease(CONTROLLER_NS, "chamberlain-controller")
    assert lease is not None and lease.holder is None


def test_two_controllers_one_leader_and_failover(world: World) -> None:
    w = world
    a = w.start_controller("pair-a")
    b = w.start_controller("pair-b", wait_leader=False)
    time.sleep(2)
    assert a.leader and not b.leader
    # both serve the probes on their metrics address; the follower is ready too (readiness is not leadership)
    for proc in (a, b):
        assert ch.probe(proc, "/healthz")[0] == 200
        status, ready = ch.probe(proc, "/readyz")
        assert status == 200 and all(c["ok"] for c in ready["checks"].values()), ready
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    last = w.run_record(GRAFANA)
    # The follower answers too: it persists the request (a RotationRun object, create-only) and the leader runs it.
    status, answer = w.webhook(b, GRAFANA.name, "to the follower")
    assert status == 202 and answer["outcome"] == "persisted", (status, answer)
    run = w.wait_run_done(GRAFANA, not_run=last.run_id if last else None)
    assert run.run_id == answer["request"] and run.reason == "to the follower"
    _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook", actor="controller:pair-a")
    assert not [d for d in b.lines() if d.get("event") in ("run started", "adopted run", "run step")]

    killed = time.monotonic()
    a.kill()
    b.wait_leader(15)
    takeover = time.monotonic() - killed
    print(f"\n[failover] pair-b leads {takeover:.1f}s after pair-a was killed (lease 4 s)")
    assert takeover <= 4 + 3
    lease = w.kube.get_lease(CONTROLLER_NS, "chamberlain-controller")
    assert lease is not None and lease.holder == "pair-b"
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    _webhook_ok(w, b, GRAFANA, "to the new leader")
    second = w.wait_run_done(GRAFANA, not_run=run.run_id)
    _assert_one_good_run(w, GRAFANA, second.run_id, before, gens, known, trigger="webhook",
                         actor="controller:pair-b")
    w.stop(b)


def test_a_tick_longer_than_the_lease_keeps_it_with_the_leader_and_the_follower_waits(world: World) -> None:
    """The leader reaches Vault over a slow link (each request waits 0.8 s), so one tick lasts about 30 s, longer
    than its Lease. Its Lease keeper renews the Lease during the tick: the follower never takes over, and the run
    rotates once. Without the keeper, the follower found the Lease expired mid-tick and drove the same run beside
    it. A 10 s Lease, not the 4 s of the other tests: on a loaded CI machine a renewal every 1.3 s with a request
    that lands late let a 4 s Lease lapse now and then (the test is about the tick, not the machine)."""
    import threading

    w = world
    lease_seconds = 10
    partition = ch.Partition(w.lab.authority.port, delay=0.8)
    samples: list[tuple[float, str | None]] = []  # (seconds since the leader last finished a tick, Lease holder)
    done = threading.Event()
    try:
        a = w.start_controller("slow-a", evaluate_every=600, vault_addr=partition.address,
                               lease_seconds=lease_seconds)
        b = w.start_controller("slow-b", evaluate_every=600, wait_leader=False, lease_seconds=lease_seconds)

        failures: list[str] = []

        def sample() -> None:
            while not done.wait(0.2):
                try:
                    text = ch.get_text(a.metrics_url)
                    found = re.search(r"^chamberlain_loop_last_tick_timestamp_seconds ([0-9.e+]+)$", text, re.M)
                    lease = w.kube.get_lease(CONTROLLER_NS, "chamberlain-controller")
                except Exception as exc:  # a sample lost is said, never a silent gap
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if found is None:
                    failures.append("no last-tick metric")
                    continue
                samples.append((time.time() - float(found.group(1)), lease.holder if lease is not None else None))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
        last = w.run_record(GRAFANA)
        _webhook_ok(w, a, GRAFANA, "over a slow link")
        run = w.wait_run_done(GRAFANA, not_run=last.run_id if last else None, timeout=120)
        done.set()
        sampler.join(10)
        longest = max((since for since, _ in samples), default=0.0)
        print(f"\n[long tick] the leader's longest tick lasted at least {longest:.1f}s (Lease {lease_seconds} s); "
              f"{len(samples)} samples")
        assert not failures, failures[:5]
        said = [d for d in a.lines() if d.get("event", "").startswith("leader") or d.get("level") == "warning"]
        assert {h for _, h in samples} == {"slow-a"}, f"the Lease changed hands during the tick: {said[-10:]}"
        assert longest > lease_seconds + 2, f"no tick lasted longer than the Lease: {longest:.1f}s"
        assert not [d for d in b.events("leadership") if d.get("leader")], "the follower led"
        assert not [d for d in b.lines() if d.get("event") in ("run started", "adopted run", "run step")]
        assert not a.events("leadership lost during the tick and regained")
        _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger="webhook",
                             actor="controller:slow-a")
        w.stop(b)
        w.stop(a)
    finally:
        done.set()
        partition.close()


@pytest.mark.parametrize("trigger", ["webhook", "annotation"])
def test_sigterm_while_a_run_waits_for_eso_stops_at_once_and_the_next_leader_finishes_the_run(
        world: World, trigger: str) -> None:
    """ESO is down and a run waits for its consumer Secret (up to --propagation-timeout, here 120 s). SIGTERM: the
    controller cuts the wait short and stops between two steps of the run, instead of finishing the tick (a wait
    like this one, or a 2,000-run batch lasting about a minute, outlasted Kubernetes' 30 s grace period and ended
    in SIGKILL). It gives the Lease up and exits 0; the run keeps no failed attempt. Once ESO is back, the next
    leader adopts the run and finishes it once. The code before waited out the 120 s (a failed attempt, then
    SIGKILL after 30 s).

    The request's trigger is still there for the next leader: a persisted webhook request, or the annotation on the
    SecretIntent. Either ends with the adopted run, once: the code before deferred the annotation behind the
    adopted run and rotated a second time for the same value."""
    w = world
    before, gens, known = w.version(GRAFANA), w.generations(GRAFANA), _seqs(w, GRAFANA)
    last = w.run_record(GRAFANA)
    intents = CustomResource(RR_GROUP, RR_VERSION, "secretintents")
    reason = f"stopped while ESO is down {time.time()}"
    w.stop_eso()
    try:
        a = w.start_controller(f"term-{trigger}-a", evaluate_every=600, extra=["--propagation-timeout", "120"])
        if trigger == "webhook":
            _webhook_ok(w, a, GRAFANA, reason)
        else:
            w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name,
                                                   {wk.ANNOTATION_ROTATE: reason})
        wait_for(lambda: a.events("run step", secret=GRAFANA.name, stage="promoted"), 60, "the run promoted")
        time.sleep(1)  # inside the consumer wait
        began = time.monotonic()
        code = a.terminate()
        took = time.monotonic() - began
    finally:
        w.start_eso()
    print(f"\n[graceful stop] {a.identity} exited {took:.1f}s after SIGTERM, its {trigger} run waiting for ESO")
    assert code == 0, a.text()[-2000:]
    assert took < 10, f"the stop took {took:.1f}s"
    left = w.run_record(GRAFANA)
    assert left is not None and left.run_id != (last.run_id if last else None), left
    assert left.stage in ("tested", "promoted") and left.attempts == 0 and left.last_error is None, left
    assert w.version(GRAFANA) == before + 1, "promoted before the stop"
    assert w.generations(GRAFANA) == gens, "nothing rolled"
    assert not a.events("run finished") and not a.warnings(), a.warnings()
    lease = w.kube.get_lease(CONTROLLER_NS, "chamberlain-controller")
    assert lease is None or lease.holder != a.identity, "the Lease was given up"
    b = w.start_controller(f"term-{trigger}-b", evaluate_every=600)
    try:
        run = w.wait_run_done(GRAFANA, run_id=left.run_id, timeout=120)
        assert b.events("adopted run", secret=GRAFANA.name, run=left.run_id)
        _assert_one_good_run(w, GRAFANA, run.run_id, before, gens, known, trigger=trigger,
                             actor=f"controller:{b.identity}")
        if trigger == "annotation":
            def cleared() -> bool:
                obj = w.kube.get_custom_object(intents, CONTROLLER_NS, GRAFANA.name)
                return obj is not None and wk.ANNOTATION_ROTATE not in (obj["metadata"].get("annotations") or {})

            wait_for(cleared, 10, "the rotate annotation removed with the adopted run")
        time.sleep(5)  # a request deferred behind the adopted run would start its own run now
        assert w.version(GRAFANA) == before + 1 and len(_new_entries(w, GRAFANA, known)) == 1, "rotated once"
        assert not b.events("run started", secret=GRAFANA.name), "the next leader started no run of its own"
        assert len(b.events("run finished", secret=GRAFANA.name)) == 1, "the adopted run completed once"
    finally:
        w.stop(b)
        if trigger == "annotation":  # the module's later tests start from a SecretIntent without it
            w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name, {wk.ANNOTATION_ROTATE: None})


# ------------------------------------------------------------------------------------------------ scope


def test_full_example_scope_acts(world: World) -> None:
    w = world
    c = w.start_controller("full-scope", repo=w.repo)
    try:
        before, last = w.version(GRAFANA), w.run_record(GRAFANA)
        _webhook_ok(w, c, GRAFANA, "full scope")
        try:
            w.wait_run_done(GRAFANA, not_run=last.run_id if last else None, timeout=10)
        finally:
            forbidden = [d for d in _outage_warnings(c) if d.get("error") == "Forbidden"]
            print(f"\n[scope] {len(forbidden)} 'authority unavailable' warnings for a 403, e.g. "
                  f"{forbidden[0]['detail'] if forbidden else '-'}")
        assert w.version(GRAFANA) == before + 1
        assert not _outage_warnings(c)
    finally:
        w.stop(c)


# ------------------------------------------------------------------------------------------------ 8b. status


def _table(w: World, name: str) -> dict[str, Any]:
    """``kubectl get secretintent NAME`` as the API server serves it: a meta.k8s.io Table whose cells the server
    computed from the CRD's additionalPrinterColumns (what kubectl prints)."""
    resp = w.custom().get_namespaced_custom_object(
        RR_GROUP, RR_VERSION, CONTROLLER_NS, "secretintents", name, _preload_content=False,
        _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    table: dict[str, Any] = json.loads(resp.data)
    assert table.get("kind") == "Table", table.get("kind")
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


def test_status_events_columns_history(world: World) -> None:
    """After real rotations the SecretIntent's status, read back from the API server, has phase, conditions,
    version and consumers n/m; ``kubectl get`` columns (computed by the API server from the CRD) show them;
    Events name the SecretIntent; RotationRun objects are pruned to ``--keep-runs``."""
    w = world
    keep = 2
    c = w.start_controller("status", keep_runs=keep, extra=["--request-retention", "300"])
    intents = CustomResource(RR_GROUP, RR_VERSION, "secretintents")
    last = w.run_record(GRAFANA)
    done: list[str] = []
    t0 = time.monotonic()
    for i in range(3):  # three runs: more than --keep-runs
        w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name,
                                               {wk.ANNOTATION_ROTATE: f"status drill {i} {time.time()}"})
        run = w.wait_run_done(GRAFANA, not_run=(done[-1] if done else last.run_id if last else None))
        done.append(run.run_id)
    version = w.version(GRAFANA)

    def written() -> dict[str, Any] | None:
        obj = w.kube.get_custom_object(intents, CONTROLLER_NS, GRAFANA.name)
        status = (obj or {}).get("status") or {}
        ok = status.get("currentVersion") == version and status.get("lastRun") == done[-1] \
            and status.get("phase") == "Ready" and status.get("consumersSynced") == "1/1"
        return obj if ok else None

    obj = wait_for(written, 20, "the SecretIntent status of the last run")
    status = obj["status"]
    conditions = {x["type"]: x for x in status["conditions"]}
    print(f"\n[status] {len(done)} runs in {time.monotonic() - t0:.1f}s; status {json.dumps(status)[:400]}")
    assert set(conditions) == {"Ready", "Rotating", "Held", "Degraded"}
    assert [conditions[k]["status"] for k in ("Ready", "Rotating", "Held", "Degraded")] == \
        ["True", "False", "False", "False"]
    generation = obj["metadata"]["generation"]
    assert status["observedGeneration"] == generation
    assert all(x["observedGeneration"] == generation and x["lastTransitionTime"] and x["reason"]
               for x in conditions.values())
    assert status["lastRotated"] == w.meta(GRAFANA).custom["last-rotated"]
    assert status["consumers"] == {"synced": 1, "total": 1} and status["overdue"] is False
    assert "nextRotation" not in status  # event-based: never by time

    # kubectl get: the API server resolves every printer column against the object
    row = _table(w, GRAFANA.name)
    assert row["Phase"] == "Ready" and row["Ready"] == "True" and row["Version"] == version
    assert row["Consumers"] == "1/1" and row["Last Rotated"] and row["Next Rotation"] in (None, "")
    print(f"[status] kubectl get secretintent {GRAFANA.name}: {row}")

    # Events on the SecretIntent itself
    core = kubernetes.client.CoreV1Api(w.api)
    selector = f"involvedObject.kind=SecretIntent,involvedObject.name={GRAFANA.name}"
    events = core.list_namespaced_event(CONTROLLER_NS, field_selector=selector).items
    reasons = [e.reason for e in events]
    assert reasons.count("RotationStarted") >= 3 and reasons.count("RotationSucceeded") >= 3, reasons
    assert all(e.involved_object.uid == obj["metadata"]["uid"] for e in events)

    # History: the newest --keep-runs finished runs of the secret stay; older ones are gone, except webhook request
    # objects still inside the request retention (their names are replay records)
    def pruned() -> bool:
        mine = {n: o for n, o in _rotation_runs(w).items() if o["spec"]["secret"] == GRAFANA.name
                and o.get("status", {}).get("phase") in ("revoked", "done", "failed", "held")}
        newest = sorted(mine, key=lambda n: mine[n]["status"].get("finishedAt", ""), reverse=True)
        older = [n for n in newest[keep:] if not n.startswith("rq-")]
        return set(done[-keep:]) <= set(newest[:keep]) and not older

    wait_for(pruned, 20, f"RotationRuns of {GRAFANA.name} pruned to {keep}")
    assert done[0] not in _rotation_runs(w)
    metrics = ch.get_text(c.metrics_url)
    assert re.search(r'chamberlain_rotationruns_pruned_total [1-9]', metrics), metrics
    assert re.search(r'chamberlain_secret_overdue\{path="[^"]+",secret="grafana-admin"\} 0\.0', metrics)
    w.stop(c)
    w.kube.patch_custom_object_annotations(intents, CONTROLLER_NS, GRAFANA.name, {wk.ANNOTATION_ROTATE: None})


def test_an_overdue_held_secret_is_flagged_once_then_recovers(world: World) -> None:
    """The short-ttl secret (20 s) held by hand, so nothing rotates it: past its ttl its SecretIntent says so
    (``overdue``, Degraded), one TTLOverdue Event however many ticks pass, the overdue gauge at 1; released, the
    time trigger rotates it and the status recovers (Recovered Event, gauge 0)."""
    w = world
    intents = CustomResource(RR_GROUP, RR_VERSION, "secretintents")
    core = kubernetes.client.CoreV1Api(w.api)
    selector = f"involvedObject.kind=SecretIntent,involvedObject.name={TICKING.name}"
    seen = {e.metadata.uid for e in core.list_namespaced_event(CONTROLLER_NS, field_selector=selector).items}

    def reasons() -> list[str]:
        return [e.reason for e in core.list_namespaced_event(CONTROLLER_NS, field_selector=selector).items
                if e.metadata.uid not in seen]

    def status_where(check: Any) -> Any:
        def ok() -> dict[str, Any] | None:
            obj = w.kube.get_custom_object(intents, CONTROLLER_NS, TICKING.name)
            status: dict[str, Any] = (obj or {}).get("status") or {}
            return status if check(status) else None
        return ok

    path = TICKING.vault
    w.kv.update_custom_metadata(path.mount, path.path, {"held": "true", "held-run": "lab-overdue-drill"})
    before = w.version(TICKING)
    c = w.start_controller("overdue", repo=w.timed)
    try:
        late = wait_for(status_where(lambda s: s.get("overdue") is True), 20, "the held secret flagged overdue")
        conditions = {x["type"]: x for x in late["conditions"]}
        assert late["phase"] == "Held" and conditions["Degraded"]["status"] == "True"
        assert "past its ttl" in conditions["Degraded"]["message"] or conditions["Degraded"]["reason"] == "Held"
        metrics = ch.get_text(c.metrics_url)
        assert re.search(r'chamberlain_secret_overdue\{path="[^"]+",secret="storefront-session"\} 1\.0', metrics)
        time.sleep(3)  # three more evaluations: no second Event
        assert reasons().count("TTLOverdue") == 1, reasons()
        assert w.version(TICKING) == before, "a held secret is not rotated"
        w.kv.update_custom_metadata(path.mount, path.path, {"held": "false"})  # what rotate --release does
        back = wait_for(status_where(lambda s: s.get("overdue") is False and s.get("phase") == "Ready"
                                     and s.get("currentVersion", 0) > before), 30, "rotated and ready again")
        print(f"\n[overdue] {TICKING.name}: flagged, then v{before} -> v{back['currentVersion']}, events "
              f"{reasons()}")
        assert "Recovered" in reasons() and "RotationSucceeded" in reasons()
        assert re.search(r'chamberlain_secret_overdue\{path="[^"]+",secret="storefront-session"\} 0\.0',
                         ch.get_text(c.metrics_url))
    finally:
        w.kv.update_custom_metadata(path.mount, path.path, {"held": "false"})
        w.stop(c)


# ------------------------------------------------------------------------------------------------ 9. leaks


def test_no_value_leaks(world: World) -> None:
    """No value of any version of any secret under test appears in any controller log, CLI output, metrics page,
    RotationRun object or Event; nor does the webhook key."""
    w = world
    c = w.start_controller("leaks")
    last = w.run_record(GRAFANA)
    _webhook_ok(w, c, GRAFANA, "leak check")
    w.wait_run_done(GRAFANA, not_run=last.run_id if last else None)
    metrics = ch.get_text(c.metrics_url)
    assert re.search(r'chamberlain_rotations_total\{result="ok",secret="grafana-admin",trigger="webhook"\} 1\.0',
                     metrics), metrics
    assert "chamberlain_leader 1.0" in metrics
    for name in ("chamberlain_build_info{", "process_resident_memory_bytes", "chamberlain_secret_ttl_seconds{",
                 "chamberlain_loop_last_tick_timestamp_seconds", "chamberlain_authority_up 1.0"):
        assert name in metrics, name
    w.stop(c)

    values = sorted({v for t in TARGETS for v in w.values(t) if len(v) >= 8})
    assert len(values) >= 20, "values of many versions of the secrets under test"
    core = kubernetes.client.CoreV1Api(w.api)
    events = core.list_namespaced_event(CONTROLLER_NS).items
    assert any(e.reason == "RotationSucceeded" for e in events)
    texts = {
        **{f"log {x.log.name}": x.text() for x in w.controllers},
        **{f"output {i}": out for i, out in enumerate(w.outputs)},
        "metrics": metrics,
        "rotationruns": json.dumps(list(_rotation_runs(w).values()), default=str),
        "secretintents": json.dumps(w.custom().list_namespaced_custom_object(
            RR_GROUP, RR_VERSION, CONTROLLER_NS, "secretintents")["items"], default=str),
        "events": json.dumps([e.to_dict() for e in events], default=str),
    }
    print(f"\n[leaks] {len(values)} values x {len(texts)} texts ({sum(map(len, texts.values()))} chars), "
          f"{len(w.controllers)} controller logs, {len(events)} events")
    key = w.key.decode()
    for where, text in texts.items():
        assert key not in text, f"the webhook key in {where}"
        assert "Traceback" not in text, where
        for value in values:
            assert value not in text, f"a value of a secret under test in {where}"
