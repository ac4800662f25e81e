"""A fault-injecting HTTP proxy on loopback, in front of a local AWS server.

Forwards every request to `upstream` and, when a rule matches, answers for it
instead: DynamoDB throttling errors, 500s, a delay longer than the client's
read timeout, or a connection reset. It counts requests by operation,
resource and outcome, so tests and benchmarks can see exactly what a client
sent, and to what (the IAM check of the template relies on it).

A request's operation is its `X-Amz-Target` (JSON protocols: DynamoDB,
SQS, Secrets Manager), e.g. "UpdateItem"; its resource is what the body
names: `TableName`, the tables of `RequestItems` (joined with ","), the
queue of `QueueUrl`, or `SecretId`. Rules match on both; "*" matches
anything, and a rule's table matches any of a request's tables. Runs in a thread of the
caller (`FaultProxy(...).start()`) or as a process:
`python -m ratebridge_tools.faultproxy --upstream URL --port 0`, configured
through `POST /_faults/rules` with a JSON list of rules.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ratebridge_tools.servers import LocalServer

ACTIONS = ("throttle", "throttling", "error500", "delay", "reset")

_ERRORS = {
    "throttle": (
        400,
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    ),
    "throttling": (400, "com.amazon.coral.availability#ThrottlingException", "Rate exceeded"),
    "error500": (500, "com.amazon.coral.service#InternalFailure", "Internal server error"),
}


@dataclass
class Rule:
    """Answer `action` for requests matching `operation` and `table`.

    `probability` of applying to each match (seeded RNG), at most `limit`
    times when set; `delay` seconds for the "delay" action (then forwarded).
    """

    action: str
    operation: str = "*"
    table: str = "*"
    probability: float = 1.0
    limit: int | None = None
    delay: float = 5.0
    applied: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}: choose one of {ACTIONS}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    def matches(self, operation: str, table: str) -> bool:
        return self.operation in ("*", operation) and (
            self.table == "*" or self.table in table.split(",")
        )


@dataclass
class _State:
    upstream: tuple[str, int]
    rules: list[Rule] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    table_counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311 - faults, not crypto
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, operation: str, table: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if not rule.matches(operation, table):
                    continue
                if rule.limit is not None and rule.applied >= rule.limit:
                    continue
                if self.rng.random() < rule.probability:
                    rule.applied += 1
                    return rule
            return None

    def count(self, operation: str, outcome: str, table: str = "") -> None:
        with self.lock:
            self.counts[(operation, outcome)] += 1
            self.table_counts[(table, operation, outcome)] += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm on, the
    # second waits for the client's delayed ACK of the first (measured here:
    # 55 ms per DynamoDB request through the proxy instead of 17).
    disable_nagle_algorithm = True
    state: ClassVar[_State]
    _conn: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr line."""

    def do_GET(self) -> None:
        if self.path == "/_faults/counts":
            with self.state.lock:
                rows = [
                    {"table": t, "operation": o, "outcome": r, "count": n}
                    for (t, o, r), n in self.state.table_counts.items()
                ]
            self._reply(200, json.dumps(rows).encode(), "application/json")
            return
        self._forward(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_faults/rules":
            try:
                rules = [Rule(**r) for r in json.loads(body or b"[]")]
            except (TypeError, ValueError) as exc:
                self._reply(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                return
            with self.state.lock:
                self.state.rules = rules
            self._reply(204, b"", "application/json")
            return
        if self.path == "/_faults/reset":
            with self.state.lock:
                self.state.rules = []
                self.state.counts.clear()
                self.state.table_counts.clear()
            self._reply(204, b"", "application/json")
            return
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1] if target else self.command
        table = _resource(body)
        rule = self.state.decide(operation, table)
        if rule is not None and rule.action == "reset":
            self.state.count(operation, "reset", table)
            # RST instead of FIN: the client sees "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if rule is not None and rule.action in _ERRORS:
            status, kind, message = _ERRORS[rule.action]
            self.state.count(operation, rule.action, table)
            payload = json.dumps({"__type": kind, "message": message}).encode()
            self._reply(status, payload, "application/x-amz-json-1.0")
            return
        if rule is not None and rule.action == "delay":
            self.state.count(operation, "delayed", table)
            time.sleep(rule.delay)
        status, headers, data = self._upstream(body)
        outcome = "ok" if status < 300 else _error_code(data) or str(status)
        self.state.count(operation, outcome, table)
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        # One upstream connection per client connection, kept alive with it.
        for attempt in range(2):  # a kept-alive upstream connection may have gone stale
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self.state.upstream, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                self._conn.request(self.command, self.path, body=body, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _resource(body: bytes) -> str:
    """What a JSON-protocol request acts on (see the module docstring); "" if nothing."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if isinstance(data.get("RequestItems"), dict):
        return ",".join(sorted(str(t) for t in data["RequestItems"]))
    if "QueueUrl" in data:
        return str(data["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
    return str(data.get("TableName") or data.get("SecretId") or "")


def _error_code(data: bytes) -> str:
    try:
        kind = str(json.loads(data).get("__type", ""))
    except (ValueError, AttributeError):
        return ""
    return kind.rsplit("#", 1)[-1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset) is part of the experiment.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FaultProxy:
    """The proxy in a thread of this process. `url` is what clients point at."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._state = _State((parts.hostname, parts.port))
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = _Server(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def set_rules(self, *rules: Rule) -> None:
        with self._state.lock:
            self._state.rules = list(rules)

    def clear(self) -> None:
        self.set_rules()

    def counts(self) -> dict[tuple[str, str], int]:
        """Requests seen so far, by (operation, outcome); outcome "ok" or an error code."""
        with self._state.lock:
            return dict(self._state.counts)

    def table_counts(self) -> dict[tuple[str, str, str], int]:
        """Requests so far, by (table, operation, outcome)."""
        with self._state.lock:
            return dict(self._state.table_counts)

    def reset_counts(self) -> None:
        with self._state.lock:
            self._state.counts.clear()
            self._state.table_counts.clear()

    def applied(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return [asdict(r) for r in self._state.rules]

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ProxyProcess:
    """The proxy as a child process (its own GIL, like a network hop), and its admin API."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.url = server.url

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.url + path, data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def set_rules(self, *rules: Rule) -> None:
        self._call("POST", "/_faults/rules", [_rule_json(r) for r in rules])

    def clear(self) -> None:
        self.set_rules()

    def table_counts(self) -> dict[tuple[str, str, str], int]:
        rows = self._call("GET", "/_faults/counts")
        return {(r["table"], r["operation"], r["outcome"]): int(r["count"]) for r in rows}

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _rule_json(rule: Rule) -> dict[str, Any]:
    data = asdict(rule)
    data.pop("applied")
    return data


def start_proxy_process(upstream: str) -> ProxyProcess:
    """`python -m ratebridge_tools.faultproxy` in front of `upstream`, on a free loopback port."""
    from ratebridge_tools.servers import _start

    argv = [sys.executable, "-m", "ratebridge_tools.faultproxy", "--upstream", upstream]
    return ProxyProcess(_start("faultproxy", [*argv, "--port", "{port}"], None, 30.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ratebridge faultproxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    proxy = FaultProxy(args.upstream, args.port)
    print(f"ratebridge faultproxy listening on {proxy.url}", flush=True)
    try:
        proxy._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
