"""Event types and the durable Parquet event log."""

from ._types import (
    EVENT_TYPES,
    TERMINAL_EVENT_TYPES,
    AttemptFailed,
    AttemptStarted,
    BudgetAlert,
    CandidateScore,
    Event,
    FailoverTriggered,
    FeedbackRecorded,
    HealthChanged,
    HealthChecked,
    ModelSelected,
    PerformanceAlert,
    QualityLow,
    RateLimitHit,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
    snake_case,
    uuid7,
)

__all__ = [
    "EVENT_TYPES",
    "TERMINAL_EVENT_TYPES",
    "AttemptFailed",
    "AttemptStarted",
    "BudgetAlert",
    "CandidateScore",
    "Event",
    "FailoverTriggered",
    "FeedbackRecorded",
    "HealthChanged",
    "HealthChecked",
    "ModelSelected",
    "PerformanceAlert",
    "QualityLow",
    "RateLimitHit",
    "RequestCompleted",
    "RequestFailed",
    "ResponseEvaluated",
    "snake_case",
    "uuid7",
]

# the durable Parquet log (owner: event log)
from ._compact import CompactionInProgress, CompactStats, compact  # noqa: E402
from ._log import ConcurrentModification, EventLog, LogFile  # noqa: E402

__all__ += [
    "CompactStats",
    "CompactionInProgress",
    "ConcurrentModification",
    "EventLog",
    "LogFile",
    "compact",
]
