"""The GCRA arithmetic on its own: no I/O, no clock, exact integer checks."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from limiter import gcra
from ratebridge_tools.windows import max_in_window

limits = st.integers(min_value=1, max_value=1_000_000).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.floats(min_value=0.001, max_value=7 * 86_400.0, allow_nan=False),
        st.integers(min_value=1, max_value=n),
    )
)


@given(limits)
def test_rate_keeps_every_window_to_the_limit(limit: tuple[int, float, int]) -> None:
    # Given any limit
    requests, per_seconds, burst = limit
    # When the rate is derived
    rate = gcra.rate_for(requests, per_seconds, burst)
    # Then the most grants GCRA allows in a closed window of W + allowance is <= N
    window = gcra.to_us(per_seconds)
    allowance = round(window * gcra.JITTER_ALLOWANCE)
    assert burst + (window + allowance) // rate.interval_us <= requests
    assert rate.tolerance_us == (burst - 1) * rate.interval_us


@given(limits)
def test_rate_keeps_98_percent_with_a_one_percent_burst(limit: tuple[int, float, int]) -> None:
    # Up to 1,000 grants/s, what one DynamoDB item sustains; above that the
    # whole-microsecond interval costs more than 0.1% (1 us in T).
    requests, per_seconds, _ = limit
    assume(requests / per_seconds <= 1_000)
    burst = max(1, requests // 100)
    rate = gcra.rate_for(requests, per_seconds, burst)
    assert rate.per_second * per_seconds >= 0.98 * requests


arrivals = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3_000_000), st.integers(1, 3)),
    min_size=1,
    max_size=300,
)


@settings(max_examples=200)
@given(
    requests=st.integers(min_value=3, max_value=40),
    per_ms=st.integers(min_value=1, max_value=2_000),
    burst=st.integers(min_value=1, max_value=3),
    arrivals=arrivals,
)
def test_any_arrival_order_keeps_the_window_bound(
    requests: int, per_ms: int, burst: int, arrivals: list[tuple[int, int]]
) -> None:
    # Given writers whose effective "now" arrive in any order (skewed clocks,
    # future reservations) asking for 1..burst tokens each
    rate = gcra.rate_for(requests, per_ms / 1000, burst)
    tat = 0
    granted: list[int] = []
    for eff, wanted in arrivals:
        tokens = min(wanted, burst)
        # When each is applied as the store applies it
        at = gcra.last_slot(tat, eff, tokens, rate)
        tat = max(tat, eff) + tokens * rate.interval_us
        granted += [at] * tokens
    # Then no closed window of per_seconds holds more than `requests` grants
    assert max_in_window(granted, per_ms * 1000) <= requests


@given(
    tat=st.integers(0, 10**9),
    eff=st.integers(0, 10**9),
    deadline=st.integers(0, 2 * 10**9),
    tokens=st.integers(1, 5),
)
def test_busy_ceiling_is_exactly_the_deadline_condition(
    tat: int, eff: int, deadline: int, tokens: int
) -> None:
    # On the busy branch (tat >= eff) the write's guard `tat <= ceiling`, with
    # the client's check `eff <= deadline`, is exactly "the last slot fits".
    rate = gcra.rate_for(100, 10.0, 5)
    if tat >= eff:
        fits = gcra.last_slot(tat, eff, tokens, rate) <= deadline
        assert fits == (eff <= deadline and tat <= gcra.busy_ceiling(deadline, tokens, rate))


def test_schedule_slots_are_paced_after_the_burst() -> None:
    rate = gcra.rate_for(10, 1.0, 3)
    slots = gcra.slots(0, 5_000_000, 5, rate)
    T = rate.interval_us
    assert slots == [5_000_000, 5_000_000, 5_000_000, 5_000_000 + T, 5_000_000 + 2 * T]
    assert gcra.last_slot(0, 5_000_000, 3, rate) == 5_000_000


def test_outstanding_counts_future_slots() -> None:
    rate = gcra.Rate(interval_us=100, tolerance_us=0)
    now = 1_000
    assert gcra.outstanding(now, now, rate) == 0  # tat == now: last slot was now - T
    assert gcra.outstanding(now + 100, now, rate) == 0  # last slot exactly now
    assert gcra.outstanding(now + 101, now, rate) == 1
    assert gcra.outstanding(now + 500, now, rate) == 4


def test_max_in_window_matches_brute_force() -> None:
    times = [0, 5, 10, 10, 11, 30, 31, 40]
    for window in (0, 1, 5, 10, 20, 40):
        brute = max(sum(1 for t in times if s <= t <= s + window) for s in times)
        assert max_in_window(times, window) == brute
