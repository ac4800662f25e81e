"""The baseline: the design of aws-samples/fine-grained-rate-limit-demo.

Reimplemented from its `lambda/rate_limit.py` (leaky-bucket usage plan, one
shard), generalised from its fixed one-minute window to `per_seconds`:
- a bucket item holds `token_count` and `last_updated` (the window number);
- every attempt first tries a conditional refill, `SET token_count = :rate`
  if `:now > last_updated` (a new window has begun), then a conditional
  decrement, `SET last_updated = :now ADD token_count -1` if
  `token_count > 0`; a failed decrement means "throttled".
The demo returns "throttled" to its caller. A caller that must eventually
send its request (as the processor must) tries again after a backoff
(exponential from 25 ms, capped at 1 s, full jitter: AWS's usual advice).

Note: the issue summarised this design as "GetItem, then a conditional
decrement"; the repository's code makes two conditional writes per attempt
and no read, and that is what is reproduced here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

TABLE_KEYS = {
    "KeySchema": [
        {"AttributeName": "bucket_id", "KeyType": "HASH"},
        {"AttributeName": "bucket_shard_id", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "bucket_id", "AttributeType": "S"},
        {"AttributeName": "bucket_shard_id", "AttributeType": "N"},
    ],
}


class FineGrainedDemo:
    """`acquire` blocks until the demo's `should_throttle` says no."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        requests: int,
        per_seconds: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 1,
    ) -> None:
        self._client = client
        self._table = table
        self._requests = requests
        self._per_seconds = per_seconds
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)  # noqa: S311 - backoff jitter, not crypto

    def create_table(self) -> None:
        try:
            self._client.create_table(
                TableName=self._table, BillingMode="PAY_PER_REQUEST", **TABLE_KEYS
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        self._client.get_waiter("table_exists").wait(
            TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def acquire(self, bucket: str, timeout: float = 60.0) -> float:
        """Retry until granted; returns the time of the grant. Raises TimeoutError."""
        deadline = self._clock() + timeout
        backoff = 0.025
        while True:
            if not self.should_throttle(bucket):
                return self._clock()
            if self._clock() >= deadline:
                raise TimeoutError(f"no token for {bucket!r} within {timeout}s")
            self._sleep(self._rng.uniform(0, backoff))
            backoff = min(1.0, backoff * 2)

    def should_throttle(self, bucket: str) -> bool:
        now = int(self._clock() / self._per_seconds)
        key = {"bucket_id": {"S": bucket}, "bucket_shard_id": {"N": "0"}}
        try:  # refill at the start of a window
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET token_count = :rate_limit",
                ConditionExpression=(
                    ":now > last_updated OR attribute_not_exists(bucket_id) "
                    "AND :rate_limit > :burst_rate"
                ),
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":rate_limit": {"N": str(self._requests)},
                    ":burst_rate": {"N": "0"},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        try:  # take one
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET last_updated = :now ADD token_count :mod",
                ConditionExpression="token_count > :min_val",
                ExpressionAttributeValues={
                    ":mod": {"N": "-1"},
                    ":now": {"N": str(now)},
                    ":min_val": {"N": "0"},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return True
        return False
