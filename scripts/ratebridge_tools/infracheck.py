"""Offline checks of the SAM template: does the stack give the code what it expects?

    ratebridge infra check [--template infra/template.yaml] [--no-exercise]

Four layers, each finding what the one before cannot:

1. **lint**: cfn-lint on the SAM template, then on its translation by
   aws-sam-translator (cfn-lint reads SAM shallowly: it passes
   `MaximumConcurrency: 1` until the template is translated). Both tools run
   in their own environment, `.venv-infra` (the translator pins pydantic).
2. **static**: the translated template read as data, for what moto does not
   deploy or what no deployment shows: the handler path imports, partial
   batch responses are on, the role has no wildcard and no managed policy,
   tables are encrypted (point-in-time recovery on the data tables, TTL on
   the idempotency table), queues are encrypted, only the rule may send to
   the queue, and the three alarms watch metrics the code emits.
3. **stack**: the translated template `create_stack`ed in moto, and what it
   made compared with what the code expects: each table's key schema as the
   code's own `create_table` makes it, every environment variable one the
   settings read (and every table variable set), the event source mapping,
   the queue's visibility timeout (>= 6x the function timeout plus the
   batching window) and its redrive into the DLQ the function writes to,
   and the dashboard's metrics against the code's catalogue.
4. **exercise**: the real handler, run by the local event-source runner with
   the stack's own settings (handler, timeout, batch size, environment)
   against the stack's own queue, tables and secret, on events put on the
   stack's event bus (deployed for this with `MaxWaitSeconds=3`, so that its
   capacity-wait phase takes seconds). A proxy counts every AWS request the function makes,
   per resource; each must be allowed by the role's policy. Every EMF metric
   the function printed must be in the catalogue.

moto needs five adaptations, all here and nowhere else: every parameter is
passed explicitly (moto splits a CommaDelimitedList only when it is passed);
aliases are dropped and event source mappings point at the function (moto
has no AWS::Lambda::Alias); the code is a small zip in moto's S3; and the
partner bus is a plain bus this check creates (moto cannot put rules on a
bus whose name has a '/'); and moto's own event source mapping is switched off
once read (it would try to invoke the function, which needs Docker, with
each message that arrives; the local runner stands in for it). moto skips
secrets, alarms and queue policies, and applies no encryption, point-in-time
recovery or TTL settings, which is why those are checked statically.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import re
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from ratebridge_tools.servers import local_aws_env, start_moto

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
TRANSLATE = ROOT / "infra" / "translate.py"
INFRA_VENV = ROOT / ".venv-infra"
CODE_BUCKET, CODE_KEY = "ratebridge-artifacts", "processor.zip"
LOCAL_BUS = "genesys-partner-local"
RUNTIME = "python3.12"

# What each table variable must have. The key schema is read from a table the code's
# own create function makes; these say which extra settings matter per table.
PITR_TABLES = (
    "RATEBRIDGE_LIMITS_TABLE",
    "RATEBRIDGE_INTERACTIONS_TABLE",
    "RATEBRIDGE_PRESENCE_TABLE",
)
TTL_TABLES = {"RATEBRIDGE_IDEMPOTENCY_TABLE": "expiration"}
# Variables the Lambda runtime or Powertools read (not the processor's settings).
OTHER_VARIABLES = frozenset(
    {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
)
# The event source mapping needs these on the queue (it polls with the function's role).
POLLER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
# Batch calls are authorised by the single action's name.
_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


class InfraCheckError(RuntimeError):
    """A check could not run at all (a tool missing, a server not starting)."""


@dataclass(frozen=True)
class Finding:
    """Something wrong with the template, found by `layer`'s `check`."""

    layer: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"[{self.layer}/{self.check}] {self.message}"


@dataclass
class Report:
    """What `run` found, layer by layer; `usage` is what the exercise saw the code do."""

    findings: list[Finding] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    usage: set[tuple[str, str]] = field(default_factory=set)  # (action, logical resource)
    metrics: set[tuple[str, str, frozenset[str]]] = field(default_factory=set)
    exercise: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings


# -- layer 1: lint and translation ----------------------------------------------------------


def _tool(name: str) -> str:
    path = INFRA_VENV / "bin" / name
    if not path.exists():
        raise InfraCheckError(
            f"{path} is missing: scripts/test creates it, or run "
            "`python3 -m venv .venv-infra && .venv-infra/bin/pip install "
            "-r infra/requirements-tools.txt`"
        )
    return str(path)


def lint(path: Path, what: str) -> list[Finding]:
    """cfn-lint findings (errors and warnings) for the template at `path`."""
    result = subprocess.run(
        [_tool("cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    findings = []
    for line in result.stdout.splitlines():
        # path:line:col:endline:endcol:rule:message
        parts = line.split(":", 6)
        if len(parts) == 7 and parts[5][:1] in ("E", "W"):
            findings.append(
                Finding("lint", parts[5], f"{what} line {parts[1]}: {parts[6].strip()}")
            )
    if result.returncode not in (0, 8) and not findings:  # 8: informational notes only
        tail = (result.stderr or result.stdout).strip()[-1500:]
        raise InfraCheckError(f"cfn-lint failed on {what} (exit {result.returncode}): {tail}")
    return findings


def translate(template: Path) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The template as plain CloudFormation (code from moto's S3), or its errors."""
    result = subprocess.run(
        [
            _tool("python"),
            str(TRANSLATE),
            str(template),
            "--code-uri",
            f"s3://{CODE_BUCKET}/{CODE_KEY}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["no output"]
        return None, [Finding("lint", "translate", message[0])]
    return json.loads(result.stdout), []


def lint_translated(translated: dict[str, Any]) -> list[Finding]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "translated.json"
        path.write_text(json.dumps(translated))
        return lint(path, "translated template")


# -- helpers over a translated template -----------------------------------------------------


def _resources(tpl: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl.get("Resources", {}).items() if v.get("Type") == kind}


def _defaults(tpl: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.get("Default") for k, v in tpl.get("Parameters", {}).items()}


def _resolve(value: Any, tpl: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
    """Ref to a parameter and Fn::FindInMap resolved with the parameters' defaults."""
    params = _defaults(tpl) if params is None else params
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in params:
        return params[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        name, top, second = (_resolve(v, tpl, params) for v in value["Fn::FindInMap"])
        return tpl["Mappings"][name][str(top)][second]
    return value


def _logical_ids(value: Any) -> set[str]:
    """Every resource a policy Resource names: Ref, Fn::GetAtt, both branches of Fn::If."""
    if isinstance(value, list):
        return set().union(*(_logical_ids(v) for v in value)) if value else set()
    if isinstance(value, dict):
        if "Ref" in value:
            return {str(value["Ref"])}
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return {str(target[0] if isinstance(target, list) else target.split(".")[0])}
        if "Fn::If" in value:
            return _logical_ids(value["Fn::If"][1:])
        return set().union(*(_logical_ids(v) for v in value.values())) if value else set()
    return set()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _function(tpl: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    functions = _resources(tpl, "AWS::Lambda::Function")
    if len(functions) != 1:
        raise InfraCheckError(f"expected one Lambda function, found {sorted(functions)}")
    return next(iter(functions.items()))


def _env_refs(tpl: Mapping[str, Any]) -> dict[str, Any]:
    _, fn = _function(tpl)
    return dict(fn["Properties"].get("Environment", {}).get("Variables", {}))


def role_permissions(tpl: Mapping[str, Any]) -> tuple[set[tuple[str, str]], list[Finding]]:
    """(action, logical resource) pairs the function's role allows, and wildcard findings."""
    _, fn = _function(tpl)
    role_ids = _logical_ids(fn["Properties"].get("Role"))
    roles = {k: v for k, v in _resources(tpl, "AWS::IAM::Role").items() if k in role_ids}
    allowed: set[tuple[str, str]] = set()
    findings: list[Finding] = []
    if not roles:
        findings.append(Finding("static", "iam", "the function's role is not defined here"))
    for name, role in roles.items():
        props = role["Properties"]
        if props.get("ManagedPolicyArns"):
            findings.append(
                Finding(
                    "static",
                    "iam",
                    f"{name} attaches managed policies {props['ManagedPolicyArns']}: "
                    "they grant on '*'",
                )
            )
        for policy in props.get("Policies", []):
            for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                if statement.get("Effect") != "Allow":
                    continue
                actions = [str(a) for a in _as_list(statement.get("Action", []))]
                resources = _as_list(statement.get("Resource", []))
                if any("*" in a for a in actions) or "*" in resources:
                    findings.append(
                        Finding(
                            "static",
                            "iam",
                            f"{name}/{policy['PolicyName']} statement "
                            f"{statement.get('Sid', '?')} has a wildcard",
                        )
                    )
                for action in actions:
                    for target in _logical_ids(resources):
                        allowed.add((action, target))
    return allowed, findings


def iam_findings(tpl: Mapping[str, Any], usage: set[tuple[str, str]]) -> list[Finding]:
    """Every (action, resource) the code was seen to use must be allowed by the role."""
    allowed, _ = role_permissions(tpl)
    return [
        Finding(
            "exercise",
            "iam",
            f"the function calls {action} on {resource}, which its role does not allow",
        )
        for action, resource in sorted(usage - allowed)
    ]


# -- layer 2: static checks -----------------------------------------------------------------


def static_checks(tpl: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    name, fn = _function(tpl)
    props = fn["Properties"]
    findings += _handler_findings(str(props.get("Handler", "")))
    if props.get("Runtime") != RUNTIME:
        findings.append(
            Finding(
                "static",
                "runtime",
                f"{name} runs {props.get('Runtime')}; the package is built for {RUNTIME}",
            )
        )
    memory = _resolve(props.get("MemorySize", 128), tpl)
    if int(memory) < 1024:
        findings.append(
            Finding("static", "memory", f"{name} has {memory} MB; the Genesys SDK needs 1024")
        )
    mappings = _resources(tpl, "AWS::Lambda::EventSourceMapping")
    if not mappings:
        findings.append(Finding("static", "event-source", "no event source mapping"))
    for mapping_name, mapping in mappings.items():
        mp = mapping["Properties"]
        if "ReportBatchItemFailures" not in mp.get("FunctionResponseTypes", []):
            findings.append(
                Finding(
                    "static",
                    "partial-batch",
                    f"{mapping_name} lacks FunctionResponseTypes: [ReportBatchItemFailures]: "
                    "the handler's batchItemFailures would be ignored and a partly failed "
                    "batch deleted whole",
                )
            )
        concurrency = _resolve(mp.get("ScalingConfig", {}).get("MaximumConcurrency"), tpl)
        if concurrency is None or int(concurrency) < 2:
            findings.append(
                Finding(
                    "static",
                    "concurrency",
                    f"{mapping_name} MaximumConcurrency is {concurrency}; it must be 2-1000",
                )
            )
        findings += _visibility_findings(tpl, mapping_name, mp, props)
    allowed, iam = role_permissions(tpl)
    findings += iam
    for mapping in mappings.values():
        for source in _logical_ids(mapping["Properties"].get("EventSourceArn")):
            for action in POLLER_ACTIONS:
                if (action, source) not in allowed:
                    findings.append(
                        Finding(
                            "static",
                            "iam",
                            f"the role lacks {action} on {source}: the event source cannot poll",
                        )
                    )
    findings += _table_findings(tpl)
    for queue_name, queue in _resources(tpl, "AWS::SQS::Queue").items():
        qp = queue.get("Properties", {})
        if not qp.get("SqsManagedSseEnabled") and not qp.get("KmsMasterKeyId"):
            findings.append(Finding("static", "encryption", f"queue {queue_name} is not encrypted"))
    findings += _queue_policy_findings(tpl)
    findings += _alarm_findings(tpl)
    return findings


def _visibility_findings(
    tpl: Mapping[str, Any],
    mapping_name: str,
    mapping: Mapping[str, Any],
    function: Mapping[str, Any],
) -> list[Finding]:
    """The mapped queue's visibility timeout against the function's, with parameter defaults."""
    timeout = int(_resolve(function.get("Timeout", 3), tpl))
    window = int(_resolve(mapping.get("MaximumBatchingWindowInSeconds", 0), tpl) or 0)
    queues = _resources(tpl, "AWS::SQS::Queue")
    findings = []
    for queue in _logical_ids(mapping.get("EventSourceArn")) & set(queues):
        visibility = int(_resolve(queues[queue]["Properties"].get("VisibilityTimeout", 30), tpl))
        if visibility < 6 * timeout + window:
            findings.append(
                Finding(
                    "static",
                    "visibility-timeout",
                    f"{queue}'s visibility timeout is {visibility} s; {mapping_name} invokes a "
                    f"{timeout} s function with a {window} s batching window, so it must be at "
                    f"least {6 * timeout + window} s (AWS: 6x the timeout plus the window), or "
                    "batches in flight come back twice",
                )
            )
    return findings


def _handler_findings(handler: str) -> list[Finding]:
    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return [Finding("static", "handler", f"handler {handler!r}: cannot import: {exc}")]
    if not callable(getattr(module, attribute, None)):
        return [Finding("static", "handler", f"handler {handler!r}: no function {attribute!r}")]
    return []


def _table_findings(tpl: Mapping[str, Any]) -> list[Finding]:
    findings = []
    env = _env_refs(tpl)
    by_variable = {var: _logical_ids(value) for var, value in env.items() if var.endswith("_TABLE")}
    tables = _resources(tpl, "AWS::DynamoDB::Table")
    for name, table in tables.items():
        p = table.get("Properties", {})
        if not p.get("SSESpecification", {}).get("SSEEnabled"):
            findings.append(Finding("static", "encryption", f"table {name} is not encrypted"))
        if p.get("BillingMode") != "PAY_PER_REQUEST":
            findings.append(Finding("static", "billing", f"table {name} is not on-demand"))
    for variable in PITR_TABLES:
        for name in by_variable.get(variable, set()) & set(tables):
            spec = tables[name]["Properties"].get("PointInTimeRecoverySpecification", {})
            if not spec.get("PointInTimeRecoveryEnabled"):
                findings.append(
                    Finding(
                        "static", "pitr", f"table {name} ({variable}) has no point-in-time recovery"
                    )
                )
    for variable, attribute in TTL_TABLES.items():
        for name in by_variable.get(variable, set()) & set(tables):
            ttl = tables[name]["Properties"].get("TimeToLiveSpecification", {})
            if ttl.get("AttributeName") != attribute or not ttl.get("Enabled"):
                findings.append(
                    Finding(
                        "static", "ttl", f"table {name} ({variable}) needs TTL on {attribute!r}"
                    )
                )
    return findings


def _queue_policy_findings(tpl: Mapping[str, Any]) -> list[Finding]:
    rules = _resources(tpl, "AWS::Events::Rule")
    mappings = _resources(tpl, "AWS::Lambda::EventSourceMapping")
    queues = (
        set().union(
            *(_logical_ids(m["Properties"].get("EventSourceArn")) for m in mappings.values())
        )
        if mappings
        else set()
    )
    findings = []
    for queue in sorted(queues):
        if not any(
            queue in _logical_ids(t.get("Arn"))
            for rule in rules.values()
            for t in rule["Properties"].get("Targets", [])
        ):
            findings.append(Finding("static", "rule", f"no EventBridge rule targets {queue}"))
        policies = [
            p
            for p in _resources(tpl, "AWS::SQS::QueuePolicy").values()
            if queue in _logical_ids(p["Properties"].get("Queues"))
        ]
        senders = [
            s
            for p in policies
            for s in _as_list(p["Properties"]["PolicyDocument"]["Statement"])
            if s.get("Effect") == "Allow"
        ]
        for statement in senders:
            principal = statement.get("Principal")
            if principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*"):
                findings.append(Finding("static", "public", f"{queue}'s policy allows anyone"))
        if not any(
            statement.get("Principal", {}).get("Service") == "events.amazonaws.com"
            and _logical_ids(statement.get("Condition", {}).get("ArnEquals", {})) & set(rules)
            for statement in senders
            if isinstance(statement.get("Principal"), dict)
        ):
            findings.append(
                Finding(
                    "static",
                    "queue-policy",
                    f"{queue}'s policy does not limit SendMessage to the EventBridge rule",
                )
            )
    return findings


def metric_catalogue(namespace: str) -> dict[tuple[str, str], frozenset[str]]:
    """(namespace, metric) -> the dimension names the code emits it with."""
    from processor import observability as o

    catalogue = {}
    for names, dimension in (
        (o.BUCKET_METRICS, o.BUCKET_DIMENSION),
        (o.ROUTE_METRICS, o.ROUTE_DIMENSION),
    ):
        for metric in names:
            catalogue[(namespace, metric)] = frozenset({dimension, "service"})
    return catalogue


def _namespace(tpl: Mapping[str, Any]) -> str:
    return str(_env_refs(tpl).get("POWERTOOLS_METRICS_NAMESPACE", "Ratebridge"))


def _alarm_findings(tpl: Mapping[str, Any]) -> list[Finding]:
    namespace = _namespace(tpl)
    catalogue = metric_catalogue(namespace)
    watched: set[tuple[str, str]] = set()
    findings = []
    for name, alarm in _resources(tpl, "AWS::CloudWatch::Alarm").items():
        p = alarm["Properties"]
        stats = [(p.get("Namespace"), p.get("MetricName"), p.get("Dimensions", []))]
        stats += [
            (
                m["MetricStat"]["Metric"].get("Namespace"),
                m["MetricStat"]["Metric"].get("MetricName"),
                m["MetricStat"]["Metric"].get("Dimensions", []),
            )
            for m in p.get("Metrics", [])
            if "MetricStat" in m
        ]
        for ns, metric, dims in stats:
            if ns is None:
                continue
            watched.add((str(ns), str(metric)))
            if ns == namespace:
                want = catalogue.get((ns, metric))
                have = frozenset(d["Name"] for d in dims)
                if want is None or want != have:
                    findings.append(
                        Finding(
                            "static",
                            "metrics",
                            f"alarm {name} watches {ns}/{metric} {sorted(have)}, "
                            "which the code does not emit",
                        )
                    )
    for needed, why in (
        ((namespace, "Upstream429"), "any upstream 429"),
        ((namespace, "Granted"), "utilization over 90% for 15 minutes"),
        (("AWS/SQS", "ApproximateNumberOfMessagesVisible"), "DLQ depth > 0"),
    ):
        if needed not in watched:
            findings.append(Finding("static", "alarms", f"no alarm on {why} ({'/'.join(needed)})"))
    return findings


# -- layer 3: the stack in moto ---------------------------------------------------------------


@dataclass
class Stack:
    """A stack create_stack'ed in moto, and what the checks read from it."""

    name: str
    aws_url: str
    template: dict[str, Any]
    resources: dict[str, str]  # logical id -> physical id
    function: dict[str, Any]
    mapping: dict[str, Any]
    bus: str

    def client(self, service: str, endpoint: str | None = None) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name="us-east-1",
            endpoint_url=endpoint or self.aws_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the local server's placeholder
        )

    @property
    def environment(self) -> dict[str, str]:
        return {
            k: str(v) for k, v in self.function.get("Environment", {}).get("Variables", {}).items()
        }


def for_moto(tpl: Mapping[str, Any]) -> dict[str, Any]:
    """The moto adaptations of the module docstring, on a copy."""
    adapted = copy.deepcopy(dict(tpl))
    resources = adapted["Resources"]
    aliases = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Alias"]
    for mapping in _resources(adapted, "AWS::Lambda::EventSourceMapping").values():
        target = _logical_ids(mapping["Properties"].get("FunctionName"))
        for alias in target & set(aliases):
            function = _logical_ids(resources[alias]["Properties"]["FunctionName"])
            mapping["Properties"]["FunctionName"] = {"Ref": next(iter(function))}
    for alias in aliases:
        del resources[alias]
    return adapted


# Parameters the exercise deploys with: a short permit wait, so that its capacity-wait
# phase (a block longer than the wait) lasts seconds, not the default 20 s and more.
EXERCISE_PARAMETERS = {"MaxWaitSeconds": "3"}


def deploy(
    tpl: dict[str, Any],
    aws_url: str,
    name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[Stack | None, list[Finding]]:
    """create_stack the translated template in the moto at `aws_url`, every parameter
    at its default unless `overrides` gives it."""
    name = name or f"rb-{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session()
    kw: dict[str, Any] = {
        "region_name": "us-east-1",
        "endpoint_url": aws_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = session.client("s3", **kw)
    s3.create_bucket(Bucket=CODE_BUCKET)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("processor/__init__.py", "")
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=buf.getvalue())
    bus = f"{LOCAL_BUS}-{name}"
    session.client("events", **kw).create_event_bus(Name=bus)
    parameters = []
    for key, spec in tpl.get("Parameters", {}).items():
        value = spec.get("Default")
        if key == "GenesysEventSourceName":
            value = bus
        value = (overrides or {}).get(key, value)
        if value is None:
            continue
        value = ",".join(value) if isinstance(value, list) else str(value)
        parameters.append({"ParameterKey": key, "ParameterValue": value})
    cfn = session.client("cloudformation", **kw)
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(for_moto(tpl)),
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + 120
    while True:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        reason = stack.get("StackStatusReason", "no reason given")
        return None, [Finding("stack", "create", f"{stack['StackStatus']}: {reason}")]
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    }
    fn_name, _ = _function(tpl)
    lam = session.client("lambda", **kw)
    function = lam.get_function_configuration(FunctionName=resources[fn_name])
    mappings = lam.list_event_source_mappings(FunctionName=resources[fn_name])[
        "EventSourceMappings"
    ]
    if not mappings:
        return None, [Finding("stack", "event-source", "the stack has no event source mapping")]
    # Read, then switch off: moto's own mapping would try to invoke the function (it needs
    # Docker) with every message that arrives, spending its receives. The runner stands in.
    lam.update_event_source_mapping(UUID=mappings[0]["UUID"], Enabled=False)
    return Stack(name, aws_url, tpl, resources, function, mappings[0], bus), []


class _ReadRecorder(dict[str, str]):
    """An environment that remembers which variables were read."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def settings_variables(env: Mapping[str, str]) -> tuple[set[str], Any]:
    """The variables the processor's settings read, and the settings from `env`."""
    from processor.settings import Settings

    recorder = _ReadRecorder(env)
    settings = Settings.from_env(recorder)
    return recorder.read, settings


def stack_checks(stack: Stack) -> list[Finding]:
    findings: list[Finding] = []
    env = stack.environment
    try:
        read, _ = settings_variables(env)
    except ValueError as exc:
        return [
            Finding(
                "stack", "environment", f"the settings refuse the function's environment: {exc}"
            )
        ]
    for variable in sorted(set(env) - read - OTHER_VARIABLES):
        findings.append(
            Finding("stack", "environment", f"{variable} is set but the code never reads it")
        )
    findings += _key_schema_findings(stack, read)
    findings += _mapping_findings(stack)
    findings += _queue_findings(stack)
    findings += _dashboard_findings(stack)
    return findings


def _expected_tables(client: Any, suffix: str) -> dict[str, str]:
    """Tables made by the code's own create functions: variable -> table name."""
    from limiter.dynamodb import DynamoDBStore
    from processor.app import App
    from processor.genesys.token_store import TokenStore
    from processor.settings import Settings

    names = {
        "RATEBRIDGE_BUCKETS_TABLE": f"expected-buckets-{suffix}",
        "RATEBRIDGE_LIMITS_TABLE": f"expected-limits-{suffix}",
        "RATEBRIDGE_TOKENS_TABLE": f"expected-tokens-{suffix}",
        "RATEBRIDGE_IDEMPOTENCY_TABLE": f"expected-idempotency-{suffix}",
        "RATEBRIDGE_INTERACTIONS_TABLE": f"expected-interactions-{suffix}",
        "RATEBRIDGE_PRESENCE_TABLE": f"expected-presence-{suffix}",
    }
    endpoint = client.meta.endpoint_url
    DynamoDBStore(
        buckets_table=names["RATEBRIDGE_BUCKETS_TABLE"],
        limits_table=names["RATEBRIDGE_LIMITS_TABLE"],
        client=client,
    ).create_tables()
    TokenStore(names["RATEBRIDGE_TOKENS_TABLE"], client).create_table()
    settings = Settings.from_env(
        {**names, "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    )
    App(settings, genesys_factory=_no_genesys, dynamodb=client, sqs=object()).create_tables()
    return names


def _no_genesys() -> Any:
    raise InfraCheckError("table creation needs no Genesys client")


def _key_schema_findings(stack: Stack, read: set[str]) -> list[Finding]:
    ddb = stack.client("dynamodb")
    expected = _expected_tables(ddb, stack.name)
    findings = []
    for variable, reference in sorted(expected.items()):
        if variable not in read:
            continue
        actual = stack.environment.get(variable)
        if actual is None:
            findings.append(
                Finding(
                    "stack",
                    "environment",
                    f"{variable} is not set: the code would use its default table name",
                )
            )
            continue
        try:
            got = ddb.describe_table(TableName=actual)["Table"]
        except ddb.exceptions.ResourceNotFoundException:
            findings.append(Finding("stack", "tables", f"{variable}={actual}: no such table"))
            continue
        want = ddb.describe_table(TableName=reference)["Table"]
        if _schema(got) != _schema(want):
            findings.append(
                Finding(
                    "stack",
                    "tables",
                    f"{variable}={actual} has key {_schema(got)}; the code uses {_schema(want)}",
                )
            )
    return findings


def _schema(table: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    return [
        (k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in table["KeySchema"]
    ]


def _queue_arn_name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def _mapping_findings(stack: Stack) -> list[Finding]:
    m = stack.mapping
    findings = []
    if "ReportBatchItemFailures" not in m.get("FunctionResponseTypes", []):
        findings.append(
            Finding("stack", "partial-batch", "the mapping does not report batch item failures")
        )
    concurrency = m.get("ScalingConfig", {}).get("MaximumConcurrency")
    if concurrency is None or not 2 <= int(concurrency) <= 1000:
        findings.append(Finding("stack", "concurrency", f"MaximumConcurrency is {concurrency}"))
    return findings


def _queue_findings(stack: Stack) -> list[Finding]:
    sqs = stack.client("sqs")
    queue_name = _queue_arn_name(stack.mapping["EventSourceArn"])
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    timeout = int(stack.function["Timeout"])
    window = int(stack.mapping.get("MaximumBatchingWindowInSeconds", 0))
    visibility = int(attrs["VisibilityTimeout"])
    findings = []
    if visibility < 6 * timeout + window:
        findings.append(
            Finding(
                "stack",
                "visibility-timeout",
                f"the queue's visibility timeout is {visibility} s; with a {timeout} s function "
                f"and a {window} s batching window it must be at least {6 * timeout + window} s "
                "(AWS: 6x the timeout plus the window), or batches in flight come back twice",
            )
        )
    redrive = json.loads(attrs.get("RedrivePolicy", "{}"))
    if not redrive:
        findings.append(Finding("stack", "dlq", f"queue {queue_name} has no redrive policy"))
        return findings
    if str(redrive.get("maxReceiveCount")) != stack.environment.get("RATEBRIDGE_MAX_RECEIVE_COUNT"):
        findings.append(
            Finding(
                "stack",
                "dlq",
                f"maxReceiveCount is {redrive.get('maxReceiveCount')} but the function is told "
                f"{stack.environment.get('RATEBRIDGE_MAX_RECEIVE_COUNT')}",
            )
        )
    dlq_url = stack.environment.get("RATEBRIDGE_DLQ_URL", "")
    if (
        _queue_arn_name(redrive.get("deadLetterTargetArn", ""))
        != dlq_url.rstrip("/").rsplit("/", 1)[-1]
    ):
        findings.append(
            Finding("stack", "dlq", "RATEBRIDGE_DLQ_URL is not the queue's dead-letter queue")
        )
    return findings


_SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s+MetricName=\"([^\"]+)\"")


def dashboard_metrics(body: Mapping[str, Any]) -> list[tuple[str, str, frozenset[str]]]:
    """Every (namespace, metric, dimension names) the dashboard's widgets show."""
    found = []
    for widget in body.get("widgets", []):
        previous: list[Any] = []
        for row in widget.get("properties", {}).get("metrics", []):
            if row and isinstance(row[0], dict):
                match = _SEARCH.search(str(row[0].get("expression", "")))
                if match:
                    schema = [s.strip() for s in match.group(1).split(",")]
                    found.append((schema[0], match.group(2), frozenset(schema[1:])))
                continue
            parts = [p for p in row if not isinstance(p, dict)]
            if parts and parts[0] == "...":
                parts = previous
            previous = parts
            namespace, metric, dims = parts[0], parts[1], parts[2:]
            found.append((str(namespace), str(metric), frozenset(str(d) for d in dims[0::2])))
    return found


def _dashboard_findings(stack: Stack) -> list[Finding]:
    names = [
        k
        for k, v in stack.template["Resources"].items()
        if v["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    if not names:
        return [Finding("stack", "dashboard", "the template has no dashboard")]
    cw = stack.client("cloudwatch")
    dashboard = cw.get_dashboard(DashboardName=stack.resources[names[0]])
    body = json.loads(dashboard["DashboardBody"])
    namespace = stack.environment.get("POWERTOOLS_METRICS_NAMESPACE", "Ratebridge")
    catalogue = metric_catalogue(namespace)
    shown = dashboard_metrics(body)
    findings = []
    for ns, metric, dims in shown:
        if ns == namespace and catalogue.get((ns, metric)) != dims:
            findings.append(
                Finding(
                    "stack",
                    "dashboard",
                    f"the dashboard shows {ns}/{metric} {sorted(dims)}, "
                    "which the code does not emit",
                )
            )
    have = {(ns, metric) for ns, metric, _ in shown}
    for needed in [
        *(
            (namespace, m)
            for m in ("Granted", "GrantWaitMs", "Denied", "Upstream429", "TokenRefreshes")
        ),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "ConcurrentExecutions"),
    ]:
        if needed not in have:
            findings.append(
                Finding("stack", "dashboard", f"the dashboard lacks {'/'.join(needed)}")
            )
    return findings


# -- layer 4: the handler against the stack ------------------------------------------------------


@dataclass
class Exercised:
    """What running the handler on the stack showed."""

    findings: list[Finding]
    usage: set[tuple[str, str]]  # (IAM action, logical resource) the function used
    metrics: set[tuple[str, str, frozenset[str]]]  # (namespace, metric, dimensions) it printed
    summary: dict[str, Any]


def exercise(stack: Stack, *, events: int = 24, workers: int = 2) -> Exercised:
    """Run the real handler on the stack's resources; see the module docstring.

    Two phases, each a run of the local event-source runner until the queue is
    drained: `events` deliveries (a few of them malformed: the DLQ path), then
    four more while the Genesys bucket is blocked for longer than the function
    may wait for a permit (the path that puts records back as delayed copies).
    """
    from ratebridge_tools import loadgen
    from ratebridge_tools.emulator import start_emulator
    from ratebridge_tools.faultproxy import start_proxy_process
    from ratebridge_tools.servers import LOCAL_AWS_ENV

    env = stack.environment
    client_id, secret_value = f"infra-{stack.name}", f"secret-{uuid.uuid4().hex}"
    log_path = Path(tempfile.gettempdir()) / f"ratebridge-infra-{stack.name}.log"
    loads = [
        loadgen.generate(
            loadgen.LoadSpec(events=events, duplicate_share=0.0, malformed_share=0.1, seed=3)
        ),
        loadgen.generate(
            loadgen.LoadSpec(events=4, duplicate_share=0.0, malformed_share=0.0, seed=4)
        ),
    ]
    with ExitStack() as stop:
        emulator = stop.enter_context(start_emulator(clients={client_id: secret_value}))
        proxy = stop.enter_context(start_proxy_process(stack.aws_url))
        secret_arn = stack.client("secretsmanager").create_secret(
            Name=f"ratebridge-genesys-{stack.name}",
            SecretString=json.dumps({"client_id": client_id, "client_secret": secret_value}),
        )["ARN"]
        function_env = {
            **env,
            **LOCAL_AWS_ENV,
            "AWS_ENDPOINT_URL": stack.aws_url,
            "AWS_ENDPOINT_URL_DYNAMODB": proxy.url,
            "AWS_ENDPOINT_URL_SQS": proxy.url,
            "AWS_ENDPOINT_URL_SECRETSMANAGER": proxy.url,
            "GENESYS_API_BASE_URL": emulator.url,
            "GENESYS_CREDENTIALS_SECRET": secret_arn,
        }
        _publish(stack, loads[0])
        stats = [_drain(stack, function_env, log_path, workers)]
        stats.append(
            _drain(stack, function_env, log_path, workers, lambda: _block_then(stack, loads[1]))
        )
        usage = _usage(stack, proxy.table_counts(), secret_arn)
        upstream_429 = sum(1 for r in emulator.requests() if r.status == 429)
    emitted, deferred = _emitted_metrics(log_path)
    reasons = _dead_letter_reasons(stack)
    summary = {
        "events": sum(load.deliveries for load in loads),
        "malformed": sum(load.malformed for load in loads),
        **{
            name: stack.client("dynamodb").scan(TableName=env[variable], Select="COUNT")["Count"]
            for name, variable in (
                ("interactions", "RATEBRIDGE_INTERACTIONS_TABLE"),
                ("presence", "RATEBRIDGE_PRESENCE_TABLE"),
            )
        },
        "dlq": sum(reasons.values()),
        "deferred": deferred,
        "batches": sum(s.batches for s in stats),
        "timeouts": sum(s.timeouts for s in stats),
        "handler_errors": sum(s.handler_errors for s in stats),
        "upstream_429": upstream_429,
    }
    wants = [loadgen.expected(load) for load in loads]
    problems = []
    if summary["interactions"] != len({k for w in wants for k in w.interactions}) or summary[
        "presence"
    ] != len({k for w in wants for k in w.presence}):
        problems.append("records missing or extra")
    if summary["dlq"] != summary["malformed"] or "no reason" in reasons:
        problems.append(f"expected the malformed records in the DLQ with a reason: {reasons}")
    if not deferred:
        problems.append("no record was put back while the bucket was blocked")
    if summary["timeouts"] or summary["handler_errors"] or upstream_429:
        problems.append("timeouts, handler errors or 429s")
    if any(s.stop_reason != "drained" for s in stats):
        problems.append("the queue was not drained")
    findings = []
    if problems:
        findings.append(
            Finding(
                "exercise",
                "records",
                f"the handler on the stack's resources: {'; '.join(problems)} "
                f"({summary}; the function's log: {log_path})",
            )
        )
    else:
        log_path.unlink(missing_ok=True)
    findings += _metric_findings(env, emitted)
    findings += iam_findings(stack.template, usage)
    return Exercised(findings, usage, emitted, summary)


def _block_then(stack: Stack, load: Any) -> None:
    """Block the Genesys bucket for longer than the function may wait for a permit,
    then publish `load`: its records must be put back as delayed copies."""
    from limiter import Limiter
    from limiter.dynamodb import DynamoDBStore

    env = stack.environment
    limiter = Limiter(
        DynamoDBStore(
            buckets_table=env["RATEBRIDGE_BUCKETS_TABLE"],
            limits_table=env["RATEBRIDGE_LIMITS_TABLE"],
            client=stack.client("dynamodb"),
        )
    )
    seconds = float(env.get("RATEBRIDGE_MAX_WAIT_SECONDS", "20")) + 5.0
    limiter.block(env.get("RATEBRIDGE_GENESYS_BUCKET", "genesys"), seconds)
    _publish(stack, load)


def _metric_findings(
    env: Mapping[str, str], emitted: set[tuple[str, str, frozenset[str]]]
) -> list[Finding]:
    """Every EMF metric the function printed must be in the catalogue the dashboard uses."""
    catalogue = metric_catalogue(env.get("POWERTOOLS_METRICS_NAMESPACE", "Ratebridge"))
    findings = [
        Finding(
            "exercise",
            "metrics",
            f"the code emitted {ns}/{metric} {sorted(dims)}, not in the catalogue",
        )
        for ns, metric, dims in sorted(emitted, key=str)
        if catalogue.get((ns, metric)) != dims
    ]
    if not emitted:
        findings.append(Finding("exercise", "metrics", "the function emitted no EMF metric"))
    return findings


def _publish(stack: Stack, load: Any) -> None:
    """The load onto the stack's bus (its rule takes the events to the queue)."""
    from ratebridge_tools import loadgen

    queue_url = _queue_url(stack, stack.mapping["EventSourceArn"])
    loadgen.publish(load, stack.client("events"), stack.bus, stack.client("sqs"), queue_url)


def _queue_url(stack: Stack, arn_or_url: str) -> str:
    name = arn_or_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return str(stack.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def _drain(
    stack: Stack,
    env: Mapping[str, str],
    log_path: Path,
    workers: int,
    when_ready: Callable[[], None] | None = None,
) -> Any:
    """The local event-source runner with the stack's mapping and function settings;
    `when_ready` runs once its workers have started (imported the handler)."""
    from ratebridge_tools.runner import Runner, RunnerConfig

    config = RunnerConfig(
        queue_url=_queue_url(stack, stack.mapping["EventSourceArn"]),
        handler=stack.function["Handler"],
        concurrency=min(workers, int(stack.mapping["ScalingConfig"]["MaximumConcurrency"])),
        batch_size=int(stack.mapping["BatchSize"]),
        batching_window=float(stack.mapping.get("MaximumBatchingWindowInSeconds", 0)),
        function_timeout=float(stack.function["Timeout"]),
        memory_mb=int(stack.function["MemorySize"]),
        environment=env,
        init_timeout=120.0,
        worker_output=str(log_path),
    )
    with Runner(config, sqs_client=stack.client("sqs")) as runner:
        runner.start()
        if when_ready is not None:
            when_ready()
        return runner.run_until_drained(idle_seconds=2.0, max_seconds=300)


def _dead_letter_reasons(stack: Stack) -> dict[str, int]:
    """The DLQ's messages counted by their ratebridge.kind ("no reason" if none)."""
    from ratebridge_tools.pipeline import read_dead_letters

    url = _queue_url(stack, stack.environment["RATEBRIDGE_DLQ_URL"])
    reasons: dict[str, int] = {}
    for dead in read_dead_letters(stack.client("sqs"), url):
        kind = str(dead.get("ratebridge.kind") or "no reason")
        reasons[kind] = reasons.get(kind, 0) + 1
    return reasons


def _usage(
    stack: Stack, counts: Mapping[tuple[str, str, str], int], secret_arn: str
) -> set[tuple[str, str]]:
    """(IAM action, logical resource) for every request the function made through the proxy."""
    by_physical: dict[str, tuple[str, str]] = {}
    for logical, physical in stack.resources.items():
        kind = stack.template["Resources"].get(logical, {}).get("Type")
        if kind == "AWS::DynamoDB::Table":
            by_physical[physical] = ("dynamodb", logical)
        elif kind == "AWS::SQS::Queue":
            by_physical[physical.rstrip("/").rsplit("/", 1)[-1]] = ("sqs", logical)
    secrets = [
        k
        for k, v in stack.template["Resources"].items()
        if v["Type"] == "AWS::SecretsManager::Secret"
    ]
    for name in (secret_arn, secret_arn.rsplit(":", 1)[-1]):
        by_physical[name] = (
            "secretsmanager",
            secrets[0] if secrets else "GenesysCredentialsSecretArn",
        )
    usage = set()
    for (resource, operation, _), _count in counts.items():
        for name in resource.split(","):
            if name in by_physical:
                service, logical = by_physical[name]
                usage.add((f"{service}:{_BATCH_ACTIONS.get(operation, operation)}", logical))
    return usage


def _emitted_metrics(log_path: Path) -> tuple[set[tuple[str, str, frozenset[str]]], int]:
    """The (namespace, metric, dimension names) in the EMF lines of the log, and the
    number of records the function reported as deferred (put back for capacity)."""
    from ratebridge_tools import emf

    emitted: set[tuple[str, str, frozenset[str]]] = set()
    deferred = 0.0
    if not log_path.exists():
        return emitted, 0
    with log_path.open(errors="replace") as log:
        for blob in emf.records(log):
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for dims in directive["Dimensions"]:
                    for metric in directive["Metrics"]:
                        emitted.add((directive["Namespace"], metric["Name"], frozenset(dims)))
            deferred += emf.total(blob, "Deferred")
    return emitted, int(deferred)


# -- all of it ------------------------------------------------------------------------------


@contextmanager
def _moto() -> Iterator[str]:

    server = start_moto()
    try:
        yield server.url
    finally:
        server.stop()


def run(
    template: Path = TEMPLATE,
    *,
    deploy_stack: bool = True,
    exercise_handler: bool = True,
    usage: set[tuple[str, str]] | None = None,
    aws_url: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Report:
    """Every layer on `template` (see the module docstring).

    `deploy_stack=False` stops after the static layer; `exercise_handler=False`
    after the stack layer. Given `usage` (what an earlier exercise saw the code
    do) and no exercise, the role is checked against that usage instead: the
    code's needs do not depend on the template, so one exercise serves many
    templates. `aws_url`: an already running moto (default: one is started).
    """
    report = Report()

    def step(name: str) -> None:
        report.layers.append(name)
        if say is not None:
            say(name)

    step("lint")
    report.findings += lint(template, "template")
    translated, problems = translate(template)
    report.findings += problems
    if translated is None:
        return report
    report.findings += lint_translated(translated)
    step("static")
    report.findings += static_checks(translated)
    if usage is not None and not (deploy_stack and exercise_handler):
        report.findings += iam_findings(translated, usage)
    if not deploy_stack:
        return report
    with ExitStack() as stop:
        url = aws_url or stop.enter_context(_moto())
        # Placeholder credentials and the local endpoint for this process (PynamoDB reads them).
        stop.enter_context(local_aws_env(url))
        step("stack")
        stack, problems = deploy(
            translated, url, overrides=EXERCISE_PARAMETERS if exercise_handler else None
        )
        report.findings += problems
        if stack is None:
            return report
        report.findings += stack_checks(stack)
        if exercise_handler:
            step("exercise")
            exercised = exercise(stack)
            report.findings += exercised.findings
            report.usage, report.metrics = exercised.usage, exercised.metrics
            report.exercise = exercised.summary
    return report
