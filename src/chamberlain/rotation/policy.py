"""The rotation policy in force and the pure decision "is rotation due?".

The policy a secret *starts with* is declared in Git; the policy *in force* lives with the secret as ``policy.*``
custom metadata in Vault (written by provisioning and handover). :func:`drift` compares the two so ``plan`` can show
it; :func:`due` decides from the policy in force, the time of the last rotation and an injected ``now``.

Time maths takes no "now" (:func:`renewal_time`), as cert-manager's ``RenewalTime`` does; only :func:`due` compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from chamberlain import wellknown as wk
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
