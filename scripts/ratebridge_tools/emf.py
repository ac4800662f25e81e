"""Reading the CloudWatch embedded metric format (EMF) lines a function printed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each EMF object among `lines` (other log lines are skipped)."""
    for line in lines:
        if not line.startswith('{"_aws"'):
            continue
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if isinstance(blob, dict):
            yield blob


def total(blob: dict[str, Any], name: str) -> float:
    """The sum of metric `name`'s values in one EMF object (0 if absent)."""
    values = blob.get(name, [])
    return float(sum(values) if isinstance(values, list) else values)
