"""The controller's metric names as Prometheus exposes them (counters with ``_total``, histograms with
``_bucket``), one place for the alerts and the dashboard. ``tests/unit/test_observability.py`` checks each one
against the exposition of :class:`chamberlain.controller.metrics.ControllerMetrics`."""

# ruff: noqa: S105 - metric names, not passwords ("SECRET_" is the secret under rotation)
from __future__ import annotations

ROTATIONS = "chamberlain_rotations_total"  # {secret, trigger, result}; result "ok" or the stage it failed at
RUN_DURATION = "chamberlain_rotation_run_duration_seconds"  # histogram {trigger}
PROPAGATION = "chamberlain_propagation_latency_seconds"  # histogram
SECRET_AGE = "chamberlain_secret_age_seconds"  # {secret, path}
SECRET_TTL = "chamberlain_secret_ttl_seconds"  # {secret, path}; time-based secrets only
SECRET_NEXT_DUE = "chamberlain_secret_next_due_timestamp_seconds"  # {secret, path}
SECRET_HELD = "chamberlain_secret_held"  # {secret, path}, 0/1
SECRET_OVERDUE = "chamberlain_secret_overdue"  # {secret, path}, 0/1 (set by the status code, past its ttl)
ROTATION_ALERTS = "chamberlain_rotation_alerts_total"  # {secret}
ROTATION_REQUESTS = "chamberlain_rotation_requests_total"  # {trigger, outcome}
ACTIVE_RUNS = "chamberlain_active_runs"
LEADER = "chamberlain_leader"  # 0/1 per replica
VAULT_REQUESTS = "chamberlain_vault_requests_total"  # {operation}
VAULT_ERRORS = "chamberlain_vault_request_errors_total"  # {operation, reason}; reason unavailable|refused|other
AUTHORITY_UP = "chamberlain_authority_up"  # 0 while the loop cannot reach the authority
LAST_TICK = "chamberlain_loop_last_tick_timestamp_seconds"
BUILD_INFO = "chamberlain_build_info"  # {version, python_version}

METRICS: tuple[str, ...] = (
    ROTATIONS, RUN_DURATION, PROPAGATION, SECRET_AGE, SECRET_TTL, SECRET_NEXT_DUE, SECRET_HELD, SECRET_OVERDUE,
    ROTATION_ALERTS, ROTATION_REQUESTS, ACTIVE_RUNS, LEADER, VAULT_REQUESTS, VAULT_ERRORS, AUTHORITY_UP, LAST_TICK,
    BUILD_INFO,
)

__all__ = [
    "ACTIVE_RUNS",
    "AUTHORITY_UP",
    "BUILD_INFO",
    "LAST_TICK",
    "LEADER",
    "PROPAGATION",
    "ROTATIONS",
    "ROTATION_ALERTS",
    "ROTATION_REQUESTS",
    "RUN_DURATION",
    "SECRET_AGE",
    "SECRET_HELD",
    "SECRET_NEXT_DUE",
    "SECRET_OVERDUE",
    "SECRET_TTL",
    "VAULT_ERRORS",
    "VAULT_REQUESTS",
]
