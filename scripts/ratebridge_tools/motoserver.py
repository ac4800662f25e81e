"""moto server with DynamoDB's write atomicity: `python -m ratebridge_tools.motoserver`.

DynamoDB applies the writes to one item one at a time: an UpdateItem's
condition check and update are atomic. moto's threaded server (5.2.5) does not
serialise them: measured here, 4 processes x 8 threads x 50 concurrent
`SET v = v + :one` left v at 1598 of 1600, and two callers got the same new
value back. Anything built on conditional writes (a rate limiter, a lease, an
idempotency record) then looks broken on moto when it is not.

So this runs moto's own WSGI application, unchanged, behind a lock held for
the whole of every DynamoDB request; other services (SQS long polls!) run
concurrently as before. Same flags as `moto_server` for host and port.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class DynamoDBSerialised:
    """WSGI middleware: one DynamoDB request at a time, response body included."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        with self._lock:
            result = self._app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ratebridge_tools.motoserver")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        DynamoDBSerialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
