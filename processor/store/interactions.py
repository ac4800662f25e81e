"""The interactions table: one item per conversation, merged from its events.

Item (key `conversationId`): mediaType, direction, provider,
externalContactId, queueId, startedAt, endedAt, durationMs (epoch ms),
agents (list of {userId, name}), enriched, lastEventId, lastEventTime,
eventIds (the events applied: each is applied once), eventsApplied (how
many: a double application would show), updatedAt.

Never regresses: shared fields are set only if missing (if_not_exists);
`startedAt` is the customer.start event's time (Genesys's conversation start
fills it only until that event arrives); the end fields come only from end
events; `lastEventId` moves only to a newer event. So events applied in any
order, end before start included, give the same item.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.models import Model

from processor.domain import InteractionUpdate
from processor.errors import RetriableRecordError


class Applied(enum.Enum):
    LATEST = "latest"
    OLDER = "older"
    ALREADY = "already"


class AgentMap(MapAttribute[str, Any]):
    userId = UnicodeAttribute()
    name = UnicodeAttribute(null=True)


def interaction_model(table: str, host: str | None, region: str | None) -> type[Model]:
    """A PynamoDB model bound to `table` at `host` (None: AWS)."""

    class Interaction(Model):
        class Meta:
            table_name = table
            billing_mode = "PAY_PER_REQUEST"
            connect_timeout_seconds = 2
            read_timeout_seconds = 3
            max_retry_attempts = 2

        conversationId = UnicodeAttribute(hash_key=True)
        mediaType = UnicodeAttribute(null=True)
        direction = UnicodeAttribute(null=True)
        provider = UnicodeAttribute(null=True)
        externalContactId = UnicodeAttribute(null=True)
        queueId = UnicodeAttribute(null=True)
        startedAt = NumberAttribute(null=True)
        endedAt = NumberAttribute(null=True)
        durationMs = NumberAttribute(null=True)
        agents = ListAttribute(of=AgentMap, null=True)
        enriched = BooleanAttribute(null=True)
        lastEventId = UnicodeAttribute(null=True)
        lastEventTime = NumberAttribute(null=True)
        eventsApplied = NumberAttribute(null=True)
        eventIds = UnicodeSetAttribute(null=True)
        updatedAt = NumberAttribute(null=True)

    Interaction.Meta.host = host  # type: ignore[attr-defined]
    Interaction.Meta.region = region or "us-east-1"  # type: ignore[attr-defined]
    return Interaction


class InteractionStore:
    """Applies `InteractionUpdate`s; raises `RetriableRecordError` when DynamoDB fails."""

    def __init__(
        self,
        table: str,
        *,
        host: str | None = None,
        region: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model: Any = interaction_model(table, host, region)
        self._clock = clock

    def apply(self, update: InteractionUpdate) -> Applied:
        """Merge `update` into its conversation's item, once per event id: LATEST if
        it became the latest event, OLDER if an older one (its own fields still
        merge), ALREADY if this event id was applied before (nothing written)."""
        m = self.model
        actions = [m.eventsApplied.add(1), m.updatedAt.set(round(self._clock() * 1000))]
        for attr, value in (
            (m.mediaType, update.media_type),
            (m.direction, update.direction),
            (m.provider, update.provider),
            (m.externalContactId, update.external_contact_id),
            (m.queueId, update.queue_id),
            (m.startedAt, update.fallback_started_at),
        ):
            if value is not None:
                actions.append(attr.set(attr | value))  # if_not_exists: first writer wins
        for attr, value in (
            (m.startedAt, update.started_at),  # only start events carry it
            (m.endedAt, update.ended_at),  # only end events carry these
            (m.durationMs, update.duration_ms),
        ):
            if value is not None:
                actions.append(attr.set(value))
        if update.agents is not None:
            actions.append(
                m.agents.set(
                    [AgentMap(userId=a.user_id, name=a.name) for a in update.agents]  # type: ignore[no-untyped-call]
                )
            )
        if update.enriched:
            actions.append(m.enriched.set(True))
        actions.append(m.eventIds.add({update.event_id}))
        item = m(update.conversation_id)
        # The write is idempotent on the event id by itself: a worker that dies
        # after this write but before the idempotency record says "done" gets
        # the event again, and must not apply it twice.
        fresh = ~m.eventIds.contains(update.event_id)
        newer = m.lastEventTime.does_not_exist() | (m.lastEventTime <= update.event_time)
        latest = [m.lastEventId.set(update.event_id), m.lastEventTime.set(update.event_time)]
        try:
            if self._try(item, actions + latest, fresh & newer):
                return Applied.LATEST
            if self._try(item, actions, fresh):  # an older event: its own fields only
                return Applied.OLDER
            return Applied.ALREADY
        except PynamoDBException as exc:
            raise RetriableRecordError(
                "store-unavailable", f"interactions table: {exc.cause_response_code or exc}"
            ) from None

    @staticmethod
    def _try(item: Any, actions: list[Any], condition: Any) -> bool:
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def get(self, conversation_id: str) -> dict[str, Any] | None:
        """The item as a plain dict, or None."""
        try:
            item = self.model.get(conversation_id, consistent_read=True)
        except self.model.DoesNotExist:
            return None
        return _as_dict(item)

    def all(self) -> dict[str, dict[str, Any]]:
        """Every item as a plain dict, by conversation id (one Scan: for checks and tools)."""
        return {
            item.conversationId: _as_dict(item) for item in self.model.scan(consistent_read=True)
        }

    def create_table(self) -> None:
        if not self.model.exists():
            self.model.create_table(wait=True)


def _as_dict(item: Any) -> dict[str, Any]:
    return {name: _plain(value) for name, value in item.attribute_values.items()}


def _plain(value: Any) -> Any:
    """An attribute value as plain Python (sets sorted into lists, maps into dicts)."""
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, MapAttribute):
        fields = value.as_dict()  # type: ignore[no-untyped-call]
        return {k: _plain(v) for k, v in fields.items()}
    return value
