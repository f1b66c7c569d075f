"""Benchmark: the controller's memory (peak RSS) with 10k intents.

The goal (benchmarks/README.md): at most 150 MiB. A 10k-intent repository is generated with the generator of
bench_validate_render (imported, not copied). A fresh subprocess then builds the state ``chamberlain controller
run`` builds (cli/controller.py): the repository loaded and validated (``service.load_valid``, what
``valid_repository`` calls), ``scope_of`` for one environment and cluster, and a Controller with every trigger and
collaborator (queue, metrics, annotation trigger, leader election, run publisher). Vault is a FakeKV seeded with a
value and chamberlain's custom_metadata for every secret in scope; the cluster is a FakeKube holding every
SecretIntent as a custom resource (each annotation poll deep-copies the list, as deserializing the API's answer
does) and simulating ESO on force-sync. Then ticks: each evaluates the time trigger over every secret (the
evaluation interval is set to 0 so every tick does), polls the annotations, and one tick drives a batch of
manual rotations to completion.

Peak RSS is ``VmHWM`` from /proc/self/status (``ru_maxrss`` elsewhere). The fakes live in the measured process,
so the report also gives what they hold (tracemalloc, in a separate run: tracing inflates RSS) and the controller
without them.

The floor: a subprocess importing the same modules that only parses the same YAML files (``yaml.load_all`` with
the C loader) and keeps the documents: no models.

Usage:
    /work/venv/bin/python benchmarks/bench_controller_memory.py                 # 10k intents; a table
    /work/venv/bin/python benchmarks/bench_controller_memory.py -n 1000,10000 -o json
    /work/venv/bin/python benchmarks/bench_controller_memory.py --top 30        # more tracemalloc lines
"""

from __future__ import annotations

import argparse
import gc
import importlib
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

GOAL_MIB = 150.0
ENVIRONMENT, CLUSTER = "prod", "prod-a"
BATCH = 100  # manual rotations driven in one tick
TICKS = 3
STAGES = ("imports", "repository loaded + validated", "scope", "fakes seeded", "controller built",
          *(f"tick {t + 1}" for t in range(TICKS)))
WHAT_IF = {"nodes": "no cached YAML node trees (checks compose a node tree only for a finding)",
           "repository": "... and the repository dropped after scope_of (only Platform + intent models kept)"}


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
    import chamberlain.controller
    import chamberlain.controller.loop
    import chamberlain.intent.loader
    import chamberlain.kube.fake
    import chamberlain.propagation
    import chamberlain.render.layout
    import chamberlain.rotation.rotators
    import chamberlain.service
    import chamberlain.triggers  # noqa: F401


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

    def __init__(self, kv: Any) -> None:
        self.kv = kv
        self.session_generation = 0

    def ensure_fresh(self) -> None:
        return None


def _eso_kube(kv: Any, paths: dict[tuple[str, str], tuple[str, str]]) -> Any:
    from chamberlain.handover import metadata as md
    from chamberlain.kube.api import KubeSecret
    from chamberlain.kube.fake import FakeKube
    from chamberlain.render.eso import ANNOTATION_VERSION_MARKER

    class EsoKube(FakeKube):
        """Force-sync does what ESO does: the consumer Secret gets the latest marker (data: a placeholder)."""

        def annotate_external_secret(self, namespace: str, name: str, annotations: Any) -> None:
            super().annotate_external_secret(namespace, name, annotations)
            mount, path = paths[(namespace, name)]
            meta = kv.read_metadata(mount, path)
            self.secrets[(namespace, name)] = KubeSecret(
                namespace, name, {"v": "x"},
                annotations={ANNOTATION_VERSION_MARKER: meta.custom.get(md.VALUE_MARKER, "") if meta else ""})

    return EsoKube()


def child_controller(root: Path, trace: int, what_if: str = "") -> dict[str, Any]:
    """Build what ``controller run`` builds, run ticks; RSS after every stage (or tracemalloc, when tracing).

    ``what_if`` measures a suggested change without making it: ``nodes`` drops the YAML node trees the checks
    composed and cached on the documents (as if the checks composed them only for a finding); ``repository``
    also keeps nothing of the repository but the Platform and the SecretIntent models after ``scope_of`` (as if
    ``controller run`` let go of it)."""
    if trace:
        import tracemalloc

        tracemalloc.start(trace)
    _import_everything()
    from datetime import UTC, datetime

    from chamberlain.authority.fake import FakeKV
    from chamberlain.controller import ControllerMetrics, LeaderElector, RunPublisher
    from chamberlain.controller.loop import Controller, scope_of
    from chamberlain.handover import metadata as md
    from chamberlain.intent.model import GROUP, VERSION
    from chamberlain.intent.paths import effective_policy
    from chamberlain.kube.api import PodTemplateState
    from chamberlain.render.layout import intent_manifest
    from chamberlain.service import load_valid
    from chamberlain.triggers import AnnotationTrigger, MemoryQueue, manual
    from chamberlain.triggers.annotation import PLURAL
    from chamberlain.values.markers import version_marker

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
    # ---- what `controller run` builds
    repo = load_valid(root)
    platform = repo.platform
    assert platform is not None
    if what_if in ("nodes", "repository"):
        for f in repo.files:
            for d in f.documents:
                d._node = None
        for d in (*(i.doc for i in repo.intents), *(p.doc for p in repo.policies), *repo.manifests):
            d._node = None
    stage("repository loaded + validated")
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    scope = scope_of(platform, intents, ENVIRONMENT, CLUSTER)
    policy_objs = [p.obj for p in repo.policies]
    intent_objs = [i.obj for i in repo.intents]
    if what_if == "repository":
        del repo
    stage("scope")
    # ---- the stand-ins for Vault and the cluster (not the controller's memory; reported separately)
    kv = FakeKV()
    policies = {p.metadata.name: p for p in policy_objs}
    created = datetime(2030, 1, 1, tzinfo=UTC).isoformat(timespec="seconds")
    paths: dict[tuple[str, str], tuple[str, str]] = {}
    for name, placed in scope.placed.items():
        intent = placed.intent
        keys = sorted(intent.spec.source.generate or {}) or ["username", "password"]
        values = {k: f"{k}-{name}-0123456789abcdef0123456789" for k in keys}
        version = kv.write(placed.vault.mount, placed.vault.path, values, cas=0)
        resolved = effective_policy(platform, policies, intent)
        kv.update_custom_metadata(placed.vault.mount, placed.vault.path, {
            md.AUTHORITY: md.AUTHORITY_VAULT, md.CREATED_BY: md.CREATED_BY_CHAMBERLAIN, md.CREATED_AT: created,
            md.INTENT: name, md.ENVIRONMENT: placed.environment, md.ORIGIN: "generated",
            md.VALUE_VERSION: str(version), md.VALUE_MARKER: version_marker(placed.vault.full, values),
            **md.policy_metadata(resolved[0] if resolved else None, resolved[1] if resolved else None),
        })
        for c in intent.spec.consumers:
            paths[(c.namespace, c.secret_name)] = (placed.vault.mount, placed.vault.path)
    kube = _eso_kube(kv, paths)
    ns = platform.spec.controller.namespace
    for obj in intent_objs:
        kube.add_custom_object(GROUP, VERSION, PLURAL, intent_manifest(obj, ns))
    for placed in scope.placed.values():
        for c in placed.intent.spec.consumers:
            kube.external_secrets[(c.namespace, c.secret_name)] = {
                "metadata": {"name": c.secret_name, "namespace": c.namespace}}
            for w in c.restart:
                kube.workloads[(w.kind, c.namespace, w.name)] = PodTemplateState({}, 1)
    stage("fakes seeded")
    # ---- the controller, as cli/controller.py wires it
    clock = _Clock()
    options: dict[str, Any] = {"evaluate_every": 0.0, "propagation_timeout": 5.0, "poll": 0.0}
    # ``wire`` is what ``controller run`` calls; before it existed the CLI wired the same objects inline.
    wire: Any = getattr(importlib.import_module("chamberlain.controller.app"), "wire", None)
    if wire is not None:  # what `controller run` calls
        controller = wire(scope, _FakeSession(kv), kube, clock, identity="bench-0", **options)
    else:  # as cli/controller.py wired it inline
        from chamberlain.authority.counting import CountingKV

        metrics = ControllerMetrics()
        queue = MemoryQueue()
        controller = Controller(
            scope=scope, kv=CountingKV(kv, metrics.vault_request), kube=kube, clock=clock, metrics=metrics,
            queue=queue, elector=LeaderElector(kube, ns, "chamberlain-controller", "bench-0", clock.now, 15),
            publisher=RunPublisher(kube, ns), annotations=AnnotationTrigger(kube, queue, clock.now, ns),
            actor="controller:bench-0", **options,
        )
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
        "intents": len(intents), "in_scope": len(scope.placed), "ticks": tick_s,
        "finished_runs": len(controller.finished),
        "failed_runs": sum(1 for r in controller.finished if not r.succeeded),
        "stages": stages, "peak_mib": _peak_mib(), "kv_calls": dict(kv.calls),
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


def _run_child(mode: str, root: Path, trace: int = 0, what_if: str = "") -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--repo", str(root),
            "--trace", str(trace), "--what-if", what_if]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure(n: int, workdir: Path, trace: int, what_if: list[str]) -> dict[str, Any]:
    import bench_validate_render as gen

    root = workdir / f"repo-{n}"
    shape = gen.generate(root, n)
    floor = _run_child("floor", root)
    ctrl = _run_child("controller", root)
    traced = _run_child("controller", root, trace) if trace else None
    what_ifs = {w: _run_child("controller", root, 0, w)["peak_mib"] for w in what_if}
    out = {"n": n, "files": shape["intentFiles"], "floor": floor, "controller": ctrl, "traced": traced,
           "ratio": ctrl["peak_mib"] / floor["peak_mib"], "what_if": what_ifs}
    if traced is not None:
        t = traced["traced"]
        out["fakes_mib"] = t["fakes seeded"]["mib"] - t["scope"]["mib"]
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
    for name in STAGES:
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
    for w, peak_w in last.get("what_if", {}).items():
        lines.append(f"what if {WHAT_IF[w]}: peak {peak_w:.1f} MiB")
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
    parser.add_argument("--no-what-if", action="store_true", help="skip the runs measuring suggested changes")
    parser.add_argument("--child", choices=("floor", "controller"), help=argparse.SUPPRESS)
    parser.add_argument("--what-if", choices=("", *WHAT_IF), default="", help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = (child_floor(args.repo) if args.child == "floor"
                  else child_controller(args.repo, args.trace, args.what_if))
        json.dump(result, sys.stdout)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="chamberlain-bench-mem-"))
    try:
        what_if = [] if args.no_what_if else list(WHAT_IF)
        results = [measure(n, workdir, args.trace, what_if) for n in sizes]
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output == "json":
        json.dump({"python": sys.version.split()[0], "pid_rss_source": "VmHWM", "results": results,
                   "goal_mib": GOAL_MIB, "cpus": os.cpu_count()}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(results, args.top))
    ten_k = next((r for r in results if r["n"] == 10_000), None)
    return 1 if ten_k is not None and ten_k["controller"]["peak_mib"] > GOAL_MIB else 0


if __name__ == "__main__":
    raise SystemExit(main())
