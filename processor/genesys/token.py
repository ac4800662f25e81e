"""One Genesys access token for the whole fleet, refreshed by one instance at a time.

Each container keeps the token in memory and in the tokens table. When it
nears expiry (`refresh_at`, 80% into its lifetime as Genesys's `expires_in`
says), exactly one instance takes a lease (a conditional write), asks
/oauth/token for a new one, and publishes it; the others keep using the old
token meanwhile, or, when there is no usable token at all (a cold fleet),
wait for the publisher by reading the item with backoff.

Waiting is bounded by the caller's deadline (the invocation's time budget):
a caller that would still be waiting at its deadline gets `TokenPending`
with `retry_after` = what is left of the other instance's lease, instead of
sleeping past the function timeout. For the same reason a lease never
outlives its holder's own deadline: a holder that is killed mid-fetch holds
up the fleet at most until its invocation would have ended anyway.

A 401 invalidates the token only if the stored one is still the token that
failed (compare-and-delete on `token_id`), so a thousand 401s for one revoked
token cause one refresh.

Timeline of a cold start across processes A and B:

    A: read (no token) -> lease OK -> POST /oauth/token ........ -> publish
    B: read (no token) -> lease FAILS -> read -> read ---------------> read: token
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from processor.genesys.errors import TokenPending, TokenUnavailable
from processor.genesys.token_store import StoredToken, TokenStore

log = logging.getLogger(__name__)

REFRESH_FRACTION = 0.8  # refresh once 80% of the lifetime has passed
EXPIRY_MARGIN = 5.0  # treat a token as expired this many seconds early
LEASE_MARGIN = 1.0  # a lease ends this long after its holder's deadline


@dataclass(frozen=True)
class FetchedToken:
    """What /oauth/token returned. The value never appears in a repr."""

    value: str = field(repr=False)
    expires_in: float


def token_id(value: str) -> str:
    """A short, stable, non-secret name for a token (for logs and comparisons)."""
    return "tok-" + hashlib.sha256(value.encode()).hexdigest()[:8]


class SharedToken:
    """The fleet's access token for one OAuth client.

    `fetch(finish_by)` performs the /oauth/token request (rate-limited by
    its own bucket), done by epoch second `finish_by`. `get()` raises
    `TokenUnavailable` when no token can be had, `TokenPending` when one is
    being fetched elsewhere but not in time. Thread-safe; one instance per
    process.
    """

    def __init__(
        self,
        store: TokenStore,
        fetch: Callable[[float], FetchedToken],
        *,
        key: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease_seconds: float = 15.0,
        wait_seconds: float = 20.0,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._key = key
        self._clock = clock
        self._sleep = sleep
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._owner = f"{uuid.uuid4().hex[:12]}"
        self._memory: StoredToken | None = None
        self._lock = threading.Lock()
        self._rng = random.Random()  # noqa: S311 - jitter for polling, not crypto
        self.refreshes = 0  # token requests this process made (for metrics)

    def get(self, finish_by: float | None = None) -> StoredToken:
        """A token that is not due for refresh, or one still valid while another refreshes.

        Done by epoch second `finish_by` (default: `wait_seconds` from now):
        raises `TokenPending` (retry after the other instance's lease) when
        another instance is fetching the token and has not published it by
        then, `TokenUnavailable` when the fetch failed.
        """
        token = self._memory
        if token is not None and self._clock() < token.refresh_at:
            return token
        with self._lock:  # one thread per process goes to the table
            token = self._memory
            if token is not None and self._clock() < token.refresh_at:
                return token
            token = self._obtain(finish_by)
            self._memory = token
            return token

    def invalidate(self, failed: StoredToken) -> None:
        """`failed` was answered 401: forget it everywhere, unless already replaced."""
        with self._lock:
            current = self._memory
            if current is not None and current.token_id != failed.token_id:
                return  # this process already has a newer token
            self._memory = None
            if self._store.invalidate(self._key, failed.token_id):
                log.info("token %s invalidated after a 401", failed.token_id)

    def _obtain(self, finish_by: float | None) -> StoredToken:
        deadline = self._clock() + self._wait_seconds
        if finish_by is not None:
            deadline = min(deadline, finish_by)
        delay = 0.05
        while True:
            now = self._clock()
            item = self._store.read(self._key)
            stored = item.token
            if stored is not None and now < stored.refresh_at:
                return stored
            usable = (
                stored if stored is not None and now < stored.expires_at - EXPIRY_MARGIN else None
            )
            lease_until = min(now + self._lease_seconds, deadline + LEASE_MARGIN)
            if now < deadline and self._store.try_lease(
                self._key, self._owner, now, lease_until, item.version
            ):
                return self._refresh(usable, item.version, deadline)
            if usable is not None:
                return usable  # another instance is refreshing: keep using this one
            if now >= deadline:
                if item.lease_until > now:
                    raise TokenPending(
                        "another instance is fetching the access token and has not "
                        "published it within the time left",
                        retry_after=item.lease_until - now,
                    )
                raise TokenUnavailable("no access token could be had within the time left")
            self._sleep(min(self._rng.uniform(delay / 2, delay), max(0.0, deadline - now)))
            delay = min(1.0, delay * 2)

    def _refresh(
        self, usable: StoredToken | None, seen_version: int, finish_by: float
    ) -> StoredToken:
        try:
            fetched = self._fetch(finish_by)
        except TokenUnavailable:
            self._store.release(self._key, self._owner)
            if usable is not None:
                log.warning("token refresh failed; using the current token until it expires")
                return usable
            raise
        self.refreshes += 1
        now = self._clock()
        lifetime = max(fetched.expires_in, 1.0)
        token = StoredToken(
            value=fetched.value,
            token_id=token_id(fetched.value),
            expires_at=now + lifetime,
            refresh_at=now + REFRESH_FRACTION * lifetime,
            version=seen_version + 1,
        )
        if not self._store.publish(self._key, self._owner, token, now):
            # Our lease ran out while fetching and someone else took over. The
            # token we fetched is valid all the same: use it here.
            log.warning("token lease expired during the refresh; using our token locally")
        log.info("fetched token %s, valid for %.0fs", token.token_id, lifetime)
        return token
