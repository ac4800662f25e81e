"""The SQS calls the processor makes about its own records (the only SQS I/O here).

- `requeue`: a record that must wait for capacity comes back exactly when
  capacity exists, as a delayed copy (SendMessage DelaySeconds) carrying a
  deferral count; the original is acknowledged. A wait is not a failure, so
  it must not spend one of the queue's maxReceiveCount receives.
- `defer`: a record that failed retriably comes back when it should
  (ChangeMessageVisibility), instead of after the queue's default timeout.
- `dead_letter`: a record that can never be done goes to the DLQ at once, its
  body unchanged, with the reason in message attributes (`ratebridge.reason`,
  `ratebridge.kind`, `ratebridge.eventId`, `ratebridge.sourceMessageId`,
  `ratebridge.receiveCount`). SQS's own redrive stays as the backstop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.errors import RetriableRecordError

log = logging.getLogger(__name__)
MAX_REASON = 1024


# Characters SQS accepts in message attribute values (its XML 1.0 subset).
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_text(value: str) -> str:
    """`value` with every character SQS would refuse replaced by U+FFFD."""
    return _NOT_SQS_TEXT.sub("\ufffd", value)


@dataclass(frozen=True)
class Deferral:
    message_id: str
    receipt_handle: str
    source_arn: str
    seconds: int


@dataclass(frozen=True)
class Requeue:
    """A copy of a record to send back to its queue, delayed, with its deferral count."""

    message_id: str
    body: str
    source_arn: str
    delay_seconds: int
    deferrals: int


DEFERRALS_ATTRIBUTE = "ratebridge.deferrals"
MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


class QueueOps:
    def __init__(self, client: Any, dlq_url: str | None) -> None:
        self._client = client
        self.dlq_url = dlq_url
        self._urls: dict[str, str] = {}

    def queue_url(self, arn: str) -> str:
        """The URL of the queue `arn` names (one GetQueueUrl per queue per container)."""
        if arn not in self._urls:
            _, _, _, _, account, name = arn.split(":", 5)
            response = self._client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._urls[arn] = response["QueueUrl"]
        return self._urls[arn]

    def defer(self, deferrals: Sequence[Deferral]) -> int:
        """Set each record's visibility timeout; returns how many were changed.

        Failures are logged, not raised: the record then returns after the
        queue's own visibility timeout, which is only later, never lost.
        """
        changed = 0
        by_queue: dict[str, list[Deferral]] = {}
        for deferral in deferrals:
            by_queue.setdefault(deferral.source_arn, []).append(deferral)
        for arn, items in by_queue.items():
            try:
                url = self.queue_url(arn)
                for start in range(0, len(items), 10):
                    chunk = items[start : start + 10]
                    response = self._client.change_message_visibility_batch(
                        QueueUrl=url,
                        Entries=[
                            {
                                "Id": str(i),
                                "ReceiptHandle": d.receipt_handle,
                                "VisibilityTimeout": d.seconds,
                            }
                            for i, d in enumerate(chunk)
                        ],
                    )
                    changed += len(response.get("Successful", []))
                    for failed in response.get("Failed", []):
                        log.warning("could not defer a record: %s", failed.get("Code"))
            except (ClientError, BotoCoreError, ValueError) as exc:
                log.warning("could not defer %d records: %s", len(items), type(exc).__name__)
        return changed

    def requeue(self, copies: Sequence[Requeue]) -> set[str]:
        """Send each copy to its queue with its delay; returns the message ids sent.

        A capacity wait must not spend one of SQS's maxReceiveCount receives (those
        count failures), so the record comes back as a new message instead of by
        its visibility timeout. The caller acknowledges the original only if its
        copy was sent: a failure here leaves the record to the ordinary retry.
        """
        sent: set[str] = set()
        by_queue: dict[str, list[Requeue]] = {}
        for copy in copies:
            by_queue.setdefault(copy.source_arn, []).append(copy)
        for arn, items in by_queue.items():
            try:
                url = self.queue_url(arn)
                for start in range(0, len(items), 10):
                    chunk = items[start : start + 10]
                    response = self._client.send_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {
                                "Id": str(i),
                                "MessageBody": c.body,
                                "DelaySeconds": min(MAX_DELAY_SECONDS, max(0, c.delay_seconds)),
                                "MessageAttributes": {
                                    DEFERRALS_ATTRIBUTE: {
                                        "DataType": "Number",
                                        "StringValue": str(c.deferrals),
                                    }
                                },
                            }
                            for i, c in enumerate(chunk)
                        ],
                    )
                    sent.update(
                        chunk[int(ok["Id"])].message_id for ok in response.get("Successful", [])
                    )
                    for failed in response.get("Failed", []):
                        log.warning("could not requeue a record: %s", failed.get("Code"))
            except (ClientError, BotoCoreError, ValueError) as exc:
                log.warning("could not requeue %d records: %s", len(items), type(exc).__name__)
        return sent

    def dead_letter(
        self,
        *,
        body: str,
        message_id: str,
        event_id: str | None,
        kind: str,
        reason: str,
        receive_count: int,
    ) -> None:
        """Send the record to the DLQ with its reason. Raises `RetriableRecordError`
        if there is no DLQ configured or SQS fails (the record then stays in the
        queue and SQS's redrive moves it later)."""
        if not self.dlq_url:
            raise RetriableRecordError(kind, f"{reason} (no RATEBRIDGE_DLQ_URL: left to redrive)")

        def text(value: str) -> dict[str, str]:
            return {"DataType": "String", "StringValue": sqs_text(value[:MAX_REASON]) or "-"}

        try:
            self._client.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=body,
                MessageAttributes={
                    "ratebridge.reason": text(reason),
                    "ratebridge.kind": text(kind),
                    "ratebridge.eventId": text(event_id or "unknown"),
                    "ratebridge.sourceMessageId": text(message_id),
                    "ratebridge.receiveCount": {
                        "DataType": "Number",
                        "StringValue": str(receive_count),
                    },
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise RetriableRecordError(
                "dlq-unavailable", f"could not send to the DLQ ({type(exc).__name__})"
            ) from None
