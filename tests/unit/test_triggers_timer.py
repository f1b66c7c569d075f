"""The time trigger over a fake clock: due secrets are requested once per window, and the ticker stops."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from chamberlain.clock import FakeClock
from chamberlain.intent.model import RotationPolicySpec
from chamberlain.triggers.request import MemoryQueue
from chamberlain.triggers.timer import SecretSchedule, Ticker, evaluate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHORT = RotationPolicySpec(type="time-based", ttl=timedelta(minutes=2), rotate_before=timedelta(seconds=30))


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        (SecretSchedule("short", SHORT, T0), T0 + timedelta(seconds=89), []),
        (SecretSchedule("short", SHORT, T0), T0 + timedelta(seconds=90), ["short"]),
        (SecretSchedule("short", SHORT, T0, held=True), T0 + timedelta(days=1), []),
        (SecretSchedule("fixed", RotationPolicySpec(type="static"), T0), T0 + timedelta(days=999), []),
        (SecretSchedule("evt", RotationPolicySpec(type="event-based"), T0), T0 + timedelta(days=999), []),
        (SecretSchedule("none", None, T0), T0 + timedelta(days=999), []),
    ],
    ids=["before-window", "window-opens", "held", "static", "event-based", "no-policy"],
)
def test_evaluate(schedule: SecretSchedule, at: datetime, expected: list[str]) -> None:
    assert [r.secret for r in evaluate([schedule], at)] == expected


def test_request_id_names_the_window() -> None:
    (request,) = evaluate([SecretSchedule("short", SHORT, T0)], T0 + timedelta(minutes=5))
    assert request.kind == "time"
    assert request.reason == "ttl-window"
    assert request.request_id == f"time:short:{(T0 + timedelta(seconds=90)).isoformat()}"


def test_short_ttl_secret_is_requested_exactly_once_per_window() -> None:
    """Tick every 10 s for 10 minutes; a 'workflow' takes each request 20 s later and records the rotation."""
    clock = FakeClock(T0)
    last = {"short": T0}
    queue = MemoryQueue()
    ticker = Ticker(lambda: [SecretSchedule("short", SHORT, last["short"])], queue, clock, interval=10)
    requested: list[datetime] = []
    taken_at: datetime | None = None
    for _ in range(60):
        requested += [clock.now() for _ in ticker.tick()]
        if taken_at is None and queue.take(timeout=0) is not None:
            taken_at = clock.now()
        if taken_at is not None and clock.now() - taken_at >= timedelta(seconds=20):
            last["short"] = clock.now()  # the workflow records the rotation in the metadata, then ends the run
            queue.done("short")
            taken_at = None
        clock.advance(10)
    # Window opens 90 s after each rotation; a rotation completes 20 s after the request: one every 110 s.
    assert [int((t - T0).total_seconds()) for t in requested] == [90, 200, 310, 420, 530]


def test_ticker_survives_a_failing_load_and_stops() -> None:
    calls = {"n": 0}

    def load() -> list[SecretSchedule]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("vault down")
        return [SecretSchedule("short", SHORT, T0)]

    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) >= 3

    queue = MemoryQueue()
    ticker = Ticker(load, queue, FakeClock(T0 + timedelta(hours=1)), interval=7, wait=wait)
    ticker.run()
    assert calls["n"] == 3
    assert waits == [7, 7, 7]
    assert [r.secret for r in queue.pending()] == ["short"]


def test_stop_interrupts_the_default_wait() -> None:
    ticker = Ticker(list, MemoryQueue(), FakeClock(T0), interval=3600)
    t = threading.Thread(target=ticker.run)
    t.start()
    ticker.stop()
    t.join(5)
    assert not t.is_alive()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ticker(list, MemoryQueue(), FakeClock(T0), interval=0)
