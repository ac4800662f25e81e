"""Everything the emulator remembers, behind one lock.

Tokens (by their SHA-256, never the token itself), the rate windows (API
requests per access token and per OAuth client, token requests per client),
the request record, the live config and the fault-injection random generator.
Time comes from an injected clock (`Callable[[], float]`, default `time.time`)
so tests can drive it.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import Enum

from ratebridge_tools.emulator.config import ConfigError, EmulatorConfig
from ratebridge_tools.emulator.windows import Decision, RateWindows, max_in_window

Clock = Callable[[], float]


def token_id_of(token: str) -> str:
    """The name a token goes by in records and logs: never the token itself."""
    return "tok-" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:8]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One non-admin request as the emulator saw it.

    `time` is the arrival (epoch seconds, when the request line was read);
    `status` is None when the connection was closed without an answer;
    `token_id` names the bearer token presented (None on token requests);
    `client_id` is the OAuth client: the one asking for a token, or the one
    whose token made an API request (None when the token is unknown or none
    was sent), so per-client figures can be recounted from the record;
    `admitted` is true when the request counted against a rate window (API
    requests against their token's and their client's, token requests
    against their client's).
    `duration` runs from arrival until the answer was ready to write (injected
    delays and hangs included). Records are appended, and indexed, in that
    order, before the answer is written: a client that has its answer finds
    its record, and one sequential client's records are in arrival order
    (across concurrent clients, sort by `time`).
    """

    index: int
    time: float
    method: str
    path: str
    status: int | None
    duration: float
    token_id: str | None
    client_id: str | None
    admitted: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RequestRecord:
        """Raises KeyError or TypeError when `data` is not a record."""
        status = data["status"]
        token_id = data["token_id"]
        client_id = data["client_id"]
        return cls(
            index=_as_int(data["index"]),
            time=_as_float(data["time"]),
            method=str(data["method"]),
            path=str(data["path"]),
            status=None if status is None else _as_int(status),
            duration=_as_float(data["duration"]),
            token_id=None if token_id is None else str(token_id),
            client_id=None if client_id is None else str(client_id),
            admitted=bool(data["admitted"]),
        )


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """Totals over the records kept, and the busiest sliding window.

    `max_in_window` is the most admitted API requests (paths under /api/) in any
    half-open window (s - window_s, s] of arrival times, overall, per token
    (`max_in_window_by_token`) and per OAuth client (`max_in_window_by_client`,
    all that client's tokens together: what `limit_scope` "client" bounds).
    `truncated` is true when older records were dropped (`dropped` of them), in
    which case every figure covers only the records kept.
    """

    window_s: float
    total: int
    by_status: dict[str, int]
    api_requests: int
    token_requests: int
    rate_limited: int
    max_in_window: int
    max_in_window_by_token: dict[str, int]
    max_in_window_by_client: dict[str, int]
    truncated: bool
    dropped: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> EmulatorStats:
        """Raises KeyError or TypeError when `data` is not a stats object."""
        return cls(
            window_s=_as_float(data["window_s"]),
            total=_as_int(data["total"]),
            by_status=_as_counts(data, "by_status"),
            api_requests=_as_int(data["api_requests"]),
            token_requests=_as_int(data["token_requests"]),
            rate_limited=_as_int(data["rate_limited"]),
            max_in_window=_as_int(data["max_in_window"]),
            max_in_window_by_token=_as_counts(data, "max_in_window_by_token"),
            max_in_window_by_client=_as_counts(data, "max_in_window_by_client"),
            truncated=bool(data["truncated"]),
            dropped=_as_int(data["dropped"]),
        )


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _as_counts(data: Mapping[str, object], name: str) -> dict[str, int]:
    value = data[name]
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be an object")
    return {str(k): _as_int(v) for k, v in value.items()}


def status_key(status: int | None) -> str:
    """How a status is named in `EmulatorStats.by_status` ("closed": no answer)."""
    return "closed" if status is None else str(status)


def compute_stats(records: Iterable[RequestRecord], window_s: float, dropped: int) -> EmulatorStats:
    """Stats over `records`, exactly, from their recorded arrival times."""
    by_status: dict[str, int] = {}
    api = tokens = limited = 0
    admitted_times: list[float] = []
    by_token: dict[str, list[float]] = {}
    by_client: dict[str, list[float]] = {}
    for rec in records:
        key = status_key(rec.status)
        by_status[key] = by_status.get(key, 0) + 1
        limited += rec.status == 429
        if rec.path.startswith("/api/"):
            api += 1
            if rec.admitted:
                admitted_times.append(rec.time)
                by_token.setdefault(rec.token_id or "", []).append(rec.time)
                by_client.setdefault(rec.client_id or "", []).append(rec.time)
        elif rec.path == "/oauth/token":
            tokens += 1
    total = sum(by_status.values())
    return EmulatorStats(
        window_s=window_s,
        total=total,
        by_status=by_status,
        api_requests=api,
        token_requests=tokens,
        rate_limited=limited,
        max_in_window=max_in_window(admitted_times, window_s),
        max_in_window_by_token={k: max_in_window(v, window_s) for k, v in by_token.items()},
        max_in_window_by_client={k: max_in_window(v, window_s) for k, v in by_client.items()},
        truncated=dropped > 0,
        dropped=dropped,
    )


class TokenStatus(Enum):
    VALID = "valid"
    UNKNOWN = "unknown"  # never issued, revoked, or issued before a reset
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    client_id: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """The three random numbers drawn, in this order, for every non-admin request.

    Drawing all three every time keeps the sequence of outcomes a pure
    function of the seed and the order of requests, whatever each one hits.
    """

    jitter: float
    error: float
    hang: float


class EmulatorState:
    """The emulator's memory. Every method takes `lock` (re-entrant), and a
    caller that needs several steps to be one decision holds it around them."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._initial = config or EmulatorConfig()
        self._config = self._initial
        self._rng = random.Random(self._initial.seed)  # noqa: S311 - reproducible faults
        self._tokens: dict[str, TokenInfo] = {}
        # Admitted API requests are kept per token and per client whatever
        # `limit_scope` judges, so switching it applies to the history kept.
        self._api_token_windows = RateWindows()
        self._api_client_windows = RateWindows()
        self._token_request_windows = RateWindows()
        self._records: deque[RequestRecord] = deque()
        self._dropped = 0
        self.started_at = clock()

    @property
    def config(self) -> EmulatorConfig:
        with self.lock:
            return self._config

    def update_config(self, changes: Mapping[str, object]) -> EmulatorConfig:
        """Apply a partial update of the knobs and return the new config.

        Raises ConfigError (nothing changes) on an unknown knob or a bad value.
        Setting `seed` re-seeds the fault generator; windows and tokens are
        kept, so a new limit, period, mode or scope applies to the history
        already recorded.
        """
        with self.lock:
            self._config = self._config.with_changes(changes)
            if "seed" in changes:
                self._rng = random.Random(self._config.seed)  # noqa: S311
            self._trim_records()
            return self._config

    def change_missing(self, add: Iterable[str], remove: Iterable[str]) -> frozenset[str]:
        """Add and remove ids answering 404; returns the new set.

        Raises ConfigError (nothing changes) when an id is not a UUID.
        """
        with self.lock:
            added = self._config.with_changes({"missing_ids": list(add)}).missing_ids
            removed = self._config.with_changes({"missing_ids": list(remove)}).missing_ids
            missing = (self._config.missing_ids | added) - removed
            self._config = self._config.with_changes({"missing_ids": sorted(missing)})
            return self._config.missing_ids

    def reset(self, *, restore_config: bool = False) -> None:
        """Forget records, tokens and windows; with restore_config, also the
        knobs set since start. The fault generator is re-seeded either way."""
        with self.lock:
            if restore_config:
                self._config = self._initial
            self._rng = random.Random(self._config.seed)  # noqa: S311
            self._tokens.clear()
            self._api_token_windows.clear()
            self._api_client_windows.clear()
            self._token_request_windows.clear()
            self._records.clear()
            self._dropped = 0

    def draw_faults(self) -> FaultDraw:
        with self.lock:
            return FaultDraw(self._rng.random(), self._rng.random(), self._rng.random())

    # -- tokens ------------------------------------------------------------

    def issue_token(self, client_id: str, now: float) -> tuple[str, TokenInfo]:
        """A new random access token for `client_id`, valid from `now`."""
        token = secrets.token_urlsafe(32)
        with self.lock:
            info = TokenInfo(
                token_id_of(token), client_id, now, now + self._config.token_lifetime_s
            )
            self._tokens[_digest(token)] = info
        return token, info

    def check_token(self, token: str, now: float) -> tuple[TokenStatus, TokenInfo | None]:
        """Whether `token` may call the API at `now`."""
        with self.lock:
            info = self._tokens.get(_digest(token))
        if info is None:
            return TokenStatus.UNKNOWN, None
        if now >= info.expires_at:
            return TokenStatus.EXPIRED, info
        return TokenStatus.VALID, info

    def revoke(self, token_id: str | None = None) -> int:
        """Revoke every token, or those named `token_id`; returns how many."""
        with self.lock:
            doomed = [d for d, i in self._tokens.items() if token_id in (None, i.token_id)]
            for digest in doomed:
                del self._tokens[digest]
            return len(doomed)

    # -- rate windows ------------------------------------------------------

    def admit_api(self, token_id: str, client_id: str, now: float) -> Decision:
        """Judge one API request of `token_id` (a token of `client_id`).

        `limit_scope` says whose window is judged: the token's, or the one all
        of the client's tokens share. An admitted request is remembered in the
        other one too, so both always hold every admitted request.
        """
        with self.lock:
            cfg = self._config
            judged, kept = self._api_token_windows, self._api_client_windows
            judged_key, kept_key = token_id, client_id
            if cfg.limit_scope == "client":
                judged, kept = kept, judged
                judged_key, kept_key = kept_key, judged_key
            decision = judged.admit(
                judged_key,
                now,
                limit=cfg.rate_limit,
                period_s=cfg.rate_period_s,
                mode=cfg.window_mode,
            )
            if decision.admitted:
                kept.remember(kept_key, now, period_s=cfg.rate_period_s)
            return decision

    def admit_token_request(self, client_id: str, now: float) -> Decision:
        """Judge one token request of `client_id` against the per-client limit."""
        with self.lock:
            cfg = self._config
            return self._token_request_windows.admit(
                client_id,
                now,
                limit=cfg.token_rate_limit,
                period_s=cfg.token_rate_period_s,
                mode=cfg.window_mode,
            )

    # -- the record --------------------------------------------------------

    def record(
        self,
        *,
        arrival: float,
        method: str,
        path: str,
        status: int | None,
        token_id: str | None,
        client_id: str | None,
        admitted: bool,
    ) -> RequestRecord:
        """Append one request to the record (its duration ends now)."""
        with self.lock:
            rec = RequestRecord(
                index=self._dropped + len(self._records),
                time=arrival,
                method=method,
                path=path,
                status=status,
                duration=max(0.0, self.clock() - arrival),
                token_id=token_id,
                client_id=client_id,
                admitted=admitted,
            )
            self._records.append(rec)
            self._trim_records()
            return rec

    def _trim_records(self) -> None:
        while len(self._records) > self._config.max_records:
            self._records.popleft()
            self._dropped += 1

    def records(self, since: int = 0, limit: int | None = None) -> tuple[list[RequestRecord], int]:
        """Records with index >= since (at most `limit`), and the index to ask for next."""
        with self.lock:
            start = min(max(0, since - self._dropped), len(self._records))
            stop = len(self._records) if limit is None else min(len(self._records), start + limit)
            page = list(itertools.islice(self._records, start, stop))
            return page, max(self._dropped + stop, since)

    @property
    def dropped(self) -> int:
        with self.lock:
            return self._dropped

    def stats(self, window_s: float) -> EmulatorStats:
        """Stats over the records kept; see `EmulatorStats`.

        Raises ConfigError when window_s is not a positive number.
        """
        if not window_s > 0 or window_s == float("inf"):
            raise ConfigError("window must be a positive number of seconds")
        with self.lock:
            kept = list(self._records)
            dropped = self._dropped
        return compute_stats(kept, window_s, dropped)
