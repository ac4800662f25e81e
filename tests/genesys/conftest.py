"""Fixtures for the Genesys client: the emulator, a tokens table, a per-test client and buckets."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from limiter import Limiter, LimiterSettings
from ratebridge_tools.emulator import EmulatorServer, RequestRecord
from ratebridge_tools.servers import LOCAL_AWS_ENV, LocalServer
from tests.support.genesys import build_limiter, find_leaks


@dataclass
class Stack:
    """Everything one test's Genesys client uses, and how to look at it."""

    env: dict[str, str]
    emulator: EmulatorServer
    limiter: Limiter
    bucket: str
    token_bucket: str
    client_secret: str

    def token_requests(self) -> int:
        return sum(1 for r in self.emulator.requests() if r.path == "/oauth/token")

    def api_requests(self) -> list[RequestRecord]:
        return [r for r in self.emulator.requests() if r.path.startswith("/api/")]


@pytest.fixture
def stack(
    backend: LocalServer,
    limiter_settings: LimiterSettings,
    tokens_table: str,
    emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[Stack]:
    """A fresh OAuth client on a reset emulator, fresh buckets (generous limits:
    tests tighten them), and, after the test, a scan of every log line and
    everything printed (child processes included) for the secret and tokens."""
    emulator.reset(config=True)
    suffix = uuid.uuid4().hex[:10]
    client_id, client_secret = f"client-{suffix}", f"secret-{uuid.uuid4().hex}"
    emulator.configure(clients={client_id: client_secret})
    bucket, token_bucket = f"genesys-{suffix}", f"genesys-oauth-{suffix}"
    env = {
        **LOCAL_AWS_ENV,
        "AWS_ENDPOINT_URL": backend.url,
        "RATEBRIDGE_BUCKETS_TABLE": limiter_settings.buckets_table,
        "RATEBRIDGE_LIMITS_TABLE": limiter_settings.limits_table,
        "RATEBRIDGE_TOKENS_TABLE": tokens_table,
        "RATEBRIDGE_GENESYS_BUCKET": bucket,
        "RATEBRIDGE_TOKEN_BUCKET": token_bucket,
        "GENESYS_API_BASE_URL": emulator.url,
        "GENESYS_CLIENT_ID": client_id,
        "GENESYS_CLIENT_SECRET": client_secret,
        "GENESYS_READ_TIMEOUT": "5",
    }
    limiter = build_limiter(env)
    limiter.set_limit(bucket, requests=1000, per_seconds=1, burst=50)
    limiter.set_limit(token_bucket, requests=10, per_seconds=60, burst=5)
    caplog.set_level(logging.DEBUG, logger="processor")
    caplog.set_level(logging.DEBUG, logger="limiter")
    caplog.set_level(logging.INFO)
    yield Stack(env, emulator, limiter, bucket, token_bucket, client_secret)
    out, err = capfd.readouterr()
    token_ids = {r.token_id for r in emulator.requests() if r.token_id}
    texts = [caplog.text, out, err, emulator.log_tail(lines=100_000)]
    leaks = find_leaks(texts, [client_secret], token_ids)
    assert leaks == [], leaks
