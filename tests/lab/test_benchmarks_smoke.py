"""The benchmarks that need the real servers run at a smoke size (each starts its own dev lab on its own ports),
so they keep working as the code changes. Not timed tests: the goals they print are not asserted here."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_benchmark

pytestmark = [pytest.mark.lab, pytest.mark.own_lab]  # own servers: run beside the shared lab


def _run(script: str, *args: str) -> str:
    return run_benchmark(script, *args, timeout=600)


@pytest.mark.timeout(700)
def test_batch_rotation_through_the_real_eso_at_a_smoke_size() -> None:
    out = _run("bench_batch_rotation.py", "--secrets", "6", "--per-workload", "3", "--namespaces", "2",
               "--skip-floor", "--protocol-floor", "--protocol-without", "run-records,ledger-entries",
               "--protocol-without", "chunk-leases", "--port-offset", "3100")
    assert "each workload restarted once" in out
    assert "protocol floor: its requests, raw clients" in out and "controller/protocol floor" in out
    assert "protocol floor without ledger-entries, run-records:" in out  # the batch-lease replays
    assert "protocol floor without chunk-leases:" in out


@pytest.mark.timeout(700)
def test_a_graceful_stop_once_the_restart_pass_began_at_a_smoke_size() -> None:
    """``--stop-at restart``: the controller is stopped when the batch's first run restarted; the benchmark exits
    non-zero unless a second controller finished every run once (no run completed by both) and no workload rolled
    twice."""
    report = json.loads(_run("bench_batch_rotation.py", "--secrets", "6", "--per-workload", "3", "--namespaces", "2",
                             "--stop-at", "restart", "--port-offset", "3900"))
    [stopped] = report
    assert stopped["runs_finished"] == 6 and stopped["restarted_once"] == stopped["workloads"] == 2, stopped
    assert stopped["completed_twice"] == 0 and stopped["runs_failed"] == 0, stopped
    print(f"\n[graceful stop] the stop took {stopped['stop_seconds']:.2f}s")


@pytest.mark.timeout(700)
def test_propagation_through_the_real_eso_at_a_smoke_size() -> None:
    out = _run("bench_propagation.py", "-n", "20", "--warmup", "1", "--port-offset", "3300")
    assert "p95" in out


@pytest.mark.timeout(500)
def test_failover_of_the_raft_leader_mid_batch_at_a_smoke_size() -> None:
    """A three-node OpenBao (raft): the leader is SIGKILLed once the first run of a batch started. The benchmark
    exits non-zero unless every run finished, each secret moved by exactly one version whose value-version is
    current, each run wrote one rotation ledger entry, the ledger verifies and ESO delivered every new marker."""
    out = _run("bench_failover.py", "--secrets", "6", "--per-workload", "3", "--namespaces", "2",
               "--timeout", "120", "--warmup", "0", "--port-offset", "4100", "-o", "json")
    report = json.loads(out)
    assert report["ok"], report["problems"]
    failover = report["failover"]
    assert failover["killed"] != failover["new_leader"] and failover["killed_at"] is not None
    assert failover["failed"] == 0 and failover["synced"] == failover["runs"] == 6
    print(f"\n[failover] p95 {report['baseline']['seconds']['p95']:.2f}s -> {failover['seconds']['p95']:.2f}s "
          f"(+{report['extra_p95_seconds']:.2f}s)")


@pytest.mark.timeout(600)
def test_external_rotation_through_the_real_eso_at_a_smoke_size() -> None:
    """Producer change -> every consumer updated (two sizes, two samples): the benchmark exits non-zero unless each
    workload restarted exactly once per rotation."""
    out = _run("bench_external_rotation.py", "--sizes", "1,3", "-n", "2", "--warmup", "0", "--port-offset", "3500",
               "-o", "json")
    report = json.loads(out)
    assert set(report["sizes"]) == {"1", "3"}
    assert all(g["once_per_rotation"] for g in report["deployment_generations"].values())


@pytest.mark.timeout(400)
def test_controller_in_watch_mode_beside_eso_at_a_smoke_size() -> None:
    """P5 at 50 SecretIntents in the real kube-apiserver (own lab): the controller's peak RSS, its API requests per
    second and its logins, and ESO's, measured the same way; three P3 rotations. Shape only: goals are for 10k."""
    report = json.loads(_run("bench_controller_watch.py", "--smoke", "--port-offset", "3700", "-o", "json"))
    ids = {f["id"] for f in report["figures"]}
    assert {"P5", "P3"} <= ids, ids
    rss = next(f for f in report["figures"] if f["id"] == "P5" and f["unit"] == "MiB")
    assert rss["measured"] > 0 and rss["floor"] is not None  # ESO's RSS, measured in the same run
