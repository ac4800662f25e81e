"""The processor on real local servers: SQS and its DLQ, DynamoDB, the Genesys emulator."""

from __future__ import annotations

import json
import time
import uuid

from limiter.dynamodb import dynamodb_client
from processor.genesys.token_store import TokenStore
from tests.processor.conftest import MAX_RECEIVE_COUNT, Pipeline
from tests.support.events import conversation_event, presence_audit, sample, user_presence


def genesys_user_name(pipeline: Pipeline, user_id: str) -> str:
    from tests.support.genesys import build_client

    return str(build_client(pipeline.env).get_user(user_id).name)


def test_every_sample_event_becomes_a_correct_record(pipeline: Pipeline) -> None:
    # Given the three real Genesys events
    start, end, audit = (
        sample("conversation-customer-start"),
        sample("conversation-customer-end"),
        sample("audit-user-presence"),
    )
    # When they are processed in one batch
    response = pipeline.run(start, end, audit)
    # Then none failed and each is stored as it should be
    assert response == {"batchItemFailures": []}
    conversation_id = "2f7bf00a-0fc2-4d6a-9b56-92238191433e"
    record = pipeline.app.deps.interactions.get(conversation_id)
    assert record is not None
    assert record["startedAt"] == 1649237444949
    assert record["endedAt"] == 1649237504949
    assert record["durationMs"] == 60000  # interactingDurationMs from the end event
    assert record["mediaType"] == "CHAT"
    assert record["direction"] == "INBOUND"
    assert record["externalContactId"] == "uwu"  # set by start; end never overwrites it
    assert record["lastEventId"] == end["id"]
    assert record["eventsApplied"] == 2
    assert record["enriched"] is True
    assert record["queueId"]
    agents = record["agents"]
    assert agents
    # Genesys saw what the routes need: the conversation twice, each agent once
    paths = [r.path for r in pipeline.genesys_requests()]
    assert paths.count(f"/api/v2/conversations/{conversation_id}") == 2
    assert sorted(p for p in paths if "/users/" in p) == sorted(
        f"/api/v2/users/{a['userId']}" for a in agents
    )
    for agent in agents:
        assert agent["name"] == genesys_user_name(pipeline, agent["userId"])
    presence = pipeline.app.deps.presence.get("278522be-1683-4877-8257-4164a177be89")
    assert presence is not None
    assert presence["presence"] == "Available"
    assert presence["previousPresence"] == "Break"
    assert presence["userName"] == "John Doe"
    assert presence["changedAt"] == 1624633912000
    assert presence["lastEventId"] == audit["id"]
    assert pipeline.dlq() == []


def test_end_before_start_gives_the_same_record(pipeline: Pipeline) -> None:
    conversation = str(uuid.uuid4())
    start = conversation_event(
        "start", conversation, event_time=1_700_000_000_000, externalContactId="c-1"
    )
    end = conversation_event(
        "end",
        conversation,
        event_time=1_700_000_060_000,
        interactingDurationMs=None,
        externalContactId="c-1",
    )
    pipeline.run(end)
    pipeline.run(start)
    record = pipeline.app.deps.interactions.get(conversation)
    assert record is not None
    assert record["startedAt"] == 1_700_000_000_000  # the start event wins over Genesys's time
    assert record["endedAt"] == 1_700_000_060_000
    assert record["agents"]
    assert record["externalContactId"] == "c-1"
    assert record["lastEventId"] == end["id"]  # the later event stays the latest
    assert record["eventsApplied"] == 2


def test_a_redelivered_event_makes_no_genesys_call_and_no_second_write(pipeline: Pipeline) -> None:
    event = conversation_event("start")
    conversation = event["detail"]["eventBody"]["conversationId"]
    pipeline.run(event)
    calls = len(pipeline.genesys_requests())
    # the same EventBridge event, delivered again in two new SQS messages
    response = pipeline.run(event, event)
    assert response == {"batchItemFailures": []}
    assert len(pipeline.genesys_requests()) == calls
    record = pipeline.app.deps.interactions.get(conversation)
    assert record is not None
    assert record["eventsApplied"] == 1
    assert pipeline.app.recorder.snapshot() == {}  # flushed; counted per invocation


def test_unknown_topics_are_skipped_not_failed(pipeline: Pipeline) -> None:
    event = sample("conversation-customer-start")
    event["id"] = str(uuid.uuid4())
    event["detail"]["topicName"] = (
        "v2.routing.queues.2f7bf00a-0fc2-4d6a-9b56-92238191433e.conversations"
    )
    assert pipeline.run(event) == {"batchItemFailures": []}
    assert pipeline.genesys_requests() == []
    assert pipeline.dlq() == []
    assert pipeline.queue_counts() == (0, 0)


def test_bad_records_go_to_the_dlq_with_their_reason_and_spare_the_rest(pipeline: Pipeline) -> None:
    good = conversation_event("start")
    no_id = sample("conversation-customer-start")
    del no_id["id"]
    bad_uuid = conversation_event("start")
    bad_uuid["detail"]["eventBody"]["conversationId"] = "../../oauth/token"
    wrong_type = conversation_event("start")
    wrong_type["detail"]["eventBody"]["eventTime"] = "yesterday"
    huge = json.dumps({**conversation_event("start"), "padding": "x" * 300_000})
    bodies: list[dict[str, object] | str] = [
        good,
        "not json at all",
        "[1, 2, 3]",
        json.dumps(no_id),
        bad_uuid,
        wrong_type,
        huge,
    ]
    response = pipeline.run(*bodies)
    # The handler did not raise, and nothing was left for retry: every bad
    # record was moved to the DLQ at once, with why
    assert response == {"batchItemFailures": []}
    dead = pipeline.dlq()
    kinds = sorted(d["ratebridge.kind"] for d in dead)
    assert kinds == sorted(
        [
            "not-json",
            "not-an-envelope",
            "not-an-envelope",
            "invalid-body",
            "invalid-body",
            "oversized",
        ]
    )
    reasons = " | ".join(d["ratebridge.reason"] for d in dead)
    assert "id: Field required" in reasons
    assert "conversationId: String should match pattern" in reasons
    assert "eventTime: Input should be a valid integer" in reasons
    assert "../../oauth/token" not in reasons  # reasons never echo the bad value
    by_kind = {d["ratebridge.kind"]: d for d in dead}
    assert "body is 3" in by_kind["oversized"]["ratebridge.reason"]
    assert by_kind["not-json"]["body"] == "not json at all"  # bodies unchanged
    # and the good record in the same batch was processed
    assert pipeline.app.deps.interactions.get(good["detail"]["eventBody"]["conversationId"])
    assert pipeline.queue_counts() == (0, 0)


def test_bad_records_are_counted_and_logged_once(pipeline: Pipeline, caplog: object) -> None:
    pipeline.run("{oops")
    lines = [r for r in caplog.records if r.getMessage() == "record dead-lettered"]  # type: ignore[attr-defined]
    assert len(lines) == 1
    assert lines[0].kind == "not-json"
    assert "message" in lines[0].event_id


def test_a_deleted_user_is_stored_without_a_name(pipeline: Pipeline) -> None:
    user = str(uuid.uuid4())
    pipeline.emulator.add_missing([user])
    event = user_presence(user, presence="Busy")
    assert pipeline.run(event) == {"batchItemFailures": []}
    stored = pipeline.app.deps.presence.get(user)
    assert stored is not None
    assert stored["presence"] == "Busy"
    assert stored.get("userName") is None
    assert stored["previousPresence"] == "unknown"


def test_an_older_presence_never_overwrites_a_newer_one(pipeline: Pipeline) -> None:
    user = str(uuid.uuid4())
    newer = presence_audit(user, new="Available", old="Away", when="2024-05-01T10:00:05.000Z")
    older = presence_audit(user, new="Meal", old="Available", when="2024-05-01T10:00:01.000Z")
    pipeline.run(newer)
    pipeline.run(older)
    stored = pipeline.app.deps.presence.get(user)
    assert stored is not None
    assert (stored["presence"], stored["previousPresence"]) == ("Available", "Away")
    assert stored["eventsApplied"] == 1
    # a presence notification carries no previous value: the stored one becomes it
    later = user_presence(user, presence="Busy", when="2024-05-01T10:00:09.000Z")
    pipeline.run(later)
    stored = pipeline.app.deps.presence.get(user)
    assert stored is not None
    assert (stored["presence"], stored["previousPresence"]) == ("Busy", "Available")


def test_no_permission_in_time_puts_the_batch_back_for_the_exact_wait(pipeline: Pipeline) -> None:
    # Given a bucket that just granted its one request of the minute
    pipeline.limiter.set_limit(pipeline.bucket, requests=1, per_seconds=60)
    pipeline.limiter.acquire(pipeline.bucket)
    events = [conversation_event("start") for _ in range(3)]
    # When a batch arrives with 10 s of invocation left
    response = pipeline.run(*events, timeout=10)
    # Then none waited, none reached Genesys, and each came back as a copy
    # delayed by about the wait (~60.6 s): the originals are acknowledged, so
    # the wait spends none of the queue's maxReceiveCount receives
    assert response == {"batchItemFailures": []}
    assert pipeline.genesys_requests() == []
    assert pipeline.queue_counts() == (0, 0)
    assert pipeline.delayed() == 3
    assert pipeline.receive(max_records=3, wait=2)["Records"] == []
    # and only the first record asked the limiter; the rest followed its answer
    assert pipeline.limiter.status(pipeline.bucket).granted == 1
    snapshot = pipeline.app.recorder.snapshot()
    assert snapshot == {}  # flushed at the end of the invocation


def test_a_token_being_fetched_elsewhere_is_a_capacity_wait_not_a_timeout(
    pipeline: Pipeline,
) -> None:
    # Given another instance holding the token refresh lease for 40 s more
    # (say it was killed while fetching) and no token in the table
    store = TokenStore(
        pipeline.env["RATEBRIDGE_TOKENS_TABLE"],
        dynamodb_client(region="us-east-1", endpoint_url=pipeline.env["AWS_ENDPOINT_URL_DYNAMODB"]),
    )
    key = f"genesys-token#{pipeline.env['GENESYS_CLIENT_ID']}"
    now = time.time()
    assert store.try_lease(key, "another-instance", now, now + 40, 0)
    events = [conversation_event("start") for _ in range(3)]
    pipeline.send(*events)
    batch = pipeline.receive(max_records=3)
    # (the client is built in Lambda's init phase, not on the invocation's clock)
    assert pipeline.app.deps.genesys is not None
    # When the batch arrives with 4 s of invocation left
    started = time.monotonic()
    response = pipeline.invoke(batch, timeout=4)
    # Then the invocation returned within its budget, nothing reached Genesys,
    # and each record came back as a copy delayed until about the lease's
    # end: a wait for capacity spends none of the queue's receives
    assert time.monotonic() - started < 4
    assert response == {"batchItemFailures": []}
    assert pipeline.emulator.requests() == []
    assert pipeline.queue_counts() == (0, 0)
    assert pipeline.delayed() == 3


def test_a_record_that_waited_too_often_goes_to_the_dlq_with_its_reason(
    pipeline: Pipeline,
) -> None:
    pipeline.limiter.set_limit(pipeline.bucket, requests=1, per_seconds=60)
    pipeline.limiter.acquire(pipeline.bucket)
    event = conversation_event("start")
    limit = pipeline.app.settings.max_deferrals
    pipeline.sqs.send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=json.dumps(event),
        MessageAttributes={
            "ratebridge.deferrals": {"DataType": "Number", "StringValue": str(limit)}
        },
    )
    batch = pipeline.receive(max_records=1)
    assert pipeline.invoke(batch, timeout=10) == {"batchItemFailures": []}
    dead = pipeline.dlq()
    assert len(dead) == 1
    assert dead[0]["ratebridge.kind"] == "no-capacity"
    assert dead[0]["ratebridge.reason"].startswith(f"no capacity after {limit} waits")
    assert dead[0]["ratebridge.eventId"] == event["id"]


def test_a_retriable_failure_on_the_last_receive_goes_to_the_dlq_with_its_reason(
    pipeline: Pipeline,
) -> None:
    pipeline.emulator.configure(error_rate=1.0, error_status=503)
    event = conversation_event("start")
    pipeline.send(event)
    for receive in range(1, MAX_RECEIVE_COUNT + 1):
        batch = pipeline.receive(max_records=1, wait=5)
        assert batch["Records"], f"receive {receive} got nothing"
        # make the message visible again at once, as if its timeout had passed
        response = pipeline.invoke(batch)
        if receive < MAX_RECEIVE_COUNT:
            assert len(response["batchItemFailures"]) == 1
            pipeline.sqs.change_message_visibility(
                QueueUrl=pipeline.queue_url,
                ReceiptHandle=batch["Records"][0]["receiptHandle"],
                VisibilityTimeout=0,
            )
        else:
            assert response == {"batchItemFailures": []}
    dead = pipeline.dlq()
    assert len(dead) == 1
    assert dead[0]["ratebridge.kind"] == "UpstreamUnavailable"
    assert dead[0]["ratebridge.eventId"] == event["id"]
    assert dead[0]["ratebridge.receiveCount"] == str(MAX_RECEIVE_COUNT)
    assert "503" in dead[0]["ratebridge.reason"]


def test_a_failure_with_no_known_wait_comes_back_after_the_backoff(pipeline: Pipeline) -> None:
    # Given Genesys answering 503 (no Retry-After: the wait is unknown)
    pipeline.emulator.configure(error_rate=1.0, error_status=503)
    pipeline.send(conversation_event("start"))
    batch = pipeline.receive(max_records=1, wait=5)
    # When the record fails on its first receive
    response = pipeline.invoke(batch)
    failed_at = time.monotonic()
    assert len(response["batchItemFailures"]) == 1
    pipeline.emulator.configure(error_rate=0.0)
    # Then it comes back after the backoff (5 s x 2^0, plus up to 1 s of jitter),
    # not after the queue's visibility timeout of 30 s
    assert pipeline.receive(max_records=1, wait=1)["Records"] == []
    again = pipeline.receive(max_records=1, wait=20)["Records"]
    waited = time.monotonic() - failed_at
    assert again, "the record did not come back within 21 s"
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert 5.0 <= waited < 20.0
    assert pipeline.invoke({"Records": again}) == {"batchItemFailures": []}
