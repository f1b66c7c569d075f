"""The PrometheusRule ``spec.groups`` for chamberlain: the controller's health and the secrets' life cycle.

Every alert is on a metric the controller really exports (:mod:`.names`), and each has a promtool unit test that
shows it firing and staying silent (``tests/lab/test_alert_rules.py``). ``selector`` picks the controller's series
(the ServiceMonitor's job, and a namespace when two environments share a Prometheus).
"""

from __future__ import annotations

from typing import Any

from chamberlain.observability import names as m

DEFAULT_SELECTOR = 'job="chamberlain"'

# Thresholds a platform team may tune (the chart exposes them as values).
DEFAULTS: dict[str, float] = {
    "propagation_p95_seconds": 60.0,  # ESO picks up a forced refresh in about a second; a minute means trouble
    "authority_error_ratio": 0.05,
    "rotation_late_seconds": 3600.0,  # due this long and still not rotated
    "loop_stall_seconds": 300.0,  # the loop ticks every second, pausing at most 30 s while the authority is down
}


def _alert(name: str, expr: str, *, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ != "0m":
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _controller_rules(s: str, t: dict[str, float]) -> list[dict[str, Any]]:
    return [
        _alert("ChamberlainControllerDown", f"absent(up{{{s}}} == 1)", for_="5m", severity="critical",
               summary="No chamberlain controller replica is up",
               description="Prometheus scrapes no healthy chamberlain replica: nothing rotates, time-based "
                           "secrets age past their ttl."),
        _alert("ChamberlainReplicaDown", f"up{{{s}}} == 0", for_="15m", severity="warning",
               summary="A chamberlain replica is down",
               description="{{ $labels.instance }} has not been scraped for 15 minutes; the other replica leads."),
        _alert("ChamberlainLeaderAbsent", f"max by (namespace) ({m.LEADER}{{{s}}}) == 0", for_="5m",
               severity="critical", summary="No chamberlain replica holds the leader Lease",
               description="Replicas are up but none leads in {{ $labels.namespace }}: no rotation starts. "
                           "Check the Lease and the API server."),
        _alert("ChamberlainLoopStalled",
               f"time() - {m.LAST_TICK}{{{s}}} > {t['loop_stall_seconds']:g}", for_="2m", severity="critical",
               summary="The chamberlain controller loop is stuck",
               description="{{ $labels.instance }} finished no tick for over "
                           f"{t['loop_stall_seconds']:g} s; /healthz fails and the kubelet restarts it."),
        _alert("ChamberlainAuthorityUnavailable", f"{m.AUTHORITY_UP}{{{s}}} == 0", for_="5m", severity="critical",
               summary="chamberlain cannot reach Vault/OpenBao",
               description="{{ $labels.instance }} has been unable to reach the authority for 5 minutes; runs "
                           "in flight wait (their records are in Vault) and resume when it is back."),
        _alert("ChamberlainAuthorityErrors",
               f"sum by (namespace) (rate({m.VAULT_ERRORS}{{{s}}}[10m]))"
               f" / sum by (namespace) (rate({m.VAULT_REQUESTS}{{{s}}}[10m]))"
               f" > {t['authority_error_ratio']:g}",
               for_="10m", severity="warning", summary="Requests from chamberlain to the authority fail",
               description="{{ $value | humanizePercentage }} of chamberlain's requests to "
                           "Vault/OpenBao failed over 10 minutes (refusals or errors); see the controller log."),
    ]


def _secret_rules(s: str, t: dict[str, float]) -> list[dict[str, Any]]:
    by = "max by (namespace, secret, path)"
    return [
        _alert("ChamberlainRotationFailed",
               f"sum by (namespace, secret) (increase({m.ROTATIONS}{{{s},result!=\"ok\"}}[1h])) > 0",
               for_="0m", severity="warning", summary="A rotation of {{ $labels.secret }} failed",
               description="A rotation run of {{ $labels.secret }} failed in the last hour; "
                           "`chamberlain status` shows the stage and the run."),
        _alert("ChamberlainSecretHeld", f"{by} ({m.SECRET_HELD}{{{s}}}) == 1", for_="1m", severity="warning",
               summary="{{ $labels.secret }} is held after a failed rotation",
               description="{{ $labels.secret }} ({{ $labels.path }}) will not rotate until someone releases "
                           "the hold (`chamberlain rotate NAME --release`)."),
        _alert("ChamberlainSecretPastTTL",
               f"({by} ({m.SECRET_AGE}{{{s}}}) > on (namespace, secret, path) {by} ({m.SECRET_TTL}{{{s}}}))"
               f" or on (namespace, secret, path) ({by} ({m.SECRET_OVERDUE}{{{s}}}) == 1)",
               for_="5m", severity="critical", summary="{{ $labels.secret }} is older than its ttl",
               description="{{ $labels.secret }} ({{ $labels.path }}) is past its ttl: consumers hold a "
                           "credential the policy says is expired."),
        _alert("ChamberlainRotationLate",
               f"time() - {by} ({m.SECRET_NEXT_DUE}{{{s}}}) > {t['rotation_late_seconds']:g}",
               for_="5m", severity="warning", summary="{{ $labels.secret }} is due but not rotated",
               description="{{ $labels.secret }} entered its rotation window over "
                           f"{t['rotation_late_seconds']:g} s ago and has not rotated yet."),
        _alert("ChamberlainPropagationSlow",
               f"histogram_quantile(0.95, sum by (namespace, le) (rate({m.PROPAGATION}_bucket{{{s}}}[1h])))"
               f" > {t['propagation_p95_seconds']:g}",
               for_="0m", severity="warning", summary="New secret versions reach consumers slowly",
               description="The 95th percentile of propagation latency over the last hour is "
                           "{{ $value | humanizeDuration }}; check the External Secrets Operator."),
    ]


def alert_groups(selector: str = DEFAULT_SELECTOR, **thresholds: float) -> list[dict[str, Any]]:
    """The PrometheusRule's ``spec.groups``. ``thresholds`` override :data:`DEFAULTS` by key."""
    unknown = set(thresholds) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown alert thresholds: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    t = {**DEFAULTS, **thresholds}
    return [
        {"name": "chamberlain.controller", "rules": _controller_rules(selector, t)},
        {"name": "chamberlain.secrets", "rules": _secret_rules(selector, t)},
    ]


def alert_names() -> list[str]:
    """Every alert's name, in rule order."""
    return [r["alert"] for g in alert_groups() for r in g["rules"]]


__all__ = ["DEFAULTS", "DEFAULT_SELECTOR", "alert_groups", "alert_names"]
