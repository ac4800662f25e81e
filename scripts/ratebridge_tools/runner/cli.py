"""`python -m ratebridge_tools.runner`: run a Lambda handler on an SQS queue, locally.

    python -m ratebridge_tools.runner --queue-url URL \\
        --handler processor.handler.lambda_handler \\
        --concurrency 4 --batch-size 10 --function-timeout 30 \\
        --env RATEBRIDGE_BUCKETS_TABLE=rb-buckets --until-drained

Endpoints, region and credentials come from the standard AWS settings
(AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, ...), which the workers inherit too.
Runs until Ctrl-C (or SIGTERM), `--max-seconds`, or with `--until-drained`
until the queue is empty. Exit codes: 0 done, 1 failed (queue unusable,
handler cannot be imported), 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TextIO

from ratebridge_tools.runner.config import RunnerConfig
from ratebridge_tools.runner.errors import ConfigError, HandlerInitError, RunnerError
from ratebridge_tools.runner.runner import Runner
from ratebridge_tools.runner.stats import Progress, RunStats

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments (defaults are Lambda's where Lambda has one)."""
    parser = argparse.ArgumentParser(
        prog="python -m ratebridge_tools.runner",
        description="Poll an SQS queue and invoke a Lambda handler in worker processes, "
        "with the semantics of Lambda's SQS event source mapping.",
    )
    parser.add_argument("--queue-url", required=True, help="the SQS queue to poll")
    parser.add_argument(
        "--handler", required=True, help="the handler's import path: module.function"
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="maximum concurrency: worker processes"
    )
    parser.add_argument("--batch-size", type=int, default=10, help="1-10000 (default 10)")
    parser.add_argument(
        "--batching-window", type=float, default=0.0, help="seconds, 0-300 (default 0)"
    )
    parser.add_argument("--function-timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--memory", type=int, default=128, help="MB, for the context only")
    parser.add_argument("--function-name", default="ratebridge-processor")
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a function environment variable (repeatable)",
    )
    parser.add_argument(
        "--until-drained", action="store_true", help="stop once the queue is drained"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=2.0,
        help="with --until-drained: how long the queue must stay empty (default 2)",
    )
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds in-flight batches get on stop"
    )
    parser.add_argument("--json", action="store_true", help="print the final stats as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--log-level", default="WARNING", help="the runner's log level")
    return parser


def format_progress(progress: Progress) -> str:
    """One status line: counters, busy workers, the queue's approximate depth."""
    s = progress.stats
    if progress.queue_visible is None:
        queue = "?"
    else:
        queue = f"{progress.queue_visible} visible, {progress.queue_not_visible} in flight"
    return (
        f"[{progress.elapsed:6.1f}s] batches {s.batches}  received {s.records_received}  "
        f"deleted {s.records_deleted}  reported failed {s.records_reported_failed}  "
        f"errors {s.handler_errors}  timeouts {s.timeouts}  "
        f"busy {progress.busy_workers}/{progress.workers}  queue: {queue}"
    )


def format_stats(stats: RunStats) -> str:
    """The final stats as `name: value` lines."""
    data = stats.as_dict()
    data.pop("durations")
    data.pop("init_durations")
    return "\n".join(f"{name}: {value}" for name, value in data.items())


class _ProgressPrinter:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._printed = False

    def __call__(self, progress: Progress) -> None:
        line = format_progress(progress)
        if self._tty:
            self._stream.write("\r" + line + "\x1b[K")
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._printed = True

    def finish(self) -> None:
        if self._tty and self._printed:
            self._stream.write("\n")
            self._stream.flush()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the runner the way Ctrl-C does (graceful, then kill)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("ratebridge_tools.runner")
    logger.addHandler(handler)
    previous_level = logger.level
    try:
        logger.setLevel(args.log_level.upper())
    except ValueError:
        logger.removeHandler(handler)
        print(f"error: unknown log level {args.log_level!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _run(args: argparse.Namespace) -> int:
    try:
        config = RunnerConfig(
            queue_url=args.queue_url,
            handler=args.handler,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            batching_window=args.batching_window,
            function_timeout=args.function_timeout,
            environment=dict(args.env),
            function_name=args.function_name,
            memory_mb=args.memory,
            shutdown_grace=args.grace,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    printer = None if args.quiet else _ProgressPrinter(sys.stderr)
    runner = Runner(config, progress=printer)
    code = 0
    try:
        with _sigterm_as_interrupt(), runner:
            if args.until_drained:
                stats = runner.run_until_drained(
                    idle_seconds=args.idle_seconds, max_seconds=args.max_seconds
                )
            else:
                stats = runner.run(max_seconds=args.max_seconds)
    except KeyboardInterrupt:
        stats = runner.stats()
        code = EXIT_INTERRUPTED
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HandlerInitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.stack:
            print("".join(exc.stack), file=sys.stderr, end="")
        return EXIT_FAILED
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if printer is not None:
            printer.finish()
    if args.json:
        print(json.dumps(stats.as_dict()))
    else:
        print(format_stats(stats))
    return code
