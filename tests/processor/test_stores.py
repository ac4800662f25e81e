"""The record stores on their own: writes are idempotent on the event id and never regress."""

from __future__ import annotations

import uuid

from processor.domain import Agent, InteractionUpdate, PresenceChange
from processor.store.interactions import Applied
from tests.processor.conftest import Pipeline


def test_the_same_event_is_applied_once_even_when_replayed(pipeline: Pipeline) -> None:
    # A worker that dies after the write but before the idempotency record
    # says "done" gets the event again: the second write must change nothing.
    store = pipeline.app.deps.interactions
    conversation = str(uuid.uuid4())
    end = InteractionUpdate(
        conversation_id=conversation,
        event_id="event-end",
        event_time=2_000,
        ended_at=2_000,
        duration_ms=500,
        agents=(Agent(str(uuid.uuid4()), "Ada"),),
    )
    assert store.apply(end) is Applied.LATEST
    assert store.apply(end) is Applied.ALREADY
    start = InteractionUpdate(
        conversation_id=conversation, event_id="event-start", event_time=1_000, started_at=1_000
    )
    assert store.apply(start) is Applied.OLDER
    assert store.apply(start) is Applied.ALREADY
    item = store.get(conversation)
    assert item is not None
    assert item["eventsApplied"] == 2
    assert item["eventIds"] == ["event-end", "event-start"]
    assert (item["startedAt"], item["endedAt"], item["lastEventId"]) == (1_000, 2_000, "event-end")


def test_presence_replays_and_older_events_change_nothing(pipeline: Pipeline) -> None:
    store = pipeline.app.deps.presence
    user = str(uuid.uuid4())
    newer = PresenceChange(user, "e2", changed_at=2_000, presence="Busy", previous_presence="Away")
    older = PresenceChange(user, "e1", changed_at=1_000, presence="Meal", previous_presence="Busy")
    assert store.apply(newer) is True
    assert store.apply(newer) is False
    assert store.apply(older) is False
    item = store.get(user)
    assert item is not None
    assert (item["presence"], item["previousPresence"], item["eventsApplied"]) == (
        "Busy",
        "Away",
        1,
    )
