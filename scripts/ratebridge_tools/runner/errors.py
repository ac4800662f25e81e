"""The runner's errors: one root, `RunnerError`; data in attributes."""

from __future__ import annotations


class RunnerError(RuntimeError):
    """Root of every error the runner raises on purpose."""


class ConfigError(RunnerError, ValueError):
    """A setting Lambda would refuse (batch size, window, timeout ...), or a queue
    the event source mapping could not be created on (FIFO, visibility timeout
    shorter than the function timeout)."""


class QueueError(RunnerError):
    """The queue cannot be used: it does not exist, or SQS cannot be reached
    when the runner starts. `queue_url` says which."""

    def __init__(self, queue_url: str, message: str) -> None:
        super().__init__(f"{queue_url}: {message}")
        self.queue_url = queue_url


class HandlerInitError(RunnerError):
    """A worker could not initialise the handler (import failed, no such
    function, init took longer than `init_timeout`, the process died while
    importing). Fatal: on Lambda every invocation would fail the same way and
    send every message to the DLQ; locally it is almost always a typo.

    `handler` is the import path, `error_type` and `detail` what went wrong,
    `stack` the worker's traceback lines (empty when there is none)."""

    def __init__(
        self, handler: str, error_type: str, detail: str, stack: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"handler {handler!r} failed to initialise: {error_type}: {detail}")
        self.handler = handler
        self.error_type = error_type
        self.detail = detail
        self.stack = stack
