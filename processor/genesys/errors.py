"""Errors of the Genesys client: one root, retriable and permanent apart.

Retriable (the event should come back later, nothing is wrong with it):
`PermissionTimeout` (our own limiter would make it wait longer than the
budget), `PermissionUnavailable` (the limiter's store failed),
`UpstreamRateLimited` (Genesys answered 429 anyway),
`UpstreamUnavailable` (5xx, timeouts, connection errors),
`TokenUnavailable` (no access token could be had), and its kind
`TokenPending` (a token is expected after `retry_after`: another instance
is fetching it, or the token endpoint's own limit says wait).
Permanent (retrying the same call cannot help): `NotFound` (404),
`UpstreamRejected` (other 4xx), `CredentialsMissing` (configuration).

HTTP errors carry `status`, `reason`, `body` and `headers` like the SDK's
`ApiException`; they are raised from inside the SDK's call and pass through
it unchanged. No message or attribute ever holds a token or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class GenesysError(Exception):
    """Root of every error the Genesys client raises on purpose."""

    retriable = False
    retry_after: float | None = None


class RetriableGenesysError(GenesysError):
    """Try again later; `retry_after` (seconds) when it is known."""

    retriable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentGenesysError(GenesysError):
    """The same call will fail the same way."""


class PermissionTimeout(RetriableGenesysError):
    """The limiter cannot grant the call within its time budget."""


class PermissionUnavailable(RetriableGenesysError):
    """The limiter's store failed; no call is made without permission (fail closed)."""


class TokenUnavailable(RetriableGenesysError):
    """No access token: the token endpoint failed, refused or was rate limited."""


class TokenPending(TokenUnavailable):
    """No token within the time left, but one is expected after `retry_after`:
    another instance holds the refresh lease, or the token endpoint is rate
    limited. A capacity wait, like `PermissionTimeout`, not a failure."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after)


class CredentialsMissing(PermanentGenesysError):
    """No Genesys credentials are configured, or the secret is malformed."""


@dataclass(frozen=True)
class HttpFailure:
    """The parts of an error response worth keeping (the body truncated)."""

    status: int
    reason: str = ""
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class UpstreamError(GenesysError):
    """Genesys answered with an error status (or none); `ApiException`-like attributes."""

    def __init__(self, message: str, http: HttpFailure | None = None) -> None:
        super().__init__(message)
        http = http or HttpFailure(0)
        self.status = http.status
        self.reason = http.reason
        self.body = http.body
        self.headers = dict(http.headers)


class UpstreamRateLimited(UpstreamError, RetriableGenesysError):
    """Genesys answered 429; the bucket is blocked for `retry_after` seconds."""

    retriable = True

    def __init__(self, message: str, retry_after: float, http: HttpFailure | None = None) -> None:
        UpstreamError.__init__(self, message, http)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError, RetriableGenesysError):
    """5xx, a timeout or a broken connection, after the retries allowed."""

    retriable = True


class UpstreamUnauthorized(UpstreamError, RetriableGenesysError):
    """401 even with a freshly fetched token (client revoked or lacking permission)."""

    retriable = True


class NotFound(UpstreamError, PermanentGenesysError):
    """404: the entity does not exist (for example, a deleted user)."""


class UpstreamRejected(UpstreamError, PermanentGenesysError):
    """Another 4xx: the request itself is wrong."""
