"""A local event-source runner with the semantics of Lambda's SQS event source mapping.

It polls an SQS queue (any endpoint, through the standard AWS settings) and
invokes a real Lambda handler in N worker processes: batch size and batching
window, maximum concurrency, Lambda-shaped records and context, partial batch
responses (ReportBatchItemFailures), function timeouts that kill the worker,
workers replaced when they die. See README.md next to this file.

    from ratebridge_tools.runner import Runner, RunnerConfig

    config = RunnerConfig(queue_url=url, handler="processor.handler.lambda_handler")
    with Runner(config) as runner:
        stats = runner.run_until_drained(idle_seconds=2)

This package imports only the standard library and botocore's exceptions at
import time: worker processes import it, and their cold start should cost
what the handler costs.
"""

from ratebridge_tools.runner.config import RunnerConfig
from ratebridge_tools.runner.context import LambdaContext
from ratebridge_tools.runner.errors import ConfigError, HandlerInitError, QueueError, RunnerError
from ratebridge_tools.runner.records import lambda_event, lambda_record
from ratebridge_tools.runner.response import Verdict, read_response
from ratebridge_tools.runner.runner import Runner
from ratebridge_tools.runner.stats import BatchOutcome, Outcome, Progress, RunStats

__all__ = [
    "BatchOutcome",
    "ConfigError",
    "HandlerInitError",
    "LambdaContext",
    "Outcome",
    "Progress",
    "QueueError",
    "RunStats",
    "Runner",
    "RunnerConfig",
    "RunnerError",
    "Verdict",
    "lambda_event",
    "lambda_record",
    "read_response",
]
