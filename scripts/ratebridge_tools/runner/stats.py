"""What a run did: typed results, per batch and per run, and a thread-safe recorder."""

from __future__ import annotations

import dataclasses
import enum
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from ratebridge_tools.stats import percentile


class Outcome(enum.StrEnum):
    """How one invocation ended, and so what was deleted."""

    SUCCEEDED = "succeeded"  # returned without failures: every message deleted
    PARTIAL = "partial"  # returned batchItemFailures: the others deleted
    INVALID_RESPONSE = "invalid_response"  # a response Lambda reads as complete failure
    HANDLER_ERROR = "handler_error"  # raised: nothing deleted
    TIMEOUT = "timeout"  # ran past the function timeout: killed, nothing deleted
    CRASHED = "crashed"  # the worker process died: nothing deleted
    ABORTED = "aborted"  # still running when the shutdown grace ran out: killed


@dataclass(frozen=True)
class BatchOutcome:
    """One invocation: which messages it carried and which were deleted.

    `started` is the epoch time it was handed to the worker; `duration` the
    seconds until its reply or its kill, as the runner saw them. `error` is
    a one-line reason for anything but a success."""

    number: int
    worker_pid: int
    request_id: str
    message_ids: tuple[str, ...]
    outcome: Outcome
    deleted: tuple[str, ...]
    reported_failed: tuple[str, ...]
    delete_failed: tuple[str, ...]
    started: float
    duration: float
    error: str | None = None


@dataclass(frozen=True)
class RunStats:
    """Counters for one run.

    A message received twice counts twice in `records_received`.
    `durations` are the handler's own times (seconds) for invocations that
    returned or raised; `init_durations` each cold start's, from spawning the
    process to the handler imported. `worker_pids` lists every worker process
    the run started, so callers can check none is left."""

    batches: int = 0
    records_received: int = 0
    records_deleted: int = 0
    records_reported_failed: int = 0
    invalid_responses: int = 0
    handler_errors: int = 0
    timeouts: int = 0
    worker_crashes: int = 0
    worker_restarts: int = 0
    aborted: int = 0
    delete_errors: int = 0
    receive_errors: int = 0
    max_in_flight: int = 0
    largest_batch: int = 0
    durations: tuple[float, ...] = ()
    init_durations: tuple[float, ...] = ()
    worker_pids: tuple[int, ...] = ()
    elapsed: float = 0.0
    stop_reason: str | None = None

    def duration_percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of invocation durations, seconds; NaN when none."""
        return percentile(self.durations, q)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: lists instead of tuples, duration percentiles added."""
        data = dataclasses.asdict(self)
        data["durations"] = list(self.durations)
        data["init_durations"] = list(self.init_durations)
        data["worker_pids"] = list(self.worker_pids)
        for q in (50, 95, 99):
            value = self.duration_percentile(q)
            data[f"duration_p{q}"] = None if math.isnan(value) else value
        return data


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays, taken about once a second.

    Queue counts are SQS's approximate numbers (None until first read or
    when the read failed); `busy_workers` are running an invocation."""

    elapsed: float
    stats: RunStats
    queue_visible: int | None
    queue_not_visible: int | None
    queue_delayed: int | None
    busy_workers: int
    workers: int


# The plain counters; max_in_flight and largest_batch are kept by the recorder itself.
_COUNTERS = {
    f.name
    for f in dataclasses.fields(RunStats)
    if f.type == "int" and f.name not in {"max_in_flight", "largest_batch"}
}


@dataclass
class StatsRecorder:
    """The mutable counters behind RunStats; every method is thread-safe."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: dict[str, int] = field(default_factory=dict)
    _durations: list[float] = field(default_factory=list)
    _init_durations: list[float] = field(default_factory=list)
    _worker_pids: list[int] = field(default_factory=list)
    _in_flight: int = 0
    _max_in_flight: int = 0
    _largest_batch: int = 0

    def add(self, **counts: int) -> None:
        """Add to named RunStats counters; raises ValueError for a name RunStats lacks."""
        unknown = set(counts) - _COUNTERS
        if unknown:
            raise ValueError(f"not RunStats counters: {sorted(unknown)}")
        with self._lock:
            for name, value in counts.items():
                self._counts[name] = self._counts.get(name, 0) + value

    def invocation_started(self, size: int) -> None:
        with self._lock:
            self._counts["batches"] = self._counts.get("batches", 0) + 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._largest_batch = max(self._largest_batch, size)

    def invocation_ended(self, duration: float | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if duration is not None:
                self._durations.append(duration)

    def worker_started(self, pid: int) -> None:
        with self._lock:
            self._worker_pids.append(pid)

    def worker_ready(self, init_seconds: float) -> None:
        with self._lock:
            self._init_durations.append(init_seconds)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def worker_pids(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(self._worker_pids)

    def snapshot(self, *, elapsed: float, stop_reason: str | None) -> RunStats:
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
            base = RunStats(
                max_in_flight=self._max_in_flight,
                largest_batch=self._largest_batch,
                durations=tuple(self._durations),
                init_durations=tuple(self._init_durations),
                worker_pids=tuple(self._worker_pids),
                elapsed=elapsed,
                stop_reason=stop_reason,
            )
            return dataclasses.replace(base, **counts)
