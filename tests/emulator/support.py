"""Plain HTTP helpers for the emulator tests (no hidden retries, sockets closed)."""

from __future__ import annotations

import base64
import http.client
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ratebridge_tools.emulator import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, RequestRecord

USER_ID = "0d7f5a4c-1111-4222-8333-123456789abc"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON
    elapsed: float


def call(
    url: str,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30.0,
) -> Answer:
    """One request on a fresh connection, closed afterwards."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body or None, headers=dict(headers or {}))
        response = conn.getresponse()
        raw = response.read()
        elapsed = time.monotonic() - started
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    return Answer(response.status, answer_headers, json.loads(raw) if raw else None, elapsed)


def basic(client_id: str = LOCAL_CLIENT_ID, secret: str = LOCAL_CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_request(
    url: str, client_id: str = LOCAL_CLIENT_ID, secret: str = LOCAL_CLIENT_SECRET
) -> Answer:
    return call(
        url,
        "POST",
        "/oauth/token",
        headers={"Authorization": basic(client_id, secret), "Content-Type": FORM},
        body=b"grant_type=client_credentials",
    )


def get_token(url: str, client_id: str = LOCAL_CLIENT_ID, secret: str = LOCAL_CLIENT_SECRET) -> str:
    answer = token_request(url, client_id, secret)
    assert answer.status == 200, answer.body
    token = answer.body["access_token"]
    assert isinstance(token, str)
    return token


def api_get(url: str, token: str, path: str = f"/api/v2/users/{USER_ID}") -> Answer:
    return call(url, "GET", path, headers={"Authorization": f"Bearer {token}"})


def assert_genesys_error(answer: Answer, status: int, code: str) -> None:
    """The API's ErrorBody shape, with contextId equal to ININ-Correlation-Id."""
    body = answer.body
    assert answer.status == status
    assert set(body) == {"message", "code", "status", "contextId", "details", "errors"}
    assert body["code"] == code
    assert body["status"] == status
    assert body["details"] == [] and body["errors"] == []
    assert body["contextId"] == answer.headers["inin-correlation-id"]


@dataclass
class Expected:
    admitted: bool
    count: int
    reset_s: int
    retry_after_s: int


def replay(times: Iterable[float], limit: int, period: float, mode: str) -> list[Expected]:
    """What the emulator must have decided for sequential arrivals at `times`:
    a brute-force restatement of the rules in the README, independent of the
    emulator's own bisect bookkeeping (same float expressions, so equal results)."""
    admitted: list[float] = []
    out: list[Expected] = []
    for t in times:
        if mode == "fixed":
            k = math.floor(t / period)
            end = (k + 1) * period
            count = sum(1 for a in admitted if k * period <= a < end)
            if count < limit:
                admitted.append(t)
                out.append(Expected(True, count + 1, max(1, math.ceil(end - t)), 0))
            else:
                wait = max(1, math.ceil(end - t))
                out.append(Expected(False, count, wait, wait))
            continue
        window = [a for a in admitted if t - period < a <= t]
        if len(window) < limit:
            admitted.append(t)
            reset = max(1, math.ceil(window[0] + period - t)) if window else math.ceil(period)
            out.append(Expected(True, len(window) + 1, max(1, reset), 0))
        else:
            wait = max(1, math.ceil(admitted[-limit] + period - t))
            out.append(Expected(False, len(window), wait, wait))
    return out


def brute_max_in_window(times: list[float], window: float) -> int:
    """Most `times` in any half-open (s - window, s]; O(n^2) on purpose."""
    return max((sum(1 for t in times if s - window < t <= s) for s in times), default=0)


def api_records(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.path.startswith("/api/")]
