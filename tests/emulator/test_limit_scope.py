"""`limit_scope`: the API limit per access token (Genesys's rule) or shared by
every token of one OAuth client (what a fleet spreading calls over many tokens
should expect).

Unit tests on the state with plain numbers, then over HTTP: on a fake clock
(`serve_in_thread`) where exact Retry-After values matter, and on the session's
child process where decisions are recomputed from the recorded arrival times.
Times are whole numbers or binary fractions, so every sum is an exact float.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratebridge_tools.emulator import (
    LOCAL_CLIENT_ID,
    ConfigError,
    EmulatorAdminError,
    EmulatorConfig,
    EmulatorServer,
    RequestRecord,
    serve_in_thread,
    token_id_of,
)
from ratebridge_tools.emulator.__main__ import build_parser, config_from_args
from ratebridge_tools.emulator.config import LimitScope, WindowMode
from ratebridge_tools.emulator.state import EmulatorState, compute_stats
from ratebridge_tools.emulator.windows import RateWindows
from tests.emulator.support import (
    Answer,
    api_get,
    api_records,
    assert_genesys_error,
    brute_max_in_window,
    get_token,
    replay,
)
from tests.support.clock import FakeClock

# A multiple of 10: the fixed window [T, T + 10) starts exactly at T.
T = 1_800_000_000.0
CLIENTS = {"client-a": "secret-a", "client-b": "secret-b"}


def _verdict(state: EmulatorState, token_id: str, client_id: str, now: float) -> tuple[object, ...]:
    d = state.admit_api(token_id, client_id, now)
    return d.admitted, d.count, d.reset_s, d.wait_s, d.retry_after_s


# -- windows and state, no HTTP ---------------------------------------------


def test_remembered_arrivals_count_without_a_verdict() -> None:
    windows = RateWindows()
    windows.remember("a", T, period_s=10)
    windows.remember("a", T + 1, period_s=10)
    denied = windows.admit("a", T + 2, limit=2, period_s=10, mode="sliding")
    assert (denied.admitted, denied.count, denied.wait_s) == (False, 2, 8.0)


@pytest.mark.parametrize(("scope", "admitted"), [("token", 6), ("client", 3)])
def test_the_scope_decides_what_two_tokens_of_one_client_get(
    scope: LimitScope, admitted: int
) -> None:
    # Given 3 per 10 s, and two tokens of one client taking turns
    state = EmulatorState(EmulatorConfig(rate_limit=3, rate_period_s=10, limit_scope=scope))
    verdicts = [
        state.admit_api(token_id, "client-a", T + i / 8).admitted
        for i in range(4)
        for token_id in ("tok-1", "tok-2")
    ]
    # Then per token each gets 3 (6 in all); per client they share 3
    assert sum(verdicts) == admitted
    assert verdicts == [True] * admitted + [False] * (8 - admitted)


@pytest.mark.parametrize(
    ("mode", "refused", "later"),
    [
        # sliding: T leaves (s - 10, s] at T + 10; 5.5 s after T + 4.5, said "6".
        # At T + 10 the window holds T + 1, T + 2 and this one; T + 1 leaves in 1 s.
        ("sliding", (False, 3, 6, 5.5, 6), (True, 3, 1, 0.0, 0)),
        # fixed: [T, T + 10) is full until its end, 5.5 s away; then a fresh window.
        ("fixed", (False, 3, 6, 5.5, 6), (True, 1, 10, 0.0, 0)),
    ],
)
def test_client_scope_retry_after_is_exact(
    mode: WindowMode, refused: tuple[object, ...], later: tuple[object, ...]
) -> None:
    # Given 3 per 10 s shared by the tokens of each client
    config = EmulatorConfig(rate_limit=3, rate_period_s=10, window_mode=mode, limit_scope="client")
    state = EmulatorState(config)
    # When two tokens of client a use up its window (counts are the client's)
    assert _verdict(state, "tok-a1", "a", T) == (True, 1, 10, 0.0, 0)
    assert _verdict(state, "tok-a2", "a", T + 1) == (True, 2, 9, 0.0, 0)
    assert _verdict(state, "tok-a1", "a", T + 2) == (True, 3, 8, 0.0, 0)
    # Then any token of a, even a new one, waits for the shared window
    assert _verdict(state, "tok-a2", "a", T + 4.5) == refused
    assert _verdict(state, "tok-a3", "a", T + 4.5) == refused
    # And client b's window is its own
    assert _verdict(state, "tok-b1", "b", T + 4.5)[:2] == (True, 1)
    assert _verdict(state, "tok-a2", "a", T + 10) == later


def test_switching_scope_applies_to_the_history_kept() -> None:
    # Given 2 per 10 s per token: two tokens of client a take 2 each (4 admitted)
    state = EmulatorState(EmulatorConfig(rate_limit=2, rate_period_s=10))
    for i, token_id in enumerate(("tok-a1", "tok-a1", "tok-a2", "tok-a2")):
        assert state.admit_api(token_id, "a", T + i).admitted
    # When the limit becomes per client
    state.update_config({"limit_scope": "client"})
    # Then client a is judged on all four: T + 2, the 2nd most recent, leaves at T + 12
    assert _verdict(state, "tok-a3", "a", T + 4) == (False, 4, 8, 8.0, 8)
    assert _verdict(state, "tok-b1", "b", T + 4) == (True, 1, 10, 0.0, 0)
    assert _verdict(state, "tok-a3", "a", T + 12) == (True, 2, 1, 0.0, 0)  # T + 3 and this
    # When it is per token again
    state.update_config({"limit_scope": "token"})
    # Then each token has its own history, including what the client scope admitted
    assert _verdict(state, "tok-a3", "a", T + 12.5) == (True, 2, 10, 0.0, 0)
    assert _verdict(state, "tok-a3", "a", T + 12.5)[:2] == (False, 2)
    assert _verdict(state, "tok-a2", "a", T + 12.5) == (True, 2, 1, 0.0, 0)  # T + 3 and this


def test_reset_forgets_the_client_windows() -> None:
    state = EmulatorState(EmulatorConfig(rate_limit=1, limit_scope="client"))
    assert state.admit_api("tok-a1", "a", T).admitted
    assert not state.admit_api("tok-a2", "a", T).admitted
    state.reset()
    assert state.admit_api("tok-a2", "a", T).admitted


_OWNER = {"tok-a1": "a", "tok-a2": "a", "tok-b1": "b"}


@given(
    arrivals=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=400),
            st.sampled_from([*sorted(_OWNER), "login-a"]),
            st.booleans(),
        ),
        max_size=60,
    ),
    window=st.sampled_from([0.25, 1.0, 2.5]),
)
def test_stats_per_client_match_a_brute_force_recount(
    arrivals: list[tuple[int, str, bool]], window: float
) -> None:
    # Given API records of three tokens of two clients, and token requests
    # (which never count in the API figures)
    records = [
        RequestRecord(
            index=i,
            time=T + tick / 16,
            method="GET" if who in _OWNER else "POST",
            path="/api/v2/users/x" if who in _OWNER else "/oauth/token",
            status=200 if admitted else 429,
            duration=0.0,
            token_id=who if who in _OWNER else None,
            client_id=_OWNER.get(who, "a"),
            admitted=admitted,
        )
        for i, (tick, who, admitted) in enumerate(arrivals)
    ]
    stats = compute_stats(records, window, 0)
    admitted_api = [r for r in api_records(records) if r.admitted]
    expected = {
        client: brute_max_in_window([r.time for r in admitted_api if r.client_id == client], window)
        for client in {r.client_id or "" for r in admitted_api}
    }
    assert stats.max_in_window_by_client == expected


# -- over HTTP, on a fake clock ---------------------------------------------


def _recount(admitted: list[RequestRecord], key: str, window: float) -> dict[str, int]:
    """The most of `admitted` in any window, per value of their `key` field."""
    times: dict[str, list[float]] = {}
    for record in admitted:
        times.setdefault(getattr(record, key), []).append(record.time)
    return {k: brute_max_in_window(v, window) for k, v in times.items()}


def test_two_clients_do_not_share_a_window() -> None:
    # Given 2 per 10 s per client, and two clients
    clock = FakeClock(T)
    config = EmulatorConfig(clients=CLIENTS, rate_limit=2, rate_period_s=10, limit_scope="client")
    with serve_in_thread(config, clock=clock.time) as emu:
        a1, a2 = (get_token(emu.url, "client-a", "secret-a") for _ in range(2))
        b1 = get_token(emu.url, "client-b", "secret-b")
        # When two tokens of client a use up its window
        first = api_get(emu.url, a1)
        clock.advance(1.5)
        second = api_get(emu.url, a2)
        clock.advance(1.5)
        # Then the headers count the client's window, both tokens together
        assert first.headers["inin-ratelimit-count"] == "1"
        assert second.headers["inin-ratelimit-count"] == "2"
        assert second.headers["inin-ratelimit-reset"] == "9"  # T leaves at T + 10
        # And a's next request waits until T + 10, 7 s after T + 3
        denied = api_get(emu.url, a1)
        assert_genesys_error(denied, 429, "too.many.requests.retry.after")
        assert denied.headers["retry-after"] == "7"
        assert "[7] seconds" in denied.body["message"]
        # While client b's window is untouched
        for count in ("1", "2"):
            answer = api_get(emu.url, b1)
            assert (answer.status, answer.headers["inin-ratelimit-count"]) == (200, count)
        assert api_get(emu.url, b1).headers["retry-after"] == "10"
        # And every API record names the token and its client
        owners = {token_id_of(a1): "client-a", token_id_of(a2): "client-a"}
        owners[token_id_of(b1)] = "client-b"
        for record in api_records(emu.requests()):
            assert record.token_id is not None
            assert record.client_id == owners[record.token_id]
        stats = emu.stats(10)
        assert stats.max_in_window_by_client == {"client-a": 2, "client-b": 2}
        by_token = {token_id_of(a1): 1, token_id_of(a2): 1, token_id_of(b1): 2}
        assert stats.max_in_window_by_token == by_token


def test_switching_scope_over_the_admin_api() -> None:
    # Given 2 per 10 s per token: two tokens of one client take 2 each
    clock = FakeClock(T)
    with serve_in_thread(EmulatorConfig(rate_limit=2, rate_period_s=10), clock=clock.time) as emu:
        a1, a2 = get_token(emu.url), get_token(emu.url)
        for token in (a1, a1, a2, a2):
            assert api_get(emu.url, token).status == 200
            clock.advance(1)
        # When the limit becomes per client (at T + 4)
        assert emu.configure(limit_scope="client")["limit_scope"] == "client"
        # Then a fresh token brings no fresh budget: T + 2 leaves at T + 12
        denied = api_get(emu.url, get_token(emu.url))
        assert (denied.status, denied.headers["retry-after"]) == (429, "8")
        clock.advance(8)
        assert api_get(emu.url, a1).headers["inin-ratelimit-count"] == "2"  # T + 3, this one
        # When it is per token again, a1's own window holds the one just admitted
        emu.configure(limit_scope="token")
        assert api_get(emu.url, a1).headers["inin-ratelimit-count"] == "2"
        assert api_get(emu.url, a1).headers["retry-after"] == "10"
        assert emu.stats(10).max_in_window_by_client == {LOCAL_CLIENT_ID: 4}


def test_stats_per_client_over_http_match_the_records() -> None:
    # Given 3 per second per client, three tokens of two clients and strangers
    clock = FakeClock(T)
    config = EmulatorConfig(clients=CLIENTS, rate_limit=3, rate_period_s=1, limit_scope="client")
    with serve_in_thread(config, clock=clock.time) as emu:
        tokens = [get_token(emu.url, "client-a", "secret-a") for _ in range(2)]
        tokens.append(get_token(emu.url, "client-b", "secret-b"))
        answers: list[Answer] = []
        for i in range(60):
            answers.append(api_get(emu.url, tokens[i % 3]))
            if i % 7 == 0:
                assert api_get(emu.url, "not-a-token").status == 401
            clock.advance(0.125 if i % 5 else 0.5)
        records = api_records(emu.requests())
        known = [r for r in records if r.client_id is not None]
        # Then each client's decisions are what its shared window implies
        for client in CLIENTS:
            mine = [r for r in known if r.client_id == client]
            expected = replay([r.time for r in mine], limit=3, period=1.0, mode="sliding")
            assert [r.admitted for r in mine] == [e.admitted for e in expected]
        assert 0 < sum(a.status == 429 for a in answers) < 60
        assert all(r.status == 401 for r in records if r.client_id is None)
        # And the per-client and per-token maxima match a brute-force recount
        admitted = [r for r in known if r.admitted]
        for window in (0.125, 0.5, 1.0, 2.5):
            stats = emu.stats(window)
            assert stats.max_in_window_by_client == _recount(admitted, "client_id", window)
            assert stats.max_in_window_by_token == _recount(admitted, "token_id", window)
        assert max(emu.stats(1.0).max_in_window_by_client.values()) == 3


# -- over HTTP, the session's child process ---------------------------------


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_client_scope_429s_follow_the_shared_window_of_two_tokens(
    emu: EmulatorServer, mode: str
) -> None:
    # Given 5 per 2 s per client, and two tokens of that client taking turns
    emu.configure(rate_limit=5, rate_period_s=2, window_mode=mode, limit_scope="client")
    tokens = [get_token(emu.url), get_token(emu.url)]
    start = len(emu.requests())
    answers: list[Answer] = []
    while sum(a.status == 429 for a in answers) < 2 and len(answers) < 40:
        answers.append(api_get(emu.url, tokens[len(answers) % 2]))
    records = emu.requests(since=start)
    # Then every decision, count and Retry-After is what the client's one
    # window implies, recomputed from the recorded times of both tokens
    expected = replay([r.time for r in records], limit=5, period=2.0, mode=mode)
    assert len(records) == len(answers)
    for i, (answer, record, want) in enumerate(zip(answers, records, expected, strict=True)):
        assert (record.token_id, record.client_id) == (token_id_of(tokens[i % 2]), LOCAL_CLIENT_ID)
        assert answer.status == record.status == (200 if want.admitted else 429)
        if want.admitted:
            assert answer.headers["inin-ratelimit-count"] == str(want.count)
            assert answer.headers["inin-ratelimit-allowed"] == "5"
            assert answer.headers["inin-ratelimit-reset"] == str(want.reset_s)
        else:
            assert_genesys_error(answer, 429, "too.many.requests.retry.after")
            assert answer.headers["retry-after"] == str(want.retry_after_s)
    # And the stats bound the client's total, both tokens together
    stats = emu.stats(2)
    admitted = [r for r in api_records(records) if r.admitted]
    assert stats.max_in_window_by_client == _recount(admitted, "client_id", 2)
    if mode == "sliding":
        assert stats.max_in_window_by_client[LOCAL_CLIENT_ID] <= 5


def test_limit_scope_is_a_knob_of_the_admin_api(emu: EmulatorServer) -> None:
    assert emu.config()["limit_scope"] == "token"
    with pytest.raises(EmulatorAdminError) as caught:
        emu.configure(limit_scope="org", rate_limit=7)
    assert caught.value.status == 400
    assert "limit_scope must be one of ['token', 'client']" in caught.value.message
    assert (emu.config()["limit_scope"], emu.config()["rate_limit"]) == ("token", 300)
    assert emu.configure(limit_scope="client")["limit_scope"] == "client"
    emu.reset(config=True)
    assert emu.config()["limit_scope"] == "token"


def test_limit_scope_from_the_command_line_and_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "emulator.json"
    config_file.write_text(json.dumps({"limit_scope": "client"}))
    parser = build_parser()
    assert config_from_args(parser.parse_args(["--config", str(config_file)])).limit_scope == (
        "client"
    )
    flagged = parser.parse_args(["--config", str(config_file), "--limit-scope", "token"])
    assert config_from_args(flagged).limit_scope == "token"
    with pytest.raises(SystemExit):
        parser.parse_args(["--limit-scope", "org"])
    assert "invalid choice: 'org'" in capsys.readouterr().err
    config_file.write_text(json.dumps({"limit_scope": "org"}))
    with pytest.raises(ConfigError, match="limit_scope must be one of"):
        config_from_args(parser.parse_args(["--config", str(config_file)]))
