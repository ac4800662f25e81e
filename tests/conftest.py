"""Fixtures shared by every test: real local servers on loopback, one backend list.

Every storage test runs on every backend in `BACKENDS` (moto server and
dynalite, two independent DynamoDB implementations), each started once per
session as a child process on a free 127.0.0.1 port.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from limiter import Limiter, LimiterSettings
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from processor.genesys.token_store import TokenStore
from ratebridge_tools.emulator import EmulatorServer, start_emulator
from ratebridge_tools.servers import LOCAL_AWS_ENV, LocalServer, start_backend

BACKENDS = ("moto", "dynalite")
# Real-time soaks marked `one_backend_by_default` run on this backend in the
# default profile and on every backend with `scripts/test --long`.
DEFAULT_SOAK_BACKEND = "dynalite"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("one_backend_by_default") is None:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") != DEFAULT_SOAK_BACKEND:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _local_aws_env() -> Iterator[None]:
    """Placeholder credentials and a region; no test may reach real AWS."""
    saved = {k: os.environ.get(k) for k in [*LOCAL_AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(LOCAL_AWS_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """A DynamoDB-compatible server: each dependent test runs once per backend."""
    server = start_backend(request.param)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def limiter_settings(backend: LocalServer) -> LimiterSettings:
    """The limiter's two tables, created once per backend."""
    suffix = uuid.uuid4().hex[:8]
    settings = LimiterSettings(
        buckets_table=f"rb-buckets-{suffix}", limits_table=f"rb-limits-{suffix}"
    )
    store = DynamoDBStore(
        buckets_table=settings.buckets_table,
        limits_table=settings.limits_table,
        client=dynamodb_client(region="us-east-1", endpoint_url=backend.url),
    )
    store.create_tables()
    return settings


@pytest.fixture
def bucket() -> str:
    """A bucket name no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The Genesys emulator as a child process, access log on (tests scan it for secrets)."""
    server = start_emulator(access_log=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tokens_table(backend: LocalServer) -> str:
    """The shared-token table, created once per backend."""
    name = f"rb-tokens-{uuid.uuid4().hex[:8]}"
    TokenStore(name, dynamodb_client(region="us-east-1", endpoint_url=backend.url)).create_table()
    return name


MakeLimiter = Callable[..., Limiter]


@pytest.fixture
def make_limiter(backend: LocalServer, limiter_settings: LimiterSettings) -> MakeLimiter:
    """Build a Limiter on the current backend: each call is a fresh "container".

    Keyword arguments go to `Limiter` (clock, sleep, ...); `client=` or
    `endpoint_url=` replace the connection (e.g. to go through a fault proxy).
    """

    def make(*, client: Any = None, endpoint_url: str | None = None, **kwargs: Any) -> Limiter:
        if client is None:
            client = dynamodb_client(region="us-east-1", endpoint_url=endpoint_url or backend.url)
        store = DynamoDBStore(
            buckets_table=limiter_settings.buckets_table,
            limits_table=limiter_settings.limits_table,
            client=client,
        )
        return Limiter(store, **kwargs)

    return make
