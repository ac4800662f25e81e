"""One Lambda function and its SQS event source mapping, as the runner reproduces them.

Limits are Lambda's own (CreateEventSourceMapping and function configuration),
so a setting that works here also deploys; the few local relaxations are named
where they are allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ratebridge_tools.runner.errors import ConfigError

MAX_BATCH_SIZE = 10_000  # standard queues; FIFO queues are limited to 10
MAX_BATCHING_WINDOW_S = 300.0
MAX_RECEIVE = 10  # one ReceiveMessage returns at most 10 messages
MAX_FUNCTION_TIMEOUT_S = 900.0
MAX_CONCURRENCY = 1_000  # ScalingConfig.MaximumConcurrency upper bound
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10_240
# A synchronous invocation's payload limit: Lambda also closes a batch when the
# next records would take the event past it.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_POLL_WAIT_S = 20  # SQS long polling limit


@dataclass(frozen=True)
class RunnerConfig:
    """The function (handler, timeout, memory, environment) and the mapping
    (queue, batch size, batching window, maximum concurrency).

    `handler` is an import path, `package.module.function` (slashes are read
    as dots, like Lambda's handler setting). `environment` is the function's
    environment variables, set in every worker on top of the runner's own.

    Local relaxations: `concurrency` may be 1 (Lambda's minimum is 2), and
    `batching_window` and `function_timeout` may have fractions of a second
    (Lambda takes whole seconds) so tests can be quick.

    `poll_wait_seconds` is the long-polling wait of each ReceiveMessage: the
    runner stops within about that long. `init_timeout` bounds one worker's
    cold start (imports), which is not counted against `function_timeout`.
    `shutdown_grace` is how long in-flight batches may finish after a stop.
    `worker_output`, when set, is a file every worker appends its stdout and
    stderr to (the function's log), instead of the runner's terminal.

    Raises ConfigError (a ValueError) for any value Lambda would refuse.
    """

    queue_url: str
    handler: str
    concurrency: int = 2
    batch_size: int = 10
    batching_window: float = 0.0
    function_timeout: float = 3.0
    environment: Mapping[str, str] = field(default_factory=dict)
    function_name: str = "ratebridge-processor"
    function_version: str = "$LATEST"
    memory_mb: int = 128
    poll_wait_seconds: int = 1
    init_timeout: float = 60.0
    shutdown_grace: float = 5.0
    worker_output: str | None = None

    def __post_init__(self) -> None:
        # A private copy: the caller's mapping may change after the fact.
        object.__setattr__(self, "environment", dict(self.environment))
        problems = list(self._problems())
        if problems:
            raise ConfigError("; ".join(problems))

    def _problems(self) -> list[str]:
        window_ok = 0 <= self.batching_window <= MAX_BATCHING_WINDOW_S
        checks: list[tuple[bool, str]] = [
            (bool(self.queue_url), "queue_url is empty"),
            (
                _valid_handler(self.handler),
                f"handler {self.handler!r} must look like 'package.module.function' "
                "(an importable module, a dot, a function name)",
            ),
            (
                1 <= self.concurrency <= MAX_CONCURRENCY,
                f"concurrency must be 1-{MAX_CONCURRENCY}, got {self.concurrency}",
            ),
            (
                1 <= self.batch_size <= MAX_BATCH_SIZE,
                f"batch_size must be 1-{MAX_BATCH_SIZE}, got {self.batch_size}",
            ),
            (
                window_ok,
                f"batching_window must be 0-{MAX_BATCHING_WINDOW_S:.0f} s, "
                f"got {self.batching_window}",
            ),
            # Lambda's rule (CreateEventSourceMapping): "When you set BatchSize
            # to a value greater than 10, you must set
            # MaximumBatchingWindowInSeconds to at least 1."
            (
                not window_ok or self.batch_size <= MAX_RECEIVE or self.batching_window >= 1,
                f"batch_size {self.batch_size} > {MAX_RECEIVE} needs a batching_window "
                "of at least 1 s",
            ),
            (
                0 < self.function_timeout <= MAX_FUNCTION_TIMEOUT_S,
                f"function_timeout must be > 0 and <= {MAX_FUNCTION_TIMEOUT_S:.0f} s, "
                f"got {self.function_timeout}",
            ),
            (
                MIN_MEMORY_MB <= self.memory_mb <= MAX_MEMORY_MB,
                f"memory_mb must be {MIN_MEMORY_MB}-{MAX_MEMORY_MB}, got {self.memory_mb}",
            ),
            (bool(self.function_name), "function_name is empty"),
            (
                0 <= self.poll_wait_seconds <= MAX_POLL_WAIT_S,
                f"poll_wait_seconds must be 0-{MAX_POLL_WAIT_S}, got {self.poll_wait_seconds}",
            ),
            (self.init_timeout > 0, f"init_timeout must be > 0, got {self.init_timeout}"),
            (
                self.shutdown_grace >= 0,
                f"shutdown_grace must be >= 0, got {self.shutdown_grace}",
            ),
            (
                all(
                    isinstance(k, str) and isinstance(v, str) and k
                    for k, v in self.environment.items()
                ),
                "environment entries must be non-empty names mapped to strings",
            ),
        ]
        return [message for ok, message in checks if not ok]


def _valid_handler(handler: str) -> bool:
    module, _, function = handler.replace("/", ".").rpartition(".")
    return (
        bool(module)
        and function.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
    )


def handler_parts(handler: str) -> tuple[str, str]:
    """(module, function) of a handler setting that passed validation."""
    module, _, function = handler.replace("/", ".").rpartition(".")
    return module, function
