"""Platform floors every trigger obeys: the per-secret trigger rate limit and the ttl floor. Pure functions.

* **Rate limit** (``Platform.spec.limits.triggerInterval``, default one minute): a triggered rotation (webhook,
  annotation, manual) of a secret is refused while less than the interval has passed since that secret's last run
  started, whatever started it (the run record in the authority says when). It bounds what anyone holding a
  webhook credential, an annotation or the CLI can do to a target system, and to the workloads restarted after
  each rotation. The time trigger is not limited by it (its own windows are), but its runs count as the last run.
* **ttl floor** (``limits.minimumTtl``): validate refuses intents below it; the controller also never *acts* on a
  shorter ttl recorded in the authority (a policy in force written before the floor, or by hand): it evaluates
  such a policy with the floor as its ttl (:func:`floored`).

Everything here is pure except :func:`last_activity`, the one read both the controller and ``chamberlain rotate``
make through the :class:`~chamberlain.authority.kv.KV` protocol. Not here: answering the sender.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chamberlain.authority.kv import KV
from chamberlain.clock import rfc3339
from chamberlain.errors import ChamberlainError
from chamberlain.intent.model import Limits, RotationPolicySpec
from chamberlain.intent.paths import VaultPath
from chamberlain.rotation import run as runs

DEFAULT_TRIGGER_INTERVAL = timedelta(minutes=1)
RATE_LIMITED_KINDS = frozenset({"webhook", "annotation", "manual"})


def trigger_interval(limits: Limits) -> timedelta:
    return limits.trigger_interval if limits.trigger_interval is not None else DEFAULT_TRIGGER_INTERVAL


def allowed_at(last_started: datetime | None, interval: timedelta) -> datetime | None:
    """When a triggered rotation is allowed again (None: the secret never ran, so at once)."""
    return last_started + interval if last_started is not None else None


class RateLimited(ChamberlainError):
    """A triggered rotation refused by the Platform's trigger rate limit (the message says until when)."""


def last_start(kv: KV, secret: VaultPath) -> datetime | None:
    """The start of the secret's last run, from its run record (finished or not). A record that does not parse
    limits nothing: no run can start over it anyway (the start refuses it, and says why)."""
    try:
        last = runs.load(kv, secret)
    except runs.RunUnreadable:
        return None
    return last.started_at if last is not None else None


def refusal(secret: str, kind: str, at: datetime | None, now: datetime) -> str | None:
    """Why a ``kind`` trigger of ``secret`` is refused now (None: allowed). The text names the limit and when the
    secret may be triggered again; it never names a value."""
    if kind not in RATE_LIMITED_KINDS or at is None or now >= at:
        return None
    return (f"{secret}: rate limited — a {kind} trigger is refused until {rfc3339(at)} (Platform "
            f"spec.limits.triggerInterval since the start of this secret's last run)")


def floored(policy: RotationPolicySpec | None, limits: Limits) -> tuple[RotationPolicySpec | None, bool]:
    """The policy the time trigger acts on: a ttl below ``limits.minimumTtl`` is raised to the floor. Returns the
    policy and whether it was raised (so the caller can warn)."""
    floor = limits.minimum_ttl
    if policy is None or floor is None or policy.ttl is None or policy.ttl >= floor:
        return policy, False
    return replace_ttl(policy, floor), True


def replace_ttl(policy: RotationPolicySpec, ttl: timedelta) -> RotationPolicySpec:
    before = policy.rotate_before
    # keep the window inside the ttl, as validate requires of a declared policy
    window = before if before is None or before < ttl else None
    return policy.model_copy(update={"ttl": ttl, "rotate_before": window})


__all__ = [
    "DEFAULT_TRIGGER_INTERVAL",
    "RATE_LIMITED_KINDS",
    "RateLimited",
    "allowed_at",
    "floored",
    "last_start",
    "refusal",
    "replace_ttl",
    "trigger_interval",
]
