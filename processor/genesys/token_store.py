"""The shared access token's DynamoDB item: the only I/O of `processor.genesys.token`.

One item per OAuth client, key `id` = "genesys-token#<client_id>":
`access_token`, `token_id` (a hash prefix, for logs and compare-and-delete),
`expires_at`, `refresh_at`, `fetched_at` (epoch seconds), `version`, and the
refresh lease `lease_owner`, `lease_until`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from processor.genesys.errors import TokenUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

T = TypeVar("T")


@dataclass(frozen=True)
class StoredToken:
    """An access token as the fleet shares it. Its value never appears in a repr."""

    value: str = field(repr=False)
    token_id: str
    expires_at: float
    refresh_at: float
    version: int


@dataclass(frozen=True)
class TokenItem:
    """The whole item: the token (if any), its version and the refresh lease."""

    token: StoredToken | None
    version: int
    lease_owner: str | None
    lease_until: float


class TokenStore:
    """Conditional reads and writes on the tokens table."""

    def __init__(self, table: str, client: DynamoDBClient) -> None:
        self.table = table
        self.client = client

    def read(self, key: str) -> TokenItem:
        response = self._call(
            lambda: self.client.get_item(
                TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True
            )
        )
        return _item(response.get("Item") or {})

    def try_lease(self, key: str, owner: str, now: float, until: float, seen_version: int) -> bool:
        """Take the refresh lease if nobody holds a live one and no token was
        published since the caller read version `seen_version`.

        Without the version guard, a caller that read "no token" just before
        another published one (and dropped its lease) would take a fresh lease
        and fetch a second token.
        """
        return self._conditional(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                UpdateExpression="SET lease_owner = :owner, lease_until = :until",
                ConditionExpression=(
                    "(attribute_not_exists(lease_until) OR lease_until < :now) AND "
                    "(attribute_not_exists(version) OR version = :seen)"
                ),
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": repr(until)},
                    ":now": {"N": repr(now)},
                    ":seen": {"N": str(seen_version)},
                },
            )
        )

    def publish(self, key: str, owner: str, token: StoredToken, now: float) -> bool:
        """Store a new token and drop the lease, if the lease is still ours."""
        return self._conditional(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                UpdateExpression=(
                    "SET access_token = :value, token_id = :tid, expires_at = :exp, "
                    "refresh_at = :refresh, fetched_at = :now, version = :version "
                    "REMOVE lease_owner, lease_until"
                ),
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={
                    ":value": {"S": token.value},
                    ":tid": {"S": token.token_id},
                    ":exp": {"N": repr(token.expires_at)},
                    ":refresh": {"N": repr(token.refresh_at)},
                    ":now": {"N": repr(now)},
                    ":version": {"N": str(token.version)},
                    ":owner": {"S": owner},
                },
            )
        )

    def release(self, key: str, owner: str) -> None:
        """Give the lease back after a failed refresh, so another can try at once."""
        self._conditional(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                UpdateExpression="REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        )

    def invalidate(self, key: str, token_id: str) -> bool:
        """Drop the token only if it is still `token_id` (compare-and-delete)."""
        return self._conditional(
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                UpdateExpression=(
                    "REMOVE access_token, token_id, expires_at, refresh_at, fetched_at"
                ),
                ConditionExpression="token_id = :tid",
                ExpressionAttributeValues={":tid": {"S": token_id}},
            )
        )

    def create_table(self) -> None:
        try:
            self.client.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        self.client.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def _conditional(self, call: Callable[[], object]) -> bool:
        try:
            call()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise _unavailable(exc) from None
        except BotoCoreError as exc:
            raise _unavailable(exc) from None
        return True

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from None


def _unavailable(exc: Exception) -> TokenUnavailable:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return TokenUnavailable(f"tokens table: DynamoDB {code}")
    return TokenUnavailable(f"tokens table: {type(exc).__name__}")


def _item(item: Mapping[str, Any]) -> TokenItem:
    token = None
    if "access_token" in item and "token_id" in item:
        token = StoredToken(
            value=item["access_token"]["S"],
            token_id=item["token_id"]["S"],
            expires_at=float(item["expires_at"]["N"]),
            refresh_at=float(item["refresh_at"]["N"]),
            version=int(item.get("version", {}).get("N", "0")),
        )
    owner = item.get("lease_owner", {}).get("S")
    until = float(item["lease_until"]["N"]) if "lease_until" in item else 0.0
    version = int(item["version"]["N"]) if "version" in item else 0
    return TokenItem(token=token, version=version, lease_owner=owner, lease_until=until)
