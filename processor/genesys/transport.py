"""The HTTP transport the Genesys SDK runs on: every request rate-limited, no hidden retries.

Installed with `ApiClient.set_http_client`. For each request the SDK makes:
1. the fleet's shared access token (the SDK's own auth header is dropped);
2. permission from the limiter (the client-wide bucket, plus any per-endpoint
   buckets that match), waiting at most `max_permit_wait` and what the
   deadline leaves; taken after the token so that it is used at once;
3. one HTTP request with explicit connect/read timeouts and no retries inside.
Then: 2xx is returned to the SDK; 429 blocks the buckets for Retry-After,
so the whole fleet pauses, and raises `UpstreamRateLimited` at once; 401
invalidates the token (compare-and-delete), refreshes it and tries once
more; 5xx and timeouts are retried with backoff for idempotent methods only,
each retry with a new permit, while the deadline allows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import urllib3
from PureCloudPlatformClientV2.abstract_http_client import AbstractHttpClient

from limiter import Limiter, LimiterError, RateLimited
from processor.genesys.errors import (
    HttpFailure,
    NotFound,
    PermissionTimeout,
    PermissionUnavailable,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from processor.genesys.http import HttpResponse, retry_after
from processor.genesys.token import SharedToken
from processor.settings import EndpointBucket

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MIN_REQUEST_SECONDS = 0.5  # don't take a permit that leaves less than this for the request
MAX_ERROR_BODY = 500

# The absolute time (epoch seconds) by which the current unit of work must be
# done; set by `deadline()`. Each thread (each record) has its own.
_deadline: ContextVar[float | None] = ContextVar("genesys_deadline", default=None)
# Slots (epoch us) reserved ahead on the client-wide bucket by `prepaid()`.
_prepaid: ContextVar[deque[int] | None] = ContextVar("genesys_prepaid", default=None)


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Every Genesys request made inside the block must finish by `at`."""
    reset = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(reset)


@contextlib.contextmanager
def prepaid(slots_us: Sequence[int]) -> Iterator[None]:
    """Requests inside the block that need only the client-wide bucket use these
    slots, in order, instead of asking the limiter (one write bought them all)."""
    reset = _prepaid.set(deque(slots_us))
    try:
        yield
    finally:
        _prepaid.reset(reset)


class Observer(Protocol):
    """What the transport reports, for metrics. All methods are optional no-ops."""

    def granted(self, buckets: Sequence[str], waited: float) -> None: ...
    def denied(self, buckets: Sequence[str], retry_after: float) -> None: ...
    def response(self, method: str, status: int, seconds: float) -> None: ...
    def throttled(self, buckets: Sequence[str], retry_after: float) -> None: ...


class NullObserver:
    def granted(self, buckets: Sequence[str], waited: float) -> None:
        pass

    def denied(self, buckets: Sequence[str], retry_after: float) -> None:
        pass

    def response(self, method: str, status: int, seconds: float) -> None:
        pass

    def throttled(self, buckets: Sequence[str], retry_after: float) -> None:
        pass


class RateLimitedTransport(AbstractHttpClient):  # type: ignore[misc]
    """`AbstractHttpClient` for the SDK; see the module docstring."""

    def __init__(
        self,
        *,
        limiter: Limiter,
        token: SharedToken,
        bucket: str,
        endpoint_buckets: Sequence[EndpointBucket] = (),
        http: urllib3.PoolManager,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
        default_budget: float = 30.0,
        max_permit_wait: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        observer: Observer | None = None,
    ) -> None:
        super().__init__()
        self._limiter = limiter
        self._token = token
        self._bucket = bucket
        self._endpoint_buckets = tuple(endpoint_buckets)
        self._http = http
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._default_budget = default_budget
        self._max_permit_wait = max_permit_wait
        self._clock = clock
        self._sleep = sleep
        self._observer: Observer = observer or NullObserver()
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not crypto

    def buckets_for(self, method: str, path: str) -> tuple[str, ...]:
        """The client-wide bucket, then every per-endpoint bucket this call matches."""
        matched = [e.bucket for e in self._endpoint_buckets if e.matches(method, path)]
        return (self._bucket, *dict.fromkeys(matched))

    def request(self, http_request_options: Any) -> HttpResponse:
        options = http_request_options
        method = str(options.method).upper()
        path = urlsplit(options.url).path
        url = options.url
        if options.query_params:
            url += "?" + urlencode(options.query_params, doseq=True)
        headers = {
            k: str(v) for k, v in (options.headers or {}).items() if k.lower() != "authorization"
        }
        body = _body(method, headers, options)
        buckets = self.buckets_for(method, path)
        finish_by = _deadline.get() or self._clock() + self._default_budget
        failures = 0
        reauthenticated = False
        while True:
            # The token first: a cold container's token fetch takes a round trip
            # or two, and a permit taken before it would be used late.
            token = self._token.get(finish_by - MIN_REQUEST_SECONDS)
            self._permit(buckets, finish_by)
            started = self._clock()
            try:
                response = self._http.request(
                    method,
                    url,
                    body=body,
                    headers={**headers, "Authorization": f"Bearer {token.value}"},
                    timeout=urllib3.Timeout(
                        connect=self._connect_timeout,
                        read=max(0.1, min(self._read_timeout, finish_by - self._clock())),
                    ),
                    retries=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                failures += 1
                self._observer.response(method, 0, self._clock() - started)
                if self._may_retry(method, failures, finish_by):
                    continue
                raise UpstreamUnavailable(f"{method} {path}: {type(exc).__name__}") from None
            status = response.status
            text = response.data.decode("utf-8", "replace")
            reply = dict(response.headers)
            self._observer.response(method, status, self._clock() - started)
            if 200 <= status < 300:
                return HttpResponse(status, response.reason or "", text, reply)
            http = HttpFailure(status, response.reason or "", text[:MAX_ERROR_BODY], reply)
            if status == 429:
                wait = retry_after(reply, text)
                self._block(buckets, wait)
                raise UpstreamRateLimited(
                    f"{method} {path}: 429, retry after {wait:g}s", wait, http
                )
            if status == 401 and not reauthenticated:
                reauthenticated = True
                self._token.invalidate(token)
                continue
            if status == 401:
                raise UpstreamUnauthorized(f"{method} {path}: 401 with a fresh token", http)
            if status >= 500 or status == 408:
                failures += 1
                if self._may_retry(method, failures, finish_by):
                    continue
                raise UpstreamUnavailable(f"{method} {path}: {status}", http)
            if status == 404:
                raise NotFound(f"{method} {path}: 404", http)
            raise UpstreamRejected(f"{method} {path}: {status}", http)

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    @property
    def bucket(self) -> str:
        return self._bucket

    def permit_budget(self, finish_by: float | None = None) -> float:
        """How long a permit may be waited for now: `max_permit_wait`, and no longer
        than leaves MIN_REQUEST_SECONDS for the request before the deadline."""
        if finish_by is None:
            finish_by = _deadline.get() or self._clock() + self._default_budget
        budget = finish_by - self._clock() - MIN_REQUEST_SECONDS
        if self._max_permit_wait is not None:
            budget = min(budget, self._max_permit_wait)
        return max(0.0, budget)

    def _permit(self, buckets: tuple[str, ...], finish_by: float) -> None:
        slots = _prepaid.get()
        if slots and buckets == (self._bucket,):
            slot_us = slots.popleft()
            waited = max(0.0, slot_us / 1e6 - self._clock())
            self._limiter.sleep_until(slot_us / 1e6)
            self._observer.granted(buckets, waited)
            return
        budget = self.permit_budget(finish_by)
        try:
            grant = self._limiter.acquire(buckets, timeout=budget)
        except RateLimited as exc:
            self._observer.denied(buckets, exc.retry_after)
            raise PermissionTimeout(
                f"no permission on {exc.bucket!r} within the time left ({exc.reason})",
                retry_after=exc.retry_after,
            ) from None
        except LimiterError as exc:
            raise PermissionUnavailable(
                f"rate limiter unavailable, failing closed: {exc}"
            ) from None
        self._observer.granted(buckets, grant.waited)

    def _block(self, buckets: tuple[str, ...], seconds: float) -> None:
        self._observer.throttled(buckets, seconds)
        for name in buckets:
            try:
                self._limiter.block(name, seconds)
            except LimiterError as exc:  # the 429 still stands; others will hit it too
                log.warning("could not block bucket %r after a 429: %s", name, exc)

    def _may_retry(self, method: str, failures: int, finish_by: float) -> bool:
        if method not in IDEMPOTENT or failures >= self._max_attempts:
            return False
        backoff = self._rng.uniform(0, min(2.0, 0.1 * 2**failures))
        if self._clock() + backoff + MIN_REQUEST_SECONDS >= finish_by:
            return False
        self._sleep(backoff)
        return True


def _body(method: str, headers: dict[str, str], options: Any) -> str | None:
    if method not in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        return None
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return urlencode(options.post_params or [])
    if options.body is None:
        return None
    return json.dumps(options.body)
