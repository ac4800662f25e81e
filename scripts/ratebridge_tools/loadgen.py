"""Synthetic Genesys load: the real sample events with new ids, and what must come of them.

A `Load` holds unique events to publish through EventBridge (conversations as
start/end pairs, presence audits, presence notifications), which of them to
deliver a second time (a redelivery of the same EventBridge event, same id,
as at-least-once delivery does), and malformed records (raw SQS bodies, and
EventBridge events whose body is invalid). `expected` computes the records
the processor must end with, from the events alone and the emulator's
deterministic data: it shares no code with the processor, so it can check it.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ratebridge_tools.emulator import data as genesys_data

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "genesys-events"
# The routes' topics, as EventBridge rule detail-types (what the template's pattern lists).
DETAIL_TYPES = (
    "v2.detail.events.conversation.{id}.customer.start",
    "v2.detail.events.conversation.{id}.customer.end",
    "v2.audits.entitytype.{id}.entityid.{id}",
    "v2.users.{id}.presence",
)
UNROUTED_DETAIL_TYPE = "v2.routing.queues.{id}.conversations"


@dataclass(frozen=True)
class LoadSpec:
    """`events` SQS deliveries in all: `duplicate_share` of them second deliveries,
    `malformed_share` malformed, the rest unique good events (`presence_share` of
    those presence events, `unrouted_share` on a topic no route handles)."""

    events: int = 1000
    duplicate_share: float = 0.2
    malformed_share: float = 0.01
    presence_share: float = 0.3
    unrouted_share: float = 0.0
    seed: int = 7

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError(f"events must be at least 1, got {self.events}")
        for name in ("duplicate_share", "malformed_share", "presence_share", "unrouted_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {share}")
        if self.duplicate_share + self.malformed_share >= 1.0:
            raise ValueError("duplicate_share + malformed_share must leave room for good events")


@dataclass
class Load:
    """Events to publish, and how they were made."""

    spec: LoadSpec
    good: list[dict[str, Any]]  # envelopes without `id`; EventBridge assigns it
    duplicates: list[int]  # indexes into `good` to deliver again, same id
    malformed_bodies: list[str]  # raw SQS bodies
    malformed_events: list[dict[str, Any]]  # envelopes EventBridge accepts, the processor must not
    ids: dict[int, str] = field(default_factory=dict)  # index in `good` -> EventBridge id

    @property
    def deliveries(self) -> int:
        return (
            len(self.good)
            + len(self.duplicates)
            + len(self.malformed_bodies)
            + len(self.malformed_events)
        )

    @property
    def malformed(self) -> int:
        return len(self.malformed_bodies) + len(self.malformed_events)

    def delivered_body(self, index: int) -> str:
        """The SQS body EventBridge delivered for good event `index` (after publication)."""
        envelope = {**self.good[index], "id": self.ids[index]}
        return json.dumps(envelope)


def publish(load: Load, events: Any, bus: str, sqs: Any, queue_url: str) -> None:
    """Every good and malformed event through EventBridge (10 per PutEvents, four
    calls at a time) onto `bus`, recording the ids it assigns; then the
    redeliveries (the same envelopes, same ids) and the raw malformed bodies
    straight to the queue, as at-least-once delivery and a broken producer
    would. Raises RuntimeError if EventBridge refuses an event."""
    batch: list[tuple[int | None, dict[str, Any]]] = [
        *[(i, e) for i, e in enumerate(load.good)],
        *[(None, e) for e in load.malformed_events],
    ]

    def put(start: int) -> None:
        chunk = batch[start : start + 10]
        response = events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "EventBusName": bus,
                }
                for _, event in chunk
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused {response['FailedEntryCount']} events")
        for (index, _), entry in zip(chunk, response["Entries"], strict=True):
            if index is not None:
                load.ids[index] = entry["EventId"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, range(0, len(batch), 10)))  # list(): re-raise the first failure
    extra = [load.delivered_body(i) for i in load.duplicates] + load.malformed_bodies
    for start in range(0, len(extra), 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(extra[start : start + 10])
            ],
        )


def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return loaded


def generate(spec: LoadSpec) -> Load:
    """A load for `spec`, reproducible from its seed."""
    rng = random.Random(spec.seed)  # noqa: S311 - test data, not crypto
    malformed = round(spec.events * spec.malformed_share)
    duplicates = round(spec.events * spec.duplicate_share)
    unique = max(1, spec.events - malformed - duplicates)
    good: list[dict[str, Any]] = []
    base = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    presence_events = round(unique * spec.presence_share)
    unrouted = round(unique * spec.unrouted_share)
    conversation_events = unique - presence_events - unrouted
    start, end = _sample("conversation-customer-start"), _sample("conversation-customer-end")
    for i in range(conversation_events // 2):
        conversation = _uuid(rng)
        began = base + timedelta(seconds=rng.randint(0, 86_400))
        length_ms = rng.randint(5_000, 1_800_000)
        contact = _uuid(rng)
        common = {
            "mediaType": rng.choice(["CHAT", "VOICE", "EMAIL"]),
            "direction": rng.choice(["INBOUND", "OUTBOUND"]),
        }
        good.append(_conversation(start, conversation, "start", began, contact, common, None))
        finished = began + timedelta(milliseconds=length_ms)
        good.append(_conversation(end, conversation, "end", finished, contact, common, length_ms))
        if i == 0 and conversation_events % 2:  # an odd count: one lone start
            good.append(_conversation(start, _uuid(rng), "start", began, contact, common, None))
    audit = _sample("audit-user-presence")
    presences = ["Available", "Away", "Busy", "Break", "Meal", "Meeting", "Training"]
    for i in range(presence_events):
        user = _uuid(rng)
        when = base + timedelta(seconds=rng.randint(0, 86_400))
        new, old = rng.sample(presences, 2)
        if i % 2 == 0:
            good.append(_audit(audit, user, when, new, old, name=f"Agent {i}"))
        else:
            good.append(_presence(audit, user, when, new))
    for _ in range(unrouted):
        event = copy.deepcopy(start)
        event.pop("id")
        event["detail-type"] = UNROUTED_DETAIL_TYPE
        event["detail"]["topicName"] = f"v2.routing.queues.{_uuid(rng)}.conversations"
        good.append(event)
    rng.shuffle(good)
    malformed_bodies, malformed_events = _malformed(rng, malformed, start)
    return Load(
        spec=spec,
        good=good,
        duplicates=[rng.randrange(len(good)) for _ in range(duplicates)],
        malformed_bodies=malformed_bodies,
        malformed_events=malformed_events,
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _conversation(
    template: dict[str, Any],
    conversation: str,
    kind: str,
    when: datetime,
    contact: str,
    common: dict[str, str],
    duration_ms: int | None,
) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event.pop("id")
    event["time"] = _iso(when)
    event["detail"]["topicName"] = f"v2.detail.events.conversation.{conversation}.customer.{kind}"
    body = event["detail"]["eventBody"]
    body.update(common, conversationId=conversation, eventTime=round(when.timestamp() * 1000))
    body.update(externalContactId=contact, conversationExternalContactIds=[contact])
    if duration_ms is None:
        body.pop("interactingDurationMs", None)
    else:
        body["interactingDurationMs"] = duration_ms
    event["detail"]["metadata"]["CorrelationId"] = str(uuid.uuid4())
    return event


def _audit(
    template: dict[str, Any], user: str, when: datetime, new: str, old: str, name: str
) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event.pop("id")
    event["time"] = _iso(when)
    event["detail"]["topicName"] = f"v2.audits.entitytype.UserPresence.entityid.{user}"
    body = event["detail"]["eventBody"]
    body.update(userId=user, eventTime=_iso(when), id=str(uuid.uuid4()))
    body["entity"] = {"id": user, "name": name}
    body["propertyChanges"] = [{"property": "PRESENCE", "oldValues": [old], "newValues": [new]}]
    return event


def _presence(template: dict[str, Any], user: str, when: datetime, presence: str) -> dict[str, Any]:
    event = {k: copy.deepcopy(v) for k, v in template.items() if k not in ("id", "detail")}
    event["time"] = _iso(when)
    event["detail-type"] = "v2.users.{id}.presence"
    event["detail"] = {
        "topicName": f"v2.users.{user}.presence",
        "version": "2",
        "eventBody": {
            "source": "PURECLOUD",
            "presenceDefinition": {"id": str(uuid.uuid4()), "systemPresence": presence},
            "message": "",
            "modifiedDate": _iso(when),
        },
        "metadata": {"CorrelationId": str(uuid.uuid4())},
        "timestamp": _iso(when),
    }
    return event


def _malformed(
    rng: random.Random, count: int, template: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Half raw bodies SQS delivers as they are, half events EventBridge accepts."""
    raw = ["{not json", "[]", '"just a string"', json.dumps({"id": "x"}), "null"]
    bodies = [raw[i % len(raw)] + " " * i for i in range(count - count // 2)]
    events = []
    for i in range(count // 2):
        event = copy.deepcopy(template)
        event.pop("id")
        body = event["detail"]["eventBody"]
        if i % 2 == 0:
            body["conversationId"] = "../../oauth/token"
        else:
            body["eventTime"] = "yesterday"
        event["detail"]["topicName"] = f"v2.detail.events.conversation.{_uuid(rng)}.customer.start"
        events.append(event)
    return bodies, events


# -- what must come of it --------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    interactions: dict[str, dict[str, Any]]  # conversationId -> the fields the item must have
    presence: dict[str, dict[str, Any]]  # userId -> the fields the item must have
    genesys_calls: int  # API requests the unique good events need (duplicates need none)


def expected(load: Load, skip_ids: Collection[str] = ()) -> Expected:
    """The records the processor must end with, whatever the delivery order.

    `skip_ids`: events left out (say, the ones in the DLQ after a fault)."""
    interactions: dict[str, dict[str, Any]] = {}
    presence: dict[str, dict[str, Any]] = {}
    calls = 0
    for index, event in enumerate(load.good):
        if load.ids.get(index) in skip_ids:
            continue
        topic = event["detail"]["topicName"]
        body = event["detail"]["eventBody"]
        if ".customer." in topic:
            conversation = body["conversationId"]
            facts = _conversation_facts(conversation)
            item = interactions.setdefault(
                conversation,
                {
                    "mediaType": body["mediaType"],
                    "direction": body["direction"],
                    "externalContactId": body["externalContactId"],
                    "queueId": facts["queueId"],
                    "eventsApplied": 0,
                },
            )
            item["eventsApplied"] += 1
            if topic.endswith(".start"):
                item["startedAt"] = body["eventTime"]
                calls += 1
            else:
                item["endedAt"] = body["eventTime"]
                item["durationMs"] = body["interactingDurationMs"]
                item["agents"] = facts["agents"]
                calls += 1 + len(facts["agents"])
            latest = item.get("_latestTime", -1)
            if body["eventTime"] >= latest and index in load.ids:
                item["_latestTime"] = body["eventTime"]
                item["lastEventId"] = load.ids[index]
        elif topic.startswith("v2.audits."):
            change = body["propertyChanges"][0]
            presence[body["entity"]["id"]] = {
                "presence": change["newValues"][0],
                "previousPresence": change["oldValues"][0],
                "userName": body["entity"]["name"],
            }
        elif topic.startswith("v2.users."):
            user = topic.split(".")[2]
            presence[user] = {
                "presence": body["presenceDefinition"]["systemPresence"],
                "previousPresence": "unknown",
                "userName": genesys_data.user_name(user),
            }
            calls += 1
    for item in interactions.values():
        item.pop("_latestTime", None)
    return Expected(interactions, presence, calls)


def _conversation_facts(conversation_id: str) -> dict[str, Any]:
    """Queue and agents as the emulator serves them (its data is deterministic)."""
    conversation = genesys_data.conversation(conversation_id)
    participants: list[dict[str, Any]] = conversation["participants"]  # type: ignore[assignment]
    agents: list[dict[str, Any]] = []
    queue_id = None
    for participant in participants:
        queue_id = queue_id or participant.get("queueId")
        if participant.get("purpose") == "agent" and participant.get("userId"):
            user = participant["userId"]
            if all(a["userId"] != user for a in agents):
                agents.append({"userId": user, "name": genesys_data.user_name(user)})
    return {"queueId": queue_id, "agents": agents}
