"""The `context` object a handler gets, as the Lambda Python runtime builds it.

Like the runtime (awslambdaric's LambdaContext), the function's identity comes
from the environment variables Lambda sets in every execution environment
(AWS_LAMBDA_FUNCTION_NAME, ..., AWS_LAMBDA_FUNCTION_MEMORY_SIZE, which makes
`memory_limit_in_mb` a string there too), and the remaining time counts down
to an absolute deadline in epoch milliseconds fixed when the invocation starts.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Callable


class CognitoIdentity:
    """Empty for event source invocations, as on Lambda."""

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class LambdaContext:
    """Lambda's context: `function_name`, `function_version`,
    `invoked_function_arn`, `memory_limit_in_mb`, `aws_request_id`,
    `log_group_name`, `log_stream_name`, `identity`, `client_context`,
    `tenant_id`, and `get_remaining_time_in_millis()`."""

    def __init__(
        self,
        *,
        aws_request_id: str,
        invoked_function_arn: str,
        deadline_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.invoked_function_arn = invoked_function_arn
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id: str | None = None
        self._deadline_ms = deadline_ms
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function times out (0 once past it)."""
        return max(0, self._deadline_ms - int(self._clock() * 1000))

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r}, "
            f"aws_request_id={self.aws_request_id!r})"
        )


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def new_log_stream_name(function_version: str, now: dt.datetime | None = None) -> str:
    """A log stream name in Lambda's format, one per execution environment:
    `2024/05/01/[$LATEST]0123456789abcdef0123456789abcdef`."""
    day = (now or dt.datetime.now(dt.UTC)).strftime("%Y/%m/%d")
    return f"{day}/[{function_version}]{uuid.uuid4().hex}"


def lambda_environment(
    *,
    function_name: str,
    function_version: str,
    memory_mb: int,
    log_stream_name: str,
) -> dict[str, str]:
    """The reserved variables Lambda sets that the runtime's context reads."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group_name(function_name),
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
    }
