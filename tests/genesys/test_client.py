"""The Genesys client in one process: the real SDK, the emulator, a real DynamoDB.

Every request the emulator records must have had a permit: the bucket's
`granted` counter and the emulator's record are compared exactly.
"""

from __future__ import annotations

import time
import uuid

import pytest

from limiter import Limit
from processor.genesys.client import InvalidId
from processor.genesys.errors import (
    CredentialsMissing,
    NotFound,
    PermissionTimeout,
    TokenUnavailable,
    UpstreamRejected,
    UpstreamUnavailable,
)
from processor.settings import SettingsError
from tests.genesys.conftest import Stack
from tests.support.genesys import build_client

USER = "278522be-1683-4877-8257-4164a177be89"
CONVERSATION = "2f7bf00a-0fc2-4d6a-9b56-92238191433e"
QUEUE = "5e5dc4a1-6e0b-4b22-a8d8-3f6a32a0a31b"


def test_the_sdk_deserializes_every_route_and_each_request_had_a_permit(stack: Stack) -> None:
    client = build_client(stack.env)
    with client.deadline(time.time() + 20):
        user = client.get_user(USER)
        conversation = client.get_conversation(CONVERSATION)
        queue = client.get_routing_queue(QUEUE)
    assert user.id == USER
    assert user.name
    assert conversation.id == CONVERSATION
    agents = [p for p in conversation.participants if p.purpose == "agent"]
    assert agents
    assert all(a.user_id for a in agents)
    assert queue.id == QUEUE
    assert queue.name
    # One token request, three API requests, three permits on the client-wide bucket
    assert stack.token_requests() == 1
    assert len(stack.api_requests()) == 3
    assert stack.limiter.status(stack.bucket).granted == 3
    assert stack.limiter.status(stack.token_bucket).granted == 1


def test_a_deleted_user_is_not_found_in_one_request(stack: Stack) -> None:
    stack.emulator.add_missing([USER])
    client = build_client(stack.env)
    with pytest.raises(NotFound) as caught:
        client.get_user(USER)
    assert caught.value.status == 404
    assert not caught.value.retriable
    assert len(stack.api_requests()) == 1


@pytest.mark.parametrize("bad", ["../../oauth/token", "1 OR 1=1", "x" * 500, "", None, 42])
def test_ids_are_validated_before_they_reach_a_url(stack: Stack, bad: object) -> None:
    client = build_client(stack.env)
    with pytest.raises(InvalidId, match="user id must be a UUID"):
        client.get_user(bad)
    assert stack.api_requests() == []
    assert stack.limiter.status(stack.bucket).granted == 0


def test_5xx_on_a_get_is_retried_within_bounds_each_retry_permitted(stack: Stack) -> None:
    stack.emulator.configure(error_rate=1.0, error_status=503)
    client = build_client(stack.env)
    with client.deadline(time.time() + 20), pytest.raises(UpstreamUnavailable) as caught:
        client.get_user(USER)
    assert caught.value.status == 503
    assert caught.value.retriable
    assert len(stack.api_requests()) == 3  # GENESYS_MAX_ATTEMPTS
    assert stack.limiter.status(stack.bucket).granted == 3


def test_a_post_is_never_retried(stack: Stack) -> None:
    from PureCloudPlatformClientV2.http_request_options import HttpRequestOptions

    stack.emulator.configure(error_rate=1.0, error_status=502)
    client = build_client(stack.env)
    options = HttpRequestOptions(
        url=stack.emulator.url + "/api/v2/users/" + USER,
        method="POST",
        headers={"Content-Type": "application/json"},
        body={"name": "x"},
    )
    with pytest.raises(UpstreamUnavailable):
        client.transport.request(options)
    assert len(stack.api_requests()) == 1


def test_a_hanging_request_times_out_and_is_retried(stack: Stack) -> None:
    env = {**stack.env, "GENESYS_READ_TIMEOUT": "0.5", "GENESYS_MAX_ATTEMPTS": "2"}
    stack.emulator.configure(hang_rate=1.0, hang_s=1.5)
    client = build_client(env)
    started = time.monotonic()
    with client.deadline(time.time() + 20), pytest.raises(UpstreamUnavailable, match="Timeout"):
        client.get_user(USER)
    assert time.monotonic() - started < 1.5 * 2
    assert stack.limiter.status(stack.bucket).granted == 2
    # The emulator records a hung request when its hang ends: wait for both,
    # so they land in this test's record and not the next one's.
    deadline = time.monotonic() + 10
    while len(stack.api_requests()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [r.status for r in stack.api_requests()] == [504, 504]


def test_other_4xx_are_permanent(stack: Stack) -> None:
    client = build_client(stack.env)
    from PureCloudPlatformClientV2.http_request_options import HttpRequestOptions

    options = HttpRequestOptions(url=stack.emulator.url + "/api/v2/users/not-a-uuid", method="GET")
    with pytest.raises(UpstreamRejected) as caught:
        client.transport.request(options)
    assert caught.value.status == 400
    assert not caught.value.retriable


def test_a_full_bucket_gives_permission_timeout_with_retry_after(stack: Stack) -> None:
    stack.limiter.set_limit(stack.bucket, requests=1, per_seconds=60)
    client = build_client(stack.env)
    with client.deadline(time.time() + 20):
        client.get_user(USER)
    with client.deadline(time.time() + 2), pytest.raises(PermissionTimeout) as caught:
        client.get_user(USER)
    assert caught.value.retriable
    assert caught.value.retry_after == pytest.approx(Limit(1, 60).rate.interval_us / 1e6, abs=1)
    assert len(stack.api_requests()) == 1


def test_no_permit_is_waited_for_longer_than_the_max_wait(stack: Stack) -> None:
    # Given a bucket whose next slot is 5 s away, and a max wait of 1 s
    stack.limiter.set_limit(stack.bucket, requests=2, per_seconds=10)
    client = build_client({**stack.env, "RATEBRIDGE_MAX_WAIT_SECONDS": "1"})
    client.get_user(USER)
    # When a call has 60 s before its deadline
    started = time.monotonic()
    with client.deadline(time.time() + 60), pytest.raises(PermissionTimeout) as caught:
        client.get_user(USER)
    # Then it did not wait: the record can go back for the exact wait instead
    assert time.monotonic() - started < 1
    assert caught.value.retry_after == pytest.approx(Limit(2, 10).rate.interval_us / 1e6, abs=1)
    assert len(stack.api_requests()) == 1


def test_per_endpoint_buckets_pace_only_their_endpoint(stack: Stack) -> None:
    users_bucket = f"{stack.bucket}-users"
    stack.limiter.set_limit(users_bucket, requests=2, per_seconds=1)
    env = {
        **stack.env,
        "RATEBRIDGE_ENDPOINT_BUCKETS": f'{{"GET /api/v2/users/{{id}}": "{users_bucket}"}}',
    }
    client = build_client(env)
    started = time.time()
    with client.deadline(started + 30):
        for _ in range(3):
            client.get_user(USER)
        client.get_conversation(CONVERSATION)
    users = sorted(r.time for r in stack.api_requests() if "/users/" in r.path)
    interval = Limit(2, 1).rate.interval_us / 1e6
    # Paced by the users bucket: the k-th call's slot is (k-1) intervals after
    # the first, which came no earlier than `started`, and no request leaves
    # before its slot. (Gaps between arrivals are no bound: a late first
    # request shortens the gap after it.)
    assert [u - started >= k * interval for k, u in enumerate(users)] == [True] * 3
    assert stack.limiter.status(users_bucket).granted == 3
    assert stack.limiter.status(stack.bucket).granted == 4


def test_the_token_endpoint_down_is_retriable_and_says_so(stack: Stack) -> None:
    stack.emulator.configure(token_endpoint_down=True)
    client = build_client(stack.env)
    with pytest.raises(TokenUnavailable, match="token endpoint answered 503") as caught:
        client.get_user(USER)
    assert caught.value.retriable
    assert stack.api_requests() == []


def test_wrong_credentials_are_reported_without_the_secret(stack: Stack) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    client = build_client({**stack.env, "GENESYS_CLIENT_SECRET": wrong})
    with pytest.raises(TokenUnavailable, match=r"401 \(invalid_client\)") as caught:
        client.get_user(USER)
    assert wrong not in str(caught.value)
    assert stack.client_secret not in repr(caught.value)


def test_missing_credentials_say_what_to_set(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if not k.startswith("GENESYS_CLIENT")}
    with pytest.raises(CredentialsMissing, match="GENESYS_CREDENTIALS_SECRET"):
        build_client(env)


def test_an_unknown_region_lists_the_known_ones(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "GENESYS_API_BASE_URL"}
    with pytest.raises(SettingsError, match="eu_west_1"):
        build_client({**env, "GENESYS_REGION": "mars_north_1"})


def test_a_fresh_deployment_installs_its_default_limits(stack: Stack) -> None:
    # Given buckets nobody has configured, and the deploy-time defaults in the environment
    suffix = uuid.uuid4().hex[:8]
    env = {
        **stack.env,
        "RATEBRIDGE_GENESYS_BUCKET": f"fresh-{suffix}",
        "RATEBRIDGE_TOKEN_BUCKET": f"fresh-oauth-{suffix}",
        "RATEBRIDGE_GENESYS_LIMIT": "300/60/3",
        "RATEBRIDGE_TOKEN_LIMIT": "10/60",
    }
    # When a container builds its client and calls Genesys
    client = build_client(env)
    client.get_user(USER)
    # Then the defaults were stored and took the call's permits
    assert stack.limiter.get_limit(f"fresh-{suffix}") == Limit(300, 60, 3)
    assert stack.limiter.get_limit(f"fresh-oauth-{suffix}") == Limit(10, 60, 1)
    assert stack.limiter.status(f"fresh-{suffix}").granted == 1
    assert stack.limiter.status(f"fresh-oauth-{suffix}").granted == 1
