"""The DynamoDB store: every request the limiter makes, and nothing else.

Two tables, both keyed by `bucket` (S):
- buckets: the hot item. `tat_us`, `blocked_until_us` (epoch microseconds),
  `granted` (counter), and a copy of the limit (`requests`, `per_seconds`,
  `burst`) under `version`. Each grant is one UpdateItem on it.
- limits: what operators edit (`requests`, `per_seconds`, `burst`,
  `version`, `updated_at`). Read when a container first uses a bucket.

Works on DynamoDB, moto and dynalite. A failed condition returns the old item
when the server supports `ReturnValuesOnConditionCheckFailure` (DynamoDB,
moto); dynalite returns nothing and the limiter falls back to one GetItem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from limiter.errors import InvalidArgument, StoreUnavailable
from limiter.models import BucketState, ConfiguredLimit, Limit
from limiter.store import BucketStore, ConditionFailed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

T = TypeVar("T")
Item = Mapping[str, Any]

_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}

_NAMES = {
    "#v": "version",
    "#tat": "tat_us",
    "#bu": "blocked_until_us",
    "#g": "granted",
}


def dynamodb_client(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_connections: int = 64,
    connect_timeout: float = 2.0,
    read_timeout: float = 3.0,
) -> DynamoDBClient:
    """A DynamoDB client for the hot path: short timeouts, few retries.

    Endpoint and credentials come from the standard AWS settings unless given
    (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL`, ...). Two attempts at most:
    the caller has a time budget, and the limiter fails closed anyway.
    """
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 2},
        max_pool_connections=max_connections,
    )
    session = boto3.session.Session()
    return session.client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)


def _n(value: int | float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _int(item: Item, name: str, default: int = 0) -> int:
    raw = item.get(name)
    return int(raw["N"]) if raw else default


class DynamoDBStore(BucketStore):
    """`BucketStore` on two DynamoDB tables; see the module docstring."""

    def __init__(
        self,
        *,
        buckets_table: str,
        limits_table: str,
        client: DynamoDBClient | None = None,
        region: str | None = None,
    ) -> None:
        self.buckets_table = buckets_table
        self.limits_table = limits_table
        self._client = client
        self._region = region

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = dynamodb_client(region=self._region)
        return self._client

    # -- the hot path -------------------------------------------------------

    def reserve(
        self,
        bucket: str,
        *,
        version: int,
        tokens: int,
        add_us: int,
        eff_us: int,
        ceiling_us: int | None,
    ) -> int:
        values = {":v": _n(version), ":eff": _n(eff_us), ":n": _n(tokens)}
        if ceiling_us is not None:
            # Busy: a guarded atomic add. Concurrent writers all succeed in
            # turn, each owning the next slots; no read-modify-write race.
            update = "SET #tat = #tat + :add ADD #g :n"
            condition = "#v = :v AND #tat >= :eff AND #tat <= :ceil AND #bu <= :eff"
            values[":add"] = _n(add_us)
            values[":ceil"] = _n(ceiling_us)
        else:
            # Idle: the bucket has caught up with `eff`; restart it from there.
            update = "SET #tat = :tat ADD #g :n"
            condition = "#v = :v AND #tat < :eff AND #bu <= :eff"
            values[":tat"] = _n(eff_us + add_us)
        response = self._conditional(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.buckets_table,
                Key={"bucket": {"S": bucket}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )
        return int(response["Attributes"]["tat_us"]["N"])

    # -- reads ----------------------------------------------------------------

    def read_bucket(self, bucket: str) -> BucketState | None:
        response = self._call(
            "GetItem",
            lambda: self.client.get_item(
                TableName=self.buckets_table, Key={"bucket": {"S": bucket}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return self._bucket_state(item) if item else None

    def read_config(self, bucket: str) -> tuple[BucketState | None, ConfiguredLimit | None]:
        key = {"Keys": [{"bucket": {"S": bucket}}], "ConsistentRead": True}
        request: dict[str, Any] = {self.buckets_table: key, self.limits_table: key}
        found: dict[str, list[Item]] = {}
        for _ in range(5):  # UnprocessedKeys only appear under throttling
            response = self._batch_get(request)
            for table, items in response.get("Responses", {}).items():
                found.setdefault(table, []).extend(items)
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                break
        else:
            raise StoreUnavailable("BatchGetItem", "keys left unprocessed after 5 tries")
        bucket_items = found.get(self.buckets_table, [])
        limit_items = found.get(self.limits_table, [])
        state = self._bucket_state(bucket_items[0]) if bucket_items else None
        configured = self._configured(limit_items[0]) if limit_items else None
        return state, configured

    def _batch_get(self, request: dict[str, Any]) -> Any:
        return self._call("BatchGetItem", lambda: self.client.batch_get_item(RequestItems=request))

    # -- configuration and blocking (rare writes) ------------------------------

    def install(self, bucket: str, limit: Limit, version: int) -> BucketState:
        try:
            response = self._conditional(
                "UpdateItem",
                lambda: self.client.update_item(
                    TableName=self.buckets_table,
                    Key={"bucket": {"S": bucket}},
                    UpdateExpression=(
                        "SET #v = :v, requests = :r, per_seconds = :p, burst = :b, "
                        "#tat = if_not_exists(#tat, :zero), #bu = if_not_exists(#bu, :zero), "
                        "#g = if_not_exists(#g, :zero)"
                    ),
                    ConditionExpression="attribute_not_exists(#v) OR #v < :v",
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues={
                        ":v": _n(version),
                        ":r": _n(limit.requests),
                        ":p": _n(limit.per_seconds),
                        ":b": _n(limit.burst),
                        ":zero": _n(0),
                    },
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
        except ConditionFailed as failed:  # someone installed this version or a newer one
            current = failed.state or self.read_bucket(bucket)
            if current is None:
                raise StoreUnavailable("UpdateItem", f"bucket {bucket!r} vanished") from None
            return current
        return self._bucket_state(response["Attributes"])

    def block(self, bucket: str, until_us: int) -> BucketState | None:
        try:
            response = self._conditional(
                "UpdateItem",
                lambda: self.client.update_item(
                    TableName=self.buckets_table,
                    Key={"bucket": {"S": bucket}},
                    UpdateExpression="SET #bu = :u",
                    ConditionExpression="attribute_exists(#v) AND #bu < :u",
                    ExpressionAttributeNames={"#v": "version", "#bu": "blocked_until_us"},
                    ExpressionAttributeValues={":u": _n(until_us)},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
        except ConditionFailed as failed:  # already blocked as long, or no bucket
            return failed.state or self.read_bucket(bucket)
        return self._bucket_state(response["Attributes"])

    def put_limit(
        self,
        bucket: str,
        limit: Limit,
        now: float,
        *,
        version: int,
        expected_version: int | None,
    ) -> ConfiguredLimit:
        values = {
            ":r": _n(limit.requests),
            ":p": _n(limit.per_seconds),
            ":b": _n(limit.burst),
            ":t": _n(now),
            ":v": _n(version),
        }
        if expected_version is None:
            condition = "attribute_not_exists(#v)"
        else:
            condition = "#v = :expected"
            values[":expected"] = _n(expected_version)
        self._conditional(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.limits_table,
                Key={"bucket": {"S": bucket}},
                UpdateExpression=(
                    "SET requests = :r, per_seconds = :p, burst = :b, updated_at = :t, #v = :v"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues=values,
            ),
        )
        return ConfiguredLimit(bucket=bucket, limit=limit, version=version, updated_at=now)

    def get_limit(self, bucket: str) -> ConfiguredLimit | None:
        response = self._call(
            "GetItem",
            lambda: self.client.get_item(
                TableName=self.limits_table, Key={"bucket": {"S": bucket}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return self._configured(item) if item else None

    def list_limits(self) -> list[ConfiguredLimit]:
        items: list[Item] = []
        kwargs: dict[str, Any] = {"TableName": self.limits_table, "ConsistentRead": True}
        while True:
            page = self._call("Scan", lambda: self.client.scan(**kwargs))
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted((self._configured(i) for i in items), key=lambda c: c.bucket)

    def delete_limit(self, bucket: str) -> bool:
        key = {"bucket": {"S": bucket}}
        response = self._call(
            "DeleteItem",
            lambda: self.client.delete_item(
                TableName=self.limits_table, Key=key, ReturnValues="ALL_OLD"
            ),
        )
        self._call(
            "DeleteItem",
            lambda: self.client.delete_item(TableName=self.buckets_table, Key=key),
        )
        return bool(response.get("Attributes"))

    def create_tables(self) -> None:
        for table in (self.buckets_table, self.limits_table):
            try:
                self.client.create_table(
                    TableName=table,
                    KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise self._unavailable("CreateTable", exc) from exc
            except BotoCoreError as exc:
                raise self._unavailable("CreateTable", exc) from exc
        waiter = self.client.get_waiter("table_exists")
        for table in (self.buckets_table, self.limits_table):
            self._call(
                "DescribeTable",
                lambda t=table: waiter.wait(  # type: ignore[misc]
                    TableName=t, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
                ),
            )

    # -- plumbing ------------------------------------------------------------

    def _conditional(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                item = cast("Item | None", dict(exc.response).get("Item"))
                raise ConditionFailed(self._bucket_state(item) if item else None) from None
            raise self._unavailable(operation, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(operation, exc) from exc

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable(operation, exc) from exc

    def _unavailable(self, operation: str, exc: Exception) -> StoreUnavailable:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "ResourceNotFoundException":
                return StoreUnavailable(
                    operation,
                    f"table missing ({message or code})",
                    code=code,
                    hint=(
                        f"create {self.buckets_table!r} and {self.limits_table!r}: deploy "
                        "infra/template.yaml, or run `ratebridge tables create` locally"
                    ),
                )
            if code in _THROTTLED:
                return StoreUnavailable(operation, f"throttled ({code})", code=code)
            return StoreUnavailable(operation, f"{code}: {message}", code=code)
        endpoint = getattr(self._client, "meta", None)
        where = f" at {endpoint.endpoint_url}" if endpoint else ""
        return StoreUnavailable(operation, f"{type(exc).__name__}{where}: {exc}")

    def _bucket_state(self, item: Item) -> BucketState:
        bucket = item["bucket"]["S"]
        return BucketState(
            bucket=bucket,
            version=_int(item, "version"),
            limit=self._limit(bucket, item),
            tat_us=_int(item, "tat_us"),
            blocked_until_us=_int(item, "blocked_until_us"),
            granted=_int(item, "granted"),
        )

    def _configured(self, item: Item) -> ConfiguredLimit:
        bucket = item["bucket"]["S"]
        updated = item.get("updated_at")
        return ConfiguredLimit(
            bucket=bucket,
            limit=self._limit(bucket, item),
            version=_int(item, "version"),
            updated_at=float(updated["N"]) if updated else 0.0,
        )

    @staticmethod
    def _limit(bucket: str, item: Item) -> Limit:
        try:
            return Limit(
                requests=_stored_whole(item["requests"]["N"], "requests"),
                per_seconds=float(item["per_seconds"]["N"]),
                burst=_stored_whole(item["burst"]["N"], "burst"),
            )
        except (KeyError, ValueError) as exc:  # InvalidArgument is a ValueError
            raise InvalidArgument(
                f"the stored limit for bucket {bucket!r} is invalid ({exc}): "
                f"set it again with `ratebridge limits set {bucket} ...`"
            ) from exc


def _stored_whole(text: str, what: str) -> int:
    """A stored whole number, however the backend spells it ("1e3" or "1000");
    ValueError when it is not whole."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"{what} must be a whole number, got {text}")
    return int(number)
