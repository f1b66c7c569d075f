"""Benchmark (P4, compromise at scale): one batch of N rotations feeding N/10 workloads, through the controller,
Vault and the real ESO, at several sizes (default 200, 1,000 and 2,000 secrets).

The goal (issue 16, benchmarks/README.md): 2,000 secrets feeding 200 workloads rotated in at most 120 s from all
requests queued to all runs finished and recorded (ledger entry written), every workload restarted exactly once,
and at most 1.5 times the floor measured in the same run. Each workload (a Deployment: the lab has no kubelet, so
a restart is the pod-template patch ``kubectl rollout restart`` makes) is fed by ``--per-workload`` secrets.

The controller is built as ``chamberlain controller run`` builds it and ticked exactly as its loop ticks it
(``tick()``, then ``pause(interval)``), after one warm-up tick (adopting runs, the first time-trigger evaluation,
the first annotation poll, the first SecretIntent status). The N manual requests are queued between two ticks; the
clock starts when the last one is queued. Restarts are counted from the Deployments themselves:
``metadata.generation`` moves by one per pod-template patch, and ``chamberlain.dev/restart-batch`` names the batch.

The floor, measured first in the same run on the same secrets, consumers and ESO (same ESO flags): the raw minimum
the same work needs when done naively with plain clients (hvac, kubernetes): N x (KV write + custom_metadata with
the new marker, one request each), N force-sync annotations, waiting (a metadata-only watch) until ESO has synced
all N Secrets, one pod-template patch per workload.

``--protocol-floor`` adds a second floor (benchmarks/_protocol_floor.py): chamberlain's own requests per rotation
(run-record saves, markers, the ledger, the RotationRun object, its Event, the consumer Secret read) made
by the same plain clients with the controller's eight workers. It splits the ratio: protocol floor / naive floor is
what the protocol's requests cost, controller / protocol floor what chamberlain's code adds around them.

``-o json`` adds ``figures`` and ``growth`` (benchmarks/_figures.py, the shape ``benchmarks/run`` reads).

Usage:
    /work/venv/bin/python benchmarks/bench_batch_rotation.py                       # 200, 1000, 2000; ~15 min
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --secrets 2000 -o json
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --secrets 2000 --protocol-floor    # + the split
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --secrets 6 --per-workload 3 --namespaces 2 \
        --skip-floor                                                                # smoke, seconds
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --lab-dir /tmp/bench-lab   # reuse a running dev lab
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --eso-concurrent 8     # ESO restarted with 8 workers
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --secrets 2000 --stop-at restart   # graceful stop
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kubernetes

import _lab_env as le
from _figures import figure, growth, load_average
from _protocol_floor import PARTS, protocol_floor
from chamberlain import wellknown as wk
from chamberlain.controller.app import ControllerApp
from chamberlain.controller.resources import BackgroundPublisher
from chamberlain.triggers import manual
from chamberlain.values.generate import generate_values
from chamberlain.values.markers import version_marker

GOAL_SECONDS = 120.0
GOAL_SIZE = 2000  # the seconds goal is set for 2,000 secrets; smaller sizes are growth points (no verdict)
GOAL_RATIO = 1.5
SMOKE_BELOW = 100  # sizes below this are smoke runs: no verdict on time or ratio
VAULT_PHASE = "Vault phase (all promoted)"
ESO_WINDOW = "ESO window (first promoted -> all Secrets updated)"
AFTER_ESO = "after ESO (all Secrets updated -> all finished)"
PHASES = ("all runs started", "all promoted", "first Secret updated", "all Secrets updated", "all propagated",
          "all restarted", "first finished", "all finished")  # seconds after the last request was queued


def _generations(apps: Any, workloads: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str | None]]:
    out = {}
    for ns, name in workloads:
        d = apps.read_namespaced_deployment(name, ns)
        annotations = (d.spec.template.metadata.annotations or {}) if d.spec.template.metadata else {}
        out[(ns, name)] = (int(d.metadata.generation or 0), annotations.get(wk.ANNOTATION_RESTART_BATCH))
    return out


def floor(world: le.World, watch: le.SecretWatch, names: list[str], timeout: float) -> dict[str, float]:
    client = world.handle.hvac()
    kv = client.secrets.kv.v2
    custom_api = kubernetes.client.CustomObjectsApi(world.api)
    apps = kubernetes.client.AppsV1Api(world.api)
    customs = {n: world.custom(n) for n in names}
    prepared = []
    for n in names:  # values and markers made up front: generating is not part of the floor
        placed = world.scope.placed[n]
        generators = placed.intent.spec.source.generate
        assert generators is not None
        values = generate_values(generators)
        prepared.append((n, placed.vault.path, values, version_marker(placed.vault.full, values)))
    expected = {}
    cpu0 = le.cpu_seconds(world.handle.lab_dir)
    t0 = time.monotonic()
    for n, path, values, marker in prepared:
        kv.create_or_update_secret(path=path, secret=values, mount_point=le.MOUNT)
        kv.update_metadata(path=path, custom_metadata={**customs[n], wk.VALUE_MARKER: marker},
                           mount_point=le.MOUNT)
        expected[world.consumer(n)] = marker
        values.clear()
    t_vault = time.monotonic()
    token = f"floor-{secrets.token_hex(6)}"
    for n in names:
        ns, secret = world.consumer(n)
        custom_api.patch_namespaced_custom_object(
            "external-secrets.io", "v1", ns, "externalsecrets", secret,
            {"metadata": {"annotations": {wk.ESO_FORCE_SYNC: token}}})
    t_annotated = time.monotonic()
    seen = watch.wait(expected, timeout)
    if len(seen) != len(expected):
        raise SystemExit(f"floor: ESO synced {len(seen)} of {len(expected)} Secrets within {timeout:.0f}s")
    t_synced = time.monotonic()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for ns, name in world.workloads():
        apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"metadata": {"annotations": {
            wk.ANNOTATION_RESTARTED_AT: now, wk.ANNOTATION_RESTART_BATCH: token}}}}})
    t_end = time.monotonic()
    return {"total": t_end - t0, "vault": t_vault - t0, "annotate": t_annotated - t_vault,
            "eso_wait": t_synced - t_annotated, "eso_last_synced_after_first_annotation": max(seen.values()) - t_vault,
            "patches": t_end - t_synced, "cpu_seconds": le.cpu_used(cpu0, le.cpu_seconds(world.handle.lab_dir))}


def controller_batch(world: le.World, watch: le.SecretWatch, names: list[str], interval: float,
                     timeout: float) -> dict[str, Any]:
    wiring = le.make_controller(world, world.scope, keep_finished=max(1000, len(names)))
    controller = wiring.controller
    apps = kubernetes.client.AppsV1Api(world.api)
    workloads = world.workloads()
    warm = time.monotonic()
    controller.tick()  # adopt, first evaluation, first annotation poll: a fresh controller's start, not the batch
    warm_s = time.monotonic() - warm
    before = _generations(apps, workloads)
    for timed in (wiring.kv, wiring.kube):  # the tables count the batch only, not the warm-up tick
        with timed._lock:
            timed.calls.clear()
            timed.seconds.clear()
    calls_before = sum(r["calls"] for r in wiring.kv.table())
    now = datetime.now(UTC)
    requests = [manual(n, "bench batch rotation", now) for n in names]
    for request in requests:
        controller.request(request)
    cpu0 = le.cpu_seconds(world.handle.lab_dir)
    t0 = time.monotonic()
    ticks = 0
    tick_seconds: list[float] = []
    while True:
        started = time.monotonic()
        controller.tick()
        tick_seconds.append(time.monotonic() - started)
        ticks += 1
        if len(controller.finished) >= len(names) and not controller.active:
            break
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"controller: {len(controller.finished)} of {len(names)} runs finished after "
                             f"{timeout:.0f}s (warnings: {wiring.log.warnings()[-3:]})")
        time.sleep(controller.pause(interval))
    t_end = time.monotonic()
    cpu = le.cpu_used(cpu0, le.cpu_seconds(world.handle.lab_dir))
    # RotationRun objects are published from background threads (controller.resources.BackgroundPublisher): not
    # part of the rotations' time, but reported — when the last object showed its final state
    publisher = controller.parts.publisher
    drained = (publisher.flush(timeout) if isinstance(publisher, BackgroundPublisher) else True)
    t_published = time.monotonic()
    runs = controller.finished[-len(names):]
    failed = [r for r in runs if not r.succeeded]
    expected = {world.consumer(r.secret): r.pending_marker or "" for r in runs}
    seen = watch.wait(expected, 30)
    after = _generations(apps, workloads)
    deltas = {w: after[w][0] - before[w][0] for w in workloads}
    batches = {after[w][1] for w in workloads}
    log = wiring.log

    def last(event: str, **match: Any) -> float:
        times = log.times(event, **match)
        return (max(times) - t0) if times else float("nan")

    def first(event: str, **match: Any) -> float:
        times = log.times(event, **match)
        return (min(times) - t0) if times else float("nan")

    vault_rows, kube_rows = wiring.kv.table(), wiring.kube.table()
    promoted = log.times("run step", stage="promoted")
    restarted = log.first_per_run("run step", ("restarted", "revoke-wait", "done"))
    synced_last = max(seen.values()) if seen else float("nan")
    breakdown = {
        # wall clock, seconds after the last request was queued
        "before ESO (first run promoted)": (min(promoted) - t0) if promoted else float("nan"),
        VAULT_PHASE: last("run step", stage="promoted"),
        ESO_WINDOW: (synced_last - min(promoted)) if promoted else float("nan"),
        AFTER_ESO: last("run finished") - (synced_last - t0),
        "after the runs (last finished -> tick returned)": (t_end - t0) - last("run finished"),
        "RotationRun objects published after the batch (not in the total)": t_published - t_end,
        # summed over the worker threads (thread-seconds), so they can exceed the wall clock
        "Vault KV thread-seconds": sum(r["seconds"] for r in vault_rows),
        "Kubernetes thread-seconds": sum(r["seconds"] for r in kube_rows),
    }
    return {
        "total": t_end - t0,
        "breakdown": breakdown,
        "kube_calls_in_batch": sum(r["calls"] for r in kube_rows),
        "ticks": ticks,
        "tick_seconds": [round(t, 3) for t in tick_seconds],
        "warmup_tick": warm_s,
        "runs": len(runs),
        "failed": len(failed),
        "failures": sorted({f"{r.stage}: {r.last_error}" for r in failed})[:5],
        "retried": sum(1 for r in runs if r.attempts),
        "rotation_runs_published": drained,
        "publish_failures": publisher.failures if publisher is not None else None,
        "secrets_synced": len(seen),
        "workloads": len(workloads),
        "patches": sum(deltas.values()),
        "restarted_once": sum(1 for d in deltas.values() if d == 1),
        "restart_batches": len(batches),
        "phases": {
            "all runs started": last("run started"),
            "all promoted": last("run step", stage="promoted"),
            "first Secret updated": (min(seen.values()) - t0) if seen else float("nan"),
            "all Secrets updated": (max(seen.values()) - t0) if seen else float("nan"),
            "all propagated": last("run step", stage="propagated"),
            "all restarted": (max(restarted) - t0) if restarted else float("nan"),
            "first finished": first("run finished"),
            "all finished": last("run finished"),
        },
        "vault_calls": wiring.kv.table(),
        "vault_calls_in_batch": sum(r["calls"] for r in wiring.kv.table()) - calls_before,
        "kube_calls": wiring.kube.table(),
        "cpu_seconds": cpu,
        "warnings": [f"{e}: {kw}" for e, kw in wiring.log.warnings()[:5]],
        "notes": wiring.notes,
    }


def _world(handle: le.LabHandle, n: int, per_workload: int, namespaces: int,
           timeout: float) -> tuple[le.World, list[str], float]:
    """n secrets, per_workload of them feeding each workload, their ExternalSecrets synced; their names."""
    shape = le.Shape(n, per_workload=per_workload, namespaces=namespaces, prefix=f"b{secrets.token_hex(2)}")
    workdir = Path(tempfile.mkdtemp(prefix="chamberlain-bench-batch-"))
    setup = time.monotonic()
    try:
        world = le.build_world(handle, workdir, [shape], timeout=timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    setup_s = time.monotonic() - setup
    le.log(f"{n} secrets set up in {setup_s:.1f}s")
    return world, [shape.name(i) for i in range(n)], setup_s


def _stop_when(stop_at: float | str, log: le.EventLog, t0: float, timeout: float) -> None:
    """Wait until ``stop_at`` seconds after ``t0``, or with ``restart``, until the first run of the batch restarted
    (its restart step logs it at done or revoke-wait)."""
    if isinstance(stop_at, float):
        time.sleep(max(0.0, t0 + stop_at - time.monotonic()))
        return
    while not log.first_per_run("run step", ("done", "revoke-wait")):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"no run restarted within {timeout:.0f}s")
        time.sleep(0.05)


def stopped_batch(handle: le.LabHandle, n: int, per_workload: int, namespaces: int, interval: float,
                  timeout: float, stop_at: float | str) -> dict[str, Any]:
    """``--stop-at``: a graceful stop (what SIGTERM does: ``ControllerApp.stop``) ``stop_at`` seconds into the batch
    (``restart``: when its restart pass began), the controller started as ``controller run`` starts it.
    Measured: how long the stop took (the loop ended, the Lease released, the background threads stopped), where
    the runs were, and whether a second controller, started then, finishes every run once with each workload
    restarted once. Requests the first never opened are queued again on the second
    (in a cluster their trigger is still there: a stored request, an annotation, a due time)."""
    world, names, setup_s = _world(handle, n, per_workload, namespaces, timeout)
    apps = kubernetes.client.AppsV1Api(world.api)
    workloads = world.workloads()
    try:
        wiring = le.make_controller(world, world.scope, keep_finished=max(1000, n), identity=f"bench-{n}-a")
        first = wiring.controller
        first.tick()  # warm-up, as in controller_batch
        before = _generations(apps, workloads)
        for name in names:
            first.request(manual(name, "bench stopped batch", datetime.now(UTC)))
        app = ControllerApp(first, interval=interval)  # what `controller run` starts, and stops on SIGTERM
        t0 = time.monotonic()
        app.start()
        _stop_when(stop_at, wiring.log, t0, timeout)
        stopped = time.monotonic()
        app.stop(timeout)
        stop_seconds = time.monotonic() - stopped
        at_stop = Counter(a.run.stage for a in first.active.values())
        done_first = {r.secret for r in first.finished}
        opened = done_first | set(first.active)
        le.log(f"stopped {stopped - t0:.1f}s into the batch: the stop took {stop_seconds:.1f}s; runs: "
               f"{len(done_first)} finished, {dict(at_stop)} in flight, {n - len(opened)} never opened")
        second = le.make_controller(world, world.scope, keep_finished=max(1000, n), identity=f"bench-{n}-b")
        later = second.controller
        for name in names:
            if name not in opened:
                later.request(manual(name, "bench stopped batch, queued again", datetime.now(UTC)))
        second_app = ControllerApp(later, interval=interval)  # served and stopped as the first was
        t1 = time.monotonic()
        second_app.start()
        try:
            while len(later.finished) + len(done_first) < n or later.active:
                if time.monotonic() - t1 > timeout:
                    raise SystemExit(f"second controller: {len(later.finished)} runs finished after "
                                     f"{timeout:.0f}s (warnings: {second.log.warnings()[-3:]})")
                time.sleep(0.2)
            finish_seconds = time.monotonic() - t1
        finally:
            second_app.stop(timeout)  # its threads end before the lab goes down
        after = _generations(apps, workloads)
    finally:
        world.close()
    runs = [*first.finished, *later.finished]
    deltas = [after[w][0] - before[w][0] for w in workloads]
    return {"secrets": n, "setup_seconds": round(setup_s, 1), "stop_at": stop_at, "stopped_after": stopped - t0,
            "stop_seconds": round(stop_seconds, 2), "finished_before_stop": len(done_first),
            "in_flight_at_stop": dict(at_stop), "never_opened": n - len(opened),
            "second_controller_seconds": round(finish_seconds, 1), "total_seconds": round(time.monotonic() - t0, 1),
            "runs_finished": len({r.secret for r in runs}), "runs_failed": sum(1 for r in runs if not r.succeeded),
            # a run both controllers completed (its Event, metrics and request ended twice): must be 0
            "completed_twice": len(runs) - len({r.run_id for r in runs}),
            "workloads": len(workloads), "restarted_once": sum(1 for d in deltas if d == 1),
            "restarted_more": sum(1 for d in deltas if d > 1), "loadavg": load_average()}


def measure(handle: le.LabHandle, n: int, per_workload: int, namespaces: int, interval: float,
            skip_floor: bool, timeout: float, eso: str, protocol: bool = False,
            variants: tuple[frozenset[str], ...] = ()) -> dict[str, Any]:
    world, names, setup_s = _world(handle, n, per_workload, namespaces, timeout)
    watch = le.SecretWatch(world.api)
    watch.start()
    try:
        floor_r = None
        if not skip_floor:
            le.log("floor: raw Vault writes, force-syncs, ESO, patches")
            floor_r = floor(world, watch, names, timeout)
            le.log(f"floor: {floor_r['total']:.1f}s (load {load_average()})")
        protocol_r = None
        if protocol:
            le.log("protocol floor: chamberlain's requests, made by raw clients")
            protocol_r = protocol_floor(world, watch, names, timeout)
            le.log(f"protocol floor: {protocol_r['total']:.1f}s (load {load_average()})")
        variant_rs = []
        for without in variants:
            le.log(f"protocol floor without {', '.join(sorted(without))}")
            variant_rs.append(protocol_floor(world, watch, names, timeout, without))
            le.log(f"protocol floor without {', '.join(sorted(without))}: {variant_rs[-1]['total']:.1f}s "
                   f"(load {load_average()})")
        le.log(f"controller: {n} requests, one batch")
        ctrl = controller_batch(world, watch, names, interval, timeout)
        le.log(f"controller: {ctrl['total']:.1f}s in {ctrl['ticks']} ticks (load {load_average()})")
    finally:
        watch.stop()
        world.close()
    once = (ctrl["failed"] == 0 and ctrl["restarted_once"] == ctrl["workloads"]
            and ctrl["patches"] == ctrl["workloads"])
    ratio = ctrl["total"] / floor_r["total"] if floor_r else None
    timed = n >= GOAL_SIZE  # the seconds goal is for 2,000 secrets
    return {
        "secrets": n, "workloads": ctrl["workloads"], "per_workload": per_workload, "namespaces": namespaces,
        "setup_seconds": round(setup_s, 1), "floor": floor_r, "controller": ctrl,
        "ratio": ratio, "protocol_floor": protocol_r, "protocol_variants": variant_rs,
        "protocol_ratios": _protocol_ratios(ctrl, floor_r, protocol_r),
        "eso": eso,
        "loadavg": load_average(),
        "goal": {"seconds": GOAL_SECONDS if timed else None, "ratio": GOAL_RATIO, "restarted_once": once,
                 "met": once and (not timed or ctrl["total"] <= GOAL_SECONDS)
                 and (ratio is None or n < SMOKE_BELOW or ratio <= GOAL_RATIO)},
    }


def _protocol_ratios(ctrl: dict[str, Any], floor_r: dict[str, Any] | None,
                     protocol_r: dict[str, Any] | None) -> dict[str, float] | None:
    """controller / protocol floor (chamberlain's code around its requests) and protocol floor / naive floor (the
    requests themselves); their product is the headline ratio when both floors ran."""
    if protocol_r is None:
        return None
    out = {"controller_to_protocol": ctrl["total"] / protocol_r["total"]}
    if floor_r is not None:
        out["protocol_to_naive"] = protocol_r["total"] / floor_r["total"]
    return out


def table(r: dict[str, Any]) -> str:
    c, f = r["controller"], r["floor"]
    lines = [f"{r['secrets']} secrets -> {r['workloads']} workloads ({r['per_workload']} secrets each, "
             f"{r['namespaces']} namespaces); {r['eso']}; load average at the end {r.get('loadavg')} on "
             f"{le.cpu_count()} CPUs", ""]
    head = f"{'':<44} {'seconds':>8}"
    lines += [head, "-" * len(head)]
    if f:
        lines += [f"{'floor: naive raw clients, total':<44} {f['total']:>8.2f}",
                  f"{'  Vault writes + metadata (2 x N requests)':<44} {f['vault']:>8.2f}",
                  f"{'  force-sync annotations (N patches)':<44} {f['annotate']:>8.2f}",
                  f"{'  then waiting for ESO to sync all':<44} {f['eso_wait']:>8.2f}",
                  f"{'  (ESO: first annotation -> last synced)':<44} "
                  f"{f['eso_last_synced_after_first_annotation']:>8.2f}",
                  f"{'  workload patches':<44} {f['patches']:>8.2f}"]
    p = r.get("protocol_floor")
    if p:
        lines += [f"{'protocol floor: its requests, raw clients':<44} {p['total']:>8.2f}",
                  f"{'  all promoted and force-synced':<44} {p['promoted']:>8.2f}",
                  f"{'  then all propagated (Secrets polled)':<44} {p['propagated']:>8.2f}",
                  f"{'  then workloads restarted':<44} {p['restarted']:>8.2f}",
                  f"{'  then all finished (ledger in ' + str(p['ledger_groups']) + ' groups)':<44} "
                  f"{p['finished']:>8.2f}",
                  f"{'  (published after the last run ended)':<44} {p['published_after']:>8.2f}"]
    for v in r.get("protocol_variants") or ():
        to_naive = f" ({v['total'] / f['total']:.2f} x the floor)" if f else ""
        lines.append(f"protocol floor without {', '.join(v['without'])}: {v['total']:.2f} s{to_naive}; CPU-s "
                     + ", ".join(f"{k} {x:.1f}" for k, x in v["cpu_seconds"].items() if x >= 0.5))
    lines.append(f"{'controller: all queued -> all finished':<44} {c['total']:>8.2f}")
    for label in PHASES:
        lines.append(f"{'  ' + label:<44} {c['phases'][label]:>8.2f}")
    if r["ratio"] is not None:
        lines.append(f"{'ratio controller/floor':<44} {r['ratio']:>8.2f}")
    for key, label in (("protocol_to_naive", "  of it: protocol floor/floor"),
                       ("controller_to_protocol", "  of it: controller/protocol floor")):
        if (r.get("protocol_ratios") or {}).get(key) is not None:
            lines.append(f"{label:<44} {r['protocol_ratios'][key]:>8.2f}")
    lines += ["", "where the controller's time goes (wall clock after the last request; thread-seconds last):"]
    for label, value in c["breakdown"].items():
        lines.append(f"  {label:<54} {value:>8.2f}")
    lines += ["",
              f"ticks: {c['ticks']} ({', '.join(f'{t:.1f}' for t in c['tick_seconds'][:6])} s); warm-up tick "
              f"{c['warmup_tick']:.1f} s; runs {c['runs']}, failed {c['failed']}, retried {c['retried']}",
              f"restarts: {c['patches']} pod-template patches over {c['workloads']} workloads, "
              f"{c['restarted_once']} restarted exactly once, {c['restart_batches']} batch token(s)",
              f"Vault calls during the batch: {c['vault_calls_in_batch']} "
              f"({c['vault_calls_in_batch'] / max(r['secrets'], 1):.1f} per secret); by time:"]
    for row in c["vault_calls"][:8]:
        lines.append(f"  {row['operation']:<24} {row['path']:<16} {row['calls']:>8} calls {row['seconds']:>8.2f} s")
    lines.append("Kubernetes calls by time:")
    for row in c["kube_calls"][:6]:
        lines.append(f"  {row['operation']:<34} {row['calls']:>8} calls {row['seconds']:>8.2f} s")
    lines.append("CPU seconds per process, all queued -> all finished (the floor's in brackets, the protocol "
                 "floor's in braces, each its own run): "
                 + ", ".join(f"{name} {used:.1f}" + (f" [{f['cpu_seconds'].get(name, 0.0):.1f}]" if f else "")
                             + (f" {{{p['cpu_seconds'].get(name, 0.0):.1f}}}" if p else "")
                             for name, used in c["cpu_seconds"].items()))
    lines.extend(f"failure: {x}" for x in c["failures"])
    lines.extend(f"warning: {x}" for x in c["warnings"])
    lines.extend(f"note: {n}" for n in c["notes"])
    verdict = "meets" if r["goal"]["met"] else "MISSES"
    bound = (f"<= {GOAL_SECONDS:g} s" if r["goal"]["seconds"] is not None
             else f"(the {GOAL_SECONDS:g} s goal is for {GOAL_SIZE} secrets)")
    lines.append(f"goal: {r['secrets']} rotations {bound}, ratio <= {GOAL_RATIO:g}, each workload restarted once: "
                 f"{verdict} ({c['total']:.1f} s, ratio {_num(r['ratio'])}, {c['restarted_once']}/{c['workloads']} "
                 f"once; load {r['loadavg']})")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def figures_of(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The contract's ``figures`` (at the largest size run) and ``growth`` (over the sizes run)."""
    r = max(results, key=lambda x: x["secrets"])
    c, f, n = r["controller"], r["floor"], r["secrets"]
    smoke = n < SMOKE_BELOW
    floor_total = f["total"] if f else None
    b = c["breakdown"]
    note = (f"{n} secrets -> {c['workloads']} workloads; {r['eso']}; Vault phase {b[VAULT_PHASE]:.1f} s, "
            f"ESO window {b[ESO_WINDOW]:.1f} s, after ESO {b[AFTER_ESO]:.1f} s"
            + (f"; floor's ESO wait {f['eso_wait']:.1f} s" if f else ""))
    figs = [
        figure("P4", f"compromise: rotate {n} secrets -> {c['workloads']} workloads (real ESO)",
               goal=f"<= {GOAL_SECONDS:g} s at {GOAL_SIZE}", measured=round(c["total"], 2), unit="s",
               floor=None if floor_total is None else round(floor_total, 2),
               floor_name="raw clients: same writes, force-syncs, patches; same ESO",
               met=(c["total"] <= GOAL_SECONDS) if n >= GOAL_SIZE else None, note=note),
        figure("P4-ratio", f"compromise: controller / floor at {n} secrets", goal=f"<= {GOAL_RATIO:g}",
               measured=None if r["ratio"] is None else round(r["ratio"], 3), unit="x", ratio=r["ratio"],
               met=None if r["ratio"] is None or smoke else r["ratio"] <= GOAL_RATIO,
               note="floor not measured (--skip-floor)" if f is None else ""),
        figure("P4-restart", f"compromise: workloads restarted exactly once at {n} secrets",
               goal=f"{c['workloads']} of {c['workloads']}", measured=c["restarted_once"], unit="workloads",
               met=r["goal"]["restarted_once"],
               note=f"{c['patches']} pod-template patches, {c['restart_batches']} batch token(s), "
                    f"{c['failed']} runs failed"),
    ]
    p, split = r.get("protocol_floor"), r.get("protocol_ratios") or {}
    if p:
        naive = split.get("protocol_to_naive")
        figs.append(figure(
            "P4-protocol", f"compromise: controller / protocol floor at {n} secrets", goal="report",
            measured=round(c["total"], 2), unit="s", floor=round(p["total"], 2),
            floor_name="raw clients making chamberlain's own requests (benchmarks/_protocol_floor.py)",
            note=("protocol floor / naive floor " + ("n/a" if naive is None else f"{naive:.2f}")
                  + ": what the protocol's requests cost before any chamberlain code")))
    ordered = sorted(results, key=lambda x: x["secrets"])
    sizes = [x["secrets"] for x in ordered]
    curves = [growth("P4", "controller: all queued -> all finished", "s", sizes,
                     [round(x["controller"]["total"], 2) for x in ordered])]
    if all(x["floor"] for x in ordered):
        curves.append(growth("P4", "floor: raw clients", "s", sizes, [round(x["floor"]["total"], 2) for x in ordered]))
    return figs, curves


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(x.strip() for x in text.split(",") if x.strip())
    unknown = parts - PARTS.keys()
    if not parts or unknown:
        raise argparse.ArgumentTypeError(f"--protocol-without takes parts among {', '.join(sorted(PARTS))}, "
                                         f"comma separated, not {text!r}")
    return parts


def _stop_at(text: str) -> float | str:
    if text == "restart":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stop-at takes seconds or 'restart', not {text!r}") from None


def sizes_of(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--secrets takes sizes separated by commas, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--secrets: every size must be at least 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=sizes_of, default=[200, 1000, 2000],
                        help="batch sizes, comma separated (default 200,1000,2000)")
    parser.add_argument("--per-workload", type=int, default=10, help="secrets feeding each workload")
    parser.add_argument("--namespaces", type=int, default=10, help="consumer namespaces (one SecretStore each)")
    parser.add_argument("--interval", type=float, default=1.0, help="controller tick interval (CLI default 1 s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds per phase")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--protocol-floor", action="store_true",
                        help="also measure the protocol floor: chamberlain's own requests made by raw clients "
                             "(benchmarks/_protocol_floor.py), which splits the ratio into protocol and code")
    parser.add_argument("--protocol-without", action="append", default=[], type=_parts, metavar="PART,...",
                        help="also measure the protocol floor without these parts, to price a change of the "
                             "protocol before making it (repeatable, one variant each): "
                             + "; ".join(f"{k}: {v}" for k, v in PARTS.items()))
    parser.add_argument("--eso-concurrent", type=int, default=None,
                        help="restart the lab's ESO with --concurrent=N for the run (default: as the lab starts it)")
    parser.add_argument("--stop-at", type=_stop_at, default=None, metavar="SECONDS|restart",
                        help="instead: stop the controller gracefully (SIGTERM's path) this many seconds into the "
                             "batch, or when its restart pass begins; report how long the stop took and let a "
                             "second controller finish the batch")
    parser.add_argument("--lab-dir", type=Path, help="reuse the dev lab running there (left running)")
    parser.add_argument("--port-offset", type=int, default=4000, help="port offset of the lab this starts")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    results = []
    with le.running_lab(args.lab_dir, args.port_offset) as handle:
        if args.eso_concurrent is not None:
            le.restart_eso(handle.lab_dir, args.eso_concurrent)
        try:
            flags = le.eso_flags(handle.lab_dir)
            eso = "ESO " + ", ".join(f"--{k}={flags.get(k, 'default')}" for k in ("concurrent", "client-qps",
                                                                                 "client-burst"))
            if args.stop_at is not None:
                stops = [stopped_batch(handle, n, args.per_workload, args.namespaces, args.interval, args.timeout,
                                       args.stop_at) for n in args.secrets]
                print(json.dumps(stops, indent=2, sort_keys=True), flush=True)
                return 0 if all(x["runs_failed"] == 0 and x["restarted_more"] == 0 and x["completed_twice"] == 0
                                and x["runs_finished"] == x["secrets"] for x in stops) else 1
            for n in args.secrets:
                le.log(f"size {n}: {n} secrets, {args.per_workload} per workload ({eso}; load {load_average()})")
                results.append(measure(handle, n, args.per_workload, args.namespaces, args.interval,
                                       args.skip_floor, args.timeout, eso, args.protocol_floor,
                                       tuple(args.protocol_without)))
                if args.output == "text":
                    print(table(results[-1]), flush=True)
                    print(flush=True)
        finally:
            if args.eso_concurrent is not None and args.lab_dir is not None:  # a reused lab gets its ESO back
                le.restart_eso(handle.lab_dir, None)
    figs, curves = figures_of(results)
    if args.output == "json":
        largest = max(results, key=lambda x: x["secrets"])
        json.dump({"cpus": le.cpu_count(), **largest, "sizes": results, "figures": figs, "growth": curves},
                  sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        for g in curves:
            print(f"growth of {g['series']}: sizes {g['sizes']}, seconds {g['values']}, "
                  f"per-item growth {g['per_item_growth']}")
    return 0 if all(r["goal"]["met"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
