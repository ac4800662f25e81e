"""POST /oauth/token (client credentials), behind the token endpoint's own bucket.

The SDK's `get_client_credentials_token` throws `expires_in` away; this keeps it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

import urllib3

from limiter import Limiter, LimiterError, RateLimited
from processor.genesys.credentials import Credentials
from processor.genesys.errors import TokenPending, TokenUnavailable
from processor.genesys.http import retry_after
from processor.genesys.token import FetchedToken


class TokenEndpoint:
    """Fetches new access tokens; raises `TokenUnavailable` (retriable) on any failure.

    Errors name the status and Genesys's error code, never the credentials.
    """

    def __init__(
        self,
        *,
        login_url: str,
        credentials: Credentials,
        http: urllib3.PoolManager,
        limiter: Limiter,
        bucket: str,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        permission_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = login_url.rstrip("/") + "/oauth/token"
        self._credentials = credentials
        self._http = http
        self._limiter = limiter
        self._bucket = bucket
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._permission_timeout = permission_timeout
        self._clock = clock
        self.client_id = credentials.client_id

    def __call__(self, finish_by: float | None = None) -> FetchedToken:
        """A new token, fetched by epoch second `finish_by` (if given)."""
        left = self._read_timeout if finish_by is None else finish_by - self._clock()
        try:
            self._limiter.acquire(
                self._bucket, timeout=max(0.0, min(self._permission_timeout, left - 0.5))
            )
        except RateLimited as exc:
            raise TokenPending(
                f"token bucket {self._bucket!r} is full", retry_after=exc.retry_after
            ) from None
        except LimiterError as exc:
            raise TokenUnavailable(f"token bucket {self._bucket!r}: {exc}") from None
        basic = base64.b64encode(
            f"{self._credentials.client_id}:{self._credentials.client_secret}".encode()
        ).decode("ascii")
        try:
            response = self._http.request(
                "POST",
                self._url,
                body=urlencode({"grant_type": "client_credentials"}),
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                timeout=urllib3.Timeout(
                    connect=self._connect_timeout,
                    read=max(0.1, min(self._read_timeout, finish_by - self._clock()))
                    if finish_by is not None
                    else self._read_timeout,
                ),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TokenUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
        body = response.data.decode("utf-8", "replace")
        headers = dict(response.headers)
        if response.status == 429:
            wait = retry_after(headers, body)
            self._limiter.block(self._bucket, wait)
            raise TokenPending("token endpoint answered 429", retry_after=wait)
        if response.status != 200:
            raise TokenUnavailable(
                f"token endpoint answered {response.status} ({_oauth_error(body)})"
            )
        try:
            data = json.loads(body)
            value, expires_in = data["access_token"], float(data["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise TokenUnavailable("token endpoint answered 200 without a token") from None
        if not isinstance(value, str) or not value:
            raise TokenUnavailable("token endpoint answered 200 without a token")
        return FetchedToken(value=value, expires_in=expires_in)


def _oauth_error(body: str) -> str:
    """The error code of an OAuth error body ('invalid_client'), nothing else from it."""
    try:
        data = json.loads(body)
    except ValueError:
        return "no error code"
    code = data.get("error") or data.get("code") if isinstance(data, dict) else None
    return str(code)[:64] if code else "no error code"
