"""Routes: which Genesys topics the processor handles, and how. Adding one is one
function and one pattern:

    @route("queue-observed", "v2.routing.queues.{id}.conversations", body=QueueBody)
    def queue_observed(deps: Deps, event: GenesysEnvelope, body: QueueBody) -> Outcome: ...

A route turns a validated event into domain updates, calling Genesys through
`deps.genesys` (every call rate-limited) and writing through the stores.
Topics that match no route are skipped and counted, never failed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from processor.domain import Agent, InteractionUpdate, PresenceChange
from processor.errors import PermanentRecordError
from processor.events import (
    UUID_PATTERN,
    AuditPresenceBody,
    ConversationCustomerBody,
    GenesysEnvelope,
    UserPresenceBody,
    topic_pattern,
)
from processor.genesys.errors import NotFound
from processor.store.interactions import Applied, InteractionStore
from processor.store.presence import PresenceStore


class Genesys(Protocol):
    """What routes need from Genesys (`processor.genesys.client.GenesysClient`)."""

    def get_conversation(self, conversation_id: str) -> Any: ...
    def get_user(self, user_id: str, *, expand: tuple[str, ...] = ()) -> Any: ...
    def paced(
        self, calls: int, method: str, path: str
    ) -> contextlib.AbstractContextManager[None]: ...


@dataclass
class Deps:
    """What a route may use. `genesys` is created on first use (it imports the SDK)."""

    genesys_factory: Callable[[], Genesys]
    interactions: InteractionStore
    presence: PresenceStore
    _genesys: Genesys | None = None

    @property
    def genesys(self) -> Genesys:
        if self._genesys is None:
            self._genesys = self.genesys_factory()
        return self._genesys


@dataclass(frozen=True)
class Outcome:
    """What a route did: `status` is "processed", "stale" (older than what is stored:
    nothing changed) or "skipped" (nothing to do)."""

    route: str
    status: str
    calls: int = 0
    note: str = ""


B = TypeVar("B", bound=BaseModel)
Handler = Callable[[Deps, GenesysEnvelope, Any], Outcome]


@dataclass(frozen=True)
class Route:
    name: str
    template: str
    pattern: re.Pattern[str]
    body: type[BaseModel]
    handler: Handler

    def parse_body(self, event: GenesysEnvelope) -> BaseModel:
        """The event body as this route's model; `PermanentRecordError` if it is not."""
        try:
            return self.body.model_validate(event.detail.eventBody)
        except ValidationError as exc:
            raise PermanentRecordError("invalid-body", describe_validation(exc)) from None


ROUTES: list[Route] = []


def route(name: str, *templates: str, body: type[B]) -> Callable[[Handler], Handler]:
    """Register `handler` for every topic template in `templates`."""

    def register(handler: Handler) -> Handler:
        for template in templates:
            ROUTES.append(Route(name, template, topic_pattern(template), body, handler))
        return handler

    return register


def match(topic: str) -> Route | None:
    """The route for a concrete topic name, or None."""
    for candidate in ROUTES:
        if candidate.pattern.fullmatch(topic):
            return candidate
    return None


# -- conversations -------------------------------------------------------------


@route(
    "conversation-customer-start",
    "v2.detail.events.conversation.{id}.customer.start",
    body=ConversationCustomerBody,
)
def customer_start(deps: Deps, event: GenesysEnvelope, body: ConversationCustomerBody) -> Outcome:
    """GET the conversation; record when and how it started."""
    conversation = _conversation(deps, body.conversationId)
    update = InteractionUpdate(
        **_from_event(event, body),
        started_at=body.eventTime,
        queue_id=_queue_id(conversation),
        enriched=conversation is not None,
    )
    # An older event still merges its own fields; only lastEventId stays put.
    applied = deps.interactions.apply(update)
    return Outcome("conversation-customer-start", _status(applied), calls=1)


@route(
    "conversation-customer-end",
    "v2.detail.events.conversation.{id}.customer.end",
    body=ConversationCustomerBody,
)
def customer_end(deps: Deps, event: GenesysEnvelope, body: ConversationCustomerBody) -> Outcome:
    """GET the conversation and each agent's user; record how it ended and who handled it."""
    conversation = _conversation(deps, body.conversationId)
    agent_ids = _agent_ids(conversation)
    agents: list[Agent] = []
    # The agent lookups are certain now: reserve them all in one limiter write.
    with deps.genesys.paced(len(agent_ids), "GET", "/api/v2/users/{id}"):
        for user_id in agent_ids:
            try:
                agents.append(Agent(user_id, deps.genesys.get_user(user_id).name))
            except NotFound:  # a deleted user: keep the id, not the name
                agents.append(Agent(user_id, None))
    started = _epoch_ms(getattr(conversation, "start_time", None))
    duration = body.interactingDurationMs
    if duration is None and started is not None:
        duration = max(0, body.eventTime - started)
    update = InteractionUpdate(
        **_from_event(event, body),
        fallback_started_at=started,
        ended_at=body.eventTime,
        duration_ms=duration,
        queue_id=_queue_id(conversation),
        agents=tuple(agents) if conversation is not None else None,
        enriched=conversation is not None,
    )
    applied = deps.interactions.apply(update)
    return Outcome("conversation-customer-end", _status(applied), calls=1 + len(agent_ids))


def _status(applied: Applied) -> str:
    # ALREADY: a retry after a crash between the write and the idempotency record.
    return "skipped" if applied is Applied.ALREADY else "processed"


def _conversation(deps: Deps, conversation_id: str) -> Any | None:
    try:
        return deps.genesys.get_conversation(conversation_id)
    except NotFound:  # gone from Genesys: keep what the event itself says
        return None


def _from_event(event: GenesysEnvelope, body: ConversationCustomerBody) -> dict[str, Any]:
    return {
        "conversation_id": body.conversationId,
        "event_id": event.id,
        "event_time": body.eventTime,
        "media_type": body.mediaType,
        "direction": body.direction,
        "provider": body.provider,
        "external_contact_id": body.externalContactId,
    }


def _agent_ids(conversation: Any | None) -> list[str]:
    if conversation is None:
        return []
    ids: list[str] = []
    for participant in conversation.participants or []:
        user_id = getattr(participant, "user_id", None)
        if participant.purpose != "agent" or not isinstance(user_id, str):
            continue
        if re.fullmatch(UUID_PATTERN, user_id) and user_id not in ids:
            ids.append(user_id)
    return ids


def _queue_id(conversation: Any | None) -> str | None:
    if conversation is None:
        return None
    for participant in conversation.participants or []:
        queue_id = getattr(participant, "queue_id", None)
        if queue_id:
            return str(queue_id)
    return None


# -- presence ------------------------------------------------------------------


@route(
    "user-presence-audit",
    "v2.audits.entitytype.UserPresence.entityid.{id}",
    body=AuditPresenceBody,
)
def presence_audit(deps: Deps, event: GenesysEnvelope, body: AuditPresenceBody) -> Outcome:
    """An audit of a presence change: old and new values are in the event; the name too,
    usually (else GET the user)."""
    changes = [c for c in body.propertyChanges if c.property.upper() == "PRESENCE"]
    if not changes or not changes[0].newValues:
        return Outcome("user-presence-audit", "skipped", note="no presence change in the audit")
    calls = 0
    name = body.entity.name or None
    if name is None:
        name, calls = _user_name(deps, body.entity.id), 1
    change = PresenceChange(
        user_id=body.entity.id,
        event_id=event.id,
        changed_at=_epoch_ms(body.eventTime) or 0,
        presence=changes[0].newValues[0],
        previous_presence=changes[0].oldValues[0] if changes[0].oldValues else None,
        user_name=name,
        source="audit",
    )
    stored = deps.presence.apply(change)
    return Outcome("user-presence-audit", "processed" if stored else "stale", calls=calls)


@route("user-presence", "v2.users.{id}.presence", body=UserPresenceBody)
def user_presence(deps: Deps, event: GenesysEnvelope, body: UserPresenceBody) -> Outcome:
    """A presence notification: GET the user for their name; the previous presence is ours."""
    user_id = event.topic.split(".")[2]
    if not re.fullmatch(UUID_PATTERN, user_id):
        raise PermanentRecordError("invalid-topic", "the topic's user id is not a UUID")
    change = PresenceChange(
        user_id=user_id,
        event_id=event.id,
        changed_at=_epoch_ms(body.modifiedDate) or 0,
        presence=body.presenceDefinition.systemPresence,
        user_name=_user_name(deps, user_id),
        source=body.source or "presence",
    )
    stored = deps.presence.apply(change)
    return Outcome("user-presence", "processed" if stored else "stale", calls=1)


def _user_name(deps: Deps, user_id: str) -> str | None:
    try:
        return str(deps.genesys.get_user(user_id).name)
    except NotFound:
        return None


def _epoch_ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return round(value.timestamp() * 1000)


def describe_validation(exc: ValidationError) -> str:
    """A validation error in one line: where and what, never the offending value."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(parts) + more
