"""Unit tests of the emulator's pure parts: rate windows, state on a fake clock,
config validation and the generated data. No HTTP, no sleeping."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratebridge_tools import emulator
from ratebridge_tools.emulator import data
from ratebridge_tools.emulator.config import (
    KNOBS,
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    ConfigError,
    EmulatorConfig,
)
from ratebridge_tools.emulator.state import EmulatorState, TokenStatus, token_id_of
from ratebridge_tools.emulator.windows import Mode, RateWindows, fixed_window, max_in_window
from tests.emulator.support import USER_ID, brute_max_in_window
from tests.support.clock import FakeClock

# -- fixed windows ----------------------------------------------------------


def test_fixed_windows_are_epoch_aligned_and_retry_at_the_boundary() -> None:
    # Given a limit of 3 per 10 s in fixed windows [1000, 1010), [1010, 1020)
    windows = RateWindows()

    def admit(now: float) -> tuple[bool, int, int, float]:
        d = windows.admit("tok", now, limit=3, period_s=10, mode="fixed")
        return d.admitted, d.count, d.retry_after_s, d.wait_s

    # When three arrive, then a fourth 6.5 s before the boundary
    assert admit(1000.0) == (True, 1, 0, 0.0)
    assert admit(1001.0) == (True, 2, 0, 0.0)
    assert admit(1003.5) == (True, 3, 0, 0.0)
    # Then it waits exactly until 1010, stated as whole seconds rounded up
    assert admit(1003.5) == (False, 3, 7, 6.5)
    assert admit(1009.75) == (False, 3, 1, 0.25)
    # And denials do not count: the boundary opens a fresh window
    assert admit(1010.0) == (True, 1, 0, 0.0)


def test_fixed_window_reset_header_counts_to_the_boundary() -> None:
    windows = RateWindows()
    decision = windows.admit("tok", 1000.2, limit=5, period_s=2, mode="fixed")
    assert (decision.count, decision.limit, decision.reset_s) == (1, 5, 2)  # ceil(1002 - 1000.2)


@given(
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    period=st.floats(min_value=0.001, max_value=3600, allow_nan=False),
)
def test_fixed_window_always_contains_now(now: float, period: float) -> None:
    start, end = fixed_window(now, period)
    assert start <= now < end


# -- sliding windows --------------------------------------------------------


def test_sliding_window_waits_for_the_nth_most_recent_to_age_out() -> None:
    # Given a limit of 3 per 10 s, admitted at 100, 102, 105
    windows = RateWindows()
    for t in (100.0, 102.0, 105.0):
        assert windows.admit("tok", t, limit=3, period_s=10, mode="sliding").admitted
    # When a fourth arrives at 106.5
    denied = windows.admit("tok", 106.5, limit=3, period_s=10, mode="sliding")
    # Then it may come back once 100 has left the window (t - 10, t]: at 110
    assert not denied.admitted
    assert denied.wait_s == 3.5
    assert denied.retry_after_s == 4
    assert denied.count == 3
    # Just before, still full; exactly at 110, 100 is out (half-open window)
    assert not windows.admit("tok", 109.999, limit=3, period_s=10, mode="sliding").admitted
    admitted = windows.admit("tok", 110.0, limit=3, period_s=10, mode="sliding")
    assert admitted.admitted
    assert admitted.count == 3  # 102, 105, 110
    assert admitted.reset_s == 2  # 102 leaves at 112


def test_sliding_window_checks_windows_ending_at_later_arrivals() -> None:
    # Given (limit 2 per 10 s) an arrival at 100 and one at 109.5 judged first
    windows = RateWindows()
    assert windows.admit("tok", 100.0, limit=2, period_s=10, mode="sliding").admitted
    assert windows.admit("tok", 109.5, limit=2, period_s=10, mode="sliding").admitted
    # When a request that arrived at 105 is judged last (threads race for the lock)
    late = windows.admit("tok", 105.0, limit=2, period_s=10, mode="sliding")
    # Then it is denied: (99.5, 109.5] would hold 100, 105 and 109.5
    assert not late.admitted


def test_keys_have_separate_windows() -> None:
    windows = RateWindows()
    assert windows.admit("a", 1.0, limit=1, period_s=10, mode="sliding").admitted
    assert windows.admit("b", 1.0, limit=1, period_s=10, mode="sliding").admitted
    assert not windows.admit("a", 2.0, limit=1, period_s=10, mode="sliding").admitted


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=120),
    jitter=st.lists(st.floats(min_value=-0.05, max_value=0.05), min_size=120, max_size=120),
    limit=st.integers(min_value=1, max_value=8),
    mode=st.sampled_from(["fixed", "sliding"]),
)
def test_no_window_ever_holds_more_than_the_limit(
    gaps: list[float], jitter: list[float], limit: int, mode: Mode
) -> None:
    # Given arrivals judged slightly out of order (as racing threads do)
    windows = RateWindows()
    period = 1.0
    arrivals: list[float] = []
    now = 1000.0
    for gap, shake in zip(gaps, jitter, strict=False):
        now += gap
        arrivals.append(max(1000.0, now + shake))
    admitted = [
        t
        for t in arrivals
        if windows.admit("tok", t, limit=limit, period_s=period, mode=mode).admitted
    ]
    # Then every window of the mode holds at most `limit` admitted arrivals
    if mode == "sliding":
        assert brute_max_in_window(admitted, period) <= limit
    else:
        per_window: dict[int, int] = {}
        for t in admitted:
            k = math.floor(t / period)
            per_window[k] = per_window.get(k, 0) + 1
        assert max(per_window.values(), default=0) <= limit


@given(
    times=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=60),
    window=st.floats(min_value=0.01, max_value=50, allow_nan=False),
)
def test_max_in_window_matches_brute_force(times: list[float], window: float) -> None:
    assert max_in_window(times, window) == brute_max_in_window(times, window)


# -- state on a fake clock --------------------------------------------------


def test_tokens_expire_and_revoke_by_id() -> None:
    clock = FakeClock()
    state = EmulatorState(EmulatorConfig(token_lifetime_s=300), clock.time)
    token, info = state.issue_token(LOCAL_CLIENT_ID, clock.time())
    other, _ = state.issue_token(LOCAL_CLIENT_ID, clock.time())
    assert info.token_id == token_id_of(token)
    assert token not in repr(info)  # the state keeps a digest, not the token
    assert state.check_token(token, clock.time() + 299.999)[0] is TokenStatus.VALID
    assert state.check_token(token, clock.time() + 300)[0] is TokenStatus.EXPIRED
    assert state.check_token("never-issued", clock.time())[0] is TokenStatus.UNKNOWN
    assert state.revoke(info.token_id) == 1
    assert state.check_token(token, clock.time())[0] is TokenStatus.UNKNOWN
    assert state.check_token(other, clock.time())[0] is TokenStatus.VALID
    assert state.revoke() == 1


def test_records_are_capped_paged_and_reset() -> None:
    clock = FakeClock()
    state = EmulatorState(EmulatorConfig(max_records=3), clock.time)
    for i in range(5):
        state.record(
            arrival=clock.time() + i,
            method="GET",
            path="/api/v2/users/x",
            status=200,
            token_id="tok-1",
            client_id=None,
            admitted=True,
        )
    page, next_index = state.records(0)
    assert [r.index for r in page] == [2, 3, 4]
    assert next_index == 5
    assert state.records(4) == ([page[-1]], 5)
    assert state.records(9) == ([], 9)
    stats = state.stats(10)
    assert (stats.total, stats.truncated, stats.dropped) == (3, True, 2)
    state.reset()
    assert state.records(0) == ([], 0)


def test_update_config_is_all_or_nothing_and_reset_restores() -> None:
    state = EmulatorState(EmulatorConfig(rate_limit=5))
    with pytest.raises(ConfigError, match="error_rate"):
        state.update_config({"rate_limit": 7, "error_rate": 2})
    assert state.config.rate_limit == 5
    assert state.update_config({"rate_limit": 7}).rate_limit == 7
    state.reset(restore_config=True)
    assert state.config.rate_limit == 5


def test_seed_makes_fault_draws_reproducible() -> None:
    state = EmulatorState(EmulatorConfig(seed=42))
    first = [state.draw_faults() for _ in range(3)]
    state.update_config({"seed": 42})
    assert [state.draw_faults() for _ in range(3)] == first


def test_change_missing_validates_ids() -> None:
    state = EmulatorState()
    assert state.change_missing([USER_ID.upper()], []) == {USER_ID}
    with pytest.raises(ConfigError, match="UUID"):
        state.change_missing(["not-a-uuid"], [])
    assert state.change_missing([], [USER_ID]) == frozenset()


# -- config -----------------------------------------------------------------


def test_every_field_is_a_documented_knob() -> None:
    assert [f.name for f in fields(EmulatorConfig)] == list(KNOBS)
    readme = (Path(emulator.__file__).parent / "README.md").read_text()
    for name in KNOBS:
        assert f"| `{name}` |" in readme


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate_limit": 0}, "rate_limit must be an integer >= 1"),
        ({"rate_limit": True}, "rate_limit must be an integer"),
        ({"rate_limit": 2.5}, "rate_limit must be an integer"),
        ({"rate_period_s": 0}, "rate_period_s must be a number > 0"),
        ({"latency_ms": float("nan")}, "latency_ms must be a number"),
        ({"error_rate": 1.5}, "error_rate must be a number between 0 and 1"),
        ({"error_status": 404}, "error_status must be an integer between 500 and 599"),
        ({"window_mode": "rolling"}, "window_mode must be one of"),
        ({"limit_scope": "org"}, "limit_scope must be one of"),
        ({"token_endpoint_down": 1}, "token_endpoint_down must be true or false"),
        ({"missing_ids": "abc"}, "missing_ids must be a list of UUIDs"),
        ({"missing_ids": ["abc"]}, "missing_ids must contain only UUIDs"),
        ({"clients": {"a:b": "s"}}, "without ':'"),
        ({"clients": {"a": ""}}, "must be a non-empty string"),
        ({"speed": 1}, "unknown knob"),
    ],
)
def test_bad_knobs_are_refused_with_a_clear_message(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        EmulatorConfig().with_changes(changes)


def test_config_json_never_shows_secrets_unless_asked() -> None:
    config = EmulatorConfig(clients={"a": "s3cret"}, missing_ids=frozenset({USER_ID.upper()}))
    public = config.to_json()
    assert "s3cret" not in repr(public)
    assert public["client_ids"] == ["a"]
    assert public["missing_ids"] == [USER_ID]
    assert EmulatorConfig.from_json(config.to_json(include_secrets=True)) == config
    assert dict(EmulatorConfig().clients) == {LOCAL_CLIENT_ID: LOCAL_CLIENT_SECRET}


# -- data -------------------------------------------------------------------


def test_entities_are_deterministic_and_consistent() -> None:
    assert data.user(USER_ID) == data.user(USER_ID)
    expanded = data.user(USER_ID, {"presence", "routingStatus"})
    assert {k: v for k, v in expanded.items() if k not in ("presence", "routingStatus")} == (
        data.user(USER_ID)
    )
    assert "presence" not in data.user(USER_ID)  # Genesys adds it only with expand
    conversation = data.conversation(USER_ID)
    for participant in conversation["participants"]:  # type: ignore[attr-defined]
        if participant["purpose"] == "agent":
            assert participant["name"] == data.user(participant["userId"])["name"]
        if "queueId" in participant:
            assert participant["queueName"] == data.queue(participant["queueId"])["name"]


def test_iso_times_have_milliseconds_and_z() -> None:
    assert data.iso(data._EPOCH) == "2025-01-01T00:00:00.000Z"
