"""The benchmarks that need the real servers run at a smoke size (each starts its own dev lab on its own ports),
so they keep working as the code changes. Not timed tests: the goals they print are not asserted here."""

from __future__ import annotations

import pytest

from tests.conftest import run_benchmark

pytestmark = pytest.mark.lab


def _run(script: str, *args: str) -> str:
    return run_benchmark(script, *args, timeout=600)


@pytest.mark.timeout(700)
def test_batch_rotation_through_the_real_eso_at_a_smoke_size() -> None:
    out = _run("bench_batch_rotation.py", "--secrets", "6", "--per-workload", "3", "--namespaces", "2",
               "--skip-floor", "--port-offset", "3100")
    assert "each workload restarted once" in out


@pytest.mark.timeout(700)
def test_propagation_through_the_real_eso_at_a_smoke_size() -> None:
    out = _run("bench_propagation.py", "-n", "20", "--warmup", "1", "--port-offset", "3300")
    assert "p95" in out
