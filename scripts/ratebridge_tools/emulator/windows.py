"""Rate windows: whether a request is admitted and when to come back.

Pure arithmetic over the arrival times of admitted requests: no clock, no lock,
no I/O (the caller passes `now` and holds the state's lock), so every case is
unit-tested on plain numbers.

Two modes, for a limit of N per period W:

- fixed: windows aligned on the Unix epoch, [k*W, (k+1)*W). Epoch alignment
  (rather than "since the emulator started") makes every decision recomputable
  from the recorded arrival times alone, and with W = 60 the windows are wall
  clock minutes. A denied request may retry at the next boundary.
- sliding: every half-open window (s - W, s] holds at most N admitted
  requests. A denied request may retry once the N-th most recent admitted one
  is W old.

Only admitted requests count: a 429 does not extend the wait (the usual
choice; Genesys does not document its own).

Requests are judged at their arrival time, and handler threads can take the
lock in a different order than requests arrived, so the sliding check also
considers every window ending at an already-admitted later arrival: that keeps
"at most N in every window" true of the recorded times, not just of the order
decisions happened to be made in.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Mode = Literal["fixed", "sliding"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request.

    `count` is the number of admitted requests in the current window (including
    this one when admitted), `reset_s` the whole seconds, rounded up, until the
    window frees a slot (fixed: until it ends), `wait_s` the exact seconds until
    a denied request would be admitted (0.0 when admitted) and `retry_after_s`
    that wait rounded up to whole seconds, as Genesys's Retry-After.
    """

    admitted: bool
    count: int
    limit: int
    reset_s: int
    wait_s: float = 0.0
    retry_after_s: int = 0


def whole_seconds(seconds: float) -> int:
    """`seconds` rounded up to a whole number, at least 1: how Retry-After is stated."""
    return max(1, math.ceil(seconds))


def fixed_window(now: float, period_s: float) -> tuple[float, float]:
    """The epoch-aligned window [start, end) that contains `now`."""
    k = math.floor(now / period_s)
    # now / period_s can round onto the next integer; keep start <= now < end.
    if k * period_s > now:
        k -= 1
    elif (k + 1) * period_s <= now:
        k += 1
    return k * period_s, (k + 1) * period_s


class RateWindows:
    """The admitted arrival times of each key (an access token, an OAuth client)."""

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}

    def clear(self) -> None:
        """Forget every key's history."""
        self._times.clear()

    def admit(self, key: str, now: float, *, limit: int, period_s: float, mode: Mode) -> Decision:
        """Judge a request of `key` arriving at `now`; remember it when admitted."""
        times = self._times.setdefault(key, [])
        self._prune(times, now - 2 * period_s)
        if mode == "fixed":
            return self._fixed(times, now, limit, period_s)
        return self._sliding(times, now, limit, period_s)

    def remember(self, key: str, now: float, *, period_s: float) -> None:
        """Count an arrival of `key` at `now` admitted under another key's limit.

        No verdict: this keeps a second history of the same admitted requests
        (e.g. per OAuth client while the limit is per token), so that switching
        which key is judged applies at once to the history already kept.
        """
        times = self._times.setdefault(key, [])
        self._prune(times, now - 2 * period_s)
        bisect.insort(times, now)

    @staticmethod
    def _prune(times: list[float], older_than: float) -> None:
        # Arrivals judged out of order are milliseconds apart, never a period,
        # so two periods of history are all any decision can look at.
        del times[: bisect.bisect_right(times, older_than)]

    @staticmethod
    def _fixed(times: list[float], now: float, limit: int, period_s: float) -> Decision:
        start, end = fixed_window(now, period_s)
        count = bisect.bisect_left(times, end) - bisect.bisect_left(times, start)
        reset_s = whole_seconds(end - now)
        if count < limit:
            bisect.insort(times, now)
            return Decision(True, count + 1, limit, reset_s)
        wait = end - now
        return Decision(False, count, limit, reset_s, wait, whole_seconds(wait))

    @staticmethod
    def _sliding(times: list[float], now: float, limit: int, period_s: float) -> Decision:
        # Every window (s - W, s] that would contain `now`: s = now, and s = each
        # admitted arrival later than now but within W of it (out-of-order case).
        later = times[bisect.bisect_right(times, now) :]
        ends = [now, *(s for s in later if s < now + period_s)]
        worst = max(_count_in(times, s - period_s, s) for s in ends)
        if worst < limit:
            bisect.insort(times, now)
            count = _count_in(times, now - period_s, now)
            oldest = times[bisect.bisect_right(times, now - period_s)]
            return Decision(True, count, limit, whole_seconds(oldest + period_s - now))
        # Admitted once the limit-th most recent admitted arrival leaves the window.
        wait = times[-limit] + period_s - now
        count = _count_in(times, now - period_s, now)
        return Decision(False, count, limit, whole_seconds(wait), wait, whole_seconds(wait))


def _count_in(times: list[float], after: float, until: float) -> int:
    """How many of the sorted `times` lie in the half-open interval (after, until]."""
    return bisect.bisect_right(times, until) - bisect.bisect_right(times, after)


def max_in_window(times: Iterable[float], window_s: float) -> int:
    """The most of `times` that fall in any half-open window (s - window_s, s].

    The same windows the sliding mode enforces; the maximum is reached by a
    window ending at one of the times, so a two-pointer sweep is exact.
    """
    ordered = sorted(times)
    best = 0
    first = 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - window_s:
            first += 1
        best = max(best, last - first + 1)
    return best
