"""moto server with DynamoDB's atomicity and SQS's delivery (python -m ratebridge_tools.motoserver).

DynamoDB applies the writes to one item one at a time: an UpdateItem's
condition check and update are atomic. moto's threaded server (5.2.5) does not
serialise them: measured here, 4 processes x 8 threads x 50 concurrent
`SET v = v + :one` left v at 1598 of 1600, and two callers got the same new
value back. Anything built on conditional writes (a rate limiter, a lease, an
idempotency record) then looks broken on moto when it is not.

moto's SQS is not thread-safe either: concurrent receives hand the same
message to two consumers, and `delete_message` rebuilds the queue's list
unlocked, so concurrent deletes undo each other and deleted messages come
back after their visibility timeout. Measured here: 16 consumers and 3
producers, 600 messages, 58 to 119 delivered twice in every run.

So this runs moto's own WSGI application, unchanged, behind two locks: one
held for the whole of every DynamoDB request, one for every SQS request. A
long poll (ReceiveMessage with WaitTimeSeconds) must not hold the SQS lock
while it waits: it runs as short receives under the lock, with the waiting
between them outside it, until a message comes or the wait is over. Other
services run concurrently as before. Same flags as `moto_server` for host
and port.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

POLL_INTERVAL = 0.05  # between the short receives that make up a long poll


class Serialised:
    """WSGI middleware: one DynamoDB request at a time, one SQS request at a time."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._dynamodb = threading.Lock()
        self._sqs = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_"):
            return self._locked(self._dynamodb, environ, start_response)
        if target.startswith("AmazonSQS."):
            if target == "AmazonSQS.ReceiveMessage":
                return self._receive(environ, start_response)
            return self._locked(self._sqs, environ, start_response)
        return self._app(environ, start_response)  # type: ignore[no-any-return]

    def _locked(
        self, lock: threading.Lock, environ: dict[str, Any], start_response: Any
    ) -> list[bytes]:
        with lock:
            result = self._app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    def _receive(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """A ReceiveMessage whose waiting happens outside the lock."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            request = json.loads(raw) if raw else {}
            wait = float(request.get("WaitTimeSeconds") or 0)
        except (ValueError, TypeError, AttributeError):
            request, wait = None, 0.0
        if request is None or wait <= 0:  # short, or not a JSON receive: as it comes
            environ["wsgi.input"] = io.BytesIO(raw)
            return self._locked(self._sqs, environ, start_response)
        short = json.dumps({**request, "WaitTimeSeconds": 0}).encode()
        deadline = time.monotonic() + wait
        while True:
            response = _Captured()
            attempt = {
                **environ,
                "wsgi.input": io.BytesIO(short),
                "CONTENT_LENGTH": str(len(short)),
            }
            body = self._locked(self._sqs, attempt, response.start)
            if (
                not response.status.startswith("200")
                or time.monotonic() >= deadline
                or _has_messages(body[0])
            ):
                start_response(response.status, response.headers)
                return body
            time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


class _Captured:
    """A WSGI start_response that keeps what it was given (one short receive's answer)."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[Any] = []

    def start(self, status: str, headers: list[Any], exc_info: Any = None) -> Callable[..., Any]:
        self.status, self.headers = status, headers
        return lambda data: None


def _has_messages(body: bytes) -> bool:
    try:
        return bool(json.loads(body).get("Messages"))
    except (ValueError, AttributeError):
        return True  # not what we expected: hand it back rather than wait on it


class _Handler(MotoRequestHandler):
    # werkzeug writes the headers and the body separately: with Nagle's
    # algorithm on, the body waits for the client's delayed ACK of the headers.
    disable_nagle_algorithm = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ratebridge_tools.motoserver")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        Serialised(app),
        threaded=True,
        request_handler=_Handler,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
