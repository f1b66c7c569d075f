"""The controller's Prometheus metrics, on a registry of its own (tests create as many controllers as they like).

Labels are names and outcomes only — secret names, trigger kinds, results, Vault operations — never values.
"""

from __future__ import annotations

import contextlib
import platform
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from chamberlain import __version__

# Propagation through ESO takes under a second in the lab; ESO's own default refresh is an hour.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RUN_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)


class SecretSeries:
    """The per-secret gauges (age, next due, held, ttl, overdue, failed runs) of every secret in scope, in one
    compact table exported at scrape time: a ``prometheus_client`` child per series costs about 650 bytes, so five
    series per secret cost 31 MiB at 10k secrets; a row of floats per secret costs a tenth of that. The series,
    names, help and labels are the same as ``Gauge``'s.

    It is written out by :meth:`text`, a chunk of lines at a time, not through a registry: prometheus_client
    builds a sample object per series and then the whole text, a 21 MiB transient for a scrape at 10k secrets and
    the controller's peak RSS. :meth:`collect` remains for a registry that wants it (tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: list[tuple[str, str]] = []  # (metric name, help), by column
        self._rows: dict[tuple[str, str], list[float | None]] = {}  # (secret, path) -> a value per column

    def gauge(self, name: str, documentation: str) -> SecretGauge:
        self._names.append((name, documentation))
        return SecretGauge(self, len(self._names) - 1)

    def set(self, column: int, key: tuple[str, str], value: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = [None] * len(self._names)
            row[column] = float(value)

    def get(self, column: int, key: tuple[str, str]) -> float | None:
        with self._lock:
            row = self._rows.get(key)
            return row[column] if row is not None else None

    def remove(self, column: int, key: tuple[str, str]) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is None or row[column] is None:
                raise KeyError(key)
            row[column] = None
            if all(v is None for v in row):
                del self._rows[key]

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(name, doc, labels=["secret", "path"]) for name, doc in self._names]

    def collect(self) -> list[Metric]:
        families = [GaugeMetricFamily(name, doc, labels=["secret", "path"]) for name, doc in self._names]
        with self._lock:
            rows = [(key, list(row)) for key, row in self._rows.items()]
        for key, row in rows:
            for family, value in zip(families, row, strict=True):
                if value is not None:
                    family.add_metric(list(key), value)
        return list(families)

    def text(self, lines_per_chunk: int = 1000) -> Iterator[bytes]:
        """The series in the Prometheus text format (0.0.4), byte for byte as ``generate_latest`` writes them, a
        chunk of ``lines_per_chunk`` lines at a time."""
        with self._lock:
            rows = [(key, tuple(row)) for key, row in self._rows.items()]
        for column, (name, doc) in enumerate(self._names):
            lines = [f"# HELP {name} {_escape_help(doc)}\n# TYPE {name} gauge\n"]
            for (secret, path), row in rows:
                value = row[column]
                if value is None:
                    continue
                # labels sorted by name, as generate_latest sorts them
                lines.append(f'{name}{{path="{_escape_label(path)}",secret="{_escape_label(secret)}"}} '
                             f"{floatToGoString(value)}\n")  # type: ignore[no-untyped-call]
                if len(lines) >= lines_per_chunk:
                    yield "".join(lines).encode()
                    lines = []
            if lines:
                yield "".join(lines).encode()


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


@dataclass(frozen=True)
class _Sample:
    series: SecretSeries
    column: int
    key: tuple[str, str]

    def set(self, value: float) -> None:
        self.series.set(self.column, self.key, value)

    @property
    def _value(self) -> _Sample:  # what tests read of a prometheus_client child
        return self

    def get(self) -> float | None:
        return self.series.get(self.column, self.key)


@dataclass(frozen=True)
class SecretGauge:
    """One per-secret gauge of a :class:`SecretSeries`, used like a labelled ``Gauge``."""

    series: SecretSeries
    column: int

    def labels(self, secret: str, path: str) -> _Sample:
        return _Sample(self.series, self.column, (secret, path))

    def remove(self, secret: str, path: str) -> None:
        """KeyError when the series does not exist (as ``Gauge.remove``)."""
        self.series.remove(self.column, (secret, path))


@dataclass
class ControllerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.per_secret = series = SecretSeries()  # written out beside the registry (see scrape)
        self.secret_age = series.gauge("chamberlain_secret_age_seconds",
                                       "Seconds since the secret last got a new value")
        self.next_due = series.gauge("chamberlain_secret_next_due_timestamp_seconds",
                                     "Unix time the secret is next due for rotation (absent: never by time)")
        self.held = series.gauge("chamberlain_secret_held", "1 while the secret is held after a failed rotation")
        self.rotations = Counter("chamberlain_rotations", "Finished rotation runs",
                                 ["secret", "trigger", "result"], registry=r)
        self.run_duration = Histogram("chamberlain_rotation_run_duration_seconds",
                                      "Start of a run to its ledger entry", ["trigger"], buckets=RUN_BUCKETS,
                                      registry=r)
        self.propagation = Histogram("chamberlain_propagation_latency_seconds",
                                     "Force-refresh to every consumer Secret carrying the new version marker",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.vault_requests = Counter("chamberlain_vault_requests", "Requests to the runtime authority",
                                      ["operation"], registry=r)
        self.alerts = Counter("chamberlain_rotation_alerts", "Runs that ended under failureStrategy alert",
                              ["secret"], registry=r)
        self.leader = Gauge("chamberlain_leader", "1 while this replica holds the leader Lease", registry=r)
        self.requests = Counter("chamberlain_rotation_requests", "Rotation requests by trigger and outcome",
                                ["trigger", "outcome"], registry=r)
        self.active_runs = Gauge("chamberlain_active_runs", "Unfinished runs this replica drives", registry=r)
        # SecretIntent status (controller.status): overdue secrets, failure streaks, status writes, pruned runs
        self.overdue = series.gauge("chamberlain_secret_overdue", "1 while the secret is past its ttl and not rotating")
        self.failed_runs = series.gauge("chamberlain_secret_failed_runs",
                                        "Consecutive failed runs of a secret (a series only while there are any)")
        self.status_writes = Counter("chamberlain_status_writes", "SecretIntent status patches by result",
                                     ["result"], registry=r)
        self.pruned_runs = Counter("chamberlain_rotationruns_pruned", "RotationRun objects deleted by history "
                                   "pruning", registry=r)
        self._observability(r)

    def _observability(self, r: CollectorRegistry) -> None:
        """Build info, process metrics, the secrets' ttl, authority errors and the loop's heartbeat (what the
        packaged alerts and dashboard need beyond the metrics above: chamberlain.observability)."""
        Info("chamberlain_build", "The running chamberlain", registry=r).info(
            {"version": __version__, "python_version": platform.python_version()})
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds
        PlatformCollector(registry=r)  # python_info
        self.secret_ttl = self.per_secret.gauge("chamberlain_secret_ttl_seconds",
                                                "The ttl of a time-based secret's policy")
        self.vault_errors = Counter("chamberlain_vault_request_errors", "Requests to the runtime authority that "
                                    "failed, by reason (unavailable, forbidden, conflict, not_found, refused, other)",
                                    ["operation", "reason"], registry=r)
        self.authority_up = Gauge("chamberlain_authority_up", "0 while the loop cannot reach the authority",
                                  registry=r)
        self.last_tick = Gauge("chamberlain_loop_last_tick_timestamp_seconds", "Unix time the loop last finished "
                               "a tick", registry=r)
        # Until the first tick: the controller is wired after its login, and its start is its last sign of life
        # (a 0 would read as a loop stalled since 1970).
        self.authority_up.set(1)
        self.last_tick.set_to_current_time()
        self.last_beat: float | None = None  # time.monotonic() of the last tick, for /healthz

    def heartbeat(self, now: float, authority_ok: bool) -> None:
        """The loop finished a tick (``now``: the loop clock's Unix time); ``authority_ok``: no outage."""
        self.last_beat = time.monotonic()  # real time on purpose: the kubelet's probe runs on it
        self.last_tick.set(now)
        self.authority_up.set(1 if authority_ok else 0)

    def vault_error(self, operation: str, reason: str) -> None:
        self.vault_errors.labels(operation, reason).inc()

    def forget_secret(self, secret: str, path: str) -> None:
        """Drop a secret's series when it leaves the scope, so no gauge (an overdue 1) outlives its intent."""
        for gauge in (self.secret_age, self.secret_ttl, self.next_due, self.held, self.overdue, self.failed_runs):
            with contextlib.suppress(KeyError):
                gauge.remove(secret, path)

    def vault_request(self, operation: str) -> None:
        self.vault_requests.labels(operation).inc()

    def scrape(self) -> Iterator[bytes]:
        """What ``/metrics`` answers (the text format), in chunks: the registry's metrics, then the per-secret
        series a chunk at a time."""
        yield generate_latest(self.registry)
        yield from self.per_secret.text()

    def exposition(self) -> bytes:
        return b"".join(self.scrape())


__all__ = ["ControllerMetrics", "SecretGauge", "SecretSeries"]
