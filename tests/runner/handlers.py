"""Lambda handlers the runner's tests run in worker processes.

The runner imports them by path (`tests.runner.handlers.<name>`) in spawned
workers, which inherit the test process's sys.path. Each writes what it saw to
`$RUNNER_TEST_DIR/<pid>.jsonl`: an "init" line when the module is imported
(the worker's cold start) and one "invoke" line per invocation (written
before a handler that means to die or hang does so), so the tests can check
batch sizes, overlap, cold starts and deletes from the handler's side.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

Event = dict[str, Any]


def _trace(entry: dict[str, Any]) -> None:
    directory = os.environ.get("RUNNER_TEST_DIR")
    if not directory:
        return
    with (Path(directory) / f"{os.getpid()}.jsonl").open("a") as out:
        out.write(json.dumps({"pid": os.getpid(), **entry}) + "\n")


_trace({"kind": "init", "time": time.time()})


def _invocation(event: Event, context: Any, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "invoke",
        "start": time.time(),
        "remaining_at_start": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "records": [
            {
                "id": r["messageId"],
                "body": r["body"],
                "receive_count": int(r["attributes"]["ApproximateReceiveCount"]),
            }
            for r in event["Records"]
        ],
        **extra,
    }


def _first_delivery(event: Event) -> bool:
    return any(r["attributes"]["ApproximateReceiveCount"] == "1" for r in event["Records"])


def record_and_succeed(event: Event, context: Any) -> dict[str, Any]:
    """Succeeds after RUNNER_TEST_SLEEP seconds; records the context and the environment."""
    entry = _invocation(
        event,
        context,
        lambda_context={
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
        },
        env={
            "RUNNER_TEST_PROBE": os.environ.get("RUNNER_TEST_PROBE"),
            "AWS_LAMBDA_FUNCTION_NAME": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        },
    )
    _trace({"kind": "begin", "request_id": context.aws_request_id, "time": time.time()})
    time.sleep(float(os.environ.get("RUNNER_TEST_SLEEP", "0")))
    entry["remaining_at_end"] = context.get_remaining_time_in_millis()
    entry["end"] = time.time()
    _trace(entry)
    return {"batchItemFailures": []}


def raise_first_time(event: Event, context: Any) -> None:
    """Raises while any record is on its first delivery; succeeds after."""
    entry = _invocation(event, context)
    if _first_delivery(event):
        _trace({**entry, "result": "raised"})
        raise RuntimeError("first delivery fails")
    _trace({**entry, "result": "ok", "end": time.time()})


def bad_response_first_time(event: Event, context: Any) -> dict[str, Any] | None:
    """Reports a message id that is not in the batch on first deliveries."""
    entry = _invocation(event, context)
    if _first_delivery(event):
        _trace({**entry, "result": "bad response"})
        return {"batchItemFailures": [{"itemIdentifier": "no-such-message"}]}
    _trace({**entry, "result": "ok", "end": time.time()})
    return None


def sleep_past_timeout_first_time(event: Event, context: Any) -> None:
    """On a first delivery, reads the remaining time twice, then sleeps far
    past any test's function timeout; succeeds on redelivery."""
    entry = _invocation(event, context)
    time.sleep(0.05)
    entry["remaining_later"] = context.get_remaining_time_in_millis()
    if _first_delivery(event):
        _trace({**entry, "result": "sleeping"})
        time.sleep(60)
    _trace({**entry, "result": "ok", "end": time.time()})


def die_first_time(event: Event, context: Any) -> None:
    """The first invocation in the whole test SIGKILLs its own worker mid-batch
    (a marker file says it happened); every other invocation succeeds."""
    entry = _invocation(event, context)
    marker = Path(os.environ["RUNNER_TEST_DIR"]) / "died.marker"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        _trace({**entry, "result": "ok", "end": time.time()})
        return
    _trace({**entry, "result": "killed"})
    os.kill(os.getpid(), signal.SIGKILL)


def print_and_succeed(event: Event, context: Any) -> dict[str, Any]:
    """Prints each body to stdout and stderr, as a function's log lines."""
    for record in event["Records"]:
        print(f"out {record['body']}", flush=True)
        print(f"err {record['body']}", file=sys.stderr, flush=True)
    return {"batchItemFailures": []}
