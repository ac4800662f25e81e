"""End to end on loopback: EventBridge put_events -> rule -> SQS -> the runner's
workers -> the real handler -> the Genesys emulator, and everything checked
afterwards from the servers' own records (see ratebridge_tools.pipeline.verify).

Workers SIGKILLed mid-batch, the runner restarted and the other faults run on
the same pipeline in tests/chaos (ratebridge_tools.chaos)."""

from __future__ import annotations

import os
import time

from ratebridge_tools import loadgen
from ratebridge_tools.pipeline import LocalPipeline, PipelineConfig, report, verify
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
