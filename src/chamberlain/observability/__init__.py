"""Observability packaged with chamberlain: the PrometheusRule alert groups and the Grafana dashboard.

Pure data built in Python, deterministic (the Helm chart and ``chamberlain render`` both embed it, and a test
compares them). No I/O and no Prometheus client here: the metric names are spelled out in :mod:`.names` and a unit
test checks them against the controller's real exposition (``chamberlain.controller.metrics``).
"""

from chamberlain.observability.alerts import DEFAULT_SELECTOR, alert_groups, alert_names
from chamberlain.observability.dashboard import dashboard, dashboard_json
from chamberlain.observability.names import METRICS

__all__ = ["DEFAULT_SELECTOR", "METRICS", "alert_groups", "alert_names", "dashboard", "dashboard_json"]
