"""The pipeline under faults (`ratebridge_tools.chaos`): nothing lost, nothing
doubled, no Genesys request without a grant, no window over the limit, and
the fleet writing again within each scenario's stated bound.

The short profile's scenarios run by default; the others with
`scripts/test --long` (`ratebridge chaos --long` prints them all as a table).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ratebridge_tools.chaos import (
    SCENARIOS,
    Outcome,
    Ran,
    Scenario,
    scenario_run,
    skew_experiment,
)
from ratebridge_tools.servers import LocalServer
from tests.support.genesys import find_leaks

FAULTS = [
    pytest.param(s, id=s.name, marks=() if s.in_short else pytest.mark.slow)
    for s in SCENARIOS
    if s.name != "baseline"
]
BASELINE = SCENARIOS[0]


@pytest.mark.parametrize("scenario", FAULTS)
def test_every_promise_holds_under(scenario: Scenario) -> None:
    # Given the whole pipeline on a small load, when the faults strike mid-run
    with scenario_run(scenario) as ran:
        outcome = ran.judge(scenario)
        leaks = _leaks(ran)
        tampered = _tamper(ran, scenario, outcome) if scenario.in_short else None
    # Then the faults bit (requests they answered, workers they killed), each
    # while work was left (records were written after each one ended) ...
    assert outcome.fault_hits > 0, outcome
    assert None not in outcome.recoveries, outcome
    assert len(outcome.recoveries) == len(scenario.faults)
    # ... and every event was applied once or is in the DLQ with its reason,
    # Genesys saw no request without a grant and no window over the limit,
    # and the fleet wrote again within each fault's stated bound
    assert outcome.problems == ()
    assert (outcome.lost, outcome.doubled) == (0, 0)
    assert outcome.processed > 0
    if any(f.answers_429 for f in scenario.faults):
        assert outcome.upstream_429 > 0
    if any("SIGKILL" in f.what for f in scenario.faults):
        assert any(n.startswith("killed ") for n in outcome.notes), outcome.notes
    # And no client secret or access token is in any log line, stored item
    # (outside the tokens table) or dead letter
    assert leaks == []
    # And the checks catch what they guard: after one conversation's item was
    # deleted, another made to count an event twice, and the bucket's grants
    # set below what Genesys saw, each is named
    if tampered is not None:
        broken, key, events_lost = tampered
        assert broken.lost == events_lost
        assert broken.doubled == 1
        assert f"interaction {key} missing" in broken.problems
        assert any("only" in p and "grants" in p for p in broken.problems)


@pytest.mark.slow
def test_the_control_run_is_clean() -> None:
    with scenario_run(BASELINE) as ran:
        clean = ran.judge(BASELINE)
    # Without a fault: no fault answer, no 429, nothing in the DLQ but the
    # malformed (a redelivery racing its original may be retried once)
    assert clean.problems == ()
    assert (clean.fault_hits, clean.upstream_429) == (0, 0)
    assert clean.dlq == ran.load.malformed


def _tamper(ran: Ran, scenario: Scenario, outcome: Outcome) -> tuple[Outcome, str, int]:
    """Lose one conversation's item, make another count an event twice, and
    lower the bucket's grants below Genesys's count; judge again. Returns the
    new outcome, the lost conversation and how many events it held."""
    settings = ran.pipeline.settings
    dynamodb = _dynamodb(ran)
    table = settings.interactions_table
    keys = [item["conversationId"]["S"] for item in dynamodb.scan(TableName=table)["Items"]]
    assert len(keys) >= 2
    gone = dynamodb.get_item(TableName=table, Key={"conversationId": {"S": keys[0]}})["Item"]
    dynamodb.delete_item(TableName=table, Key={"conversationId": {"S": keys[0]}})
    dynamodb.update_item(
        TableName=table,
        Key={"conversationId": {"S": keys[1]}},
        UpdateExpression="ADD eventsApplied :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    ran.grants[settings.genesys.bucket] = outcome.upstream_requests - 1
    return ran.judge(scenario), keys[0], len(gone["eventIds"]["SS"])


def _dynamodb(ran: Ran) -> Any:
    """A client of the run's DynamoDB, straight (not through the fault proxy)."""
    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=ran.pipeline.dynamodb.url)


def _leaks(ran: Ran) -> list[str]:
    """Every client secret or access token in the functions' log, the DLQ, or
    an item of any table but the tokens table."""
    pipeline = ran.pipeline
    dynamodb = _dynamodb(ran)
    texts = [pipeline.function_log(), json.dumps(ran.collected.dlq)]
    for name in dynamodb.list_tables()["TableNames"]:
        if name != pipeline.settings.tokens_table:
            for page in dynamodb.get_paginator("scan").paginate(TableName=name):
                texts += [json.dumps(item) for item in page["Items"]]
    token_ids = {r.token_id for r in ran.collected.emulator_records if r.token_id}
    assert token_ids, "no token was used: the scan would prove nothing"
    return find_leaks(texts, [pipeline.client_secret_for_scans()], token_ids)


def test_clock_skew_over_grant_stays_within_skew_times_rate(backend: LocalServer) -> None:
    # Given four callers on one bucket of 20 per second, clocks 50 ms behind
    # and ahead of true time, each taking grants as fast as the bucket allows
    skewed = skew_experiment(backend.url, offsets_s=(-0.05, 0.05, -0.05, 0.05), seconds=2.0)
    # Then, counting each grant at its slot in true time (exact: slot - offset),
    # no window of 1 s holds more than the limit + ceil(0.1 s x 20/s) = 22
    assert skewed.grants > skewed.requests  # pressed past a whole window
    assert skewed.bound == 2
    assert skewed.over_grant <= skewed.bound, skewed
    # And with the clocks agreeing, no window holds more than the limit at all
    agreed = skew_experiment(backend.url, offsets_s=(0.0, 0.0, 0.0, 0.0), seconds=2.0)
    assert agreed.grants > agreed.requests
    assert agreed.over_grant == 0, agreed
