"""Performance degradation alerts, in one place: per model, p95 latency against its own recent
baseline, error rate against a threshold and mean quality against its baseline, raised and
cleared with hysteresis as ``PerformanceAlert`` events."""

from ._core import (
    ERROR_RATE,
    KINDS,
    LATENCY_DEGRADED,
    NEUTRAL_KINDS,
    QUALITY_DEGRADED,
    DegradationCore,
)
from ._histogram import GROWTH, LatencyHistogram, bucket_of, upper_bound_ms

__all__ = [
    "ERROR_RATE",
    "GROWTH",
    "KINDS",
    "LATENCY_DEGRADED",
    "NEUTRAL_KINDS",
    "QUALITY_DEGRADED",
    "DegradationCore",
    "LatencyHistogram",
    "bucket_of",
    "upper_bound_ms",
]
