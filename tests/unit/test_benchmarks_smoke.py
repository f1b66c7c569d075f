"""The benchmarks run at a smoke size, so an API change cannot leave them broken (they are not timed tests: only
that they run, and that what they measure keeps its shape, is checked here)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import run_benchmark


def _run(script: str, *args: str) -> str:
    return run_benchmark(script, *args, timeout=300)


def _json(script: str, *args: str) -> Any:
    return json.loads(_run(script, *args, "-o", "json"))


def test_validate_render_at_a_smoke_size() -> None:
    report = _json("bench_validate_render.py", "-n", "50")
    assert report, "no measurement reported"
    names = [f["name"] for f in report["figures"]]
    assert names[0] == "validate + render, 50 intents" and report["figures"][0]["met"] is None, names
    assert any(n.startswith("validate after one file changed") for n in names), names
    # kubeconform runs only when built (the smoke never builds Go code); when it runs, the rendered tree is valid.
    kube = report["kubeconform"]
    assert "seconds" in kube or "not built" in kube["binary"], kube
    if "seconds" in kube:
        assert kube["summary"]["valid"] > 0 and not kube["summary"]["invalid"] and not kube["summary"]["errors"], kube


def test_vault_calls_per_rotation_stay_at_the_protocol_minimum_on_the_fake() -> None:
    report = _json("bench_rotation_vault_calls.py", "--no-vault", "-n", "1", "--ledger-entries", "2")
    assert {r["scenario"] for r in report["results"]} == {"keep old", "revokeOld"}
    assert all(r["counted_total"] == r["minimum_total"] for r in report["results"]), report["results"]


@pytest.mark.timeout(300)
def test_controller_memory_at_a_smoke_size() -> None:
    out = _run("bench_controller_memory.py", "-n", "200", "--trace", "0")
    assert "peak RSS" in out


def test_scan_benchmark_at_a_smoke_size() -> None:
    """Both tools on a tiny tree, scored against the labelled corpus. gitleaks runs only when already built (the
    smoke never builds Go code): otherwise the report says it was not run, and why."""
    report = _json("bench_scan.py", "--size-mb", "0.3", "--no-cli")
    for key in ("seconds", "mb_per_s", "recall", "false_alarm_rate", "recall_by_syntax"):
        assert key in report["chamberlain"], report["chamberlain"]
    assert report["tree"]["corpus"]["positives"] > 0 and report["tree"]["corpus"]["near_misses"] > 0
    gitleaks = report["gitleaks"]
    assert "recall" in gitleaks or "not built" in gitleaks["binary"], gitleaks
