"""A distributed rate limiter on DynamoDB: one shared bucket, any number of callers.

    from limiter import Limiter
    lim = Limiter.from_env()
    lim.set_limit("genesys", requests=300, per_seconds=60, burst=3)
    grant = lim.acquire("genesys", timeout=5.0)

See limiter/DESIGN.md for the algorithm and its guarantees.
"""

from limiter.errors import (
    InvalidArgument,
    LimiterError,
    LimitNotConfigured,
    RateLimited,
    StoreUnavailable,
)
from limiter.limiter import Limiter
from limiter.models import (
    BucketStatus,
    ConfiguredLimit,
    Decision,
    Grant,
    Limit,
    Schedule,
)
from limiter.settings import LimiterSettings

__all__ = [
    "BucketStatus",
    "ConfiguredLimit",
    "Decision",
    "Grant",
    "InvalidArgument",
    "Limit",
    "LimitNotConfigured",
    "Limiter",
    "LimiterError",
    "LimiterSettings",
    "RateLimited",
    "Schedule",
    "StoreUnavailable",
]
