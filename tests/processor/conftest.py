"""A processor wired to local servers: SQS + DLQ on moto, DynamoDB on each backend,
the Genesys emulator, and Lambda events built from messages really received."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from limiter import Limiter, LimiterSettings
from processor.app import App
from processor.batch import handle_batch
from processor.settings import Settings
from ratebridge_tools.emulator import EmulatorServer, RequestRecord
from ratebridge_tools.servers import LOCAL_AWS_ENV, LocalServer, start_moto
from tests.support.genesys import find_leaks
from tests.support.lambda_context import FakeLambdaContext

MAX_RECEIVE_COUNT = 3


@pytest.fixture(scope="session")
def sqs_server() -> Iterator[LocalServer]:
    """moto server for SQS (and EventBridge), whatever the DynamoDB backend."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def processor_tables(backend: LocalServer) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    tables = {
        "RATEBRIDGE_INTERACTIONS_TABLE": f"rb-interactions-{suffix}",
        "RATEBRIDGE_PRESENCE_TABLE": f"rb-presence-{suffix}",
        "RATEBRIDGE_IDEMPOTENCY_TABLE": f"rb-idempotency-{suffix}",
    }
    env = {**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": backend.url, **tables}
    App(Settings.from_env(env), genesys_factory=_no_genesys).create_tables()
    return tables


def _no_genesys() -> Any:
    raise AssertionError("no Genesys here")


@dataclass
class Pipeline:
    """One test's queue, DLQ, settings and app; helpers to send, invoke and look."""

    env: dict[str, str]
    app: App
    sqs: Any
    queue_url: str
    dlq_url: str
    emulator: EmulatorServer
    limiter: Limiter
    bucket: str
    client_secret: str
    responses: list[dict[str, Any]] = field(default_factory=list)

    def send(self, *events: dict[str, Any] | str) -> None:
        for event in events:
            body = event if isinstance(event, str) else json.dumps(event)
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def receive(self, max_records: int = 10, wait: int = 1) -> dict[str, Any]:
        """A Lambda SQS event made of messages received from the queue."""
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        records: list[dict[str, Any]] = []
        while len(records) < max_records:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, max_records - len(records)),
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            for m in got:
                records.append(
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": m.get("Attributes", {}),
                        "messageAttributes": {
                            name: {
                                "stringValue": value.get("StringValue"),
                                "dataType": value["DataType"],
                            }
                            for name, value in m.get("MessageAttributes", {}).items()
                        },
                        "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": arn,
                        "awsRegion": "us-east-1",
                    }
                )
        return {"Records": records}

    def invoke(self, event: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Call the handler, then do what the SQS event source does with its answer:
        delete every record not reported in batchItemFailures."""
        response: dict[str, Any] = dict(handle_batch(self.app, event, FakeLambdaContext(timeout)))
        self.responses.append(response)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"]
                )
        return response

    def run(self, *events: dict[str, Any] | str, timeout: float = 60.0) -> dict[str, Any]:
        """Send `events`, receive them as one batch, invoke the handler once."""
        self.send(*events)
        batch = self.receive(max_records=len(events))
        assert len(batch["Records"]) == len(events)
        return self.invoke(batch, timeout)

    def dlq(self) -> list[dict[str, Any]]:
        """Messages in the DLQ: body and the ratebridge.* attributes."""
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                return out
            for m in got:
                attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                out.append({"body": m["Body"], **attrs})
                self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=m["ReceiptHandle"])

    def genesys_requests(self) -> list[RequestRecord]:
        return [r for r in self.emulator.requests() if r.path.startswith("/api/")]

    def delayed(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessagesDelayed"])

    def queue_counts(self) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )


@pytest.fixture
def pipeline(
    backend: LocalServer,
    sqs_server: LocalServer,
    limiter_settings: LimiterSettings,
    tokens_table: str,
    processor_tables: dict[str, str],
    emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[Pipeline]:
    emulator.reset(config=True)
    suffix = uuid.uuid4().hex[:10]
    client_id, client_secret = f"client-{suffix}", f"secret-{uuid.uuid4().hex}"
    emulator.configure(clients={client_id: client_secret})
    sqs = boto3.session.Session().client(
        "sqs", region_name="us-east-1", endpoint_url=sqs_server.url
    )
    dlq_url = sqs.create_queue(QueueName=f"rb-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"rb-events-{suffix}",
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
            ),
        },
    )["QueueUrl"]
    bucket = f"genesys-{suffix}"
    env = {
        **LOCAL_AWS_ENV,
        "AWS_ENDPOINT_URL_DYNAMODB": backend.url,
        "AWS_ENDPOINT_URL_SQS": sqs_server.url,
        "RATEBRIDGE_BUCKETS_TABLE": limiter_settings.buckets_table,
        "RATEBRIDGE_LIMITS_TABLE": limiter_settings.limits_table,
        "RATEBRIDGE_TOKENS_TABLE": tokens_table,
        **processor_tables,
        "RATEBRIDGE_GENESYS_BUCKET": bucket,
        "RATEBRIDGE_TOKEN_BUCKET": f"{bucket}-oauth",
        "RATEBRIDGE_DLQ_URL": dlq_url,
        "RATEBRIDGE_MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
        "GENESYS_API_BASE_URL": emulator.url,
        "GENESYS_CLIENT_ID": client_id,
        "GENESYS_CLIENT_SECRET": client_secret,
        "GENESYS_READ_TIMEOUT": "5",
    }
    settings = Settings.from_env(env)
    limiter = Limiter.from_env(settings.limiter)
    limiter.set_limit(bucket, requests=1000, per_seconds=1, burst=50)
    limiter.set_limit(f"{bucket}-oauth", requests=10, per_seconds=60, burst=5)
    caplog.set_level(logging.DEBUG, logger="processor")
    caplog.set_level(logging.INFO)
    yield Pipeline(
        env, App(settings), sqs, queue_url, dlq_url, emulator, limiter, bucket, client_secret
    )
    out, err = capfd.readouterr()
    token_ids = {r.token_id for r in emulator.requests() if r.token_id}
    leaks = find_leaks(
        [caplog.text, out, err, emulator.log_tail(lines=100_000)], [client_secret], token_ids
    )
    assert leaks == [], leaks
