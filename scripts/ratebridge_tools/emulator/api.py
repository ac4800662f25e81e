"""What Genesys answers: the token endpoint and the REST routes, as pure decisions.

`handle` turns one parsed request into a `Reply` (status, headers, JSON body,
what to record, and the delay or hang the server must apply). It does no I/O
and holds the state's lock for the whole decision, so the fault draws, the
token check and the rate window see one consistent state. The rate window is
the token's or, with `limit_scope` "client", the one its OAuth client's tokens
share.

Order for an API request (why: a gateway authenticates and counts before the
service behind it can fail): authenticate -> rate window -> injected fault
-> route. So a request that gets an injected 5xx or hangs has been counted,
and a 404 or 400 for an authenticated request counts too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs

from ratebridge_tools.emulator import data
from ratebridge_tools.emulator.config import EmulatorConfig, is_uuid
from ratebridge_tools.emulator.state import EmulatorState, FaultDraw, TokenStatus, token_id_of
from ratebridge_tools.emulator.windows import Decision

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password
API_PREFIX = "/api/"
MAX_BODY_BYTES = 512_000  # Genesys's request body limit

# Genesys error codes and messages (as its API returns them).
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "bad.request",
        "The request could not be understood by the server due to malformed syntax.",
    ),
    404: ("not.found", "The requested resource was not found."),
    405: ("method.not.allowed", "The requested method is not allowed for this resource."),
    413: ("request.entity.too.large", "The request body is larger than the server accepts."),
    500: (
        "internal.server.error",
        "The server encountered an unexpected condition which prevented it from fulfilling "
        "the request.",
    ),
    502: ("bad.gateway", "The server received an invalid response from an upstream server."),
    503: (
        "service.unavailable",
        "Service Unavailable - The server is currently unavailable (because it is overloaded "
        "or down for maintenance).",
    ),
    504: ("request.timeout", "The request timed out."),
}
_AUTH_REQUIRED = (
    "authentication.required",
    "No authentication bearer token specified in authorization header.",
)
_BAD_CREDENTIALS = ("bad.credentials", "Invalid login credentials.")
_CREDENTIALS_EXPIRED = (
    "credentials.expired",
    "The supplied credentials are expired and cannot be used.",
)


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request. `arrival` is when its request line was read."""

    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str] = field(repr=False)  # Authorization holds credentials
    body: bytes = field(repr=False)
    arrival: float

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.target.partition("?")[2])

    def header(self, name: str) -> str:
        """The header's value ("" when absent); `headers` has lower-case names."""
        value = self.headers.get(name.lower())
        return "" if value is None else value


@dataclass(frozen=True)
class Hang:
    """Hold the answer for `seconds`; then close the connection without
    answering when `close`, else send the reply (a 504)."""

    seconds: float
    close: bool


@dataclass(frozen=True)
class Reply:
    """What to send and what to record."""

    status: int
    body: Mapping[str, object] = field(repr=False)  # may hold an access token
    headers: Mapping[str, str] = field(default_factory=dict)
    token_id: str | None = None
    client_id: str | None = None
    admitted: bool = False
    delay_s: float = 0.0
    hang: Hang | None = None


def genesys_error(status: int, code: str, message: str) -> Reply:
    """A Genesys-style error: JSON body and ININ-Correlation-Id equal to its contextId.

    The message never contains request input, so nothing is reflected.
    """
    context_id = str(uuid.uuid4())
    body = {
        "message": message,
        "code": code,
        "status": status,
        "contextId": context_id,
        "details": [],
        "errors": [],
    }
    return Reply(status, body, {"ININ-Correlation-Id": context_id})


def status_error(status: int) -> Reply:
    """The Genesys error for `status` (a generic one for statuses without their own)."""
    code, message = _STATUS_ERRORS.get(status, ("server.error", "The server failed to answer."))
    return genesys_error(status, code, message)


def too_many_requests(decision: Decision) -> Reply:
    """Genesys's 429, exactly: Retry-After in whole seconds, rounded up, from the window."""
    seconds = decision.retry_after_s
    reply = genesys_error(
        429,
        "too.many.requests.retry.after",
        f"Rate limit exceeded the maximum. Retry the request in [{seconds}] seconds",
    )
    return replace(reply, headers={**reply.headers, "Retry-After": str(seconds)})


def _oauth_error(status: int, error: str, description: str, client_id: str | None) -> Reply:
    # The login service's own shape (not the API's ErrorBody), e.g. for a bad
    # secret: {"error":"invalid_client","description":"authentication failed",
    # "error_description":"authentication failed"}.
    body = {"error": error, "description": description, "error_description": description}
    return Reply(status, body, {"ININ-Correlation-Id": str(uuid.uuid4())}, client_id=client_id)


def handle(state: EmulatorState, request: Request) -> Reply:
    """Decide the answer to one non-admin request (see the module docstring)."""
    with state.lock:
        cfg = state.config
        draw = state.draw_faults()
        if request.path == TOKEN_PATH:
            reply = _token(state, cfg, request)
        elif request.path.startswith(API_PREFIX):
            reply = _api(state, cfg, request, draw)
        else:
            reply = status_error(404)
    delay_s = (cfg.latency_ms + draw.jitter * cfg.jitter_ms) / 1000.0
    return replace(reply, delay_s=delay_s)


# -- POST /oauth/token ------------------------------------------------------


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


# One early return per refusal, in the order they are checked: flatter than nesting.
def _token(state: EmulatorState, cfg: EmulatorConfig, request: Request) -> Reply:  # noqa: PLR0911
    if request.method != "POST":
        return _oauth_error(405, "invalid_request", "method not allowed", None)
    if cfg.token_endpoint_down:
        return status_error(503)
    credentials = _basic_credentials(request.header("Authorization"))
    if credentials is None:
        return _oauth_error(401, "invalid_client", "authentication failed", None)
    client_id, secret = credentials
    client_id = client_id[:200]  # recorded: keep a hostile id from bloating the record
    expected = cfg.clients.get(client_id)
    if expected is None:
        return _oauth_error(401, "invalid_client", "client not found", client_id)
    if not hmac.compare_digest(secret.encode(), expected.encode()):
        return _oauth_error(401, "invalid_client", "authentication failed", client_id)
    media_type = request.header("Content-Type").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "unsupported content type", client_id)
    form = parse_qs(request.body.decode("utf-8", "replace"))
    if form.get("grant_type") != ["client_credentials"]:
        return _oauth_error(400, "unsupported_grant_type", "grant type not supported", client_id)
    # Only authenticated token requests count against (and are held to) the
    # client's limit: a stranger cannot use up a client's allowance.
    decision = state.admit_token_request(client_id, request.arrival)
    if not decision.admitted:
        return replace(too_many_requests(decision), client_id=client_id)
    token, _info = state.issue_token(client_id, request.arrival)
    body = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": math.floor(cfg.token_lifetime_s),
    }
    headers = {"ININ-Correlation-Id": str(uuid.uuid4()), "Cache-Control": "no-store"}
    return Reply(200, body, headers, client_id=client_id, admitted=True)


# -- GET /api/v2/... --------------------------------------------------------

_Route = Callable[[str, Request], dict[str, object]]


def _expand(request: Request) -> set[str]:
    # The SDK sends expand=a,b; other clients repeat the parameter.
    return {item for value in request.query.get("expand", []) for item in value.split(",")}


_ROUTES: dict[str, _Route] = {
    "users": lambda entity_id, request: data.user(entity_id, _expand(request) & data.USER_EXPANDS),
    "conversations": lambda entity_id, _request: data.conversation(entity_id),
    "routing/queues": lambda entity_id, _request: data.queue(entity_id),
}
_ROUTE_PATH = re.compile(r"/api/v2/(users|conversations|routing/queues)/([^/]+)")


def _bearer_token(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _ratelimit_headers(decision: Decision) -> dict[str, str]:
    return {
        "inin-ratelimit-count": str(decision.count),
        "inin-ratelimit-allowed": str(decision.limit),
        "inin-ratelimit-reset": str(decision.reset_s),
    }


def _api(state: EmulatorState, cfg: EmulatorConfig, request: Request, draw: FaultDraw) -> Reply:
    token = _bearer_token(request.header("Authorization"))
    if token is None:
        return genesys_error(401, *_AUTH_REQUIRED)
    token_id = token_id_of(token)
    status, info = state.check_token(token, request.arrival)
    if info is None or status is not TokenStatus.VALID:
        code = _CREDENTIALS_EXPIRED if status is TokenStatus.EXPIRED else _BAD_CREDENTIALS
        # An expired token still names its OAuth client in the record.
        client_id = None if info is None else info.client_id
        return replace(genesys_error(401, *code), token_id=token_id, client_id=client_id)
    client_id = info.client_id
    if cfg.storm_retry_after_s:
        storm = Decision(
            admitted=False,
            count=0,
            limit=0,
            reset_s=cfg.storm_retry_after_s,
            wait_s=float(cfg.storm_retry_after_s),
            retry_after_s=cfg.storm_retry_after_s,
        )
        return replace(too_many_requests(storm), token_id=token_id, client_id=client_id)
    decision = state.admit_api(token_id, client_id, request.arrival)
    if not decision.admitted:
        return replace(too_many_requests(decision), token_id=token_id, client_id=client_id)

    if draw.error < cfg.error_rate:
        reply = status_error(cfg.error_status)
    elif draw.hang < cfg.hang_rate:
        reply = replace(status_error(504), hang=Hang(cfg.hang_s, close=cfg.hang_action == "close"))
    else:
        reply = _route(cfg, request)
    headers = {**reply.headers, **_ratelimit_headers(decision)}
    return replace(reply, headers=headers, token_id=token_id, client_id=client_id, admitted=True)


def _route(cfg: EmulatorConfig, request: Request) -> Reply:
    match = _ROUTE_PATH.fullmatch(request.path)
    if match is None:
        return status_error(404)
    if request.method != "GET":
        return status_error(405)
    kind, raw_id = match.groups()
    if not is_uuid(raw_id):
        return status_error(400)
    entity_id = raw_id.lower()
    if entity_id in cfg.missing_ids:
        return status_error(404)
    context_id = str(uuid.uuid4())
    return Reply(200, _ROUTES[kind](entity_id, request), {"ININ-Correlation-Id": context_id})
