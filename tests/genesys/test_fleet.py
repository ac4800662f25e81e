"""The fleet: 64 workers (4 processes x 16 threads) sharing one token and one bucket.

Each process builds its own client (its own SDK, token cache and limiter), as
Lambda containers do; they share only DynamoDB and the emulator. Every claim
is checked from the emulator's record of what reached "Genesys".
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import pytest

from ratebridge_tools.emulator.windows import max_in_window as sliding_max_in_window
from tests.genesys.conftest import Stack
from tests.support.genesys import PhaseResult, build_client, call_in_phases, call_until, find_leaks

USER = "278522be-1683-4877-8257-4164a177be89"
PROCESSES, THREADS = 4, 16


@contextlib.contextmanager
def fleet(fn: Callable[..., Any], *args: object) -> Iterator[tuple[list[Future[Any]], float]]:
    """PROCESSES processes running `fn(*args, barrier)`. Yields their futures and the
    moment all of them (and this test) met at the barrier, after their SDK imports."""
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, ProcessPoolExecutor(PROCESSES, mp_context=spawn) as pool:
        barrier = manager.Barrier(PROCESSES + 1)
        futures: list[Future[Any]] = [pool.submit(fn, *args, barrier) for _ in range(PROCESSES)]
        barrier.wait(timeout=180)
        yield futures, time.time()


def in_processes(fn: Callable[..., Any], *args: object) -> tuple[list[Any], float]:
    with fleet(fn, *args) as (futures, go):
        return [f.result(timeout=300) for f in futures], go


def test_64_cold_workers_fetch_one_token_and_one_more_after_expiry(stack: Stack) -> None:
    # Given a fleet starting cold at once, with tokens that live 4 s
    stack.emulator.configure(token_lifetime_s=4)
    # When every worker makes a call at once, and again once the token has expired
    phases, go = in_processes(call_in_phases, stack.env, THREADS, [0.0, 4 + 2], USER)
    second = go + 4 + 2 - 0.5
    # Then every call succeeded
    for phase in range(2):
        assert sum(p[phase].ok for p in phases) == PROCESSES * THREADS
        assert [e for p in phases for e in p[phase].errors] == []
    # and exactly one token request reached Genesys for each
    token_times = [r.time for r in stack.emulator.requests() if r.path == "/oauth/token"]
    assert len([t for t in token_times if t < second]) == 1
    assert len([t for t in token_times if t >= second]) == 1


@pytest.mark.one_backend_by_default  # real-time; the token store's races run on both in test_token
def test_a_token_revoked_mid_run_costs_one_new_token_and_no_failed_call(stack: Stack) -> None:
    # Given 64 workers calling continuously on a warm token
    stack.emulator.configure(rate_limit=1_000_000)
    stack.limiter.set_limit(stack.bucket, requests=200, per_seconds=1, burst=20)
    with fleet(call_until, stack.env, THREADS, 12.0, USER) as (futures, go):
        # When Genesys revokes the token while the fleet is busy with it
        while sum(1 for r in stack.api_requests() if r.status == 200) < 20:
            assert time.time() < go + 7, "the fleet did not get going in time"
            time.sleep(0.1)
        revoked = stack.emulator.revoke()
        revoked_at = time.time()
        results: list[PhaseResult] = [f.result(timeout=300) for f in futures]
    # Then every call completed, and the fleet asked for exactly one new token
    assert revoked == 1
    assert [e for r in results for e in r.errors] == []
    assert sum(r.ok for r in results) > 0
    records = stack.emulator.requests()
    assert len([r for r in records if r.path == "/oauth/token"]) == 2
    assert any(r.status == 401 for r in records if r.time >= revoked_at)
    api_ok = [r for r in records if r.path.startswith("/api/") and r.status == 200]
    assert len(api_ok) == sum(r.ok for r in results)


@pytest.mark.one_backend_by_default  # real-time; the bucket's block runs on both in integration/
def test_one_429_is_one_request_and_pauses_the_whole_fleet(stack: Stack) -> None:
    # Given Genesys allowing 5 requests per 10 s, below what our limiter allows
    # (another client of the org uses the rest)
    stack.emulator.configure(rate_limit=5, rate_period_s=10)
    client = build_client(stack.env)
    with client.deadline(time.time() + 20):
        for _ in range(5):
            client.get_user(USER)
    # When the next call is answered 429
    from processor.genesys.errors import UpstreamRateLimited

    with client.deadline(time.time() + 20), pytest.raises(UpstreamRateLimited) as caught:
        client.get_user(USER)
    limited = [r for r in stack.api_requests() if r.status == 429]
    # Then that call made exactly one request (no hidden retries), with Retry-After honoured
    assert len(limited) == 1
    assert len(stack.api_requests()) == 6
    retry_after = caught.value.retry_after
    assert retry_after == float(caught.value.headers["Retry-After"])
    blocked_until = stack.limiter.status(stack.bucket).blocked_until
    assert blocked_until == pytest.approx(limited[0].time + retry_after, abs=1.0)
    # And, though the other client then stops using the org's allowance, no
    # worker anywhere calls Genesys before the block ends; after it, all do
    stack.emulator.configure(rate_limit=1_000_000)
    phases, _ = in_processes(call_in_phases, stack.env, THREADS, [0.0], USER)
    assert sum(p[0].ok for p in phases) == PROCESSES * THREADS
    after = [r.time for r in stack.api_requests() if r.time > limited[0].time]
    assert min(after) >= blocked_until - 0.05  # arrival measured by another process's clock
    assert all(r.status == 200 for r in stack.api_requests() if r.time > limited[0].time)


@pytest.mark.one_backend_by_default
def test_64_workers_for_60_seconds_hold_300_per_minute(stack: Stack) -> None:
    # Given Genesys's default limit and the limiter set to the same
    # (counted per OAuth client: every token the fleet might hold shares the window)
    stack.emulator.configure(
        rate_limit=300, rate_period_s=60, window_mode="sliding", limit_scope="client"
    )
    stack.limiter.set_limit(stack.bucket, requests=300, per_seconds=60, burst=3)
    # When 64 workers call as fast as they are allowed for 60 s
    results, start = in_processes(call_until, stack.env, THREADS, 60.0, USER)
    end = start + 60
    # Then Genesys never answered 429, no window held more than 300 (the
    # emulator's own sliding windows, (s - 60, s] over arrivals, as it enforces
    # them), and at least 97% of 300 went through in the minute
    assert [e for r in results for e in r.errors] == []
    records = stack.api_requests()
    assert [r for r in records if r.status == 429] == []
    arrivals = [r.time for r in records]
    assert sliding_max_in_window(arrivals, 60.0) <= 300
    in_minute = [t for t in arrivals if start <= t < end]
    assert len(in_minute) >= 0.97 * 300, len(in_minute)


def test_the_leak_scan_finds_what_it_looks_for() -> None:
    # The scan every test above ends with must be able to fail.
    import hashlib

    token = "a" * 10 + "Zq9-_" + "b" * 12
    token_id = "tok-" + hashlib.sha256(token.encode()).hexdigest()[:8]
    assert find_leaks([f"Authorization: Bearer {token}\n"], [], {token_id})
    assert find_leaks([f"url?access_token={token}&x=1"], [], {token_id})
    assert find_leaks(["client secret s3cr3t-value here"], ["s3cr3t-value"], set())
    assert find_leaks([f"id {token_id} only"], ["s3cr3t-value"], {token_id}) == []
