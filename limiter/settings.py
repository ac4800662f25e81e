"""The limiter's settings, read from the environment in this one place."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from limiter.errors import InvalidArgument

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


def table_name(variable: str, value: str) -> str:
    """`value` if it is a valid DynamoDB table name, else a clear error naming `variable`."""
    if not _TABLE_NAME.fullmatch(value):
        raise InvalidArgument(
            f"{variable}={value!r} is not a valid DynamoDB table name "
            "(3-255 characters: letters, digits, '_', '-', '.')"
        )
    return value


@dataclass(frozen=True)
class LimiterSettings:
    """Where the limiter keeps its state.

    RATEBRIDGE_BUCKETS_TABLE (default ratebridge-buckets),
    RATEBRIDGE_LIMITS_TABLE (default ratebridge-limits). Region and endpoint
    come from the standard AWS settings (AWS_REGION or AWS_DEFAULT_REGION,
    AWS_ENDPOINT_URL_DYNAMODB or AWS_ENDPOINT_URL), read here and passed to
    the client explicitly.
    """

    buckets_table: str = "ratebridge-buckets"
    limits_table: str = "ratebridge-limits"
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LimiterSettings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            buckets_table=table_name(
                "RATEBRIDGE_BUCKETS_TABLE",
                env.get("RATEBRIDGE_BUCKETS_TABLE", defaults.buckets_table),
            ),
            limits_table=table_name(
                "RATEBRIDGE_LIMITS_TABLE", env.get("RATEBRIDGE_LIMITS_TABLE", defaults.limits_table)
            ),
            # botocore reads AWS_DEFAULT_REGION but not AWS_REGION alone: pass it on.
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            endpoint_url=aws_endpoint(env, "DYNAMODB"),
        )


def aws_endpoint(env: Mapping[str, str], service: str) -> str | None:
    """The endpoint the standard AWS settings give `service` (e.g. "DYNAMODB"), if any."""
    return env.get(f"AWS_ENDPOINT_URL_{service}") or env.get("AWS_ENDPOINT_URL") or None
