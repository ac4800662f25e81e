"""A worker process: one Lambda execution environment ("container").

Started with the `spawn` method. It takes the function's environment, imports
the handler once (the cold start, reported as `Ready`), then handles one
invocation at a time (warm) until the runner sends None or goes away. The
runner kills it on a timeout, as Lambda resets an environment whose function
timed out.

Only the standard library is imported here, so a worker's cold start costs
what the handler's imports cost, as on Lambda.
"""

from __future__ import annotations

import decimal
import importlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ratebridge_tools.runner.config import handler_parts
from ratebridge_tools.runner.context import LambdaContext

Handler = Callable[[Any, LambdaContext], Any]

# Exit code of a worker whose runner died: it must not outlive it.
EXIT_ORPHANED = 70


@dataclass(frozen=True)
class WorkerSpec:
    """What one execution environment is: the handler, the environment
    variables set before it is imported, and the ARN invocations name."""

    handler: str
    environment: dict[str, str]
    invoked_function_arn: str
    output: str | None = None  # append stdout and stderr here (Lambda: CloudWatch Logs)


@dataclass(frozen=True)
class ErrorInfo:
    """An error as Lambda reports it: errorType, errorMessage, stackTrace."""

    error_type: str
    message: str
    stack: tuple[str, ...] = ()

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        stack = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return cls(type(exc).__name__, str(exc), tuple(stack))


@dataclass(frozen=True)
class Started:
    """The process is up and about to import the handler (the runner can tell
    a death in Python's own start-up from one in the handler's import)."""


@dataclass(frozen=True)
class Ready:
    """The handler is imported; the environment takes invocations."""


@dataclass(frozen=True)
class InitFailed:
    """Importing the handler raised; the worker exits after sending this."""

    error: ErrorInfo


@dataclass(frozen=True)
class Invoke:
    """One invocation: the event as JSON text, the deadline in epoch ms."""

    request_id: str
    event_json: str
    deadline_ms: int


@dataclass(frozen=True)
class Returned:
    """The handler returned; `payload_json` is its JSON-encoded result."""

    request_id: str
    duration: float
    payload_json: str


@dataclass(frozen=True)
class Raised:
    """The handler raised (or its result could not be encoded as JSON)."""

    request_id: str
    duration: float
    error: ErrorInfo


Reply = Returned | Raised


def load_handler(handler: str) -> Handler:
    """Import the handler's module and return the function. Raises whatever
    the import raises, AttributeError when the module has no such name, and
    TypeError when it is not callable (Lambda's Runtime.ImportModuleError and
    Runtime.HandlerNotFound)."""
    module_name, function_name = handler_parts(handler)
    module = importlib.import_module(module_name)
    function = getattr(module, function_name)
    if not callable(function):
        raise TypeError(f"{handler} is a {type(function).__name__}, not a function")
    return function  # type: ignore[no-any-return]


def _lambda_json_default(value: object) -> object:
    # As the Python runtime encodes results: Decimal (boto3's DynamoDB numbers) as a number.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def invoke(handler: Handler, message: Invoke, invoked_function_arn: str) -> Reply:
    """Run one invocation: decode the event, call the handler, encode its result."""
    context = LambdaContext(
        aws_request_id=message.request_id,
        invoked_function_arn=invoked_function_arn,
        deadline_ms=message.deadline_ms,
    )
    event = json.loads(message.event_json)
    started = time.perf_counter()
    try:
        result = handler(event, context)
    except Exception as exc:  # noqa: BLE001 - the function's error, reported like the runtime does
        duration = time.perf_counter() - started
        error = ErrorInfo.of(exc)
        # The runtime writes the error to the function's log before replying.
        print(f"[ERROR] {error.error_type}: {error.message}", file=sys.stderr)
        print("".join(error.stack), file=sys.stderr, end="", flush=True)
        return Raised(message.request_id, duration, error)
    duration = time.perf_counter() - started
    try:
        payload = json.dumps(result, default=_lambda_json_default)
    except (TypeError, ValueError) as exc:
        error = ErrorInfo("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        print(f"[ERROR] {error.error_type}: {error.message}", file=sys.stderr, flush=True)
        return Raised(message.request_id, duration, error)
    return Returned(message.request_id, duration, payload)


def _exit_with_runner() -> None:
    """End this process as soon as the runner's process ends, even mid-invocation
    (the runner killed with SIGKILL cannot clean up after itself)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="ratebridge-runner-watch", daemon=True).start()


def _redirect_output(path: str) -> None:
    """Send this process's stdout and stderr (fds 1 and 2) to `path`, appending:
    what a function prints goes to its log, as on Lambda, not to the runner's terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """The worker process's entry point (a `multiprocessing` target)."""
    # Ctrl-C in a terminal signals the whole process group: the runner, not
    # the keyboard, decides when an in-flight invocation ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_runner()
    if spec.output:
        _redirect_output(spec.output)
    conn.send(Started())
    os.environ.update(spec.environment)
    try:
        handler = load_handler(spec.handler)
    except Exception as exc:  # noqa: BLE001 - any import failure is an init error
        conn.send(InitFailed(ErrorInfo.of(exc)))
        conn.close()
        return
    conn.send(Ready())
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            conn.close()
            return
        conn.send(invoke(handler, message, spec.invoked_function_arn))
