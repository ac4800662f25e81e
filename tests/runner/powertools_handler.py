"""A handler written the way the processor is: Powertools' BatchProcessor and
process_partial_response, plus the Powertools parser's SqsModel checking that
the runner's events have Lambda's shape (an invalid event raises, failing the
whole batch, which the tests would see).

Records whose body starts with "fail" fail; every record is traced like in
`handlers`.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsModel

from tests.runner.handlers import _invocation, _trace

# A batch whose records all fail reports them all rather than raising, so the
# test sees per-record failures on every delivery.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    if record.body.startswith("fail"):
        raise ValueError(f"cannot process {record.body}")


def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    SqsModel.model_validate(event)
    entry = _invocation(event, context)
    response = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=processor,
        context=context,
    )
    _trace({**entry, "result": response, "end": time.time()})
    return response
