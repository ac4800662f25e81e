"""Start and stop the local servers everything here runs against.

moto server (DynamoDB, SQS, EventBridge, Secrets Manager ...) and dynalite (an
independent DynamoDB implementation from npm) run as child processes bound to
127.0.0.1 on a free port. Each `LocalServer` stops only the process it started,
by its id. Used by the test fixtures, the demo and the benchmarks alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
SCRIPTS_DIR = Path(__file__).resolve().parents[1]
DYNALITE_CLI = SCRIPTS_DIR / "node" / "node_modules" / "dynalite" / "cli.js"

# Credentials local servers accept; set for child processes that talk to them.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class ServerStartError(RuntimeError):
    """A local server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A port that was free on loopback a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    """A child process serving HTTP on loopback; stop() ends it and only it."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_ready(server: LocalServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"{server.name} exited with code {server.process.returncode} before listening "
                f"on {server.url}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + "/", timeout=1):  # noqa: S310 - loopback
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is listening
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    server.stop()
    raise ServerStartError(
        f"{server.name} did not answer on {server.url} within {timeout:.0f}s:\n{server.log_tail()}"
    )


def _start(name: str, argv_for_port: list[str], port: int | None, timeout: float) -> LocalServer:
    attempts = 1 if port else 3
    last: ServerStartError | None = None
    for _ in range(attempts):
        chosen = port or free_port()
        fd, log_name = tempfile.mkstemp(prefix=f"ratebridge-{name}-", suffix=".log")
        os.close(fd)
        argv = [a.replace("{port}", str(chosen)) for a in argv_for_port]
        with open(log_name, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **LOCAL_AWS_ENV},
            )
        server = LocalServer(name, f"http://{LOOPBACK}:{chosen}", proc, Path(log_name))
        try:
            _wait_ready(server, timeout)
            return server
        except ServerStartError as exc:  # most likely lost the port race: try another
            server.stop()
            last = exc
    assert last is not None
    raise last


def start_moto(port: int | None = None, timeout: float = 30.0) -> LocalServer:
    """moto server (every AWS service moto emulates) on 127.0.0.1.

    Runs through `ratebridge_tools.motoserver`, which gives moto's DynamoDB
    the per-item write atomicity real DynamoDB has (moto's threaded server
    loses concurrent updates; see that module).
    """
    argv = [sys.executable, "-m", "ratebridge_tools.motoserver", "-H", LOOPBACK, "-p", "{port}"]
    return _start("moto", argv, port, timeout)


def start_dynalite(port: int | None = None, timeout: float = 30.0) -> LocalServer:
    """dynalite (in-memory) on 127.0.0.1; installed into scripts/node by scripts/test."""
    node = shutil.which("node")
    if node is None:
        raise ServerStartError("dynalite needs Node.js: install it (apt-get install nodejs)")
    if not DYNALITE_CLI.exists():
        raise ServerStartError(
            f"dynalite is not installed at {DYNALITE_CLI}: run scripts/test once, "
            "or `npm ci --prefix scripts/node`"
        )
    argv = [node, str(DYNALITE_CLI), "--host", LOOPBACK, "--port", "{port}"]
    # dynalite keeps tables in CREATING for 500 ms by default, like DynamoDB;
    # callers use the table_exists waiter, so a shorter delay only saves time.
    argv += ["--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"]
    return _start("dynalite", argv, port, timeout)


BACKENDS = {"moto": start_moto, "dynalite": start_dynalite}


def start_backend(name: str) -> LocalServer:
    """Start the DynamoDB-compatible server called `name` ("moto" or "dynalite")."""
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ValueError(f"unknown backend {name!r}: choose one of {sorted(BACKENDS)}") from None


@contextlib.contextmanager
def local_aws_env(endpoint: str) -> Iterator[None]:
    """Point boto3 in this process at `endpoint` for the duration of the block."""
    keys = {**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
