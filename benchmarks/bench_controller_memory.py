"""Benchmark: the controller's memory (peak RSS) with 10k intents.

The goal (benchmarks/README.md): at most 150 MiB. A 10k-intent repository is generated with the generator of
bench_validate_render (imported, not copied). A fresh subprocess then does what ``chamberlain controller run``
does (cli/controller.py ``run_cmd``): it imports the same modules (the CLI, the real Kubernetes and Vault client
modules), calls the same ``load_scope`` (load and validate the repository, place the intents, keep only the
scope; the repository is garbage when it returns), and wires the controller with the same ``controller.app.wire``
(queue, metrics, annotation trigger, leader election, run publisher). Vault is a FakeKV seeded with a value and
chamberlain's custom_metadata for every secret in scope; the cluster is a FakeKube holding every SecretIntent as a
custom resource (each annotation poll deep-copies the list, as deserializing the API's answer does) and simulating
ESO on force-sync. What the fakes are seeded with is computed by the parent process and handed to the child as
JSON lines, so the child holds no repository but the one ``load_scope`` loads and drops. Then ticks: each
evaluates the time trigger over every secret (the evaluation interval is set to 0 so every tick does), polls the
annotations, and one tick drives a batch of manual rotations to completion.

Peak RSS is ``VmHWM`` from /proc/self/status (``ru_maxrss`` elsewhere). The fakes live in the measured process,
so the report also gives what they hold (tracemalloc, in a separate run: tracing inflates RSS) and the controller
without them.

The floor: a subprocess importing the same modules that only parses the same YAML files (``yaml.load_all`` with
the C loader) and keeps the documents: no models.

``--from-cluster``: the controller as ``controller run --from-cluster`` builds its scope instead: the fakes are
seeded first (the FakeKube then holds the Platform, the RotationPolicies and, as render would apply them to the
cluster, the SecretIntents present on it), and :class:`chamberlain.controller.source.ClusterSource` lists them
(in pages), parses and validates them and builds the scope in the measured process (no loader child); the
controller is wired with the watched SecretIntents (:class:`~chamberlain.controller.watched.IntentObjects`) as
``run_from_cluster`` wires it. The real API server and RSS of that mode: ``bench_controller_watch.py``.

Usage:
    /work/venv/bin/python benchmarks/bench_controller_memory.py                 # 10k intents; a table
    /work/venv/bin/python benchmarks/bench_controller_memory.py -n 1000,10000 -o json
    /work/venv/bin/python benchmarks/bench_controller_memory.py --top 30        # more tracemalloc lines
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _figures import figure, growth  # noqa: E402

GOAL_MIB = 150.0
ENVIRONMENT, CLUSTER = "prod", "prod-a"
BATCH = 100  # manual rotations driven in one tick
TICKS = 3
STAGES = ("imports", "scope (repository dropped)", "fakes seeded", "controller built",
          *(f"tick {t + 1}" for t in range(TICKS)))


# ------------------------------------------------------------------------------------------------ the child


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_mib() -> float:
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024


def _peak_mib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = raw // 1024 if sys.platform == "darwin" else raw
    return kib / 1024


def _import_everything() -> None:
    """The modules the controller process imports (the same list for the floor)."""
    import yaml  # noqa: F401

    import chamberlain.authority.fake
    import chamberlain.authority.session  # run_cmd: the Vault login (hvac)
    import chamberlain.authority.vault
    import chamberlain.cli.controller
    import chamberlain.cli.main  # the `chamberlain` entry point
    import chamberlain.controller
    import chamberlain.controller.app
    import chamberlain.controller.logs
    import chamberlain.controller.loop
    import chamberlain.intent.loader
    import chamberlain.kube.client
    import chamberlain.kube.fake
    import chamberlain.propagation
    import chamberlain.render.layout
    import chamberlain.render.naming
    import chamberlain.rotation.rotators
    import chamberlain.service
    import chamberlain.service.context  # run_cmd: LiveServers.kube (the kubernetes client)
    import chamberlain.service.controller  # run_cmd: load_scope, start
    import chamberlain.triggers
    import chamberlain.triggers.webhook  # noqa: F401


def _yaml_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.yaml"))


def child_floor(root: Path) -> dict[str, Any]:
    _import_everything()
    import yaml

    stages = {"imports": _rss_mib()}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [d for p in _yaml_files(root) for d in yaml.load_all(p.read_text(encoding="utf-8"), Loader=loader)]
    stages["yaml loaded"] = _rss_mib()
    return {"docs": len(docs), "stages": stages, "peak_mib": _peak_mib()}


class _Clock:
    """A real clock whose sleep does not sleep (the fake ESO syncs at once)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        return None


class _FakeSession:
    """The FakeKV as a logged-in Vault session (``controller.app.wire`` takes one)."""

    def __init__(self, kv: Any, environments: list[str]) -> None:
        from chamberlain.authority.fake import FakeTransit
        from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key, marker_key

        self.kv = kv
        self.session_generation = 0
        self.transit = FakeTransit()  # the ledger's signing keys and the marker keys configure would create
        for env in environments:
            self.transit.ensure_key(TRANSIT_MOUNT, ledger_key(env), "ed25519")
            self.transit.ensure_key(TRANSIT_MOUNT, marker_key(env))

    def ensure_fresh(self) -> None:
        return None


def _eso_kube(kv: Any, paths: dict[tuple[str, str], tuple[str, str]]) -> Any:
    from chamberlain import wellknown as wk
    from chamberlain.kube.api import KubeSecret
    from chamberlain.kube.fake import FakeKube

    class EsoKube(FakeKube):
        """Force-sync does what ESO does: the consumer Secret gets the latest marker (data: a placeholder)."""

        def annotate_external_secret(self, namespace: str, name: str, annotations: Any) -> None:
            super().annotate_external_secret(namespace, name, annotations)
            mount, path = paths[(namespace, name)]
            meta = kv.read_metadata(mount, path)
            self.secrets[(namespace, name)] = KubeSecret(
                namespace, name, {"v": "x"},
                annotations={wk.ANNOTATION_VERSION_MARKER: meta.custom.get(wk.VALUE_MARKER, "") if meta else ""})

    return EsoKube()


def write_seed(root: Path, seed: Path) -> None:
    """What the fakes hold, computed here (in the parent) and written as JSON lines: one line per secret in scope
    (Vault path, values, custom_metadata, consumers) and one per SecretIntent custom resource. The child reads it
    line by line, so it never holds the repository (nor a second copy of it) for the fakes' sake."""
    from chamberlain import wellknown as wk
    from chamberlain.controller.loop import scope_of
    from chamberlain.handover import metadata as md
    from chamberlain.intent.paths import effective_policy
    from chamberlain.render.layout import intent_manifest
    from chamberlain.render.topology import build_topology
    from chamberlain.service import load_valid
    from chamberlain.values.markers import version_marker

    repo = load_valid(root)
    platform = repo.platform
    assert platform is not None
    scope = scope_of(platform, {i.obj.metadata.name: i.obj for i in repo.intents}, ENVIRONMENT, CLUSTER)
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    created = "2030-01-01T00:00:00+00:00"
    ns = platform.spec.controller.namespace
    with seed.open("w", encoding="utf-8") as out:
        for name, placed in scope.placed.items():
            intent = placed.intent
            keys = sorted(intent.spec.source.generate or {}) or ["username", "password"]
            values = {k: f"{k}-{name}-0123456789abcdef0123456789" for k in keys}
            resolved = effective_policy(platform, policies, intent)
            custom = {
                wk.AUTHORITY: wk.AUTHORITY_VAULT, wk.CREATED_BY: wk.CREATED_BY_CHAMBERLAIN, wk.CREATED_AT: created,
                wk.INTENT: name, wk.ENVIRONMENT: placed.environment, wk.ORIGIN: "generated",
                wk.VALUE_MARKER: version_marker(placed.vault.full, values),
                **md.policy_metadata(resolved[0] if resolved else None, resolved[1] if resolved else None),
            }
            consumers = [[c.namespace, c.secret_name, [[w.kind, w.name] for w in c.restart]]
                         for c in intent.spec.consumers]
            out.write(json.dumps({"secret": [placed.vault.mount, placed.vault.path, values, custom, consumers]})
                      + "\n")
        # "here": render puts the intent on this cluster (clusters/<cluster>/intents: every environment it is in
        # that includes the cluster); --from-cluster seeds only those, as the namespace would hold them.
        present = {i.metadata.name for i in build_topology(platform, [p.obj for p in repo.policies],
                                                           [i.obj for i in repo.intents]).cluster_intents[CLUSTER]}
        for i in repo.intents:
            out.write(json.dumps({"cr": intent_manifest(i.obj, ns), "here": i.obj.name in present}) + "\n")
        # The Platform and the policies, as render puts them in the controller namespace (--from-cluster reads them)
        out.write(json.dumps({"cr": intent_manifest(platform, ns), "plural": "platforms"}) + "\n")
        for p in repo.policies:
            out.write(json.dumps({"cr": intent_manifest(p.obj, ns), "plural": "rotationpolicies"}) + "\n")


def child_controller(root: Path, seed: Path, trace: int, from_cluster: bool = False) -> dict[str, Any]:
    """Do what ``controller run`` does (its imports, ``load_scope``, ``wire``), seed the fakes, run ticks; RSS after
    every stage (or tracemalloc, when tracing)."""
    if trace:
        import tracemalloc

        tracemalloc.start(trace)
    _import_everything()
    from datetime import UTC, datetime

    from chamberlain import wellknown as wk
    from chamberlain.authority.fake import FakeKV
    from chamberlain.controller.app import wire
    from chamberlain.intent.model import GROUP, VERSION
    from chamberlain.kube.api import CustomResource, PodTemplateState
    from chamberlain.service.controller import load_scope
    from chamberlain.triggers import manual
    from chamberlain.triggers.annotation import PLURAL

    stages: dict[str, float] = {}
    traced: dict[str, dict[str, float]] = {}

    def stage(name: str) -> None:
        """RSS after the stage (after a collection); when tracing, the traced size and the traced peak since the
        previous stage (where a transient spike happens)."""
        gc.collect()
        stages[name] = _rss_mib()
        if trace:
            import tracemalloc

            current, peak = tracemalloc.get_traced_memory()
            traced[name] = {"mib": current / 2**20, "peak_mib": peak / 2**20}
            tracemalloc.reset_peak()

    stage("imports")
    if not from_cluster:
        # ---- what `controller run` builds: the scope, and nothing else of the repository
        scope = load_scope(root, ENVIRONMENT, CLUSTER)
        stage("scope (repository dropped)")
        peak_after_scope = _peak_mib()
    # load_scope loads in a short-lived child process: its peak is not the controller's, but a pod limit sees it
    loader_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # ---- the stand-ins for Vault and the cluster (not the controller's memory; reported separately)
    kv = FakeKV()
    paths: dict[tuple[str, str], tuple[str, str]] = {}  # filled below; the fake ESO reads it on force-sync
    kube = _eso_kube(kv, paths)
    kube.record_changes = False  # the fake's watch log would hold a second copy of every object
    crs = 0
    with seed.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if "secret" in row:
                mount, path, values, custom, consumers = row["secret"]
                version = kv.write(mount, path, values, cas=0)
                kv.update_custom_metadata(mount, path, {**custom, wk.VALUE_VERSION: str(version)})
                for c_ns, c_name, restart in consumers:
                    paths[(c_ns, c_name)] = (mount, path)
                    kube.external_secrets[(c_ns, c_name)] = {"metadata": {"name": c_name, "namespace": c_ns}}
                    for kind, w in restart:
                        kube.workloads[(kind, c_ns, w)] = PodTemplateState({}, 1)
            elif not from_cluster or row.get("here", True):
                kube.add_custom_object(CustomResource(GROUP, VERSION, row.get("plural", PLURAL)), row["cr"])
                crs += "plural" not in row
    stage("fakes seeded")
    objects = None
    if from_cluster:
        from chamberlain.controller.source import ClusterSource
        from chamberlain.controller.watched import IntentObjects

        ns = json.loads(seed.read_text(encoding="utf-8").splitlines()[-1])["cr"]["metadata"]["namespace"]
        objects = IntentObjects()  # as service.controller.run_from_cluster wires it
        built = ClusterSource(kube, ns, ENVIRONMENT, CLUSTER, _Clock(),
                              sinks={"SecretIntent": [objects]}).sync(timeout=60)
        assert built.scope is not None and not built.rejected, sorted(built.rejected)[:5]
        scope = built.scope
        stage("scope (from the cluster)")
        peak_after_scope = _peak_mib()
    # ---- the controller, as service/controller.py wires it
    clock = _Clock()
    # every tick a whole pass of the time trigger and of the status (no slices): the worst tick
    options: dict[str, Any] = {"evaluate_every": 0.0, "evaluate_slice": None, "propagation_timeout": 5.0, "poll": 0.0}
    session = _FakeSession(kv, [e.name for e in scope.platform.spec.environments])
    controller = wire(scope, session, kube, clock, identity="bench-0", objects=objects, **options)
    stage("controller built")
    tick_s = []
    for t in range(TICKS):
        if t == 1:  # one batch of manual rotations, driven to completion within the tick
            now = datetime.now(UTC)
            rotatable = [n for n, p in sorted(scope.placed.items())
                         if p.intent.spec.source.generate and p.intent.spec.target is None]
            for name in rotatable[:BATCH]:
                controller.request(manual(name, "bench memory", now))
        started = time.monotonic()
        controller.tick()
        tick_s.append(round(time.monotonic() - started, 3))
        stage(f"tick {t + 1}")
    out: dict[str, Any] = {
        "intents": crs, "intents_in_memory": len(scope.intents), "in_scope": len(scope.placed), "ticks": tick_s,
        "finished_runs": len(controller.finished),
        "failed_runs": sum(1 for r in controller.finished if not r.succeeded),
        "stages": stages, "peak_mib": _peak_mib(), "peak_after_scope_mib": peak_after_scope,
        "loader_peak_mib": round(loader_peak, 1),
        "kv_calls": dict(kv.calls),
    }
    if trace:
        import tracemalloc

        out["traced"] = traced
        out["tracemalloc"] = _attribution(tracemalloc.take_snapshot())
        out["failures"] = sorted({f"{r.stage}: {r.last_error}" for r in controller.finished if not r.succeeded})[:3]
    return out


def _attribution(final: Any) -> dict[str, Any]:
    """What is still held after the last tick: the top allocation sites, and the total per file."""
    import tracemalloc

    held = final.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    top_lines = [{"where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                  "mib": round(s.size / 2**20, 2), "blocks": s.count} for s in held.statistics("lineno")[:40]]
    by_file = [{"where": _short(s.traceback[0].filename), "mib": round(s.size / 2**20, 2), "blocks": s.count}
               for s in held.statistics("filename")[:25]]
    return {"top_lines": top_lines, "by_file": by_file}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# ------------------------------------------------------------------------------------------------ the parent


def _run_child(mode: str, root: Path, seed: Path, trace: int = 0, from_cluster: bool = False) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--repo", str(root),
            "--seed", str(seed), "--trace", str(trace), *(["--from-cluster"] if from_cluster else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure(n: int, workdir: Path, trace: int, from_cluster: bool = False) -> dict[str, Any]:
    import bench_validate_render as gen

    root = workdir / f"repo-{n}"
    seed = workdir / f"seed-{n}.jsonl"
    shape = gen.generate(root, n)
    write_seed(root, seed)
    floor = _run_child("floor", root, seed)
    ctrl = _run_child("controller", root, seed, from_cluster=from_cluster)
    traced = _run_child("controller", root, seed, trace, from_cluster) if trace else None
    out = {"n": n, "files": shape["intentFiles"], "floor": floor, "controller": ctrl, "traced": traced,
           "ratio": ctrl["peak_mib"] / floor["peak_mib"]}
    if traced is not None:
        t = traced["traced"]
        out["fakes_mib"] = t["fakes seeded"]["mib"] - t[list(t)[list(t).index("fakes seeded") - 1]]["mib"]
        out["controller_without_fakes_mib"] = ctrl["peak_mib"] - out["fakes_mib"]
    return out


def table(results: list[dict[str, Any]], top: int) -> str:
    head = (f"{'intents':>8} {'in scope':>8} {'floor MiB':>9} {'peak MiB':>9} {'ratio':>6} {'fakes MiB':>9} "
            f"{'w/o fakes':>9} {'ticks s':>16}")
    lines = [head, "-" * len(head)]
    for r in results:
        c = r["controller"]
        lines.append(f"{r['n']:>8} {c['in_scope']:>8} {r['floor']['peak_mib']:>9.1f} {c['peak_mib']:>9.1f} "
                     f"{r['ratio']:>6.2f} {r.get('fakes_mib', float('nan')):>9.1f} "
                     f"{r.get('controller_without_fakes_mib', float('nan')):>9.1f} "
                     f"{'/'.join(f'{t:.1f}' for t in c['ticks']):>16}")
    last = results[-1]
    lines += ["", f"RSS after each stage ({last['n']} intents; MiB; floor: "
              + ", ".join(f"{k} {v:.1f}" for k, v in last["floor"]["stages"].items()) + "):"]
    traced = last.get("traced")
    previous = 0.0
    for name in last["controller"]["stages"]:  # STAGES, or the --from-cluster order (fakes, then the scope)
        rss = last["controller"]["stages"][name]
        extra = ""
        if traced:
            t = traced["traced"][name]
            extra = f"   traced {t['mib'] - previous:+7.1f} (peak within {t['peak_mib']:6.1f})"
            previous = t["mib"]
        lines.append(f"  {name:<32} {rss:>7.1f}{extra}")
    if traced:
        lines.append(f"still held after the last tick, by file (tracemalloc, {last['n']} intents; MiB):")
        lines.append("  " + ", ".join(f"{f['where']} {f['mib']:.1f}" for f in traced["tracemalloc"]["by_file"][:12]))
        lines.append("top allocation sites still held:")
        for t in traced["tracemalloc"]["top_lines"][:top]:
            lines.append(f"  {t['mib']:>7.2f} MiB {t['blocks']:>9} blocks  {t['where']}")
        lines.extend(f"failed run: {f}" for f in traced.get("failures", []))
    c = last["controller"]
    lines.append(f"peak RSS until the scope is built (the repository load; no fakes yet): "
                 f"{c['peak_after_scope_mib']:.1f} MiB; intents kept in memory: {c['intents_in_memory']} of "
                 f"{c['intents']}")
    ten_k = next((r for r in results if r["n"] == 10_000), None)
    if ten_k is not None:
        peak = ten_k["controller"]["peak_mib"]
        verdict = "meets" if peak <= GOAL_MIB else "MISSES"
        lines.append(f"goal: 10k intents in <= {GOAL_MIB:.0f} MiB peak RSS: {verdict} ({peak:.1f} MiB, fakes "
                     f"included; {ten_k.get('controller_without_fakes_mib', float('nan')):.1f} MiB without them)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--sizes", default="10000", help="comma-separated intent counts")
    parser.add_argument("--top", type=int, default=15, help="tracemalloc lines to print")
    parser.add_argument("--trace", type=int, default=1, help="tracemalloc frames (0: no attribution run)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    parser.add_argument("--from-cluster", action="store_true",
                        help="build the scope as `controller run --from-cluster` does (watch source)")
    parser.add_argument("--child", choices=("floor", "controller"), help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = (child_floor(args.repo) if args.child == "floor"
                  else child_controller(args.repo, args.seed, args.trace, args.from_cluster))
        json.dump(result, sys.stdout)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="chamberlain-bench-mem-"))
    try:
        results = [measure(n, workdir, args.trace, args.from_cluster) for n in sizes]
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output == "json":
        figures = [figure("memory", f"controller peak RSS, {r['n']} intents, repository mode (in-process fakes)",
                          goal=f"<= {GOAL_MIB:.0f} MiB at 10k", measured=round(r["controller"]["peak_mib"], 1),
                          unit="MiB", floor=round(r["floor"]["peak_mib"], 1),
                          floor_name="same imports, YAML parse only",
                          met=(r["controller"]["peak_mib"] <= GOAL_MIB) if r["n"] >= 10_000 else None)
                   for r in results]
        curve = ([growth("memory", "controller peak RSS (repository mode)", "MiB", [r["n"] for r in results],
                         [r["controller"]["peak_mib"] for r in results])] if len(results) > 1 else [])
        json.dump({"python": sys.version.split()[0], "pid_rss_source": "VmHWM", "results": results,
                   "goal_mib": GOAL_MIB, "cpus": os.cpu_count(), "figures": figures, "growth": curve},
                  sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(results, args.top))
    ten_k = next((r for r in results if r["n"] == 10_000), None)
    return 1 if ten_k is not None and ten_k["controller"]["peak_mib"] > GOAL_MIB else 0


if __name__ == "__main__":
    raise SystemExit(main())
