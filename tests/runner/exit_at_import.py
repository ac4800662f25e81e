"""A handler module whose import ends the process without a Python error."""

import os


def handler(event: object, context: object) -> None:  # pragma: no cover - never reached
    return None


os._exit(3)
