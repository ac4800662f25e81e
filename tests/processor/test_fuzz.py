"""Hostile record bodies through the real handler: it never raises, it always answers
a well-formed partial batch response, and every bad record reaches the DLQ."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.batch import handle_batch
from ratebridge_tools.emulator import EmulatorServer
from tests.processor.conftest import Pipeline
from tests.support.events import conversation_event, presence_audit, user_presence
from tests.support.lambda_context import FakeLambdaContext

UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
API_PATH = re.compile(rf"/api/v2/(users|conversations|routing/queues)/{UUID}")
HOSTILE = st.sampled_from(
    [
        "../../oauth/token",
        "%2e%2e%2f",
        "x' OR '1'='1",
        "a/b?c=d#e",
        "\u0000",
        "\ud7ff\ue000",
        "😀" * 50,
        "A" * 5000,
        "${jndi:ldap://x}",
        "2f7bf00a-0fc2-4d6a-9b56-92238191433e/../x",
    ]
)
ids = st.one_of(st.uuids().map(str), HOSTILE, st.text(max_size=40), st.integers(), st.none())
json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Real-shaped events, then one field broken in some hostile way."""
    event = draw(
        st.sampled_from(["start", "end", "audit", "presence"]).map(
            lambda k: (
                conversation_event(k)
                if k in ("start", "end")
                else presence_audit()
                if k == "audit"
                else user_presence()
            )
        )
    )
    target = draw(
        st.sampled_from(["id", "topic", "conversation", "eventTime", "body", "detail", "none"])
    )
    if target == "id":
        event["id"] = draw(ids)
    elif target == "topic":
        template = draw(
            st.sampled_from(
                [
                    "v2.detail.events.conversation.{}.customer.start",
                    "v2.users.{}.presence",
                    "v2.audits.entitytype.UserPresence.entityid.{}",
                    "{}",
                ]
            )
        )
        event["detail"]["topicName"] = template.format(draw(ids))
    elif target == "conversation":
        event["detail"]["eventBody"]["conversationId"] = draw(ids)
    elif target == "eventTime":
        event["detail"]["eventBody"]["eventTime"] = draw(json_values)
    elif target == "body":
        event["detail"]["eventBody"] = draw(json_values)
    elif target == "detail":
        event["detail"] = draw(json_values)
    return event


bodies = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    envelopes().map(json.dumps),
    st.builds(lambda depth: "[" * depth + "]" * depth, st.integers(900, 100_000)),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(bodies, min_size=1, max_size=4))
def test_the_handler_never_raises_and_answers_well_formed(
    pipeline: Pipeline, batch: list[str]
) -> None:
    records = [
        {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": "not-a-real-handle",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fuzz",
            "awsRegion": "us-east-1",
        }
        for body in batch
    ]
    _api_paths_since_last_look(pipeline.emulator)
    response = handle_batch(pipeline.app, {"Records": records}, FakeLambdaContext(60))
    # Ids are validated before they reach a URL: every path Genesys saw is a
    # known route with a UUID in it, whatever the bodies held.
    for path in _api_paths_since_last_look(pipeline.emulator):
        assert API_PATH.fullmatch(path), path
    assert set(response) == {"batchItemFailures"}
    failures = response["batchItemFailures"]
    assert isinstance(failures, list)
    message_ids = {r["messageId"] for r in records}
    for failure in failures:
        assert set(failure) == {"itemIdentifier"}
        assert failure["itemIdentifier"] in message_ids
    # With nothing failing around it, every record is consumed: processed,
    # skipped, or in the DLQ with its reason. None is left to retry.
    assert failures == []


_cursor = [0]  # the index of the next emulator record not yet looked at


def _api_paths_since_last_look(emulator: EmulatorServer) -> list[str]:
    records = emulator.requests(since=_cursor[0])
    if records:
        _cursor[0] = records[-1].index + 1
    return [r.path for r in records if r.path.startswith("/api/")]
