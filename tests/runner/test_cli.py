"""`python -m ratebridge_tools.runner`: in-process through main(argv), and as
a real process stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratebridge_tools.runner.cli import main
from ratebridge_tools.servers import LocalServer
from tests.runner.conftest import Queues, Trace, pid_alive

ROOT = Path(__file__).resolve().parents[2]
HANDLER = "tests.runner.handlers.record_and_succeed"


def test_the_cli_drains_a_queue_and_prints_the_stats(
    queues: Queues,
    moto_server: LocalServer,
    trace: Trace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    queues.send(["a", "b", "c"])

    code = main(
        [
            "--queue-url",
            queues.url,
            "--handler",
            HANDLER,
            "--concurrency",
            "1",
            "--function-timeout",
            "1",
            "--env",
            f"RUNNER_TEST_DIR={trace.directory}",
            "--until-drained",
            "--idle-seconds",
            "0.5",
            "--json",
            "--quiet",
        ]
    )

    stats = json.loads(capsys.readouterr().out)
    assert code == 0
    assert stats["stop_reason"] == "drained"
    assert stats["records_deleted"] == 3
    assert len(stats["worker_pids"]) == 1
    assert not [p for p in stats["worker_pids"] if pid_alive(p)]
    assert queues.depth() == 0


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--queue-url", "http://q"],
        ["--queue-url", "http://q", "--handler", "m.f", "--batch-size", "11"],
        ["--queue-url", "http://q", "--handler", "m.f", "--env", "NO_EQUALS_SIGN"],
        ["--queue-url", "http://q", "--handler", "m.f", "--concurrency", "two"],
        ["--queue-url", "http://q", "--handler", "m.f", "--log-level", "LOUD"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--batching-window" in capsys.readouterr().out


def test_a_handler_that_cannot_be_imported_exits_1(
    queues: Queues,
    moto_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)

    code = main(
        [
            "--queue-url",
            queues.url,
            "--handler",
            "tests.runner.handlers.nope",
            "--function-timeout",
            "1",
            "--quiet",
        ]
    )

    assert code == 1
    assert "tests.runner.handlers.nope" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_stopping_the_cli_finishes_the_batch_in_flight_and_leaves_no_worker(
    queues: Queues, moto_server: LocalServer, trace: Trace, how: str
) -> None:
    (message_id,) = queues.send(["a"])
    argv = [
        sys.executable,
        "-m",
        "ratebridge_tools.runner",
        "--queue-url",
        queues.url,
        "--handler",
        HANDLER,
        "--concurrency",
        "2",
        "--function-timeout",
        "1.5",
        "--env",
        f"RUNNER_TEST_DIR={trace.directory}",
        "--env",
        "RUNNER_TEST_SLEEP=1.0",
        "--json",
        "--quiet",
    ]
    # Its own session, so "Ctrl-C" can signal its whole process group (the CLI
    # and its workers) the way a terminal does, without signalling pytest.
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "AWS_ENDPOINT_URL": moto_server.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(e["kind"] == "begin" for e in trace.entries()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no invocation started"
            time.sleep(0.05)
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.terminate()
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 130, err
    stats = json.loads(out)
    assert stats["stop_reason"] == "interrupted"
    assert stats["records_deleted"] == 1, err  # the batch in flight finished
    assert stats["aborted"] == 0
    assert len(stats["worker_pids"]) == 2
    assert not [p for p in stats["worker_pids"] if pid_alive(p)]
    (invocation,) = trace.invocations()
    assert [r["id"] for r in invocation["records"]] == [message_id]
