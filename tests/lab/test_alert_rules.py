"""The packaged PrometheusRule alerts under the real ``promtool`` (built by ``python -m chamberlain.lab build
promtool``): ``check rules`` accepts them, and ``test rules`` runs a unit test for every alert, once where it must
fire (with its labels and rendered annotations) and once where it must stay silent. No server: promtool evaluates
the rules over the synthetic series below."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.lab import builds
from chamberlain.observability import alert_groups, alert_names
from tests.conftest import host_settings, unbuilt

JOB = {"job": "chamberlain", "namespace": "chamberlain"}
A = {**JOB, "instance": "10.0.0.1:9102"}
B = {**JOB, "instance": "10.0.0.2:9102"}
DB = {"secret": "db", "path": "secret/shop/db"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


@dataclass(frozen=True)
class Case:
    """``alert`` evaluated at ``at`` over ``input``: fires with ``labels`` (and ``value`` for the annotations'
    ``$value``), or stays silent when ``labels`` is None."""

    alert: str
    at: str
    input: tuple[dict[str, str], ...]
    labels: dict[str, str] | None = None
    value: str = ""


def _histogram(buckets: dict[str, str]) -> tuple[dict[str, str], ...]:
    return tuple(series("chamberlain_propagation_latency_seconds_bucket", {**A, "le": le}, v)
                 for le, v in buckets.items())


CASES: tuple[Case, ...] = (
    Case("ChamberlainControllerDown", "10m", (series("up", A, "0x15"), series("up", B, "0x15")), {}),
    Case("ChamberlainControllerDown", "10m", (series("chamberlain_leader", A, "1x15"),), {}),  # no target at all
    Case("ChamberlainControllerDown", "10m", (series("up", A, "0x15"), series("up", B, "1x15"))),
    Case("ChamberlainReplicaDown", "20m", (series("up", A, "0x25"), series("up", B, "1x25")), A),
    Case("ChamberlainReplicaDown", "10m", (series("up", A, "0x25"),)),  # down, but not for 15 minutes yet
    Case("ChamberlainLeaderAbsent", "10m",
         (series("chamberlain_leader", A, "0x15"), series("chamberlain_leader", B, "0x15")),
         {"namespace": "chamberlain"}),
    Case("ChamberlainLeaderAbsent", "10m",
         (series("chamberlain_leader", A, "0x15"), series("chamberlain_leader", B, "1x15"))),
    Case("ChamberlainLoopStalled", "10m", (series("chamberlain_loop_last_tick_timestamp_seconds", A, "0x15"),),
         A),
    Case("ChamberlainLoopStalled", "10m",  # ticks every minute: the timestamp keeps up with time()
         (series("chamberlain_loop_last_tick_timestamp_seconds", A, "0+60x15"),)),
    Case("ChamberlainAuthorityUnavailable", "10m", (series("chamberlain_authority_up", A, "0x15"),), A),
    Case("ChamberlainAuthorityUnavailable", "10m", (series("chamberlain_authority_up", A, "1x5 0x10"),)),
    Case("ChamberlainAuthorityErrors", "25m",
         (series("chamberlain_vault_requests_total", {**A, "operation": "read"}, "0+2x30"),
          series("chamberlain_vault_request_errors_total", {**A, "operation": "read", "reason": "unavailable"},
                 "0+1x30")),
         {"namespace": "chamberlain"}, "50%"),
    Case("ChamberlainAuthorityErrors", "25m",
         (series("chamberlain_vault_requests_total", {**A, "operation": "read"}, "0+100x30"),
          series("chamberlain_vault_request_errors_total", {**A, "operation": "write", "reason": "conflict"},
                 "0+1x30"))),  # 1 % of the requests: below the 5 % threshold
    Case("ChamberlainRotationFailed", "10m",
         (series("chamberlain_rotations_total", {**A, "secret": "db", "trigger": "time", "result": "test"},
                 "0 0 0 1x10"),), {"namespace": "chamberlain", "secret": "db"}),
    Case("ChamberlainRotationFailed", "3h",  # failed once, long ago; rotations since succeed
         (series("chamberlain_rotations_total", {**A, "secret": "db", "trigger": "time", "result": "test"},
                 "0 1x200"),
          series("chamberlain_rotations_total", {**A, "secret": "db", "trigger": "time", "result": "ok"},
                 "0+1x200"))),
    Case("ChamberlainSecretHeld", "5m", (series("chamberlain_secret_held", {**A, **DB}, "1x10"),),
         {"namespace": "chamberlain", **DB}),
    Case("ChamberlainSecretHeld", "5m", (series("chamberlain_secret_held", {**A, **DB}, "0x10"),)),
    Case("ChamberlainSecretPastTTL", "20m",
         (series("chamberlain_secret_age_seconds", {**A, **DB}, "3000+60x25"),
          series("chamberlain_secret_ttl_seconds", {**A, **DB}, "3600x25")), {"namespace": "chamberlain", **DB}),
    Case("ChamberlainSecretPastTTL", "10m",  # the status code's overdue flag alone is enough
         (series("chamberlain_secret_overdue", {**A, **DB}, "1x15"),), {"namespace": "chamberlain", **DB}),
    Case("ChamberlainSecretPastTTL", "9m",  # 3540 s old of 3600
         (series("chamberlain_secret_age_seconds", {**A, **DB}, "3000+60x25"),
          series("chamberlain_secret_ttl_seconds", {**A, **DB}, "3600x25"),
          series("chamberlain_secret_overdue", {**A, **DB}, "0x25"))),
    Case("ChamberlainRotationLate", "70m",
         (series("chamberlain_secret_next_due_timestamp_seconds", {**A, **DB}, "0x80"),),
         {"namespace": "chamberlain", **DB}),
    Case("ChamberlainRotationLate", "70m",  # due at 1h05m: late by 5 minutes only
         (series("chamberlain_secret_next_due_timestamp_seconds", {**A, **DB}, "3900x80"),)),
    Case("ChamberlainPropagationSlow", "30m",
         _histogram({"1": "0x40", "60": "0x40", "120": "0+1x40", "+Inf": "0+1x40"}),
         {"namespace": "chamberlain"}, "1m 57s"),
    Case("ChamberlainPropagationSlow", "30m",
         _histogram({"1": "0+1x40", "60": "0+1x40", "120": "0+1x40", "+Inf": "0+1x40"})),
)


def _render(template: str, labels: dict[str, str], value: str) -> str:
    """The few template forms the annotations use, as Prometheus expands them."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    return re.sub(r"\{\{ \$value \| humanize\w+ \}\}", value, text)


def _rule(alert: str) -> dict[str, Any]:
    return next(r for g in alert_groups() for r in g["rules"] if r.get("alert") == alert)


def _test_group(case: Case) -> dict[str, Any]:
    expected: list[dict[str, Any]] = []
    if case.labels is not None:
        rule = _rule(case.alert)
        labels = {**case.labels, **rule["labels"]}
        expected.append({"exp_labels": labels, "exp_annotations": {
            k: _render(v, labels, case.value) for k, v in rule["annotations"].items()}})
    return {"interval": "1m", "input_series": list(case.input),
            "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}]}


@pytest.fixture(scope="module")
def promtool() -> Path:
    if unbuilt(["promtool"]):
        msg = "promtool not built; run `python -m chamberlain.lab build promtool`"
        if os.environ.get("CI"):  # CI builds every lab component first, as for the lab fixture
            pytest.fail(msg)
        pytest.skip(msg)
    return builds.binary(host_settings().lab_cache, "promtool")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "chamberlain.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": alert_groups()}, sort_keys=False))
    return path


def _promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_promtool_accepts_the_packaged_rules(promtool: Path, rules_file: Path) -> None:
    done = _promtool(promtool, "check", "rules", rules_file.name, cwd=rules_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in done.stdout


def test_every_alert_fires_when_it_should_and_stays_silent_when_it_should_not(promtool: Path,
                                                                              rules_file: Path) -> None:
    firing = {c.alert for c in CASES if c.labels is not None}
    silent = {c.alert for c in CASES if c.labels is None}
    assert firing == silent == set(alert_names())  # a new alert needs both of its cases here
    tests = rules_file.parent / "chamberlain.rules.test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules_file.name], "evaluation_interval": "1m",
                                     "tests": [_test_group(c) for c in CASES]}, sort_keys=False))
    done = _promtool(promtool, "test", "rules", tests.name, cwd=rules_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_broken_expectation_fails_so_the_cases_above_really_run(promtool: Path, rules_file: Path) -> None:
    wrong = Case("ChamberlainSecretHeld", "5m", (series("chamberlain_secret_held", {**A, **DB}, "0x10"),),
                 {"namespace": "chamberlain", **DB})
    tests = rules_file.parent / "wrong.test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules_file.name], "tests": [_test_group(wrong)]}))
    done = _promtool(promtool, "test", "rules", tests.name, cwd=rules_file.parent)
    assert done.returncode == 1 and "ChamberlainSecretHeld" in done.stdout + done.stderr
