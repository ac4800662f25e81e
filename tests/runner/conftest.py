"""Fixtures for the runner's tests: one moto server per session (SQS exists
only in moto, not dynalite), fresh queues per test (a main queue redriving to
a DLQ after 3 receives, 2 s visibility timeout so redeliveries are quick), and
a runner factory that ends every runner and checks no worker process is left.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from ratebridge_tools.runner import BatchOutcome, Runner, RunnerConfig
from ratebridge_tools.servers import LocalServer, start_moto

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

VISIBILITY_TIMEOUT_S = 2
MAX_RECEIVE_COUNT = 3
HANDLERS = "tests.runner.handlers"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a reaped child does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalServer]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqs(moto_server: LocalServer) -> Iterator[SQSClient]:
    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_server.url)
    yield client
    client.close()


@dataclass
class Queues:
    """One test's main queue and its DLQ, and what the test sent."""

    sqs: SQSClient
    url: str
    dlq_url: str
    sent: dict[str, str] = field(default_factory=dict)  # message id -> body

    def send(self, bodies: list[str]) -> dict[str, str]:
        """Send `bodies` (10 per call); returns {message id: body} for them."""
        ids: dict[str, str] = {}
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            response = self.sqs.send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
            )
            assert not response.get("Failed")
            for entry in response["Successful"]:
                ids[entry["MessageId"]] = chunk[int(entry["Id"])]
        self.sent.update(ids)
        return ids

    def depth(self, url: str | None = None) -> int:
        """Visible + in flight + delayed messages."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def dlq_messages(self) -> list[MessageTypeDef]:
        """Everything in the DLQ (kept invisible while reading)."""
        found: list[MessageTypeDef] = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                MessageSystemAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                return found
            found.extend(messages)


@pytest.fixture
def queues(sqs: SQSClient) -> Iterator[Queues]:
    name = f"rb-runner-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    yield Queues(sqs, url, dlq_url)
    sqs.delete_queue(QueueUrl=url)
    sqs.delete_queue(QueueUrl=dlq_url)


@dataclass
class Trace:
    """What the test handlers wrote, one file per worker process."""

    directory: Path

    def entries(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("*.jsonl")):
            found.extend(json.loads(line) for line in path.read_text().splitlines())
        return found

    def invocations(self) -> list[dict[str, Any]]:
        return sorted(
            (e for e in self.entries() if e["kind"] == "invoke"), key=lambda e: e["start"]
        )

    def inits(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["kind"] == "init"]


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    directory = tmp_path / "trace"
    directory.mkdir()
    return Trace(directory)


@dataclass
class Harness:
    """Build runners on this test's queue; records every BatchOutcome."""

    queues: Queues
    trace: Trace
    outcomes: list[BatchOutcome] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)

    def runner(self, handler: str, *, env: dict[str, str] | None = None, **config: Any) -> Runner:
        """A Runner for `handler` (a name in tests.runner.handlers, or a full
        path); `config` goes to RunnerConfig, `progress` and `progress_interval`
        to Runner."""
        path = handler if "." in handler else f"{HANDLERS}.{handler}"
        progress = config.pop("progress", None)
        progress_interval = config.pop("progress_interval", 1.0)
        config.setdefault("function_timeout", 1.5)
        config.setdefault("shutdown_grace", 3.0)
        runner = Runner(
            RunnerConfig(
                queue_url=self.queues.url,
                handler=path,
                environment={"RUNNER_TEST_DIR": str(self.trace.directory), **(env or {})},
                **config,
            ),
            sqs_client=self.queues.sqs,
            progress=progress,
            progress_interval=progress_interval,
            on_batch=self.outcomes.append,
        )
        self.runners.append(runner)
        return runner

    def deleted(self) -> list[str]:
        return [m for o in self.outcomes for m in o.deleted]


@pytest.fixture
def harness(queues: Queues, trace: Trace) -> Iterator[Harness]:
    """After the test: every runner closed, and none of their workers alive."""
    harness = Harness(queues, trace)
    yield harness
    for runner in harness.runners:
        runner.close()
    left = [pid for r in harness.runners for pid in r.worker_pids if pid_alive(pid)]
    assert not left, f"worker processes left behind: {left}"
