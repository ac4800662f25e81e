"""The distributed rate limiter: GCRA over one DynamoDB item per bucket.

Read `limiter/DESIGN.md` for the why. In short, every grant is one
conditional UpdateItem on the bucket item; the client guesses from the last
`tat` it saw whether the bucket is busy (reserve after `tat`: a guarded atomic
add) or idle (restart at now). A wrong guess, a full bucket, a new limit or a
block fails the condition and returns the item, so the next try is informed.
A caller willing to wait reserves a future slot and sleeps until it: waiting
costs no requests and sleepers never wake together to fight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from limiter import gcra
from limiter.errors import InvalidArgument, LimitNotConfigured, RateLimited
from limiter.models import (
    MAX_BLOCK_SECONDS,
    MAX_REQUESTS,
    MAX_SCHEDULE,
    BucketState,
    BucketStatus,
    ConfiguredLimit,
    Decision,
    Grant,
    Limit,
    Schedule,
    real_number,
    validate_bucket,
    whole_number,
)
from limiter.settings import LimiterSettings
from limiter.store import BucketStore, ConditionFailed

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 86_400.0


@dataclass(slots=True)
class _View:
    """What this process knows of a bucket: its config and a lower bound of `tat`."""

    version: int
    limit: Limit
    rate: gcra.Rate
    tat_us: int
    blocked_until_us: int


@dataclass(slots=True)
class _BucketLocks:
    cold: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Lock = field(default_factory=threading.Lock)


class Limiter:
    """Permission to call an upstream, shared by every process using the same tables.

    Thread-safe: share one instance per process. `clock` (epoch seconds) and
    `sleep` are injected so tests can run on a fake clock.
    """

    def __init__(
        self,
        store: BucketStore,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        max_attempts: int = 8,
    ) -> None:
        self.store = store
        self._clock = clock
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._views: dict[str, _View] = {}
        self._bucket_locks: dict[str, _BucketLocks] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls,
        settings: LimiterSettings | None = None,
        *,
        client: object | None = None,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
    ) -> Limiter:
        """A limiter on the tables named by the environment (see `LimiterSettings`)."""
        from limiter.dynamodb import DynamoDBStore, dynamodb_client

        settings = settings or LimiterSettings.from_env()
        store = DynamoDBStore(
            buckets_table=settings.buckets_table,
            limits_table=settings.limits_table,
            client=client  # type: ignore[arg-type]
            or dynamodb_client(region=settings.region, endpoint_url=settings.endpoint_url),
        )
        return cls(store, clock=clock, sleep=sleep)

    # -- configuration ---------------------------------------------------------

    def create_tables(self) -> None:
        """Create the buckets and limits tables if missing (local use and tests)."""
        self.store.create_tables()

    def set_limit(self, bucket: str, requests: int, per_seconds: float, burst: int = 1) -> Limit:
        """Store a limit and make it the bucket's, effective on every caller's next acquire.

        Raises `InvalidArgument` (nothing written) or `StoreUnavailable`.
        """
        validate_bucket(bucket)
        limit = Limit(requests=requests, per_seconds=per_seconds, burst=burst)
        for _ in range(self._max_attempts):
            state, configured = self.store.read_config(bucket)
            # The new version is above both items' versions, so the bucket item
            # accepts it even if it outlived a deleted limits item.
            version = 1 + max(
                state.version if state else 0, configured.version if configured else 0
            )
            try:
                self.store.put_limit(
                    bucket,
                    limit,
                    self._clock(),
                    version=version,
                    expected_version=configured.version if configured else None,
                )
            except ConditionFailed:
                continue  # a concurrent set_limit: read again and go above it
            self._observe(self.store.install(bucket, limit, version))
            return limit
        raise RateLimited(bucket, 0.0, reason="the limit kept changing under concurrent updates")

    def ensure_limit(self, bucket: str, requests: int, per_seconds: float, burst: int = 1) -> Limit:
        """The bucket's limit; if none is configured, this one is stored first.

        For defaults set at deploy time: the write is conditional on no limits
        item existing, so it never replaces a limit an operator set, and
        concurrent callers store it once. It also loads the bucket for this
        process, so it costs the read the first `acquire` would make.
        Raises `InvalidArgument` (nothing written) or `StoreUnavailable`.
        """
        validate_bucket(bucket)
        default = Limit(requests=requests, per_seconds=per_seconds, burst=burst)
        try:
            return self._view(bucket).limit
        except LimitNotConfigured:
            pass
        state, configured = self.store.read_config(bucket)
        if configured is None:
            version = 1 + (state.version if state else 0)
            try:
                self.store.put_limit(
                    bucket, default, self._clock(), version=version, expected_version=None
                )
            except ConditionFailed:
                pass  # another caller stored a limit meanwhile: that one stands
            else:
                log.info("bucket %r had no limit: installed the default %s", bucket, default)
                return self._observe(self.store.install(bucket, default, version)).limit
        self._forget(bucket)
        return self._view(bucket).limit

    def get_limit(self, bucket: str) -> Limit:
        """The configured limit. Raises `LimitNotConfigured` if there is none."""
        configured = self.store.get_limit(validate_bucket(bucket))
        if configured is None:
            raise LimitNotConfigured(bucket)
        return configured.limit

    def list_limits(self) -> list[ConfiguredLimit]:
        """Every configured limit, sorted by bucket."""
        return self.store.list_limits()

    def delete_limit(self, bucket: str) -> bool:
        """Remove a bucket's limit and state; True if it existed. Its callers then
        get `LimitNotConfigured`."""
        existed = self.store.delete_limit(validate_bucket(bucket))
        with self._lock:
            self._views.pop(bucket, None)
        return existed

    def status(self, bucket: str) -> BucketStatus:
        """The bucket as stored now (one read), for dashboards and the CLI."""
        validate_bucket(bucket)
        state, configured = self.store.read_config(bucket)
        if configured is None and state is None:
            raise LimitNotConfigured(bucket)
        now = self._clock()
        if state is None:
            assert configured is not None
            limit, version, tat_us, blocked_us, granted = (
                configured.limit,
                configured.version,
                0,
                0,
                0,
            )
        else:
            limit, version = state.limit, state.version
            tat_us, blocked_us, granted = state.tat_us, state.blocked_until_us, state.granted
        return BucketStatus(
            bucket=bucket,
            limit=limit,
            version=version,
            now=now,
            tat=gcra.to_seconds(tat_us),
            blocked_until=gcra.to_seconds(blocked_us),
            granted=granted,
            waiting=gcra.outstanding(tat_us, gcra.to_us(now), limit.rate),
        )

    # -- permission ------------------------------------------------------------

    def acquire(
        self, buckets: str | Sequence[str], tokens: int = 1, timeout: float = DEFAULT_TIMEOUT
    ) -> Grant:
        """Wait until `tokens` requests are permitted on every bucket, and return the grant.

        `buckets` is one name or several (say, client-wide plus per-endpoint):
        all must grant, for the same instant. Blocks at most `timeout` seconds;
        if the wait would be longer, raises `RateLimited(retry_after=...)` at
        once without reserving anything. `tokens` must not exceed any bucket's
        burst (`InvalidArgument`). Raises `LimitNotConfigured` for an unknown
        bucket and `StoreUnavailable` when DynamoDB fails: never a grant
        without a successful write.
        """
        names = _bucket_names(buckets)
        whole_number("tokens", tokens, low=1, high=MAX_REQUESTS)
        timeout = real_number("timeout", timeout, low=0.0, high=MAX_TIMEOUT)
        requested = self._clock()
        deadline_us = gcra.to_us(requested + timeout)
        for name in names:
            burst = self._view(name).limit.burst
            if tokens > burst:
                raise InvalidArgument(
                    f"tokens ({tokens}) exceeds the burst of bucket {name!r} ({burst}); "
                    "use reserve() for a paced schedule"
                )
        floor_us = 0
        for _ in range(self._max_attempts):
            now_us = gcra.to_us(self._clock())
            at_us = self._reserve_together(names, tokens, now_us, floor_us, deadline_us)
            self._sleep_until(at_us)
            # A block learned while we slept may cover our slot: then go again
            # after it. (The store refused any block older than the reservation.)
            blocked_us = max(
                (self._views[n].blocked_until_us for n in names if n in self._views), default=0
            )
            if blocked_us <= at_us:
                return Grant(names, tokens, at_us, requested)
            floor_us = blocked_us
        raise RateLimited(names[0], 0.0, reason="blocked repeatedly while waiting")

    def try_acquire(self, buckets: str | Sequence[str], tokens: int = 1) -> Decision:
        """A grant only if it is available now; never waits, never raises `RateLimited`."""
        try:
            return Decision(granted=True, grant=self.acquire(buckets, tokens, timeout=0.0))
        except RateLimited as limited:
            return Decision(granted=False, retry_after=limited.retry_after)

    def reserve(self, bucket: str, count: int, timeout: float = DEFAULT_TIMEOUT) -> Schedule:
        """Reserve `count` consecutive grants on `bucket` in one write, without waiting.

        Returns their slots; the caller sends request k no earlier than
        `slots[k]`. `count` may exceed the burst: the slots are paced at the
        bucket's rate. Raises `RateLimited` if the last slot would be later than
        `timeout` from now (nothing reserved).
        """
        name = validate_bucket(bucket)
        whole_number("count", count, low=1, high=MAX_SCHEDULE)
        timeout = real_number("timeout", timeout, low=0.0, high=MAX_TIMEOUT)
        requested = self._clock()
        slots = self._reserve_one(
            name, count, gcra.to_us(requested), 0, gcra.to_us(requested + timeout)
        )
        return Schedule(name, tuple(slots), requested)

    def block(self, bucket: str, seconds: float) -> float:
        """Grant nothing on `bucket` for `seconds` from now, for every caller.

        For an upstream 429 with Retry-After: the whole fleet pauses and resumes
        on time. Never shortens a longer block. Returns the end of the block
        (epoch seconds).
        """
        name = validate_bucket(bucket)
        seconds = real_number("seconds", seconds, low=0.0, high=MAX_BLOCK_SECONDS)
        self._view(name)
        until_us = gcra.to_us(self._clock() + seconds)
        state = self.store.block(name, until_us)
        if state is None:  # the bucket item went away: reinstall it from the limit
            self._forget(name)
            self._view(name)
            state = self.store.block(name, until_us)
            if state is None:
                raise LimitNotConfigured(name)
        view = self._observe(state)
        with self._lock:
            view.blocked_until_us = max(view.blocked_until_us, until_us)
            return gcra.to_seconds(view.blocked_until_us)

    def sleep_until(self, at: float) -> None:
        """Sleep on this limiter's clock until epoch second `at` (for paced schedules)."""
        self._sleep_until(gcra.to_us(at))

    # -- internals ---------------------------------------------------------------

    def _reserve_together(
        self, names: tuple[str, ...], tokens: int, now_us: int, floor_us: int, deadline_us: int
    ) -> int:
        """One slot valid on every bucket, for a request arriving at `now_us`.

        The likely bottleneck goes first; the others reserve at its slot. All
        plan with the same arrival time, so idle buckets agree on the slot. A
        bucket that can only grant later makes the earlier ones reserve again
        at that later slot (their first slot is left unused: a wasted slot is
        safe, a slot used late is not)."""
        if len(names) == 1:
            return self._reserve_one(names[0], tokens, now_us, floor_us, deadline_us)[-1]

        def estimate(name: str) -> int:
            view = self._view(name)
            eff = max(now_us, view.blocked_until_us, floor_us)
            return gcra.last_slot(view.tat_us, eff, tokens, view.rate)

        order = sorted(names, key=estimate, reverse=True)
        got: dict[str, int] = {}
        for _ in range(self._max_attempts):
            for name in order:
                if name not in got:
                    got[name] = self._reserve_one(name, tokens, now_us, floor_us, deadline_us)[-1]
                    floor_us = max(floor_us, got[name])
            if all(slot == floor_us for slot in got.values()):
                return floor_us
            got = {name: slot for name, slot in got.items() if slot == floor_us}
        raise RateLimited(order[0], 0.0, reason="buckets kept granting different slots")

    def _reserve_one(
        self, name: str, count: int, now_us: int, floor_us: int, deadline_us: int
    ) -> list[int]:
        """Reserve `count` slots on one bucket for a request arriving at `now_us`,
        none before `floor_us`, the last by `deadline_us`. Returns the slots
        (epoch microseconds).

        The request arrives once: every retry plans with the same `now_us`.
        After losing the idle race the item shows tat >= now, so the retry
        takes the busy branch, which no concurrent writer can make fail. (With
        a fresh now per retry, a backend slower than the interval T could keep
        a caller losing the idle race.) A slot may then lie a round trip in the
        past; the jitter allowance in `gcra.Rate` covers that.
        """
        rate = gcra.Rate(1, 0)
        deadline = max(deadline_us, now_us)  # timeout 0 means "if free right now"
        for _ in range(self._max_attempts):
            view = self._view(name)
            rate = view.rate
            eff = max(now_us, view.blocked_until_us, floor_us)
            last = gcra.last_slot(view.tat_us, eff, count, rate)
            if last > deadline:
                # Our `tat` is a lower bound of the stored one, so the real wait is
                # at least this long: refuse without a request.
                reason = "blocked" if view.blocked_until_us > now_us else "bucket is full"
                raise RateLimited(name, gcra.to_seconds(last - now_us), reason=reason)
            try:
                if view.tat_us >= eff:
                    new_tat = self.store.reserve(
                        name,
                        version=view.version,
                        tokens=count,
                        add_us=count * rate.interval_us,
                        eff_us=eff,
                        ceiling_us=gcra.busy_ceiling(deadline, count, rate),
                    )
                else:
                    # Only one thread per process tries the idle branch at a time:
                    # the others wait one round trip and then know the bucket is
                    # busy, instead of all failing the same condition.
                    with self._locks(name).idle:
                        if self._views.get(name) is not view or view.tat_us >= eff:
                            continue  # someone here just moved it: plan again
                        new_tat = self.store.reserve(
                            name,
                            version=view.version,
                            tokens=count,
                            add_us=count * rate.interval_us,
                            eff_us=eff,
                            ceiling_us=None,
                        )
                        self._advance(name, view.version, new_tat)
            except ConditionFailed as failed:
                self._refresh(name, failed.state)
                continue
            self._advance(name, view.version, new_tat)
            return gcra.slots(new_tat - count * rate.interval_us, eff, count, rate)
        raise RateLimited(
            name,
            gcra.to_seconds(rate.interval_us),
            reason=f"contention: no grant after {self._max_attempts} attempts",
        )

    def _sleep_until(self, at_us: int) -> None:
        # Compared in whole microseconds, so a float clock cannot leave a
        # remainder too small to sleep away.
        while (remaining_us := at_us - gcra.to_us(self._clock())) > 0:
            self._sleep(gcra.to_seconds(remaining_us))

    def _view(self, name: str) -> _View:
        view = self._views.get(name)
        if view is not None:
            return view
        with self._locks(name).cold:  # one first read per bucket per process, not per thread
            view = self._views.get(name)
            if view is not None:
                return view
            return self._load(name)

    def _locks(self, name: str) -> _BucketLocks:
        with self._lock:
            return self._bucket_locks.setdefault(name, _BucketLocks())

    def _load(self, name: str) -> _View:
        state, configured = self.store.read_config(name)
        if configured is None:
            raise LimitNotConfigured(name)
        if state is None or state.version < configured.version:
            state = self.store.install(name, configured.limit, configured.version)
        elif state.version > configured.version or state.limit != configured.limit:
            log.warning(
                "bucket %r enforces %s (version %d) but its limits item says %s (version %d); "
                "change limits with `ratebridge limits set`, which updates both",
                name,
                state.limit,
                state.version,
                configured.limit,
                configured.version,
            )
        return self._observe(state)

    def _refresh(self, name: str, state: BucketState | None) -> None:
        """Learn from a failed condition: the item it returned, or one read."""
        if state is None:
            state = self.store.read_bucket(name)
        if state is None:
            self._forget(name)  # next attempt reloads (and reinstalls) it
        else:
            self._observe(state)

    def _observe(self, state: BucketState) -> _View:
        with self._lock:
            view = self._views.get(state.bucket)
            if view is None or state.version > view.version:
                view = _View(
                    state.version,
                    state.limit,
                    state.rate,
                    state.tat_us,
                    state.blocked_until_us,
                )
                self._views[state.bucket] = view
            elif state.version == view.version:
                view.tat_us = max(view.tat_us, state.tat_us)
                view.blocked_until_us = max(view.blocked_until_us, state.blocked_until_us)
            return view

    def _advance(self, name: str, version: int, tat_us: int) -> None:
        with self._lock:
            view = self._views.get(name)
            if view is not None and view.version == version:
                view.tat_us = max(view.tat_us, tat_us)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._views.pop(name, None)


def _bucket_names(buckets: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(buckets, str):
        return (validate_bucket(buckets),)
    if not isinstance(buckets, Sequence) or not buckets:
        raise InvalidArgument("buckets must be a bucket name or a non-empty list of names")
    names = tuple(dict.fromkeys(validate_bucket(b) for b in buckets))
    return names
