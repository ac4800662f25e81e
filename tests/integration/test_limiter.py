"""The Limiter against real DynamoDB implementations, on a fake clock.

Each test runs on every backend (moto server and dynalite). The clock is fake,
so slots are exact and no test sleeps; the store is real, so every condition,
counter and failure path goes through an actual DynamoDB server over HTTP.
"""

from __future__ import annotations

import math

import pytest

from limiter import (
    InvalidArgument,
    Limit,
    LimiterSettings,
    LimitNotConfigured,
    RateLimited,
    gcra,
)
from limiter.dynamodb import dynamodb_client
from ratebridge_tools.metering import DynamoDBMeter
from ratebridge_tools.servers import LocalServer
from ratebridge_tools.windows import max_in_window
from tests.conftest import MakeLimiter
from tests.support.clock import FakeClock


def us(seconds: float) -> int:
    return gcra.to_us(seconds)


def test_burst_then_paced_at_exact_slots(make_limiter: MakeLimiter, bucket: str) -> None:
    # Given a 10-per-second bucket with burst 3
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=10, per_seconds=1, burst=3)
    T = Limit(10, 1, 3).rate.interval_us
    start = us(clock.time())
    # When six grants are taken back to back
    grants = [lim.acquire(bucket, timeout=5) for _ in range(6)]
    # Then three go at once and the rest are paced exactly T apart
    assert [g.at_us - start for g in grants] == [0, 0, 0, T, 2 * T, 3 * T]
    assert us(clock.time()) == grants[-1].at_us  # the caller slept until its slot
    assert lim.status(bucket).granted == 6


def test_wait_too_long_raises_exact_retry_after_and_reserves_nothing(
    make_limiter: MakeLimiter, bucket: str
) -> None:
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=2, per_seconds=10, burst=1)
    T = Limit(2, 10, 1).rate.interval_us
    first = lim.acquire(bucket, timeout=0)
    # When the next slot is T away and the caller waits at most T - 1 us
    with pytest.raises(RateLimited) as caught:
        lim.acquire(bucket, timeout=(T - 1) / 1e6)
    # Then the retry_after is the exact time to the next slot, and nothing was taken
    assert caught.value.retry_after == pytest.approx(T / 1e6, abs=1e-6)
    assert lim.status(bucket).granted == 1
    # And waiting exactly that long gets exactly that slot
    assert lim.acquire(bucket, timeout=T / 1e6).at_us == first.at_us + T


def test_try_acquire_never_waits(make_limiter: MakeLimiter, bucket: str) -> None:
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=2, per_seconds=1, burst=2)
    decisions = [lim.try_acquire(bucket) for _ in range(3)]
    assert [d.granted for d in decisions] == [True, True, False]
    assert decisions[2].retry_after > 0
    assert clock.slept == []


def test_reserve_returns_a_paced_schedule_in_one_write(
    make_limiter: MakeLimiter, backend: LocalServer, bucket: str
) -> None:
    clock = FakeClock()
    meter = DynamoDBMeter()
    client = meter.attach(dynamodb_client(region="us-east-1", endpoint_url=backend.url))
    lim = make_limiter(clock=clock.time, sleep=clock.sleep, client=client)
    lim.set_limit(bucket, requests=10, per_seconds=1, burst=2)
    T = Limit(10, 1, 2).rate.interval_us
    before = meter.usage()
    schedule = lim.reserve(bucket, count=6, timeout=5)
    start = schedule.slots_us[0]
    assert [s - start for s in schedule.slots_us] == [0, 0, T, 2 * T, 3 * T, 4 * T]
    assert (meter.usage() - before).by_operation == {"UpdateItem": 1}
    assert clock.slept == []  # reserve never sleeps; the caller paces
    # A later single acquire comes after the whole schedule
    assert lim.acquire(bucket, timeout=5).at_us == start + 5 * T


def test_tokens_over_burst_is_invalid_and_writes_nothing(
    make_limiter: MakeLimiter, bucket: str
) -> None:
    lim = make_limiter()
    lim.set_limit(bucket, requests=10, per_seconds=1, burst=2)
    with pytest.raises(ValueError, match=r"tokens \(3\) exceeds the burst"):
        lim.acquire(bucket, tokens=3)
    assert lim.status(bucket).granted == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": 0}, "tokens must be between 1"),
        ({"tokens": 1.0}, "tokens must be a whole number"),
        ({"timeout": -1}, "timeout must be between 0"),
        ({"timeout": math.nan}, "timeout must be finite"),
    ],
)
def test_invalid_acquire_arguments(
    make_limiter: MakeLimiter, bucket: str, kwargs: dict[str, object], message: str
) -> None:
    lim = make_limiter()
    lim.set_limit(bucket, requests=10, per_seconds=1)
    with pytest.raises(InvalidArgument, match=message):
        lim.acquire(bucket, **kwargs)  # type: ignore[arg-type]
    assert lim.status(bucket).granted == 0


def test_invalid_limit_writes_nothing(make_limiter: MakeLimiter, bucket: str) -> None:
    lim = make_limiter()
    for bad in ({"requests": 0, "per_seconds": 1}, {"requests": 3, "per_seconds": 1, "burst": 9}):
        with pytest.raises(ValueError):
            lim.set_limit(bucket, **bad)
    with pytest.raises(ValueError, match="must not be empty"):
        lim.set_limit("", requests=1, per_seconds=1)
    with pytest.raises(LimitNotConfigured):
        lim.get_limit(bucket)
    assert all(c.bucket != bucket for c in lim.list_limits())


def test_unknown_bucket_is_not_configured(make_limiter: MakeLimiter, bucket: str) -> None:
    lim = make_limiter()
    for call in (
        lambda: lim.acquire(bucket),
        lambda: lim.try_acquire(bucket),
        lambda: lim.reserve(bucket, 2),
        lambda: lim.block(bucket, 1),
        lambda: lim.get_limit(bucket),
        lambda: lim.status(bucket),
    ):
        with pytest.raises(LimitNotConfigured, match="ratebridge limits set"):
            call()


def test_limit_crud(make_limiter: MakeLimiter, bucket: str) -> None:
    lim = make_limiter()
    assert lim.set_limit(bucket, requests=300, per_seconds=60, burst=3) == Limit(300, 60, 3)
    assert lim.get_limit(bucket) == Limit(300, 60, 3)
    lim.set_limit(bucket, requests=100, per_seconds=60)
    assert lim.get_limit(bucket) == Limit(100, 60, 1)
    listed = {c.bucket: c for c in lim.list_limits()}
    assert listed[bucket].limit == Limit(100, 60, 1)
    assert listed[bucket].version == 2
    assert lim.delete_limit(bucket) is True
    assert lim.delete_limit(bucket) is False
    with pytest.raises(LimitNotConfigured):
        lim.acquire(bucket)


def test_a_default_limit_is_stored_once_and_never_replaces_an_operators(
    make_limiter: MakeLimiter, bucket: str
) -> None:
    # Given a bucket nobody configured, and two containers with a deploy-time default
    first, second = make_limiter(), make_limiter()
    # When both make sure it has a limit
    assert first.ensure_limit(bucket, requests=300, per_seconds=60, burst=3) == Limit(300, 60, 3)
    assert second.ensure_limit(bucket, requests=5, per_seconds=1) == Limit(300, 60, 3)
    # Then the first default was stored, once, and grants follow it
    assert [c.version for c in first.list_limits() if c.bucket == bucket] == [1]
    assert first.acquire(bucket, timeout=0).tokens == 1
    # and once an operator sets a limit, a default changes nothing
    make_limiter().set_limit(bucket, requests=100, per_seconds=60)
    assert make_limiter().ensure_limit(bucket, requests=300, per_seconds=60) == Limit(100, 60)
    assert make_limiter().get_limit(bucket) == Limit(100, 60)


def test_an_invalid_default_limit_writes_nothing(make_limiter: MakeLimiter, bucket: str) -> None:
    lim = make_limiter()
    with pytest.raises(InvalidArgument, match="burst"):
        lim.ensure_limit(bucket, requests=3, per_seconds=60, burst=4)
    with pytest.raises(LimitNotConfigured):
        lim.get_limit(bucket)


def test_changed_limit_applies_on_next_acquire_without_reads(
    make_limiter: MakeLimiter, backend: LocalServer, bucket: str
) -> None:
    # Given two containers sharing a bucket, both warm
    clock = FakeClock()
    meter = DynamoDBMeter()
    client = meter.attach(dynamodb_client(region="us-east-1", endpoint_url=backend.url))
    caller = make_limiter(clock=clock.time, sleep=clock.sleep, client=client)
    operator = make_limiter(clock=clock.time, sleep=clock.sleep)
    operator.set_limit(bucket, requests=10, per_seconds=1)
    caller.acquire(bucket)
    clock.advance(5)
    warm = meter.usage()
    caller.acquire(bucket)
    assert (meter.usage() - warm).by_operation == {"UpdateItem": 1}
    # When the operator changes the limit
    operator.set_limit(bucket, requests=2, per_seconds=1)
    clock.advance(5)
    changed = meter.usage()
    # Then the caller's very next acquires run on it
    a = caller.acquire(bucket)
    b = caller.acquire(bucket)
    assert b.at_us - a.at_us == Limit(2, 1).rate.interval_us
    # at the cost of one failed write, plus one read only where the server
    # does not return the item on a failed condition (dynalite)
    used = meter.usage() - changed
    assert used.failed_conditions == 1
    expected_reads = 1 if backend.name == "dynalite" else 0
    assert used.reads == expected_reads
    assert used.by_operation["UpdateItem"] == 3


def test_block_pauses_every_caller_and_resumes_on_time(
    make_limiter: MakeLimiter, bucket: str
) -> None:
    # Given two containers, both warm on a 10/s bucket
    clock = FakeClock()
    a = make_limiter(clock=clock.time, sleep=clock.sleep)
    b = make_limiter(clock=clock.time, sleep=clock.sleep)
    a.set_limit(bucket, requests=10, per_seconds=1)
    a.acquire(bucket)
    b.acquire(bucket)
    clock.advance(1)
    # When one of them is told by the upstream to back off for 42 s
    until = a.block(bucket, 42)
    assert until == pytest.approx(clock.time() + 42)
    # Then neither may go before the block ends; the other learns it from its
    # write's failed condition, and the first to go after it goes exactly on time
    with pytest.raises(RateLimited, match="blocked") as caught:
        b.acquire(bucket, timeout=41)
    assert caught.value.retry_after == pytest.approx(42, abs=1e-6)
    first = b.acquire(bucket, timeout=60)
    second = a.acquire(bucket, timeout=60)
    assert first.at_us == us(until)
    assert second.at_us == us(until) + Limit(10, 1).rate.interval_us


def test_block_never_shortens_a_longer_one(make_limiter: MakeLimiter, bucket: str) -> None:
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=10, per_seconds=1)
    long_end = lim.block(bucket, 30)
    assert lim.block(bucket, 5) == long_end
    assert lim.status(bucket).blocked_until == pytest.approx(long_end)


def test_several_buckets_grant_the_same_instant(make_limiter: MakeLimiter, bucket: str) -> None:
    # Given a client-wide bucket and a stricter per-endpoint one
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    wide, endpoint = bucket + ":all", bucket + ":users"
    lim.set_limit(wide, requests=100, per_seconds=1, burst=5)
    lim.set_limit(endpoint, requests=2, per_seconds=1, burst=1)
    grants = [lim.acquire([wide, endpoint], timeout=10) for _ in range(4)]
    # Then each grant holds on both and the strict one sets the pace
    T = Limit(2, 1).rate.interval_us
    assert [g.at_us - grants[0].at_us for g in grants] == [0, T, 2 * T, 3 * T]
    assert lim.status(endpoint).granted == 4
    assert lim.status(wide).granted >= 4


def test_one_request_per_minute_holds(make_limiter: MakeLimiter, bucket: str) -> None:
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=1, per_seconds=60)
    slots = [lim.acquire(bucket, timeout=120).at_us for _ in range(5)]
    assert max_in_window(slots, us(60)) == 1
    assert max_in_window(slots, us(60.6)) == 1  # with the 1% jitter allowance


def test_saturated_bucket_grants_98_percent_over_60_seconds(
    make_limiter: MakeLimiter, bucket: str
) -> None:
    # Given demand above a 300/min limit with 1% burst
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=300, per_seconds=60, burst=3)
    start = us(clock.time())
    slots = []
    while us(clock.time()) < start + us(120):
        slots.append(lim.acquire(bucket, timeout=10).at_us)
    # Then every 60 s window holds at most 300 and at least 98% of 300
    assert max_in_window(slots, us(60)) <= 300
    for offset in range(0, 60, 7):
        window = [s for s in slots if start + us(offset) <= s < start + us(offset + 60)]
        assert len(window) >= 0.98 * 300


def test_a_new_container_reads_once_then_only_writes(
    make_limiter: MakeLimiter, backend: LocalServer, bucket: str
) -> None:
    make_limiter().set_limit(bucket, requests=1000, per_seconds=1, burst=10)
    clock = FakeClock()
    meter = DynamoDBMeter()
    client = meter.attach(dynamodb_client(region="us-east-1", endpoint_url=backend.url))
    lim = make_limiter(clock=clock.time, sleep=clock.sleep, client=client)
    for _ in range(50):
        lim.acquire(bucket)
    usage = meter.usage()
    assert usage.by_operation == {"BatchGetItem": 1, "UpdateItem": 50}
    assert usage.failed_conditions == 0


def test_status_reports_the_stored_state(make_limiter: MakeLimiter, bucket: str) -> None:
    clock = FakeClock()
    lim = make_limiter(clock=clock.time, sleep=clock.sleep)
    lim.set_limit(bucket, requests=10, per_seconds=1)
    lim.reserve(bucket, count=5)
    status = lim.status(bucket)
    assert status.limit == Limit(10, 1)
    assert status.granted == 5
    assert status.waiting == 4  # the first slot is now; four are in the future
    assert not status.blocked
    assert status.backlog_seconds == pytest.approx(5 * Limit(10, 1).rate.interval_us / 1e6)


def test_deleting_a_limit_stops_warm_callers(make_limiter: MakeLimiter, bucket: str) -> None:
    clock = FakeClock()
    caller = make_limiter(clock=clock.time, sleep=clock.sleep)
    operator = make_limiter()
    operator.set_limit(bucket, requests=10, per_seconds=1)
    caller.acquire(bucket)
    operator.delete_limit(bucket)
    with pytest.raises(LimitNotConfigured):
        caller.acquire(bucket)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"requests": "-5", "per_seconds": "60", "burst": "1"}, "requests must be between"),
        ({"requests": "0", "per_seconds": "60", "burst": "1"}, "requests must be between"),
        ({"requests": "10", "per_seconds": "0", "burst": "1"}, "per_seconds must be between"),
        ({"requests": "10", "per_seconds": "1e100", "burst": "1"}, "per_seconds must be between"),
        ({"requests": "1e30", "per_seconds": "60", "burst": "1"}, "requests must be between"),
        ({"requests": "2.5", "per_seconds": "60", "burst": "1"}, "requests must be a whole number"),
        ({"requests": "10", "per_seconds": "60", "burst": "11"}, "burst"),
        ({"requests": "10", "per_seconds": "60"}, "'burst'"),
    ],
)
def test_a_limit_written_by_hand_that_is_invalid_is_named_not_used(
    backend: LocalServer,
    make_limiter: MakeLimiter,
    limiter_settings: LimiterSettings,
    bucket: str,
    fields: dict[str, str],
    message: str,
) -> None:
    # Given a limits item someone wrote straight into the table, with a bad number
    client = dynamodb_client(region="us-east-1", endpoint_url=backend.url)
    client.put_item(
        TableName=limiter_settings.limits_table,
        Item={"bucket": {"S": bucket}, "version": {"N": "1"}}
        | {name: {"N": value} for name, value in fields.items()},
    )
    lim = make_limiter()
    # Then reading it says which bucket, what is wrong, and how to fix it
    with pytest.raises(InvalidArgument, match="ratebridge limits set") as caught:
        lim.get_limit(bucket)
    assert f"the stored limit for bucket {bucket!r} is invalid" in str(caught.value)
    assert message in str(caught.value)
