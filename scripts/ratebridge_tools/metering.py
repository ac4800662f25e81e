"""Count the DynamoDB requests a boto3 client makes, by operation and outcome.

Attaches to the client's botocore events, so it sees every HTTP attempt,
including botocore's own retries and failed conditional writes.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

READS = ("GetItem", "BatchGetItem", "Query", "Scan")
WRITES = ("UpdateItem", "PutItem", "DeleteItem", "TransactWriteItems")


@dataclass(frozen=True)
class Usage:
    """Requests by operation; `failed_conditions` are writes whose condition failed."""

    by_operation: dict[str, int]
    failed_conditions: int
    errors: int

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    @property
    def reads(self) -> int:
        return sum(n for op, n in self.by_operation.items() if op in READS)

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.by_operation.items() if op in WRITES)

    def __sub__(self, other: Usage) -> Usage:
        ops = set(self.by_operation) | set(other.by_operation)
        diff = {op: self.by_operation.get(op, 0) - other.by_operation.get(op, 0) for op in ops}
        return Usage(
            {op: n for op, n in diff.items() if n},
            self.failed_conditions - other.failed_conditions,
            self.errors - other.errors,
        )


class DynamoDBMeter:
    """Counts requests made through the clients it is attached to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: Counter[str] = Counter()
        self._failed_conditions = 0
        self._errors = 0

    def attach(self, client: Any) -> Any:
        """Start counting `client`'s requests; returns the client."""
        events = client.meta.events
        events.register("before-send.dynamodb.*", self._before_send)
        events.register("after-call.dynamodb.*", self._after_call)
        return client

    def usage(self) -> Usage:
        with self._lock:
            return Usage(dict(self._ops), self._failed_conditions, self._errors)

    def _before_send(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self._ops[event_name.rsplit(".", 1)[-1]] += 1

    def _after_call(self, parsed: dict[str, Any], **_: Any) -> None:
        code = parsed.get("Error", {}).get("Code")
        if code:
            with self._lock:
                if code == "ConditionalCheckFailedException":
                    self._failed_conditions += 1
                else:
                    self._errors += 1
