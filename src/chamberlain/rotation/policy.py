"""The rotation policy in force and the pure decision "is rotation due?".

The policy a secret *starts with* is declared in Git; the policy *in force* lives with the secret as ``policy.*``
custom metadata in Vault (written by provisioning and handover). :func:`drift` compares the two so ``plan`` can show
it; :func:`due` decides from the policy in force, the time of the last rotation and an injected ``now``.

Two more pure decisions about time, for the controller: :func:`failure_backoff` (a secret whose last runs failed
is not rotated again by time before the back-off has passed; a person's trigger always runs) and :func:`overdue`
(the value is older than its ttl: it should have been rotated by now).

Time maths takes no "now" (:func:`renewal_time`), as cert-manager's ``RenewalTime`` does; only :func:`due` compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from chamberlain import wellknown as wk
from chamberlain.clock import parse_rfc3339
from chamberlain.handover.metadata import policy_metadata
from chamberlain.intent.durations import DurationError, parse_duration
from chamberlain.intent.model import RotationPolicySpec


@dataclass(frozen=True)
class Decision:
    due: bool
    reason: str  # a stable, human-readable reason, recorded on the run ("ttl-window", "static", ...)
    next_due: datetime | None = None


@dataclass(frozen=True)
class FieldDrift:
    field: str
    in_git: str | None
    in_force: str | None


def renewal_time(last_rotated: datetime, spec: RotationPolicySpec) -> datetime | None:
    """When a time-based secret enters its safety window: ``last + ttl - rotateBefore``. None for other types."""
    if spec.type != "time-based" or spec.ttl is None:
        return None
    return last_rotated + spec.ttl - (spec.rotate_before or timedelta(0))


def due(spec: RotationPolicySpec | None, last_rotated: datetime, now: datetime, *, held: bool = False) -> Decision:
    """Whether a timer trigger should rotate now. Events and manual triggers do not ask this: they always run."""
    if spec is None:
        return Decision(False, "no-policy")
    if held:
        return Decision(False, "held")
    if spec.type == "static":
        return Decision(False, "static")
    if spec.type == "event-based":
        return Decision(False, "event-based")
    at = renewal_time(last_rotated, spec)
    if at is None:  # pragma: no cover - the model requires a ttl for time-based policies
        return Decision(False, "no-ttl")
    if now >= at:
        return Decision(True, "ttl-window", at)
    return Decision(False, "not-yet", at)


@dataclass(frozen=True)
class FailureBackoff:
    """How long the time trigger waits after ``n`` consecutive failed runs of one secret before it tries again:
    ``min(cap, base * factor**(n-1))``, of which the upper half is jittered ("equal jitter", as the workflow's
    retry backoff). The jitter comes from the caller (a stable draw per secret and streak, see
    :func:`jitter_of`): the retry time must not move from one evaluation to the next."""

    base: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.cap < self.base or self.factor < 1:
            raise ValueError("failure back-off: base > 0, cap >= base and factor >= 1")


def failure_retry_at(failures: int, last_failure: datetime | None, backoff: FailureBackoff,
                     jitter: float) -> datetime | None:
    """When the time trigger may try again after ``failures`` consecutive failed runs, the last one ending at
    ``last_failure`` (None: no failure to back off from). ``jitter`` in [0, 1). Takes no "now"."""
    if failures <= 0 or last_failure is None:
        return None
    nominal = min(backoff.cap.total_seconds(),
                  backoff.base.total_seconds() * backoff.factor ** min(failures - 1, 64))
    return last_failure + timedelta(seconds=nominal / 2 + min(max(jitter, 0.0), 1.0) * nominal / 2)


def failure_backoff(failures: int, last_failure: datetime | None, now: datetime, backoff: FailureBackoff,
                    jitter: float) -> Decision:
    """Whether the time trigger must still wait after a failure streak: ``due`` False with reason
    ``backing-off`` and the retry time while it must; ``due`` True otherwise (reason ``no-failures`` or
    ``backoff-passed``)."""
    at = failure_retry_at(failures, last_failure, backoff, jitter)
    if at is None:
        return Decision(True, "no-failures")
    if now < at:
        return Decision(False, "backing-off", at)
    return Decision(True, "backoff-passed", at)


def jitter_of(secret: str, failures: int) -> float:
    """A stable draw in [0, 1) for one secret's failure streak: the same on every replica and every evaluation,
    different between secrets (a fleet failing together does not retry in step)."""
    digest = hashlib.sha256(f"{secret}\0{failures}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def failure_streak(custom: Mapping[str, str]) -> tuple[int, datetime | None]:
    """The secret's consecutive failed runs and when the last one ended, from its custom metadata (written by the
    workflow's finalize; ``(0, None)`` when absent or unreadable)."""
    value = custom.get(wk.FAILED_RUNS, "0")
    count = int(value) if value.isdigit() else 0
    return count, parse_rfc3339(custom.get(wk.LAST_FAILED)) if count else None


def expires_at(spec: RotationPolicySpec | None, last_rotated: datetime) -> datetime | None:
    """When the value outlives its ttl (``last + ttl``); None without a ttl (static, event-based)."""
    if spec is None or spec.ttl is None or spec.type != "time-based":
        return None
    return last_rotated + spec.ttl


def overdue(spec: RotationPolicySpec | None, last_rotated: datetime, now: datetime) -> bool:
    """The value is past its ttl: its rotation should have happened by now (held, failing, or the controller
    was away). Pure."""
    at = expires_at(spec, last_rotated)
    return at is not None and now >= at


def from_metadata(custom: Mapping[str, str]) -> RotationPolicySpec | None:
    """The policy in force as recorded on a secret, or None when none (or an unreadable one) is recorded."""
    # An empty value is a field removed by a policy change (custom_metadata keys are merged, never deleted).
    fields = {k: v for k, v in custom.items() if k.startswith(wk.POLICY_PREFIX) and v != ""}
    if wk.POLICY_TYPE not in fields:
        return None
    try:
        durations = {
            name: parse_duration(fields[key])
            for key, name in ((wk.POLICY_TTL, "ttl"), (wk.POLICY_ROTATE_BEFORE, "rotate_before"),
                              (wk.POLICY_MAX_OVERLAP, "max_overlap"))
            if key in fields
        }
        return RotationPolicySpec.model_validate(
            {
                "type": fields[wk.POLICY_TYPE],
                "revoke_old": fields.get(wk.POLICY_REVOKE_OLD, "true") == "true",
                "failure_strategy": fields.get(wk.POLICY_FAILURE_STRATEGY, "retry"),
                **durations,
            }
        )
    except (DurationError, ValueError):
        return None


def drift(git_name: str | None, git: RotationPolicySpec | None, custom: Mapping[str, str]) -> list[FieldDrift]:
    """Fields where the policy declared in Git differs from the one in force (empty: in sync)."""
    want = policy_metadata(git_name, git)
    have = {k: v for k, v in custom.items() if k.startswith(wk.POLICY_PREFIX) and v != ""}
    return [
        FieldDrift(key[len(wk.POLICY_PREFIX):], want.get(key), have.get(key))
        for key in sorted(set(want) | set(have))
        if want.get(key) != have.get(key)
    ]
