"""End to end on loopback: EventBridge put_events -> rule -> SQS -> the runner's
workers -> the real handler -> the Genesys emulator, and everything checked
afterwards from the servers' own records (see ratebridge_tools.pipeline.verify)."""

from __future__ import annotations

import os
import signal
import threading
import time

from ratebridge_tools import loadgen
from ratebridge_tools.pipeline import LocalPipeline, PipelineConfig, report, verify
from ratebridge_tools.runner import Runner
from tests.support.genesys import find_leaks


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_1000_events_with_duplicates_and_malformed_ones() -> None:
    # Given 1,000 deliveries: 20% redeliveries of the same EventBridge event,
    # 1% malformed (raw bodies and bad events through EventBridge alike)
    config = PipelineConfig(
        load=loadgen.LoadSpec(events=1000, duplicate_share=0.2, malformed_share=0.01),
        workers=16,
        requests=600,
        per_seconds=10,
        burst=6,
        function_timeout=30,
    )
    with LocalPipeline(config) as pipeline:
        load = loadgen.generate(config.load)
        started = time.time()
        pipeline.publish(load)
        # When 16 workers drain the queue
        stats = pipeline.drain(max_seconds=600)
        collected = pipeline.collect(stats, started)
        problems = verify(pipeline, load, collected)
        figures = report(config, load, collected)
        log = pipeline.function_log()
        secret = pipeline.client_secret_for_scans()
    # Then every good event's record exists once and is right, the malformed
    # ones are in the DLQ with their reason, duplicates made no Genesys call,
    # nothing was answered 429, and no window held more than the limit
    assert problems == [], "\n".join(problems[:30])
    assert stats.stop_reason == "drained"
    assert figures.dlq == 10
    assert figures.duplicates == 200
    assert figures.processed == 790
    assert figures.upstream_429 == 0
    assert figures.token_requests == 1
    assert figures.max_window_ratio <= 1.0
    assert not [pid for pid in stats.worker_pids if alive(pid)]
    # and the functions' whole log holds neither the secret nor a token
    token_ids = {r.token_id for r in collected.emulator_records if r.token_id}
    assert find_leaks([log], [secret], token_ids) == []


def test_a_worker_killed_mid_batch_loses_no_event() -> None:
    # Given a queue of events and four workers, with a short visibility timeout
    # so the killed batch's messages return quickly
    config = PipelineConfig(
        load=loadgen.LoadSpec(events=150, duplicate_share=0.1, malformed_share=0.0, seed=11),
        workers=4,
        requests=100,
        per_seconds=10,
        burst=1,
        function_timeout=6,
        visibility_timeout_seconds=7,
    )
    killed: list[int] = []

    def kill_one_busy_worker(runner: Runner) -> None:
        def kill() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if runner.snapshot().busy_workers == config.workers and runner.worker_pids:
                    pid = runner.worker_pids[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        threading.Thread(target=kill, daemon=True).start()

    with LocalPipeline(config) as pipeline:
        load = loadgen.generate(config.load)
        started = time.time()
        pipeline.publish(load)
        # When one worker is SIGKILLed while every worker is in the middle of a batch
        stats = pipeline.drain(max_seconds=600, on_runner=kill_one_busy_worker)
        collected = pipeline.collect(stats, started)
        problems = verify(pipeline, load, collected)
    # Then it was replaced and every event still has its one record: what it
    # was doing came back after the visibility timeout and was done again,
    # its writes once (the records' eventsApplied counts are checked exactly)
    assert killed, "no worker was killed"
    assert stats.worker_crashes >= 1
    assert stats.stop_reason == "drained"
    recount = [p for p in problems if not p.startswith("Genesys got")]
    assert recount == [], "\n".join(recount[:30])
