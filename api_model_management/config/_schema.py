"""Typed, validated configuration: models, providers and system settings.

The file format is the original system's ``model_registry.json`` (a ``models`` list) extended with
``providers`` and ``settings``. Everything is validated once, by pydantic, and passed in; nothing is
read at import time. API keys are never part of the configuration: a provider names the environment
variable that holds its key (``api_key_env``), and :func:`load_secrets` reads them as ``SecretStr``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

ProviderType = Literal["openai", "anthropic", "google", "ollama"]
Window = Literal["day", "month"]
Scope = Literal["global", "provider", "model", "agent_type"]

_WEIGHT_TOLERANCE = 1e-6
#: What an environment variable's name may be (``api_key_env``, ``api_key_envs``).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# models and providers


class RateLimits(_Strict):
    requests_per_minute: int = Field(gt=0)
    tokens_per_minute: int = Field(gt=0)


class ModelConfig(_Strict):
    """One model, in the original system's fields plus a few optional extensions."""

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    name: str = Field(min_length=1)
    capabilities: list[str] = Field(min_length=1)
    cost_per_1k_input_tokens: Decimal = Field(ge=0, allow_inf_nan=False)
    cost_per_1k_output_tokens: Decimal = Field(ge=0, allow_inf_nan=False)
    #: Price of cached input tokens where the provider reports them; defaults to the input price.
    cost_per_1k_cached_input_tokens: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    rate_limits: RateLimits
    context_window: int = Field(gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    average_response_time_ms: float = Field(gt=0)
    enabled: bool = True
    #: The model's name on the provider's wire, when it differs from ``id``.
    provider_model: str | None = None
    #: Prior quality in [0, 1] used until live evaluations exist.
    quality_prior: float = Field(default=0.8, ge=0, le=1)
    #: Models to try next, in order, before the selector's own ranking.
    fallbacks: list[str] = Field(default_factory=list)

    @property
    def wire_name(self) -> str:
        return self.provider_model or self.id


class HealthCheckEndpoint(_Strict):
    path: str | None = None  # default: the adapter's cheapest probe
    interval_s: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)


class Timeouts(_Strict):
    connect_s: float = Field(default=5.0, gt=0)
    read_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=120.0, gt=0)


class ProviderConfig(_Strict):
    # a key pasted where a variable's name belongs must not reach an error message
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: ProviderType
    base_url: str = Field(min_length=1)
    #: Environment variable holding the API key; None for providers that need none (local Ollama).
    api_key_env: str | None = None
    #: More variables holding keys of this provider (a key pool, after ``api_key_env`` when both
    #: are set; a name in both is one key). Each key has its own provider-side limits: calls go
    #: round robin over the keys not cooling down after their own 429, and each model's
    #: ``rate_limits`` count once per key (see :meth:`RegistryConfig.admitted_rate_limits`).
    api_key_envs: list[str] | None = None
    health_check: HealthCheckEndpoint = HealthCheckEndpoint()
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=100, gt=0)
    #: The connection pool under the adapters' httpx API: ``aiohttp`` (faster under load) or
    #: ``httpx`` (httpcore's own pool).
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    #: The largest reply read from this provider: a plain body (wire and decoded bytes), the text
    #: of a stream, and any one line of a stream. Past it the call fails with ``ResponseTooLarge``
    #: (the next candidate is tried). 8 MiB: over five times the largest real answer (a 128k-token
    #: reply is about 0.5 MB of text, 1.5 MB as JSON-escaped CJK), while an in-flight reply's
    #: memory and scoring time stay bounded.
    max_response_bytes: int = Field(default=8 * 1024 * 1024, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key_envs")
    @classmethod
    def _key_names(cls, value: list[str] | None) -> list[str] | None:
        """Names only, each once; a bad entry is named by its index, never its value."""
        if value is None:
            return None
        if not value:
            raise ValueError("api_key_envs is empty: list the variables that hold the keys, or remove it")
        first: dict[str, int] = {}
        for i, name in enumerate(value):
            if not ENV_NAME.match(name):
                raise ValueError(f"api_key_envs[{i}] must be the NAME of an environment variable "
                                 "(letters, digits, _); put the key itself in the environment or .env")
            if name in first:
                raise ValueError(f"api_key_envs[{i}] repeats api_key_envs[{first[name]}]")
            first[name] = i
        return value

    @property
    def key_envs(self) -> tuple[str, ...]:
        """Every variable naming a key of this provider, in order (``api_key_env`` first), each
        once; empty for a provider that needs no key."""
        names = [self.api_key_env] if self.api_key_env is not None else []
        return tuple(dict.fromkeys([*names, *(self.api_key_envs or ())]))


# --------------------------------------------------------------------------------------------
# settings


class HealthSettings(_Strict):
    """The circuit breaker's thresholds (rules in ``health/_core.py``): health follows the failure
    rate of calls over ``window_s``; runs of failures open it only when overwhelming."""

    interval_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    #: Failure rate over ``window_s`` (at least ``min_calls_in_window`` calls) that opens the breaker.
    failure_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    #: Failure rate over ``window_s`` (at least ``min_calls_in_window`` calls) that makes a provider
    #: degraded (it still takes traffic); below it, healthy. Must be below ``failure_rate_threshold``.
    degraded_rate_threshold: float = Field(default=0.05, gt=0, lt=1)
    window_s: float = Field(default=60.0, gt=0)
    #: Calls (outcomes and probes) in the window before its rate is judged.
    min_calls_in_window: int = Field(default=20, gt=0)
    #: Consecutive failures that open the breaker if the window's rate is at least
    #: ``degraded_rate_threshold`` (a run that long is not noise).
    failure_threshold: int = Field(default=20, gt=0)
    #: Consecutive failures that make a provider degraded while the window holds fewer than
    #: ``min_calls_in_window`` calls (must not exceed ``failure_threshold``).
    degraded_threshold: int = Field(default=1, gt=0)
    #: Failed probes in a row (no success between) that open the breaker, under the same rate
    #: condition as ``failure_threshold`` (probes are sparse and hit a cheap endpoint).
    probe_failure_threshold: int = Field(default=3, gt=0)
    #: Seconds an unhealthy provider waits before it is half-open.
    open_s: float = Field(default=15.0, gt=0)
    #: Trial probes a half-open provider admits before it re-opens.
    half_open_max_calls: int = Field(default=5, gt=0)
    #: Successful trials that close the breaker (at most ``half_open_max_calls``).
    recovery_probes: int = Field(default=3, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> HealthSettings:
        if self.degraded_threshold > self.failure_threshold:
            raise ValueError("degraded_threshold must not exceed failure_threshold")
        if self.degraded_rate_threshold >= self.failure_rate_threshold:
            raise ValueError("degraded_rate_threshold must be below failure_rate_threshold")
        if self.recovery_probes > self.half_open_max_calls:
            raise ValueError("recovery_probes must not exceed half_open_max_calls")
        return self


class RateLimitSettings(_Strict):
    approaching_threshold: float = Field(default=0.8, gt=0, le=1)
    window_s: float = Field(default=60.0, gt=0)
    lease_requests: int = Field(default=4, ge=0)
    lease_tokens: int = Field(default=8000, ge=0)
    lease_ttl_s: float = Field(default=5.0, gt=0)
    #: A model's RateLimiter actor is started when a router first needs a lease for it, and
    #: exits after this many seconds without a decision and with nothing outstanding (no lease
    #: unexpired, no reservation pending, no cool-down); the next use starts it again from its
    #: journal. 0 or None: never retired.
    idle_retire_s: float | None = Field(default=600.0, ge=0)


class CacheSettings(_Strict):
    enabled: bool = True
    max_entries: int = Field(default=10_000, gt=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    ttl_s: float = Field(default=3600.0, gt=0)
    #: Cache only requests with temperature 0 unless the request opts in.
    deterministic_only: bool = True


class BudgetLimit(_Strict):
    scope: Scope = "global"
    #: The provider, model or agent type; ``*`` (or empty): the global scope, or, for another
    #: scope, each of its keys separately ("every agent type may spend $5 a day").
    key: str = "*"
    window: Window = "day"
    limit_usd: Decimal = Field(gt=0, allow_inf_nan=False)


class BudgetSettings(_Strict):
    enforcement: Literal["strict", "best_effort"] = "strict"
    timezone: str = "UTC"
    alert_thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    #: How long a reservation (or a slice, after its use time) is held before it expires.
    reservation_ttl_s: float = Field(default=120.0, gt=0)
    #: How long a router may spend a budget slice locally.
    slice_ttl_s: float = Field(default=30.0, gt=0)
    limits: list[BudgetLimit] = Field(default_factory=list)

    @field_validator("alert_thresholds")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if any(not (0 < t <= 1.5) for t in value):
            raise ValueError("alert thresholds are shares of a budget, each in (0, 1.5]")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("alert thresholds must be strictly ascending, e.g. [0.5, 0.8, 1.0]")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'UTC'") from exc
        return value


def _check_sum_one(values: dict[str, float], what: str) -> None:
    total = sum(values.values())
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(f"{what} must sum to 1 (they sum to {total:g})")


class QualityWeights(_Strict):
    completeness: float = Field(default=0.40, ge=0, le=1)
    relevance: float = Field(default=0.35, ge=0, le=1)
    coherence: float = Field(default=0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _sum(self) -> QualityWeights:
        _check_sum_one(self.model_dump(), "quality weights")
        return self


class JudgeSettings(_Strict):
    enabled: bool = False
    model_id: str | None = None
    sample_rate: float = Field(default=0.05, ge=0, le=1)


class QualitySettings(_Strict):
    threshold: float = Field(default=0.6, ge=0, le=1)
    weights: QualityWeights = QualityWeights()
    #: The model that turns the evaluator's scores into ``quality_score`` (a judge's rating / 10):
    #: "default" for the packaged one (fitted on MT-Bench GPT-4 judge ratings), a file written by
    #: ``amm calibrate``, or None for the weighted sum of the three scores under ``weights``.
    calibration_path: str | None = "default"
    reroute_on_low_quality: bool = False
    #: An answer whose tool calls or structured output fail their schema check (arguments that
    #: do not validate against the tool's parameters, a JSON answer that does not parse or
    #: validate against the requested schema) is a failure of that model: ``AttemptFailed``
    #: (``invalid_output``), and the next candidate is tried, as after an error. False: the
    #: answer is returned, recorded as invalid. Never for a stream (the caller has it already).
    fail_over_on_invalid_output: bool = True
    judge: JudgeSettings = JudgeSettings()


class SelectionWeights(_Strict):
    capability: float = Field(default=0.30, ge=0, le=1)
    cost: float = Field(default=0.25, ge=0, le=1)
    performance: float = Field(default=0.25, ge=0, le=1)
    availability: float = Field(default=0.20, ge=0, le=1)
    #: What one point of suitability is worth in USD. Unset (the default), cost enters only as
    #: the log-price sub-score, which keeps price ratios but not amounts. Set, the suitability
    #: also loses the request's expected cost divided by ``value_usd``: a model dearer by Δc USD
    #: for this request must score Δc / value_usd higher, so cheap requests go to a dear model
    #: and dear ones do not (the trade-off ``amm tune`` finds for a cost constraint).
    value_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _sum(self) -> SelectionWeights:
        _check_sum_one(self.model_dump(include=_WEIGHT_PARTS), "selection weights")
        return self


_WEIGHT_PARTS = {"capability", "cost", "performance", "availability"}


class SelectionSettings(_Strict):
    weights: SelectionWeights = SelectionWeights()
    #: Per-agent-type overrides of the weights.
    agent_weights: dict[str, SelectionWeights] = Field(default_factory=dict)
    exploration_epsilon: float = Field(default=0.0, ge=0, le=1)
    weights_version: str = "default"
    assignment_cache_ttl_s: float = Field(default=5.0, ge=0)


class FailoverSettings(_Strict):
    max_attempts: int = Field(default=4, gt=0)
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_cap_s: float = Field(default=2.0, ge=0)
    jitter: float = Field(default=0.5, ge=0, le=1)
    deadline_s: float = Field(default=60.0, gt=0)
    #: Failovers within ``alert_window_s`` that raise a PerformanceAlert.
    alert_threshold: int = Field(default=20, gt=0)
    alert_window_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _cap(self) -> FailoverSettings:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be at least backoff_base_s")
        return self


class AlertSettings(_Strict):
    """Performance degradation alerts, per model and router (``alerts.DegradationCore``).

    Each model's calls are counted in slices of ``slice_s``; the last ``window_s`` of them are
    the *window*, the ``baseline_s`` before the window the *baseline*. At every slice boundary:
    - ``latency_degraded``: the window's p95 latency (successful calls, at least ``min_calls``) is
      at least ``latency_factor`` x the baseline's p95 (at least ``baseline_min_calls``) and at
      least ``latency_min_increase_ms`` above it;
    - ``error_rate``: at least ``min_calls`` calls in the window and a share of failures (the
      model's, not the request's) of at least ``error_rate_threshold``;
    - ``quality_degraded``: the window's mean quality (at least ``min_evaluations`` scores) is at
      least ``quality_drop`` below the baseline's (at least ``baseline_min_calls`` scores).
    An alert is raised once when its condition starts and cleared once it has been absent for
    ``clear_after_s`` (a window too small to judge changes nothing)."""

    enabled: bool = True
    slice_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    window_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    baseline_s: float = Field(default=1800.0, gt=0, allow_inf_nan=False)
    min_calls: int = Field(default=20, gt=0)
    baseline_min_calls: int = Field(default=50, gt=0)
    min_evaluations: int = Field(default=10, gt=0)
    latency_factor: float = Field(default=2.0, gt=1, allow_inf_nan=False)
    latency_min_increase_ms: float = Field(default=100.0, ge=0, allow_inf_nan=False)
    error_rate_threshold: float = Field(default=0.25, gt=0, le=1)
    quality_drop: float = Field(default=0.15, gt=0, le=1)
    clear_after_s: float = Field(default=300.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _windows(self) -> AlertSettings:
        if self.window_s < self.slice_s:
            raise ValueError("window_s must be at least slice_s")
        if self.baseline_s < self.window_s:
            raise ValueError("baseline_s must be at least window_s")
        return self


class ConcurrencySettings(_Strict):
    max_in_flight: int = Field(default=512, gt=0)
    per_provider: dict[str, int] = Field(default_factory=dict)
    per_model: dict[str, int] = Field(default_factory=dict)
    default_per_provider: int = Field(default=256, gt=0)
    default_per_model: int = Field(default=128, gt=0)


class EventSettings(_Strict):
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval_ms: int = Field(default=200, ge=0)
    flush_interval_ms: int = Field(default=50, ge=0)
    compact_min_files: int = Field(default=8, gt=1)
    #: Write an ``AttemptStarted`` intent to the spool before every provider call, so that a
    #: router's crash leaves every call it may have made in the log (charged at its worst case).
    write_ahead_attempts: bool = True
    #: The spool's directory, on each node's local disk (the spool needs ``flock`` and cheap
    #: appends). Default: ``<data_dir>/spool``, or when ``data_dir`` is remote (``s3://...``)
    #: ``<system temp dir>/amm-<hash of data_dir>/spool`` (``events._local``).
    spool_dir: str | None = Field(default=None, min_length=1)
    #: Where actors keep local state that outlives a restart (journals, caches). Default:
    #: ``<data_dir>/state``, or beside the default spool when ``data_dir`` is remote.
    state_dir: str | None = Field(default=None, min_length=1)
    #: When a request is answered: ``local`` once its events are in this node's spool (they
    #: survive the router's process, not the node's disk); ``shipped`` once they are in the shared
    #: log (``data_dir``), so they survive the loss of the node, at the cost of an upload per
    #: group of requests (``events._shipper``).
    ack: Literal["local", "shipped"] = "local"
    #: With ``ack="shipped"``: the longest a request waits for the log before it raises
    #: ``EventsNotShipped`` (its events stay in the spool and reach the log later).
    ack_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)

    @field_validator("spool_dir", "state_dir")
    @classmethod
    def _local_directory(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith("file://"):
            raise ValueError("must be a directory on the local disk (a path), not a URI")
        return value


class RouterSettings(_Strict):
    replicas: int = Field(default=2, gt=0)
    num_cpus: float = Field(default=0.25, gt=0)
    #: ``ModelManagement`` runs one more router replica inside the caller's process, on the same
    #: leases, slices and spool as the actors, so a request costs no actor round trip. Off: every
    #: ``complete()`` goes to a Router actor.
    embedded: bool = True
    #: A request whose Router actor died (or is restarting) before answering is sent once more
    #: to another replica, under a new request id (the first one ends in the log as
    #: ``RequestFailed(lost)`` if a call was in flight). Off: ``ComponentUnavailable``.
    retry_on_router_death: bool = True
    #: Where Router actors run: ``spread`` (``replicas`` of them, where Ray puts them) or
    #: ``per_node`` (one on every node of the cluster, also nodes that join later, so callers use
    #: the one on their own node: ``ModelManagement.router_for_current_node()``).
    placement: Literal["spread", "per_node"] = "spread"

    def count(self) -> int:
        """Router replicas sharing the system-wide concurrency limits."""
        return self.replicas + int(self.embedded)


# --------------------------------------------------------------------------------------------
# the HTTP gateway (``amm serve``)

GatewayPriority = Literal["low", "normal", "medium", "high", "critical"]
#: A virtual key's or an alias's name (it appears in metrics and logs; the key never does).
_GATEWAY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class GatewayConstraints(_Strict):
    """Selection constraints a virtual key or an alias puts on every request it serves (added
    to the request's own: lists are joined, bounds take the stricter)."""

    allowed_providers: list[str] | None = None
    excluded_providers: list[str] = Field(default_factory=list)
    excluded_models: list[str] = Field(default_factory=list)
    max_cost_per_request: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    min_quality: float | None = Field(default=None, ge=0, le=1)


class GatewayKey(_Strict):
    """A virtual key of the gateway: who a caller is, and what its requests may do.

    The key itself is never in the file: give its SHA-256 (``key_sha256``, as ``amm gateway-key
    new NAME`` prints it) or the name of the environment variable that holds it (``key_env``).
    ``agent_type``, ``priority``, ``required_capabilities`` and ``constraints`` are the defaults of
    its requests (``x-amm-*`` headers or ``metadata`` override them when ``allow_overrides``);
    ``allowed_models`` are the only models it may pin or be routed to; ``budget_usd`` per
    ``budget_window`` and ``requests_per_minute`` are its own limits, besides the registry's."""

    # a key pasted where its hash or a variable's name belongs must not reach an error message
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(pattern=_GATEWAY_NAME)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    key_env: str | None = None
    agent_type: str = Field(default="default", min_length=1)
    priority: GatewayPriority = "normal"
    required_capabilities: list[str] = Field(default_factory=list)
    allowed_models: list[str] | None = None
    constraints: GatewayConstraints = GatewayConstraints()
    budget_usd: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    budget_window: Window = "day"
    requests_per_minute: int | None = Field(default=None, gt=0)
    allow_overrides: bool = True

    @field_validator("key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError("key_env must be the NAME of an environment variable (letters, "
                             "digits, _); put the key itself in the environment or .env")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> GatewayKey:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_sha256 (the key's SHA-256, from `amm "
                             "gateway-key new NAME`) and key_env (the variable holding the key)")
        return self


class GatewayAlias(_Strict):
    """A model name the gateway routes by selection (``auto:cheap``, ``auto:code``): what it
    sets on the request (the weights are those of its ``agent_type``, from
    ``settings.selection.agent_weights``); unset fields keep the key's or the request's."""

    description: str | None = None
    agent_type: str | None = Field(default=None, min_length=1)
    priority: GatewayPriority | None = None
    required_capabilities: list[str] = Field(default_factory=list)
    models: list[str] | None = None
    constraints: GatewayConstraints = GatewayConstraints()


class GatewayServeSettings(_Strict):
    """``amm serve --ray-serve``: the gateway as a Ray Serve deployment, each replica holding a
    router. Replicas scale between ``min_replicas`` and ``max_replicas`` to keep about
    ``target_ongoing_requests`` in flight on each (Serve's autoscaling; equal bounds: a fixed
    count). A virtual key's own limits are split over ``max_replicas`` (each replica admits
    1/max of a key's budget and requests per minute); the registry's are exact (leases and
    slices of the system's actors)."""

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=2, ge=1)
    #: Requests in flight per replica that Serve's autoscaler aims at.
    target_ongoing_requests: float = Field(default=16.0, gt=0)
    #: At most this many requests in flight on one replica (more wait in Serve's proxy).
    max_ongoing_requests: int = Field(default=256, gt=0)
    #: The CPUs Ray reserves for each replica (a replica mostly waits on providers).
    num_cpus: float = Field(default=0.25, ge=0)
    #: Serve's log line per request in its proxies and the replicas (method, route, status,
    #: latency; never a header). Off: the event log and ``/metrics`` already have every request.
    access_log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> GatewayServeSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not be larger than max_replicas")
        return self


class GatewaySettings(_Strict):
    """``amm serve``: virtual keys, routing aliases and the HTTP limits (``gateway/``)."""

    keys: list[GatewayKey] = Field(default_factory=list)
    aliases: dict[str, GatewayAlias] = Field(default_factory=dict)
    #: The largest request body read (bigger: 413 before it is parsed). Images come inline as
    #: base64, so this is also the bound on a request's images.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    #: ``max_tokens`` of a request that gives none (OpenAI's API allows that); it bounds the
    #: request's budget reservation.
    default_max_tokens: int = Field(default=4096, gt=0)
    #: How long a stopping server waits for requests in flight before it cancels them.
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    #: The deployment on Ray Serve (``amm serve --ray-serve``).
    serve: GatewayServeSettings = GatewayServeSettings()

    @model_validator(mode="after")
    def _unique(self) -> GatewaySettings:
        names = [k.name for k in self.keys]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"gateway key names must be unique ({', '.join(repeated)} repeats)")
        hashes = [k.key_sha256 for k in self.keys if k.key_sha256 is not None]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two gateway keys have the same key_sha256")
        for alias in self.aliases:
            if not re.match(_GATEWAY_NAME, alias):
                raise ValueError("an alias name has letters, digits and _ . : - only (at most 64)")
        return self


class Settings(_Strict):
    # errors name paths, never values (a data_dir URI with a secret in it)
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    health_check: HealthSettings = HealthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    cache: CacheSettings = CacheSettings()
    budgets: BudgetSettings = BudgetSettings()
    quality: QualitySettings = QualitySettings()
    selection: SelectionSettings = SelectionSettings()
    failover: FailoverSettings = FailoverSettings()
    alerts: AlertSettings = AlertSettings()
    concurrency: ConcurrencySettings = ConcurrencySettings()
    events: EventSettings = EventSettings()
    routers: RouterSettings = RouterSettings()
    gateway: GatewaySettings = GatewaySettings()
    #: The event log: a path, or any URI pyarrow opens (``s3://bucket/prefix``: credentials and
    #: endpoint from the AWS_* environment variables, never in the URI; ``events._storage``).
    data_dir: str = Field(default="./data", min_length=1)
    store_prompts: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("data_dir")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value) if "://" in value else None
        if parts is not None and ("@" in parts.netloc or parts.query):
            raise ValueError("must not carry credentials or options; give them in the AWS_* "
                             "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                             "AWS_ENDPOINT_URL, AWS_REGION)")
        return value


# --------------------------------------------------------------------------------------------
# the whole registry


class RegistryConfig(_Strict):
    """The whole configuration file."""

    # errors name paths, never values (a key pasted where a variable's name belongs)
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    version: str = "1"
    updated: str | None = None
    models: list[ModelConfig] = Field(min_length=1)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    settings: Settings = Settings()

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> RegistryConfig:
        """Cross-field checks (unknown provider, duplicate id, unknown fallback, budget key, judge).

        ``load_config`` / ``config_from_dict`` pass a context that defers these checks to the loader,
        which reports each problem as its own issue with its JSON path; direct validation gets them
        joined into one error here."""
        from ._load import DEFER_CROSS_CHECKS, cross_field_issues

        context = info.context or {}
        if all(context.get(key) == value for key, value in DEFER_CROSS_CHECKS.items()):
            return self
        problems = cross_field_issues(self.model_dump(mode="python"))
        if problems:
            raise ValueError("; ".join(f"{issue.path}: {issue.message}" for issue in problems))
        return self

    # -- lookups -------------------------------------------------------------------------------
    def model(self, model_id: str) -> ModelConfig:
        for model in self.models:
            if model.id == model_id:
                return model
        from ..errors import InvalidInput

        raise InvalidInput(f"unknown model {model_id!r}", model_id=model_id)

    def provider_of(self, model_id: str) -> ProviderConfig:
        return self.providers[self.model(model_id).provider]

    def admitted_rate_limits(self, model: ModelConfig) -> RateLimits:
        """The limits the system's RateLimiter holds ``model`` to: its ``rate_limits`` (one API
        key's limits at the provider) times the keys its provider lists (at least one)."""
        provider = self.providers.get(model.provider)
        keys = len(provider.key_envs) if provider is not None else 0
        if keys <= 1:
            return model.rate_limits
        limits = model.rate_limits
        return RateLimits(requests_per_minute=limits.requests_per_minute * keys,
                          tokens_per_minute=limits.tokens_per_minute * keys)
