"""The emulator over real HTTP, with the real Genesys SDK as the client.

Most tests use the session's child process (`emu`); a few use an in-process
emulator on a fake clock (`serve_in_thread`) where exact times matter more
than realism. 429 and 5xx tests never go through the SDK's default HTTP
client: its hidden urllib3 retries would turn one request into eleven.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import PureCloudPlatformClientV2 as genesys  # imported once: ~2.5 s and a watcher thread
import pytest
import urllib3
from PureCloudPlatformClientV2.abstract_http_client import AbstractHttpClient
from PureCloudPlatformClientV2.rest import ApiException, RESTResponse

from ratebridge_tools.emulator import (
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    EmulatorAdminError,
    EmulatorConfig,
    EmulatorServer,
    serve_in_thread,
    token_id_of,
)
from ratebridge_tools.emulator import data as emulator_data
from ratebridge_tools.emulator.__main__ import build_parser, config_from_args, main
from ratebridge_tools.emulator.config import WindowMode
from tests.emulator.support import (
    FORM,
    USER_ID,
    Answer,
    api_get,
    api_records,
    assert_genesys_error,
    basic,
    brute_max_in_window,
    call,
    get_token,
    replay,
    token_request,
)
from tests.support.clock import FakeClock

QUEUE_ID = "4b8a8a4e-53a3-4c2c-9d55-2f3b1f6e0c11"


class NoRetryHttpClient(AbstractHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's transport without urllib3's hidden retries: one call, one request."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = urllib3.PoolManager(retries=False)

    def request(self, options: Any) -> RESTResponse:
        url = options.url
        if options.query_params:
            url += "?" + urlencode(options.query_params)
        body = urlencode(options.post_params) if options.post_params else None
        raw = self.pool.request(options.method, url, body=body, headers=options.headers)
        response = RESTResponse(raw)
        response.data = raw.data.decode("utf8")
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return response


@pytest.fixture
def sdk(emu: EmulatorServer) -> Iterator[Any]:
    """An SDK ApiClient on the emulator with its default transport, logged in."""
    api_client = genesys.ApiClient(host=emu.url)
    api_client.get_client_credentials_token(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET)
    yield api_client
    api_client.get_http_client().rest_client.pool_manager.clear()


@pytest.fixture
def sdk_no_retry(emu: EmulatorServer) -> Iterator[Any]:
    """An SDK ApiClient on the emulator whose transport never retries, logged in."""
    api_client = genesys.ApiClient(host=emu.url)
    transport = NoRetryHttpClient()
    api_client.set_http_client(transport)
    api_client.get_client_credentials_token(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET)
    yield api_client
    transport.pool.clear()


def model_values(model: Any) -> Iterator[Any]:
    """Every leaf value of an SDK model, recursively."""
    items = model.to_dict().values() if hasattr(model, "to_dict") else [model]
    stack = list(items)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        else:
            yield value


# -- OAuth ------------------------------------------------------------------


def test_the_sdk_gets_a_token_from_the_same_server(emu: EmulatorServer) -> None:
    # Given the SDK pointed at the emulator (no api. host to turn into login.)
    api_client = genesys.ApiClient(host=emu.url)
    try:
        # When it logs in with client credentials
        api_client.get_client_credentials_token(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET)
    finally:
        api_client.get_http_client().rest_client.pool_manager.clear()
    # Then it holds a token, and the record names the client, not a token
    assert api_client.access_token
    (record,) = emu.requests()
    assert (record.method, record.path, record.status) == ("POST", "/oauth/token", 200)
    assert (record.client_id, record.token_id, record.admitted) == (LOCAL_CLIENT_ID, None, True)


def test_token_response_has_genesys_fields(emu: EmulatorServer) -> None:
    answer = token_request(emu.url)
    assert answer.status == 200
    assert set(answer.body) == {"access_token", "token_type", "expires_in"}
    assert answer.body["token_type"] == "bearer"
    assert answer.body["expires_in"] == 86399


@pytest.mark.parametrize(
    ("client_id", "secret", "status", "error", "description"),
    [
        (LOCAL_CLIENT_ID, "wrong-secret", 401, "invalid_client", "authentication failed"),
        ("nobody", LOCAL_CLIENT_SECRET, 401, "invalid_client", "client not found"),
    ],
)
def test_bad_client_credentials_are_refused_like_genesys(
    emu: EmulatorServer, client_id: str, secret: str, status: int, error: str, description: str
) -> None:
    answer = token_request(emu.url, client_id, secret)
    assert answer.status == status
    assert answer.body == {
        "error": error,
        "description": description,
        "error_description": description,
    }
    # And through the SDK (a 401 is not retried by its transport)
    api_client = genesys.ApiClient(host=emu.url)
    try:
        with pytest.raises(ApiException) as caught:
            api_client.get_client_credentials_token(client_id, secret)
    finally:
        api_client.get_http_client().rest_client.pool_manager.clear()
    assert caught.value.status == 401
    assert json.loads(caught.value.body)["error"] == "invalid_client"


def test_malformed_token_requests(emu: EmulatorServer) -> None:
    url = emu.url
    no_auth = call(url, "POST", "/oauth/token", headers={"Content-Type": FORM})
    assert (no_auth.status, no_auth.body["error"]) == (401, "invalid_client")
    wrong_grant = call(
        url,
        "POST",
        "/oauth/token",
        headers={"Authorization": basic(), "Content-Type": FORM},
        body=b"grant_type=password",
    )
    assert (wrong_grant.status, wrong_grant.body["error"]) == (400, "unsupported_grant_type")
    as_json = call(
        url,
        "POST",
        "/oauth/token",
        headers={"Authorization": basic(), "Content-Type": "application/json"},
        body=b'{"grant_type": "client_credentials"}',
    )
    assert (as_json.status, as_json.body["error"]) == (400, "invalid_request")
    assert call(url, "GET", "/oauth/token").status == 405


def test_token_requests_are_rate_limited_per_client(emu: EmulatorServer) -> None:
    # Given 3 token requests per minute per client
    emu.configure(token_rate_limit=3, token_rate_period_s=60)
    # When a bad secret is tried, then four good requests are made
    assert token_request(emu.url, secret="wrong").status == 401
    answers = [token_request(emu.url) for _ in range(4)]
    # Then the fourth gets Genesys's 429; failed logins did not count
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert_genesys_error(answers[3], 429, "too.many.requests.retry.after")
    records = [r for r in emu.requests() if r.status in (200, 429)]
    admitted = [r.time for r in records if r.admitted]
    expected = max(1, math.ceil(admitted[-3] + 60.0 - records[-1].time))
    assert answers[3].headers["retry-after"] == str(expected)
    assert records[-1].client_id == LOCAL_CLIENT_ID


def test_token_endpoint_down_switch(emu: EmulatorServer) -> None:
    emu.configure(token_endpoint_down=True)
    down = token_request(emu.url)
    assert_genesys_error(down, 503, "service.unavailable")
    emu.configure(token_endpoint_down=False)
    assert token_request(emu.url).status == 200


# -- API authentication -----------------------------------------------------


def test_api_calls_need_a_known_bearer_token(emu: EmulatorServer) -> None:
    path = f"/api/v2/users/{USER_ID}"
    assert_genesys_error(call(emu.url, "GET", path), 401, "authentication.required")
    unknown = api_get(emu.url, "not-a-token-we-issued")
    assert_genesys_error(unknown, 401, "bad.credentials")
    assert unknown.body["message"] == "Invalid login credentials."
    assert emu.requests()[-1].token_id == token_id_of("not-a-token-we-issued")
    assert emu.requests()[-1].client_id is None  # an unknown token has no client


def test_revoked_tokens_are_refused(emu: EmulatorServer) -> None:
    first, second = get_token(emu.url), get_token(emu.url)
    assert emu.revoke(token_id_of(first)) == 1
    assert_genesys_error(api_get(emu.url, first), 401, "bad.credentials")
    assert api_get(emu.url, second).status == 200
    assert emu.revoke() == 1
    assert_genesys_error(api_get(emu.url, second), 401, "bad.credentials")


def test_tokens_expire_on_the_emulator_clock() -> None:
    # Given an in-process emulator on a fake clock, tokens living 300 s
    clock = FakeClock()
    with serve_in_thread(EmulatorConfig(token_lifetime_s=300), clock=clock.time) as emu:
        answer = token_request(emu.url)
        assert answer.body["expires_in"] == 300
        token = answer.body["access_token"]
        clock.advance(299.75)
        assert api_get(emu.url, token).status == 200
        # When the lifetime has passed
        clock.advance(0.25)
        # Then the token is refused as expired
        assert_genesys_error(api_get(emu.url, token), 401, "credentials.expired")
        # And both API records name the token's client
        assert [r.client_id for r in api_records(emu.requests())] == [LOCAL_CLIENT_ID] * 2


# -- entities through the real SDK ------------------------------------------


def test_sdk_deserializes_a_user(sdk: Any) -> None:
    users = genesys.UsersApi(sdk)
    user = users.get_user(USER_ID)
    assert user.id == USER_ID
    assert user.name and user.email and "@" in user.email
    assert user.state == "active"
    assert user.division.id and user.division.name
    assert user.username == user.email
    assert user.presence is None  # Genesys returns presence only on request
    expanded = users.get_user(USER_ID, expand=["presence", "routingStatus"])
    assert expanded.name == user.name
    assert expanded.presence.presence_definition.system_presence
    assert expanded.routing_status.status in {
        "OFF_QUEUE",
        "IDLE",
        "INTERACTING",
        "NOT_RESPONDING",
        "COMMUNICATING",
    }
    assert "outdated_sdk_version" not in list(model_values(expanded))


def _conversation_ids() -> tuple[str, str]:
    """A conversation that is over with two agents, and one still going."""
    rng = random.Random(7)
    ended = active = ""
    while not (ended and active):
        candidate = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = emulator_data.conversation(candidate)
        agents = [p for p in body["participants"] if p["purpose"] == "agent"]  # type: ignore[attr-defined]
        if "endTime" in body and len(agents) == 2 and not ended:
            ended = candidate
        if "endTime" not in body and not active:
            active = candidate
    return ended, active


def test_sdk_deserializes_conversations_consistent_with_users_and_queues(sdk: Any) -> None:
    conversations = genesys.ConversationsApi(sdk)
    users, routing = genesys.UsersApi(sdk), genesys.RoutingApi(sdk)
    ended_id, active_id = _conversation_ids()

    ended = conversations.get_conversation(ended_id)
    assert ended.id == ended_id
    assert ended.start_time < ended.end_time
    purposes = [p.purpose for p in ended.participants]
    assert purposes == ["customer", "acd", "agent", "agent"]
    agents = [p for p in ended.participants if p.purpose == "agent"]
    for agent in agents:
        assert agent.start_time and agent.end_time and agent.start_time < agent.end_time
        # The agent is a real user: GET /users agrees on the name
        assert users.get_user(agent.user_id).name == agent.name
        queue = routing.get_routing_queue(agent.queue_id)
        assert queue.name == agent.queue_name
    assert "outdated_sdk_version" not in list(model_values(ended))

    active = conversations.get_conversation(active_id)
    assert active.end_time is None
    assert active.participants[-1].purpose == "agent"
    assert active.participants[-1].end_time is None
    # Repeated GETs agree
    assert conversations.get_conversation(ended_id).to_dict() == ended.to_dict()


def test_sdk_deserializes_a_queue(sdk: Any) -> None:
    queue = genesys.RoutingApi(sdk).get_routing_queue(QUEUE_ID)
    assert queue.id == QUEUE_ID
    assert queue.name and queue.division.name
    assert isinstance(queue.member_count, int) and queue.member_count > 0
    assert 0 <= queue.joined_member_count <= queue.member_count
    assert "outdated_sdk_version" not in list(model_values(queue))


def test_missing_ids_answer_404(emu: EmulatorServer, sdk: Any) -> None:
    # Given a user deleted at run time (the id given in upper case)
    emu.add_missing([USER_ID.upper()])
    # Then GET /users answers Genesys's 404 (a 404 is not retried by the SDK)
    with pytest.raises(ApiException) as caught:
        genesys.UsersApi(sdk).get_user(USER_ID)
    assert caught.value.status == 404
    body = json.loads(caught.value.body)
    assert body["code"] == "not.found" and body["status"] == 404
    assert body["contextId"] == caught.value.headers["ININ-Correlation-Id"]
    # And it exists again once removed
    emu.change_missing(remove=[USER_ID])
    assert genesys.UsersApi(sdk).get_user(USER_ID).id == USER_ID


def test_bad_paths_are_refused_without_echoing_them(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    hostile = api_get(emu.url, token, "/api/v2/users/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert_genesys_error(hostile, 400, "bad.request")
    assert "script" not in json.dumps(hostile.body)
    assert_genesys_error(api_get(emu.url, token, "/api/v2/users/123"), 400, "bad.request")
    assert_genesys_error(api_get(emu.url, token, "/api/v2/users/<b>/x"), 404, "not.found")
    assert_genesys_error(api_get(emu.url, token, "/api/v2/nothing/here"), 404, "not.found")
    posted = call(
        emu.url, "POST", f"/api/v2/users/{USER_ID}", headers={"Authorization": f"Bearer {token}"}
    )
    assert_genesys_error(posted, 405, "method.not.allowed")


# -- rate limits ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_429_is_exactly_genesys_and_retry_after_follows_the_window(
    emu: EmulatorServer, mode: str
) -> None:
    # Given 5 requests per 2 s per token
    emu.configure(rate_limit=5, rate_period_s=2, window_mode=mode)
    token = get_token(emu.url)
    start = len(emu.requests())
    # When one client sends requests back to back until it has two 429s
    answers: list[Answer] = []
    while sum(a.status == 429 for a in answers) < 2 and len(answers) < 40:
        answers.append(api_get(emu.url, token))
    records = emu.requests(since=start)
    # Then every decision, count and Retry-After is what the window implies
    expected = replay([r.time for r in records], limit=5, period=2.0, mode=mode)
    assert len(records) == len(answers)
    for answer, record, want in zip(answers, records, expected, strict=True):
        assert answer.status == record.status == (200 if want.admitted else 429)
        if want.admitted:
            assert answer.headers["inin-ratelimit-count"] == str(want.count)
            assert answer.headers["inin-ratelimit-allowed"] == "5"
            assert answer.headers["inin-ratelimit-reset"] == str(want.reset_s)
        else:
            assert_genesys_error(answer, 429, "too.many.requests.retry.after")
            assert answer.headers["retry-after"] == str(want.retry_after_s)
            assert answer.body["message"] == (
                "Rate limit exceeded the maximum. "
                f"Retry the request in [{want.retry_after_s}] seconds"
            )
            assert not record.admitted
    # And waiting the advised seconds is enough
    time.sleep(int(answers[-1].headers["retry-after"]))
    assert api_get(emu.url, token).status == 200


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_429_on_a_fake_clock(mode: WindowMode) -> None:
    # Given 5 per 2 s; the clock starts 0.25 s into the fixed window [T, T + 2)
    # (steps are binary fractions, so every sum is an exact float)
    clock = FakeClock(1_800_000_000.25)
    config = EmulatorConfig(rate_limit=5, rate_period_s=2, window_mode=mode)
    with serve_in_thread(config, clock=clock.time) as emu:
        token = get_token(emu.url)
        for i in range(5):
            ok = api_get(emu.url, token)
            assert ok.headers["inin-ratelimit-count"] == str(i + 1)
            clock.advance(0.25)
        # When a sixth arrives at T + 1.5
        denied = api_get(emu.url, token)
        # Then fixed: come back at the boundary T + 2, 0.5 s away -> "1";
        # sliding: when the first (T + 0.25) is 2 s old, 0.75 s away -> "1"
        assert denied.status == 429
        assert denied.headers["retry-after"] == "1"
        clock.advance(0.5 if mode == "fixed" else 0.75)
        assert api_get(emu.url, token).status == 200


def test_the_sdk_sees_a_429_once_without_hidden_retries(
    emu: EmulatorServer, sdk_no_retry: Any
) -> None:
    emu.configure(rate_limit=1, rate_period_s=60)
    users = genesys.UsersApi(sdk_no_retry)
    users.get_user(USER_ID)
    with pytest.raises(ApiException) as caught:
        users.get_user(USER_ID)
    assert caught.value.status == 429
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
    assert json.loads(caught.value.body)["code"] == "too.many.requests.retry.after"
    assert [r.status for r in api_records(emu.requests())] == [200, 429]


def test_stats_match_a_brute_force_recount(emu: EmulatorServer) -> None:
    # Given two tokens sharing traffic, with some 429s, 404s and 401s
    emu.configure(rate_limit=7, rate_period_s=0.5, window_mode="sliding")
    tokens = [get_token(emu.url), get_token(emu.url)]
    emu.add_missing([QUEUE_ID])
    for i in range(40):
        api_get(emu.url, tokens[i % 2])
        if i % 10 == 0:
            api_get(emu.url, tokens[0], f"/api/v2/routing/queues/{QUEUE_ID}")
            api_get(emu.url, "unknown-token")
    records = emu.requests()
    # Then every figure matches a recount of the records
    for window in (0.05, 0.3, 0.5, 2.0):
        stats = emu.stats(window)
        admitted = [r for r in api_records(records) if r.admitted]
        assert stats.max_in_window == brute_max_in_window([r.time for r in admitted], window)
        for token in tokens:
            mine = [r.time for r in admitted if r.token_id == token_id_of(token)]
            assert stats.max_in_window_by_token[token_id_of(token)] == brute_max_in_window(
                mine, window
            )
        assert stats.by_status == {str(k): v for k, v in Counter(r.status for r in records).items()}
        assert stats.total == len(records)
        assert stats.token_requests == 2
        assert stats.api_requests == len(api_records(records))
        assert stats.rate_limited == sum(r.status == 429 for r in records)
        assert not stats.truncated
    # And the sliding guarantee holds per token
    assert max(emu.stats(0.5).max_in_window_by_token.values()) <= 7


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_concurrent_clients_never_get_more_than_the_limit(emu: EmulatorServer, mode: str) -> None:
    # Given 10 per 0.5 s and eight threads sharing one token
    emu.configure(rate_limit=10, rate_period_s=0.5, window_mode=mode)
    token = get_token(emu.url)

    def hammer() -> None:
        for _ in range(25):
            api_get(emu.url, token)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then no window of the mode ever admitted more than 10 (exact bound)
    admitted = [r.time for r in api_records(emu.requests()) if r.admitted]
    assert len(api_records(emu.requests())) == 200
    if mode == "sliding":
        assert brute_max_in_window(admitted, 0.5) <= 10
    else:
        assert max(Counter(math.floor(t / 0.5) for t in admitted).values()) <= 10


# -- fault injection --------------------------------------------------------


def _draws(seed: int, n: int) -> list[tuple[float, float, float]]:
    """The (jitter, error, hang) draws the emulator makes for n requests."""
    rng = random.Random(seed)
    return [(rng.random(), rng.random(), rng.random()) for _ in range(n)]


def test_injected_errors_follow_the_seed_exactly(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    # Given half the admitted requests fail, from seed 11 (setting it re-seeds)
    emu.configure(error_rate=0.5, seed=11)
    statuses = [api_get(emu.url, token).status for _ in range(20)]
    expected = [503 if error < 0.5 else 200 for _, error, _ in _draws(11, 20)]
    assert statuses == expected
    assert 0 < statuses.count(503) < 20
    # And the status is configurable; injected errors were admitted (counted)
    emu.configure(error_rate=1.0, error_status=500)
    failed = api_get(emu.url, token)
    assert_genesys_error(failed, 500, "internal.server.error")
    assert "inin-ratelimit-count" in failed.headers
    assert emu.requests()[-1].admitted


def test_a_429_storm_refuses_every_api_request_with_its_retry_after(
    emu: EmulatorServer,
) -> None:
    token = get_token(emu.url)
    # Given a storm: a limit the client does not own is spent
    emu.configure(storm_retry_after_s=17)
    answers = [api_get(emu.url, token) for _ in range(3)]
    # Then every API request is Genesys's 429 with that Retry-After, none admitted
    for answer in answers:
        assert_genesys_error(answer, 429, "too.many.requests.retry.after")
        assert answer.headers["retry-after"] == "17"
        assert "[17] seconds" in answer.body["message"]
    assert [r.admitted for r in api_records(emu.requests())[-3:]] == [False] * 3
    # And when it ends, requests are admitted again at once
    emu.configure(storm_retry_after_s=0)
    assert api_get(emu.url, token).status == 200


def test_latency_and_jitter_are_added(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    emu.configure(latency_ms=120, jitter_ms=100, seed=3)
    answers = [api_get(emu.url, token) for _ in range(3)]
    records = api_records(emu.requests())
    for answer, record, (jitter, _, _) in zip(answers, records, _draws(3, 3), strict=True):
        floor_s = (120 + jitter * 100) / 1000
        assert record.duration >= floor_s
        assert answer.elapsed >= floor_s


def test_hanging_requests_answer_504_after_the_hang(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    emu.configure(hang_rate=1.0, hang_s=0.3)
    answer = api_get(emu.url, token)
    assert_genesys_error(answer, 504, "request.timeout")
    assert answer.elapsed >= 0.3
    record = emu.requests()[-1]
    assert record.status == 504 and record.duration >= 0.3 and record.admitted


def test_hanging_requests_can_close_without_answering(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    emu.configure(hang_rate=1.0, hang_s=0.2, hang_action="close")
    started = time.monotonic()
    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected
        api_get(emu.url, token)
    assert time.monotonic() - started >= 0.2
    assert emu.requests()[-1].status is None
    assert emu.stats(1).by_status["closed"] == 1


# -- admin API --------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"rate_limit": 0}, "rate_limit must be an integer >= 1"),
        ({"error_rate": "high"}, "error_rate must be a number"),
        ({"window_mode": "rolling"}, "window_mode must be one of"),
        ({"limit_scope": "per-org"}, "limit_scope must be one of"),
        ({"missing_ids": ["nope"]}, "missing_ids must contain only UUIDs"),
        ({"speed": 11}, "unknown knob"),
    ],
)
def test_admin_refuses_bad_knobs(
    emu: EmulatorServer, knobs: dict[str, object], message: str
) -> None:
    with pytest.raises(EmulatorAdminError) as caught:
        emu.configure(**knobs)
    assert caught.value.status == 400
    assert message in caught.value.message
    assert emu.config()["rate_limit"] == 300  # nothing changed


def test_admin_refuses_bad_requests(emu: EmulatorServer) -> None:
    url = emu.url
    bad_json = call(url, "POST", "/_emulator/config", body=b"{not json")
    assert bad_json.status == 400 and "not valid JSON" in bad_json.body["error"]
    assert call(url, "POST", "/_emulator/config", body=b"[1]").status == 400
    assert call(url, "GET", "/_emulator/stats").status == 400
    assert call(url, "GET", "/_emulator/stats?window=-1").status == 400
    assert call(url, "GET", "/_emulator/requests?since=-1").status == 400
    assert call(url, "GET", "/_emulator/requests?since=inf").status == 400
    assert call(url, "GET", "/_emulator/reset").status == 405
    assert call(url, "GET", "/_emulator/nothing").status == 404
    missing = call(url, "POST", "/_emulator/missing", body=b'{"add": "x"}')
    assert missing.status == 400
    # Admin calls are neither recorded nor rate limited
    assert emu.requests() == []


def test_records_page_from_an_index_and_report_truncation(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    for _ in range(4):
        api_get(emu.url, token)
    assert [r.index for r in emu.requests(since=3)] == [3, 4]
    emu.configure(max_records=2)
    assert [r.index for r in emu.requests()] == [3, 4]
    stats = emu.stats(60)
    assert (stats.truncated, stats.dropped, stats.total) == (True, 3, 2)


def test_reset_forgets_tokens_and_optionally_knobs(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    emu.configure(rate_limit=9)
    emu.reset()
    assert emu.config()["rate_limit"] == 9
    assert emu.requests() == []
    assert_genesys_error(api_get(emu.url, token), 401, "bad.credentials")
    emu.reset(config=True)
    assert emu.config()["rate_limit"] == 300


def test_keep_alive_serves_several_requests_per_connection(emu: EmulatorServer) -> None:
    token = get_token(emu.url)
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        for _ in range(3):
            headers = {"Authorization": f"Bearer {token}"}
            conn.request("GET", f"/api/v2/users/{USER_ID}", headers=headers)
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["id"] == USER_ID
    finally:
        conn.close()


def test_no_secret_or_token_is_ever_written(emu: EmulatorServer) -> None:
    # Given traffic with good and bad secrets and tokens (the access log is on)
    token = get_token(emu.url)
    api_get(emu.url, token)
    token_request(emu.url, secret="a-wrong-secret-xyz")
    api_get(emu.url, "a-forged-token-xyz")
    # Then the emulator's output holds token ids, never tokens or secrets
    log = emu.log_path.read_text()
    assert token_id_of(token) in log
    for secret in (token, LOCAL_CLIENT_SECRET, "a-wrong-secret-xyz", "a-forged-token-xyz"):
        assert secret not in log
    assert LOCAL_CLIENT_SECRET not in json.dumps(emu.config())


# -- command line -----------------------------------------------------------


def test_flags_override_the_config_file(tmp_path: Any) -> None:
    config_file = tmp_path / "emulator.json"
    config_file.write_text(json.dumps({"rate_limit": 10, "clients": {"c": "s"}}))
    args = build_parser().parse_args(
        [
            *("--config", str(config_file), "--rate-limit", "20", "--window-mode", "fixed"),
            *("--missing-id", USER_ID, "--token-endpoint-down"),
        ]
    )
    config = config_from_args(args)
    assert (config.rate_limit, config.window_mode) == (20, "fixed")
    assert config.missing_ids == {USER_ID}
    assert config.token_endpoint_down
    assert dict(config.clients) == {"c": "s"}


def test_main_refuses_a_bad_knob_without_serving(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", "--error-rate", "2"]) == 2
    assert "error_rate must be a number between 0 and 1" in capsys.readouterr().err
