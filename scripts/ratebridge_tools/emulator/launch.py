"""Run the emulator (a child process, or a thread for tiny tests) and drive it.

    with start_emulator(rate_limit=5, rate_period_s=2) as emu:
        api_client = PureCloudPlatformClientV2.ApiClient(host=emu.url)
        api_client.get_client_credentials_token(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET)
        ...
        assert emu.stats(window=2).max_in_window <= 5

The child process is the real thing (its own GIL, like Genesys is another
machine); `serve_in_thread` shares the test's process and can take a fake clock.
Both answer the same admin client (`EmulatorAdmin`), which uses only urllib.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ratebridge_tools.emulator.config import EmulatorConfig
from ratebridge_tools.emulator.server import EmulatorHTTPServer
from ratebridge_tools.emulator.state import Clock, EmulatorState, EmulatorStats, RequestRecord
from ratebridge_tools.servers import LocalServer, ServerStartError

_LISTENING = re.compile(r"ratebridge emulator listening on (http://127\.0\.0\.1:\d+)")
_ADMIN_TIMEOUT_S = 30.0


class EmulatorAdminError(RuntimeError):
    """The admin API refused a request (`status`, and its message), or did not answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"emulator admin API answered {status}: {message}")
        self.status = status
        self.message = message


class EmulatorAdmin:
    """Client of the admin API (/_emulator/) at `url`. Every method raises
    EmulatorAdminError when the emulator refuses or cannot be reached."""

    url: str

    def _call(self, method: str, path: str, body: Mapping[str, object] | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.url + "/_emulator/" + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=_ADMIN_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    message = str(json.loads(exc.read()).get("error", exc.reason))
                except ValueError:
                    message = str(exc.reason)
            raise EmulatorAdminError(exc.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise EmulatorAdminError(0, f"no answer from {self.url}: {exc}") from exc

    def _object(
        self, method: str, path: str, body: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        result = self._call(method, path, body)
        if not isinstance(result, dict):
            raise EmulatorAdminError(0, f"unexpected answer to {path}")
        return result

    def health(self) -> dict[str, object]:
        """{"status": "ok", "pid", "started_at", "now"}."""
        return self._object("GET", "health")

    def config(self) -> dict[str, object]:
        """The current knobs (client ids, never secrets)."""
        return self._object("GET", "config")

    def configure(self, **knobs: object) -> dict[str, object]:
        """Change some knobs (see config.KNOBS); returns the new config.

        A bad knob raises EmulatorAdminError(400) and changes nothing.
        """
        return self._object("POST", "config", knobs)

    def reset(self, *, config: bool = False) -> None:
        """Clear records, tokens and windows; with config=True also restore the
        knobs the emulator started with."""
        self._object("POST", "reset", {"config": config})

    def revoke(self, token_id: str | None = None) -> int:
        """Revoke the tokens named `token_id` (tok-xxxxxxxx), or all; returns how many."""
        body = {} if token_id is None else {"token_id": token_id}
        revoked = self._object("POST", "revoke", body)["revoked"]
        return int(revoked) if isinstance(revoked, int) else 0

    def change_missing(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> set[str]:
        """Make ids answer 404 (add) or exist again (remove); returns the new set."""
        result = self._object("POST", "missing", {"add": list(add), "remove": list(remove)})
        ids = result["missing_ids"]
        return {str(i) for i in ids} if isinstance(ids, list) else set()

    def add_missing(self, ids: Iterable[str]) -> set[str]:
        """Make `ids` answer 404 not.found (a deleted user, queue...)."""
        return self.change_missing(add=ids)

    def requests(self, since: int = 0) -> list[RequestRecord]:
        """Every record from index `since` on (fetched page by page)."""
        records: list[RequestRecord] = []
        while True:
            page = self._object("GET", f"requests?since={since}")
            raw = page["records"]
            if not isinstance(raw, list) or not raw:
                return records
            records.extend(RequestRecord.from_json(r) for r in raw)
            next_index = page["next"]
            since = int(next_index) if isinstance(next_index, int) else records[-1].index + 1

    def stats(self, window: float) -> EmulatorStats:
        """Totals and the most admitted API requests in any `window`-second window."""
        return EmulatorStats.from_json(self._object("GET", f"stats?window={window!r}"))


@dataclass
class EmulatorServer(LocalServer, EmulatorAdmin):
    """The emulator as a child process; stop() ends it and only it (by its pid)."""

    startup_config: EmulatorConfig = field(default_factory=EmulatorConfig)

    def __enter__(self) -> EmulatorServer:
        return self


def start_emulator(
    *, timeout: float = 30.0, access_log: bool = False, **config: object
) -> EmulatorServer:
    """Start `python -m ratebridge_tools.emulator --port 0` with these knobs.

    Waits for its "listening" line and returns it running. Knobs (including
    `clients` and their secrets) go to the child on stdin, never on its
    command line. Raises ConfigError (before starting anything) for a bad
    knob, and ServerStartError when the child exits or stays silent past
    `timeout` (the message has the tail of its log).
    """
    startup = EmulatorConfig().with_changes(config)
    fd, log_name = tempfile.mkstemp(prefix="ratebridge-emulator-", suffix=".log")
    os.close(fd)
    argv = [sys.executable, "-m", "ratebridge_tools.emulator", "--port", "0", "--config", "-"]
    if access_log:
        argv.append("--access-log")
    with open(log_name, "wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
        )
    server = EmulatorServer("emulator", "", process, Path(log_name), startup_config=startup)
    try:
        assert process.stdin is not None  # stdin=PIPE
        try:
            with process.stdin:
                process.stdin.write(json.dumps(startup.to_json(include_secrets=True)).encode())
        except BrokenPipeError:
            pass  # the child died before reading: _wait_listening says why
        server.url = _wait_listening(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_listening(server: LocalServer, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(server.log_path.read_text(errors="replace"))
        if match:
            return match.group(1)
        if server.process.poll() is not None:
            raise ServerStartError(
                f"the emulator exited with code {server.process.returncode} before listening:\n"
                f"{server.log_tail()}"
            )
        time.sleep(0.02)
    raise ServerStartError(
        f"the emulator did not say it was listening within {timeout:.0f}s:\n{server.log_tail()}"
    )


class ThreadedEmulator(EmulatorAdmin):
    """The emulator on a daemon thread of this process (see `serve_in_thread`)."""

    def __init__(self, server: EmulatorHTTPServer) -> None:
        self.server = server
        self.state = server.state
        self.url = server.url
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Stop serving, end open connections and wake sleeping handlers."""
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.close_all()
        self._thread.join(timeout=5)

    def __enter__(self) -> ThreadedEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    config: EmulatorConfig | None = None, *, clock: Clock | None = None
) -> ThreadedEmulator:
    """Serve on a free port of 127.0.0.1 from a thread of this process.

    For small tests: `clock` (default time.time) drives arrival times, token
    expiry and windows, so a fake clock makes 429s exact without sleeping.
    Raises OSError when no port can be bound.
    """
    state = EmulatorState(config, clock) if clock is not None else EmulatorState(config)
    return ThreadedEmulator(EmulatorHTTPServer(state, 0))
