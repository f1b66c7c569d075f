"""Reading the bodies hvac returns, in one place: the ``data`` envelope, a ``LIST`` answer's keys, a ``sys/``
listing of mounts. Pure functions over what hvac returned (a dict, or a bare response for an empty answer).

Not here: typing the values (each area builds its value objects from what these return).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def data(resp: Any) -> dict[str, Any]:
    """The ``data`` of an answer; an answer without an envelope (an unauthenticated ``sys/`` endpoint) as is."""
    if not isinstance(resp, Mapping):
        return {}
    inner = resp.get("data")
    return dict(inner) if isinstance(inner, Mapping) else dict(resp)


def keys(resp: Any) -> list[str]:
    """The keys of a ``LIST`` answer (empty when there is none)."""
    return [str(k) for k in (data(resp).get("keys") or [])]


def listing(resp: Any) -> dict[str, dict[str, Any]]:
    """``{path: body}`` of a ``sys/mounts``, ``sys/auth`` or ``sys/audit`` answer, without the trailing slash."""
    return {k.rstrip("/"): dict(v) for k, v in data(resp).items() if isinstance(v, Mapping) and k.endswith("/")}


__all__ = ["data", "keys", "listing"]
