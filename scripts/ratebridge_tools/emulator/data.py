"""Deterministic, realistic Genesys entities for any id.

Every entity is generated from a random generator seeded with the SHA-256 of
its kind and id, so any UUID works and repeated GETs agree. References agree
too: the agents of a conversation are user ids whose GET /users answers the
same name, and its queue id answers the same queue name and division.

Shapes follow the Genesys API (camelCase, ISO-8601 UTC times with
milliseconds, `selfUri`), checked by deserializing them with the real SDK
(`User`, `Conversation`, `Queue`) in the tests. Enum values are ones the SDK
accepts (it replaces unknown ones with "outdated_sdk_version").
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

# Entities live in 2025: fixed, so the data never depends on today's date.
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_NAMESPACE = uuid.UUID("5b0c52b8-4d6c-4a53-9b44-7f1b0f6a1d2e")
_DOMAIN = "example.com"  # reserved for examples (RFC 2606): never a real mailbox

_FIRST = (
    "Ava", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jonas",
    "Kavya", "Liam", "Maya", "Noah", "Olivia", "Priya", "Quentin", "Rosa", "Samuel", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe",
)  # fmt: skip
_LAST = (
    "Adams", "Bianchi", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Murphy", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
    "Silva", "Tanaka", "Usman", "Varga", "Walsh", "Yilmaz", "Zhang",
)  # fmt: skip
_DEPARTMENTS = ("Customer Care", "Billing", "Technical Support", "Sales", "Retention")
_TITLES = ("Agent", "Senior Agent", "Team Lead", "Supervisor", "Specialist")
_QUEUE_TOPICS = ("Billing", "Technical Support", "Sales", "Retention", "Orders", "Returns")
_QUEUE_TIERS = ("General", "Priority", "Tier 2", "Spanish", "Callback")
_DIVISIONS = ("Home", "Customer Care", "Sales", "Back Office")
_PRESENCES = ("Available", "Away", "Busy", "Break", "Meal", "Meeting", "On Queue", "Offline")
_ROUTING_STATUSES = ("OFF_QUEUE", "IDLE", "INTERACTING", "NOT_RESPONDING", "COMMUNICATING")
_WRAPUPS = ("Resolved", "Follow-up needed", "Transferred", "Billing question", "No answer")

# What GET /api/v2/users/{id}?expand=... adds; Genesys returns these only on request.
USER_EXPANDS = frozenset({"presence", "routingStatus", "dateLastLogin"})


def _rng(kind: str, entity_id: str) -> random.Random:
    digest = hashlib.sha256(f"{kind}:{entity_id.lower()}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - test data, not security


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stable_uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def iso(moment: datetime) -> str:
    """Genesys's time format: ISO-8601, UTC, milliseconds, `Z`."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _moment(rng: random.Random, days: int = 300) -> datetime:
    return _EPOCH + timedelta(milliseconds=rng.randrange(days * 86_400_000))


def _division(rng: random.Random) -> dict[str, object]:
    name = rng.choice(_DIVISIONS)
    division_id = _stable_uuid(f"division:{name}")
    return {
        "id": division_id,
        "name": name,
        "selfUri": f"/api/v2/authorization/divisions/{division_id}",
    }


def _phone(rng: random.Random, prefix: str = "+1317555") -> str:
    return f"{prefix}{rng.randrange(10_000):04d}"


def user_name(user_id: str) -> str:
    """The display name GET /api/v2/users/{user_id} answers."""
    rng = _rng("user", user_id)
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def user(user_id: str, expand: Collection[str] = ()) -> dict[str, object]:
    """GET /api/v2/users/{user_id}, with the `expand` fields Genesys adds on request."""
    rng = _rng("user", user_id)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    email = f"{first}.{last}.{user_id[:4]}@{_DOMAIN}".lower()
    body: dict[str, object] = {
        "id": user_id,
        "name": f"{first} {last}",
        "division": _division(rng),
        "chat": {"jabberId": f"{user_id.replace('-', '')[:24]}@ratebridge.orgspan.com"},
        "department": rng.choice(_DEPARTMENTS),
        "email": email,
        "primaryContactInfo": [{"address": email, "mediaType": "EMAIL", "type": "PRIMARY"}],
        "addresses": [
            {
                "address": (phone := _phone(rng)),
                "display": phone,
                "mediaType": "PHONE",
                "type": "WORK",
            }
        ],
        "state": "active",
        "title": rng.choice(_TITLES),
        "username": email,
        "images": [],
        "version": rng.randint(1, 40),
        "acdAutoAnswer": False,
        "selfUri": f"/api/v2/users/{user_id}",
    }
    # Drawn whether or not expanded, so expanding never changes the other fields.
    presence = rng.choice(_PRESENCES)
    routing = rng.choice(_ROUTING_STATUSES)
    since = _moment(rng)
    if "presence" in expand:
        definition_id = _stable_uuid(f"presence:{presence}")
        body["presence"] = {
            "source": "PURECLOUD",
            "primary": True,
            "presenceDefinition": {
                "id": definition_id,
                "systemPresence": presence,
                "selfUri": f"/api/v2/presencedefinitions/{definition_id}",
            },
            "message": "",
            "modifiedDate": iso(since),
        }
    if "routingStatus" in expand:
        body["routingStatus"] = {"userId": user_id, "status": routing, "startTime": iso(since)}
    if "dateLastLogin" in expand:
        body["dateLastLogin"] = iso(since - timedelta(hours=rng.randint(1, 72)))
    return body


def queue_facts(queue_id: str) -> tuple[str, dict[str, object]]:
    """The name and division GET /api/v2/routing/queues/{queue_id} answers."""
    rng = _rng("queue", queue_id)
    name = f"{rng.choice(_QUEUE_TOPICS)} - {rng.choice(_QUEUE_TIERS)}"
    return name, _division(rng)


def queue(queue_id: str) -> dict[str, object]:
    """GET /api/v2/routing/queues/{queue_id}."""
    name, division = queue_facts(queue_id)
    rng = _rng("queue-details", queue_id)
    members = rng.randint(3, 60)
    created = _moment(rng, days=200)
    return {
        "id": queue_id,
        "name": name,
        "division": division,
        "description": f"Inbound {name.lower()} interactions",
        "dateCreated": iso(created),
        "dateModified": iso(created + timedelta(days=rng.randint(0, 90))),
        "createdBy": _uuid(rng),
        "modifiedBy": _uuid(rng),
        "memberCount": members,
        "userMemberCount": members,
        "joinedMemberCount": rng.randint(0, members),
        "acwSettings": {"wrapupPrompt": "MANDATORY_TIMEOUT", "timeoutMs": 30_000},
        "skillEvaluationMethod": "BEST",
        "scoringMethod": "TimestampAndPriority",
        "lastAgentRoutingMode": "Disabled",
        "autoAnswerOnly": False,
        "enableTranscription": False,
        "enableAudioMonitoring": False,
        "enableManualAssignment": False,
        "suppressInQueueCallRecording": True,
        "callingPartyName": "Ratebridge Demo",
        "selfUri": f"/api/v2/routing/queues/{queue_id}",
    }


def _call(
    rng: random.Random, start: datetime, end: datetime | None, *, disconnect: str
) -> dict[str, object]:
    call: dict[str, object] = {
        "state": "disconnected" if end else "connected",
        "id": _uuid(rng),
        "direction": "inbound",
        "recording": False,
        "recordingState": "none",
        "muted": False,
        "confined": False,
        "held": False,
        "connectedTime": iso(start),
    }
    if end:
        call["disconnectedTime"] = iso(end)
        call["disconnectType"] = disconnect
    return call


def _span(start: datetime, end: datetime | None) -> dict[str, object]:
    span: dict[str, object] = {"startTime": iso(start), "connectedTime": iso(start)}
    if end:
        span["endTime"] = iso(end)
    return span


def conversation(conversation_id: str) -> dict[str, object]:
    """GET /api/v2/conversations/{conversation_id}: a voice call with a customer,
    an ACD leg for its queue and one or two agents (the second after a transfer).
    About four in five are over (they have an endTime)."""
    rng = _rng("conversation", conversation_id)
    start = _moment(rng)
    ended = rng.random() < 0.8
    queue_id = _uuid(rng)
    queue_name, division = queue_facts(queue_id)
    agent_ids = [_uuid(rng) for _ in range(rng.choice((1, 1, 2)))]

    # Timeline: IVR, wait in queue, then each agent talks in turn.
    acd_start = start + timedelta(seconds=rng.randint(5, 40))
    cursor = acd_start + timedelta(seconds=rng.randint(5, 180))
    acd_end = cursor
    agent_legs: list[tuple[str, datetime, datetime | None]] = []
    for i, agent_id in enumerate(agent_ids):
        talk_end = cursor + timedelta(seconds=rng.randint(60, 900))
        last = i == len(agent_ids) - 1
        agent_legs.append((agent_id, cursor, talk_end if ended or not last else None))
        cursor = talk_end + timedelta(seconds=rng.randint(1, 10))
    end = agent_legs[-1][2] if ended else None

    customer_phone = _phone(rng, "+1202555")
    participants: list[dict[str, object]] = [
        {
            "id": _uuid(rng),
            **_span(start, end),
            "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "purpose": "customer",
            "participantType": "External",
            "address": f"tel:{customer_phone}",
            "ani": f"tel:{customer_phone}",
            "dnis": "tel:+18005550100",
            "wrapupRequired": False,
            "attributes": {},
            "calls": [_call(rng, start, end, disconnect="peer")],
        },
        {
            "id": _uuid(rng),
            **_span(acd_start, acd_end),
            "name": queue_name,
            "queueId": queue_id,
            "queueName": queue_name,
            "purpose": "acd",
            "participantType": "Internal",
            "wrapupRequired": False,
            "attributes": {},
            "calls": [_call(rng, acd_start, acd_end, disconnect="transfer")],
        },
    ]
    for agent_id, leg_start, leg_end in agent_legs:
        agent: dict[str, object] = {
            "id": _uuid(rng),
            **_span(leg_start, leg_end),
            "name": user_name(agent_id),
            "userId": agent_id,
            "userUri": f"/api/v2/users/{agent_id}",
            "queueId": queue_id,
            "queueName": queue_name,
            "purpose": "agent",
            "participantType": "Internal",
            "wrapupRequired": True,
            "attributes": {},
            "calls": [_call(rng, leg_start, leg_end, disconnect="client")],
        }
        if leg_end:
            agent["wrapup"] = {
                "code": _stable_uuid(f"wrapup:{(code := rng.choice(_WRAPUPS))}"),
                "name": code,
                "durationSeconds": rng.randint(5, 60),
                "endTime": iso(leg_end + timedelta(seconds=30)),
            }
        participants.append(agent)

    body: dict[str, object] = {
        "id": conversation_id,
        "startTime": iso(start),
        "participants": participants,
        "recordingState": "NONE",
        "divisions": [
            {
                "division": division,
                "entities": [{"id": queue_id, "selfUri": f"/api/v2/routing/queues/{queue_id}"}],
            }
        ],
        "selfUri": f"/api/v2/conversations/{conversation_id}",
    }
    if end:
        body["endTime"] = iso(end)
    return body
