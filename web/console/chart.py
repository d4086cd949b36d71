"""The overview's numbers: counts per status and a per-minute chart, drawn as inline SVG."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from offload.store import CANCELLED, FAILED, SUCCEEDED

__all__ = ["Bar", "Chart", "minute_chart"]

OUTCOMES = (SUCCEEDED, FAILED, CANCELLED)
WIDTH, HEIGHT, MINUTES = 600, 120, 60
_TOP = 12  # room for the scale label


@dataclass(frozen=True)
class Bar:
    """One outcome's part of one minute's column."""

    x: float
    y: float
    width: float
    height: float
    outcome: str
    title: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: bars, the scale, and the same numbers as a table."""

    bars: list[Bar]
    peak: int
    totals: dict[str, int]
    first_minute: str
    last_minute: str
    width: int = WIDTH
    height: int = HEIGHT


def minute_chart(counts: dict[tuple[str, str], int], now: dt.datetime) -> Chart:
    """Stacked columns of jobs finished per minute by outcome, the last hour up to ``now``."""
    last = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
    minutes = [last - dt.timedelta(minutes=MINUTES - 1 - i) for i in range(MINUTES)]
    keys = [m.strftime("%Y-%m-%dT%H:%M") for m in minutes]
    column = {k: sum(counts.get((k, o), 0) for o in OUTCOMES) for k in keys}
    peak = max([*column.values(), 1])
    step = WIDTH / MINUTES
    scale = (HEIGHT - _TOP) / peak
    bars: list[Bar] = []
    for i, key in enumerate(keys):
        base = float(HEIGHT)
        for outcome in OUTCOMES:
            n = counts.get((key, outcome), 0)
            if not n:
                continue
            h = n * scale
            base -= h
            bars.append(
                Bar(i * step + 1, base, step - 2, h, outcome, f"{key[11:]} UTC: {n} {outcome}")
            )
    totals = {o: sum(counts.get((k, o), 0) for k in keys) for o in OUTCOMES}
    return Chart(bars, peak, totals, keys[0][11:], keys[-1][11:])
