"""Genesys events for tests: the real samples, and fresh copies with new ids."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "genesys-events"


def sample(name: str) -> dict[str, Any]:
    """A real event from tests/fixtures/genesys-events (`conversation-customer-start`, ...)."""
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data


def conversation_event(
    kind: str, conversation_id: str | None = None, event_time: int = 1_649_237_444_949, **body: Any
) -> dict[str, Any]:
    """A customer.start or customer.end event with a new event id (and conversation id)."""
    event = copy.deepcopy(sample(f"conversation-customer-{kind}"))
    conversation_id = conversation_id or str(uuid.uuid4())
    event["id"] = str(uuid.uuid4())
    event["detail"]["topicName"] = (
        f"v2.detail.events.conversation.{conversation_id}.customer.{kind}"
    )
    event["detail"]["eventBody"].update(
        conversationId=conversation_id, eventTime=event_time, **body
    )
    return event


def presence_audit(
    user_id: str | None = None,
    new: str = "Available",
    old: str = "Break",
    when: str = "2021-06-25T15:11:52.000Z",
    name: str | None = "John Doe",
) -> dict[str, Any]:
    event = copy.deepcopy(sample("audit-user-presence"))
    user_id = user_id or str(uuid.uuid4())
    event["id"] = str(uuid.uuid4())
    event["detail"]["topicName"] = f"v2.audits.entitytype.UserPresence.entityid.{user_id}"
    body = event["detail"]["eventBody"]
    body.update(userId=user_id, eventTime=when)
    body["entity"] = {"id": user_id, "name": name} if name is not None else {"id": user_id}
    body["propertyChanges"] = [{"property": "PRESENCE", "oldValues": [old], "newValues": [new]}]
    return event


def user_presence(
    user_id: str | None = None, presence: str = "Away", when: str = "2024-01-01T10:00:00.000Z"
) -> dict[str, Any]:
    """A `v2.users.{id}.presence` notification (no previous value, no name)."""
    user_id = user_id or str(uuid.uuid4())
    template = sample("audit-user-presence")
    return {
        **{k: v for k, v in template.items() if k != "detail"},
        "id": str(uuid.uuid4()),
        "detail-type": "v2.users.{id}.presence",
        "detail": {
            "topicName": f"v2.users.{user_id}.presence",
            "version": "2",
            "eventBody": {
                "source": "PURECLOUD",
                "presenceDefinition": {"id": str(uuid.uuid4()), "systemPresence": presence},
                "message": "",
                "modifiedDate": when,
            },
            "metadata": {"CorrelationId": str(uuid.uuid4())},
            "timestamp": when,
        },
    }
