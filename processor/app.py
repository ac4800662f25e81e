"""The processor's dependencies, built once per container from `Settings`.

Everything is injectable, so tests build an `App` on local servers and the
handler builds one from the environment on its first invocation.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable
from typing import Any

import boto3
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from limiter.dynamodb import dynamodb_client
from processor.events import GenesysEnvelope
from processor.observability import MetricsRecorder
from processor.queue import QueueOps
from processor.routes import Deps, Genesys, Outcome, Route
from processor.settings import Settings
from processor.store.interactions import InteractionStore
from processor.store.presence import PresenceStore

# Set by the route runner when it really runs, so a result returned from the
# idempotency store (a duplicate) can be told apart from fresh work.
_executed: contextvars.ContextVar[bool] = contextvars.ContextVar("route_executed", default=False)


class App:
    """Stores, Genesys client (created on first use: the SDK takes seconds to
    import), idempotency, SQS operations and metrics for one container."""

    def __init__(
        self,
        settings: Settings,
        *,
        genesys_factory: Callable[[], Genesys] | None = None,
        dynamodb: Any = None,
        sqs: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        region = settings.limiter.region
        host = settings.limiter.endpoint_url
        self.recorder = MetricsRecorder()
        self._dynamodb = dynamodb or dynamodb_client(region=region, endpoint_url=host)
        self.deps = Deps(
            genesys_factory=genesys_factory or self._build_genesys,
            interactions=InteractionStore(
                settings.interactions_table, host=host, region=region, clock=clock
            ),
            presence=PresenceStore(settings.presence_table, host=host, region=region, clock=clock),
        )
        self.queue = QueueOps(
            sqs
            or boto3.session.Session().client(
                "sqs", region_name=region, endpoint_url=settings.sqs_endpoint_url
            ),
            settings.dlq_url,
        )
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="id",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.idempotency_ttl_seconds,
        )
        self.persistence = DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=self._dynamodb
        )
        # The same event id delivered twice (two SQS messages, or a redrive)
        # runs its route once; the second gets the first one's result.
        self._run_once = idempotent_function(
            data_keyword_argument="event",
            persistence_store=self.persistence,
            config=self.idempotency,
            key_prefix="genesys-event",
        )(self._run)

    @classmethod
    def from_env(cls) -> App:
        return cls(Settings.from_env())

    def run_route(self, route: Route, envelope: GenesysEnvelope, body: Any) -> tuple[Outcome, bool]:
        """Run `route` once per event id. Returns its outcome and whether this was a
        duplicate (the route did not run: no Genesys call, no write)."""
        token = _executed.set(False)
        try:
            saved = self._run_once(
                event=envelope.model_dump(mode="json", by_alias=True),
                route=route,
                envelope=envelope,
                body=body,
            )
            duplicate = not _executed.get()
        finally:
            _executed.reset(token)
        return Outcome(**saved), duplicate

    def _run(
        self, *, event: dict[str, Any], route: Route, envelope: GenesysEnvelope, body: Any
    ) -> dict[str, Any]:
        _executed.set(True)
        outcome = route.handler(self.deps, envelope, body)
        return {
            "route": outcome.route,
            "status": outcome.status,
            "calls": outcome.calls,
            "note": outcome.note,
        }

    def _build_genesys(self) -> Genesys:
        from processor.genesys.client import GenesysClient

        return GenesysClient.from_settings(
            self.settings, dynamodb=self._dynamodb, observer=self.recorder
        )

    def create_tables(self) -> None:
        """The processor's own tables (local use and tests; in AWS the stack makes them)."""
        self.deps.interactions.create_table()
        self.deps.presence.create_table()
        client = self._dynamodb
        with contextlib.suppress(client.exceptions.ResourceInUseException):
            client.create_table(
                TableName=self.settings.idempotency_table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        client.get_waiter("table_exists").wait(
            TableName=self.settings.idempotency_table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
