"""One SQS batch: each record parsed, routed and run once, failures sorted out.

For every record, exactly one of:
- processed (or a duplicate, or a topic with no route: skipped) -> deleted;
- permanently bad -> sent to the DLQ now with its reason -> deleted here;
- waiting for capacity (the limiter or Genesys said "later") -> sent back as
  a copy delayed by the exact wait, so it returns when capacity exists
  instead of burning Lambda time, and the original is deleted: a wait does
  not spend one of the queue's maxReceiveCount receives. After
  RATEBRIDGE_MAX_DEFERRALS waits it goes to the DLQ with its reason;
- failed retriably -> reported in `batchItemFailures`, its visibility timeout
  set to the wait when one is known, else to an exponential backoff
  (RATEBRIDGE_RETRY_BACKOFF_SECONDS x 2^(receive - 1)): a fault of a few
  seconds costs seconds, not the queue's visibility timeout, and the receives
  that count toward maxReceiveCount are spread over a longer outage. On its
  last allowed receive it goes to the DLQ with its reason instead.
Once one record of the batch learns it must wait (the limiter or Genesys said
so), the records after it are put back with the same wait without trying.
The handler never raises for a bad record.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from pydantic import ValidationError

from processor.app import App
from processor.errors import PermanentRecordError, RecordError, RetriableRecordError
from processor.events import GenesysEnvelope
from processor.genesys.errors import (
    GenesysError,
    PermanentGenesysError,
    PermissionTimeout,
    TokenPending,
    UpstreamRateLimited,
)
from processor.observability import logger
from processor.queue import DEFERRALS_ATTRIBUTE, Deferral, Requeue
from processor.routes import describe_validation, match

SAFETY_SECONDS = 3.0  # left at the end of the invocation for the response and the deferrals
IN_PROGRESS_RETRY = 5.0  # the same event is being processed elsewhere: look again after this
UNROUTED = "unrouted"
# Retriable kinds that mean "no capacity now", not "something failed".
CAPACITY_KINDS = frozenset({"PermissionTimeout", "UpstreamRateLimited", "TokenPending", "deferred"})


class RecordDone(Exception):
    """The record was taken care of (dead-lettered) from inside a failure path."""


_STATUS_METRIC = {"processed": "Processed", "stale": "Stale", "skipped": "Skipped"}


@dataclass
class _BatchState:
    deadline: float
    wait: float | None = None  # once set, the rest of the batch is put back for this long
    deferrals: list[Deferral] = field(default_factory=list)
    requeues: list[Requeue] = field(default_factory=list)


def handle_batch(app: App, event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    """Process one SQS event (a batch of records); returns the partial batch response."""
    remaining = context.get_remaining_time_in_millis() / 1000
    state = _BatchState(deadline=app.clock() + remaining - SAFETY_SECONDS)
    app.idempotency.register_lambda_context(context)
    token = getattr(app.deps._genesys, "token", None)
    refreshes_before = token.refreshes if token is not None else 0

    def record_handler(record: SQSRecord) -> None:
        try:
            _handle_record(app, state, record)
        except RecordDone:
            return

    try:
        response = process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )
        if state.requeues:
            # Records that wait for capacity come back as delayed copies; the
            # originals are acknowledged (left out of the failures) only when
            # their copy was sent. The others keep the ordinary retry.
            sent = app.queue.requeue(state.requeues)
            response["batchItemFailures"] = [
                f for f in response["batchItemFailures"] if f["itemIdentifier"] not in sent
            ]
            state.deferrals += [
                Deferral(r.message_id, handle, r.source_arn, r.delay_seconds)
                for r in state.requeues
                if r.message_id not in sent
                for handle in [_receipt(event, r.message_id)]
                if handle
            ]
        return response
    finally:
        if state.deferrals:
            app.queue.defer(state.deferrals)
        token = getattr(app.deps._genesys, "token", None)
        if token is not None:
            app.recorder.token_refreshes(
                app.settings.genesys.token_bucket, token.refreshes - refreshes_before
            )
        app.recorder.flush()


def _handle_record(app: App, state: _BatchState, record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    event_id: str | None = None
    route_name = UNROUTED
    try:
        if state.wait is not None:
            raise RetriableRecordError("deferred", "the batch is waiting for capacity", state.wait)
        if app.clock() > state.deadline:
            raise RetriableRecordError("no-time-left", "the invocation is about to time out", 0)
        envelope = parse_envelope(record.body, app.settings.max_body_bytes)
        event_id = envelope.id
        logger.append_keys(event_id=event_id, correlation_id=envelope.correlation_id)
        route = match(envelope.topic)
        if route is None:
            app.recorder.route(UNROUTED, "Skipped")
            logger.info("no route for this topic: skipped", extra={"topic": envelope.topic})
            return
        route_name = route.name
        body = route.parse_body(envelope)
        outcome, duplicate = _run(app, state, route, envelope, body)
        metric = "Duplicates" if duplicate else _STATUS_METRIC[outcome.status]
        app.recorder.route(route_name, metric)
        logger.debug("record done", extra={"route": route_name, "metric": metric})
    except PermanentRecordError as exc:
        _dead_letter(app, record, event_id, route_name, exc, receive_count)
    except RetriableRecordError as exc:
        if exc.kind in CAPACITY_KINDS:
            _wait_for_capacity(app, state, record, event_id, route_name, exc, receive_count)
            raise
        if receive_count >= app.settings.max_receive_count:
            _dead_letter(app, record, event_id, route_name, exc, receive_count)
            return
        app.recorder.route(route_name, "Failed")
        logger.warning(
            "record put back",
            extra={"kind": exc.kind, "reason": exc.reason, "retry_after": exc.retry_after},
        )
        _defer(app, state, record, _retry_wait(app, exc, receive_count))
        raise
    finally:
        logger.remove_keys(["event_id", "correlation_id"])


def _run(app: App, state: _BatchState, route: Any, envelope: GenesysEnvelope, body: Any) -> Any:
    """Run the route within the time left; map every failure to a record error."""
    from processor.genesys.transport import deadline

    try:
        with deadline(min(state.deadline, app.clock() + app.settings.max_wait_seconds + 15)):
            return app.run_route(route, envelope, body)
    except RecordError:
        raise
    except (PermissionTimeout, UpstreamRateLimited, TokenPending) as exc:
        # Capacity, not this record: the rest of the batch would wait the same.
        state.wait = exc.retry_after
        raise RetriableRecordError(type(exc).__name__, str(exc), exc.retry_after) from None
    except PermanentGenesysError as exc:
        raise PermanentRecordError("genesys-rejected", str(exc)) from None
    except GenesysError as exc:
        raise RetriableRecordError(type(exc).__name__, str(exc), exc.retry_after) from None
    except IdempotencyAlreadyInProgressError:
        raise RetriableRecordError(
            "in-progress", "the same event is being processed elsewhere", IN_PROGRESS_RETRY
        ) from None
    except IdempotencyPersistenceLayerError as exc:
        raise RetriableRecordError("idempotency-unavailable", type(exc).__name__) from None


def parse_envelope(body: str, max_bytes: int) -> GenesysEnvelope:
    """The record body as a Genesys EventBridge envelope; `PermanentRecordError` if not."""
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PermanentRecordError("oversized", f"body is {size} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PermanentRecordError(
            "not-json", f"body is not JSON ({exc.msg} at {exc.pos})"
        ) from None
    except (ValueError, RecursionError):  # e.g. absurd nesting
        raise PermanentRecordError("not-json", "body is not JSON this processor can read") from None
    if not isinstance(data, dict):
        raise PermanentRecordError(
            "not-an-envelope", f"body is JSON {type(data).__name__}, not an object"
        )
    try:
        return GenesysEnvelope.model_validate(data)
    except ValidationError as exc:
        raise PermanentRecordError("not-an-envelope", describe_validation(exc)) from None
    except RecursionError:
        raise PermanentRecordError("not-an-envelope", "body is nested too deeply") from None


def _wait_for_capacity(
    app: App,
    state: _BatchState,
    record: SQSRecord,
    event_id: str | None,
    route_name: str,
    exc: RetriableRecordError,
    receive_count: int,
) -> None:
    """Plan a delayed copy of `record` (see `handle_batch`), or, after too many
    waits, send it to the DLQ with its reason (then `RecordDone` acknowledges it)."""
    attributes: dict[str, Any] = dict(record.raw_event.get("messageAttributes") or {})
    attribute = attributes.get(DEFERRALS_ATTRIBUTE) or {}
    try:
        waited = int(attribute.get("stringValue") or 0)
    except (ValueError, TypeError):
        waited = 0
    if waited >= app.settings.max_deferrals:
        reason = f"no capacity after {waited} waits: {exc.reason}"
        _dead_letter(
            app,
            record,
            event_id,
            route_name,
            RetriableRecordError("no-capacity", reason),
            receive_count,
        )
        raise RecordDone from None
    app.recorder.route(route_name, "Deferred")
    state.requeues.append(
        Requeue(
            message_id=record.message_id,
            body=record.body,
            source_arn=record.event_source_arn,
            delay_seconds=_delay(app, exc.retry_after or 0.0),
            deferrals=waited + 1,
        )
    )


def _receipt(event: dict[str, Any], message_id: str) -> str | None:
    for record in event.get("Records", []):
        if record.get("messageId") == message_id:
            return str(record.get("receiptHandle"))
    return None


def _delay(app: App, retry_after: float) -> int:
    # A little jitter so records put back together do not all return in the same second.
    seconds = math.ceil(max(0.0, retry_after) + random.uniform(0, 1))  # noqa: S311
    return min(seconds, app.settings.max_defer_seconds)


def _retry_wait(app: App, exc: RetriableRecordError, receive_count: int) -> float:
    """The wait the failure named, else the backoff for this receive."""
    if exc.retry_after is not None:
        return float(exc.retry_after)
    exponent = min(max(receive_count, 1) - 1, 16)
    return float(
        min(app.settings.retry_backoff_seconds * 2**exponent, app.settings.max_defer_seconds)
    )


def _defer(app: App, state: _BatchState, record: SQSRecord, retry_after: float) -> None:
    seconds = _delay(app, retry_after)
    state.deferrals.append(
        Deferral(
            message_id=record.message_id,
            receipt_handle=record.receipt_handle,
            source_arn=record.event_source_arn,
            seconds=seconds,
        )
    )


def _dead_letter(
    app: App,
    record: SQSRecord,
    event_id: str | None,
    route_name: str,
    exc: RecordError,
    receive_count: int,
) -> None:
    reason = getattr(exc, "reason", str(exc))
    logger.error(
        "record dead-lettered",
        extra={
            "event_id": event_id or f"unknown (message {record.message_id})",
            "kind": exc.kind,
            "reason": reason,
            "receive_count": receive_count,
        },
    )
    app.queue.dead_letter(
        body=record.body,
        message_id=record.message_id,
        event_id=event_id,
        kind=exc.kind,
        reason=reason,
        receive_count=receive_count,
    )
    app.recorder.route(route_name, "DeadLettered")
