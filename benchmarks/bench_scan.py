"""Benchmark: chamberlain's credential scan against gitleaks on the same generated tree of mixed files (50 MB).

The issue 15 goals: at least 99% of provider credentials found, at most 10% false alarms on near-miss lookalikes,
and faster than the leading Go scanner on the same tree. One run measures both tools side by side:

- the tree (``--size-mb``, default 50; deterministic for ``--seed``): mostly benign code, YAML, JSON, Markdown,
  CSV, minified JS and binary blobs, with the labelled corpus of ``scan_corpus.py`` sprinkled in (positives in many
  assignment syntaxes, near misses one per file);
- chamberlain: ``chamberlain.service.repository.validate`` in-process (what ``chamberlain validate`` runs: load,
  every check; imports done before the clock starts), best of ``--repeat``; and the CLI's wall time
  (``python -m chamberlain.cli.main validate``, interpreter start included);
- gitleaks v8.30.1, built from Go modules like the lab's tools (``--build-gitleaks`` builds it when missing: 1.4 min
  on 2 cores with a cold Go build cache, 12 s warm): ``gitleaks dir --no-banner --redact --report-format json
  --report-path FILE --exit-code 0``, best of ``--repeat``.

For both: throughput in MB/s, the ratio, recall on the positives (a hit on the labelled file and line; CH024 or
CH020 for chamberlain, any rule for gitleaks; a hit without a line counts for the whole file) by kind and by
syntax, the false-alarm rate on near misses (a hit anywhere in a near-miss file), and hits in the benign filler.
No value is ever printed: gitleaks runs with ``--redact``, and only kinds, files and lines are compared.

Usage:
    /work/main/.venv/bin/python benchmarks/bench_scan.py                    # 50 MB, a table
    /work/main/.venv/bin/python benchmarks/bench_scan.py --build-gitleaks   # build gitleaks first if missing
    /work/main/.venv/bin/python benchmarks/bench_scan.py --size-mb 1 -o json --no-cli
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scan_corpus  # noqa: E402
from _figures import figure  # noqa: E402
from _peers import peer_binary  # noqa: E402
from chamberlain.service.repository import validate  # noqa: E402

CHAMBERLAIN_RULES = ("CH024", "CH020")
GOALS = {"recall": 0.99, "false_alarm_rate": 0.10}

# ------------------------------------------------------------------------------------------------ filler

WORDS = ("account", "balance", "billing", "cache", "client", "config", "customer", "deploy", "event", "handler",
         "invoice", "ledger", "metric", "order", "payment", "queue", "record", "region", "report", "request",
         "retry", "route", "schema", "service", "session", "shipment", "status", "stream", "tenant", "timeout",
         "update", "user", "value", "window", "worker", "batch", "limit", "offset", "page", "total")


def _ident(rng: random.Random, n: int = 2) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(n))


def _python(rng: random.Random, size: int) -> bytes:
    out = ['"""Generated module."""', "from __future__ import annotations", "", "import logging", ""]
    while sum(len(x) + 1 for x in out) < size:
        name, arg = _ident(rng), rng.choice(WORDS)
        out += [f"def {name}({arg}: int, {rng.choice(WORDS)}_count: int = {rng.randint(1, 99)}) -> int:",
                f'    """Return the {rng.choice(WORDS)} of the {rng.choice(WORDS)}."""',
                f"    if {arg} > {rng.randint(1, 1000)}:",
                f'        logging.info("{rng.choice(WORDS)} %s over limit", {arg})',
                f"    return {arg} * {rng.randint(2, 9)}", ""]
    return "\n".join(out).encode()


def _go(rng: random.Random, size: int) -> bytes:
    out = ["package generated", "", 'import "fmt"', ""]
    while sum(len(x) + 1 for x in out) < size:
        name = "".join(w.capitalize() for w in _ident(rng).split("_"))
        out += [f"func {name}(n int) (int, error) {{", f"\tif n < {rng.randint(0, 50)} {{",
                f'\t\treturn 0, fmt.Errorf("{rng.choice(WORDS)}: %d too small", n)', "\t}",
                f"\treturn n + {rng.randint(1, 500)}, nil", "}", ""]
    return "\n".join(out).encode()


def _yaml(rng: random.Random, size: int) -> bytes:
    out: list[str] = []
    while sum(len(x) + 1 for x in out) < size:
        name = _ident(rng).replace("_", "-")
        out += ["---", "apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}",
                f"  namespace: {rng.choice(WORDS)}", "data:",
                *(f"  {_ident(rng)}: \"{rng.choice(WORDS)}-{rng.randint(1, 9999)}\"" for _ in range(8))]
    return "\n".join(out).encode()


def _json(rng: random.Random, size: int) -> bytes:
    rows: list[dict[str, Any]] = []
    length = 2
    while length < size:
        row = {"name": _ident(rng), "count": rng.randint(0, 10**6), "ratio": round(rng.random(), 4),
               "tags": [rng.choice(WORDS) for _ in range(3)], "enabled": rng.random() < 0.5}
        rows.append(row)
        length += len(json.dumps(row)) + 6
    return json.dumps(rows, indent=2).encode()


def _markdown(rng: random.Random, size: int) -> bytes:
    out = ["# Runbook", ""]
    while sum(len(x) + 1 for x in out) < size:
        out += [f"## {rng.choice(WORDS).capitalize()} {rng.choice(WORDS)}", "",
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 80))) + ".", ""]
    return "\n".join(out).encode()


def _csv(rng: random.Random, size: int) -> bytes:
    out = ["id,region,status,amount,updated"]
    while sum(len(x) + 1 for x in out) < size:
        amount = f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}"
        day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        out.append(f"{rng.randint(1, 10**7)},{rng.choice(WORDS)},{rng.choice(WORDS)},{amount},{day}")
    return "\n".join(out).encode()


def _minified_js(rng: random.Random, size: int) -> bytes:
    parts: list[str] = []
    length = 0
    while length < size:
        piece = f"function {_ident(rng)}(a,b){{return a.{rng.choice(WORDS)}+b*{rng.randint(1, 99)}}};"
        parts.append(piece)
        length += len(piece)
    return "".join(parts).encode()


def _binary(rng: random.Random, size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(size)


FILLERS = (  # (generator, file suffix, weight)
    (_python, ".py", 3), (_go, ".go", 2), (_yaml, ".yaml", 2), (_json, ".json", 2), (_markdown, ".md", 2),
    (_csv, ".csv", 1), (_minified_js, ".min.js", 1), (_binary, ".png", 2),
)


@dataclass
class Tree:
    root: Path
    bytes: int = 0
    files: int = 0
    labels: dict[str, list[scan_corpus.Label]] = field(default_factory=dict)


def generate(root: Path, size_mb: float, seed: int) -> Tree:
    """The labelled corpus plus benign filler up to ``size_mb`` MB, all under ``root``."""
    rng = random.Random(seed)
    tree = Tree(root)
    for cf in scan_corpus.corpus(seed):
        path = root / cf.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cf.data)
        tree.labels[cf.path] = cf.labels
        tree.bytes += len(cf.data)
        tree.files += 1
    target = int(size_mb * 1e6)
    weights = [w for _, _, w in FILLERS]
    n = 0
    while tree.bytes < target:
        make, suffix, _ = rng.choices(FILLERS, weights)[0]
        size = min(target - tree.bytes, int(rng.lognormvariate(10.3, 0.9)))  # median ~30 KB, a few MB at most
        data = make(rng, max(size, 64))
        n += 1
        path = root / "src" / f"pkg{n % 97:02d}" / f"{_ident(rng)}_{n}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree.bytes += len(data)
        tree.files += 1
    return tree


# ------------------------------------------------------------------------------------------------ scoring


Hits = dict[str, set[int]]  # file -> lines (0: a hit without a line, which covers the whole file)


def score(tree: Tree, hits: Hits) -> dict[str, Any]:
    positives = [(path, lb) for path, labels in tree.labels.items() for lb in labels if lb.positive]
    near = {path for path, labels in tree.labels.items() if any(not lb.positive for lb in labels)}

    def found(path: str, line: int) -> bool:
        lines = hits.get(path, set())
        return line in lines or 0 in lines

    missed = [(path, lb) for path, lb in positives if not found(path, lb.line)]
    alarms = sorted(path for path in near if hits.get(path))
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_syntax: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, lb in positives:
        ok = found(path, lb.line)
        by_kind[lb.kind][0] += ok
        by_kind[lb.kind][1] += 1
        by_syntax[lb.syntax][0] += ok
        by_syntax[lb.syntax][1] += 1
    near_kinds = Counter(lb.kind for path in alarms for lb in tree.labels[path])
    filler = sum(1 for path in hits if path not in tree.labels)
    return {
        "positives": len(positives), "found": len(positives) - len(missed),
        "recall": round((len(positives) - len(missed)) / len(positives), 4) if positives else None,
        "near_misses": len(near), "false_alarms": len(alarms),
        "false_alarm_rate": round(len(alarms) / len(near), 4) if near else None,
        "filler_files_with_hits": filler,
        "missed_kinds": dict(sorted(Counter(lb.kind for _, lb in missed).items())),
        "recall_by_syntax": {s: round(a / b, 3) for s, (a, b) in sorted(by_syntax.items())},
        "kinds_missed_entirely": sorted(k for k, (a, _) in by_kind.items() if a == 0),
        "false_alarms_by_kind": dict(sorted(near_kinds.items())),
    }


# ------------------------------------------------------------------------------------------------ the tools


def run_chamberlain(root: Path, repeat: int) -> tuple[float, float, Hits]:
    """Best wall and CPU seconds of the in-process validate, and its credential hits."""
    best, best_cpu, hits = float("inf"), float("inf"), {}
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = validate(root)
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        if elapsed < best:
            best, best_cpu = elapsed, cpu_s
        found: Hits = defaultdict(set)
        for f in result.findings:
            if f.rule in CHAMBERLAIN_RULES:
                found[f.file].add(f.line or 0)
        hits = dict(found)
    return best, best_cpu, hits


def chamberlain_cli(root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chamberlain.cli.main", "validate", str(root), "-o", "json"],
                   capture_output=True, env=env, check=False)
    return time.perf_counter() - started


def gitleaks_path(explicit: Path | None, build: bool) -> tuple[Path | None, str]:
    """The gitleaks binary and a note (:func:`_peers.peer_binary`)."""
    return peer_binary("gitleaks", explicit, build)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_gitleaks(binary: Path, root: Path, repeat: int, workdir: Path) -> tuple[float, float, Hits]:
    """Best wall seconds, the CPU seconds of that run (gitleaks uses several threads), and its hits."""
    best, best_cpu, hits = float("inf"), float("inf"), {}
    report = workdir / "gitleaks.json"
    for _ in range(repeat):
        started, cpu = time.perf_counter(), _children_cpu()
        proc = subprocess.run([str(binary), "dir", str(root), "--no-banner", "--redact", "--report-format", "json",
                               "--report-path", str(report), "--exit-code", "0", "--log-level", "error"],
                              capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, best_cpu = elapsed, _children_cpu() - cpu
        if proc.returncode != 0:
            raise RuntimeError(f"gitleaks failed ({proc.returncode}): {proc.stderr[-2000:]}")
        found: Hits = defaultdict(set)
        for leak in json.loads(report.read_text() or "[]"):
            path = Path(leak["File"])
            rel = (path if not path.is_absolute() else path.relative_to(root)).as_posix()
            rel = rel.removeprefix(root.as_posix().lstrip("/") + "/")
            found[rel].add(int(leak.get("StartLine") or 0))
        hits = dict(found)
    return best, best_cpu, hits


# ------------------------------------------------------------------------------------------------ report


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    root = workdir / "tree"
    gen_started = time.perf_counter()
    tree = generate(root, args.size_mb, args.seed)
    mb = tree.bytes / 1e6
    result: dict[str, Any] = {
        "tree": {"mb": round(mb, 2), "files": tree.files, "seed": args.seed,
                 "generated_s": round(time.perf_counter() - gen_started, 2),
                 "corpus": scan_corpus.summary([scan_corpus.CorpusFile(p, b"", lb) for p, lb in tree.labels.items()]),
                 "formats": scan_corpus.FORMAT_SOURCE},
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
    }
    validate(root / "pos" / "svc-0001")  # warm-up: the check modules are imported lazily on first use
    wall, cpu, hits = run_chamberlain(root, args.repeat)
    result["chamberlain"] = {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                             "mb_per_s": round(mb / wall, 2), **score(tree, hits)}
    if not args.no_cli:
        result["chamberlain"]["cli_seconds"] = round(chamberlain_cli(root), 3)
    binary, note = (None, "skipped (--no-gitleaks)") if args.no_gitleaks else gitleaks_path(args.gitleaks,
                                                                                              args.build_gitleaks)
    result["gitleaks"] = {"binary": note}
    if binary is not None:
        seconds, gcpu, ghits = run_gitleaks(binary, root, args.repeat, workdir)
        result["gitleaks"].update({"seconds": round(seconds, 3), "cpu_seconds": round(gcpu, 3),
                                   "mb_per_s": round(mb / seconds, 2),
                                   **score(tree, ghits)})
        result["speed_ratio"] = round(seconds / wall, 2)  # > 1: chamberlain is faster
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    result["goals"] = GOALS
    return result


def _line(name: str, r: dict[str, Any]) -> str:
    return (f"{name:<12} {r['seconds']:>8.2f} {r['cpu_seconds']:>8.2f} {r['mb_per_s']:>8.1f} {r['recall']:>8.3f} "
            f"({r['found']}/{r['positives']}) {r['false_alarm_rate']:>8.3f} ({r['false_alarms']}/{r['near_misses']}) "
            f"filler files with hits: {r['filler_files_with_hits']}")


def table(r: dict[str, Any]) -> str:
    t = r["tree"]
    lines = [f"tree: {t['mb']} MB in {t['files']} files (seed {t['seed']}); corpus: {t['corpus']}",
             f"formats: {t['formats']}", "",
             f"{'tool':<12} {'seconds':>8} {'cpu s':>8} {'MB/s':>8} {'recall':>8}          {'false al.':>8}",
             "-" * 87,
             _line("chamberlain", r["chamberlain"])]
    if "cli_seconds" in r["chamberlain"]:
        lines.append(f"{'':<12} CLI wall time (interpreter start included): {r['chamberlain']['cli_seconds']:.2f} s")
    g = r["gitleaks"]
    if "seconds" in g:
        lines.append(_line("gitleaks", g))
        lines.append(f"speed: gitleaks time / chamberlain time = {r['speed_ratio']:.2f} (> 1: chamberlain faster)")
    else:
        lines.append(f"gitleaks     NOT RUN: {g['binary']}")
    for name in ("chamberlain", "gitleaks"):
        s = r[name]
        if "recall_by_syntax" not in s:
            continue
        by_syntax = ", ".join(f"{k} {v:.2f}" for k, v in s["recall_by_syntax"].items())
        lines += ["", f"{name}: recall by syntax: {by_syntax}",
                  f"{name}: missed kinds: {s['missed_kinds'] or 'none'}",
                  f"{name}: false alarms by near-miss kind: {s['false_alarms_by_kind'] or 'none'}"]
    lines.append(f"\nload average at the end {r['loadavg']} on {r['cpus']} CPUs; goals: recall >= "
                 f"{GOALS['recall']:.0%}, false alarms <= {GOALS['false_alarm_rate']:.0%}")
    return "\n".join(lines)


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary rows for benchmarks/run: recall, false alarms, and time beside gitleaks when it ran."""
    c, g = r["chamberlain"], r["gitleaks"]
    ran = "seconds" in g
    mb = r["tree"]["mb"]
    return [
        figure("scan", f"credential scan recall, {mb} MB tree", goal=f">= {GOALS['recall']:.0%}",
               measured=round(c["recall"], 4), unit="", floor=round(g["recall"], 4) if ran else None,
               floor_name="gitleaks recall" if ran else None, met=c["recall"] >= GOALS["recall"]),
        figure("scan", "credential scan false alarms", goal=f"<= {GOALS['false_alarm_rate']:.0%}",
               measured=round(c["false_alarm_rate"], 4), unit="",
               met=c["false_alarm_rate"] <= GOALS["false_alarm_rate"]),
        figure("scan", f"credential scan time, {mb} MB tree", goal="faster than gitleaks",
               measured=round(c["seconds"], 3), unit="s", floor=round(g["seconds"], 3) if ran else None,
               floor_name="gitleaks, same tree" if ran else None,
               met=(c["seconds"] <= g["seconds"]) if ran else None),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0, help="size of the generated tree (default 50)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("-r", "--repeat", type=int, default=1, help="best of R runs per tool")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--gitleaks", type=Path, help="a gitleaks binary to use instead of the lab cache's")
    parser.add_argument("--build-gitleaks", action="store_true", help="build gitleaks from Go modules if missing")
    parser.add_argument("--no-gitleaks", action="store_true", help="measure chamberlain only")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI wall-time run")
    parser.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="chamberlain-bench-scan-"))
    try:
        result = measure(args, workdir)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output == "json":
        json.dump({**result, "figures": figures(result), "growth": []}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
