"""The runner's pure parts: Lambda's response rules, batching rules, settings,
one invocation in-process, and the context's countdown. No servers, no workers."""

from __future__ import annotations

import decimal
import json
from typing import Any

import pytest

from ratebridge_tools.runner import ConfigError, LambdaContext, RunnerConfig, read_response
from ratebridge_tools.runner.batching import BatchBuilder
from ratebridge_tools.runner.worker import Invoke, Raised, Returned, invoke
from tests.support.clock import FakeClock

IDS = ("m1", "m2", "m3")


@pytest.mark.parametrize(
    ("response", "deleted"),
    [
        (None, IDS),  # a null EventResponse
        ({}, IDS),  # an empty EventResponse
        ({"batchItemFailures": None}, IDS),
        ({"batchItemFailures": []}, IDS),
        ({"statusCode": 200}, IDS),  # no list: a null list
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, ("m1", "m3")),
        (
            {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m2"}]},
            ("m1", "m3"),
        ),
        ({"batchItemFailures": [{"itemIdentifier": m} for m in IDS]}, ()),
    ],
)
def test_valid_responses_delete_all_but_the_reported(
    response: object, deleted: tuple[str, ...]
) -> None:
    verdict = read_response(response, IDS)

    assert verdict.invalid is None
    assert tuple(verdict.to_delete(IDS)) == deleted


@pytest.mark.parametrize(
    "response",
    [
        "ok",  # not an object
        ["m1"],
        42,
        {"batchItemFailures": "m1"},
        {"batchItemFailures": ["m1"]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},  # empty string itemIdentifier
        {"batchItemFailures": [{"itemIdentifier": None}]},  # null itemIdentifier
        {"batchItemFailures": [{"itemidentifier": "m1"}]},  # bad key name
        {"batchItemFailures": [{"itemIdentifier": "m9"}]},  # a message id not in the batch
        {"batchItemFailures": [{"itemIdentifier": 1}]},
        {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m9"}]},
    ],
)
def test_malformed_responses_fail_the_whole_batch(response: object) -> None:
    verdict = read_response(response, IDS)

    assert verdict.complete_failure
    assert verdict.invalid
    assert verdict.to_delete(IDS) == []


def _record(n: int, body: str = "x") -> dict[str, Any]:
    return {"messageId": f"m{n}", "body": body}


def test_a_batch_is_due_when_full_or_when_its_window_has_passed() -> None:
    clock = FakeClock(100.0)
    builder = BatchBuilder(batch_size=25, batching_window=2.0, clock=clock.time)
    assert not builder.is_due()  # empty: never due
    assert builder.room() == 10
    assert builder.window_left() == 2.0

    builder.add([_record(i) for i in range(10)])
    assert builder.room() == 10 and not builder.is_due()
    clock.advance(1.5)
    builder.add([_record(i) for i in range(10, 15)])
    assert builder.window_left() == pytest.approx(0.5)  # counted from the first record
    clock.advance(0.5)
    assert builder.is_due() and not builder.is_full()

    full = BatchBuilder(batch_size=12, batching_window=300.0, clock=clock.time)
    full.add([_record(i) for i in range(10)])
    assert full.room() == 2
    assert full.add([_record(10), _record(11)]) == []
    assert full.is_full() and full.is_due()


def test_without_a_window_any_records_make_a_batch() -> None:
    builder = BatchBuilder(batch_size=10, batching_window=0.0, clock=FakeClock().time)
    builder.add([_record(1)])
    assert builder.is_due()


def test_records_past_the_payload_limit_open_the_next_batch() -> None:
    builder = BatchBuilder(
        batch_size=100, batching_window=5.0, max_payload_bytes=1000, clock=FakeClock().time
    )
    records = [_record(i, "b" * 200) for i in range(6)]  # ~240 bytes each

    carried = builder.add(records)

    assert [r["messageId"] for r in builder.records] == ["m0", "m1", "m2", "m3"]
    assert [r["messageId"] for r in carried] == ["m4", "m5"]
    assert builder.is_full() and builder.is_due()
    assert builder.payload_bytes <= 1000


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_size": 0},
        {"batch_size": 10_001, "batching_window": 1},
        {"batch_size": 11},  # > 10 needs a window of at least 1 s, as on Lambda
        {"batch_size": 11, "batching_window": 0.5},
        {"batching_window": 301},
        {"batching_window": -1},
        {"concurrency": 0},
        {"function_timeout": 0},
        {"function_timeout": 901},
        {"memory_mb": 64},
        {"poll_wait_seconds": 21},
        {"handler": "no_dot"},
        {"handler": "module.not-a-name"},
        {"handler": ".function"},
        {"queue_url": ""},
        {"environment": {"": "x"}},
    ],
)
def test_settings_lambda_would_refuse_are_refused(settings: dict[str, Any]) -> None:
    values: dict[str, Any] = {"queue_url": "http://q", "handler": "pkg.mod.fn", **settings}
    with pytest.raises(ConfigError):
        RunnerConfig(**values)


def test_lambda_settings_are_accepted() -> None:
    config = RunnerConfig(
        queue_url="http://q",
        handler="processor/handler.lambda_handler",  # slashes, as Lambda allows
        batch_size=10_000,
        batching_window=300,
        function_timeout=900,
        concurrency=1000,
    )
    assert config.batch_size == 10_000


def _invoke(handler: Any, body: str = "x", deadline_ms: int = 2**62) -> Returned | Raised:
    event = {"Records": [{"messageId": "m1", "body": body}]}
    return invoke(handler, Invoke("req-1", json.dumps(event), deadline_ms), "arn:fn")


def test_an_invocation_gets_the_json_event_and_returns_json() -> None:
    seen: list[Any] = []

    def handler(event: Any, context: LambdaContext) -> Any:
        seen.append((event, context.aws_request_id, context.invoked_function_arn))
        return {"batchItemFailures": [], "n": decimal.Decimal("1.5")}

    reply = _invoke(handler)

    assert isinstance(reply, Returned)
    assert json.loads(reply.payload_json) == {"batchItemFailures": [], "n": 1.5}
    assert seen == [({"Records": [{"messageId": "m1", "body": "x"}]}, "req-1", "arn:fn")]


def test_a_raising_handler_and_an_unencodable_result_are_function_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def boom(event: Any, context: LambdaContext) -> Any:
        raise KeyError("missing")

    def a_set(event: Any, context: LambdaContext) -> Any:
        return {"x": {1, 2}}

    raised = _invoke(boom)
    unencodable = _invoke(a_set)

    assert isinstance(raised, Raised)
    assert raised.error.error_type == "KeyError"
    assert any("raise KeyError" in line for line in raised.error.stack)
    assert isinstance(unencodable, Raised)
    assert unencodable.error.error_type == "Runtime.MarshalError"
    assert "[ERROR] KeyError" in capsys.readouterr().err  # logged like the runtime does


def test_the_context_counts_down_to_its_deadline_and_stops_at_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    clock = FakeClock(1000.0)
    context = LambdaContext(
        aws_request_id="r", invoked_function_arn="arn", deadline_ms=1_003_000, clock=clock.time
    )

    assert context.get_remaining_time_in_millis() == 3000
    clock.advance(1.25)
    assert context.get_remaining_time_in_millis() == 1750
    clock.advance(5)
    assert context.get_remaining_time_in_millis() == 0
    assert context.function_name == "fn"
    assert context.memory_limit_in_mb == "256"  # a string, as in the Python runtime
