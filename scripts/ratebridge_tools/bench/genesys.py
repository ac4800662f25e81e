"""`ratebridge bench genesys`: the tutorial's approach against ratebridge, on the emulator.

Both strategies drain the same backlog of K `GET /api/v2/users/{id}` tasks
(random UUIDs from a fixed seed) with the same number of workers, against the
same Genesys emulator settings. Each worker is a thread of this process
standing for one Lambda container, with client objects of its own; the
backlog is one in-memory queue standing for SQS.

- seed (the tutorial, `ratebridge_tools.bench.seed`): each container logs in
  on first use and keeps its own token; a 429 is retried up to 3 times,
  sleeping `Retry-After * 2**attempt` inside the container, then the call
  fails and so does its task. No shared limiter: the number of workers (SQS
  `maximum_concurrency`) is the only global control. In the tutorial's
  deployment a failed message would come back after the 300 s visibility
  timeout (3 receives, then the DLQ); the benchmark does not wait for that,
  so the seed's failures are final here.
- ratebridge: each container has its own `GenesysClient.from_settings(...)`
  (its own limiter instance, token cache and connection pool), all sharing
  one local DynamoDB for the limiter's buckets and the token. A retriable
  error (`UpstreamRateLimited`, `PermissionTimeout`, ...) is not slept on in
  the container: the task goes back to the backlog, not to be taken before
  now + `retry_after` (as an SQS message returns after its visibility
  timeout), and the worker takes other work. A task fails for good on a
  permanent error, or once it has been received `MAX_RECEIVES` times (the DLQ).
  The client-wide bucket has the emulator's limit (burst 1% of it, at least
  1); the token bucket 10 per 60 s.

The emulator is a fresh child process per cell, stopped at the end of it, so
late requests from one cell cannot reach the next; each cell also has its own
OAuth client, and only that client's records are counted. Its API limit is
`limit_scope="client"` (every token of the OAuth client shares one sliding
window): Genesys counts per token, so with per-token windows N containers
holding N tokens would get N times the budget, which is exactly what Genesys
forbids ("spreading calls over many tokens to dodge limits can get the whole
org rate-limited and the client disabled"). The token endpoint keeps the
emulator's default limit, 60 token requests per 60 s per client.

Every figure except the task outcomes comes from the emulator's record, not
from the workers' own counts. Each cell is bounded by `cell_timeout`: then
sleeping workers are woken and stop before their next request, in-flight
requests end within their read timeout, and the cell is reported as timed out
with the tasks it left unfinished.

JSON (`to_json`): `{"config": {...}, "results": [cell, ...]}`, each cell with
the keys listed in `RESULT_KEYS`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from limiter import Limit, Limiter
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from processor.genesys.credentials import Credentials
from processor.genesys.errors import GenesysError
from processor.genesys.token_store import TokenStore
from processor.settings import Settings
from ratebridge_tools.emulator import EmulatorConfig, RequestRecord, start_emulator
from ratebridge_tools.servers import LOCAL_AWS_ENV, local_aws_env, start_backend
from ratebridge_tools.stats import format_table

if TYPE_CHECKING:
    from processor.genesys.client import GenesysClient
    from ratebridge_tools.bench.seed import SeedGenesys

STRATEGIES = ("seed", "ratebridge")
BACKENDS = ("dynalite", "moto")
MAX_WORKERS = 512  # threads of this process; more says nothing new and starves the machine

# ratebridge's side of the modelling.
TOKEN_BUCKET_LIMIT = Limit(10, 60.0, 1)  # /oauth/token requests, fleet-wide
TASK_BUDGET_S = Settings().max_wait_seconds  # a record's time budget for permission
MAX_RECEIVES = Settings().max_receive_count  # maxReceiveCount: then the DLQ
DEFAULT_RETRY_S = 1.0  # visibility timeout for a retriable error without retry_after
READ_TIMEOUT_S = 10.0  # per HTTP request, both strategies
CONTAINER_CONNECTIONS = 2  # one container makes one call at a time

PROGRESS_EVERY_S = 5.0
STOP_GRACE_S = READ_TIMEOUT_S + 5.0  # in-flight requests end within their read timeout


@dataclass(frozen=True)
class BenchConfig:
    """What to compare. Raises ValueError, naming the setting, when a value is unusable."""

    backend: str = "dynalite"
    concurrency: tuple[int, ...] = (16, 64)
    backlog: int = 300
    requests: int = 100
    per_seconds: float = 10.0
    strategies: tuple[str, ...] = STRATEGIES
    cell_timeout: float = 300.0
    ids_seed: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}: choose from {', '.join(BACKENDS)}")
        if not self.concurrency or not all(1 <= c <= MAX_WORKERS for c in self.concurrency):
            raise ValueError(
                f"concurrency must be whole numbers from 1 to {MAX_WORKERS} (got "
                f"{','.join(map(str, self.concurrency)) or 'none'})"
            )
        if self.backlog < 1:
            raise ValueError(f"the backlog must hold at least 1 task (got {self.backlog})")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ValueError(
                f"strategies must be distinct names from {', '.join(STRATEGIES)} "
                f"(got {','.join(self.strategies) or 'none'})"
            )
        if not (math.isfinite(self.cell_timeout) and self.cell_timeout > 0):
            raise ValueError("the cell timeout must be a positive number of seconds")
        # The same checks the limiter and the emulator apply, with their messages.
        try:
            Limit(self.requests, self.per_seconds, self.burst)
            EmulatorConfig(rate_limit=self.requests, rate_period_s=self.per_seconds)
        except ValueError as exc:
            raise ValueError(
                f"a limit of {self.requests} per {self.per_seconds:g} s: {exc}"
            ) from None

    @property
    def burst(self) -> int:
        """ratebridge's burst: 1% of the limit, at least 1 (keeps 99% of the throughput)."""
        return max(1, self.requests // 100)

    @property
    def limit_per_s(self) -> float:
        return self.requests / self.per_seconds


def task_ids(count: int, seed: int) -> list[str]:
    """`count` distinct random user ids (UUID v4), the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids[str(uuid.UUID(int=rng.getrandbits(128), version=4))] = None
    return list(ids)


# -- the backlog (SQS, reduced to what the benchmark needs) ----------------------


@dataclass
class Task:
    user_id: str
    receives: int = 0


class Backlog:
    """A queue of tasks, each not to be taken before its time; thread-safe.

    Workers `take` a ready task (waiting for one if others are in flight or
    not due yet) and settle it with `complete`, `fail` or `retry`. `take`
    returns None once every task is settled or the backlog is `close`d;
    after `close` nothing more is settled, so the counts are those of the
    cell's time.
    """

    def __init__(self, user_ids: Sequence[str], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._queue: list[tuple[float, int, Task]] = [
            (0.0, next(self._order), Task(uid)) for uid in user_ids
        ]
        self.total = len(user_ids)
        self.done = 0
        self.failed = 0
        self.failures: Counter[str] = Counter()
        self.requeues: Counter[str] = Counter()
        self.finished_at: float | None = None
        self._closed = False

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed

    def take(self) -> Task | None:
        with self._cond:
            while not self._closed and self.left > 0:
                now = self._clock()
                if self._queue and self._queue[0][0] <= now:
                    task = heapq.heappop(self._queue)[2]
                    task.receives += 1
                    return task
                # Nothing due: wait for the next due time, a retry or the end.
                self._cond.wait(self._queue[0][0] - now if self._queue else None)
            return None

    def complete(self, task: Task) -> None:
        with self._cond:
            if not self._closed:
                self.done += 1
                self._settled()

    def fail(self, task: Task, reason: str) -> None:
        with self._cond:
            if not self._closed:
                self.failed += 1
                self.failures[reason] += 1
                self._settled()

    def retry(self, task: Task, not_before: float, reason: str) -> None:
        with self._cond:
            if not self._closed:
                heapq.heappush(self._queue, (not_before, next(self._order), task))
                self.requeues[reason] += 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_settled(self, timeout: float, report: Callable[[], None]) -> bool:
        """Wait until every task is settled (True) or `timeout` passes (False),
        calling `report` every `PROGRESS_EVERY_S`."""
        deadline = self._clock() + timeout
        next_report = self._clock() + PROGRESS_EVERY_S
        while True:
            with self._cond:
                while self.left > 0:
                    now = self._clock()
                    if now >= min(deadline, next_report):
                        break
                    self._cond.wait(min(deadline, next_report) - now)
                if self.left == 0:
                    return True
            if self._clock() >= deadline:
                return False
            report()
            next_report += PROGRESS_EVERY_S

    def _settled(self) -> None:
        if self.left == 0:
            self.finished_at = self._clock()
            self._cond.notify_all()


# -- the workers ----------------------------------------------------------------


class CellStopped(Exception):
    """The cell's time is up: raised from a worker's sleep so it makes no more requests."""


def interruptible_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A `sleep` for the clients that raises `CellStopped` as soon as `stop` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(max(0.0, seconds)):
            raise CellStopped

    return sleep


def seed_worker(container: SeedGenesys, backlog: Backlog) -> None:
    """One tutorial container: a call that fails fails its task (no redelivery here)."""
    from PureCloudPlatformClientV2.rest import ApiException

    while (task := backlog.take()) is not None:
        try:
            container.get_user(task.user_id)
        except CellStopped:
            return
        except Exception as exc:  # noqa: BLE001 - counted by kind and reported
            kind = (
                f"ApiException({exc.status})"
                if isinstance(exc, ApiException)
                else type(exc).__name__
            )
            backlog.fail(task, kind if container.logged_in else f"{kind} at login")
        else:
            backlog.complete(task)


def ratebridge_worker(container: GenesysClient, backlog: Backlog) -> None:
    """One ratebridge container: a retriable error sends the task back for later."""
    while (task := backlog.take()) is not None:
        try:
            with container.deadline(time.time() + TASK_BUDGET_S):
                container.get_user(task.user_id)
        except CellStopped:
            return
        except GenesysError as exc:
            reason = type(exc).__name__
            if exc.retriable and task.receives < MAX_RECEIVES:
                wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_S
                backlog.retry(task, time.time() + wait, reason)
            else:
                backlog.fail(task, reason)
        except Exception as exc:  # noqa: BLE001 - counted by kind and reported
            backlog.fail(task, type(exc).__name__)
        else:
            backlog.complete(task)


# -- one cell -------------------------------------------------------------------


@dataclass
class Cell:
    """One strategy at one concurrency: what it achieved, and what Genesys saw."""

    strategy: str
    workers: int
    config: BenchConfig = field(repr=False)
    done: int
    failed: int
    drained: bool
    elapsed_s: float  # until drained, or until the cell timed out
    failures: dict[str, int]
    requeues: dict[str, int]
    stuck_workers: int
    records: list[RequestRecord] = field(repr=False)
    max_in_window: int

    @property
    def unfinished(self) -> int:
        return self.config.backlog - self.done - self.failed

    def _api(self) -> list[RequestRecord]:
        return [r for r in self.records if r.path.startswith("/api/")]

    def _token(self) -> list[RequestRecord]:
        return [r for r in self.records if r.path == "/oauth/token"]

    def summary(self) -> dict[str, object]:
        api, token = self._api(), self._token()
        api_ok = sum(1 for r in api if r.status is not None and 200 <= r.status < 300)
        rate = api_ok / self.elapsed_s if self.elapsed_s > 0 else 0.0
        wasted = sum(1 for r in self.records if _wasted(r.status))
        return {
            "strategy": self.strategy,
            "workers": self.workers,
            "backlog": self.config.backlog,
            "done": self.done,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "drained": self.drained,
            "drain_s": round(self.elapsed_s, 2) if self.drained else None,
            "elapsed_s": round(self.elapsed_s, 2),
            "api_ok": api_ok,
            "api_ok_per_s": round(rate, 3),
            "limit_per_s": self.config.limit_per_s,
            "of_limit": round(rate / self.config.limit_per_s, 4),
            "max_in_window": self.max_in_window,
            "max_window_over_limit": round(self.max_in_window / self.config.requests, 4),
            "http_429": sum(1 for r in self.records if r.status == 429),
            "api_429": sum(1 for r in api if r.status == 429),
            "token_429": sum(1 for r in token if r.status == 429),
            "token_requests": len(token),
            "upstream_requests": len(self.records),
            "wasted": wasted,
            "by_status": {"api": _by_status(api), "token": _by_status(token)},
            "failures": dict(sorted(self.failures.items())),
            "requeues": dict(sorted(self.requeues.items())),
            "stuck_workers": self.stuck_workers,
        }


RESULT_KEYS = (
    "strategy",  # seed | ratebridge
    "workers",  # concurrent containers
    "backlog",  # tasks to drain
    "done",  # tasks whose call succeeded
    "failed",  # tasks failed for good (seed: the call failed; ratebridge: permanent or DLQ)
    "unfinished",  # tasks neither done nor failed when the cell timed out
    "drained",  # every task settled within the cell timeout
    "drain_s",  # wall time until every task was settled (None when not drained)
    "elapsed_s",  # drain_s, or the cell timeout
    "api_ok",  # 2xx API answers (emulator record)
    "api_ok_per_s",  # api_ok / elapsed_s
    "limit_per_s",  # requests / per_seconds
    "of_limit",  # api_ok_per_s / limit_per_s
    "max_in_window",  # most admitted API requests of the cell's client in any window (stats)
    "max_window_over_limit",  # max_in_window / requests
    "http_429",  # 429 answers, API and token endpoint
    "api_429",
    "token_429",
    "token_requests",  # POST /oauth/token, answered or refused
    "upstream_requests",  # every request that reached the emulator
    "wasted",  # requests that produced no result: 429, 401, 5xx, no answer
    "by_status",  # {"api": {status: n}, "token": {status: n}}
    "failures",  # {error kind: tasks failed for good with it}
    "requeues",  # ratebridge: {error kind: times a task went back to the backlog}
    "stuck_workers",  # workers still busy STOP_GRACE_S after the cell ended
)


def _wasted(status: int | None) -> bool:
    return status is None or status in (401, 429) or status >= 500


def _by_status(records: list[RequestRecord]) -> dict[str, int]:
    counts = Counter("closed" if r.status is None else str(r.status) for r in records)
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class _Tables:
    endpoint_url: str
    buckets: str
    limits: str
    tokens: str


def run(config: BenchConfig, progress: Callable[[str], None] = print) -> list[Cell]:
    """Every strategy at every concurrency, on one freshly started DynamoDB backend."""
    progress(f"starting {config.backend} on 127.0.0.1 ...")
    with start_backend(config.backend) as server:
        return run_on(config, server.url, progress)


def run_on(
    config: BenchConfig, endpoint_url: str, progress: Callable[[str], None] = print
) -> list[Cell]:
    """Every strategy at every concurrency, on the DynamoDB server at `endpoint_url`."""
    progress("loading the Genesys SDK ...")
    from ratebridge_tools.bench import seed  # noqa: F401 - the SDK import takes seconds

    suffix = uuid.uuid4().hex[:8]
    tables = _Tables(
        endpoint_url, f"bench-buckets-{suffix}", f"bench-limits-{suffix}", f"bench-tokens-{suffix}"
    )
    ids = task_ids(config.backlog, config.ids_seed)
    cells: list[Cell] = []
    with local_aws_env(endpoint_url):
        setup_client = dynamodb_client(region="us-east-1", endpoint_url=endpoint_url)
        setup = Limiter(
            DynamoDBStore(
                buckets_table=tables.buckets, limits_table=tables.limits, client=setup_client
            )
        )
        setup.create_tables()
        TokenStore(tables.tokens, setup_client).create_table()
        for workers in config.concurrency:
            for strategy in config.strategies:
                cells.append(_run_cell(config, strategy, workers, ids, tables, setup, progress))
    return cells


def _run_cell(
    config: BenchConfig,
    strategy: str,
    workers: int,
    ids: list[str],
    tables: _Tables,
    setup: Limiter,
    progress: Callable[[str], None],
) -> Cell:
    name = f"{strategy} x{workers}"
    suffix = uuid.uuid4().hex[:8]
    # A new OAuth client per cell: its own token item, and its own records.
    credentials = Credentials(f"bench-{suffix}", secrets.token_urlsafe(24))
    stop = threading.Event()
    sleep = interruptible_sleep(stop)
    with start_emulator(
        clients={credentials.client_id: credentials.client_secret},
        rate_limit=config.requests,
        rate_period_s=config.per_seconds,
        limit_scope="client",
        window_mode="sliding",
    ) as emulator:
        progress(f"{name}: building {workers} containers ...")
        work: Callable[[Any, Backlog], None]
        containers: list[Any]
        if strategy == "seed":
            from ratebridge_tools.bench.seed import SeedGenesys

            containers = [
                SeedGenesys(emulator.url, credentials, sleep=sleep, read_timeout=READ_TIMEOUT_S)
                for _ in range(workers)
            ]
            work = seed_worker
        else:
            settings = _ratebridge_settings(tables, emulator.url, credentials, suffix)
            setup.set_limit(
                settings.genesys.bucket, config.requests, config.per_seconds, config.burst
            )
            t = TOKEN_BUCKET_LIMIT
            setup.set_limit(settings.genesys.token_bucket, t.requests, t.per_seconds, t.burst)
            containers = [_ratebridge_container(settings, sleep) for _ in range(workers)]
            work = ratebridge_worker
        backlog = Backlog(ids)
        threads = [
            threading.Thread(target=work, args=(c, backlog), name=f"{name}-{i}", daemon=True)
            for i, c in enumerate(containers)
        ]
        progress(
            f"{name}: draining {config.backlog} tasks at {config.requests} per "
            f"{config.per_seconds:g}s (timeout {config.cell_timeout:g}s) ..."
        )
        started = time.time()
        for thread in threads:
            thread.start()

        def report() -> None:
            progress(
                f"  {name}: {time.time() - started:.0f}s, {backlog.done} done, "
                f"{backlog.failed} failed, {backlog.left} left"
            )

        drained = backlog.wait_settled(config.cell_timeout, report)
        ended = backlog.finished_at if drained and backlog.finished_at else time.time()
        backlog.close()
        stop.set()
        grace_end = time.time() + STOP_GRACE_S
        for thread in threads:
            thread.join(max(0.0, grace_end - time.time()))
        stuck = sum(1 for thread in threads if thread.is_alive())
        # Only this cell's OAuth client: nothing else can be counted by mistake.
        records = [r for r in emulator.requests() if r.client_id == credentials.client_id]
        stats = emulator.stats(config.per_seconds)
    cell = Cell(
        strategy=strategy,
        workers=workers,
        config=config,
        done=backlog.done,
        failed=backlog.failed,
        drained=drained,
        elapsed_s=ended - started,
        failures=dict(backlog.failures),
        requeues=dict(backlog.requeues),
        stuck_workers=stuck,
        records=records,
        max_in_window=stats.max_in_window_by_client.get(credentials.client_id, 0),
    )
    outcome = f"drained in {cell.elapsed_s:.1f}s" if drained else "TIMED OUT"
    progress(
        f"{name}: {outcome}: {cell.done} done, {cell.failed} failed, {cell.unfinished} left"
        + (f"; {stuck} workers did not stop" if stuck else "")
    )
    return cell


def _ratebridge_settings(
    tables: _Tables, api_url: str, credentials: Credentials, suffix: str
) -> Settings:
    """What a container reads from its environment, pointing at this cell's servers."""
    return Settings.from_env(
        {
            **LOCAL_AWS_ENV,
            "AWS_ENDPOINT_URL": tables.endpoint_url,
            "RATEBRIDGE_BUCKETS_TABLE": tables.buckets,
            "RATEBRIDGE_LIMITS_TABLE": tables.limits,
            "RATEBRIDGE_TOKENS_TABLE": tables.tokens,
            "RATEBRIDGE_GENESYS_BUCKET": f"genesys-{suffix}",
            "RATEBRIDGE_TOKEN_BUCKET": f"genesys-oauth-{suffix}",
            "GENESYS_API_BASE_URL": api_url,
            "GENESYS_CLIENT_ID": credentials.client_id,
            "GENESYS_CLIENT_SECRET": credentials.client_secret,
            "GENESYS_READ_TIMEOUT": str(READ_TIMEOUT_S),
        }
    )


def _ratebridge_container(settings: Settings, sleep: Callable[[float], None]) -> GenesysClient:
    """One container's client: its own DynamoDB client, limiter, token cache and pool."""
    from processor.genesys.client import GenesysClient

    dynamodb = dynamodb_client(
        region=settings.limiter.region, endpoint_url=settings.limiter.endpoint_url
    )
    limiter = Limiter(
        DynamoDBStore(
            buckets_table=settings.limiter.buckets_table,
            limits_table=settings.limiter.limits_table,
            client=dynamodb,
        ),
        sleep=sleep,
    )
    return GenesysClient.from_settings(
        settings,
        limiter=limiter,
        dynamodb=dynamodb,
        sleep=sleep,
        max_connections=CONTAINER_CONNECTIONS,
    )


# -- output ---------------------------------------------------------------------

HEADERS = (
    "strategy",
    "workers",
    "done",
    "failed",
    "left",
    "drain s",
    "API ok/s",
    "limit/s",
    "of limit",
    "max window / limit",
    "429s",
    "token req",
    "wasted",
    "requests",
)


def table(cells: list[Cell]) -> str:
    rows = []
    for cell in cells:
        s = cell.summary()
        rows.append(
            (
                s["strategy"],
                s["workers"],
                s["done"],
                s["failed"],
                s["unfinished"],
                s["drain_s"] if s["drained"] else f"> {cell.elapsed_s:.0f}",
                s["api_ok_per_s"],
                s["limit_per_s"],
                f"{s['of_limit']:.1%}",
                f"{s['max_window_over_limit']:.2f}",
                s["http_429"],
                s["token_requests"],
                s["wasted"],
                s["upstream_requests"],
            )
        )
    return format_table(HEADERS, rows)


def to_json(config: BenchConfig, cells: list[Cell]) -> str:
    return json.dumps(
        {
            "config": {**asdict(config), "burst": config.burst},
            "results": [c.summary() for c in cells],
        },
        indent=2,
    )
