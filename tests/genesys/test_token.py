"""The shared token's lease and the caller's deadline, on every backend, on a fake clock.

A waiter never waits past its deadline (the invocation's time budget): it
gets `TokenPending` with the exact time left on the holder's lease. And a
lease never outlives its holder's own deadline, so a holder killed mid-fetch
holds the fleet up at most until its invocation would have ended anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from limiter.dynamodb import dynamodb_client
from processor.genesys.errors import TokenPending, TokenUnavailable
from processor.genesys.token import LEASE_MARGIN, FetchedToken, SharedToken
from processor.genesys.token_store import TokenStore
from ratebridge_tools.servers import LocalServer
from tests.support.clock import FakeClock

Fetch = Callable[[float], FetchedToken]


@pytest.fixture
def store(backend: LocalServer, tokens_table: str) -> TokenStore:
    return TokenStore(tokens_table, dynamodb_client(region="us-east-1", endpoint_url=backend.url))


def make(store: TokenStore, key: str, clock: FakeClock, fetch: Fetch) -> SharedToken:
    return SharedToken(store, fetch, key=key, clock=clock.time, sleep=clock.sleep)


def fresh(value: str = "access-token-value-0001") -> Fetch:
    return lambda finish_by: FetchedToken(value=value, expires_in=3600)


def test_a_waiter_gets_token_pending_at_its_deadline_with_the_lease_left(
    store: TokenStore,
) -> None:
    # Given instance A fetching the token (holding the lease) for as long as
    # its own deadline allows, 10 s
    clock, key = FakeClock(), f"k-{uuid.uuid4().hex}"
    t0 = clock.time()
    seen: list[TokenPending] = []
    leases: list[float] = []

    def slow_fetch(finish_by: float) -> FetchedToken:
        leases.append(store.read(key).lease_until)
        # When B asks meanwhile with only 2 s left
        with pytest.raises(TokenPending) as caught:
            make(store, key, clock, fresh("never-fetched-by-b-000")).get(finish_by=t0 + 2)
        seen.append(caught.value)
        return FetchedToken(value="access-token-value-0001", expires_in=3600)

    token = make(store, key, clock, slow_fetch).get(finish_by=t0 + 10)
    # Then A's lease ended 1 s after A's deadline, B stopped waiting at its
    # deadline (not later) and was told to come back when A's lease ends
    assert leases == [pytest.approx(t0 + 10 + LEASE_MARGIN)]
    assert clock.time() == pytest.approx(t0 + 2)
    assert seen[0].retry_after == pytest.approx(10 + LEASE_MARGIN - 2)
    assert token.token_id.startswith("tok-")


def test_a_dead_holder_delays_the_fleet_only_until_its_own_deadline(store: TokenStore) -> None:
    # Given an instance that took the lease with 3 s left and was then killed
    clock, key = FakeClock(), f"k-{uuid.uuid4().hex}"
    t0 = clock.time()
    assert store.try_lease(key, "killed-instance", t0, t0 + 3 + LEASE_MARGIN, 0)
    fetched_at: list[float] = []

    def fetch(finish_by: float) -> FetchedToken:
        fetched_at.append(clock.time())
        return FetchedToken(value="access-token-value-0002", expires_in=3600)

    # When another instance needs a token with 10 s left
    make(store, key, clock, fetch).get(finish_by=t0 + 10)
    # Then it fetched one itself, right after the dead lease ran out
    assert len(fetched_at) == 1
    assert t0 + 3 + LEASE_MARGIN <= fetched_at[0] < t0 + 10


def test_no_lease_is_taken_once_the_deadline_has_passed(store: TokenStore) -> None:
    # Given no token anywhere and a caller whose time is already up
    clock, key = FakeClock(), f"k-{uuid.uuid4().hex}"
    calls: list[float] = []

    def fetch(finish_by: float) -> FetchedToken:
        calls.append(finish_by)
        return FetchedToken(value="access-token-value-0003", expires_in=3600)

    # When it asks for a token
    with pytest.raises(TokenUnavailable, match="within the time left"):
        make(store, key, clock, fetch).get(finish_by=clock.time() - 1)
    # Then it neither fetched nor left a lease behind for the others
    assert calls == []
    assert store.read(key).lease_until == 0.0
