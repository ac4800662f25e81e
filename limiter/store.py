"""What the limiter needs from storage: a handful of conditional primitives.

`limiter.limiter.Limiter` owns the algorithm; a store only performs single
writes and reads whose conditions the limiter composes. `DynamoDBStore` is the
implementation (real DynamoDB, moto, dynalite); the interface keeps the
algorithm testable and the I/O in one module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from limiter.models import BucketState, ConfiguredLimit, Limit


class ConditionFailed(Exception):
    """A conditional write did not apply. `state` is the item as it was, when
    the store returned it (DynamoDB and moto do; dynalite does not), or None."""

    def __init__(self, state: BucketState | None) -> None:
        super().__init__("condition failed")
        self.state = state


class BucketStore(ABC):
    """Storage for bucket state (hot, one write per grant) and limits (config)."""

    @abstractmethod
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
        """Take `tokens` grants in one write and return the new `tat`.

        Busy branch (`ceiling_us` given): `tat += add_us` if
        `eff_us <= tat <= ceiling_us`. Idle branch (`ceiling_us` None):
        `tat = eff_us + add_us` if `tat < eff_us`. Both also require the
        bucket's `version` to equal `version` and `blocked_until <= eff_us`,
        and add `tokens` to the `granted` counter.
        Raises `ConditionFailed` when the condition does not hold.
        """

    @abstractmethod
    def read_bucket(self, bucket: str) -> BucketState | None:
        """The bucket item (consistent read), or None if there is none."""

    @abstractmethod
    def read_config(self, bucket: str) -> tuple[BucketState | None, ConfiguredLimit | None]:
        """The bucket item and the limits item together, in one request."""

    @abstractmethod
    def install(self, bucket: str, limit: Limit, version: int) -> BucketState:
        """Copy limit `version` into the bucket item unless it already has that
        version or a newer one; create the item if missing. Returns the item."""

    @abstractmethod
    def block(self, bucket: str, until_us: int) -> BucketState | None:
        """Raise `blocked_until` to `until_us` (never lower it). Returns the
        item afterwards, or None if the bucket item does not exist."""

    @abstractmethod
    def put_limit(
        self,
        bucket: str,
        limit: Limit,
        now: float,
        *,
        version: int,
        expected_version: int | None,
    ) -> ConfiguredLimit:
        """Write the limits item as `version` if its version is still
        `expected_version` (None: the item must not exist). Raises
        `ConditionFailed` otherwise."""

    @abstractmethod
    def get_limit(self, bucket: str) -> ConfiguredLimit | None:
        """The limits item, or None."""

    @abstractmethod
    def list_limits(self) -> list[ConfiguredLimit]:
        """Every limits item, sorted by bucket."""

    @abstractmethod
    def delete_limit(self, bucket: str) -> bool:
        """Delete the limits item and the bucket item; True if a limit existed."""

    @abstractmethod
    def create_tables(self) -> None:
        """Create the tables if missing and wait until they are active."""
