"""Provider health, in one place: a circuit breaker fed by active probes and call outcomes."""

from ._core import (
    IMMEDIATE_KINDS,
    NEUTRAL_KINDS,
    TRAFFIC_STATES,
    HealthCore,
    HealthSnapshot,
    OutcomeRecord,
    ProbeRecord,
    classify,
)

__all__ = [
    "IMMEDIATE_KINDS",
    "NEUTRAL_KINDS",
    "TRAFFIC_STATES",
    "HealthCore",
    "HealthSnapshot",
    "OutcomeRecord",
    "ProbeRecord",
    "classify",
]
