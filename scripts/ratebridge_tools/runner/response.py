"""What a handler's return value means to the SQS event source mapping, with
ReportBatchItemFailures on.

Lambda's rules ("Success and failure conditions", docs.aws.amazon.com/lambda/
latest/dg/services-sqs-errorhandling.html):

- complete success (delete every message): an empty batchItemFailures list,
  a null batchItemFailures list, an empty EventResponse, a null EventResponse;
- complete failure (delete none): an invalid JSON response, an empty string
  itemIdentifier, a null itemIdentifier, an itemIdentifier with a bad key
  name, an itemIdentifier value with a message ID that doesn't exist;
- otherwise, delete all but the reported messages.

A response that is not a JSON object (a list, a string, a number) cannot be a
batch response: it counts as invalid. An object without batchItemFailures is a
response whose list is null, so a success, as on Lambda. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The reading of one response: `failed` are the messages to leave in the
    queue; `invalid` says why the whole batch failed, or is None."""

    failed: frozenset[str]
    invalid: str | None = None

    @property
    def complete_failure(self) -> bool:
        return self.invalid is not None

    def to_delete(self, message_ids: Collection[str]) -> list[str]:
        """The message ids to delete, in batch order (none on complete failure)."""
        if self.invalid is not None:
            return []
        return [m for m in message_ids if m not in self.failed]


def read_response(response: object, message_ids: Collection[str]) -> Verdict:
    """Interpret a handler's (JSON-decoded) return value for a batch of `message_ids`."""
    failed: set[str] = set()
    problem = _problem(response, set(message_ids), failed)
    if problem is not None:
        return Verdict(frozenset(), problem)
    return Verdict(frozenset(failed))


def _problem(response: object, known: set[str], failed: set[str]) -> str | None:
    """Why the response is a complete failure, or None (filling `failed`)."""
    if response is None:
        return None
    if not isinstance(response, dict):
        return f"the response is a JSON {type(response).__name__}, not an object"
    failures = response.get("batchItemFailures")
    if failures is None:
        return None
    if not isinstance(failures, list):
        return "batchItemFailures is not a list"
    for item in failures:
        problem = _item_problem(item, known)
        if problem is not None:
            return problem
        failed.add(item["itemIdentifier"])
    return None


def _item_problem(item: object, known: set[str]) -> str | None:
    if not isinstance(item, dict) or "itemIdentifier" not in item:
        return f"batch item failure {item!r} has no itemIdentifier"
    identifier = item["itemIdentifier"]
    if identifier is None or identifier == "":
        return f"itemIdentifier is {identifier!r}"
    if not isinstance(identifier, str) or identifier not in known:
        return f"itemIdentifier {identifier!r} is not a message of this batch"
    return None
