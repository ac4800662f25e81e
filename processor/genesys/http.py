"""Plain HTTP for the Genesys client: one urllib3 pool, no hidden retries, explicit timeouts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import urllib3

DEFAULT_RETRY_AFTER = 10.0  # seconds, when a 429 carries no usable Retry-After
MAX_RETRY_AFTER = 3600.0


def pool(max_connections: int = 16) -> urllib3.PoolManager:
    """A connection pool that never retries on its own (the SDK's does, ten times)."""
    return urllib3.PoolManager(num_pools=4, maxsize=max_connections, block=False, retries=False)


@dataclass(frozen=True)
class HttpResponse:
    """What the SDK reads from a response: status, reason, data (text) and headers."""

    status: int
    reason: str
    data: str = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)

    def getheaders(self) -> Mapping[str, str]:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


def retry_after(headers: Mapping[str, str], body: str) -> float:
    """Seconds to wait after a 429: the Retry-After header, else the "[N]" in
    Genesys's message, else a default; clamped to [1, 3600]."""
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return min(MAX_RETRY_AFTER, max(1.0, float(value)))
            except ValueError:
                break
    match = re.search(r"\[(\d+)\] seconds", body)
    if match:
        return min(MAX_RETRY_AFTER, max(1.0, float(match.group(1))))
    return DEFAULT_RETRY_AFTER
