"""`ratebridge status [--watch]`: every bucket, live from DynamoDB.

A bucket's item counts the grants it has made (`granted`); two readings
`interval` seconds apart give grants per second, which is set against the
limit's long-run rate. Also: whether the bucket is blocked (an upstream 429)
and until when, how many reserved slots still lie ahead (callers waiting),
and how far ahead the bucket is booked. One read per bucket per reading.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from limiter import BucketStatus, Limiter, LimitNotConfigured
from ratebridge_tools.stats import format_table


@dataclass(frozen=True)
class Row:
    """One bucket between two readings."""

    bucket: str
    limit: str
    limit_per_second: float
    grants_per_second: float | None  # None on the first reading
    blocked_for: float  # seconds left of a block, 0 if none
    waiting: int
    booked_ahead: float  # seconds

    @property
    def utilization(self) -> float | None:
        if self.grants_per_second is None or self.limit_per_second <= 0:
            return None
        return self.grants_per_second / self.limit_per_second

    def to_json(self) -> dict[str, object]:
        return {
            "bucket": self.bucket,
            "limit": self.limit,
            "limit_per_second": round(self.limit_per_second, 4),
            "grants_per_second": None
            if self.grants_per_second is None
            else round(self.grants_per_second, 4),
            "utilization": None if self.utilization is None else round(self.utilization, 4),
            "blocked_for_seconds": round(self.blocked_for, 3),
            "waiting": self.waiting,
            "booked_ahead_seconds": round(self.booked_ahead, 3),
        }


def read(limiter: Limiter, buckets: Sequence[str] | None = None) -> dict[str, BucketStatus]:
    """Each bucket's status now; all configured buckets when `buckets` is None.
    Raises `LimitNotConfigured` for a named bucket without a limit."""
    names = list(buckets) if buckets else [c.bucket for c in limiter.list_limits()]
    statuses = {}
    for name in names:
        try:
            statuses[name] = limiter.status(name)
        except LimitNotConfigured:
            if buckets:
                raise
            # deleted between the list and the read: gone from the view
    return statuses


def rows(before: dict[str, BucketStatus] | None, after: dict[str, BucketStatus]) -> list[Row]:
    """Rows for `after`, with rates from `before` (taken some seconds earlier)."""
    out = []
    for name, now in sorted(after.items()):
        rate = None
        then = (before or {}).get(name)
        if then is not None and now.now > then.now and now.version == then.version:
            rate = max(0, now.granted - then.granted) / (now.now - then.now)
        limit = now.limit
        out.append(
            Row(
                bucket=name,
                limit=str(limit),
                limit_per_second=limit.rate.per_second,
                grants_per_second=rate,
                blocked_for=max(0.0, now.blocked_until - now.now),
                waiting=now.waiting,
                booked_ahead=now.backlog_seconds,
            )
        )
    return out


def render(table: Sequence[Row], at: float) -> str:
    if not table:
        return (
            "no buckets configured: set one with "
            "`ratebridge limits set BUCKET --requests N --per SECONDS`"
        )
    lines = [
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)),
        format_table(
            [
                "bucket",
                "limit",
                "grants/s",
                "limit/s",
                "utilization",
                "blocked",
                "waiting",
                "booked ahead",
            ],
            [
                (
                    r.bucket,
                    r.limit,
                    "-" if r.grants_per_second is None else f"{r.grants_per_second:.2f}",
                    f"{r.limit_per_second:.2f}",
                    "-" if r.utilization is None else f"{100 * r.utilization:.1f}%",
                    f"{r.blocked_for:.1f} s" if r.blocked_for else "-",
                    r.waiting,
                    f"{r.booked_ahead:.2f} s",
                )
                for r in table
            ],
        ),
    ]
    return "\n".join(lines)


def watch(
    limiter: Limiter,
    buckets: Sequence[str] | None,
    *,
    interval: float,
    frames: int | None,
    show: Callable[[list[Row], float], None],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Row]:
    """Read every `interval` seconds and `show` each view; `frames` views (None: until
    interrupted). The first view has rates, from a reading one interval before it."""
    before = read(limiter, buckets)
    table: list[Row] = []
    shown = 0
    while frames is None or shown < frames:
        sleep(interval)
        after = read(limiter, buckets)
        table = rows(before, after)
        show(table, time.time())
        before = after
        shown += 1
    return table
