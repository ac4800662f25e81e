"""The main job on one command: the whole pipeline on loopback, watched live, then judged.

`scripts/demo` (`ratebridge demo`) and `ratebridge simulate` (every knob) run
this. On `LocalPipeline` (moto for EventBridge, SQS and DynamoDB; the Genesys
emulator enforcing the same limit as the limiter, per OAuth client, in
sliding windows): synthetic Genesys events (the shared samples with new ids,
a mix of topics, some redelivered, a few malformed) go through
EventBridge -> rule -> SQS, and the local event-source runner drains the
queue with `workers` processes running the real handler. A live line shows
records done, the queue's depth and Genesys requests per second against the
limit; at the end a report (every figure from the servers' own records) and
a PNG chart of Genesys requests per second against the limit, with the
queue's depth, over time.

`strategy="seed"` runs the tutorial's handler (`seed_handler`) on the same
load and the same emulator, for the side-by-side comparison.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ratebridge_tools import loadgen
from ratebridge_tools.pipeline import (
    HANDLER,
    Collected,
    LocalPipeline,
    PipelineConfig,
    Report,
    report,
    verify,
)
from ratebridge_tools.runner import Progress
from ratebridge_tools.stats import format_table

STRATEGIES = {"ratebridge": HANDLER, "seed": "ratebridge_tools.seed_handler.lambda_handler"}
REPORT_KEYS = (
    "events_in",
    "processed",
    "skipped",
    "dlq",
    "upstream_requests",
    "upstream_429",
    "token_requests",
    "max_window_ratio",
    "utilization",
    "ddb_requests_per_grant",
    "wall_s",
)


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of a run. The defaults finish in about 80 s on a 2-core machine.

    The default limit is Genesys's 300 requests over half its 60 s window, so
    that a run spans two windows and still fits in 90 s. A window of 30 s also
    leaves the limiter's jitter allowance (1% of the window: 300 ms) room for
    late wake-ups of eight workers sharing two cores with the servers; with a
    10 s window (100 ms) one request in a few runs arrived late enough for a 429.
    """

    events: int = 360  # SQS deliveries in all (redeliveries and malformed included)
    workers: int = 8  # the event source's MaximumConcurrency
    requests: int = 300  # the Genesys limit: requests ...
    per_seconds: float = 30.0  # ... per this many seconds
    burst: int = 3  # 1% of the limit
    batch_size: int = 10
    strategy: str = "ratebridge"
    duplicate_share: float = 0.1
    malformed_share: float = 0.01
    seed: int = 7
    function_timeout: float = 30.0
    max_seconds: float = 900.0
    chart: Path | None = Path("out/ratebridge-demo.png")

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {self.strategy!r}")
        if not 1 <= self.events <= 100_000:
            raise ValueError(f"events must be within 1..100000, got {self.events}")
        if not 0 < self.max_seconds <= 86_400:  # also refuses NaN
            raise ValueError(f"max_seconds must be within (0, 86400], got {self.max_seconds}")

    def pipeline(self) -> PipelineConfig:
        """The pipeline this run needs (PipelineConfig validates workers, batch, timeout)."""
        return PipelineConfig(
            load=loadgen.LoadSpec(
                events=self.events,
                duplicate_share=self.duplicate_share,
                malformed_share=self.malformed_share,
                seed=self.seed,
            ),
            workers=self.workers,
            batch_size=self.batch_size,
            function_timeout=self.function_timeout,
            requests=self.requests,
            per_seconds=self.per_seconds,
            burst=self.burst,
            handler=STRATEGIES[self.strategy],
        )


@dataclass
class Sample:
    """The pipeline seen at `t` seconds into the drain."""

    t: float
    done: int
    queue: int  # visible + in flight + delayed
    requests: int  # API requests Genesys has seen so far


@dataclass
class DemoResult:
    config: DemoConfig
    report: Report
    problems: list[str]
    samples: list[Sample]
    request_times: list[float]  # every API request's arrival, seconds from the drain's start
    throttled_times: list[float]  # the ones answered 429
    chart: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        figures = self.report.to_json()
        return {
            **{key: figures[key] for key in REPORT_KEYS},
            "duplicates": figures["duplicates"],
            "strategy": self.config.strategy,
            "limit": {"requests": self.config.requests, "per_seconds": self.config.per_seconds},
            "problems": len(self.problems),
            **self.extra,
        }


class LiveView:
    """The runner's progress callback: one refreshing line on a terminal (a line every
    5 s otherwise), and a sample of the pipeline each time."""

    def __init__(self, pipeline: LocalPipeline, config: DemoConfig, total: int, out: IO[str]):
        self._pipeline = pipeline
        self._config = config
        self._total = total
        self._out = out
        self._tty = out.isatty()
        self._cursor = 0
        self._requests = 0
        self._throttled = 0
        self._recent: list[tuple[float, int]] = []
        self._last_print = 0.0
        self.samples: list[Sample] = []

    def __call__(self, progress: Progress) -> None:
        new = self._pipeline.emulator.requests(since=self._cursor)
        self._cursor += len(new)
        api = [r for r in new if r.path.startswith("/api/")]
        self._requests += len(api)
        self._throttled += sum(1 for r in new if r.status == 429)
        now = progress.elapsed
        self._recent = [(t, n) for t, n in self._recent if now - t <= 5.0] + [(now, self._requests)]
        t0, n0 = self._recent[0]
        rate = (self._requests - n0) / (now - t0) if now > t0 else 0.0
        queue = sum(
            v or 0
            for v in (progress.queue_visible, progress.queue_not_visible, progress.queue_delayed)
        )
        done = progress.stats.records_deleted
        self.samples.append(Sample(now, done, queue, self._requests))
        line = self.line(done, queue, rate, now)
        if self._tty:
            self._out.write("\r" + line.ljust(110)[:110])
            self._out.flush()
        elif now - self._last_print >= 5.0:
            self._last_print = now
            print(line, file=self._out, flush=True)

    def line(self, done: int, queue: int, rate: float, elapsed: float) -> str:
        limit = self._config.requests / self._config.per_seconds
        width = 24
        filled = min(width, round(width * done / max(1, self._total)))
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] {done}/{self._total} records | queue {queue} | "
            f"Genesys {rate:5.1f}/s of {limit:g}/s | 429s {self._throttled} | {elapsed:5.1f} s"
        )

    def finish(self) -> None:
        if self._tty:
            self._out.write("\n")
            self._out.flush()


def run(config: DemoConfig, *, out: IO[str] = sys.stdout) -> DemoResult:
    """Start everything, run the load through it, judge it, stop everything (also on Ctrl-C:
    the pipeline's exit stack ends every process it started, by pid)."""

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    pipeline_config = config.pipeline()
    with LocalPipeline(pipeline_config, say=say) as pipeline:
        load = loadgen.generate(pipeline_config.load)
        say(
            f"publishing {load.deliveries} deliveries through EventBridge and SQS "
            f"({len(load.good)} events, {len(load.duplicates)} redelivered, "
            f"{load.malformed} malformed) ..."
        )
        started = time.time()
        pipeline.publish(load)
        say(
            f"draining with {config.workers} workers running {STRATEGIES[config.strategy]} "
            f"(each imports the Genesys SDK first) ..."
        )
        view = LiveView(pipeline, config, load.deliveries, out)
        drain_start = time.time()
        try:
            stats = pipeline.drain(progress=view, max_seconds=config.max_seconds)
        finally:
            view.finish()
        collected = pipeline.collect(stats, started)
        figures = report(pipeline_config, load, collected)
        problems = verify(pipeline, load, collected)
    result = DemoResult(
        config=config,
        report=figures,
        problems=problems,
        samples=view.samples,
        request_times=[r.time - drain_start for r in _api(collected)],
        throttled_times=[
            r.time - drain_start for r in collected.emulator_records if r.status == 429
        ],
        extra={"stop_reason": stats.stop_reason, "worker_timeouts": stats.timeouts},
    )
    if config.chart is not None:
        result.chart = draw_chart(result, config.chart)
    return result


def _api(collected: Collected) -> list[Any]:
    return [r for r in collected.emulator_records if r.path.startswith("/api/")]


def summary(result: DemoResult) -> str:
    """The report as a table, and what it means."""
    r, c = result.report, result.config
    rows = [
        ("strategy", c.strategy),
        ("events in (SQS deliveries)", r.events_in),
        ("processed", r.processed),
        ("redeliveries answered from the idempotency store", r.duplicates),
        ("skipped (no route)", r.skipped),
        ("in the DLQ", r.dlq),
        ("Genesys API requests", r.upstream_requests),
        ("Genesys 429s", r.upstream_429),
        ("token requests", r.token_requests),
        (
            f"max requests in any {c.per_seconds:g} s window / limit {c.requests}",
            r.max_window_ratio,
        ),
        ("utilization of the limit while the backlog lasted", r.utilization),
        ("DynamoDB requests per grant (buckets, limits)", r.ddb_requests_per_grant),
        ("wall time, s", r.wall_s),
    ]
    lines = [format_table(["figure", "value"], rows)]
    if result.problems:
        lines.append(f"\n{len(result.problems)} problems found checking every record:")
        lines += [f"  - {p}" for p in result.problems[:10]]
        if len(result.problems) > 10:
            lines.append(f"  ... and {len(result.problems) - 10} more")
    else:
        lines.append(
            "\nchecked: every good event's record exists once with the right content, every "
            "malformed one is in the DLQ with its reason, redeliveries made no Genesys call, "
            "and no window held more than the limit."
        )
    if result.chart is not None:
        lines.append(f"chart: {result.chart}")
    return "\n".join(lines)


def draw_chart(result: DemoResult, path: Path) -> Path:
    """Genesys requests per second (and 429s) against the limit, and the queue's depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result.config
    end = max([s.t for s in result.samples] + result.request_times + [1.0])
    seconds = math.ceil(end)
    per_second = [0] * seconds
    throttled = [0] * seconds
    for t in result.request_times:
        if 0 <= t < seconds:
            per_second[int(t)] += 1
    for t in result.throttled_times:
        if 0 <= t < seconds:
            throttled[int(t)] += 1
    figure, left = plt.subplots(figsize=(10, 4.8), dpi=110)
    left.step(
        range(seconds), per_second, where="post", label="Genesys requests/s", color="tab:blue"
    )
    if any(throttled):
        left.step(range(seconds), throttled, where="post", label="429s/s", color="tab:red")
    left.axhline(c.requests / c.per_seconds, color="black", linestyle="--", label="limit/s")
    left.set_xlabel("seconds since the workers started")
    left.set_ylabel("requests per second")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(
        [s.t for s in result.samples],
        [s.queue for s in result.samples],
        color="tab:orange",
        label="queue depth",
    )
    right.set_ylabel("messages in the queue")
    right.set_ylim(bottom=0)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, loc="upper right")
    r = result.report
    left.set_title(
        f"{c.strategy}: {r.events_in} events, {c.workers} workers, limit {c.requests} per "
        f"{c.per_seconds:g} s: {r.upstream_429} 429s, max window {r.max_window_ratio:.2f}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def write_json(result: DemoResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
