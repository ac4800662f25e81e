"""Code that runs in worker processes started by tests (importable under spawn)."""

from __future__ import annotations

import threading

from limiter import Limiter
from limiter.dynamodb import DynamoDBStore, dynamodb_client


def hammer(
    limiter: Limiter, bucket: str, threads: int, per_thread: int, timeout: float
) -> list[int]:
    """`threads` callers each taking `per_thread` grants at once; returns every slot (us).

    Each caller also checks it was never let go before its slot.
    """
    slots: list[int] = []
    early: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            grant = limiter.acquire(bucket, timeout=timeout)
            returned_us = round(limiter._clock() * 1e6)
            with lock:
                slots.append(grant.at_us)
                if returned_us < grant.at_us:
                    early.append(grant.at_us - returned_us)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if early:
        raise AssertionError(f"{len(early)} callers went before their slot: {early[:5]}")
    return slots


def hammer_in_process(
    endpoint: str,
    buckets_table: str,
    limits_table: str,
    bucket: str,
    threads: int,
    per_thread: int,
    timeout: float,
) -> list[int]:
    """`hammer` in a fresh process with its own Limiter (a separate container)."""
    store = DynamoDBStore(
        buckets_table=buckets_table,
        limits_table=limits_table,
        client=dynamodb_client(region="us-east-1", endpoint_url=endpoint),
    )
    return hammer(Limiter(store), bucket, threads, per_thread, timeout)
