"""The benchmarks that need the real servers run at a smoke size (each starts its own dev lab on its own ports),
so they keep working as the code changes. Not timed tests: the goals they print are not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.timeout(700)
def test_batch_rotation_through_the_real_eso_at_a_smoke_size() -> None:
    out = _run("bench_batch_rotation.py", "--secrets", "6", "--per-workload", "3", "--namespaces", "2",
               "--skip-floor", "--port-offset", "3100")
    assert "each workload restarted once" in out


@pytest.mark.timeout(700)
def test_propagation_through_the_real_eso_at_a_smoke_size() -> None:
    out = _run("bench_propagation.py", "-n", "20", "--warmup", "1", "--port-offset", "3300")
    assert "p95" in out
