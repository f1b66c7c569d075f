"""Benchmark: one batch of 500 rotations feeding 50 workloads, through the controller, Vault and the real ESO.

The goal (benchmarks/README.md): at most 60 s from all 500 requests queued to all 500 runs finished and recorded
(ledger entry written), and every workload restarted exactly once. Each workload (a Deployment: the lab has no
kubelet, so a restart is the pod-template patch ``kubectl rollout restart`` makes) is fed by 10 of the secrets.

The controller is built as ``chamberlain controller run`` builds it and ticked exactly as its loop ticks it
(``tick()``, then ``pause(interval)``), after one warm-up tick (adopting runs, the first time-trigger evaluation,
the first annotation poll). The 500 manual requests are queued between two ticks; the clock starts when the last
one is queued. Restarts are counted from the Deployments themselves: ``metadata.generation`` moves by one per
pod-template patch, and ``chamberlain.dev/restart-batch`` names the batch.

The floor, measured first in the same run on the same secrets, consumers and ESO: the raw minimum the same work
needs when done naively with plain clients (hvac, kubernetes): 500 x (KV write + custom_metadata with the new
marker, one request each), 500 force-sync annotations, waiting (a metadata-only watch) until ESO has synced all
500 Secrets, 50 pod-template patches.

Usage:
    /work/venv/bin/python benchmarks/bench_batch_rotation.py                  # 500 secrets, 50 workloads; a table
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --secrets 100 -o json
    /work/venv/bin/python benchmarks/bench_batch_rotation.py --lab-dir /tmp/bench-lab   # reuse a running dev lab
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kubernetes

import _lab_env as le
from chamberlain import wellknown as wk
from chamberlain.triggers import manual
from chamberlain.values.generate import generate_values
from chamberlain.values.markers import version_marker

GOAL_SECONDS = 60.0
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
            "patches": t_end - t_synced}


def controller_batch(world: le.World, watch: le.SecretWatch, names: list[str], interval: float,
                     timeout: float) -> dict[str, Any]:
    wiring = le.make_controller(world, world.scope)
    controller = wiring.controller
    apps = kubernetes.client.AppsV1Api(world.api)
    workloads = world.workloads()
    warm = time.monotonic()
    controller.tick()  # adopt, first evaluation, first annotation poll: a fresh controller's start, not the batch
    warm_s = time.monotonic() - warm
    before = _generations(apps, workloads)
    calls_before = sum(r["calls"] for r in wiring.kv.table())
    now = datetime.now(UTC)
    requests = [manual(n, "bench batch rotation", now) for n in names]
    for request in requests:
        controller.request(request)
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

    return {
        "total": t_end - t0,
        "ticks": ticks,
        "tick_seconds": [round(t, 3) for t in tick_seconds],
        "warmup_tick": warm_s,
        "runs": len(runs),
        "failed": len(failed),
        "failures": sorted({f"{r.stage}: {r.last_error}" for r in failed})[:5],
        "retried": sum(1 for r in runs if r.attempts),
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
            "all restarted": last("run step", stage="restarted"),
            "first finished": first("run finished"),
            "all finished": last("run finished"),
        },
        "vault_calls": wiring.kv.table(),
        "vault_calls_in_batch": sum(r["calls"] for r in wiring.kv.table()) - calls_before,
        "kube_calls": wiring.kube.table(),
        "warnings": [f"{e}: {kw}" for e, kw in wiring.log.warnings()[:5]],
        "notes": wiring.notes,
    }


def measure(handle: le.LabHandle, n: int, per_workload: int, namespaces: int, interval: float,
            skip_floor: bool, timeout: float) -> dict[str, Any]:
    shape = le.Shape(n, per_workload=per_workload, namespaces=namespaces, prefix=f"b{secrets.token_hex(2)}")
    workdir = Path(tempfile.mkdtemp(prefix="chamberlain-bench-batch-"))
    setup = time.monotonic()
    try:
        world = le.build_world(handle, workdir, [shape], timeout=timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    setup_s = time.monotonic() - setup
    names = [shape.name(i) for i in range(n)]
    watch = le.SecretWatch(world.api)
    watch.start()
    try:
        floor_r = None
        if not skip_floor:
            le.log("floor: raw Vault writes, force-syncs, ESO, patches")
            floor_r = floor(world, watch, names, timeout)
            le.log(f"floor: {floor_r['total']:.1f}s")
        le.log(f"controller: {n} requests, one batch")
        ctrl = controller_batch(world, watch, names, interval, timeout)
        le.log(f"controller: {ctrl['total']:.1f}s in {ctrl['ticks']} ticks")
    finally:
        watch.stop()
        world.close()
    ok = (ctrl["total"] <= GOAL_SECONDS and ctrl["failed"] == 0 and ctrl["restarted_once"] == ctrl["workloads"]
          and ctrl["patches"] == ctrl["workloads"])
    return {
        "secrets": n, "workloads": ctrl["workloads"], "per_workload": per_workload, "namespaces": namespaces,
        "setup_seconds": round(setup_s, 1), "floor": floor_r, "controller": ctrl,
        "ratio": ctrl["total"] / floor_r["total"] if floor_r else None,
        "eso": le.eso_concurrency(),
        "goal": {"seconds": GOAL_SECONDS, "met": ok},
    }


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
    lines.append(f"{'controller: all queued -> all finished':<44} {c['total']:>8.2f}")
    for label in PHASES:
        lines.append(f"{'  ' + label:<44} {c['phases'][label]:>8.2f}")
    if r["ratio"] is not None:
        lines.append(f"{'ratio controller/floor':<44} {r['ratio']:>8.2f}")
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
    lines.extend(f"failure: {x}" for x in c["failures"])
    lines.extend(f"warning: {x}" for x in c["warnings"])
    lines.extend(f"note: {n}" for n in c["notes"])
    verdict = "meets" if r["goal"]["met"] else "MISSES"
    lines.append(f"goal: {r['secrets']} rotations in <= {GOAL_SECONDS:g} s, each workload restarted once: {verdict} "
                 f"({c['total']:.1f} s, {c['restarted_once']}/{c['workloads']} once)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=500)
    parser.add_argument("--per-workload", type=int, default=10, help="secrets feeding each workload")
    parser.add_argument("--namespaces", type=int, default=10, help="consumer namespaces (one SecretStore each)")
    parser.add_argument("--interval", type=float, default=1.0, help="controller tick interval (CLI default 1 s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds per phase")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--lab-dir", type=Path, help="reuse the dev lab running there (left running)")
    parser.add_argument("--port-offset", type=int, default=4000, help="port offset of the lab this starts")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    with le.running_lab(args.lab_dir, args.port_offset) as handle:
        result = measure(handle, args.secrets, args.per_workload, args.namespaces, args.interval,
                         args.skip_floor, args.timeout)
        result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.output == "json":
        json.dump({"cpus": le.cpu_count(), **result}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(result))
    return 0 if result["goal"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
