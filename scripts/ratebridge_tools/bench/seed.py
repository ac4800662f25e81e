"""The tutorial's Genesys access, reproduced: the baseline ratebridge is measured against.

The project grew out of a tutorial, "Processing High-Volume Genesys Cloud
Interaction Events on AWS Lambda" (DESIGN.md, "Where this comes from"). This
module is its way of calling Genesys, for one Lambda container
(`SeedGenesys`, one per container, used by one invocation at a time):

- OAuth: on first use the container logs in with the real SDK,
  `ApiClient(host=...).get_client_credentials_token(id, secret)`, which keeps
  only the access token and throws `expires_in` away; the container assumes
  the token lives 1 hour and logs in again after that. N containers hold N
  tokens and made N token requests. A failed login (a 429 from the token
  endpoint, which has its own limit) fails the call; the next call tries again.
- Each API call retries a 429 up to 3 times, sleeping
  `Retry-After * 2**attempt` seconds (1x, 2x, then 4x) inside the container,
  then gives up: the SDK's `ApiException(429)` is raised and the call fails.
  Any other error fails the call at once.
- No shared limiter: the only global control is how many containers run.

The charitable version of the seed: the transport. The SDK's default HTTP
client retries inside urllib3 (10 times, every method, honouring
Retry-After: see reference/genesys.md), so one 429 would silently become up to
11 requests and minutes of blocking per call, and it sets no timeout. The
tutorial's code would run on exactly that. Here the SDK runs instead on
`PlainHttpClient`: one HTTP request per SDK request, urllib3 retries off,
3 s connect and 10 s read timeouts, and an `ApiException` for every non-2xx
answer, as the SDK expects from an `AbstractHttpClient`. That only makes the
seed cheaper and faster than the tutorial's own code would be.

Used by `ratebridge bench genesys` (strategy "seed"); kept on its own so other
demos can run the same baseline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import PureCloudPlatformClientV2 as sdk
import urllib3
from PureCloudPlatformClientV2.abstract_http_client import AbstractHttpClient
from PureCloudPlatformClientV2.rest import ApiException

from processor.genesys.credentials import Credentials
from processor.genesys.http import HttpResponse, pool

ASSUMED_TOKEN_LIFETIME_S = 3600.0  # the tutorial's guess; Genesys says 86399 in expires_in
MAX_RETRIES = 3  # retries of a 429 after the first attempt
DEFAULT_RETRY_AFTER_S = 1.0  # when a 429 carries no usable Retry-After header


class PlainHttpClient(AbstractHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's transport, minimal: one request, no retries, explicit timeouts.

    Follows the contract of the SDK's `DefaultHttpClient`: takes
    `HttpRequestOptions` (url, method, headers, query_params, post_params,
    body), returns an object with `status`, `reason`, `data` (text) and
    `getheaders()`, and raises `ApiException` for any status outside 2xx
    (`ApiException(status=0)` when no answer came: refused, reset, timed out).
    The request's Authorization header is sent as the SDK built it and never
    appears in an exception.
    """

    def __init__(
        self, *, max_connections: int = 1, connect_timeout: float = 3.0, read_timeout: float = 10.0
    ) -> None:
        super().__init__()
        self._http = pool(max_connections)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)

    def request(self, http_request_options: Any) -> HttpResponse:
        options = http_request_options
        method = str(options.method).upper()
        url = str(options.url)
        if options.query_params:
            url += "?" + urlencode(options.query_params, doseq=True)
        headers = {str(k): str(v) for k, v in (options.headers or {}).items()}
        try:
            response = self._http.request(
                method,
                url,
                body=_body(headers, options.post_params, options.body),
                headers=headers,
                timeout=self._timeout,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiException(status=0, reason=type(exc).__name__) from None
        reply = HttpResponse(
            response.status,
            response.reason or "",
            response.data.decode("utf-8", "replace"),
            dict(response.headers),
        )
        if not 200 <= reply.status < 300:
            raise ApiException(http_resp=reply)
        return reply


def _body(headers: Mapping[str, str], post_params: Any, body: Any) -> str | None:
    """The request body the SDK meant: a form for /oauth/token, else JSON, else none."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return urlencode(post_params or {})
    return None if body is None else json.dumps(body)


def retry_after(exc: ApiException) -> float:
    """The Retry-After header of a 429 in seconds, as the tutorial reads it (default 1 s)."""
    for name, value in dict(exc.headers or {}).items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                break
    return DEFAULT_RETRY_AFTER_S


class SeedGenesys:
    """One Lambda container's Genesys access, the tutorial's way (see the module docstring).

    `get_user` raises the SDK's `ApiException` when a call fails: a 429 still
    refused after `MAX_RETRIES` retries, a 429 or any error from the token
    endpoint (no retry there), or any other non-2xx answer. `sleep` is what
    the container sleeps with between retries (injected so a benchmark can
    interrupt it; whatever it raises propagates). Not thread-safe: a Lambda
    container runs one invocation at a time.
    """

    def __init__(
        self,
        api_url: str,
        credentials: Credentials,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._sleep = sleep
        self._api_client = sdk.ApiClient(host=api_url.rstrip("/"))
        self._api_client.set_http_client(
            PlainHttpClient(connect_timeout=connect_timeout, read_timeout=read_timeout)
        )
        self._users = sdk.UsersApi(self._api_client)
        self._conversations = sdk.ConversationsApi(self._api_client)
        self._token_until: float | None = None

    @property
    def logged_in(self) -> bool:
        """True while the container holds a token it believes valid (its own 1 h guess)."""
        return self._token_until is not None and self._clock() < self._token_until

    def get_user(self, user_id: str) -> Any:
        """GET /api/v2/users/{id} -> the SDK's `User`, logging in first if needed."""
        return self._call(self._users.get_user, user_id)

    def get_conversation(self, conversation_id: str) -> Any:
        """GET /api/v2/conversations/{id} -> the SDK's `Conversation`, the same way."""
        return self._call(self._conversations.get_conversation, conversation_id)

    def _call(self, method: Callable[[str], Any], entity_id: str) -> Any:
        self._ensure_token()
        attempt = 0
        while True:
            try:
                return method(entity_id)
            except ApiException as exc:
                if exc.status != 429 or attempt >= MAX_RETRIES:
                    raise
                self._sleep(retry_after(exc) * 2**attempt)
                attempt += 1

    def _ensure_token(self) -> None:
        if self.logged_in:
            return
        # Keeps access_token on the ApiClient; expires_in is dropped by the SDK.
        self._api_client.get_client_credentials_token(
            self._credentials.client_id, self._credentials.client_secret
        )
        self._token_until = self._clock() + ASSUMED_TOKEN_LIFETIME_S
