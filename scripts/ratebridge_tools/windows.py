"""Window arithmetic for checking rate limits from recorded times."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence


def max_in_window(times: Iterable[int] | Iterable[float], window: float) -> int:
    """The largest number of `times` inside any closed window [t, t + window].

    Exact for integer times (e.g. microseconds); every window worth checking
    starts at one of the times, so one pass over the sorted list suffices.
    """
    ordered: Sequence[float] = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_right(ordered, start + window) - i)
    return best


def in_window(times: Iterable[float], start: float, end: float) -> int:
    """How many `times` fall in [start, end)."""
    return sum(1 for t in times if start <= t < end)
