"""Event types: frozen, versioned, past-tense pydantic models, each with one explicit Arrow schema.

The contract analysts rely on (design §5):
- common fields ``event_id`` (UUIDv7), ``event_type``, ``schema_version``, ``occurred_at`` (UTC,
  microseconds), ``request_id``, ``task_id``, ``agent_type``, ``model_id``, ``provider``;
- money is exact ``Decimal`` USD stored as ``decimal128(38, 12)``; durations carry units in names;
- every type lists its own Arrow fields by hand (``_arrow_fields``); nothing is inferred.

OpenTelemetry GenAI names map as: ``gen_ai.provider.name`` ↔ ``provider``, ``gen_ai.request.model``
↔ ``model_id``, ``gen_ai.usage.input_tokens`` ↔ ``input_tokens``,
``gen_ai.usage.output_tokens`` ↔ ``output_tokens``, ``gen_ai.response.finish_reasons`` ↔
``finish_reason``, ``gen_ai.response.id`` ↔ ``provider_request_id``.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

MONEY_TYPE = pa.decimal128(38, 12)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

#: Exact USD with at most 12 decimal places and 26 integer digits (fits ``decimal128(38, 12)``).
Money = Annotated[Decimal, Field(max_digits=38, decimal_places=12, allow_inf_nan=False)]


class _Entropy:
    """``os.urandom`` drawn a few KiB at a time and handed out 10 bytes per id (one system call
    per 400 ids instead of one per id); thread-safe, and a forked child starts on fresh bytes
    (a copy of its parent's would repeat the parent's ids)."""

    _SIZE = 4000  # 400 ids

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self) -> int:
        with self._lock:
            at = self._at
            if at >= len(self._pool):
                self._pool = os.urandom(self._SIZE)
                at = 0
            self._at = at + 10
            return int.from_bytes(self._pool[at:at + 10], "big")

    def reset(self) -> None:
        self._pool = b""
        self._at = 0


_ENTROPY = _Entropy()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ENTROPY.reset)


def uuid7() -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix milliseconds, then random bits; sorts by time."""
    ms = time.time_ns() // 1_000_000
    rand = _ENTROPY.take()
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b (62 bits)
    h = f"{value:032x}"  # as str(uuid.UUID(int=value)), without building the UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> datetime:
    """Now, UTC, truncated to microseconds (what Parquet stores)."""
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event. Subclasses set ``event_type`` / ``schema_version`` and ``_arrow_fields``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = "Event"
    schema_version: ClassVar[int] = 1
    _arrow_fields: ClassVar[list[pa.Field]] = []

    event_id: str = Field(default_factory=uuid7)
    occurred_at: datetime = Field(default_factory=utc_now)
    request_id: str | None = None
    task_id: str | None = None
    agent_type: str | None = None
    model_id: str | None = None
    provider: str | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc_microseconds(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        return value.astimezone(UTC)

    # -- Arrow -----------------------------------------------------------------------------
    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        return pa.schema(COMMON_FIELDS + cls._arrow_fields, metadata={
            b"event_type": cls.event_type.encode(),
            b"schema_version": str(cls.schema_version).encode(),
        })

    def to_row(self) -> dict[str, Any]:
        row = self.model_dump(mode="python")
        row["event_type"] = self.event_type
        row["schema_version"] = self.schema_version
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        data = {k: v for k, v in row.items() if k not in ("event_type", "schema_version", "date")}
        return cls.model_validate(data)


COMMON_FIELDS: list[pa.Field] = [
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("schema_version", pa.int16(), nullable=False),
    pa.field("occurred_at", TIMESTAMP_TYPE, nullable=False),
    pa.field("request_id", pa.string()),
    pa.field("task_id", pa.string()),
    pa.field("agent_type", pa.string()),
    pa.field("model_id", pa.string()),
    pa.field("provider", pa.string()),
]


class CandidateScore(BaseModel):
    """One ranked candidate of a selection, with its sub-scores (each in [0, 1])."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    score: float
    capability: float
    cost: float
    performance: float
    availability: float


CANDIDATE_TYPE = pa.struct([
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("capability", pa.float64(), nullable=False),
    pa.field("cost", pa.float64(), nullable=False),
    pa.field("performance", pa.float64(), nullable=False),
    pa.field("availability", pa.float64(), nullable=False),
])


class ModelSelected(Event):
    event_type: ClassVar[str] = "ModelSelected"
    candidates: tuple[CandidateScore, ...] = ()
    propensity: float = 1.0
    weights_version: str = "default"
    priority: str = "normal"
    explored: bool = False
    reason: str = ""
    #: The learnt quality (per model and agent type) each candidate's performance sub-score was
    #: computed from, in candidate order; None when performance came from live statistics alone
    #: (no learnt quality yet). Replay uses it to re-score decisions with what is learnt now.
    candidate_quality: tuple[float, ...] | None = None

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("candidates", pa.list_(CANDIDATE_TYPE), nullable=False),
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("weights_version", pa.string(), nullable=False),
        pa.field("priority", pa.string(), nullable=False),
        pa.field("explored", pa.bool_(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("candidate_quality", pa.list_(pa.float64()), nullable=True),
    ]


class AttemptFailed(Event):
    event_type: ClassVar[str] = "AttemptFailed"
    attempt: int
    error_kind: str
    transient: bool
    http_status: int | None = None
    retry_after_s: float | None = None
    latency_ms: float | None = None

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("error_kind", pa.string(), nullable=False),
        pa.field("transient", pa.bool_(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("retry_after_s", pa.float64()),
        pa.field("latency_ms", pa.float64()),
    ]


class AttemptStarted(Event):
    """A provider call is about to be made (written to the spool before the call: the intent).

    If the router dies before the request's terminal event, the EventSink finds this intent
    without an outcome and records the request as ``RequestFailed(error_kind="lost")`` charged at
    ``reserved_usd``, the worst case the call could have cost: after any crash the log shows every
    call that may have been made. ``router_id`` is the router (spool writer) that made it."""

    event_type: ClassVar[str] = "AttemptStarted"
    attempt: int
    router_id: str
    reserved_usd: Money = Decimal(0)
    streamed: bool = False

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("router_id", pa.string(), nullable=False),
        pa.field("reserved_usd", MONEY_TYPE, nullable=False),
        pa.field("streamed", pa.bool_(), nullable=False),
    ]


class FailoverTriggered(Event):
    """``model_id`` is the model failed away from; ``to_model_id`` the next candidate."""

    event_type: ClassVar[str] = "FailoverTriggered"
    from_model_id: str
    to_model_id: str
    reason: str
    backoff_ms: float = 0.0

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("from_model_id", pa.string(), nullable=False),
        pa.field("to_model_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("backoff_ms", pa.float64(), nullable=False),
    ]


class RequestCompleted(Event):
    """Terminal event of a request that succeeded (``cache_hit`` when served from the cache).

    With ``store_prompts`` off, ``prompt_text``, ``response_text`` and ``tool_calls_json`` are
    None and only the hash and lengths are kept.

    Agent requests (all None in logs written before they existed): ``tool_calls`` the names of
    the tools the answer called, in order (None: no call); ``tool_count`` the tools offered and
    ``image_count`` the images sent; ``response_format`` the format asked (``json_object`` /
    ``json_schema``; None: text); ``structured_valid`` whether the JSON answer asked for passed
    its check, ``tool_calls_valid`` whether the calls did (``evaluation.check_output``; None: not
    checked, as for a cache hit). Never an argument, an image or a schema: ``tool_calls_json``
    (the calls in OpenAI's form, arguments included) only with ``store_prompts`` on."""

    event_type: ClassVar[str] = "RequestCompleted"
    attempts: int = 1
    latency_ms: float
    time_to_first_token_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Money = Decimal(0)
    finish_reason: str | None = None
    cache_hit: bool = False
    saved_cost_usd: Money = Decimal(0)
    streamed: bool = False
    provider_request_id: str | None = None
    prompt_hash: str | None = None
    prompt_chars: int = 0
    response_chars: int = 0
    prompt_text: str | None = None
    response_text: str | None = None
    tool_calls: tuple[str, ...] | None = None
    tool_count: int | None = None
    image_count: int | None = None
    response_format: str | None = None
    structured_valid: bool | None = None
    tool_calls_valid: bool | None = None
    tool_calls_json: str | None = None

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("time_to_first_token_ms", pa.float64()),
        pa.field("input_tokens", pa.int64(), nullable=False),
        pa.field("output_tokens", pa.int64(), nullable=False),
        pa.field("cached_tokens", pa.int64(), nullable=False),
        pa.field("reasoning_tokens", pa.int64(), nullable=False),
        pa.field("cost_usd", MONEY_TYPE, nullable=False),
        pa.field("finish_reason", pa.string()),
        pa.field("cache_hit", pa.bool_(), nullable=False),
        pa.field("saved_cost_usd", MONEY_TYPE, nullable=False),
        pa.field("streamed", pa.bool_(), nullable=False),
        pa.field("provider_request_id", pa.string()),
        pa.field("prompt_hash", pa.string()),
        pa.field("prompt_chars", pa.int64(), nullable=False),
        pa.field("response_chars", pa.int64(), nullable=False),
        pa.field("prompt_text", pa.string()),
        pa.field("response_text", pa.string()),
        pa.field("tool_calls", pa.list_(pa.string())),
        pa.field("tool_count", pa.int32()),
        pa.field("image_count", pa.int32()),
        pa.field("response_format", pa.string()),
        pa.field("structured_valid", pa.bool_()),
        pa.field("tool_calls_valid", pa.bool_()),
        pa.field("tool_calls_json", pa.string()),
    ]


class RequestFailed(Event):
    """Terminal event of a request that failed. ``model_id`` is the last model tried, if any."""

    event_type: ClassVar[str] = "RequestFailed"
    attempts: int
    error_kind: str
    models_tried: tuple[str, ...] = ()
    latency_ms: float = 0.0
    cost_usd: Money = Decimal(0)

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("error_kind", pa.string(), nullable=False),
        pa.field("models_tried", pa.list_(pa.string()), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("cost_usd", MONEY_TYPE, nullable=False),
    ]


class ResponseEvaluated(Event):
    event_type: ClassVar[str] = "ResponseEvaluated"
    completeness: float
    relevance: float
    coherence: float
    quality_score: float
    low_quality: bool
    evaluator: str = "heuristic"
    explanation: str = ""

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("completeness", pa.float64(), nullable=False),
        pa.field("relevance", pa.float64(), nullable=False),
        pa.field("coherence", pa.float64(), nullable=False),
        pa.field("quality_score", pa.float64(), nullable=False),
        pa.field("low_quality", pa.bool_(), nullable=False),
        pa.field("evaluator", pa.string(), nullable=False),
        pa.field("explanation", pa.string(), nullable=False),
    ]


class QualityLow(Event):
    event_type: ClassVar[str] = "QualityLow"
    quality_score: float
    threshold: float
    rerouted_to: str | None = None

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("quality_score", pa.float64(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("rerouted_to", pa.string()),
    ]


HealthState = Literal["healthy", "degraded", "unhealthy", "half_open", "unknown"]


class HealthChanged(Event):
    """A provider's (``model_id`` None) or a model's health moved from one state to another."""

    event_type: ClassVar[str] = "HealthChanged"
    from_state: HealthState
    to_state: HealthState
    reason: str = ""

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("from_state", pa.string(), nullable=False),
        pa.field("to_state", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]


class HealthChecked(Event):
    """One active probe of a provider's health endpoint."""

    event_type: ClassVar[str] = "HealthChecked"
    ok: bool
    latency_ms: float
    http_status: int | None = None
    error_kind: str | None = None
    missing_models: tuple[str, ...] = ()

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("error_kind", pa.string()),
        pa.field("missing_models", pa.list_(pa.string()), nullable=False),
    ]


class RateLimitHit(Event):
    """``kind``: ``approaching`` (share of a limit crossed), ``exceeded`` (local refusal) or
    ``provider_429`` (the provider refused; the model cools for ``retry_after_s``)."""

    event_type: ClassVar[str] = "RateLimitHit"
    kind: Literal["approaching", "exceeded", "provider_429"]
    limit_type: Literal["rpm", "tpm"]
    used: int
    limit: int
    retry_after_s: float | None = None

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("limit_type", pa.string(), nullable=False),
        pa.field("used", pa.int64(), nullable=False),
        pa.field("limit", pa.int64(), nullable=False),
        pa.field("retry_after_s", pa.float64()),
    ]


class BudgetAlert(Event):
    """A budget's spend crossed ``threshold`` (a share, e.g. 0.8) in the window starting at
    ``window_start``. One per crossing per window."""

    event_type: ClassVar[str] = "BudgetAlert"
    scope: Literal["global", "provider", "model", "agent_type"]
    scope_key: str
    window: Literal["day", "month"]
    window_start: datetime
    threshold: float
    spent_usd: Money
    limit_usd: Money

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("scope", pa.string(), nullable=False),
        pa.field("scope_key", pa.string(), nullable=False),
        pa.field("window", pa.string(), nullable=False),
        pa.field("window_start", TIMESTAMP_TYPE, nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("spent_usd", MONEY_TYPE, nullable=False),
        pa.field("limit_usd", MONEY_TYPE, nullable=False),
    ]

    @field_validator("window_start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("window_start must be timezone-aware")
        return value.astimezone(UTC)


class PerformanceAlert(Event):
    """``kind``: ``excessive_failover``, ``latency_degraded``, ``error_rate``, ``quality_degraded``,
    ``provider_unavailable``, ``usage_anomaly`` (a provider reported more ``metric`` tokens,
    ``value``, than the call could use, ``threshold``; it was charged within the bound),
    ``log_file_quarantined`` (an unreadable event log file was moved aside; ``message`` names it,
    its error class and where it went).

    ``latency_degraded``, ``error_rate`` and ``quality_degraded`` are raised once when their
    condition starts and cleared once when it has been gone a while (``cleared`` true, ``value``
    the metric then); see ``alerts.DegradationCore``. ``cleared`` is null in files written before
    it existed, read as false."""

    event_type: ClassVar[str] = "PerformanceAlert"
    kind: str
    metric: str
    value: float
    threshold: float
    message: str = ""
    cleared: bool = False

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("cleared", pa.bool_()),
    ]

    @field_validator("cleared", mode="before")
    @classmethod
    def _null_is_raised(cls, value: object) -> object:
        return False if value is None else value


class FeedbackRecorded(Event):
    """A user's or a judge model's score (0..1) for a request, for tuning."""

    event_type: ClassVar[str] = "FeedbackRecorded"
    score: float
    source: Literal["user", "judge", "ground_truth"]
    judge_model_id: str | None = None
    cost_usd: Money = Decimal(0)
    comment: str | None = None

    _arrow_fields: ClassVar[list[pa.Field]] = [
        pa.field("score", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("judge_model_id", pa.string()),
        pa.field("cost_usd", MONEY_TYPE, nullable=False),
        pa.field("comment", pa.string()),
    ]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        ModelSelected,
        AttemptStarted,
        AttemptFailed,
        FailoverTriggered,
        RequestCompleted,
        RequestFailed,
        ResponseEvaluated,
        QualityLow,
        HealthChanged,
        HealthChecked,
        RateLimitHit,
        BudgetAlert,
        PerformanceAlert,
        FeedbackRecorded,
    )
}

TERMINAL_EVENT_TYPES = ("RequestCompleted", "RequestFailed")


def snake_case(event_type: str) -> str:
    """``RequestCompleted`` → ``request_completed`` (the DuckDB view name)."""
    out = []
    for i, ch in enumerate(event_type):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
