"""The HTTP layer: read a request, ask `api` or `admin` for the answer, apply the
delay or hang it asks for, write it, record it. Nothing else.

HTTP/1.1 with keep-alive (every answer has a Content-Length), one daemon
thread per connection, bound to 127.0.0.1 only. BaseHTTPRequestHandler's
stderr logging and HTML error pages are replaced: the emulator never writes a
token or a secret anywhere, and error bodies never echo the request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from ratebridge_tools.emulator import admin, api
from ratebridge_tools.emulator.state import EmulatorState, RequestRecord

LOOPBACK = "127.0.0.1"
# An idle keep-alive connection is closed after this long (a thread each).
IDLE_TIMEOUT_S = 120.0
_LOOPBACK_PEERS = frozenset({"127.0.0.1", "::1"})


class EmulatorHTTPServer(ThreadingHTTPServer):
    """The emulator's HTTP server on 127.0.0.1:`port` (0: any free port).

    Raises OSError when the port cannot be bound.
    """

    daemon_threads = True

    def __init__(self, state: EmulatorState, port: int = 0, *, access_log: TextIO | None = None):
        self.state = state
        self.access_log = access_log
        # Set when stopping: wakes every injected delay and hang at once.
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), EmulatorHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn): not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = LOOPBACK
        self.server_port = int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}"

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_all(self) -> None:
        """Wake sleeping handlers, end open connections and close the listener.

        Call after serve_forever has returned (or never ran).
        """
        self.stopping.set()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that goes away mid-request is not an emulator error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes; see faultproxy
    server_version = "ratebridge-emulator"
    timeout = IDLE_TIMEOUT_S
    server: EmulatorHTTPServer
    arrival = 0.0

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def parse_request(self) -> bool:
        # Called right after the request line is read: that is the arrival.
        self.arrival = self.server.state.clock()
        return super().parse_request()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: the default writes raw request lines to stderr."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A malformed request (bad request line, unknown method...): a generic
        Genesys error instead of the default HTML page that quotes the request."""
        self.close_connection = True
        error = api.status_error(code)
        self._write(error.status, error.body, error.headers)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        body_or_error = self._read_body()
        if self.path.startswith(admin.ADMIN_PREFIX):
            self._admin(body_or_error)
            return
        if isinstance(body_or_error, api.Reply):
            reply = body_or_error
        else:
            request = api.Request(
                method=self.command,
                target=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body_or_error,
                arrival=self.arrival,
            )
            reply = api.handle(self.server.state, request)
        status = self._wait(reply)
        # Recorded before the answer is written: a client that has its answer
        # always finds the record, and sequential requests are recorded in
        # arrival order.
        record = self.server.state.record(
            arrival=self.arrival,
            method=self.command,
            path=self.path.split("?", 1)[0],
            status=status,
            token_id=reply.token_id,
            client_id=reply.client_id,
            admitted=reply.admitted,
        )
        if status is None:
            self.close_connection = True
        else:
            self._write(reply.status, reply.body, reply.headers)
        self._access_log(record)

    def _read_body(self) -> bytes | api.Reply:
        """The request body, or the error to answer when it cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the body was not read: the stream is lost
            return api.genesys_error(411, "length.required", "A Content-Length is required.")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return api.status_error(400)
        if length > api.MAX_BODY_BYTES:
            self.close_connection = True
            return api.status_error(413)
        return self.rfile.read(length)

    def _admin(self, body_or_error: bytes | api.Reply) -> None:
        if self.client_address[0] not in _LOOPBACK_PEERS:
            reply = admin.AdminReply(403, {"error": "the admin API answers loopback only"})
        elif isinstance(body_or_error, api.Reply):
            reply = admin.AdminReply(body_or_error.status, {"error": "unreadable request body"})
        else:
            reply = admin.handle(self.server.state, self.command, self.path, body_or_error)
        self._write(reply.status, reply.body)

    def _wait(self, reply: api.Reply) -> int | None:
        """Apply the reply's delay and hang; the status to send, None to close
        without answering."""
        stopping = self.server.stopping
        if reply.delay_s > 0:
            stopping.wait(reply.delay_s)
        if reply.hang is not None:
            stopping.wait(reply.hang.seconds)
            if reply.hang.close:
                return None
        return reply.status

    def _write(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        encoded = json.dumps(body, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(encoded)
        except ConnectionError:
            self.close_connection = True  # the client left; nothing more to say

    def _access_log(self, record: RequestRecord) -> None:
        log = self.server.access_log
        if log is None:
            return
        # Token ids only, never tokens; the path is JSON-quoted so no input can
        # forge a log line.
        status = "-" if record.status is None else str(record.status)
        who = json.dumps(record.token_id or record.client_id or "-")
        line = (
            f"{record.time:.6f} {record.method} {json.dumps(record.path)} {status} "
            f"{who} {record.duration * 1000:.1f}ms\n"
        )
        try:
            log.write(line)
            log.flush()
        except (OSError, ValueError):
            pass  # logging must never break serving
