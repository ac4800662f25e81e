"""Genesys events as they arrive: EventBridge envelopes and their event bodies (wire models).

Validated strictly enough that a bad record fails with a clear reason, and no
more strictly than real envelopes need (moto's EventBridge-to-SQS delivery
drops `account`, so it is optional). Ids that end up in URLs are UUIDs.
See ../shared/samples/genesys-events/ (in the design repo) for real examples.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
GenesysId = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
ShortText = Annotated[str, StringConstraints(max_length=512)]
EPOCH_MS_MAX = 32_503_680_000_000  # year 3000


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class GenesysDetail(Model):
    topicName: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    version: ShortText | None = None
    eventBody: dict[str, Any]
    metadata: dict[str, Any] | None = None
    timestamp: ShortText | None = None


class GenesysEnvelope(Model):
    """An EventBridge event from the Genesys Cloud integration."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    detail_type: ShortText = Field(alias="detail-type")
    source: ShortText
    account: ShortText | None = None
    time: ShortText | None = None
    region: ShortText | None = None
    detail: GenesysDetail

    @property
    def topic(self) -> str:
        return self.detail.topicName

    @property
    def correlation_id(self) -> str | None:
        value = (self.detail.metadata or {}).get("CorrelationId")
        return value if isinstance(value, str) else None


class ConversationCustomerBody(Model):
    """`v2.detail.events.conversation.{id}.customer.start|end`"""

    eventTime: Annotated[int, Field(ge=0, le=EPOCH_MS_MAX)]
    conversationId: GenesysId
    participantId: ShortText | None = None
    sessionId: ShortText | None = None
    mediaType: ShortText | None = None
    provider: ShortText | None = None
    direction: ShortText | None = None
    externalContactId: ShortText | None = None
    externalOrganizationId: ShortText | None = None
    interactingDurationMs: Annotated[int, Field(ge=0, le=EPOCH_MS_MAX)] | None = None


class AuditEntity(Model):
    id: GenesysId
    name: ShortText | None = None


class PropertyChange(Model):
    property: ShortText
    oldValues: list[ShortText] = []
    newValues: list[ShortText] = []


class AuditPresenceBody(Model):
    """`v2.audits.entitytype.UserPresence.entityid.{id}`"""

    eventTime: datetime
    entityType: ShortText
    entity: AuditEntity
    propertyChanges: list[PropertyChange] = []


class PresenceDefinition(Model):
    id: ShortText | None = None
    systemPresence: ShortText


class UserPresenceBody(Model):
    """`v2.users.{id}.presence`"""

    presenceDefinition: PresenceDefinition
    modifiedDate: datetime
    source: ShortText | None = None
    message: ShortText | None = None


def topic_pattern(template: str) -> re.Pattern[str]:
    """A regex for a topic template: each `{id}` matches one dot-free segment."""
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile("[^.]+".join(re.escape(p) for p in parts))
