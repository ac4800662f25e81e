"""Typed values the limiter takes and returns, and the validation of its inputs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real

from limiter import gcra
from limiter.errors import InvalidArgument

MAX_BUCKET_NAME = 200
MAX_REQUESTS = 1_000_000
MIN_PER_SECONDS = 0.001
MAX_PER_SECONDS = 7 * 86_400.0
MAX_SCHEDULE = 10_000
MAX_BLOCK_SECONDS = 86_400.0

# Printable ASCII without spaces: separators such as ':' '/' '#' are fine
# (`genesys:GET /api/v2/users/{id}` is written `genesys:GET:/api/v2/users/{id}`).
_BUCKET_NAME = re.compile(r"[!-~]+")


def validate_bucket(name: object) -> str:
    """Return `name` if it is a valid bucket name, else raise `InvalidArgument`."""
    if not isinstance(name, str):
        raise InvalidArgument(f"bucket name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidArgument("bucket name must not be empty")
    if len(name) > MAX_BUCKET_NAME:
        raise InvalidArgument(
            f"bucket name is {len(name)} characters long; the maximum is {MAX_BUCKET_NAME}"
        )
    if not _BUCKET_NAME.fullmatch(name):
        raise InvalidArgument(
            f"bucket name {name!r} may only contain printable ASCII without spaces"
        )
    return name


def whole_number(what: str, value: object, *, low: int, high: int) -> int:
    """`value` as an int in [low, high]; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be between {low} and {high}, got {value}")
    return value


def real_number(what: str, value: object, *, low: float, high: float) -> float:
    """`value` as a finite float in [low, high]; NaN, infinities and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidArgument(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgument(f"{what} must be finite, got {number}")
    if not low <= number <= high:
        raise InvalidArgument(f"{what} must be between {low:g} and {high:g}, got {number:g}")
    return number


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `requests` per `per_seconds` in every window, `burst` at once.

    `burst` (1 <= burst <= requests) is how many grants may be taken at the same
    instant by an idle bucket; the long-run rate is about
    (requests - burst + 1) / (1.01 * per_seconds) (see `limiter.gcra.Rate`).
    Raises `InvalidArgument` (a `ValueError`) on anything else.
    """

    requests: int
    per_seconds: float
    burst: int = 1

    def __post_init__(self) -> None:
        whole_number("requests", self.requests, low=1, high=MAX_REQUESTS)
        per = real_number(
            "per_seconds", self.per_seconds, low=MIN_PER_SECONDS, high=MAX_PER_SECONDS
        )
        object.__setattr__(self, "per_seconds", per)
        whole_number("burst", self.burst, low=1, high=MAX_REQUESTS)
        if self.burst > self.requests:
            raise InvalidArgument(
                f"burst ({self.burst}) must not exceed requests ({self.requests})"
            )

    @property
    def rate(self) -> gcra.Rate:
        return gcra.rate_for(self.requests, self.per_seconds, self.burst)

    def __str__(self) -> str:
        return f"{self.requests} per {self.per_seconds:g}s (burst {self.burst})"


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for `tokens` requests on every bucket in `buckets`, from time `at`.

    `at_us` is the slot the limiter reserved (epoch microseconds, exact);
    `acquire` returns once the clock has reached it. `waited` is how long the
    caller was held.
    """

    buckets: tuple[str, ...]
    tokens: int
    at_us: int
    requested_at: float

    @property
    def at(self) -> float:
        """The slot in epoch seconds."""
        return gcra.to_seconds(self.at_us)

    @property
    def waited(self) -> float:
        return max(0.0, self.at - self.requested_at)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of a non-blocking `try_acquire`."""

    granted: bool
    grant: Grant | None = None
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """`len(slots_us)` consecutive grants on `bucket`, one per slot.

    Made by one DynamoDB write; the caller paces its requests locally, sending
    request k no earlier than `slots[k]` (epoch seconds; `slots_us` exact).
    """

    bucket: str
    slots_us: tuple[int, ...]
    requested_at: float

    @property
    def slots(self) -> tuple[float, ...]:
        return tuple(gcra.to_seconds(s) for s in self.slots_us)

    def __len__(self) -> int:
        return len(self.slots_us)


@dataclass(frozen=True, slots=True)
class BucketState:
    """A bucket item as stored: its configuration copy and its GCRA state."""

    bucket: str
    version: int
    limit: Limit
    tat_us: int
    blocked_until_us: int
    granted: int

    @property
    def rate(self) -> gcra.Rate:
        return self.limit.rate


@dataclass(frozen=True, slots=True)
class ConfiguredLimit:
    """A limits-table item: what operators set."""

    bucket: str
    limit: Limit
    version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class BucketStatus:
    """A bucket seen at `now` (epoch seconds), for dashboards and `ratebridge status`."""

    bucket: str
    limit: Limit
    version: int
    now: float
    tat: float
    blocked_until: float
    granted: int
    waiting: int

    @property
    def blocked(self) -> bool:
        return self.blocked_until > self.now

    @property
    def backlog_seconds(self) -> float:
        """How far ahead of now the bucket is reserved."""
        return max(0.0, self.tat - self.limit.rate.tolerance_us / gcra.US_PER_SECOND - self.now)
