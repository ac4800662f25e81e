"""The SAM template, checked offline: cfn-lint, the translation deployed in moto, and the
real handler run against what the stack created (see ratebridge_tools.infracheck).

The template itself must pass every layer. Deliberately broken copies must each
be caught, and by the check that says what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ratebridge_tools import infracheck
from ratebridge_tools.infracheck import TEMPLATE, Report


@pytest.fixture(scope="module")
def report() -> Report:
    """Every layer on infra/template.yaml, the handler exercise included."""
    return infracheck.run(TEMPLATE)


def test_the_template_passes_every_layer(report: Report) -> None:
    assert [str(f) for f in report.findings] == []
    assert report.layers == ["lint", "static", "stack", "exercise"]


def test_the_handler_ran_on_the_stacks_own_resources(report: Report) -> None:
    # Every good event became its record, the malformed ones reached the stack's DLQ
    # with their reason, and records that had to wait for capacity came back as copies
    summary = report.exercise
    assert summary["malformed"] > 0
    assert summary["dlq"] == summary["malformed"]
    assert summary["deferred"] > 0
    assert summary["interactions"] > 0
    assert summary["presence"] > 0
    assert (summary["timeouts"], summary["handler_errors"], summary["upstream_429"]) == (0, 0, 0)


def test_every_request_the_function_made_is_allowed_by_its_role(report: Report) -> None:
    # (the check itself is a finding when it fails; here: it looked at the paths that matter)
    used = report.usage
    for needed in [
        ("dynamodb:UpdateItem", "BucketsTable"),  # a grant
        ("dynamodb:BatchGetItem", "LimitsTable"),  # a cold start reads the limit
        ("dynamodb:UpdateItem", "LimitsTable"),  # the deploy-time default limit
        ("dynamodb:UpdateItem", "TokensTable"),  # the token lease
        ("dynamodb:PutItem", "IdempotencyTable"),
        ("dynamodb:UpdateItem", "InteractionsTable"),
        ("dynamodb:UpdateItem", "PresenceTable"),
        ("sqs:SendMessage", "DeadLetterQueue"),  # a malformed record, with its reason
        ("sqs:SendMessage", "EventsQueue"),  # a delayed copy while capacity is short
        ("secretsmanager:GetSecretValue", "GenesysCredentials"),
    ]:
        assert needed in used, needed


def test_the_metrics_the_code_emits_are_the_catalogues(report: Report) -> None:
    emitted = {(metric, dims) for _, metric, dims in report.metrics}
    assert ("Granted", frozenset({"Bucket", "service"})) in emitted
    assert ("Deferred", frozenset({"Route", "service"})) in emitted
    assert ("DeadLettered", frozenset({"Route", "service"})) in emitted


# Each: what to break, and the finding that must say so (layer, check).
MUTATIONS = {
    "maximum-concurrency-1": (
        "              MaximumConcurrency: !Ref MaximumConcurrency",
        "              MaximumConcurrency: 1",
        ("lint", "E3034"),
    ),
    "visibility-below-6x-timeout": (
        '    "60": { VisibilityTimeout: 420 }',
        '    "60": { VisibilityTimeout: 60 }',
        ("static", "visibility-timeout"),
    ),
    "wrong-handler-path": (
        "      Handler: processor.handler.lambda_handler",
        "      Handler: processor.handlers.lambda_handler",
        ("static", "handler"),
    ),
    "a-table-the-function-may-not-write": (
        "                Resource: [!GetAtt InteractionsTable.Arn, !GetAtt PresenceTable.Arn]",
        "                Resource: [!GetAtt InteractionsTable.Arn]",
        ("exercise", "iam"),
    ),
    "no-report-batch-item-failures": (
        "            FunctionResponseTypes: [ReportBatchItemFailures]\n",
        "",
        ("static", "partial-batch"),
    ),
    "a-wildcard-resource": (
        "                Resource: !GetAtt TokensTable.Arn",
        '                Resource: "*"',
        ("static", "iam"),
    ),
    "an-unencrypted-table": (
        "      SSESpecification: { SSEEnabled: true }\n      PointInTimeRecoverySpecification: "
        "{ PointInTimeRecoveryEnabled: true }\n      KeySchema: [{ AttributeName: userId",
        "      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }\n"
        "      KeySchema: [{ AttributeName: userId",
        ("static", "encryption"),
    ),
    "no-ttl-on-idempotency": (
        "      TimeToLiveSpecification: { AttributeName: expiration, Enabled: true }\n",
        "",
        ("static", "ttl"),
    ),
    "anyone-may-send-to-the-queue": (
        "            Principal: { Service: events.amazonaws.com }\n"
        "            Action: sqs:SendMessage",
        '            Principal: "*"\n            Action: sqs:SendMessage',
        ("static", "public"),
    ),
    "no-alarm-on-429s": (
        "      MetricName: Upstream429\n",
        "      MetricName: Upstream4xx\n",
        ("static", "metrics"),
    ),
}


def mutate(tmp_path: Path, old: str, new: str) -> Path:
    text = TEMPLATE.read_text()
    assert text.count(old) == 1, f"the template changed: {old!r} is not there once"
    path = tmp_path / "template.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("name", MUTATIONS)
def test_a_broken_template_is_caught(name: str, tmp_path: Path, report: Report) -> None:
    old, new, (layer, check) = MUTATIONS[name]
    path = mutate(tmp_path, old, new)
    if layer == "lint":
        findings = infracheck.run(path, deploy_stack=False, usage=report.usage).findings
    else:
        # The layers after lint, on the translation (the real template's run
        # already showed the linters pass; two cfn-lint runs cost 3 s each).
        translated, problems = infracheck.translate(path)
        assert translated is not None, problems
        findings = infracheck.static_checks(translated)
        findings += infracheck.iam_findings(translated, report.usage)
    assert (layer, check) in {(f.layer, f.check) for f in findings}, findings


# What only the deployed stack shows: moto resolves the names and the dashboard's Fn::Sub.
STACK_MUTATIONS = {
    "an-environment-variable-the-code-does-not-read": (
        "          RATEBRIDGE_PRESENCE_TABLE: !Ref PresenceTable",
        "          RATEBRIDGE_PRESENSE_TABLE: !Ref PresenceTable",
        ("stack", "environment"),
    ),
    "a-table-with-another-key": (
        "      KeySchema: [{ AttributeName: userId, KeyType: HASH }]\n"
        "      AttributeDefinitions: [{ AttributeName: userId, AttributeType: S }]",
        "      KeySchema: [{ AttributeName: id, KeyType: HASH }]\n"
        "      AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]",
        ("stack", "tables"),
    ),
    "a-dashboard-metric-the-code-does-not-emit": (
        '["Ratebridge", "Denied", "Bucket", "genesys", "service", "ratebridge"',
        '["Ratebridge", "Refused", "Bucket", "genesys", "service", "ratebridge"',
        ("stack", "dashboard"),
    ),
}


@pytest.mark.parametrize("name", STACK_MUTATIONS)
def test_a_stack_that_does_not_fit_the_code_is_caught(name: str, tmp_path: Path) -> None:
    old, new, (layer, check) = STACK_MUTATIONS[name]
    found = infracheck.run(mutate(tmp_path, old, new), exercise_handler=False)
    assert (layer, check) in {(f.layer, f.check) for f in found.findings}, found.findings
