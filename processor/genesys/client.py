"""The Genesys client: the real SDK (`PureCloudPlatformClientV2`) over ratebridge's transport.

    client = GenesysClient.from_settings(Settings.from_env())
    with client.deadline(time.time() + 20):
        user = client.get_user("278522be-1683-4877-8257-4164a177be89")

Importing the SDK takes seconds (it loads ~6,700 model modules), so this
module is imported only where a client is built.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import PureCloudPlatformClientV2 as sdk

from limiter import Limiter, LimiterError, RateLimited
from limiter.dynamodb import dynamodb_client
from processor.genesys import transport
from processor.genesys.credentials import load_credentials
from processor.genesys.errors import (
    PermanentGenesysError,
    PermissionTimeout,
    PermissionUnavailable,
)
from processor.genesys.http import pool
from processor.genesys.oauth import TokenEndpoint
from processor.genesys.region import api_base_url, login_base_url
from processor.genesys.token import SharedToken
from processor.genesys.token_store import TokenStore
from processor.settings import Settings

log = logging.getLogger(__name__)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class InvalidId(PermanentGenesysError, ValueError):
    """An id that is not a UUID never reaches a URL."""


def genesys_id(value: object, what: str = "id") -> str:
    """`value` if it is a Genesys id (a UUID), else `InvalidId`."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        shown = repr(value)[:60]
        raise InvalidId(f"{what} must be a UUID, got {shown}")
    return value


def _install_defaults(limiter: Limiter, settings: Settings) -> None:
    """Give the buckets their deploy-time limits if nobody configured one. A
    failure here is only logged: the first acquire then fails closed as usual."""
    g = settings.genesys
    for bucket, default in ((g.bucket, g.default_limit), (g.token_bucket, g.token_default_limit)):
        if default is None:
            continue
        try:
            limiter.ensure_limit(bucket, default.requests, default.per_seconds, default.burst)
        except LimiterError as exc:
            log.warning("could not check bucket %r for a default limit: %s", bucket, exc)


class GenesysClient:
    """Typed calls to the Genesys endpoints ratebridge uses, through the SDK."""

    def __init__(self, api_client: Any, http: transport.RateLimitedTransport, token: SharedToken):
        self.api_client = api_client
        self.transport = http
        self.token = token
        self._users = sdk.UsersApi(api_client)
        self._conversations = sdk.ConversationsApi(api_client)
        self._routing = sdk.RoutingApi(api_client)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        limiter: Limiter | None = None,
        dynamodb: Any = None,
        secrets: Any = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        observer: transport.Observer | None = None,
        max_connections: int = 16,
    ) -> GenesysClient:
        """Build the whole stack from settings. Clients may be injected (tests, local runs).

        Raises `CredentialsMissing`, `SettingsError`, or `TokenUnavailable`
        when Secrets Manager cannot be read.
        """
        g = settings.genesys
        api_url = api_base_url(g)
        if secrets is None and g.credentials_secret:
            secrets = boto3.session.Session().client(
                "secretsmanager",
                region_name=settings.limiter.region,
                endpoint_url=settings.secretsmanager_endpoint_url,
            )
        credentials = load_credentials(g, secrets)
        limiter = limiter or Limiter.from_env(settings.limiter, clock=clock, sleep=sleep)
        _install_defaults(limiter, settings)
        http = pool(max_connections)
        endpoint = TokenEndpoint(
            login_url=login_base_url(api_url),
            credentials=credentials,
            http=http,
            limiter=limiter,
            bucket=g.token_bucket,
            connect_timeout=g.connect_timeout,
            read_timeout=g.read_timeout,
            clock=clock,
        )
        store = TokenStore(
            settings.tokens_table,
            dynamodb
            or dynamodb_client(
                region=settings.limiter.region, endpoint_url=settings.limiter.endpoint_url
            ),
        )
        token = SharedToken(
            store, endpoint, key=f"genesys-token#{credentials.client_id}", clock=clock, sleep=sleep
        )
        rate_limited = transport.RateLimitedTransport(
            limiter=limiter,
            token=token,
            bucket=g.bucket,
            endpoint_buckets=g.endpoint_buckets,
            http=http,
            connect_timeout=g.connect_timeout,
            read_timeout=g.read_timeout,
            max_attempts=g.max_attempts,
            default_budget=settings.max_wait_seconds + g.read_timeout,
            max_permit_wait=settings.max_wait_seconds,
            clock=clock,
            sleep=sleep,
            observer=observer,
        )
        api_client = sdk.ApiClient(host=api_url)
        api_client.set_http_client(rate_limited)
        return cls(api_client, rate_limited, token)

    @staticmethod
    def deadline(at: float) -> contextlib.AbstractContextManager[None]:
        """Every request made inside the block must be done by epoch second `at`."""
        return transport.deadline(at)

    @contextlib.contextmanager
    def paced(self, calls: int, method: str, path: str) -> Iterator[None]:
        """Reserve `calls` slots for `method path` calls in one limiter write, and
        spend them on the calls made inside the block.

        Only when the calls are certain and need only the client-wide bucket
        (no per-endpoint bucket matches); otherwise each call asks as usual.
        Slots left unused when the block ends (an error) are not returned.
        Raises `PermissionTimeout` if the last slot would come after the deadline.
        """
        bucket = self.transport.bucket
        if calls < 2 or self.transport.buckets_for(method, path) != (bucket,):
            yield
            return
        budget = self.transport.permit_budget()
        try:
            schedule = self.transport.limiter.reserve(bucket, calls, timeout=max(0.0, budget))
        except RateLimited as exc:
            raise PermissionTimeout(
                f"no {calls} permits on {bucket!r} within the time left ({exc.reason})",
                retry_after=exc.retry_after,
            ) from None
        except LimiterError as exc:
            raise PermissionUnavailable(f"rate limiter unavailable: {exc}") from None
        with transport.prepaid(schedule.slots_us):
            yield

    def get_user(self, user_id: str, *, expand: tuple[str, ...] = ()) -> Any:
        """GET /api/v2/users/{userId} -> `User`. Raises the errors of `processor.genesys.errors`."""
        kwargs = {"expand": list(expand)} if expand else {}
        return self._users.get_user(genesys_id(user_id, "user id"), **kwargs)

    def get_conversation(self, conversation_id: str) -> Any:
        """GET /api/v2/conversations/{conversationId} -> `Conversation`."""
        return self._conversations.get_conversation(genesys_id(conversation_id, "conversation id"))

    def get_routing_queue(self, queue_id: str) -> Any:
        """GET /api/v2/routing/queues/{queueId} -> `Queue`."""
        return self._routing.get_routing_queue(genesys_id(queue_id, "queue id"))
