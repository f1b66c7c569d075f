"""The time trigger's schedule (controller.scope): one shared policy model per distinct recorded policy."""

from __future__ import annotations

from datetime import timedelta

from chamberlain import wellknown as wk
from chamberlain.controller.scope import policy_of, schedule_of
from chamberlain.rotation.policy import from_metadata

POLICY = {wk.POLICY_TYPE: "time-based", wk.POLICY_TTL: "720h", wk.POLICY_ROTATE_BEFORE: "72h",
          wk.POLICY_REVOKE_OLD: "true"}


def custom(name: str, **extra: str) -> dict[str, str]:
    return {wk.INTENT: name, wk.CREATED_AT: "2030-01-01T00:00:00+00:00", **POLICY, **extra}


def test_schedules_of_secrets_with_one_policy_share_its_model() -> None:
    a, b = schedule_of("a", custom("a")), schedule_of("b", custom("b", **{wk.VALUE_VERSION: "3"}))
    assert a is not None and b is not None
    assert a.policy is b.policy  # 10k secrets, a few policies: a few models
    assert a.policy == from_metadata(custom("a"))
    assert a.policy is not None and a.policy.ttl == timedelta(hours=720)


def test_policy_of_reads_exactly_what_from_metadata_reads() -> None:
    for recorded in (custom("x"), custom("x", **{wk.POLICY_TTL: ""}), {wk.INTENT: "x"},
                     custom("x", **{wk.POLICY_TTL: "not-a-duration"}),
                     custom("x", **{wk.POLICY_FAILURE_STRATEGY: "hold", wk.POLICY_MAX_OVERLAP: "1h"})):
        assert policy_of(recorded) == from_metadata(recorded)
    assert policy_of(custom("x")) is not policy_of(custom("x", **{wk.POLICY_TTL: "24h"}))
