"""An atomic-counter hammer: the property every DynamoDB backend must have."""

from __future__ import annotations

import threading

from limiter.dynamodb import dynamodb_client


def increment_many(endpoint: str, table: str, threads: int, per_thread: int) -> list[int]:
    """`threads` x `per_thread` concurrent `SET v = v + 1`; the values they got back."""
    client = dynamodb_client(region="us-east-1", endpoint_url=endpoint)
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            response = client.update_item(
                TableName=table,
                Key={"bucket": {"S": "counter"}},
                UpdateExpression="SET v = v + :one",
                ConditionExpression="v >= :zero",
                ExpressionAttributeValues={":one": {"N": "1"}, ":zero": {"N": "0"}},
                ReturnValues="UPDATED_NEW",
            )
            with lock:
                seen.append(int(response["Attributes"]["v"]["N"]))

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return seen
