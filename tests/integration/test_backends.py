"""The test backends themselves: what the limiter's correctness relies on.

DynamoDB applies writes to one item atomically. moto's stock threaded server
does not (it lost 2 of 1,600 concurrent increments here), and it loses
concurrent SQS deletes, so the suite runs moto through
`ratebridge_tools.motoserver`; these tests keep that honest.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import boto3

from limiter import LimiterSettings
from limiter.dynamodb import dynamodb_client
from ratebridge_tools.servers import LocalServer, start_moto
from tests.support.counter import increment_many


def test_concurrent_updates_to_one_item_are_atomic(
    backend: LocalServer, limiter_settings: LimiterSettings
) -> None:
    # Given a counter item
    table = limiter_settings.buckets_table
    client = dynamodb_client(region="us-east-1", endpoint_url=backend.url)
    client.put_item(TableName=table, Item={"bucket": {"S": "counter"}, "v": {"N": "0"}})
    # When 4 processes of 8 threads increment it 40 times each
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=spawn) as pool:
        futures = [pool.submit(increment_many, backend.url, table, 8, 40) for _ in range(4)]
        seen = [v for f in futures for v in f.result(timeout=240)]
    # Then every increment happened, and each caller saw its own new value
    final = client.get_item(TableName=table, Key={"bucket": {"S": "counter"}})["Item"]["v"]["N"]
    assert int(final) == 1280
    assert sorted(seen) == list(range(1, 1281))


def test_concurrent_sqs_receives_sends_and_deletes_lose_nothing() -> None:
    # SQS deletes what it is told to delete and delivers each message once here
    # within the visibility timeout (real SQS may redeliver, rarely; moto's stock
    # server hands one message to two consumers and loses concurrent deletes: a
    # deleted batch came back after its visibility timeout in a 16-worker run).
    with start_moto() as moto:
        sqs = boto3.session.Session().client(
            "sqs",
            region_name="us-east-1",
            endpoint_url=moto.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        url = sqs.create_queue(QueueName="lost", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        # Given 300 messages, and 3 producers adding 100 more each meanwhile
        for start in range(0, 300, 10):
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)],
            )
        received: list[str] = []
        lock = threading.Lock()

        def produce(first: int) -> None:
            for start in range(first, first + 100, 10):
                sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)],
                )

        def consume() -> None:
            idle = 0
            while idle < 3:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                messages = got.get("Messages", [])
                if not messages:
                    idle += 1
                    continue
                idle = 0
                with lock:
                    received.extend(m["Body"] for m in messages)
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )

        # When 16 consumers receive and delete while the producers send
        threads = [threading.Thread(target=consume) for _ in range(16)]
        threads += [threading.Thread(target=produce, args=(300 + 100 * k,)) for k in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # Then nothing was delivered twice, nothing came back, nothing was lost
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        late = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in late] == []
    assert (
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "0",
    )
    counts = Counter(received)
    twice = sorted(body for body, n in counts.items() if n > 1)
    lost = sorted({f"m{i}" for i in range(600)} - set(counts))
    assert (twice, lost) == ([], [])
