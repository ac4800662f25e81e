"""Why a record was not processed: permanent (to the DLQ now) or retriable (back to the queue).

`RecordError` is the root. `PermanentRecordError`: the record itself is bad
(not JSON, not an envelope, a field missing or of the wrong type, too big)
and no retry can help: it goes to the DLQ with its reason. `RetriableRecordError`:
something outside the record failed (permission not available in the time
left, Genesys or DynamoDB unavailable, the same event in progress elsewhere);
the record goes back to the queue, after `retry_after` seconds when known.
Messages name the event id and the reason; they never hold a secret or a token.
"""

from __future__ import annotations


class RecordError(Exception):
    """Root of the processor's record failures. `kind` is a short stable label."""

    kind = "error"
    retriable = False
    retry_after: float | None = None


class PermanentRecordError(RecordError):
    """The record can never be processed as it is."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class RetriableRecordError(RecordError):
    """Try the record again later (after `retry_after` seconds, if known)."""

    retriable = True

    def __init__(self, kind: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after
