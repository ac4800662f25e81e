"""GCRA in integer microseconds: the limiter's arithmetic, with no I/O.

A bucket's whole state is `tat`, the theoretical arrival time. With emission
interval T and tolerance tau = (burst - 1) * T, a request for n tokens whose
effective arrival is `eff` is given the slot

    slot = max(eff, max(tat, eff) + (n - 1) * T - tau)     and then
    tat' = max(tat, eff) + n * T

Why it holds a window bound: number the grants in write order. Each grant's
slot s_j satisfies tat_{j-1} - tau <= s_j <= tat_j - T, and tat grows by at
least T per grant. If grants i < j both have slots in a closed window of
length L, then (j - i) * T - tau <= s_j - s_i <= L, so a window holds at most
1 + floor((L + tau) / T) grants, whatever the order of writers or their
clocks' `eff`. `rate_for` picks T so that this is <= requests for
L = per_seconds + allowance (see `Rate`).

Times are integers (microseconds since the epoch) so that DynamoDB's decimal
arithmetic and Python agree exactly; no float rounding can move a slot.
"""

from __future__ import annotations

from dataclasses import dataclass

US_PER_SECOND = 1_000_000

# Share of the window kept as an allowance for jitter between a grant and its
# request reaching the upstream (a grant returned after a slow round trip, a
# sleeper woken late). The bound holds for windows of per_seconds * 1.01, so
# requests that arrive up to 1% of the window late still cannot crowd one
# window. Costs 1% of throughput.
JITTER_ALLOWANCE = 0.01


@dataclass(frozen=True, slots=True)
class Rate:
    """Emission interval and tolerance of a bucket, in microseconds.

    For a limit of N requests per W seconds with burst b, and allowance
    J = W * JITTER_ALLOWANCE: T = floor((W + J) / (N - b + 1)) + 1 us, so that
    T > (W + J) / (N - b + 1), hence b + floor((W + J) / T) <= N grants in
    every closed window of W + J. Long-run throughput is 1/T, about
    (N - b + 1) / (1.01 * W).
    """

    interval_us: int
    tolerance_us: int

    @property
    def per_second(self) -> float:
        """Long-run grants per second once the burst is spent."""
        return US_PER_SECOND / self.interval_us


def rate_for(requests: int, per_seconds: float, burst: int) -> Rate:
    """The `Rate` that keeps every window of `per_seconds` to `requests` grants."""
    window_us = round(per_seconds * US_PER_SECOND)
    allowance_us = round(window_us * JITTER_ALLOWANCE)
    interval = (window_us + allowance_us) // (requests - burst + 1) + 1
    return Rate(interval_us=interval, tolerance_us=(burst - 1) * interval)


def last_slot(tat_us: int, eff_us: int, tokens: int, rate: Rate) -> int:
    """When the last of `tokens` consecutive grants would conform."""
    base = max(tat_us, eff_us)
    return max(eff_us, base + (tokens - 1) * rate.interval_us - rate.tolerance_us)


def slots(tat_us: int, eff_us: int, count: int, rate: Rate) -> list[int]:
    """The `count` consecutive slots a reservation made on `tat_us` owns."""
    base = max(tat_us, eff_us)
    return [max(eff_us, base + k * rate.interval_us - rate.tolerance_us) for k in range(count)]


def busy_ceiling(deadline_us: int, tokens: int, rate: Rate) -> int:
    """The largest `tat` for which the last of `tokens` slots is <= `deadline_us`.

    This is the `tat <= :ceiling` guard of the busy-branch write: it turns
    "the caller will wait at most until the deadline" into one condition.
    """
    return deadline_us + rate.tolerance_us - (tokens - 1) * rate.interval_us


def outstanding(tat_us: int, now_us: int, rate: Rate) -> int:
    """How many reserved slots still lie in the future (callers waiting, about).

    The last reserved slot is tat - T - tau and slots are T apart, so the ones
    after `now_us` number ceil((tat - tau - now) / T) - 1.
    """
    ahead = tat_us - rate.tolerance_us - now_us
    return max(0, -(-ahead // rate.interval_us) - 1)


def to_us(seconds: float) -> int:
    return round(seconds * US_PER_SECOND)


def to_seconds(us: int) -> float:
    return us / US_PER_SECOND
