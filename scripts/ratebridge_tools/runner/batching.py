"""When a batch is ready: Lambda's batching rules, with an injected clock.

Lambda invokes the function with a batch when the first of these happens:
the batch holds `batch_size` records; `batching_window` seconds have passed
since its first record; the next records would take the event past the 6 MB
invocation payload limit. With a window of 0 the batch is whatever the first
successful receive returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ratebridge_tools.runner.config import MAX_PAYLOAD_BYTES, MAX_RECEIVE
from ratebridge_tools.runner.records import EVENT_OVERHEAD_BYTES, Record, record_size

Clock = Callable[[], float]


class BatchBuilder:
    """Collects records for one batch and says when it is due.

    `add` takes the records of one receive and returns those that did not fit
    under the payload limit: they open the next batch, the way Lambda carries
    them over (they are already received and invisible).
    """

    def __init__(
        self,
        *,
        batch_size: int,
        batching_window: float,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        clock: Clock = time.monotonic,
    ) -> None:
        self.batch_size = batch_size
        self.batching_window = batching_window
        self.max_payload_bytes = max_payload_bytes
        self._clock = clock
        self.records: list[Record] = []
        self.payload_bytes = EVENT_OVERHEAD_BYTES
        self.opened_at: float | None = None
        self._payload_full = False

    def __len__(self) -> int:
        return len(self.records)

    def add(self, records: Sequence[Record]) -> list[Record]:
        """Add records in order; return the ones past the batch size or payload limit."""
        for index, record in enumerate(records):
            size = record_size(record)
            over_payload = self.payload_bytes + size > self.max_payload_bytes
            if len(self.records) >= self.batch_size or (self.records and over_payload):
                self._payload_full = self._payload_full or over_payload
                return list(records[index:])
            if self.opened_at is None:
                self.opened_at = self._clock()
            self.records.append(record)
            self.payload_bytes += size
        return []

    def room(self) -> int:
        """How many messages the next ReceiveMessage should ask for (1-10)."""
        return max(1, min(MAX_RECEIVE, self.batch_size - len(self.records)))

    def window_left(self) -> float:
        """Seconds until the window closes (the full window while empty)."""
        if self.opened_at is None:
            return self.batching_window
        return max(0.0, self.opened_at + self.batching_window - self._clock())

    def is_full(self) -> bool:
        return len(self.records) >= self.batch_size or self._payload_full

    def is_due(self) -> bool:
        """True when the batch must be sent now; never for an empty batch."""
        if not self.records:
            return False
        return self.is_full() or self.window_left() <= 0
