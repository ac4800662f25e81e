"""The limiter's errors: one root, retriable and permanent failures apart.

Retriable: `RateLimited` (wait `retry_after` seconds) and `StoreUnavailable`
(DynamoDB failed; the limiter failed closed, nothing was granted).
Permanent until someone acts: `LimitNotConfigured`, `InvalidArgument`.
"""

from __future__ import annotations


class LimiterError(Exception):
    """Root of every error the limiter raises on purpose."""


class InvalidArgument(LimiterError, ValueError):
    """A limit, bucket name or acquire argument is invalid; nothing was written."""


class LimitNotConfigured(LimiterError):
    """No limit exists for the bucket: set one (`Limiter.set_limit`, `ratebridge limits set`)."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"no limit is configured for bucket {bucket!r}: set one with "
            f"`ratebridge limits set {bucket} --requests N --per SECONDS`"
        )
        self.bucket = bucket


class RateLimited(LimiterError):
    """Permission would come later than the caller is willing to wait.

    `retry_after` is the number of seconds from now until the request would
    conform, computed from the bucket's state (a lower bound: others may
    reserve the capacity meanwhile). Nothing was reserved.
    """

    def __init__(self, bucket: str, retry_after: float, reason: str = "bucket is full") -> None:
        super().__init__(f"rate limited on {bucket!r}: {reason}; retry after {retry_after:.3f}s")
        self.bucket = bucket
        self.retry_after = retry_after
        self.reason = reason


class StoreUnavailable(LimiterError):
    """DynamoDB failed (error, throttling, timeout, missing table, no credentials).

    The limiter fails closed: no grant was issued. `hint` says what to do
    when there is something to do (for example, create the missing table).
    """

    def __init__(self, operation: str, detail: str, *, code: str = "", hint: str = "") -> None:
        message = f"DynamoDB {operation} failed: {detail}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.operation = operation
        self.code = code
        self.hint = hint
