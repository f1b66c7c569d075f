"""Time, one way everywhere: the :class:`Clock` every decision and workflow is given, and the one timestamp format.

Belongs here: the :class:`Clock` protocol (wall-clock ``now``, a ``monotonic`` timer, ``sleep``), the real
:class:`SystemClock`, the :class:`FakeClock` tests drive by hand, and :func:`rfc3339` / :func:`parse_rfc3339`, the
only way a timestamp is written to or read from the authority's metadata, the ledger, run records and status.

Who reads the real clock: only the entry points (``chamberlain.cli``) build a :class:`SystemClock`; everything
below them takes a :class:`Clock` as an argument, so a test can run a month of rotations in a second
(``tests/unit/test_boundaries.py`` checks this). Measuring how long something took with ``time.monotonic()`` is
fine anywhere: it decides nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, latencies)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock. Built by entry points only."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told: ``sleep`` and :meth:`advance` move wall and monotonic time together.
    Records every sleep, so a test can assert how long a workflow chose to wait."""

    def __init__(self, start: datetime = EPOCH, monotonic: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self.t = start
        self.mono = monotonic
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds

    def __repr__(self) -> str:
        return f"FakeClock({rfc3339(self.t)})"


def rfc3339(t: datetime) -> str:
    """``t`` as RFC 3339 in UTC, to the second, with ``Z``: ``2030-01-01T12:00:00Z``. A naive datetime is refused:
    it would silently mean the host's local time."""
    if t.tzinfo is None:
        raise ValueError("a naive datetime has no place in a record; pass a timezone-aware datetime")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> datetime | None:
    """A timestamp written by :func:`rfc3339` (or by an older chamberlain, with ``+00:00`` or fractions) as an
    aware UTC datetime; None when empty or unreadable. A timestamp without a zone is taken as UTC."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo is not None else t.replace(tzinfo=UTC)


__all__ = ["EPOCH", "Clock", "FakeClock", "SystemClock", "parse_rfc3339", "rfc3339"]
