"""The shape every benchmark's ``-o json`` report shares with ``benchmarks/run``: ``figures`` (one row of the
summary table each: goal, measured, floor, ratio, met) and ``growth`` (one curve per series over the sizes run).
Plain dicts, so a report stays JSON and each script stays runnable on its own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, printed with each figure (a number on a busy machine means less)."""
    return [round(x, 2) for x in os.getloadavg()]


def figure(fid: str, name: str, *, goal: str, measured: float | None, unit: str, floor: float | None = None,
           floor_name: str | None = None, met: bool | None = None, note: str = "",
           ratio: float | None = None) -> dict[str, Any]:
    """One row of the summary table. ``ratio`` defaults to measured / floor when both are known."""
    if ratio is None and measured is not None and floor:
        ratio = measured / floor
    return {"id": fid, "name": name, "goal": goal, "measured": measured, "unit": unit, "floor": floor,
            "floor_name": floor_name, "ratio": None if ratio is None else round(ratio, 3), "met": met,
            "load": load_average(), "note": note}


def growth(fid: str, series: str, unit: str, sizes: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    """One growth curve; per-item growth between consecutive sizes is (t_b / t_a) / (n_b / n_a): 1.0 is linear."""
    per_item = [
        round((values[i + 1] / values[i]) / (sizes[i + 1] / sizes[i]), 3) if values[i] > 0 else None
        for i in range(len(sizes) - 1)
    ]
    return {"id": fid, "series": series, "unit": unit, "sizes": list(sizes), "values": list(values),
            "per_item_growth": per_item}
