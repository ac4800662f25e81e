"""`ratebridge chaos`: the whole pipeline under faults, and what it kept.

Each scenario runs a fresh `LocalPipeline` (moto for EventBridge, SQS and
DynamoDB, the fault proxy in front of DynamoDB, the Genesys emulator, the
real handler in worker processes) on a small load. A timeline switches each
of its faults on at `at` seconds after the fleet is up and off `hold`
seconds later (hold 0: one act, such as a kill, a revocation or a restart),
in turn; the queue is drained, and then checked, from the servers' own
records:

- lost == 0: every good event is applied in its record (a conversation
  event's id is in the item's `eventIds`; a user's presence item is what the
  events outside the DLQ make it) or is in the DLQ with a reason; every
  malformed one is in the DLQ with a reason;
- doubled == 0: no item applied an event twice (`eventsApplied` counts
  applications, `eventIds` the distinct events);
- fail closed: Genesys saw no more API requests than the limiter's buckets
  granted (a grant is counted only by a successful conditional write), and
  no more token requests than the token bucket granted;
- the window bound: no window of the limit holds more requests than the
  limit, counting every request the fleet sent, answered or refused; and no
  429 unless a fault answers 429;
- recovery: after each fault ended, the first record write came within the
  fault's stated bound.

`recoveries` holds each fault's first-write delay (None: nothing was written
after it, so the fault struck when no work was left), `recovery_s` the
slowest, `done_s` the last write after the last fault. The clock-skew
experiment is separate (`skew_experiment`): it runs the limiter alone, where
each caller's clock can be set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from limiter import Limiter
from limiter.dynamodb import DynamoDBStore, dynamodb_client
from processor.app import App
from ratebridge_tools import loadgen
from ratebridge_tools.faultproxy import Rule
from ratebridge_tools.pipeline import (
    Collected,
    LocalPipeline,
    PipelineConfig,
    dlq_event_ids,
    record_problems,
)
from ratebridge_tools.runner import Runner, RunStats
from ratebridge_tools.stats import format_table
from ratebridge_tools.windows import max_in_window

FAULT_AT = 1.5  # seconds after the fleet is up (every worker warm) that the fault starts
RETRY_BACKOFF = 2.0  # RATEBRIDGE_RETRY_BACKOFF_SECONDS in the scenarios' functions


@dataclass
class Stage:
    """What a scenario's actions can reach while it runs."""

    pipeline: LocalPipeline
    runner: Runner
    up: float = 0.0  # epoch seconds every worker was warm
    killed: int = 0  # worker processes the actions killed
    restart: bool = False  # set by an action: end this runner, start another
    notes: list[str] = field(default_factory=list)


Action = Callable[[Stage], None]


def _nothing(stage: Stage) -> None:
    """No fault: the control run."""


@dataclass(frozen=True)
class Fault:
    """`start` at `at` seconds after the fleet is up, `stop` `hold` seconds later
    (hold 0: a one-off act). The fleet must write again within
    `recovery_bound` seconds of the fault's end."""

    what: str
    start: Action
    stop: Action = _nothing
    hold: float = 4.0
    recovery_bound: float = 12.0
    at: float = FAULT_AT
    answers_429: bool = False  # Genesys's own 429s are this fault's doing


@dataclass(frozen=True)
class Scenario:
    """Faults in sequence on one run. `load_scale` and `rate_scale` multiply
    the profile's events and limit (a long timeline needs more work)."""

    name: str
    faults: tuple[Fault, ...]
    in_short: bool = False  # part of the short profile (what CI runs)
    load_scale: float = 1.0
    rate_scale: float = 1.0
    summary: str = ""  # what breaks, when naming every fault is too long

    @property
    def fault(self) -> str:
        if self.summary:
            return self.summary
        return "; then ".join(f.what for f in self.faults) or "no fault (the control run)"


def _one(name: str, *args: Any, in_short: bool = False, **kwargs: Any) -> Scenario:
    return Scenario(name, (Fault(*args, **kwargs),), in_short=in_short)


# -- the faults ---------------------------------------------------------------------


def _table(stage: Stage, which: str) -> str:
    settings = stage.pipeline.settings
    return {
        "buckets": settings.limiter.buckets_table,
        "tokens": settings.tokens_table,
        "idempotency": settings.idempotency_table,
    }[which]


def _proxy(action: str, which: str, **rule: Any) -> Action:
    def start(stage: Stage) -> None:
        table = "*" if which == "*" else _table(stage, which)
        stage.pipeline.proxy.set_rules(Rule(action, table=table, **rule))

    return start


def _heal_proxy(stage: Stage) -> None:
    stage.pipeline.proxy.clear()


def _emulator(**knobs: object) -> Action:
    def act(stage: Stage) -> None:
        stage.pipeline.emulator.configure(**knobs)

    return act


def _revoke(stage: Stage) -> None:
    revoked = stage.pipeline.emulator.revoke()
    stage.notes.append(f"revoked {revoked} token(s)")


def _both(*actions: Action) -> Action:
    def act(stage: Stage) -> None:
        for action in actions:
            action(stage)

    return act


def _kill_busy(count: int) -> Action:
    """SIGKILL `count` workers that are in the middle of a batch (waits up to 30 s
    for them to be busy), by pid; the runner replaces them."""

    def act(stage: Stage) -> None:
        runner = stage.runner
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and runner.snapshot().busy_workers < count:
            time.sleep(0.02)
        pids = runner.worker_pids[-runner.config.concurrency :][:count]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        stage.killed += len(pids)
        stage.notes.append(f"killed {len(pids)} worker(s), {runner.snapshot().busy_workers} busy")

    return act


def _restart_runner(stage: Stage) -> None:
    """The event source dies with its functions: every worker SIGKILLed, the
    runner stopped; the driver then starts a new runner on the same queue."""
    runner = stage.runner
    pids = runner.worker_pids[-runner.config.concurrency :]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stage.killed += len(pids)
    stage.restart = True
    runner.stop()
    stage.notes.append(f"killed {len(pids)} workers and the runner")


THROTTLE_BUCKETS = Fault(
    "buckets table: every request ProvisionedThroughputExceeded",
    _proxy("throttle", "buckets"),
    _heal_proxy,
)
RESET_ALL = Fault(
    "every table: 30% of connections reset",
    _proxy("reset", "*", probability=0.3),
    _heal_proxy,
)
STORM = Fault(
    "Genesys: every API request 429, Retry-After 6 s",
    _emulator(storm_retry_after_s=6),
    _emulator(storm_retry_after_s=0),
    hold=3.0,
    recovery_bound=12.0,
    answers_429=True,
)
# The refreshes that failed spent the token bucket (10 per 60 s): the first
# after the fault may wait its 6 s interval, twice.
TOKEN_DOWN = Fault(
    "Genesys: /oauth/token answers 503, and every token revoked",
    _both(_emulator(token_endpoint_down=True), _revoke),
    _emulator(token_endpoint_down=False),
    recovery_bound=20.0,
)
# Their batches return after the visibility timeout (12 s).
KILL_TWO = Fault("two workers SIGKILLed mid-batch", _kill_busy(2), hold=0.0, recovery_bound=20.0)

# Each DynamoDB fault, as the proxy answers it, and what it stands for.
DDB_FAULTS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("throttle", "ProvisionedThroughputExceeded", {}),
    ("throttling", "ThrottlingException", {}),
    ("error500", "500 InternalFailure", {}),
    ("delay", "held 4 s (client read timeout 3 s)", {"delay": 4.0}),
    ("reset", "connection reset", {}),
)


def _table_in_turn(which: str) -> Scenario:
    """`which` table: each of DDB_FAULTS for 2 s on every request, 2 s apart."""
    faults = []
    for number, (action, what, rule) in enumerate(DDB_FAULTS):
        start = _proxy(action, which, **rule)
        if which == "tokens":
            start = _both(start, _revoke)
        faults.append(
            Fault(
                f"{which} table: {what}",
                start,
                _heal_proxy,
                hold=2.0,
                at=FAULT_AT + 4.0 * number,
            )
        )
    return Scenario(
        f"ddb-{which}",
        tuple(faults),
        load_scale=2.5,
        rate_scale=0.5,
        summary=f"{which} table: throttled, throttling, 500s, held past the timeout, resets"
        + (" (every token revoked at each)" if which == "tokens" else "")
        + ", in turn",
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline", (), in_short=True),
    # The short profile's one fault run: five kinds in turn on one pipeline.
    Scenario(
        "gauntlet",
        (
            replace(THROTTLE_BUCKETS, at=1.5, hold=2.0),
            replace(RESET_ALL, at=5.5, hold=2.0),
            replace(STORM, at=9.5, hold=2.0),
            replace(TOKEN_DOWN, at=18.0, hold=2.0),
            replace(KILL_TWO, at=23.0),
        ),
        in_short=True,
        load_scale=2.0,
        rate_scale=0.5,
        summary="buckets throttled; every table's connections reset; a 429 storm; "
        "the token endpoint down; two workers killed: in turn",
    ),
    # Every DynamoDB fault in turn on one table (the tokens table is read when
    # a token is refreshed: every token is revoked as each fault starts).
    _table_in_turn("buckets"),
    _table_in_turn("tokens"),
    _table_in_turn("idempotency"),
    Scenario("ddb-reset-all", (RESET_ALL,)),
    Scenario("genesys-429-storm", (STORM,)),
    _one(
        "genesys-5xx-burst",
        "Genesys: half the API requests 503",
        _emulator(error_rate=0.5),
        _emulator(error_rate=0.0),
    ),
    _one(
        "genesys-hang",
        "Genesys: 30% of API requests hang 6 s (client read timeout 3 s)",
        _emulator(hang_rate=0.3, hang_s=6.0, hang_action="close"),
        _emulator(hang_rate=0.0),
    ),
    Scenario("token-endpoint-down", (TOKEN_DOWN,)),
    _one("token-revoked", "Genesys: every token revoked mid-run", _revoke, hold=0.0),
    Scenario("worker-sigkill", (KILL_TWO,)),
    _one(
        "runner-restart",
        "every worker SIGKILLed and the runner restarted",
        _restart_runner,
        hold=0.0,
        recovery_bound=30.0,
    ),
)


def scenario_named(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)}")


# -- a run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """The size of each scenario's run."""

    events: int = 40
    workers: int = 4
    requests: int = 240
    per_seconds: float = 30.0
    burst: int = 3
    seed: int = 21

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError(f"events must be at least 1, got {self.events}")
        for scenario in SCENARIOS:
            self.pipeline(scenario)  # every other knob, as the pipeline checks it

    def pipeline(self, scenario: Scenario) -> PipelineConfig:
        return PipelineConfig(
            load=loadgen.LoadSpec(
                events=max(1, round(self.events * scenario.load_scale)),
                duplicate_share=0.1,
                malformed_share=0.05,
                seed=self.seed,
            ),
            workers=self.workers,
            batch_size=5,
            requests=max(self.burst, round(self.requests * scenario.rate_scale)),
            per_seconds=self.per_seconds,
            burst=self.burst,
            function_timeout=10.0,
            visibility_timeout_seconds=12,
            max_receive_count=5,
            max_wait_seconds=6.0,
            extra_env={
                "RATEBRIDGE_RETRY_BACKOFF_SECONDS": str(RETRY_BACKOFF),
                "GENESYS_READ_TIMEOUT": "3",
            },
        )


SHORT = Profile()
LONG = Profile(events=400, workers=8, requests=240, per_seconds=30.0)


@dataclass(frozen=True)
class Outcome:
    """One scenario's figures (`--json` writes these keys) and its broken promises."""

    scenario: str
    fault: str
    events: int  # SQS deliveries published
    processed: int  # good events applied once
    dlq: int
    dup_dropped: int  # redeliveries recognised and not applied again
    fault_hits: int  # requests the fault answered, workers it killed (proof it bit)
    retried: int  # records that failed and were put back
    deferred: int  # records put back to wait for capacity
    doubled: int  # events applied twice (must be 0)
    lost: int  # events neither applied nor in the DLQ (must be 0)
    upstream_requests: int
    upstream_429: int
    max_window: int  # most requests the fleet sent in any window of the limit
    limit: int
    recovery_s: float | None  # the slowest: first record write after a fault ended
    recoveries: tuple[float | None, ...]  # per fault (None: nothing was written after it)
    done_s: float | None  # last record write after the last fault ended
    wall_s: float
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Ran:
    """A scenario's run, with its pipeline still up (see `scenario_run`)."""

    pipeline: LocalPipeline
    load: loadgen.Load
    collected: Collected
    grants: dict[str, int]  # bucket -> grants it counted
    up: float  # epoch seconds the fleet was up (every worker warm)
    healed: list[float]  # epoch seconds each fault ended (or its act was done)
    killed: int  # worker processes the faults killed
    notes: list[str]

    def judge(self, scenario: Scenario) -> Outcome:
        return judge(self, scenario)


@contextlib.contextmanager
def scenario_run(
    scenario: Scenario, profile: Profile = SHORT, say: Callable[[str], None] = lambda _: None
) -> Iterator[Ran]:
    """Run `scenario` on a fresh local pipeline and yield what it left, before
    the servers stop (the checks read the tables; tests may tamper first)."""
    config = profile.pipeline(scenario)
    started = time.time()
    with LocalPipeline(config) as pipeline:
        load = loadgen.generate(config.load)
        pipeline.publish(load)
        healed: list[float] = []
        stage, stats = _drive(pipeline, scenario, healed, say)
        collected = pipeline.collect(stats, started)
        grants = {
            bucket: pipeline.limiter.status(bucket).granted
            for bucket in (pipeline.settings.genesys.bucket, pipeline.settings.genesys.token_bucket)
        }
        yield Ran(pipeline, load, collected, grants, stage.up, healed, stage.killed, stage.notes)


def run_scenario(
    scenario: Scenario,
    profile: Profile = SHORT,
    say: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Run `scenario` on a fresh local pipeline and judge it (module docstring)."""
    with scenario_run(scenario, profile, say) as ran:
        return ran.judge(scenario)


def _drive(
    pipeline: LocalPipeline,
    scenario: Scenario,
    healed: list[float],
    say: Callable[[str], None],
) -> tuple[Stage, RunStats]:
    """Drain the queue while a timeline switches each fault on and off; a
    restart action ends the runner, and a new one drains what is left."""
    runner = pipeline.runner()
    stage = Stage(pipeline, runner)
    faults_done = threading.Event()
    try:
        runner.start()
        stage.up = time.time()

        def timeline() -> None:
            try:
                for fault in scenario.faults:
                    time.sleep(max(0.0, stage.up + fault.at - time.time()))
                    say(f"  {time.time() - stage.up:5.1f} s  on: {fault.what}")
                    fault.start(stage)
                    if fault.hold > 0:
                        time.sleep(fault.hold)
                        fault.stop(stage)
                        say(f"  {time.time() - stage.up:5.1f} s  off")
                    healed.append(time.time())
            finally:
                faults_done.set()

        threading.Thread(target=timeline, name="chaos-timeline", daemon=True).start()
        stats = runner.run_until_drained(idle_seconds=2.0, max_seconds=300)
        if not faults_done.is_set():
            stage.notes.append("drained before the last fault ended")
        faults_done.wait(120)
        if stage.restart:
            runner.close()
            say("  runner restarted")
            runner = pipeline.runner()
            stage.runner = runner
            runner.start()
            stats = runner.run_until_drained(idle_seconds=2.0, max_seconds=300)
        return stage, stats
    finally:
        runner.close()


def judge(ran: Ran, scenario: Scenario) -> Outcome:
    """The invariants of the module docstring, from the servers' records."""
    pipeline, load, collected, grants = ran.pipeline, ran.load, ran.collected, ran.grants
    healed = ran.healed
    problems: list[str] = []
    dlq_ids, other_bodies = _sort_dlq(load, collected.dlq, problems)
    if len(other_bodies) != load.malformed:
        problems.append(
            f"{len(other_bodies)} distinct DLQ records are not good events; "
            f"{load.malformed} malformed were published"
        )
    app = App(pipeline.settings, genesys_factory=_no_genesys)
    interactions = app.deps.interactions.all()
    presence = app.deps.presence.all()
    applied, doubled, lost = _reconcile(load, dlq_ids, interactions, presence, problems)

    c = pipeline.config
    api = [r for r in collected.emulator_records if r.path.startswith("/api/")]
    tokens = [r for r in collected.emulator_records if r.path == "/oauth/token"]
    genesys_bucket = pipeline.settings.genesys.bucket
    token_bucket = pipeline.settings.genesys.token_bucket
    if len(api) > grants[genesys_bucket]:
        problems.append(f"{len(api)} API requests, only {grants[genesys_bucket]} grants")
    if len(tokens) > grants[token_bucket]:
        problems.append(f"{len(tokens)} token requests, only {grants[token_bucket]} grants")
    busiest = max_in_window([r.time for r in api], c.per_seconds) if api else 0
    if busiest > c.requests:
        problems.append(f"{busiest} requests in one {c.per_seconds:g} s window; limit {c.requests}")
    throttled = sum(1 for r in collected.emulator_records if r.status == 429)
    if throttled and not any(f.answers_429 for f in scenario.faults):
        problems.append(f"{throttled} requests answered 429, and no fault answers 429")

    writes = sorted(
        float(item["updatedAt"]) / 1000
        for item in [*interactions.values(), *presence.values()]
        if item.get("updatedAt") is not None
    )
    recoveries: list[float | None] = []
    for fault, end in zip(scenario.faults, healed, strict=False):
        after = [w for w in writes if w >= end]
        recovery = round(after[0] - end, 2) if after else None
        recoveries.append(recovery)
        if recovery is not None and recovery > fault.recovery_bound:
            problems.append(
                f"first write {recovery} s after '{fault.what}' ended; "
                f"the bound is {fault.recovery_bound} s"
            )
    if len(healed) < len(scenario.faults):
        problems.append(f"only {len(healed)} of {len(scenario.faults)} faults ran")
    last = healed[-1] if healed else ran.up
    done = round(writes[-1] - last, 2) if writes and writes[-1] >= last else None
    measured = [r for r in recoveries if r is not None]

    return Outcome(
        scenario=scenario.name,
        fault=scenario.fault,
        events=load.deliveries,
        processed=applied,
        dlq=len(collected.dlq),
        dup_dropped=int(collected.metrics.get("Duplicates", 0)),
        fault_hits=fault_hits(collected) + ran.killed,
        retried=int(collected.metrics.get("Failed", 0)),
        deferred=int(collected.metrics.get("Deferred", 0)),
        doubled=doubled,
        lost=lost,
        upstream_requests=len(api),
        upstream_429=throttled,
        max_window=busiest,
        limit=c.requests,
        recovery_s=max(measured) if measured else None,
        recoveries=tuple(recoveries),
        done_s=done,
        wall_s=round(collected.wall_s, 1),
        notes=tuple(ran.notes),
        problems=tuple(problems),
    )


# The proxy's outcomes for requests a rule answered (or held, for "delay").
PROXY_FAULTS = frozenset({"throttle", "throttling", "error500", "delayed", "reset"})


def fault_hits(collected: Collected) -> int:
    """Requests a fault answered: the proxy's rules; the emulator's 401, 429 and
    5xx answers and closed connections."""
    proxy = sum(
        n for (_, _, outcome), n in collected.dynamodb_requests.items() if outcome in PROXY_FAULTS
    )
    genesys = sum(
        1
        for r in collected.emulator_records
        if r.status is None or r.status in (401, 429) or r.status >= 500
    )
    return proxy + genesys


def _sort_dlq(
    load: loadgen.Load, dead: Sequence[dict[str, Any]], problems: list[str]
) -> tuple[set[str], set[str]]:
    """The good event ids in the DLQ, and the distinct bodies of the other DLQ
    records. A record can be dead-lettered twice (its worker killed after the
    DLQ send, before the delete): at-least-once, like every SQS send."""
    good_ids = set(load.ids.values())
    ids: set[str] = set()
    others: set[str] = set()
    for d, event_id in zip(dead, dlq_event_ids(dead, problems), strict=True):
        if event_id is not None and event_id in good_ids:
            ids.add(event_id)
        else:
            others.add(d["body"])
    return ids, others


def _reconcile(
    load: loadgen.Load,
    dlq_ids: set[str],
    interactions: dict[str, dict[str, Any]],
    presence: dict[str, dict[str, Any]],
    problems: list[str],
) -> tuple[int, int, int]:
    """(applied, doubled, lost) over the unique good events."""
    want = loadgen.expected(load, skip_ids=dlq_ids)
    applied_ids: set[str] = set()
    doubled = 0
    for key, item in interactions.items():
        ids = set(item.get("eventIds") or ())
        applied_ids |= ids
        extra = int(item.get("eventsApplied", 0)) - len(ids)
        if extra > 0:
            doubled += extra
            problems.append(f"conversation {key}: {extra} event(s) applied twice")
    for key, fields in want.interactions.items():
        problems += record_problems("interaction", key, interactions.get(key), fields)
    bad_users = set()
    for key, fields in want.presence.items():
        found = record_problems("presence", key, presence.get(key), fields)
        if found:
            bad_users.add(key)
            problems += found
    applied = lost = 0
    for index, event in enumerate(load.good):
        event_id = load.ids.get(index)
        topic = event["detail"]["topicName"]
        if event_id in dlq_ids:
            continue
        if ".customer." in topic:
            ok = event_id in applied_ids
        else:
            ok = _presence_user(event) not in bad_users
        if ok:
            applied += 1
        else:
            lost += 1
    if lost:
        problems.append(f"{lost} event(s) neither applied nor in the DLQ")
    return applied, doubled, lost


def _presence_user(event: dict[str, Any]) -> str:
    topic: str = event["detail"]["topicName"]
    if topic.startswith("v2.audits."):
        return str(event["detail"]["eventBody"]["entity"]["id"])
    return topic.split(".")[2]


def _no_genesys() -> Any:
    raise AssertionError("reading records needs no Genesys client")


# -- the report -------------------------------------------------------------------------

COLUMNS = (
    "scenario",
    "events",
    "processed",
    "dlq",
    "dup_dropped",
    "fault_hits",
    "retried",
    "deferred",
    "doubled",
    "lost",
    "upstream_429",
    "max_window",
    "recovery_s",
    "done_s",
    "wall_s",
    "ok",
)


def _shown(value: object) -> object:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return value


def table(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as a Markdown table (what the docs show)."""
    rows = [[_shown(o.to_json()[c]) for c in COLUMNS] for o in outcomes]
    return format_table(COLUMNS, rows)


def run(
    names: Sequence[str] = (),
    profile: Profile = SHORT,
    every: bool = False,
    say: Callable[[str], None] = print,
) -> list[Outcome]:
    """Run the named scenarios (default: the short profile's, or all with `every`)."""
    chosen = (
        [scenario_named(n) for n in names]
        if names
        else [s for s in SCENARIOS if every or s.in_short]
    )
    outcomes = []
    for number, scenario in enumerate(chosen, 1):
        say(f"[{number}/{len(chosen)}] {scenario.name}: {scenario.fault}")
        outcome = run_scenario(scenario, profile, say)
        verdict = "ok" if outcome.ok else f"{len(outcome.problems)} problem(s)"
        say(
            f"  {outcome.processed} applied, {outcome.dlq} in the DLQ, {outcome.lost} lost, "
            f"recovery {outcome.recovery_s} s, {outcome.wall_s} s: {verdict}"
        )
        for problem in outcome.problems[:10]:
            say(f"    {problem}")
        outcomes.append(outcome)
    return outcomes


# -- clock skew -------------------------------------------------------------------------


@dataclass(frozen=True)
class SkewResult:
    """Callers with clocks `offsets_s` apart took `grants` slots from one bucket."""

    offsets_s: tuple[float, ...]
    requests: int
    per_seconds: float
    grants: int
    max_window: int  # most slots, in true time, in any window of per_seconds
    over_grant: int  # max_window - requests (0 if not over)
    bound: int  # ceil(skew spread x rate): what the design allows

    @property
    def ok(self) -> bool:
        return self.over_grant <= self.bound

    def summary(self) -> str:
        offsets = "/".join(f"{o * 1000:+g}" for o in sorted(set(self.offsets_s)))
        spread = max(self.offsets_s) - min(self.offsets_s)
        rate = self.requests / self.per_seconds
        return (
            f"{len(self.offsets_s)} callers at {offsets} ms, {self.requests} per "
            f"{self.per_seconds:g} s: {self.grants} grants, at most {self.max_window} in any "
            f"{self.per_seconds:g} s of true time; over-grant {self.over_grant}, bound "
            f"ceil({spread:g} s x {rate:g}/s) = {self.bound}"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def skew_experiment(
    endpoint: str,
    offsets_s: Sequence[float] = (-0.05, 0.05, -0.05, 0.05),
    requests: int = 20,
    per_seconds: float = 1.0,
    seconds: float = 4.0,
    bucket: str = "skew",
) -> SkewResult:
    """Callers whose clocks are off by `offsets_s` (one thread and one Limiter
    each, as separate instances would be) take grants from one bucket as fast
    as it allows for `seconds`. Each grant's slot `at_us` is on its caller's
    clock, so in true time it is `at_us - offset`: exact, with no measuring
    noise. The most slots in any window of `per_seconds` is compared with the
    limit; GCRA's window argument (limiter/gcra.py) bounds the excess by
    ceil(spread x rate), spread = max offset - min offset."""
    suffix = os.urandom(4).hex()
    client = dynamodb_client(region="us-east-1", endpoint_url=endpoint)
    store = DynamoDBStore(
        buckets_table=f"skew-buckets-{suffix}", limits_table=f"skew-limits-{suffix}", client=client
    )
    store.create_tables()
    Limiter(store).set_limit(bucket, requests, per_seconds, 1)
    slots: list[int] = []
    lock = threading.Lock()
    end = time.time() + seconds

    def caller(offset: float) -> None:
        lim = Limiter(
            DynamoDBStore(
                buckets_table=store.buckets_table, limits_table=store.limits_table, client=client
            ),
            clock=lambda: time.time() + offset,
        )
        shift = round(offset * 1_000_000)
        while time.time() < end:
            grant = lim.acquire(bucket, timeout=5.0)
            with lock:
                slots.append(grant.at_us - shift)

    threads = [threading.Thread(target=caller, args=(o,)) for o in offsets_s]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busiest = max_in_window(slots, round(per_seconds * 1_000_000))
    spread = max(offsets_s) - min(offsets_s)
    rate = requests / per_seconds
    return SkewResult(
        offsets_s=tuple(offsets_s),
        requests=requests,
        per_seconds=per_seconds,
        grants=len(slots),
        max_window=busiest,
        over_grant=max(0, busiest - requests),
        bound=-int(-(spread * rate) // 1),
    )
