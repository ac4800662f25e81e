"""`ratebridge bench limiter`: ratebridge's limiter against the fine-grained demo.

Both run in this one process, on the same local DynamoDB server, with the
same limit and the same callers (threads) saturating one bucket. Each caller
loops: ask for permission, record when it was given. Requests to DynamoDB are
counted by botocore events on each strategy's own client (every HTTP attempt,
failed conditional writes included).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from limiter import Limiter
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from ratebridge_tools.bench.finegrained import FineGrainedDemo
from ratebridge_tools.metering import DynamoDBMeter, Usage
from ratebridge_tools.servers import local_aws_env, start_backend
from ratebridge_tools.stats import format_table, percentile
from ratebridge_tools.windows import max_in_window

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

STRATEGIES = ("fine-grained-demo", "ratebridge")


@dataclass(frozen=True)
class BenchConfig:
    backend: str = "dynalite"
    callers: tuple[int, ...] = (1, 16, 64)
    requests: int = 100
    per_seconds: float = 1.0
    burst: int = 1
    duration: float = 10.0
    strategies: tuple[str, ...] = STRATEGIES

    def __post_init__(self) -> None:
        if not self.callers or min(self.callers) < 1:
            raise ValueError("callers must be positive numbers")
        if not 0 < self.duration <= 3600:  # also refuses NaN
            raise ValueError(f"duration must be within (0, 3600] seconds, got {self.duration}")
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(
                f"unknown strategy {sorted(unknown)}: choose from {', '.join(STRATEGIES)}"
            )


@dataclass
class Cell:
    """One strategy at one concurrency: what it achieved and what it cost."""

    strategy: str
    callers: int
    duration: float
    requests: int
    per_seconds: float
    grants_in_duration: int
    grant_times: list[float] = field(repr=False)
    slot_times: list[float] = field(repr=False)
    latencies: list[float] = field(repr=False)
    usage: Usage

    @property
    def grants(self) -> int:
        return len(self.grant_times)

    @property
    def rate(self) -> float:
        return self.grants_in_duration / self.duration

    @property
    def limit_rate(self) -> float:
        return self.requests / self.per_seconds

    @property
    def max_window(self) -> int:
        """Most grants in any window, by the time each caller was let go."""
        return max_in_window(self.grant_times, self.per_seconds)

    @property
    def max_window_slots(self) -> int | None:
        """Most grants in any window by reserved slot (ratebridge only)."""
        return max_in_window(self.slot_times, self.per_seconds) if self.slot_times else None

    def per_grant(self, count: int) -> float:
        return count / self.grants if self.grants else float("nan")

    def summary(self) -> dict[str, object]:
        ops = self.usage.by_operation
        return {
            "strategy": self.strategy,
            "callers": self.callers,
            "grants": self.grants,
            "grants_per_s": round(self.rate, 2),
            "limit_per_s": self.limit_rate,
            "of_limit": round(self.rate / self.limit_rate, 4),
            "max_window_over_limit": round(self.max_window / self.requests, 4),
            "max_window_slots_over_limit": (
                None
                if self.max_window_slots is None
                else round(self.max_window_slots / self.requests, 4)
            ),
            "ddb_requests_per_grant": round(self.per_grant(self.usage.total), 4),
            "reads_per_grant": round(self.per_grant(self.usage.reads), 4),
            "writes_ok_per_grant": round(
                self.per_grant(self.usage.writes - self.usage.failed_conditions), 4
            ),
            "failed_conditions_per_grant": round(self.per_grant(self.usage.failed_conditions), 4),
            "by_operation": ops,
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 2),
        }


def run(config: BenchConfig, progress: Callable[[str], None] = print) -> list[Cell]:
    """Every strategy at every concurrency, on one freshly started backend."""
    for name in config.strategies:
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}: choose from {', '.join(STRATEGIES)}")
    cells: list[Cell] = []
    progress(f"starting {config.backend} on 127.0.0.1 ...")
    with start_backend(config.backend) as server, local_aws_env(server.url):
        suffix = uuid.uuid4().hex[:8]
        tables = {
            "buckets_table": f"bench-buckets-{suffix}",
            "limits_table": f"bench-limits-{suffix}",
        }
        setup = Limiter(DynamoDBStore(client=_client(server.url, 8), **tables))
        setup.create_tables()
        demo_table = f"bench-finegrained-{suffix}"
        FineGrainedDemo(
            _client(server.url, 8), demo_table, requests=1, per_seconds=1
        ).create_table()
        for callers in config.callers:
            for strategy in config.strategies:
                progress(f"{strategy}: {callers} callers for {config.duration:g}s ...")
                bucket = f"bench-{uuid.uuid4().hex[:8]}"
                meter = DynamoDBMeter()
                client = meter.attach(_client(server.url, callers + 8))
                acquire: Callable[[], float | None]
                if strategy == "ratebridge":
                    setup.set_limit(bucket, config.requests, config.per_seconds, config.burst)
                    limiter = Limiter(DynamoDBStore(client=client, **tables))

                    def acquire(lim: Limiter = limiter, b: str = bucket) -> float | None:
                        return lim.acquire(b, timeout=600).at
                else:
                    demo = FineGrainedDemo(
                        client, demo_table, requests=config.requests, per_seconds=config.per_seconds
                    )

                    def acquire(d: FineGrainedDemo = demo, b: str = bucket) -> float | None:
                        d.acquire(b, timeout=600)
                        return None  # no slots: a grant is when the decrement returns

                cells.append(_saturate(strategy, callers, acquire, meter, config))
    return cells


def _client(url: str, connections: int) -> DynamoDBClient:
    return dynamodb_client(region="us-east-1", endpoint_url=url, max_connections=connections)


def _saturate(
    strategy: str,
    callers: int,
    acquire: Callable[[], float | None],
    meter: DynamoDBMeter,
    config: BenchConfig,
) -> Cell:
    times: list[float] = []
    slots: list[float] = []
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(callers + 1)
    window: dict[str, float] = {}

    def work() -> None:
        barrier.wait()
        while time.time() < window["end"]:
            started = time.perf_counter()
            slot = acquire()
            granted = time.time()
            with lock:
                times.append(granted)
                if slot is not None:
                    slots.append(slot)
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(callers)]
    for thread in threads:
        thread.start()
    window["start"] = time.time()
    window["end"] = window["start"] + config.duration
    barrier.wait()
    for thread in threads:
        thread.join()
    in_duration = sum(1 for t in times if t <= window["end"])
    return Cell(
        strategy=strategy,
        callers=callers,
        duration=config.duration,
        requests=config.requests,
        per_seconds=config.per_seconds,
        grants_in_duration=in_duration,
        grant_times=sorted(times),
        slot_times=sorted(slots),
        latencies=latencies,
        usage=meter.usage(),
    )


HEADERS = (
    "strategy",
    "callers",
    "grants/s",
    "limit/s",
    "of limit",
    "max window / limit: slots",
    "as returned",
    "DDB req/grant",
    "reads/grant",
    "writes ok/grant",
    "failed cond/grant",
    "p50 ms",
    "p99 ms",
)


def table(cells: list[Cell]) -> str:
    rows = []
    for cell in cells:
        s = cell.summary()
        rows.append(
            (
                s["strategy"],
                s["callers"],
                s["grants_per_s"],
                s["limit_per_s"],
                f"{s['of_limit']:.1%}",
                "-"
                if s["max_window_slots_over_limit"] is None
                else f"{s['max_window_slots_over_limit']:.2f}",
                f"{s['max_window_over_limit']:.2f}",
                s["ddb_requests_per_grant"],
                s["reads_per_grant"],
                s["writes_ok_per_grant"],
                s["failed_conditions_per_grant"],
                s["p50_ms"],
                s["p99_ms"],
            )
        )
    return format_table(HEADERS, rows)


def to_json(config: BenchConfig, cells: list[Cell]) -> str:
    return json.dumps({"config": asdict(config), "results": [c.summary() for c in cells]}, indent=2)
