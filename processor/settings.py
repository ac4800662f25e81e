"""Every setting the processor reads, from the environment, in this one place.

| variable | default | what |
|---|---|---|
| RATEBRIDGE_BUCKETS_TABLE | ratebridge-buckets | the limiter's bucket state |
| RATEBRIDGE_LIMITS_TABLE | ratebridge-limits | the limiter's limits |
| RATEBRIDGE_TOKENS_TABLE | ratebridge-tokens | the shared OAuth token |
| RATEBRIDGE_INTERACTIONS_TABLE | ratebridge-interactions | conversation records |
| RATEBRIDGE_PRESENCE_TABLE | ratebridge-presence | presence records |
| RATEBRIDGE_IDEMPOTENCY_TABLE | ratebridge-idempotency | Powertools idempotency |
| RATEBRIDGE_GENESYS_BUCKET | genesys | the client-wide bucket every Genesys call takes from |
| RATEBRIDGE_TOKEN_BUCKET | genesys-oauth | the bucket for /oauth/token requests |
| RATEBRIDGE_ENDPOINT_BUCKETS | {} | JSON: {"GET /api/v2/users/{id}": "genesys-users", ...} |
| RATEBRIDGE_GENESYS_LIMIT | (none) | REQUESTS/SECONDS[/BURST] (300/60/3), if no limit is set |
| RATEBRIDGE_TOKEN_LIMIT | (none) | the same for the token bucket (10/60) |
| RATEBRIDGE_MAX_WAIT_SECONDS | 20 | longest wait for permission before a record goes back |
| RATEBRIDGE_DLQ_URL | (none) | the DLQ: bad records go there at once, with their reason |
| RATEBRIDGE_MAX_RECEIVE_COUNT | 3 | the queue's maxReceiveCount (a last failure goes to the DLQ) |
| RATEBRIDGE_MAX_DEFER_SECONDS | 900 | cap on how long a record is put back for |
| RATEBRIDGE_MAX_DEFERRALS | 50 | capacity waits before a record goes to the DLQ |
| RATEBRIDGE_RETRY_BACKOFF_SECONDS | 5 | a failed record returns after this x 2^(receive - 1) s |
| RATEBRIDGE_IDEMPOTENCY_TTL_SECONDS | 432000 | how long an event id is remembered (5 days) |
| RATEBRIDGE_MAX_BODY_BYTES | 262144 | larger SQS bodies are refused as malformed |
| GENESYS_CREDENTIALS_SECRET | (none) | Secrets Manager secret with JSON client_id, client_secret |
| GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET | (none) | local alternative to the secret |
| GENESYS_REGION | us_east_1 | SDK region name (eu_west_1) or domain (mypurecloud.ie) |
| GENESYS_API_BASE_URL | (none) | wins over GENESYS_REGION; http://127.0.0.1:8901 for the emulator |
| GENESYS_CONNECT_TIMEOUT, GENESYS_READ_TIMEOUT | 3, 10 | seconds, per HTTP request |
| GENESYS_MAX_ATTEMPTS | 3 | tries for idempotent requests on 5xx and timeouts |
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from limiter import Limit, LimiterSettings
from limiter.models import validate_bucket
from limiter.settings import aws_endpoint, table_name


class SettingsError(ValueError):
    """An environment variable has a value the processor cannot use."""


@dataclass(frozen=True)
class EndpointBucket:
    """Calls matching `method` and `path` (with `{param}` placeholders) also take from `bucket`."""

    method: str
    path: str
    bucket: str
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, spec: str, bucket: str) -> EndpointBucket:
        method, _, path = spec.strip().partition(" ")
        if not method.isalpha() or not path.startswith("/"):
            raise SettingsError(
                f"RATEBRIDGE_ENDPOINT_BUCKETS key {spec!r} must look like "
                "'GET /api/v2/users/{id}'"
            )
        regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path.rstrip("/")))
        return cls(method.upper(), path, validate_bucket(bucket), re.compile(regex + "/?"))

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method and self.pattern.fullmatch(path) is not None


@dataclass(frozen=True)
class GenesysSettings:
    """Where Genesys is, who we are to it, and how politely we call it."""

    region: str = "us_east_1"
    api_base_url: str | None = None
    credentials_secret: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    bucket: str = "genesys"
    token_bucket: str = "genesys-oauth"  # noqa: S105 - a bucket name, not a password
    endpoint_buckets: tuple[EndpointBucket, ...] = ()
    # Installed when the bucket has no limit yet (never over an operator's).
    default_limit: Limit | None = None
    token_default_limit: Limit | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 3


@dataclass(frozen=True)
class Settings:
    """The processor's whole configuration."""

    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    genesys: GenesysSettings = field(default_factory=GenesysSettings)
    tokens_table: str = "ratebridge-tokens"
    interactions_table: str = "ratebridge-interactions"
    presence_table: str = "ratebridge-presence"
    idempotency_table: str = "ratebridge-idempotency"
    max_wait_seconds: float = 20.0
    dlq_url: str | None = None
    max_receive_count: int = 3
    max_defer_seconds: int = 900
    max_deferrals: int = 50
    retry_backoff_seconds: float = 5.0
    # Genesys retries delivery for up to 4 days: remember event ids longer.
    idempotency_ttl_seconds: int = 5 * 86_400
    max_body_bytes: int = 262_144
    secretsmanager_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the variables in the module docstring; `SettingsError` names a bad one."""
        env = os.environ if environ is None else environ
        defaults = cls()
        genesys_defaults = GenesysSettings()

        def table(variable: str, default: str) -> str:
            return table_name(variable, env.get(variable, default))

        genesys = GenesysSettings(
            region=env.get("GENESYS_REGION", genesys_defaults.region),
            api_base_url=env.get("GENESYS_API_BASE_URL") or None,
            credentials_secret=env.get("GENESYS_CREDENTIALS_SECRET") or None,
            client_id=env.get("GENESYS_CLIENT_ID") or None,
            client_secret=env.get("GENESYS_CLIENT_SECRET") or None,
            bucket=_bucket(env, "RATEBRIDGE_GENESYS_BUCKET", genesys_defaults.bucket),
            token_bucket=_bucket(env, "RATEBRIDGE_TOKEN_BUCKET", genesys_defaults.token_bucket),
            endpoint_buckets=_endpoint_buckets(env.get("RATEBRIDGE_ENDPOINT_BUCKETS", "")),
            default_limit=_limit(env, "RATEBRIDGE_GENESYS_LIMIT"),
            token_default_limit=_limit(env, "RATEBRIDGE_TOKEN_LIMIT"),
            connect_timeout=_positive(
                env, "GENESYS_CONNECT_TIMEOUT", genesys_defaults.connect_timeout
            ),
            read_timeout=_positive(env, "GENESYS_READ_TIMEOUT", genesys_defaults.read_timeout),
            max_attempts=int(_positive(env, "GENESYS_MAX_ATTEMPTS", genesys_defaults.max_attempts)),
        )
        if genesys.api_base_url and not re.fullmatch(r"https?://[^/\s]+/?", genesys.api_base_url):
            raise SettingsError(
                f"GENESYS_API_BASE_URL={genesys.api_base_url!r} must be a scheme and host, "
                "like https://api.mypurecloud.ie or http://127.0.0.1:8901"
            )
        return cls(
            limiter=LimiterSettings.from_env(env),
            genesys=genesys,
            tokens_table=table("RATEBRIDGE_TOKENS_TABLE", defaults.tokens_table),
            interactions_table=table("RATEBRIDGE_INTERACTIONS_TABLE", defaults.interactions_table),
            presence_table=table("RATEBRIDGE_PRESENCE_TABLE", defaults.presence_table),
            idempotency_table=table("RATEBRIDGE_IDEMPOTENCY_TABLE", defaults.idempotency_table),
            max_wait_seconds=_positive(
                env, "RATEBRIDGE_MAX_WAIT_SECONDS", defaults.max_wait_seconds
            ),
            dlq_url=env.get("RATEBRIDGE_DLQ_URL") or None,
            max_receive_count=_whole(
                env, "RATEBRIDGE_MAX_RECEIVE_COUNT", defaults.max_receive_count, 1, 1000
            ),
            max_defer_seconds=_whole(
                env, "RATEBRIDGE_MAX_DEFER_SECONDS", defaults.max_defer_seconds, 0, 43_200
            ),
            max_deferrals=_whole(
                env, "RATEBRIDGE_MAX_DEFERRALS", defaults.max_deferrals, 1, 100_000
            ),
            retry_backoff_seconds=_positive(
                env, "RATEBRIDGE_RETRY_BACKOFF_SECONDS", defaults.retry_backoff_seconds
            ),
            idempotency_ttl_seconds=_whole(
                env,
                "RATEBRIDGE_IDEMPOTENCY_TTL_SECONDS",
                defaults.idempotency_ttl_seconds,
                60,
                366 * 86_400,
            ),
            max_body_bytes=_whole(
                env, "RATEBRIDGE_MAX_BODY_BYTES", defaults.max_body_bytes, 1024, 1_048_576
            ),
            secretsmanager_endpoint_url=aws_endpoint(env, "SECRETSMANAGER"),
            sqs_endpoint_url=aws_endpoint(env, "SQS"),
        )


def _bucket(env: Mapping[str, str], variable: str, default: str) -> str:
    value = env.get(variable, default)
    try:
        return validate_bucket(value)
    except ValueError as exc:
        raise SettingsError(f"{variable}: {exc}") from exc


def _limit(env: Mapping[str, str], variable: str) -> Limit | None:
    raw = env.get(variable, "").strip()
    if not raw:
        return None
    parts = raw.split("/")
    try:
        if len(parts) not in (2, 3):
            raise ValueError("expected two or three numbers")
        requests, per_seconds = int(parts[0]), float(parts[1])
        burst = int(parts[2]) if len(parts) == 3 else 1
        return Limit(requests=requests, per_seconds=per_seconds, burst=burst)
    except ValueError as exc:
        raise SettingsError(
            f"{variable}={raw!r} must be REQUESTS/SECONDS[/BURST], like 300/60/3 ({exc})"
        ) from None


def _positive(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = env.get(variable)
    if raw is None or raw == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} must be a number") from None
    if not 0 < value < 86_400:
        raise SettingsError(f"{variable}={raw!r} must be above 0 and below 86400")
    return value


def _whole(env: Mapping[str, str], variable: str, default: int, low: int, high: int) -> int:
    raw = env.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{variable}={raw!r} must be a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{variable}={raw!r} must be between {low} and {high}")
    return value


def _endpoint_buckets(raw: str) -> tuple[EndpointBucket, ...]:
    if not raw.strip():
        return ()
    try:
        mapping = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"RATEBRIDGE_ENDPOINT_BUCKETS is not JSON: {exc}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise SettingsError(
            "RATEBRIDGE_ENDPOINT_BUCKETS must be a JSON object like "
            '{"GET /api/v2/users/{id}": "genesys-users"}'
        )
    try:
        return tuple(EndpointBucket.parse(spec, bucket) for spec, bucket in mapping.items())
    except ValueError as exc:
        raise SettingsError(f"RATEBRIDGE_ENDPOINT_BUCKETS: {exc}") from exc
