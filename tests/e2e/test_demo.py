"""The demo's engine end to end, both strategies on the same small load (the default run,
and its figures, are measured by scripts/demo itself: see the README)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratebridge_tools import demo
from ratebridge_tools.demo import DemoConfig


def small(strategy: str, tmp_path: Path) -> DemoConfig:
    # A 30 s window: the limiter's 1% jitter allowance (300 ms) covers late wake-ups
    # of workers sharing two cores with the servers; 5 s (50 ms) did not, here.
    return DemoConfig(
        events=32,  # 36 Genesys calls: more than one window allows
        workers=4,
        requests=30,
        per_seconds=30,
        burst=1,
        # 8 records in flight wait at most ~10 s for permits at 1/s: within the max
        # wait, so no record is put back after its first call (which would repeat it)
        batch_size=2,
        malformed_share=0.05,  # two malformed deliveries
        strategy=strategy,
        chart=tmp_path / f"{strategy}.png",
        max_seconds=300,
    )


def test_ratebridge_holds_the_limit_and_loses_nothing(tmp_path: Path) -> None:
    # Given a backlog that needs more Genesys calls than the limit allows at once
    out = io.StringIO()
    # When the demo's engine drains it with ratebridge's handler
    result = demo.run(small("ratebridge", tmp_path), out=out)
    r = result.report
    # Then every record was checked right, Genesys never answered 429, one token
    # served the fleet, and no window of the limit held more than the limit
    assert result.problems == []
    assert (r.upstream_429, r.token_requests) == (0, 1)
    assert r.max_window_ratio <= 1.0
    assert r.dlq == 2  # the two malformed deliveries, with their reason
    assert r.processed + r.duplicates + r.dlq == r.events_in
    # and the report, its JSON and the chart were made
    written = tmp_path / "report.json"
    demo.write_json(result, written)
    figures = json.loads(written.read_text())
    assert set(demo.REPORT_KEYS) <= set(figures)
    assert figures["upstream_429"] == 0
    assert result.chart is not None
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "records" in out.getvalue()  # the live view printed progress
    assert "checked: every good event's record exists once" in demo.summary(result)


@pytest.mark.slow  # a minute of the seed being throttled; README's table has its figures
def test_the_seed_on_the_same_load_shows_the_difference(tmp_path: Path) -> None:
    # When the tutorial's handler works on the same load against the same emulator
    # for 45 s (its failed batches come back only after the visibility timeout, so
    # it drains slowly; the default demo run shows all of that)
    config = dataclasses.replace(small("seed", tmp_path), max_seconds=45)
    result = demo.run(config, out=io.StringIO())
    r = result.report
    # Then each container fetched its own token (a container killed at its timeout while
    # it slept on retries is replaced by a new one, which logs in again), and Genesys
    # answered 429s
    assert r.token_requests >= 4
    assert r.upstream_429 > 0
    # and the emulator enforced the limit all the same (it is the ceiling for everybody)
    assert r.max_window_ratio <= 1.0


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children of children included)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    kids = [int(k) for k in children.read().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def test_ctrl_c_ends_every_process_the_demo_started(tmp_path: Path) -> None:
    # Given a demo draining its queue (servers, proxy, emulator and workers running)
    demo_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ratebridge_tools.cli",
            "demo",
            "--events",
            "60",
            "--workers",
            "2",
            "--no-chart",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert demo_process.stdout is not None
    started: set[int] = set()
    deadline = time.monotonic() + 180
    for line in demo_process.stdout:
        if line.startswith("draining with"):
            break
        assert time.monotonic() < deadline, "the demo did not start draining"
    time.sleep(3)  # the workers are up (or importing the SDK)
    started = descendants(demo_process.pid)
    assert len(started) >= 5  # moto x2, the proxy, the emulator, the workers
    # When the operator presses Ctrl-C
    demo_process.send_signal(signal.SIGINT)
    output, _ = demo_process.communicate(timeout=120)
    # Then it says so, exits 130, and nothing it started is still running
    assert demo_process.returncode == 130
    assert "interrupted" in output
    still = {pid: command(pid) for pid in started if alive(pid)}
    assert still == {}


def command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            text = cmdline.read().replace(b"\0", b" ").decode(errors="replace")[:200]
        return f"{state(pid)} {text}"
    except OSError:
        return "?"


def state(pid: int) -> str:
    """The process's state letter ("" if it is gone): after the command, which may hold spaces."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def alive(pid: int, patience: float = 5.0) -> bool:
    """Still running after `patience` seconds (a zombie or a process gone has ended; one
    in the middle of exiting gets a moment to finish)."""
    deadline = time.monotonic() + patience
    while state(pid) not in ("", "Z", "X"):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False
