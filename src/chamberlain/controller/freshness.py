"""Which secrets a pass of the time trigger reads from the authority, and which it decides from what it read before.

A pass every ``evaluate_every`` seconds decides for every secret in scope. Reading every secret's metadata on every
pass would cost the authority n / ``evaluate_every`` requests per second: 333/s for 10k secrets every 30 s, from a
controller that mostly waits. So a pass reads:

* every secret it holds no reading of: new in the scope, changed in it (a new intent or policy), one whose run just
  ended, one a time request found not due after all — at once;
* of the others, the ``budget`` read longest ago, round robin: a scope of up to ``rate * MIN_WINDOW`` secrets is
  read in full on every pass, as before; a larger one gets ``rate`` reads per second of the time since the last
  pass started (a pass a scope change starts early reads less), so each secret is read again every ``n / rate``
  seconds;

and decides for the rest from the schedule it read last. That is safe: a time request is checked against fresh
metadata before its run opens (the loop's ``_still_due``), so a stale reading can delay a rotation someone made
due outside the controller (a hold released from the CLI) by at most ``n / rate`` seconds, never cause one.

Pure: no clock, no I/O; the loop passes the names, what it knows and the seconds since the last pass.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from chamberlain.triggers import SecretSchedule

MIN_WINDOW = 30.0  # seconds: below rate * this many secrets, every pass reads every secret (the default pass)


@dataclass(frozen=True, slots=True)  # one per secret held
class Reading:
    """What the time trigger took from one secret's metadata (never a value): its schedule and its hold."""

    schedule: SecretSchedule | None
    held: bool


def refresh_budget(n: int, rate: float | None, seconds: float) -> int:
    """How many of a scope's ``n`` secrets a pass reads again, ``seconds`` after the previous pass started;
    ``rate`` None, or a scope of up to ``rate * MIN_WINDOW``: all of them."""
    if rate is None or n <= rate * MIN_WINDOW:
        return n
    return min(n, math.ceil(rate * max(seconds, 0.0)))


def to_read(names: Sequence[str], known: Collection[str], cursor: int, budget: int) -> tuple[set[str], int]:
    """The names a pass reads (every name not in ``known``, plus ``budget`` names round robin from ``cursor``)
    and the cursor of the next pass."""
    unread = {name for name in names if name not in known}
    n = len(names)
    if budget >= n:
        return set(names), 0
    start = cursor % n if n else 0
    picked = names[start:start + budget]
    if len(picked) < budget:  # wrapped around the end of the scope
        picked = [*picked, *names[:budget - len(picked)]]
    return unread.union(picked), (start + budget) % n if n else 0


__all__ = ["MIN_WINDOW", "Reading", "refresh_budget", "to_read"]
