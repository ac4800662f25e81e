"""DynamoDB failing in every way it can: the limiter fails closed, then recovers.

A fault-injecting proxy on loopback sits between the limiter and the real
backend and answers for it: throttling, 500s, connection resets, responses
slower than the client's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from limiter import Limiter, StoreUnavailable
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from ratebridge_tools.faultproxy import FaultProxy, Rule
from ratebridge_tools.servers import LocalServer, free_port
from tests.conftest import MakeLimiter


@pytest.fixture
def proxy(backend: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(backend.url) as running:
        yield running


def through(proxy: FaultProxy, make_limiter: MakeLimiter) -> Limiter:
    client = dynamodb_client(
        region="us-east-1", endpoint_url=proxy.url, connect_timeout=1, read_timeout=0.5
    )
    return make_limiter(client=client)


@pytest.mark.parametrize("action", ["throttle", "throttling", "error500", "reset", "delay"])
def test_a_failing_write_fails_closed_and_recovers(
    proxy: FaultProxy, make_limiter: MakeLimiter, bucket: str, action: str
) -> None:
    # Given a warm caller going through the proxy
    direct = make_limiter()
    direct.set_limit(bucket, requests=100, per_seconds=1)
    lim = through(proxy, make_limiter)
    lim.acquire(bucket)
    # When every write to the buckets table fails
    proxy.set_rules(Rule(action=action, operation="UpdateItem", delay=2.0))
    with pytest.raises(StoreUnavailable) as caught:
        lim.acquire(bucket)
    # Then the caller gets a typed error and no grant
    assert caught.value.operation == "UpdateItem"
    if action == "delay":
        # The timed-out attempts still reach DynamoDB after the caller gave up.
        # Whatever the server applied is a reservation nobody uses: wasted
        # capacity, never a grant. The stored count is exactly the writes the
        # server accepted.
        def forwarded() -> int:
            counts = proxy.counts()
            return counts.get(("UpdateItem", "ok"), 0) + counts.get(
                ("UpdateItem", "ConditionalCheckFailedException"), 0
            )

        _wait_for(lambda: forwarded() == 1 + 2)
        assert direct.status(bucket).granted == proxy.counts()[("UpdateItem", "ok")]
    else:
        assert direct.status(bucket).granted == 1
    # And once the fault ends, the same caller is granted again
    proxy.clear()
    lim.acquire(bucket)


def test_throttling_on_the_first_read_fails_closed(
    proxy: FaultProxy, make_limiter: MakeLimiter, bucket: str
) -> None:
    make_limiter().set_limit(bucket, requests=100, per_seconds=1)
    lim = through(proxy, make_limiter)
    proxy.set_rules(Rule(action="throttling", operation="BatchGetItem"))
    with pytest.raises(StoreUnavailable, match="throttled"):
        lim.acquire(bucket)
    proxy.clear()
    assert lim.acquire(bucket).tokens == 1


def test_one_transient_throttle_is_absorbed_by_one_retry(
    proxy: FaultProxy, make_limiter: MakeLimiter, bucket: str
) -> None:
    direct = make_limiter()
    direct.set_limit(bucket, requests=100, per_seconds=1)
    lim = through(proxy, make_limiter)
    lim.acquire(bucket)
    proxy.set_rules(Rule(action="throttle", operation="UpdateItem", limit=1))
    lim.acquire(bucket)
    assert proxy.counts()[("UpdateItem", "throttle")] == 1
    assert direct.status(bucket).granted == 2


def test_an_unreachable_endpoint_is_named(make_limiter: MakeLimiter, bucket: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = dynamodb_client(region="us-east-1", endpoint_url=dead, connect_timeout=0.5)
    lim = make_limiter(client=client)
    with pytest.raises(StoreUnavailable, match=dead.replace(".", r"\.")):
        lim.acquire(bucket)


def test_a_missing_table_says_how_to_create_it(backend: LocalServer, bucket: str) -> None:
    store = DynamoDBStore(
        buckets_table="no-such-buckets",
        limits_table="no-such-limits",
        client=dynamodb_client(region="us-east-1", endpoint_url=backend.url),
    )
    with pytest.raises(StoreUnavailable, match="ratebridge tables create") as caught:
        Limiter(store).acquire(bucket)
    assert caught.value.code == "ResourceNotFoundException"


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
