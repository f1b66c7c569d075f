"""Benchmark: propagation latency, rotation trigger -> consumer Secret updated, through the real ESO in the lab.

The goal (benchmarks/README.md): p95 <= 5 s (ESO's own refresh interval is 1 h). The controller runs as
``chamberlain controller run`` runs it (its loop on a thread, a tick every ``--interval`` s); a manual request is
queued at a random moment of the tick cycle and the clock stops when a metadata-only watch sees the consumer
Secret carry the run's new version marker. So the number includes the wait for the next tick, the workflow's
Vault steps, the force-sync, and ESO.

The floor, measured in the same run against the same SecretStore, interleaved with the controller's samples: a
new value (and its marker) written to Vault directly, then at t0 a raw ``force-sync`` annotation on the
ExternalSecret, stopped by the same watch: what ESO itself needs to re-sync one ExternalSecret.

Usage:
    /work/venv/bin/python benchmarks/bench_propagation.py                     # 30 rotations, own lab; a table
    /work/venv/bin/python benchmarks/bench_propagation.py -n 50 -o json
    /work/venv/bin/python benchmarks/bench_propagation.py --lab-dir /tmp/bench-lab   # reuse a running dev lab
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kubernetes

import _lab_env as le
from _figures import figure
from chamberlain import wellknown as wk
from chamberlain.triggers import manual
from chamberlain.values.generate import generate_values
from chamberlain.values.markers import version_marker

GOAL_P95_SECONDS = 5.0
GOAL_P95_SCALE = 0.2  # issue 16: trigger -> consumer Secret p95 with a fleet of intents loaded
SECRETS = 4  # rotated round-robin (controller) and as many for the floor, all in one namespace and store
# The lab Platform's limits.triggerInterval (_lab_env): a manual trigger of a secret within it of that secret's last
# run start is refused. With 4 secrets and random waits under a second, a secret's turn came round inside it now
# and then (a CI run failed on it), so each request waits out the interval first (before its clock starts).
TRIGGER_INTERVAL_S = 1.0


def _floor_sample(world: le.World, watch: le.SecretWatch, custom_api: Any, name: str,
                  custom: dict[str, str], timeout: float) -> float:
    """Value + marker written to Vault directly, then t0, then a raw force-sync; seconds until the watch sees
    the consumer Secret carry the marker."""
    placed = world.scope.placed[name]
    generators = placed.intent.spec.source.generate
    assert generators is not None
    values = generate_values(generators)
    marker = version_marker(placed.vault.full, values)
    client = world.handle.hvac()
    client.secrets.kv.v2.create_or_update_secret(path=placed.vault.path, secret=values, mount_point=le.MOUNT)
    custom[wk.VALUE_MARKER] = marker
    client.secrets.kv.v2.update_metadata(path=placed.vault.path, custom_metadata=custom, mount_point=le.MOUNT)
    values.clear()
    ns, secret = world.consumer(name)
    t0 = time.monotonic()
    custom_api.patch_namespaced_custom_object(
        "external-secrets.io", "v1", ns, "externalsecrets", secret,
        {"metadata": {"annotations": {wk.ESO_FORCE_SYNC: f"floor-{secrets.token_hex(6)}"}}})
    got = watch.wait({(ns, secret): marker}, timeout)
    if not got:
        raise SystemExit(f"floor: {ns}/{secret} did not carry the new marker within {timeout:.0f}s")
    return got[(ns, secret)] - t0


def measure(handle: le.LabHandle, n: int, interval: float, warmup: int, seed: int | None) -> dict[str, Any]:
    rng = random.Random(seed)
    tag = secrets.token_hex(2)
    ctrl_shape = le.Shape(SECRETS, per_workload=SECRETS, namespaces=1, prefix=f"p{tag}")
    floor_shape = le.Shape(SECRETS, per_workload=SECRETS, namespaces=1, prefix=f"f{tag}")
    workdir = Path(tempfile.mkdtemp(prefix="chamberlain-bench-prop-"))
    try:
        world = le.build_world(handle, workdir, [ctrl_shape, floor_shape])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ctrl_names = [ctrl_shape.name(i) for i in range(SECRETS)]
    floor_names = [floor_shape.name(i) for i in range(SECRETS)]
    intents = {name: world.scope.placed[name].intent for name in ctrl_names}
    scope = le.scope_of(world.scope.platform, intents, le.ENV, le.CLUSTER)
    wiring = le.make_controller(world, scope)
    controller = wiring.controller
    custom_api = kubernetes.client.CustomObjectsApi(world.api)
    # The floor's metadata: what seeding wrote (Vault replaces custom_metadata as a whole).
    floor_custom = {name: world.custom(name) for name in floor_names}
    watch = le.SecretWatch(world.api)
    watch.start()
    stop = threading.Event()
    loop = threading.Thread(target=controller.serve, args=(stop, interval), name="controller", daemon=True)
    loop.start()
    timeout = 180.0
    rows: list[dict[str, float]] = []
    floor: list[float] = []
    requested: dict[str, float] = {}  # each secret's last request (monotonic)
    try:
        for i in range(warmup + n):
            # --- the controller: a manual request at a random point of the tick cycle
            name = ctrl_names[i % SECRETS]
            ns, secret = world.consumer(name)
            wait = requested.get(name, float("-inf")) + TRIGGER_INTERVAL_S + 0.1 - time.monotonic()
            time.sleep(max(0.0, wait) + rng.uniform(0, interval))
            done_before = len(controller.finished)
            t0 = requested[name] = time.monotonic()
            controller.request(manual(name, f"bench propagation {i}", datetime.now(UTC)))
            deadline = t0 + timeout
            while len(controller.finished) == done_before:
                if time.monotonic() > deadline:
                    raise SystemExit(f"controller: run {i} of {name} did not finish within {timeout:.0f}s "
                                     f"(warnings: {wiring.log.warnings()[-3:]})")
                time.sleep(0.005)
            finished = time.monotonic()
            run = controller.finished[-1]
            if not run.succeeded or run.pending_marker is None:
                raise SystemExit(f"controller: run {run.run_id} ended {run.stage}: {run.last_error}")
            seen = watch.wait({(ns, secret): run.pending_marker}, 30)
            if not seen:
                raise SystemExit(f"controller: {ns}/{secret} never carried the marker of {run.run_id}")
            started = wiring.log.times("run started", run=run.run_id)
            promoted = wiring.log.times("run step", run=run.run_id, stage="promoted")
            row = {
                "latency": seen[(ns, secret)] - t0,
                "to_start": (started[0] - t0) if started else float("nan"),
                "start_to_promoted": (promoted[0] - started[0]) if started and promoted else float("nan"),
                "promoted_to_secret": (seen[(ns, secret)] - promoted[0]) if promoted else float("nan"),
                "start_to_secret": (seen[(ns, secret)] - started[0]) if started else float("nan"),
                "run_finished": finished - t0,
            }
            # --- the floor, right after, same store and namespace
            floor_name = floor_names[i % SECRETS]
            f = _floor_sample(world, watch, custom_api, floor_name, floor_custom[floor_name], timeout)
            if i >= warmup:
                rows.append(row)
                floor.append(f)
            label = f"warm-up {i + 1}" if i < warmup else f"{i + 1 - warmup:>3}/{n}"
            le.log(f"{label}: controller "
                   f"{row['latency']:.3f}s (tick wait {row['to_start']:.3f}, vault steps "
                   f"{row['start_to_promoted']:.3f}, force-sync+ESO {row['promoted_to_secret']:.3f}), floor {f:.3f}s")
    finally:
        stop.set()
        loop.join(30)
        watch.stop()
        world.close()
    latency = le.summary([r["latency"] for r in rows])
    own = le.summary([r["start_to_secret"] for r in rows])
    floor_s = le.summary(floor)
    parts = ("to_start", "start_to_promoted", "promoted_to_secret", "start_to_secret", "run_finished")
    return {
        "rotations": n,
        "interval": interval,
        "controller": latency,
        "floor": floor_s,
        "controller_after_tick": own,
        "ratio": {"p50": latency["p50"] / floor_s["p50"], "p95": latency["p95"] / floor_s["p95"]},
        "ratio_after_tick": {"p50": own["p50"] / floor_s["p50"], "p95": own["p95"] / floor_s["p95"]},
        "breakdown_p50": {k: le.summary([r[k] for r in rows])["p50"] for k in parts},
        "breakdown_p95": {k: le.summary([r[k] for r in rows])["p95"] for k in parts},
        "vault_calls_per_rotation": round(sum(r["calls"] for r in wiring.kv.table()) / (n + warmup), 1),
        "vault_calls": wiring.kv.table(),
        "kube_calls": wiring.kube.table(),
        "notes": wiring.notes,
        "eso": le.eso_concurrency(),
        "samples": rows,
        "floor_samples": floor,
        "goal": {"p95_seconds": GOAL_P95_SECONDS, "met": latency["p95"] <= GOAL_P95_SECONDS},
    }


def table(r: dict[str, Any]) -> str:
    c, f, o = r["controller"], r["floor"], r["controller_after_tick"]
    head = f"{'':<40} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"
    lines = [head, "-" * len(head),
             f"{'controller: trigger -> Secret updated':<40} {c['p50']:>7.3f} {c['p95']:>7.3f} {c['max']:>7.3f}",
             f"{'  of it run started -> Secret updated':<40} {o['p50']:>7.3f} {o['p95']:>7.3f} {o['max']:>7.3f}",
             f"{'floor: force-sync -> Secret updated':<40} {f['p50']:>7.3f} {f['p95']:>7.3f} {f['max']:>7.3f}",
             f"{'ratio controller/floor':<40} {r['ratio']['p50']:>7.2f} {r['ratio']['p95']:>7.2f}",
             f"{'ratio (run started -> Secret)/floor':<40} {r['ratio_after_tick']['p50']:>7.2f} "
             f"{r['ratio_after_tick']['p95']:>7.2f}",
             "",
             f"controller breakdown (p50 / p95 s), tick every {r['interval']:g} s:"]
    labels = {"to_start": "queued -> run started (tick wait)", "start_to_promoted": "run started -> promoted (Vault)",
              "promoted_to_secret": "promoted -> Secret updated (ESO)",
              "start_to_secret": "run started -> Secret updated",
              "run_finished": "queued -> run finished (ledgered)"}
    for k, label in labels.items():
        lines.append(f"  {label:<40} {r['breakdown_p50'][k]:>7.3f} {r['breakdown_p95'][k]:>7.3f}")
    lines.append(f"Vault calls per rotation: {r['vault_calls_per_rotation']}; {r['eso']}; "
                 f"load average at the end {r.get('loadavg')} on {le.cpu_count()} CPUs")
    lines.extend(f"note: {n}" for n in r["notes"])
    verdict = "meets" if r["goal"]["met"] else "MISSES"
    lines.append(f"goal: p95 <= {GOAL_P95_SECONDS:g} s over {r['rotations']} rotations: {verdict} "
                 f"({c['p95']:.2f} s)")
    return "\n".join(lines)


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary rows for benchmarks/run: p95 against the issue-16 goal (0.2 s) and ESO's own force-sync."""
    c, f = r["controller"], r["floor"]
    return [figure("P3", f"trigger -> consumer Secret p95, {r['rotations']} rotations", goal=f"<= {GOAL_P95_SCALE:g} s",
                   measured=round(c["p95"], 3), unit="s", floor=round(f["p95"], 3),
                   floor_name="ESO force-sync p95", met=c["p95"] <= GOAL_P95_SCALE,
                   note=f"p50 {c['p50']:.3f} s; {r['vault_calls_per_rotation']} Vault calls per rotation")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rotations", type=int, default=30, help="measured rotations (>= 20)")
    parser.add_argument("--warmup", type=int, default=2, help="rotations before measuring")
    parser.add_argument("--interval", type=float, default=1.0, help="controller tick interval (CLI default 1 s)")
    parser.add_argument("--seed", type=int, help="seed of the trigger jitter")
    parser.add_argument("--lab-dir", type=Path, help="reuse the dev lab running there (left running)")
    parser.add_argument("--port-offset", type=int, default=4000, help="port offset of the lab this starts")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.rotations < 20:
        parser.error("at least 20 rotations")
    with le.running_lab(args.lab_dir, args.port_offset) as handle:
        result = measure(handle, args.rotations, args.interval, args.warmup, args.seed)
        result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.output == "json":
        json.dump({"cpus": le.cpu_count(), **result, "figures": figures(result), "growth": []}, sys.stdout,
                  indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(result))
    return 0 if result["goal"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
