"""The processor's pure parts: settings, topic patterns, Retry-After, regions."""

from __future__ import annotations

import json

import pytest

from limiter import Limit
from processor.events import topic_pattern
from processor.genesys.http import retry_after
from processor.genesys.region import api_base_url, login_base_url
from processor.genesys.token import token_id
from processor.routes import match
from processor.settings import EndpointBucket, GenesysSettings, Settings, SettingsError


def test_settings_defaults() -> None:
    s = Settings.from_env({})
    assert (s.tokens_table, s.interactions_table, s.presence_table, s.idempotency_table) == (
        "ratebridge-tokens",
        "ratebridge-interactions",
        "ratebridge-presence",
        "ratebridge-idempotency",
    )
    assert (s.genesys.bucket, s.genesys.token_bucket, s.genesys.region) == (
        "genesys",
        "genesys-oauth",
        "us_east_1",
    )
    assert s.max_receive_count == 3
    assert s.idempotency_ttl_seconds == 5 * 86_400
    assert (s.genesys.default_limit, s.genesys.token_default_limit) == (None, None)


def test_default_limits_parse() -> None:
    s = Settings.from_env(
        {"RATEBRIDGE_GENESYS_LIMIT": "300/60/3", "RATEBRIDGE_TOKEN_LIMIT": "10/60"}
    )
    assert s.genesys.default_limit == Limit(300, 60, 3)
    assert s.genesys.token_default_limit == Limit(10, 60, 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATEBRIDGE_TOKENS_TABLE": "x"}, "RATEBRIDGE_TOKENS_TABLE='x' is not a valid"),
        ({"GENESYS_READ_TIMEOUT": "soon"}, "GENESYS_READ_TIMEOUT='soon' must be a number"),
        ({"GENESYS_READ_TIMEOUT": "-1"}, "must be above 0"),
        ({"RATEBRIDGE_MAX_RECEIVE_COUNT": "0"}, "between 1 and 1000"),
        ({"RATEBRIDGE_ENDPOINT_BUCKETS": "{"}, "is not JSON"),
        ({"RATEBRIDGE_ENDPOINT_BUCKETS": "[]"}, "must be a JSON object"),
        ({"RATEBRIDGE_ENDPOINT_BUCKETS": '{"users": "b"}'}, "must look like"),
        ({"RATEBRIDGE_ENDPOINT_BUCKETS": '{"GET /x": "has space"}'}, "printable ASCII"),
        ({"RATEBRIDGE_GENESYS_BUCKET": ""}, "must not be empty"),
        ({"GENESYS_API_BASE_URL": "ftp://x"}, "must be a scheme and host"),
        ({"RATEBRIDGE_GENESYS_LIMIT": "300"}, "must be REQUESTS/SECONDS"),
        ({"RATEBRIDGE_GENESYS_LIMIT": "300/sixty"}, "like 300/60/3"),
        ({"RATEBRIDGE_TOKEN_LIMIT": "10/60/11"}, "burst (11) must not exceed requests (10)"),
        ({"RATEBRIDGE_TOKEN_LIMIT": "0/60"}, "requests must be between 1"),
        ({"RATEBRIDGE_GENESYS_LIMIT": "300/nan"}, "per_seconds must be finite"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_secrets_stay_out_of_reprs() -> None:
    settings = Settings.from_env({"GENESYS_CLIENT_ID": "id-1", "GENESYS_CLIENT_SECRET": "s3cr3t"})
    assert "s3cr3t" not in repr(settings)
    assert "id-1" in repr(settings)


def test_endpoint_buckets_match_their_template_only() -> None:
    spec = json.dumps(
        {
            "GET /api/v2/users/{id}": "users",
            "PUT /api/v2/users/{id}/presences/{source}": "presence-puts",
        }
    )
    buckets = Settings.from_env({"RATEBRIDGE_ENDPOINT_BUCKETS": spec}).genesys.endpoint_buckets
    users, puts = buckets
    assert users.matches("GET", "/api/v2/users/278522be-1683-4877-8257-4164a177be89")
    assert users.matches("get", "/api/v2/users/abc/")
    assert not users.matches("GET", "/api/v2/users/abc/presences/x")
    assert not users.matches("PUT", "/api/v2/users/abc")
    assert not users.matches("GET", "/api/v2/users")
    assert puts.matches("PUT", "/api/v2/users/a/presences/purecloud")
    assert EndpointBucket.parse("GET /a.b/{x}", "b").matches("GET", "/a.b/1")
    assert not EndpointBucket.parse("GET /a.b/{x}", "b").matches("GET", "/aXb/1")


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        (
            "v2.detail.events.conversation.2f7bf00a-0fc2-4d6a-9b56-92238191433e.customer.start",
            "conversation-customer-start",
        ),
        ("v2.detail.events.conversation.abc.customer.end", "conversation-customer-end"),
        (
            "v2.audits.entitytype.UserPresence.entityid.278522be-1683-4877-8257-4164a177be89",
            "user-presence-audit",
        ),
        ("v2.users.278522be-1683-4877-8257-4164a177be89.presence", "user-presence"),
        ("v2.users.a.b.presence", None),
        ("v2.detail.events.conversation.abc.customer.start.extra", None),
        ("v2.detail.events.conversation.abc.acd.start", None),
        ("v2.audits.entitytype.User.entityid.x", None),
        ("", None),
    ],
)
def test_topics_route_on_the_concrete_name(topic: str, route: str | None) -> None:
    found = match(topic)
    assert (found.name if found else None) == route


def test_topic_pattern_placeholders_are_one_segment() -> None:
    pattern = topic_pattern("v2.users.{id}.presence")
    assert pattern.fullmatch("v2.users.42.presence")
    assert not pattern.fullmatch("v2.users..presence")
    assert not pattern.fullmatch("v2xusers.42.presence")


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "42"}, "", 42.0),
        ({"retry-after": "0"}, "", 1.0),
        ({"Retry-After": "99999"}, "", 3600.0),
        ({"Retry-After": "soon"}, "Retry the request in [7] seconds", 7.0),
        ({}, "Rate limit exceeded the maximum. Retry the request in [12] seconds", 12.0),
        ({}, "", 10.0),
    ],
)
def test_retry_after(headers: dict[str, str], body: str, expected: float) -> None:
    assert retry_after(headers, body) == expected


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("us_east_1", "https://api.mypurecloud.com"),
        ("eu_west_1", "https://api.mypurecloud.ie"),
        ("ap_southeast_2", "https://api.mypurecloud.com.au"),
        ("mypurecloud.de", "https://api.mypurecloud.de"),
        ("api.usw2.pure.cloud", "https://api.usw2.pure.cloud"),
        ("https://login.euw2.pure.cloud/", "https://api.euw2.pure.cloud"),
    ],
)
def test_regions(region: str, url: str) -> None:
    assert api_base_url(GenesysSettings(region=region)) == url


def test_base_url_wins_and_login_host() -> None:
    assert (
        api_base_url(GenesysSettings(region="eu_west_1", api_base_url="http://127.0.0.1:8901/"))
        == "http://127.0.0.1:8901"
    )
    assert login_base_url("https://api.mypurecloud.ie") == "https://login.mypurecloud.ie"
    assert login_base_url("http://127.0.0.1:8901") == "http://127.0.0.1:8901"


def test_token_ids_are_short_stable_and_not_the_token() -> None:
    value = "abcdefghijklmnopqrstuvwxyz012345"
    assert token_id(value) == token_id(value)
    assert token_id(value).startswith("tok-")
    assert len(token_id(value)) == 12
    assert value not in token_id(value)
