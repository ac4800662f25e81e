"""Logs and metrics: the Powertools Logger, and EMF metrics per bucket and per route.

The metric catalogue below is what the dashboard and alarms in infra/ use
(a test checks they agree). Namespace from POWERTOOLS_METRICS_NAMESPACE
(default "Ratebridge"), service from POWERTOOLS_SERVICE_NAME (default
"ratebridge"). Counts are gathered per invocation and flushed once at its
end: one EMF line per bucket and per route, not one per event.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Sequence

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "ratebridge")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Ratebridge")

BUCKET_DIMENSION = "Bucket"
ROUTE_DIMENSION = "Route"

# name -> unit, by dimension
BUCKET_METRICS: dict[str, MetricUnit] = {
    "Granted": MetricUnit.Count,  # permits given (one per Genesys request)
    "GrantWaitMs": MetricUnit.Milliseconds,  # how long each permit made its caller wait
    "Denied": MetricUnit.Count,  # calls that could not get a permit within the time left
    "Upstream429": MetricUnit.Count,  # 429s from Genesys despite the limiter
    "TokenRefreshes": MetricUnit.Count,  # /oauth/token requests this container made
}
ROUTE_METRICS: dict[str, MetricUnit] = {
    "Processed": MetricUnit.Count,  # events applied
    "Stale": MetricUnit.Count,  # events older than what was stored (nothing to change)
    "Duplicates": MetricUnit.Count,  # events already processed (no Genesys call, no write)
    "Skipped": MetricUnit.Count,  # topics with no route, or nothing to do
    "Deferred": MetricUnit.Count,  # records put back to wait for capacity (not failures)
    "Failed": MetricUnit.Count,  # records that failed and went back to the queue
    "DeadLettered": MetricUnit.Count,  # records sent to the DLQ with their reason
}

logger = Logger(service=SERVICE)


class MetricsRecorder:
    """Counts per bucket and per route for one invocation; also the transport's
    `Observer` (granted, denied, throttled). Thread-safe."""

    def __init__(self, namespace: str = NAMESPACE, service: str = SERVICE) -> None:
        self.namespace = namespace
        self.service = service
        self._lock = threading.Lock()
        self._bucket: dict[tuple[str, str], float] = defaultdict(float)
        self._waits: dict[str, list[float]] = defaultdict(list)
        self._route: dict[tuple[str, str], float] = defaultdict(float)

    # -- the transport's Observer ----------------------------------------------

    def granted(self, buckets: Sequence[str], waited: float) -> None:
        with self._lock:
            for bucket in buckets:
                self._bucket[(bucket, "Granted")] += 1
                self._waits[bucket].append(round(waited * 1000, 3))

    def denied(self, buckets: Sequence[str], retry_after: float) -> None:
        self._add_buckets(buckets, "Denied")

    def response(self, method: str, status: int, seconds: float) -> None:
        pass  # upstream status and latency show in the logs and in Genesys's own usage API

    def throttled(self, buckets: Sequence[str], retry_after: float) -> None:
        self._add_buckets(buckets, "Upstream429")

    # -- the processor's own counts --------------------------------------------

    def token_refreshes(self, bucket: str, count: int) -> None:
        if count:
            self._add_buckets([bucket], "TokenRefreshes", count)

    def route(self, route: str, metric: str) -> None:
        if metric not in ROUTE_METRICS:
            raise ValueError(f"unknown route metric {metric!r}")
        with self._lock:
            self._route[(route, metric)] += 1

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Counts so far, as {"bucket:NAME" | "route:NAME": {metric: value}} (for tests)."""
        with self._lock:
            out: dict[str, dict[str, float]] = defaultdict(dict)
            for (bucket, metric), value in self._bucket.items():
                out[f"bucket:{bucket}"][metric] = value
            for (route, metric), value in self._route.items():
                out[f"route:{route}"][metric] = value
            return dict(out)

    def flush(self) -> None:
        """Emit everything counted as EMF (one line per bucket and per route) and reset."""
        with self._lock:
            bucket, waits, route = self._bucket, self._waits, self._route
            self._bucket, self._waits, self._route = (
                defaultdict(float),
                defaultdict(list),
                defaultdict(float),
            )
        for name in sorted({b for b, _ in bucket} | set(waits)):
            metrics = self._metrics(BUCKET_DIMENSION, name)
            for (b, metric), value in bucket.items():
                if b == name:
                    metrics.add_metric(name=metric, unit=BUCKET_METRICS[metric], value=value)
            for wait in waits.get(name, [])[:100]:  # EMF takes up to 100 values per metric
                metrics.add_metric(name="GrantWaitMs", unit=MetricUnit.Milliseconds, value=wait)
            metrics.flush_metrics()
        for name in sorted({r for r, _ in route}):
            metrics = self._metrics(ROUTE_DIMENSION, name)
            for (r, metric), value in route.items():
                if r == name:
                    metrics.add_metric(name=metric, unit=ROUTE_METRICS[metric], value=value)
            metrics.flush_metrics()

    def _metrics(self, dimension: str, value: str) -> EphemeralMetrics:
        metrics = EphemeralMetrics(namespace=self.namespace, service=self.service)
        metrics.add_dimension(name=dimension, value=value)
        return metrics

    def _add_buckets(self, buckets: Sequence[str], metric: str, count: float = 1) -> None:
        with self._lock:
            for bucket in buckets:
                self._bucket[(bucket, metric)] += count
