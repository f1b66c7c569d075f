"""The packaged alerts and dashboard: deterministic, on the controller's real metric names (no server needed;
promtool checks the rules themselves in tests/lab/test_alert_rules.py)."""

from __future__ import annotations

import json
import re

import pytest

from chamberlain.observability import METRICS, alert_groups, alert_names, dashboard, dashboard_json


def _metric_names(expr: str) -> set[str]:
    return {n for n in re.findall(r"\b(chamberlain_[a-z_]+)", expr)}


def test_the_alerts_and_the_dashboard_are_deterministic() -> None:
    assert alert_groups() == alert_groups()
    assert dashboard_json() == dashboard_json()
    assert json.loads(dashboard_json()) == dashboard()


def test_every_alert_has_a_unique_name_a_severity_and_a_summary() -> None:
    names = alert_names()
    assert len(names) == len(set(names)) >= 10
    for group in alert_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


def test_alerts_and_panels_use_only_the_metrics_chamberlain_exports() -> None:
    known = {n.removesuffix("_bucket") for n in METRICS} | {f"{n}_bucket" for n in METRICS}
    exprs = [r["expr"] for g in alert_groups() for r in g["rules"]]
    exprs += [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used <= known, used - known


def test_the_selector_and_thresholds_are_applied() -> None:
    groups = alert_groups('job="cl",namespace="prod"', propagation_p95_seconds=5)
    exprs = [r["expr"] for g in groups for r in g["rules"]]
    assert all('job="cl",namespace="prod"' in e for e in exprs)
    assert any(e.endswith("> 5") for e in exprs)
    with pytest.raises(ValueError, match="unknown alert thresholds: nope"):
        alert_groups(nope=1)


def test_dashboard_panels_have_unique_ids_and_cover_the_issue() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("rotations", "failures", "age versus ttl", "propagation latency", "held secrets",
                  "authority requests"):
        assert topic in titles


def test_every_metric_name_is_in_the_controllers_exposition() -> None:
    from chamberlain.controller.metrics import ControllerMetrics

    m = ControllerMetrics()
    labels = ("db", "secret/shop/db")
    for gauge in (m.secret_age, m.secret_ttl, m.next_due, m.held, m.overdue):
        gauge.labels(*labels).set(1)
    m.rotations.labels("db", "time", "ok").inc()
    m.run_duration.labels("time").observe(1)
    m.propagation.observe(1)
    m.alerts.labels("db").inc()
    m.requests.labels("time", "queued").inc()
    m.vault_request("read")
    m.vault_error("read", "unavailable")
    m.heartbeat(1.0, authority_ok=True)
    text = m.exposition().decode()
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", text, re.M))
    missing = {n for n in METRICS if n not in exported and f"{n}_bucket" not in exported}
    assert not missing


def test_the_dashboard_file_in_deploy_is_the_generated_one() -> None:
    from tests.conftest import REPO_ROOT

    path = REPO_ROOT / "deploy" / "grafana" / "chamberlain.json"
    assert path.read_text() == dashboard_json(), (
        "regenerate: python -c 'from chamberlain.observability import dashboard_json; "
        "print(dashboard_json(), end=\"\")' > deploy/grafana/chamberlain.json")
