"""`ratebridge demo --limiter-only`: many workers in many processes share one bucket.

Starts an embedded local DynamoDB (moto server on 127.0.0.1), sets a limit,
and runs `processes` x `threads` workers (each process stands for a Lambda
container) that take grants as fast as they are given. Prints the rate once a
second, then the achieved rate against the limit, the most grants in any
window, and DynamoDB requests per grant.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from limiter import Limiter, RateLimited
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from ratebridge_tools.metering import DynamoDBMeter
from ratebridge_tools.servers import local_aws_env, start_moto
from ratebridge_tools.stats import format_table
from ratebridge_tools.windows import max_in_window


@dataclass(frozen=True)
class DemoConfig:
    processes: int = 4
    threads: int = 8
    requests: int = 50
    per_seconds: float = 1.0
    burst: int = 1
    duration: float = 10.0

    def __post_init__(self) -> None:
        if self.processes < 1 or self.threads < 1:
            raise ValueError("processes and threads must be at least 1")
        if not 0 < self.duration <= 3600:  # also refuses NaN
            raise ValueError(f"duration must be within (0, 3600] seconds, got {self.duration}")


@dataclass(frozen=True)
class DemoResult:
    config: DemoConfig
    slots: list[int]
    steady_grants: int
    steady_seconds: float
    requests_by_operation: dict[str, int]
    failed_conditions: int
    wall_s: float

    @property
    def grants(self) -> int:
        return len(self.slots)

    @property
    def limit_rate(self) -> float:
        return self.config.requests / self.config.per_seconds

    @property
    def rate(self) -> float:
        """Grants per second once every worker runs (after the first second)."""
        return self.steady_grants / self.steady_seconds if self.steady_seconds > 0 else 0.0

    @property
    def max_window(self) -> int:
        return max_in_window(self.slots, self.config.per_seconds * 1_000_000)

    @property
    def requests_per_grant(self) -> float:
        total = sum(self.requests_by_operation.values())
        return total / self.grants if self.grants else float("nan")


def _worker(
    endpoint: str, buckets_table: str, limits_table: str, bucket: str, threads: int, end: float
) -> tuple[list[int], dict[str, int], int]:
    meter = DynamoDBMeter()
    client = meter.attach(dynamodb_client(region="us-east-1", endpoint_url=endpoint))
    limiter = Limiter(
        DynamoDBStore(buckets_table=buckets_table, limits_table=limits_table, client=client)
    )
    slots: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while (remaining := end - time.time()) > 0:
            try:  # never wait past the end of the run: stop instead
                grant = limiter.acquire(bucket, timeout=remaining)
            except RateLimited:
                return
            with lock:
                slots.append(grant.at_us)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    usage = meter.usage()
    return slots, usage.by_operation, usage.failed_conditions


def run(config: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    """Run the demo; `say` receives progress lines."""
    started = time.time()
    say("starting an embedded local DynamoDB (moto server on 127.0.0.1) ...")
    with start_moto() as server, local_aws_env(server.url):
        suffix = uuid.uuid4().hex[:8]
        tables = (f"demo-buckets-{suffix}", f"demo-limits-{suffix}")
        store = DynamoDBStore(
            buckets_table=tables[0],
            limits_table=tables[1],
            client=dynamodb_client(region="us-east-1", endpoint_url=server.url),
        )
        admin = Limiter(store)
        admin.create_tables()
        bucket = "demo"
        admin.set_limit(bucket, config.requests, config.per_seconds, config.burst)
        workers = config.processes * config.threads
        say(
            f"limit {config.requests} per {config.per_seconds:g}s; {workers} workers in "
            f"{config.processes} processes share it for {config.duration:g}s"
        )
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.processes, mp_context=spawn) as pool:
            # Processes take a moment to start: begin the clock once they can run.
            pool.submit(time.sleep, 0).result()
            end = time.time() + config.duration + 1.0
            futures: list[Future[tuple[list[int], dict[str, int], int]]] = [
                pool.submit(_worker, server.url, *tables, bucket, config.threads, end)
                for _ in range(config.processes)
            ]
            last = admin.status(bucket).granted
            while not all(f.done() for f in futures):
                time.sleep(1.0)
                status = admin.status(bucket)
                say(
                    f"  {status.granted - last:4d} grants in the last second "
                    f"(limit {config.requests / config.per_seconds:g}/s), "
                    f"{status.waiting} waiting, {status.granted} in all"
                )
                last = status.granted
            results = [f.result() for f in futures]
    slots = sorted(s for r in results for s in r[0])
    ops: dict[str, int] = {}
    for _, by_op, _ in results:
        for op, n in by_op.items():
            ops[op] = ops.get(op, 0) + n
    # The first second is the workers starting up; the rate is measured after it.
    steady_from = (slots[0] if slots else 0) + 1_000_000
    steady_to = round(end * 1_000_000)
    return DemoResult(
        config=config,
        slots=slots,
        steady_grants=sum(1 for s in slots if steady_from <= s <= steady_to),
        steady_seconds=max(0.0, (steady_to - steady_from) / 1_000_000),
        requests_by_operation=ops,
        failed_conditions=sum(r[2] for r in results),
        wall_s=time.time() - started,
    )


def report(result: DemoResult) -> str:
    c = result.config
    rows = [
        ("workers", f"{c.processes * c.threads} ({c.processes} processes x {c.threads} threads)"),
        ("limit", f"{c.requests} per {c.per_seconds:g}s (burst {c.burst})"),
        ("grants", result.grants),
        ("achieved rate", f"{result.rate:.1f}/s of {result.limit_rate:g}/s"),
        ("utilization", f"{result.rate / result.limit_rate:.1%}"),
        ("max grants in any window", f"{result.max_window} (limit {c.requests})"),
        ("DynamoDB requests per grant", f"{result.requests_per_grant:.3f}"),
        (
            "  by operation",
            ", ".join(f"{k} {v}" for k, v in sorted(result.requests_by_operation.items())),
        ),
        ("  failed conditions", result.failed_conditions),
        ("wall time", f"{result.wall_s:.1f}s"),
    ]
    return format_table(("measure", "value"), rows)
