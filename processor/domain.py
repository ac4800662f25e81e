"""Domain objects: what the processor learns from an event and Genesys, before storage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Agent:
    user_id: str
    name: str | None  # None when the user no longer exists in Genesys (404)


@dataclass(frozen=True)
class InteractionUpdate:
    """What one conversation event contributes to the conversation's record.

    Fields left None are not touched; `agents` and the end fields come only
    from end events, `started_at` only from start events (Genesys's own start
    time is a fallback until one arrives), so the record ends the same
    whatever the order in which events arrive.
    """

    conversation_id: str
    event_id: str
    event_time: int  # epoch ms
    media_type: str | None = None
    direction: str | None = None
    provider: str | None = None
    external_contact_id: str | None = None
    queue_id: str | None = None
    started_at: int | None = None  # from a start event: authoritative, overwrites
    fallback_started_at: int | None = None  # from Genesys: only until a start event says
    ended_at: int | None = None
    duration_ms: int | None = None
    agents: tuple[Agent, ...] | None = None
    enriched: bool = False


@dataclass(frozen=True)
class PresenceChange:
    """A user's presence as of `changed_at` (epoch ms)."""

    user_id: str
    event_id: str
    changed_at: int
    presence: str
    previous_presence: str | None = None  # None: take the stored presence as the previous one
    user_name: str | None = None
    source: str = field(default="")
