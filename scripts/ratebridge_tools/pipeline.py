"""The whole pipeline on loopback: EventBridge -> SQS (+ DLQ) -> runner -> handler -> Genesys.

`LocalPipeline` starts an embedded AWS (moto server for EventBridge and SQS,
and a second moto server for DynamoDB, reached through a counting proxy so
every request the fleet makes is counted per table), the Genesys emulator, creates every table
and the limits, wires a bus, a rule and the queues, then runs the real
`processor.handler.lambda_handler` in worker processes through the local
event-source runner. The end-to-end tests, `ratebridge demo` and
`ratebridge chaos` all run on it.

Locally the event bus has a plain name: moto cannot put rules on a bus whose
name contains '/' (a partner bus is named after its event source,
`aws.partner/genesys.com/...`). The events keep their real partner `source`,
which the rule matches, as the template's rule does.

Why two moto processes: one Python process serves one core's worth, and
moto's SQS recomputes a queue's attributes over every message on each
receive and GetQueueAttributes; on one process the fleet's DynamoDB
requests queued behind that work (measured: workers waited on DynamoDB
nearly all the time, and 10-record batches took 26 s of a 30 s timeout).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3

from limiter import Limiter, LimiterSettings
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from processor.app import App
from processor.genesys.token_store import TokenStore
from processor.settings import Settings
from ratebridge_tools import emf, loadgen
from ratebridge_tools.emulator import EmulatorServer, start_emulator
from ratebridge_tools.faultproxy import ProxyProcess, start_proxy_process
from ratebridge_tools.runner import Progress, Runner, RunnerConfig, RunStats
from ratebridge_tools.servers import LOCAL_AWS_ENV, LocalServer, local_aws_env, start_moto
from ratebridge_tools.windows import max_in_window

HANDLER = "processor.handler.lambda_handler"
BUS = "genesys-partner-local"


@dataclass(frozen=True)
class PipelineConfig:
    """Every knob of a local run. The Genesys limit applies to the emulator
    (per OAuth client, sliding windows) and to the limiter's bucket alike."""

    load: loadgen.LoadSpec = field(default_factory=loadgen.LoadSpec)
    workers: int = 16  # the event source's MaximumConcurrency
    batch_size: int = 10
    batching_window: float = 0.0
    function_timeout: float = 30.0
    max_receive_count: int = 3
    visibility_timeout_seconds: int | None = None  # default: 6x the function timeout
    requests: int = 300
    per_seconds: float = 60.0
    burst: int = 3
    token_requests: int = 10
    token_per_seconds: float = 60.0
    max_wait_seconds: float = 20.0
    emulator: dict[str, object] = field(default_factory=dict)  # extra emulator knobs (faults)
    handler: str = HANDLER
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 1000:
            raise ValueError(f"workers must be within 1..1000, got {self.workers}")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch size must be within 1..10000, got {self.batch_size}")
        if not 0 < self.function_timeout <= 900:
            raise ValueError(
                f"function timeout must be within (0, 900] s, got {self.function_timeout}"
            )

    @property
    def visibility_timeout(self) -> int:
        """AWS's advice, unless set: at least 6x the function timeout."""
        if self.visibility_timeout_seconds is not None:
            return self.visibility_timeout_seconds
        return int(6 * self.function_timeout) + 1


@dataclass
class Collected:
    """What a run left behind, read back from the servers."""

    emulator_records: list[Any]
    dlq: list[dict[str, Any]]
    dynamodb_requests: dict[tuple[str, str, str], int]
    grants: int
    stats: RunStats
    wall_s: float
    metrics: dict[str, float]


@dataclass(frozen=True)
class Report:
    """The figures a run is judged by (`--json` writes these keys)."""

    events_in: int
    processed: int
    duplicates: int
    skipped: int
    dlq: int
    upstream_requests: int
    upstream_429: int
    token_requests: int
    max_window_ratio: float
    utilization: float
    ddb_requests_per_grant: float
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LocalPipeline:
    """Start with `with LocalPipeline(config) as p:`; everything it started ends with it."""

    def __init__(self, config: PipelineConfig, say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.say = say
        self._stack = ExitStack()
        self.suffix = uuid.uuid4().hex[:8]
        self.client_id = f"ratebridge-{self.suffix}"
        self._client_secret = f"local-{uuid.uuid4().hex}"  # a placeholder, never printed
        self.log_path = Path(tempfile.gettempdir()) / f"ratebridge-function-{self.suffix}.log"
        self.aws: LocalServer
        self.dynamodb: LocalServer
        self.proxy: ProxyProcess
        self.emulator: EmulatorServer
        self.queue_url = ""
        self.dlq_url = ""

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> LocalPipeline:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        c = self.config
        self.say("starting an embedded AWS (moto server on 127.0.0.1) ...")
        self.aws = self._stack.enter_context(start_moto())
        self.dynamodb = self._stack.enter_context(start_moto())
        # This process talks to it too: placeholder credentials, for as long as it runs.
        self._stack.enter_context(local_aws_env(self.aws.url))
        self.proxy = self._stack.enter_context(start_proxy_process(self.dynamodb.url))
        self.say("starting the Genesys Cloud emulator ...")
        knobs: dict[str, Any] = {
            "rate_limit": c.requests,
            "rate_period_s": c.per_seconds,
            "limit_scope": "client",
            "window_mode": "sliding",
            "clients": {self.client_id: self._client_secret},
            **c.emulator,
        }
        self.emulator = self._stack.enter_context(start_emulator(**knobs))
        self.settings = Settings.from_env(self.environment())
        self.say("creating tables, limits, queues and the EventBridge rule ...")
        self._create_tables()
        self.limiter = Limiter(self._store(self.dynamodb.url))
        g = self.settings.genesys
        self.limiter.set_limit(g.bucket, c.requests, c.per_seconds, c.burst)
        self.limiter.set_limit(g.token_bucket, c.token_requests, c.token_per_seconds, 1)
        self._create_queues()
        self._create_rule()

    def environment(self) -> dict[str, str]:
        """The function's environment variables (what the SAM template sets in AWS)."""
        s = self.suffix
        env = {
            **LOCAL_AWS_ENV,
            "AWS_ENDPOINT_URL": self.aws.url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.proxy.url,
            "RATEBRIDGE_BUCKETS_TABLE": f"rb-buckets-{s}",
            "RATEBRIDGE_LIMITS_TABLE": f"rb-limits-{s}",
            "RATEBRIDGE_TOKENS_TABLE": f"rb-tokens-{s}",
            "RATEBRIDGE_INTERACTIONS_TABLE": f"rb-interactions-{s}",
            "RATEBRIDGE_PRESENCE_TABLE": f"rb-presence-{s}",
            "RATEBRIDGE_IDEMPOTENCY_TABLE": f"rb-idempotency-{s}",
            "RATEBRIDGE_GENESYS_BUCKET": "genesys",
            "RATEBRIDGE_TOKEN_BUCKET": "genesys-oauth",
            "RATEBRIDGE_MAX_RECEIVE_COUNT": str(self.config.max_receive_count),
            "RATEBRIDGE_MAX_WAIT_SECONDS": str(self.config.max_wait_seconds),
            "GENESYS_API_BASE_URL": self.emulator.url,
            "GENESYS_CLIENT_ID": self.client_id,
            "GENESYS_CLIENT_SECRET": self._client_secret,
            "POWERTOOLS_SERVICE_NAME": "ratebridge",
            "POWERTOOLS_METRICS_NAMESPACE": "Ratebridge",
            **self.config.extra_env,
        }
        if self.dlq_url:
            env["RATEBRIDGE_DLQ_URL"] = self.dlq_url
        return env

    def _store(self, endpoint: str) -> DynamoDBStore:
        ls: LimiterSettings = self.settings.limiter
        return DynamoDBStore(
            buckets_table=ls.buckets_table,
            limits_table=ls.limits_table,
            client=dynamodb_client(region="us-east-1", endpoint_url=endpoint),
        )

    def _create_tables(self) -> None:
        # Straight to moto, not through the proxy: set-up is not the fleet's cost.
        direct = dynamodb_client(region="us-east-1", endpoint_url=self.dynamodb.url)
        self._store(self.dynamodb.url).create_tables()
        TokenStore(self.settings.tokens_table, direct).create_table()
        settings = Settings.from_env(
            {**self.environment(), "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.url}
        )
        App(settings, genesys_factory=_no_genesys, dynamodb=direct).create_tables()

    def _client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name="us-east-1",
            endpoint_url=self.aws.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the local server's placeholder
        )

    def _create_queues(self) -> None:
        sqs = self._client("sqs")
        self.dlq_url = sqs.create_queue(QueueName=f"rb-dlq-{self.suffix}")["QueueUrl"]
        dlq_arn = self._arn(sqs, self.dlq_url)
        self.queue_url = sqs.create_queue(
            QueueName=f"rb-events-{self.suffix}",
            Attributes={
                "VisibilityTimeout": str(self.config.visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": str(self.config.max_receive_count),
                    }
                ),
            },
        )["QueueUrl"]

    @staticmethod
    def _arn(sqs: Any, url: str) -> str:
        return str(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
        )

    def _create_rule(self) -> None:
        events = self._client("events")
        sqs = self._client("sqs")
        bus_arn = events.create_event_bus(Name=f"{BUS}-{self.suffix}")["EventBusArn"]
        self.bus_arn = bus_arn
        pattern = {
            "source": [{"prefix": "aws.partner/genesys.com"}],
            "detail-type": list(loadgen.DETAIL_TYPES),
        }
        rule_arn = events.put_rule(
            Name="genesys-to-sqs",
            EventBusName=bus_arn,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
        )["RuleArn"]
        queue_arn = self._arn(sqs, self.queue_url)
        events.put_targets(
            Rule="genesys-to-sqs",
            EventBusName=bus_arn,
            Targets=[{"Id": "events", "Arn": queue_arn}],
        )
        # Only this rule may send (moto does not enforce it; the template does the same).
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)})

    # -- a run -------------------------------------------------------------------------

    def publish(self, load: loadgen.Load) -> None:
        """The load onto the bus, and its redeliveries to the queue (`loadgen.publish`)."""
        loadgen.publish(
            load, self._client("events"), self.bus_arn, self._client("sqs"), self.queue_url
        )

    def runner(self, progress: Callable[[Progress], None] | None = None) -> Runner:
        c = self.config
        return Runner(
            RunnerConfig(
                queue_url=self.queue_url,
                handler=c.handler,
                concurrency=c.workers,
                batch_size=c.batch_size,
                batching_window=c.batching_window,
                function_timeout=c.function_timeout,
                environment=self.environment(),
                memory_mb=1024,
                init_timeout=120.0,
                worker_output=str(self.log_path),
            ),
            sqs_client=self._client("sqs"),
            progress=progress,
        )

    def drain(
        self,
        progress: Callable[[Progress], None] | None = None,
        max_seconds: float | None = None,
        on_runner: Callable[[Runner], None] | None = None,
    ) -> RunStats:
        """Run the handler until the queue is empty (or `max_seconds`)."""
        with self.runner(progress) as runner:
            runner.start()
            if on_runner is not None:
                on_runner(runner)
            return runner.run_until_drained(idle_seconds=2.0, max_seconds=max_seconds)

    def collect(self, stats: RunStats, started: float) -> Collected:
        grants = 0
        for bucket in (self.settings.genesys.bucket, self.settings.genesys.token_bucket):
            grants += self.limiter.status(bucket).granted
        return Collected(
            emulator_records=self.emulator.requests(),
            dlq=self.dead_letters(),
            dynamodb_requests=self.proxy.table_counts(),
            grants=grants,
            stats=stats,
            wall_s=time.time() - started,
            metrics=self.emf_totals(),
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the DLQ, body and ratebridge.* attributes (left in place)."""
        return read_dead_letters(self._client("sqs"), self.dlq_url)

    def emf_totals(self) -> dict[str, float]:
        """Sums of the EMF metrics the functions printed to their log, by
        "Metric" or "Metric:Route"/"Metric:Bucket" (what CloudWatch would see)."""
        totals: dict[str, float] = {}
        for blob in emf.records(self._log_lines()):
            label = blob.get("Route") or blob.get("Bucket") or ""
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    name = metric["Name"]
                    value = emf.total(blob, name)
                    totals[name] = totals.get(name, 0.0) + value
                    totals[f"{name}:{label}"] = totals.get(f"{name}:{label}", 0.0) + value
        return totals

    def _log_lines(self) -> Iterator[str]:
        if self.log_path.exists():
            with self.log_path.open(errors="replace") as log:
                yield from log

    def function_log(self) -> str:
        return "".join(self._log_lines())

    def client_secret_for_scans(self) -> str:
        """The placeholder secret, for tests that scan output for it (never printed)."""
        return self._client_secret


def read_dead_letters(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message in the DLQ at `url`: its body and ratebridge.* attributes (the
    reason). Left in place: each is received once with a visibility timeout of 60 s."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(100):
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
            found[m["MessageId"]] = {"body": m["Body"], **attrs}
    return list(found.values())


def _no_genesys() -> Any:
    raise AssertionError("table creation needs no Genesys client")


def report(config: PipelineConfig, load: loadgen.Load, collected: Collected) -> Report:
    """The run's figures, from the servers' own records."""
    api = [r for r in collected.emulator_records if r.path.startswith("/api/")]
    admitted = sorted(r.time for r in api if r.admitted)
    rate = config.requests / config.per_seconds
    utilization = 0.0
    if len(admitted) > 1 and admitted[-1] > admitted[0]:
        utilization = (len(admitted) - 1) / ((admitted[-1] - admitted[0]) * rate)
    bucket_tables = ("rb-buckets-", "rb-limits-")
    ddb = sum(
        n
        for (table, _, _), n in collected.dynamodb_requests.items()
        if any(table.startswith(prefix) for prefix in bucket_tables)
    )
    m = collected.metrics
    return Report(
        events_in=load.deliveries,
        processed=int(m.get("Processed", 0) + m.get("Stale", 0)),
        duplicates=int(m.get("Duplicates", 0)),
        skipped=int(m.get("Skipped", 0)),
        dlq=len(collected.dlq),
        upstream_requests=len(api),
        upstream_429=sum(1 for r in collected.emulator_records if r.status == 429),
        token_requests=sum(1 for r in collected.emulator_records if r.path == "/oauth/token"),
        max_window_ratio=max_in_window(admitted, config.per_seconds) / config.requests
        if admitted
        else 0.0,
        utilization=round(utilization, 4),
        ddb_requests_per_grant=round(ddb / collected.grants, 4) if collected.grants else 0.0,
        wall_s=round(collected.wall_s, 2),
    )


def verify(pipeline: LocalPipeline, load: loadgen.Load, collected: Collected) -> list[str]:
    """Everything that must hold after a run; the problems found (empty: all good).

    - every good event's record exists with the right content, written once
      per unique event (a duplicate would raise eventsApplied);
    - every malformed record is in the DLQ with a reason, and nothing else is;
    - Genesys got exactly the calls the unique events need (duplicates none);
    - no 429, and no window of the limit held more than the limit.
    """
    want = loadgen.expected(load)
    app = App(pipeline.settings, genesys_factory=_no_genesys)
    return [
        *_check_records("interaction", want.interactions, app.deps.interactions.all().get),
        *_check_records("presence", want.presence, app.deps.presence.all().get),
        *_check_dlq(load, collected.dlq),
        *_check_genesys(pipeline.config, want.genesys_calls, collected.emulator_records),
    ]


def _check_records(
    kind: str, want: dict[str, dict[str, Any]], get: Callable[[str], dict[str, Any] | None]
) -> list[str]:
    return [p for key, fields in want.items() for p in record_problems(kind, key, get(key), fields)]


def record_problems(
    kind: str, key: str, item: dict[str, Any] | None, fields: dict[str, Any]
) -> list[str]:
    """How the stored `item` differs from the `fields` it must have (empty: it does not)."""
    if item is None:
        return [f"{kind} {key} missing"]
    problems = []
    for name, expected_value in fields.items():
        got, value = item.get(name), expected_value
        if name == "agents":  # order of agents is not part of the contract
            got = sorted((a["userId"], a.get("name")) for a in got or [])
            value = sorted((a["userId"], a["name"]) for a in expected_value)
        if got != value:
            problems.append(f"{kind} {key}: {name} is {got!r}, not {value!r}")
    return problems


def _check_dlq(load: loadgen.Load, dead: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(dead) != load.malformed:
        problems.append(f"{len(dead)} records in the DLQ, expected the {load.malformed} malformed")
    good_ids = set(load.ids.values())
    for d, event_id in zip(dead, dlq_event_ids(dead, problems), strict=True):
        if event_id in good_ids:
            problems.append(f"good event {event_id} in the DLQ: {d.get('ratebridge.reason')}")
    return problems


def dlq_event_ids(dead: Sequence[dict[str, Any]], problems: list[str]) -> list[str | None]:
    """The event id in each DLQ record's body (None if it has none); a problem
    added for every record that carries no reason."""
    ids: list[str | None] = []
    for d in dead:
        if not d.get("ratebridge.reason"):
            problems.append(f"DLQ record without a reason: {d['body'][:60]!r}")
        try:
            event_id = json.loads(d["body"]).get("id")
        except (ValueError, AttributeError):
            event_id = None
        ids.append(event_id if isinstance(event_id, str) else None)
    return ids


def _check_genesys(config: PipelineConfig, calls: int, records: list[Any]) -> list[str]:
    problems = []
    api = [r for r in records if r.path.startswith("/api/")]
    if len(api) != calls:
        problems.append(f"Genesys got {len(api)} API requests, the events need {calls}")
    throttled = [r for r in records if r.status == 429]
    if throttled:
        problems.append(f"{len(throttled)} requests were answered 429")
    admitted = [r.time for r in api if r.admitted]
    busiest = max_in_window(admitted, config.per_seconds) if admitted else 0
    if busiest > config.requests:
        problems.append(f"{busiest} requests in one window, over the limit {config.requests}")
    return problems
