"""The Grafana dashboard for chamberlain: rotations, failures, age versus ttl, propagation latency, held secrets,
authority requests, and the controller process. Built here in Python so it stays in step with :mod:`.names`;
``dashboard_json()`` is what the chart's ConfigMap and ``deploy/grafana/chamberlain.json`` hold."""

from __future__ import annotations

import json
from typing import Any

from chamberlain.observability import names as m

UID = "chamberlain-overview"
SEL = 'namespace=~"$namespace"'  # every query is scoped by the dashboard's namespace variable
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(kind: str, title: str, grid: tuple[int, int, int, int], queries: list[tuple[str, str]], *,
           unit: str = "short", description: str = "", thresholds: list[tuple[str, float | None]] | None = None,
           ) -> dict[str, Any]:
    x, y, w, h = grid
    steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)],
    }


def _row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": []}


def _panels() -> list[dict[str, Any]]:
    red_at_1 = [("green", None), ("red", 1.0)]
    return [
        _row("Overview", 0),
        _panel("stat", "Leader", (0, 1, 4, 4), [(f"sum({m.LEADER}{{{SEL}}})", "leaders")],
               description="Replicas holding the leader Lease (1 per environment is healthy).",
               thresholds=[("red", None), ("green", 1.0), ("orange", 2.0)]),
        _panel("stat", "Held secrets", (4, 1, 4, 4), [(f"sum({m.SECRET_HELD}{{{SEL}}})", "held")],
               thresholds=red_at_1),
        _panel("stat", "Past ttl", (8, 1, 4, 4),
               [(f"count(max by (secret) ({m.SECRET_AGE}{{{SEL}}}) > on (secret) "
                 f"max by (secret) ({m.SECRET_TTL}{{{SEL}}})) or vector(0)", "past ttl")], thresholds=red_at_1),
        _panel("stat", "Active runs", (12, 1, 4, 4), [(f"sum({m.ACTIVE_RUNS}{{{SEL}}})", "runs")]),
        _panel("stat", "Authority reachable", (16, 1, 4, 4), [(f"min({m.AUTHORITY_UP}{{{SEL}}})", "up")],
               thresholds=[("red", None), ("green", 1.0)]),
        _panel("stat", "Version", (20, 1, 4, 4),
               [(f"count by (version) ({m.BUILD_INFO}{{{SEL}}})", "{{version}}")]),
        _row("Rotations", 5),
        _panel("timeseries", "Rotations by result", (0, 6, 12, 8),
               [(f"sum by (result) (increase({m.ROTATIONS}{{{SEL}}}[$__range]))", "{{result}}")],
               description="Finished runs; a result other than ok names the stage the run failed at."),
        _panel("table", "Failures in the last 24 h", (12, 6, 12, 8),
               [(f"sum by (secret, result) (increase({m.ROTATIONS}{{{SEL},result!=\"ok\"}}[24h])) > 0",
                 "{{secret}} {{result}}")]),
        _panel("timeseries", "Run duration p95 by trigger", (0, 14, 12, 8),
               [(f"histogram_quantile(0.95, sum by (trigger, le) "
                 f"(rate({m.RUN_DURATION}_bucket{{{SEL}}}[$__rate_interval])))", "{{trigger}}")], unit="s"),
        _panel("timeseries", "Rotation requests", (12, 14, 12, 8),
               [(f"sum by (trigger, outcome) (increase({m.ROTATION_REQUESTS}{{{SEL}}}[$__rate_interval]))",
                 "{{trigger}} {{outcome}}")]),
        _row("Secrets", 22),
        _panel("bargauge", "Age versus ttl", (0, 23, 12, 10),
               [(f"max by (secret) ({m.SECRET_AGE}{{{SEL}}}) / on (secret) "
                 f"max by (secret) ({m.SECRET_TTL}{{{SEL}}})", "{{secret}}")], unit="percentunit",
               description="Share of its ttl each time-based secret has lived; rotation starts before 100 %.",
               thresholds=[("green", None), ("orange", 0.8), ("red", 1.0)]),
        _panel("table", "Held secrets", (12, 23, 12, 10),
               [(f"max by (secret, path) ({m.SECRET_HELD}{{{SEL}}}) == 1", "{{secret}}")],
               description="Secrets that will not rotate until released."),
        _panel("timeseries", "Secret age", (0, 33, 12, 8),
               [(f"max by (secret) ({m.SECRET_AGE}{{{SEL}}})", "{{secret}}")], unit="s"),
        _panel("timeseries", "Propagation latency", (12, 33, 12, 8),
               [(f"histogram_quantile({q}, sum by (le) (rate({m.PROPAGATION}_bucket{{{SEL}}}[$__rate_interval])))",
                 f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], unit="s",
               description="Forced refresh to every consumer Secret carrying the new version."),
        _row("Authority and process", 41),
        _panel("timeseries", "Authority requests", (0, 42, 12, 8),
               [(f"sum by (operation) (rate({m.VAULT_REQUESTS}{{{SEL}}}[$__rate_interval]))", "{{operation}}"),
                (f"sum by (reason) (rate({m.VAULT_ERRORS}{{{SEL}}}[$__rate_interval]))", "errors {{reason}}")],
               unit="reqps"),
        _panel("timeseries", "Controller CPU and memory", (12, 42, 12, 8),
               [(f"rate(process_cpu_seconds_total{{{SEL},job=~\"$job\"}}[$__rate_interval])", "cpu {{instance}}"),
                (f"process_resident_memory_bytes{{{SEL},job=~\"$job\"}} / 2^20", "MiB {{instance}}")]),
    ]


def _variables() -> list[dict[str, Any]]:
    def query(name: str, expr: str) -> dict[str, Any]:
        return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
                "query": {"query": expr, "refId": name}, "definition": expr, "refresh": 2, "includeAll": True,
                "multi": True, "current": {}, "sort": 1}

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {},
         "refresh": 1},
        query("namespace", f"label_values({m.BUILD_INFO}, namespace)"),
        query("job", f"label_values({m.BUILD_INFO}, job)"),
    ]


def dashboard() -> dict[str, Any]:
    """The dashboard model (import it in Grafana, or let the chart's ConfigMap hand it to the sidecar)."""
    panels = _panels()
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
    return {
        "uid": UID, "title": "chamberlain", "description": "Secret rotation by chamberlain",
        "tags": ["chamberlain", "secrets"], "timezone": "utc", "editable": True, "schemaVersion": 39,
        "version": 1, "refresh": "1m", "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": _variables()}, "annotations": {"list": []}, "panels": panels,
    }


def dashboard_json() -> str:
    """:func:`dashboard` as stable JSON text (sorted keys, newline at the end)."""
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


__all__ = ["UID", "dashboard", "dashboard_json"]
