"""The runner end to end: a moto server over HTTP, real worker processes, the
handlers in tests.runner.handlers. Every assertion is on counts and exact
sets (what was delivered, deleted, redriven), never on speed."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ratebridge_tools.runner import (
    ConfigError,
    HandlerInitError,
    Outcome,
    Progress,
    QueueError,
    Runner,
    RunnerConfig,
)
from tests.runner.conftest import MAX_RECEIVE_COUNT, Harness, Queues, pid_alive


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


def records_of(invocations: list[dict[str, Any]], result: str | None = None) -> list[Any]:
    return [
        r for i in invocations if result is None or i.get("result") == result for r in i["records"]
    ]


def test_partial_batch_failures_come_back_then_land_in_the_dlq(
    harness: Harness, queues: Queues
) -> None:
    # Given a Powertools handler that fails records whose body starts with "fail"
    # (1 s visibility timeout so the three deliveries are quick)
    queues.sqs.set_queue_attributes(QueueUrl=queues.url, Attributes={"VisibilityTimeout": "1"})
    sent = queues.send([f"ok-{i}" for i in range(9)] + [f"fail-{i}" for i in range(3)])
    ok = {m for m, body in sent.items() if body.startswith("ok")}
    bad = set(sent) - ok
    snapshots: list[Progress] = []
    runner = harness.runner(
        "tests.runner.powertools_handler.lambda_handler",
        concurrency=2,
        batch_size=4,
        function_timeout=1.0,
        progress=snapshots.append,
    )

    # When the runner drains the queue
    stats = runner.run_until_drained(idle_seconds=0.5, max_seconds=60)

    # Then each good message was deleted exactly once, no failing one ever was
    assert stats.stop_reason == "drained"
    assert Counter(harness.deleted()) == dict.fromkeys(ok, 1)
    # and each failing one came back until maxReceiveCount, reported failed each time
    delivered = Counter(r["id"] for r in records_of(harness.trace.invocations()))
    assert {m: delivered[m] for m in bad} == dict.fromkeys(bad, MAX_RECEIVE_COUNT)
    reported = Counter(m for o in harness.outcomes for m in o.reported_failed)
    assert reported == dict.fromkeys(bad, MAX_RECEIVE_COUNT)
    # and then SQS moved it to the DLQ, body unchanged; the main queue is empty
    dlq = queues.dlq_messages()
    assert {m["MessageId"]: m["Body"] for m in dlq} == {m: sent[m] for m in bad}
    assert queues.depth() == 0
    assert all(len(o.message_ids) <= 4 for o in harness.outcomes)
    assert {o.outcome for o in harness.outcomes} <= {Outcome.SUCCEEDED, Outcome.PARTIAL}
    assert stats.records_deleted == len(ok)
    assert stats.records_reported_failed == len(bad) * MAX_RECEIVE_COUNT
    assert stats.records_received == len(ok) + len(bad) * MAX_RECEIVE_COUNT
    assert stats.batches == len(harness.outcomes) == len(stats.durations)
    assert stats.handler_errors == stats.invalid_responses == stats.timeouts == 0
    # and the progress callback saw the run go by
    assert len(snapshots) >= 2
    assert [s.elapsed for s in snapshots] == sorted(s.elapsed for s in snapshots)
    assert all(s.workers == 2 and 0 <= s.busy_workers <= 2 for s in snapshots)


def test_batches_gather_several_receives_but_never_exceed_the_batch_size(
    harness: Harness, queues: Queues
) -> None:
    sent = queues.send([f"m-{i}" for i in range(60)])
    runner = harness.runner("record_and_succeed", concurrency=2, batch_size=25, batching_window=1.0)

    stats = runner.run_until_drained(idle_seconds=0.5, max_seconds=30)

    sizes = [len(o.message_ids) for o in harness.outcomes]
    assert sum(sizes) == 60
    assert max(sizes) <= 25
    assert max(sizes) > 10  # one receive returns at most 10: batches span several
    handler_sizes = sorted(len(i["records"]) for i in harness.trace.invocations())
    assert handler_sizes == sorted(sizes)
    assert sorted(harness.deleted()) == sorted(sent)
    assert stats.largest_batch == max(sizes)
    assert queues.depth() == 0


def test_concurrency_is_capped_and_each_worker_is_one_warm_container(
    harness: Harness, queues: Queues
) -> None:
    sent = queues.send([f"m-{i}" for i in range(24)])
    runner = harness.runner(
        "record_and_succeed",
        env={"RUNNER_TEST_SLEEP": "0.15", "RUNNER_TEST_PROBE": "probe-value"},
        concurrency=3,
        batch_size=2,
        function_timeout=2.0,
        function_name="fn-under-test",
        memory_mb=256,
    )

    stats = runner.run_until_drained(idle_seconds=0.5, max_seconds=30)

    invocations = harness.trace.invocations()
    assert sorted(r["id"] for r in records_of(invocations)) == sorted(sent)
    assert all(len(i["records"]) <= 2 for i in invocations)
    # never more than `concurrency` batches at once, seen from the handlers and the runner
    assert max_overlap([(i["start"], i["end"]) for i in invocations]) <= 3
    assert stats.max_in_flight <= 3
    # three containers, each imported the handler once (cold) and then stayed warm
    assert len(stats.worker_pids) == 3 and stats.worker_restarts == 0
    assert {i["pid"] for i in invocations} <= set(stats.worker_pids)
    assert Counter(e["pid"] for e in harness.trace.inits()) == dict.fromkeys(stats.worker_pids, 1)
    assert len(stats.init_durations) == 3
    # a context like Lambda's, a new request id per invocation
    assert len({i["request_id"] for i in invocations}) == len(invocations) == stats.batches
    account = queues.url.rstrip("/").split("/")[-2]
    streams: dict[int, set[str]] = {}
    for invocation in invocations:
        context = invocation["lambda_context"]
        assert context["function_name"] == "fn-under-test"
        assert context["function_version"] == "$LATEST"
        assert context["memory_limit_in_mb"] == "256"
        assert context["invoked_function_arn"] == (
            f"arn:aws:lambda:us-east-1:{account}:function:fn-under-test"
        )
        assert context["log_group_name"] == "/aws/lambda/fn-under-test"
        streams.setdefault(invocation["pid"], set()).add(context["log_stream_name"])
        assert invocation["env"] == {
            "RUNNER_TEST_PROBE": "probe-value",
            "AWS_LAMBDA_FUNCTION_NAME": "fn-under-test",
        }
        assert 1000 < invocation["remaining_at_start"] <= 2000
        assert invocation["remaining_at_end"] < invocation["remaining_at_start"]
    assert all(len(s) == 1 for s in streams.values())  # one log stream per container
    assert len(set.union(*streams.values())) == len(streams)


@pytest.mark.parametrize(
    ("handler", "outcome", "counter"),
    [
        ("raise_first_time", Outcome.HANDLER_ERROR, "handler_errors"),
        ("bad_response_first_time", Outcome.INVALID_RESPONSE, "invalid_responses"),
    ],
)
def test_a_failed_invocation_deletes_nothing_and_every_message_comes_back(
    harness: Harness, queues: Queues, handler: str, outcome: Outcome, counter: str
) -> None:
    sent = queues.send(["a", "b", "c"])
    runner = harness.runner(handler, concurrency=1, batch_size=10)

    stats = runner.run_until_drained(idle_seconds=0.5, max_seconds=30)

    first, *later = harness.outcomes
    assert first.outcome is outcome
    assert set(first.message_ids) == set(sent)
    assert first.deleted == ()
    assert first.error
    assert all(o.outcome is Outcome.SUCCEEDED for o in later)
    assert Counter(harness.deleted()) == dict.fromkeys(sent, 1)
    succeeded = records_of(harness.trace.invocations(), "ok")
    assert sorted(r["id"] for r in succeeded) == sorted(sent)
    assert all(r["receive_count"] == 2 for r in succeeded)
    assert getattr(stats, counter) == 1
    # a function error keeps the execution environment, as on Lambda
    assert len(stats.worker_pids) == 1 and stats.worker_restarts == 0
    assert queues.depth() == 0 and queues.depth(queues.dlq_url) == 0


def test_a_timeout_kills_the_worker_and_a_new_one_takes_over(
    harness: Harness, queues: Queues
) -> None:
    (message_id,) = queues.send(["slow"])
    runner = harness.runner("sleep_past_timeout_first_time", concurrency=1, function_timeout=1.0)

    stats = runner.run_until_drained(idle_seconds=0.5, max_seconds=30)

    timed_out, succeeded = harness.outcomes
    assert timed_out.outcome is Outcome.TIMEOUT
    assert timed_out.error == "Task timed out after 1.00 seconds"
    assert timed_out.deleted == ()
    assert succeeded.outcome is Outcome.SUCCEEDED
    assert succeeded.deleted == (message_id,)
    assert succeeded.worker_pid != timed_out.worker_pid
    assert not pid_alive(timed_out.worker_pid)
    assert stats.timeouts == 1 and stats.worker_restarts == 1
    assert stats.worker_pids == (timed_out.worker_pid, succeeded.worker_pid)
    assert len(harness.trace.inits()) == 2  # the replacement had its own cold start
    first, second = harness.trace.invocations()
    # the remaining time starts near the function timeout and counts down
    assert 500 < first["remaining_at_start"] <= 1000
    assert first["remaining_later"] < first["remaining_at_start"]
    assert second["records"][0]["receive_count"] == 2
    assert 500 < second["remaining_at_start"] <= 1000  # a new deadline per invocation


def test_a_worker_killed_mid_batch_loses_no_message(harness: Harness, queues: Queues) -> None:
    sent = queues.send([f"m-{i}" for i in range(20)])
    runner = harness.runner("die_first_time", concurrency=2, batch_size=5)

    stats = runner.run_until_drained(idle_seconds=0.5, max_seconds=30)

    (crashed,) = [o for o in harness.outcomes if o.outcome is Outcome.CRASHED]
    assert crashed.deleted == ()
    assert not pid_alive(crashed.worker_pid)
    invocations = harness.trace.invocations()
    (killed,) = [i for i in invocations if i["result"] == "killed"]
    assert {r["id"] for r in killed["records"]} == set(crashed.message_ids)
    processed = records_of(invocations, "ok")
    # every message processed once and deleted once; nothing deleted unprocessed
    assert Counter(harness.deleted()) == Counter(r["id"] for r in processed)
    assert Counter(harness.deleted()) == dict.fromkeys(sent, 1)
    # the killed batch's messages came back after the visibility timeout
    assert {r["id"]: r["receive_count"] for r in processed if r["id"] in crashed.message_ids} == (
        dict.fromkeys(crashed.message_ids, 2)
    )
    assert stats.worker_crashes == 1 and stats.worker_restarts == 1
    assert len(stats.worker_pids) == 3
    assert queues.depth() == 0 and queues.depth(queues.dlq_url) == 0


def test_stop_from_another_thread_lets_in_flight_batches_finish(
    harness: Harness, queues: Queues
) -> None:
    queues.send([f"m-{i}" for i in range(30)])
    runner = harness.runner(
        "record_and_succeed", env={"RUNNER_TEST_SLEEP": "0.5"}, concurrency=2, batch_size=1
    )
    timer = threading.Timer(1.5, runner.stop)
    timer.start()
    try:
        stats = runner.run(max_seconds=30)
    finally:
        timer.cancel()
        timer.join()

    assert stats.stop_reason == "stopped"
    assert stats.aborted == 0
    assert all(o.outcome is Outcome.SUCCEEDED for o in harness.outcomes)
    assert stats.records_deleted == stats.batches == len(harness.outcomes)
    assert queues.depth() == 30 - stats.records_deleted > 0  # the rest waits in the queue
    assert not [p for p in stats.worker_pids if pid_alive(p)]


def test_max_seconds_stops_and_kills_what_outlives_the_grace(
    harness: Harness, queues: Queues
) -> None:
    queues.send(["slow"])
    runner = harness.runner(
        "record_and_succeed",
        env={"RUNNER_TEST_SLEEP": "30"},
        concurrency=1,
        function_timeout=2.0,
        shutdown_grace=0.2,
    )

    stats = runner.run(max_seconds=1.0)

    assert stats.stop_reason == "max_seconds"
    (aborted,) = harness.outcomes
    assert aborted.outcome is Outcome.ABORTED and aborted.deleted == ()
    assert stats.aborted == 1
    assert not [p for p in stats.worker_pids if pid_alive(p)]


def test_ctrl_c_lets_the_in_flight_batch_finish_then_ends_the_workers(
    harness: Harness, queues: Queues
) -> None:
    (message_id,) = queues.send(["a"])

    def interrupt_when_busy(progress: Progress) -> None:
        if progress.busy_workers:
            raise KeyboardInterrupt  # what Ctrl-C raises in the calling thread

    runner = harness.runner(
        "record_and_succeed",
        env={"RUNNER_TEST_SLEEP": "1.0"},
        concurrency=1,
        progress=interrupt_when_busy,
        progress_interval=0.1,
    )

    with pytest.raises(KeyboardInterrupt):
        runner.run(max_seconds=20)

    stats = runner.stats()
    assert stats.stop_reason == "interrupted"
    (finished,) = harness.outcomes
    assert finished.outcome is Outcome.SUCCEEDED and finished.deleted == (message_id,)
    assert not [p for p in stats.worker_pids if pid_alive(p)]


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("tests.runner.handlers.no_such_function", "AttributeError"),
        ("tests.runner.no_such_module.handler", "ModuleNotFoundError"),
        ("tests.runner.exit_at_import.handler", "Runtime.ExitError"),  # after 3 tries
    ],
)
def test_a_handler_that_cannot_be_imported_stops_the_runner(
    harness: Harness, handler: str, error_type: str
) -> None:
    runner = harness.runner(handler, concurrency=2)

    with pytest.raises(HandlerInitError) as raised:
        runner.run_until_drained(idle_seconds=0.5)

    assert raised.value.error_type == error_type
    assert raised.value.handler == handler
    assert len(runner.worker_pids) >= 2
    assert not [p for p in runner.worker_pids if pid_alive(p)]


def test_an_error_in_a_callback_ends_the_run_and_every_worker(
    harness: Harness, queues: Queues
) -> None:
    queues.send(["a"])

    def broken_display(progress: Progress) -> None:
        raise RuntimeError("display broke")

    runner = harness.runner(
        "record_and_succeed", concurrency=2, progress=broken_display, progress_interval=0.2
    )

    with pytest.raises(RuntimeError, match="display broke"):
        runner.run(max_seconds=20)

    assert runner.stats().stop_reason == "error"
    assert len(runner.worker_pids) == 2
    assert not [p for p in runner.worker_pids if pid_alive(p)]


def test_mappings_lambda_would_refuse_fail_before_any_worker_starts(
    harness: Harness, queues: Queues
) -> None:
    # function timeout above the queue's visibility timeout (2 s)
    too_slow = harness.runner("record_and_succeed", function_timeout=3.0)
    with pytest.raises(ConfigError, match="visibility timeout"):
        too_slow.start()
    assert too_slow.worker_pids == ()

    fifo_url = queues.sqs.create_queue(
        QueueName=queues.url.rsplit("/", 1)[1] + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    try:
        fifo = Runner(
            RunnerConfig(queue_url=fifo_url, handler="tests.runner.handlers.record_and_succeed"),
            sqs_client=queues.sqs,
        )
        with pytest.raises(ConfigError, match="FIFO"), fifo:
            fifo.start()
    finally:
        queues.sqs.delete_queue(QueueUrl=fifo_url)

    missing = Runner(
        RunnerConfig(
            queue_url=queues.url + "-missing", handler="tests.runner.handlers.record_and_succeed"
        ),
        sqs_client=queues.sqs,
    )
    with pytest.raises(QueueError), missing:
        missing.run()


def test_worker_output_goes_to_the_function_log_not_the_terminal(
    harness: Harness, queues: Queues, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "function.log"
    queues.send(["alpha", "beta"])
    runner = harness.runner("print_and_succeed", concurrency=1, worker_output=str(log))

    runner.run_until_drained(idle_seconds=0.5, max_seconds=30)

    lines = log.read_text().splitlines()
    assert sorted(line for line in lines if line.startswith(("out ", "err "))) == [
        "err alpha",
        "err beta",
        "out alpha",
        "out beta",
    ]
    out, err = capfd.readouterr()
    assert "alpha" not in out + err
