"""The pure rotation decision over a fake clock, and policy drift between Git and Vault metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chamberlain.handover.metadata import policy_metadata
from chamberlain.intent.model import RotationPolicySpec
from chamberlain.rotation.policy import drift, due, from_metadata, renewal_time

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STANDARD = RotationPolicySpec(type="time-based", ttl=timedelta(days=90), rotate_before=timedelta(days=7))


@pytest.mark.parametrize(
    ("spec", "age", "held", "expected_due", "reason"),
    [
        (STANDARD, timedelta(days=0), False, False, "not-yet"),
        (STANDARD, timedelta(days=82, hours=23), False, False, "not-yet"),
        (STANDARD, timedelta(days=83), False, True, "ttl-window"),
        (STANDARD, timedelta(days=200), False, True, "ttl-window"),
        (STANDARD, timedelta(days=200), True, False, "held"),
        (RotationPolicySpec(type="static"), timedelta(days=9999), False, False, "static"),
        (RotationPolicySpec(type="event-based"), timedelta(days=9999), False, False, "event-based"),
        (RotationPolicySpec(type="time-based", ttl=timedelta(minutes=2)), timedelta(minutes=2), False, True,
         "ttl-window"),
        (None, timedelta(days=1), False, False, "no-policy"),
    ],
    ids=["fresh", "just-before-window", "window-opens", "overdue", "held", "static", "event-based",
         "no-rotate-before", "no-policy"],
)
def test_due(spec: RotationPolicySpec | None, age: timedelta, held: bool, expected_due: bool, reason: str) -> None:
    decision = due(spec, T0, T0 + age, held=held)
    assert (decision.due, decision.reason) == (expected_due, reason)


def test_renewal_time_takes_no_now() -> None:
    assert renewal_time(T0, STANDARD) == T0 + timedelta(days=83)
    assert renewal_time(T0, RotationPolicySpec(type="static")) is None


def test_exactly_once_per_window_over_a_fake_clock() -> None:
    spec = RotationPolicySpec(type="time-based", ttl=timedelta(minutes=10), rotate_before=timedelta(minutes=2))
    last, rotations = T0, []
    for minute in range(0, 60):
        now = T0 + timedelta(minutes=minute)
        if due(spec, last, now).due:
            rotations.append(minute)
            last = now
    assert rotations == [8, 16, 24, 32, 40, 48, 56]


def test_metadata_round_trip_and_drift() -> None:
    meta = policy_metadata("standard", STANDARD)
    assert from_metadata(meta) == STANDARD
    assert drift("standard", STANDARD, meta) == []
    shorter = STANDARD.model_copy(update={"ttl": timedelta(days=30)})
    changes = drift("standard", shorter, meta)
    assert [(c.field, c.in_git, c.in_force) for c in changes] == [("ttl", "30d", "90d")]
    assert from_metadata({"policy.type": "time-based", "policy.ttl": "soon"}) is None
