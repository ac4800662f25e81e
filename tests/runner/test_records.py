"""Records built from real SQS messages (moto over HTTP) have Lambda's shape:
checked key by key, with the Powertools parser's SqsModel, and through
Powertools' BatchProcessor + process_partial_response."""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsModel

from ratebridge_tools.runner import lambda_event, lambda_record
from ratebridge_tools.runner.context import LambdaContext
from tests.runner.conftest import Queues

RECORD_KEYS = [
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "md5OfMessageAttributes",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
]


def _received(queues: Queues) -> list[dict[str, Any]]:
    queues.sqs.send_message(
        QueueUrl=queues.url,
        MessageBody='{"id": "evt-1"}',
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "conversation"},
            "count": {"DataType": "Number.int", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffdata"},
        },
    )
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="fail: no attributes")
    arn = queues.sqs.get_queue_attributes(QueueUrl=queues.url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    messages = queues.sqs.receive_message(
        QueueUrl=queues.url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    return [lambda_record(m, queue_arn=arn, region="us-east-1") for m in messages]


def test_records_have_lambdas_shape(queues: Queues) -> None:
    with_attributes, plain = _received(queues)

    assert list(with_attributes) == RECORD_KEYS
    assert list(plain) == [k for k in RECORD_KEYS if k != "md5OfMessageAttributes"]
    assert with_attributes["body"] == '{"id": "evt-1"}'
    assert with_attributes["eventSource"] == "aws:sqs"
    assert with_attributes["eventSourceARN"].startswith("arn:aws:sqs:us-east-1:")
    assert with_attributes["awsRegion"] == "us-east-1"
    attributes = with_attributes["attributes"]
    assert {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    } <= set(attributes)
    assert all(isinstance(v, str) for v in attributes.values())
    assert attributes["ApproximateReceiveCount"] == "1"
    assert with_attributes["messageAttributes"] == {
        "kind": {
            "stringValue": "conversation",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "count": {
            "stringValue": "3",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number.int",
        },
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\xffdata").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert plain["messageAttributes"] == {}


def test_powertools_parses_the_event_and_its_batch_processor_reports_failures(
    queues: Queues,
) -> None:
    records = _received(queues)
    event = lambda_event(records)
    seen: list[tuple[str, str | None, str]] = []

    def record_handler(record: SQSRecord) -> None:
        kind = record.message_attributes["kind"]
        seen.append(
            (
                record.message_id,
                kind.string_value if kind else None,
                record.attributes.approximate_receive_count,
            )
        )
        if record.body.startswith("fail"):
            raise ValueError("fails")

    # Ours, where Powertools' type stands for the runtime's: the same attributes.
    context: Any = LambdaContext(aws_request_id="r", invoked_function_arn="arn", deadline_ms=0)
    parsed = SqsModel.model_validate(event)
    response = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )

    assert parsed.Records[0].messageAttributes["blob"].binaryValue is not None
    assert parsed.Records[0].attributes.ApproximateReceiveCount == "1"
    assert seen == [
        (records[0]["messageId"], "conversation", "1"),
        (records[1]["messageId"], None, "1"),
    ]
    assert response == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
