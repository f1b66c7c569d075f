"""Durations as written in intent files: ``90d``, ``1h``, ``1d12h``, ``30s``.

Units are s, m, h, d (24h) and w (7d). A bare number is rejected: an intent author must say which unit they mean.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"^(?:\d+[wdhms])+$")
DURATION_PATTERN = r"^([0-9]+[wdhms])+$"


class DurationError(ValueError):
    """A duration string is malformed."""


def parse_duration(text: str) -> timedelta:
    """Parse ``90d``/``1d12h`` into a timedelta; raise :class:`DurationError` otherwise."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.strip()):
        raise DurationError(
            f"invalid duration {text!r}: use a number with a unit s, m, h, d or w, e.g. 90d or 1h30m"
        )
    seen: set[str] = set()
    total = 0
    for number, unit in _PART.findall(text.strip()):
        if unit in seen:
            raise DurationError(f"invalid duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        total += int(number) * _UNIT_SECONDS[unit]
    if total > 100 * 365 * 86400:
        raise DurationError(f"invalid duration {text!r}: longer than 100 years")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """Inverse of :func:`parse_duration`: whole weeks as ``w``, otherwise days down to seconds (``90d``, not
    ``12w6d``, because that is how people write lifetimes); ``0s`` for zero."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    if seconds % _UNIT_SECONDS["w"] == 0:
        return f"{seconds // _UNIT_SECONDS['w']}w"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "description": "e.g. 90d, 1h30m"}),
]
"""A timedelta field that reads and writes the intent spelling."""
