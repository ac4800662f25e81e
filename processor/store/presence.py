"""The presence table: one item per user, the latest presence and the one before it.

Item (key `userId`): presence, previousPresence, userName, changedAt (epoch
ms), source, lastEventId, eventsApplied, updatedAt. An event older than (or
as old as) the stored one changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException, UpdateError
from pynamodb.models import Model

from processor.domain import PresenceChange
from processor.errors import RetriableRecordError


def presence_model(table: str, host: str | None, region: str | None) -> type[Model]:
    class Presence(Model):
        class Meta:
            table_name = table
            billing_mode = "PAY_PER_REQUEST"
            connect_timeout_seconds = 2
            read_timeout_seconds = 3
            max_retry_attempts = 2

        userId = UnicodeAttribute(hash_key=True)
        presence = UnicodeAttribute(null=True)
        previousPresence = UnicodeAttribute(null=True)
        userName = UnicodeAttribute(null=True)
        changedAt = NumberAttribute(null=True)
        source = UnicodeAttribute(null=True)
        lastEventId = UnicodeAttribute(null=True)
        eventsApplied = NumberAttribute(null=True)
        updatedAt = NumberAttribute(null=True)

    Presence.Meta.host = host  # type: ignore[attr-defined]
    Presence.Meta.region = region or "us-east-1"  # type: ignore[attr-defined]
    return Presence


class PresenceStore:
    """Applies `PresenceChange`s; raises `RetriableRecordError` when DynamoDB fails."""

    def __init__(
        self,
        table: str,
        *,
        host: str | None = None,
        region: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model: Any = presence_model(table, host, region)
        self._clock = clock

    def apply(self, change: PresenceChange) -> bool:
        """Store `change` if it is newer than the stored one. True if it was stored."""
        m = self.model
        if change.previous_presence is not None:
            previous = m.previousPresence.set(change.previous_presence)
        else:  # the event does not say: the presence we had is the previous one
            previous = m.previousPresence.set(m.presence | "unknown")
        actions = [
            previous,
            m.presence.set(change.presence),
            m.changedAt.set(change.changed_at),
            m.source.set(change.source),
            m.lastEventId.set(change.event_id),
            m.eventsApplied.add(1),
            m.updatedAt.set(round(self._clock() * 1000)),
        ]
        if change.user_name is not None:
            actions.append(m.userName.set(change.user_name))
        newer = m.changedAt.does_not_exist() | (m.changedAt < change.changed_at)
        try:
            m(change.user_id).update(actions=actions, condition=newer)
            return True
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise RetriableRecordError(
                "store-unavailable", f"presence table: {exc.cause_response_code}"
            ) from None
        except PynamoDBException as exc:
            raise RetriableRecordError("store-unavailable", f"presence table: {exc}") from None

    def get(self, user_id: str) -> dict[str, Any] | None:
        try:
            item = self.model.get(user_id, consistent_read=True)
        except self.model.DoesNotExist:
            return None
        return dict(item.to_simple_dict())

    def all(self) -> dict[str, dict[str, Any]]:
        """Every item as a plain dict, by user id (one Scan: for checks and tools)."""
        return {
            item.userId: dict(item.to_simple_dict())
            for item in self.model.scan(consistent_read=True)
        }

    def create_table(self) -> None:
        if not self.model.exists():
            self.model.create_table(wait=True)
