"""The Lambda handler: SQS batch in, partial batch response out. Wiring only.

Handler path: `processor.handler.lambda_handler`. The app (stores, Genesys
client, idempotency) is built on the first invocation of a container and kept.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# The Genesys SDK takes seconds to import: do it in Lambda's init phase (which
# SnapStart can snapshot), not inside the first invocation's time budget.
import processor.genesys.client  # noqa: F401
from processor.app import App
from processor.batch import handle_batch
from processor.observability import logger

_app: App | None = None


def get_app() -> App:
    global _app  # noqa: PLW0603 - one App per container, built on first use
    if _app is None:
        _app = App.from_env()
    return _app


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(handle_batch(get_app(), event, context))
