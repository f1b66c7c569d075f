"""benchmarks/run: which command lines it builds, the summary table, growth warnings and the PNG; and one real
smoke run of the command as a user types it (the benchmarks that need no lab)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import runner
from benchmarks._figures import figure, growth

ROOT = Path(__file__).resolve().parents[2]


def _outcome(key: str, report: dict[str, object] | None, error: str = "") -> runner.Outcome:
    return runner.Outcome(runner.BY_KEY[key], 1.0, 0 if report else 1, report, error)


def test_smoke_and_full_command_lines_differ_and_only_full_runs_build_peers(tmp_path: Path) -> None:
    p1 = runner.BY_KEY["P1"]
    full = runner.command(p1, runner.Options(python="py"))
    smoke = runner.command(p1, runner.Options(python="py", smoke=True))
    assert full[-2:] == smoke[-2:] == ["-o", "json"]
    assert "--build-kubeconform" in full and "--build-kubeconform" not in smoke
    assert "--build-kubeconform" not in runner.command(p1, runner.Options(python="py", peers=False))
    lab = runner.command(runner.BY_KEY["P3"], runner.Options(python="py", lab_dir=tmp_path))
    assert lab[lab.index("--lab-dir") + 1] == str(tmp_path)
    assert "--lab-dir" not in runner.command(runner.BY_KEY["P2"], runner.Options(python="py", lab_dir=tmp_path))
    extra = runner.command(p1, runner.Options(python="py", extra={"P1": ["-r", "3"]}))
    assert extra[-4:-2] == ["-r", "3"]


def test_select_refuses_unknown_keys_and_drops_lab_benchmarks_on_request() -> None:
    with pytest.raises(SystemExit, match="unknown benchmark P9"):
        runner.select("P1,P9", None, False)
    chosen = runner.select(None, "scan", True)
    assert chosen and all(not b.lab for b in chosen) and "scan" not in {b.key for b in chosen}


def test_table_has_one_row_per_figure_and_says_which_benchmark_failed() -> None:
    ok = _outcome("P1", {"figures": [figure("P1", "validate + render", goal="<= 3 s", measured=2.5, unit="s",
                                            floor=1.25, floor_name="parse", met=True)]})
    failed = _outcome("P2", None, "exit 1, no JSON report: boom")
    text = runner.table([ok, failed])
    lines = text.splitlines()
    assert lines[0].startswith("| id | figure | goal | measured")
    assert "| P1 | validate + render | <= 3 s | 2.5 s | 1.25 s (parse) | 2 | yes |" in text
    assert "failed: exit 1, no JSON report: boom" in lines[3] and "**no**" in lines[3]


def test_growth_above_the_limit_is_flagged_as_a_quadratic() -> None:
    curve = growth("P1", "validate", "s", [1000, 10000, 50000], [1.0, 10.0, 100.0])
    assert curve["per_item_growth"] == [1.0, 2.0]
    warnings = runner.growth_warnings([_outcome("P1", {"figures": [], "growth": [curve]})])
    assert warnings == ["P1 validate: per-item growth 2.00 over 10000→50000"]


def test_growth_curves_are_drawn_into_one_png(tmp_path: Path) -> None:
    curves = [growth("P1", "validate", "s", [1, 10, 100], [0.1, 1.0, 10.0]),
              growth("P5", "peak RSS", "MiB", [1000, 5000, 10000], [60.0, 80.0, 110.0])]
    drawn = runner.plot_growth([_outcome("P1", {"growth": curves})], tmp_path / "growth.png")
    assert drawn == 2
    assert (tmp_path / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert runner.plot_growth([_outcome("P1", {"growth": []})], tmp_path / "none.png") == 0
    assert not (tmp_path / "none.png").exists()


@pytest.mark.timeout(300)
def test_the_command_runs_a_smoke_size_and_writes_table_json_and_png(tmp_path: Path) -> None:
    proc = subprocess.run([str(ROOT / "benchmarks" / "run"), "--smoke", "--only", "calls,external", "--no-lab",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=280,
                          check=False, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| calls | Vault calls per rotation, fake KV, keep old | ratio <= 1.2 |" in proc.stdout
    report = json.loads((tmp_path / "results.json").read_text())
    assert [b["key"] for b in report["benchmarks"]] == ["calls"]  # --no-lab left the lab benchmark out
    assert report["smoke"] is True and report["benchmarks"][0]["figures"]
    assert (tmp_path / "table.md").read_text().startswith("| id |")
