"""SQS messages, as ReceiveMessage returns them, turned into the records of a
Lambda SQS event, shaped exactly like the ones the event source mapping sends.

A record (Lambda's documented example, plus md5OfMessageAttributes, which
Lambda includes when the message has attributes):

    {"messageId": "...", "receiptHandle": "...", "body": "...",
     "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "...",
                    "SenderId": "...", "ApproximateFirstReceiveTimestamp": "..."},
     "messageAttributes": {"name": {"stringValue": "v", "stringListValues": [],
                                    "binaryListValues": [], "dataType": "String"}},
     "md5OfBody": "...", "eventSource": "aws:sqs",
     "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue",
     "awsRegion": "us-east-1"}

Binary attribute values are base64 text, as in Lambda's JSON event; system
attributes are strings. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

Record = dict[str, Any]

EVENT_SOURCE = "aws:sqs"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def lambda_message_attributes(
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef],
) -> dict[str, dict[str, Any]]:
    """Message attributes in Lambda's shape: camelCase keys, both list fields
    always present, binary values base64-encoded."""
    shaped: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = _b64(value["BinaryValue"])
        item["stringListValues"] = list(value.get("StringListValues", []))
        item["binaryListValues"] = [_b64(b) for b in value.get("BinaryListValues", [])]
        item["dataType"] = value["DataType"]
        shaped[name] = item
    return shaped


def lambda_record(message: MessageTypeDef, *, queue_arn: str, region: str) -> Record:
    """One SQS message (received with all system and message attributes) as
    the record Lambda puts in the event. Raises KeyError when the message lacks
    a field ReceiveMessage always returns (MessageId, ReceiptHandle, Body, MD5OfBody)."""
    record: Record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: str(v) for k, v in message.get("Attributes", {}).items()},
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record["eventSource"] = EVENT_SOURCE
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = region
    return record


def lambda_event(records: Sequence[Record]) -> dict[str, Any]:
    """The event one invocation gets: `{"Records": [...]}`."""
    return {"Records": list(records)}


def record_size(record: Record) -> int:
    """Bytes the record adds to the event's JSON (with its separator)."""
    return len(json.dumps(record).encode()) + 2


EVENT_OVERHEAD_BYTES = len(b'{"Records": []}')


def arn_region(arn: str) -> str:
    """The region of an ARN (`arn:aws:sqs:us-east-1:123456789012:q` -> us-east-1).
    Raises ValueError for text that is not an ARN."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[3]


def arn_account(arn: str) -> str:
    """The account of an ARN. Raises ValueError for text that is not an ARN."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[4]
