"""``benchmarks/run``: every benchmark in one command, one summary table, a JSON file and a PNG of growth curves.

Each benchmark stays a script of its own (runnable alone, ``-o json`` for its data). This runs them one after
another as subprocesses, at the full sizes (by hand, minutes to an hour) or at a smoke size (``--smoke``: seconds
each, what CI runs so they do not rot), and collects the ``figures`` and ``growth`` every report carries
(``benchmarks/_figures.py``). The lab benchmarks start their own lab on their own ports and take it down again, so
one failing benchmark cannot leave another a dirty lab; ``--lab-dir`` hands a running dev lab to those that can
reuse one.

Three parts: :data:`BENCHMARKS` (what runs, with which arguments), :func:`run_one` (one subprocess → a
:class:`Outcome`), and the pure reporting (:func:`table`, :func:`summary`, :func:`plot_growth`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NONE = "\N{EN DASH}"  # an empty cell
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    key: str  # what --only selects (the P-number where it has one)
    script: str
    title: str
    full: tuple[str, ...]
    smoke: tuple[str, ...]
    lab: bool = False  # needs the lab's binaries (chamberlain lab build)
    reuses_lab: bool = False  # accepts --lab-dir
    peer: tuple[str, ...] = ()  # extra arguments that build and run the peer tool (full runs only)
    timeout: float = 3600.0


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("P1", "bench_validate_render.py", "validate + render at 1k-50k intents, beside kubeconform",
              full=("-n", "1000,10000,50000"), smoke=("-n", "50"), peer=("--build-kubeconform",)),
    Benchmark("P2", "bench_provision.py", "cold provisioning into OpenBao (raft, TLS) against a raw-HTTP floor",
              full=("-n", "200,1000,2000"), smoke=("--smoke",), lab=True),
    Benchmark("P3", "bench_propagation.py", "trigger to consumer Secret through the controller and the real ESO",
              full=("-n", "30"), smoke=("-n", "20", "--warmup", "1"), lab=True, reuses_lab=True),
    Benchmark("P4", "bench_batch_rotation.py", "compromise: rotate 2,000 secrets feeding 200 workloads",
              full=("--secrets", "200,1000,2000", "--per-workload", "10", "--protocol-floor"),
              smoke=("--secrets", "6", "--per-workload", "3", "--namespaces", "2", "--skip-floor",
                     "--protocol-floor"),
              lab=True, reuses_lab=True),
    Benchmark("P5", "bench_controller_watch.py", "the controller in watch mode with 10k SecretIntents, beside ESO",
              full=("-n", "1000,5000,10000", "--window", "400"), smoke=("--smoke",), lab=True, reuses_lab=True),
    Benchmark("memory", "bench_controller_memory.py", "controller peak RSS in repository mode",
              full=("-n", "1000,5000,10000"), smoke=("-n", "200", "--trace", "0")),
    Benchmark("calls", "bench_rotation_vault_calls.py", "Vault calls per rotation against the protocol minimum",
              full=(), smoke=("--no-vault", "-n", "1", "--ledger-entries", "2")),
    Benchmark("scan", "bench_scan.py", "credential scan of a 50 MB tree beside gitleaks",
              full=(), smoke=("--size-mb", "0.3", "--no-gitleaks", "--no-cli"), peer=("--build-gitleaks",)),
    Benchmark("failover", "bench_failover.py", "rotations while the raft leader is killed",
              full=(), smoke=("--secrets", "6", "--per-workload", "3", "--namespaces", "2", "--timeout", "120",
                              "--warmup", "0"), lab=True),
    Benchmark("external", "bench_external_rotation.py", "producer change to every consumer (PushSecret)",
              full=(), smoke=("--sizes", "1,3", "-n", "2", "--warmup", "0"), lab=True, reuses_lab=True),
)
BY_KEY = {b.key: b for b in BENCHMARKS}


@dataclass
class Outcome:
    bench: Benchmark
    seconds: float
    returncode: int
    report: dict[str, Any] | None
    error: str = ""

    @property
    def figures(self) -> list[dict[str, Any]]:
        return list((self.report or {}).get("figures") or [])

    @property
    def growth(self) -> list[dict[str, Any]]:
        return list((self.report or {}).get("growth") or [])


@dataclass
class Options:
    smoke: bool = False
    peers: bool = True
    lab_dir: Path | None = None
    python: str = sys.executable
    extra: dict[str, list[str]] = field(default_factory=dict)


def command(bench: Benchmark, opts: Options) -> list[str]:
    """The subprocess command line for one benchmark (pure)."""
    args = list(bench.smoke if opts.smoke else bench.full)
    if bench.peer and opts.peers and not opts.smoke:
        args += bench.peer
    if bench.reuses_lab and opts.lab_dir is not None:
        args += ["--lab-dir", str(opts.lab_dir)]
    args += opts.extra.get(bench.key, [])
    return [opts.python, str(HERE / bench.script), *args, "-o", "json"]


def run_one(bench: Benchmark, opts: Options, *, timeout: float | None = None) -> Outcome:
    """Run one benchmark; its progress (stderr) streams through, its stdout must be one JSON report. A script that
    exits non-zero after printing its report ran and missed a goal; one that printed no report failed."""
    cmd = command(bench, opts)
    print(f"[run] {bench.key}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              timeout=timeout or bench.timeout, check=False)
    except subprocess.TimeoutExpired:
        limit = timeout or bench.timeout
        return Outcome(bench, time.monotonic() - started, -1, None, f"timed out after {limit:.0f} s")
    elapsed = time.monotonic() - started
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
        why = f"exit {proc.returncode}, no JSON report: {tail[0][:200]}"
        return Outcome(bench, elapsed, proc.returncode, None, why)
    if not isinstance(report, dict):
        return Outcome(bench, elapsed, proc.returncode, None, "the report is not a JSON object")
    return Outcome(bench, elapsed, proc.returncode, report)


# ------------------------------------------------------------------------------------------------ reporting


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        whole = value == int(value)
        if whole or abs(value) >= 100:
            text = f"{value:,.0f}"
        elif abs(value) >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.3g}"
        return f"{text} {unit}".strip()
    return str(value)


def _met(value: Any) -> str:
    return {True: "yes", False: "**no**", None: NONE}.get(value, str(value))


def rows(outcomes: Iterable[Outcome]) -> list[list[str]]:
    """One row per figure; a benchmark that failed to run is one row saying so."""
    out: list[list[str]] = []
    for o in outcomes:
        if o.report is None:
            out.append([o.bench.key, o.bench.title, NONE, f"failed: {o.error}", NONE, NONE, "**no**", NONE])
            continue
        figs = o.figures
        if not figs:
            out.append([o.bench.key, o.bench.title, NONE, "(no figures in the report)", NONE, NONE, NONE, NONE])
        for f in figs:
            unit = str(f.get("unit") or "")
            floor = _num(f.get("floor"), unit)
            if f.get("floor_name") and f.get("floor") is not None:
                floor = f"{floor} ({f['floor_name']})"
            load = f.get("load") or []
            out.append([str(f.get("id", o.bench.key)), str(f.get("name", "")), str(f.get("goal", "")),
                        _num(f.get("measured"), unit), floor, _num(f.get("ratio")), _met(f.get("met")),
                        " ".join(f"{x:.2f}" for x in load[:1])])
    return out


HEADER = ["id", "figure", "goal", "measured", "floor (same run)", "ratio", "met", "load"]


def table(outcomes: Iterable[Outcome]) -> str:
    """The summary as a Markdown table (what the README shows)."""
    body = rows(outcomes)
    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join("---" for _ in HEADER) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def growth_warnings(outcomes: Iterable[Outcome], limit: float = 1.3) -> list[str]:
    """Curves whose cost per item grows by more than ``limit`` between two sizes: a quadratic somewhere."""
    out = []
    for o in outcomes:
        for g in o.growth:
            for i, per_item in enumerate(g.get("per_item_growth") or []):
                if per_item is not None and per_item > limit:
                    sizes = g.get("sizes") or []
                    span = f"{sizes[i]}→{sizes[i + 1]}" if i + 1 < len(sizes) else "?"
                    out.append(f"{g.get('id')} {g.get('series')}: per-item growth {per_item:.2f} over {span}")
    return out


def summary(outcomes: Sequence[Outcome], *, smoke: bool, started: datetime) -> dict[str, Any]:
    return {
        "started": started.isoformat(timespec="seconds"),
        "smoke": smoke,
        "host": {"cpus": os.cpu_count(), "load_at_end": [round(x, 2) for x in os.getloadavg()]},
        "benchmarks": [
            {"key": o.bench.key, "script": o.bench.script, "seconds": round(o.seconds, 1),
             "returncode": o.returncode, "error": o.error or None, "figures": o.figures, "growth": o.growth}
            for o in outcomes
        ],
        "growth_warnings": growth_warnings(outcomes),
    }


def plot_growth(outcomes: Sequence[Outcome], path: Path) -> int:
    """One panel per growth curve (log-log, with a linear reference through the first point). Returns the number
    of curves drawn; writes nothing when there are none."""
    curves = [g for o in outcomes for g in o.growth if len(g.get("sizes") or []) >= 2]
    if not curves:
        return 0
    import matplotlib  # only here: the table and the JSON need no plotting library

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(curves))
    nrows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, g in zip((a for row in axes for a in row), curves, strict=False):
        sizes, values = list(g["sizes"]), list(g["values"])
        ax.plot(sizes, values, "o-", label="measured")
        if values[0] > 0:
            ax.plot(sizes, [values[0] * s / sizes[0] for s in sizes], "--", color="grey", label="linear")
        ax.set_xscale("log")
        if all(v > 0 for v in values):
            ax.set_yscale("log")
        ax.set_title(f"{g.get('id')}: {g.get('series')}", fontsize=9)
        ax.set_xlabel("items")
        ax.set_ylabel(str(g.get("unit") or ""))
        ax.legend(fontsize=7)
    for ax in [a for row in axes for a in row][len(curves):]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(curves)


# ------------------------------------------------------------------------------------------------ command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--smoke", action="store_true", help="the smoke size of each benchmark (seconds; CI runs this)")
    p.add_argument("--only", help="comma-separated keys: " + ",".join(b.key for b in BENCHMARKS))
    p.add_argument("--skip", help="comma-separated keys to leave out")
    p.add_argument("--no-lab", action="store_true", help="only the benchmarks that need no lab binaries")
    p.add_argument("--no-peers", action="store_true", help="do not build or run the peer tools (kubeconform, ...)")
    p.add_argument("--lab-dir", type=Path, help="a running dev lab for the benchmarks that can reuse one")
    p.add_argument("--out", type=Path, default=Path("benchmark-results"),
                   help="where results.json, growth.png and table.md go (default ./benchmark-results)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=ARGS",
                   help="extra arguments for one benchmark, e.g. --arg 'P1=-r 3' (repeatable)")
    p.add_argument("--timeout", type=float, help="per-benchmark timeout in seconds")
    p.add_argument("--list", action="store_true", help="list the benchmarks and their command lines, run nothing")
    return p.parse_args(argv)


def select(only: str | None, skip: str | None, no_lab: bool) -> list[Benchmark]:
    def keys(text: str | None) -> list[str]:
        return [k.strip() for k in (text or "").split(",") if k.strip()]

    unknown = [k for k in keys(only) + keys(skip) if k not in BY_KEY]
    if unknown:
        raise SystemExit(f"benchmarks/run: unknown benchmark {', '.join(unknown)} "
                         f"(known: {', '.join(BY_KEY)})")
    chosen = [BY_KEY[k] for k in keys(only)] if only else list(BENCHMARKS)
    return [b for b in chosen if b.key not in keys(skip) and not (no_lab and b.lab)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    extra: dict[str, list[str]] = {}
    for item in args.arg:
        key, _, rest = item.partition("=")
        extra.setdefault(key.strip(), []).extend(rest.split())
    opts = Options(smoke=args.smoke, peers=not args.no_peers, lab_dir=args.lab_dir, extra=extra)
    chosen = select(args.only, args.skip, args.no_lab)
    if args.list:
        for b in chosen:
            print(f"{b.key:9} {' '.join(command(b, opts)[1:])}")
        return 0
    started = datetime.now(UTC)
    outcomes = [run_one(b, opts, timeout=args.timeout) for b in chosen]
    args.out.mkdir(parents=True, exist_ok=True)
    report = summary(outcomes, smoke=args.smoke, started=started)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(outcomes)
    (args.out / "table.md").write_text(text + "\n")
    drawn = plot_growth(outcomes, args.out / "growth.png")
    print(text)
    for warning in report["growth_warnings"]:
        print(f"growth: {warning}")
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'table.md'}"
          + (f", {args.out / 'growth.png'} ({drawn} curves)" if drawn else " (no growth curves to draw)"))
    failed = [o.bench.key for o in outcomes if o.report is None]
    if failed:
        print(f"failed to run: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0
