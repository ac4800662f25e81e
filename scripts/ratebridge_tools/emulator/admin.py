"""The admin API under /_emulator/: not authenticated, not rate limited, not recorded.

GET  /_emulator/health                      {"status": "ok", ...}
GET  /_emulator/config                      the knobs (client ids, never secrets)
POST /_emulator/config    {knob: value}     partial update; 400 names the bad knob
POST /_emulator/reset     {"config": bool}  clear records, tokens, windows (and knobs)
POST /_emulator/revoke    {"token_id": id}  revoke one token id, or all with {}
POST /_emulator/missing   {"add": [...], "remove": [...]}   ids answering 404
GET  /_emulator/requests?since=N&limit=M    the record from index N
GET  /_emulator/stats?window=SECONDS        totals and the busiest window
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from ratebridge_tools.emulator.config import ConfigError
from ratebridge_tools.emulator.state import EmulatorState

ADMIN_PREFIX = "/_emulator/"
DEFAULT_PAGE = 10_000


class AdminError(Exception):
    """A bad admin request: answered with `status` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AdminReply:
    status: int
    body: object


def _json_object(body: bytes) -> dict[str, object]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise AdminError(400, "the body must be a JSON object")
    return value


def _query_number(query: dict[str, list[str]], name: str, default: float | None) -> float:
    values = query.get(name)
    if not values:
        if default is None:
            raise AdminError(400, f"the query parameter {name} is required")
        return default
    try:
        return float(values[-1])
    except ValueError:
        raise AdminError(400, f"{name} must be a number") from None


def _query_index(query: dict[str, list[str]], name: str, default: int) -> int:
    number = _query_number(query, name, float(default))
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise AdminError(400, f"{name} must be a whole number >= 0")
    return int(number)


def _ids(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdminError(400, f"{name} must be a list of UUID strings")
    return list(value)


def _health(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    return AdminReply(
        200,
        {"status": "ok", "pid": os.getpid(), "started_at": state.started_at, "now": state.clock()},
    )


def _get_config(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    return AdminReply(200, state.config.to_json())


def _set_config(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    return AdminReply(200, state.update_config(_json_object(body)).to_json())


def _reset(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    restore = _json_object(body).get("config", False)
    if not isinstance(restore, bool):
        raise AdminError(400, "config must be true or false")
    state.reset(restore_config=restore)
    return AdminReply(200, {"reset": True, "config_restored": restore})


def _revoke(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    token_id = _json_object(body).get("token_id")
    if token_id is not None and not isinstance(token_id, str):
        raise AdminError(400, "token_id must be a string like tok-0123abcd")
    return AdminReply(200, {"revoked": state.revoke(token_id)})


def _missing(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    request = _json_object(body)
    add, remove = _ids(request.get("add"), "add"), _ids(request.get("remove"), "remove")
    return AdminReply(200, {"missing_ids": sorted(state.change_missing(add, remove))})


def _requests(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    since = _query_index(query, "since", 0)
    limit = _query_index(query, "limit", DEFAULT_PAGE)
    page, next_index = state.records(since, limit)
    return AdminReply(
        200,
        {"records": [r.to_json() for r in page], "next": next_index, "dropped": state.dropped},
    )


def _stats(state: EmulatorState, query: dict[str, list[str]], body: bytes) -> AdminReply:
    window = _query_number(query, "window", None)
    return AdminReply(200, state.stats(window).to_json())


_Handler = Callable[[EmulatorState, dict[str, list[str]], bytes], AdminReply]
_ROUTES: dict[tuple[str, str], _Handler] = {
    ("GET", "health"): _health,
    ("GET", "config"): _get_config,
    ("POST", "config"): _set_config,
    ("POST", "reset"): _reset,
    ("POST", "revoke"): _revoke,
    ("POST", "missing"): _missing,
    ("GET", "requests"): _requests,
    ("GET", "stats"): _stats,
}


def handle(state: EmulatorState, method: str, target: str, body: bytes) -> AdminReply:
    """Answer one admin request; errors become {"error": message} with a 4xx."""
    path, _, query_string = target.partition("?")
    name = path.removeprefix(ADMIN_PREFIX).rstrip("/")
    handler = _ROUTES.get((method, name))
    try:
        if handler is None:
            if any(route == name for _method, route in _ROUTES):
                raise AdminError(405, "method not allowed")
            raise AdminError(404, "unknown admin endpoint")
        return handler(state, parse_qs(query_string), body)
    except AdminError as exc:
        return AdminReply(exc.status, {"error": str(exc)})
    except ConfigError as exc:
        return AdminReply(400, {"error": str(exc)})
