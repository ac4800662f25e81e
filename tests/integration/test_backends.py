"""The test backends themselves: what the limiter's correctness relies on.

DynamoDB applies writes to one item atomically. moto's stock threaded server
does not (it lost 2 of 1,600 concurrent increments here), so the suite runs
moto through `ratebridge_tools.motoserver`; this test keeps that honest.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from limiter import LimiterSettings
from limiter.dynamodb import dynamodb_client
from ratebridge_tools.servers import LocalServer
from tests.support.counter import increment_many


def test_concurrent_updates_to_one_item_are_atomic(
    backend: LocalServer, limiter_settings: LimiterSettings
) -> None:
    # Given a counter item
    table = limiter_settings.buckets_table
    client = dynamodb_client(region="us-east-1", endpoint_url=backend.url)
    client.put_item(TableName=table, Item={"bucket": {"S": "counter"}, "v": {"N": "0"}})
    # When 4 processes of 8 threads increment it 40 times each
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=spawn) as pool:
        futures = [pool.submit(increment_many, backend.url, table, 8, 40) for _ in range(4)]
        seen = [v for f in futures for v in f.result(timeout=240)]
    # Then every increment happened, and each caller saw its own new value
    final = client.get_item(TableName=table, Key={"bucket": {"S": "counter"}})["Item"]["v"]["N"]
    assert int(final) == 1280
    assert sorted(seen) == list(range(1, 1281))
