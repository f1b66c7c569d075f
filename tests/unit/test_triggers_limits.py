"""The platform floors every trigger obeys, as pure functions: the rate limit and the ttl floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chamberlain.intent.model import Limits, RotationPolicySpec
from chamberlain.triggers import limits

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_trigger_interval_defaults_to_one_minute() -> None:
    assert limits.trigger_interval(Limits()) == timedelta(minutes=1)
    assert limits.trigger_interval(Limits.model_validate({"triggerInterval": "10m"})) == timedelta(minutes=10)


@pytest.mark.parametrize(("kind", "since", "refused"), [
    ("webhook", 30, True),
    ("annotation", 59, True),
    ("manual", 30, True),
    ("manual", 60, False),
    ("webhook", None, False),  # never ran
    ("time", 1, False),  # the time trigger has its own windows
    ("rollback", 1, False),  # the way back is never rate limited
], ids=lambda v: str(v))
def test_refusal(kind: str, since: int | None, refused: bool) -> None:
    started = NOW - timedelta(seconds=since) if since is not None else None
    text = limits.refusal("api-token", kind, limits.allowed_at(started, timedelta(minutes=1)), NOW)
    assert (text is not None) == refused
    if text:
        assert "api-token" in text and "triggerInterval" in text


def test_the_ttl_floor_raises_a_short_policy_only() -> None:
    floor = Limits.model_validate({"minimumTtl": "1h"})
    short = RotationPolicySpec.model_validate({"type": "time-based", "ttl": "10m", "rotateBefore": "2m"})
    raised, changed = limits.floored(short, floor)
    assert changed and raised is not None and raised.ttl == timedelta(hours=1)
    assert raised.rotate_before == timedelta(minutes=2)
    long = RotationPolicySpec.model_validate({"type": "time-based", "ttl": "2h"})
    assert limits.floored(long, floor) == (long, False)
    assert limits.floored(short, Limits()) == (short, False)
    static = RotationPolicySpec.model_validate({"type": "static"})
    assert limits.floored(static, floor) == (static, False)
