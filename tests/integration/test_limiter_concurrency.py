"""Many real callers on one bucket, on the real clock: the distributed claims.

Every grant's slot is recorded and the window bound is checked exactly over
the recorded slots, so the assertions hold however slow or noisy the machine.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from limiter import Grant, LimiterSettings
from limiter.dynamodb import dynamodb_client
from ratebridge_tools.metering import DynamoDBMeter
from ratebridge_tools.servers import LocalServer
from ratebridge_tools.windows import max_in_window
from tests.conftest import MakeLimiter
from tests.support.workers import hammer, hammer_in_process

US = 1_000_000


@pytest.mark.parametrize(
    ("requests", "per_seconds", "burst"),
    [(20, 1.0, 2), (500, 1.0, 5), (12, 0.5, 1)],
    ids=["20-per-1s", "500-per-1s", "12-per-half-second"],
)
def test_32_threads_never_exceed_the_window(
    make_limiter: MakeLimiter,
    bucket: str,
    requests: int,
    per_seconds: float,
    burst: int,
) -> None:
    # Given 32 threads sharing one limiter (one container) and one bucket
    lim = make_limiter()
    lim.set_limit(bucket, requests=requests, per_seconds=per_seconds, burst=burst)
    per_thread = max(2, (3 * requests) // 32)
    # When they all take grants as fast as they are given
    slots = hammer(lim, bucket, threads=32, per_thread=per_thread, timeout=60)
    # Then every grant was counted once and no window holds more than the limit
    assert len(slots) == 32 * per_thread
    assert lim.status(bucket).granted == len(slots)
    assert max_in_window(slots, per_seconds * US) <= requests


def test_4_processes_of_8_threads_never_exceed_the_window(
    make_limiter: MakeLimiter,
    backend: LocalServer,
    limiter_settings: LimiterSettings,
    bucket: str,
) -> None:
    # Given four containers (processes), each with eight callers
    make_limiter().set_limit(bucket, requests=20, per_seconds=1, burst=2)
    spawn = multiprocessing.get_context("spawn")
    args = (backend.url, limiter_settings.buckets_table, limiter_settings.limits_table, bucket)
    # When they all take grants at once
    with ProcessPoolExecutor(max_workers=4, mp_context=spawn) as pool:
        futures = [pool.submit(hammer_in_process, *args, 8, 3, 60.0) for _ in range(4)]
        slots = [slot for future in futures for slot in future.result(timeout=240)]
    # Then the bound holds across processes exactly as within one
    assert len(slots) == 96
    assert make_limiter().status(bucket).granted == 96
    assert max_in_window(slots, 1 * US) <= 20


@pytest.mark.parametrize("callers", [1, 16, 64])
def test_saturated_bucket_costs_about_one_write_per_grant(
    make_limiter: MakeLimiter, backend: LocalServer, bucket: str, callers: int
) -> None:
    # Given `callers` threads of one container saturating a 100/s bucket
    make_limiter().set_limit(bucket, requests=100, per_seconds=1, burst=1)
    meter = DynamoDBMeter()
    client = meter.attach(dynamodb_client(region="us-east-1", endpoint_url=backend.url))
    lim = make_limiter(client=client)
    per_thread = max(5, 300 // callers)
    # When they take grants as fast as they are given
    slots = hammer(lim, bucket, threads=callers, per_thread=per_thread, timeout=60)
    usage = meter.usage()
    # Then a grant costs at most 1.1 requests, and the only read is the first
    # one (plus, on dynalite, one per failed condition: it returns no item)
    assert usage.total <= 1.1 * len(slots), usage
    assert usage.by_operation["BatchGetItem"] == 1
    assert usage.by_operation.get("GetItem", 0) <= (
        usage.failed_conditions if backend.name == "dynalite" else 0
    )
    assert max_in_window(slots, 1 * US) <= 100


def test_block_under_load_pauses_everyone_and_resumes_on_time(
    make_limiter: MakeLimiter, bucket: str
) -> None:
    # Given 32 callers keeping a 50/s bucket busy, some asleep on reserved slots
    lim = make_limiter()
    lim.set_limit(bucket, requests=50, per_seconds=1, burst=1)
    grants: list[Grant] = []
    lock = threading.Lock()
    stop = time.time() + 3.0

    def work() -> None:
        while time.time() < stop:
            grant = lim.acquire(bucket, timeout=10)
            with lock:
                grants.append(grant)

    pool = [threading.Thread(target=work) for _ in range(32)]
    for thread in pool:
        thread.start()
    time.sleep(0.7)
    # When the upstream says "retry after 1 s"
    until = lim.block(bucket, 1.0)
    blocked_at = time.time()
    for thread in pool:
        thread.join()
    until_us = round(until * US)
    # Then nobody goes between the block and its end, not even callers that had
    # reserved a slot in that interval before it, and the first goes exactly at its end
    inside = [g.at_us for g in grants if blocked_at * US <= g.at_us < until_us]
    assert inside == []
    after = [g.at_us for g in grants if g.at_us >= blocked_at * US]
    assert min(after) == until_us
    assert max_in_window([g.at_us for g in grants], 1 * US) <= 50
