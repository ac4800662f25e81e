"""The tutorial's Lambda handler: the demo's `--strategy seed`, run on the same load.

Handler path `ratebridge_tools.seed_handler.lambda_handler`. It does the same
work per event as ratebridge's handler (the same routes, the same Genesys
calls, the same record stores), the way the tutorial the project grew out of
does it (DESIGN.md, "Where this comes from"):

- Genesys through `bench.seed.SeedGenesys`: a token per container from the
  SDK's login (its lifetime guessed at 1 h), each call retrying a 429 up to 3
  times while sleeping `Retry-After * 2**attempt` inside the invocation, and
  no shared limiter: concurrency is the only control;
- no partial batch response: the first record that fails raises, so the
  whole batch fails and every record in it comes back, to the DLQ after
  maxReceiveCount receives, with no reason attached;
- no idempotency: a redelivered event calls Genesys again. (The record
  stores ignore an event id they already applied, so the records end the
  same; only the calls are repeated.)

It prints the same EMF route metrics as ratebridge's handler (Processed,
Skipped), so the demo's report reads both the same way.
"""

from __future__ import annotations

import contextlib
from typing import Any

from PureCloudPlatformClientV2.rest import ApiException

from processor.events import GenesysEnvelope
from processor.genesys.credentials import load_credentials
from processor.genesys.errors import HttpFailure, NotFound
from processor.genesys.region import api_base_url
from processor.observability import MetricsRecorder
from processor.routes import Deps, match
from processor.settings import Settings
from processor.store.interactions import InteractionStore
from processor.store.presence import PresenceStore
from ratebridge_tools.bench.seed import SeedGenesys


class SeedRoutes:
    """`processor.routes.Genesys` over the seed client: a 404 is the routes' NotFound,
    and there is no pacing (no limiter to reserve slots from)."""

    def __init__(self, seed: SeedGenesys) -> None:
        self._seed = seed

    def get_conversation(self, conversation_id: str) -> Any:
        return self._not_found(self._seed.get_conversation, conversation_id)

    def get_user(self, user_id: str, *, expand: tuple[str, ...] = ()) -> Any:
        return self._not_found(self._seed.get_user, user_id)

    def paced(self, calls: int, method: str, path: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    @staticmethod
    def _not_found(call: Any, entity_id: str) -> Any:
        try:
            return call(entity_id)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound("404", HttpFailure(404)) from None
            raise


_deps: Deps | None = None
_recorder = MetricsRecorder()


def _build() -> Deps:
    settings = Settings.from_env()
    host, region = settings.limiter.endpoint_url, settings.limiter.region
    credentials = load_credentials(settings.genesys, None)
    seed = SeedGenesys(api_base_url(settings.genesys), credentials)
    return Deps(
        genesys_factory=lambda: SeedRoutes(seed),
        interactions=InteractionStore(settings.interactions_table, host=host, region=region),
        presence=PresenceStore(settings.presence_table, host=host, region=region),
    )


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    """Every record in order; the first failure fails the whole batch (it raises)."""
    global _deps  # noqa: PLW0603 - one set of clients per container, as in the tutorial
    if _deps is None:
        _deps = _build()
    try:
        for record in event["Records"]:
            envelope = GenesysEnvelope.model_validate_json(record["body"])
            route = match(envelope.topic)
            if route is None:
                _recorder.route("unrouted", "Skipped")
                continue
            route.handler(_deps, envelope, route.parse_body(envelope))
            _recorder.route(route.name, "Processed")
    finally:
        _recorder.flush()
