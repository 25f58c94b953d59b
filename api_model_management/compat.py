"""The original system's component names, as thin in-process facades over the cores.

They keep the original quick-start working with only its import line changed::

    registry = ModelRegistry(Path("config/model_registry.json")); registry.load_config()
    health_checker = HealthChecker(registry); await health_checker.start()
    rate_limiter = RateLimiter(registry)
    performance_monitor = PerformanceMonitor(Path("data/performance.db"))
    selector = ModelSelector(registry=registry, health_checker=health_checker,
                             rate_limiter=rate_limiter, performance_monitor=performance_monitor)
    selection = await selector.select_model(request, "research")
    await health_checker.stop()

No Ray here: for the actor system use :class:`ModelManagement`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from ._clock import SYSTEM_CLOCK, Clock
from ._feedback import check_feedback, feedback_event
from ._request import ModelRequest, ModelResponse
from .budget import BudgetStatus
from .cache import CacheStats
from .config import ModelConfig, ProviderConfig, RegistryConfig, Settings, load_config
from .config._logging import configure_logging_for
from .errors import InvalidInput
from .events import BudgetAlert, CandidateScore, Event, FailoverTriggered, FeedbackRecorded
from .events._resilient import ResilientSpool
from .events._spool import SpoolWriter
from .ratelimit import Admission, RateLimiterCore, RateLimitStatus
from .routing._factory import LocalBackend
from .routing._ports import OutcomePort

if TYPE_CHECKING:
    from .projections import PerformanceMonitor
    from .providers import ProviderAdapter
    from .routing._ports import EventPort
    from .selection import QualityFold, SelectorCore, StatsCore

log = logging.getLogger(__name__)


class ModelRegistry:
    """Model metadata from a registry file (or an already validated ``RegistryConfig``)."""

    def __init__(self, config_path: str | Path | None = None, *, config: RegistryConfig | None = None) -> None:
        if config_path is None and config is None:
            raise ValueError("ModelRegistry needs a config path or a RegistryConfig")
        self.config_path = Path(config_path) if config_path is not None else None
        self._config = config

    @classmethod
    def from_config(cls, config: RegistryConfig) -> ModelRegistry:
        return cls(config=config)

    def load_config(self) -> RegistryConfig:
        """Read and validate the file (``ConfigError`` lists every problem); keep and return it."""
        if self.config_path is None:  # built from a RegistryConfig
            return self.config
        self._config = load_config(self.config_path)
        return self._config

    def reload(self) -> RegistryConfig:
        """Read the file again. If it is now invalid, ``ConfigError`` is raised and the previous
        configuration is kept."""
        return self.load_config()

    @property
    def config(self) -> RegistryConfig:
        """The configuration, read from the file on first use if ``load_config`` was not called."""
        if self._config is None:  # only when built from a path
            return self.load_config()
        return self._config

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        return dict(self.config.providers)

    @property
    def settings(self) -> Settings:
        return self.config.settings

    def get_model(self, model_id: str) -> ModelConfig | None:
        """The model with this id, or None."""
        _text(model_id, "model_id")
        return next((m for m in self.config.models if m.id == model_id), None)

    def list_models(
        self,
        capability: str | Iterable[str] | None = None,
        provider: str | None = None,
        enabled_only: bool = True,
    ) -> list[ModelConfig]:
        """Models in file order, filtered by capability (all given must be present), provider and
        ``enabled``."""
        if provider is not None:
            _text(provider, "provider")
        if capability is not None and not isinstance(capability, str) and not all(
            isinstance(c, str) for c in capability
        ):
            raise InvalidInput("capability must be a string or strings", field="capability")
        wanted = {capability} if isinstance(capability, str) else set(capability or ())
        return [
            model
            for model in self.config.models
            if (not enabled_only or model.enabled)
            and (provider is None or model.provider == provider)
            and wanted.issubset(model.capabilities)
        ]

    def __repr__(self) -> str:
        state = f"{len(self._config.models)} models" if self._config is not None else "not loaded"
        return f"ModelRegistry({str(self.config_path) if self.config_path else '<config>'!r}, {state})"


def _config_of(registry: ModelRegistry | RegistryConfig) -> RegistryConfig:
    if isinstance(registry, RegistryConfig):
        return registry
    if not isinstance(registry, ModelRegistry):
        raise InvalidInput(
            f"expected a ModelRegistry or a RegistryConfig, got {type(registry).__name__}",
            field="registry",
        )
    return registry.config


def _request(value: object, name: str = "request") -> ModelRequest:
    if not isinstance(value, ModelRequest):
        raise InvalidInput(f"{name} must be a ModelRequest, got {type(value).__name__}", field=name)
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string, got {type(value).__name__}",
                           field=name)
    return value


def _model_of(config: RegistryConfig, model_id: object) -> ModelConfig:
    return config.model(_text(model_id, "model_id"))


def _money(value: object, name: str = "cost_usd") -> Decimal:
    """USD from a Decimal, an int, a numeric string or (as the original system took) a float,
    read by its shortest decimal form (0.1 is exactly 0.1)."""
    from .budget import to_money

    if isinstance(value, float) and not isinstance(value, bool):
        value = repr(value)
    if isinstance(value, str):
        value = value.strip()
    return to_money(value, name)


def _agent(value: object, name: str = "agent_type") -> str:
    """An agent type as a plain string: a string, or an enum member whose value is one (the
    original system's ``AgentType.SA`` stands for ``"solution_architect"``)."""
    if isinstance(value, Enum):
        value = value.value
    return str(_text(value, name))


class _Configured(Protocol):
    config: RegistryConfig


_C = TypeVar("_C", bound=_Configured)


def _component(value: _C | None, cls: type[_C], name: str, config: RegistryConfig) -> _C | None:
    """``value`` when it is a ``cls`` built from the same models and providers as ``config``."""
    if value is None:
        return None
    if not isinstance(value, cls):
        raise InvalidInput(f"{name} must be a {cls.__name__}, got {type(value).__name__}", field=name)
    if value.config is not config and (
        value.config.models != config.models or set(value.config.providers) != set(config.providers)
    ):
        raise InvalidInput(f"{name} was built from another registry (its models or providers "
                           "differ): build every component from the same ModelRegistry", field=name)
    return value


def _monitor(value: object) -> PerformanceMonitor | None:
    from .projections import PerformanceMonitor

    if value is not None and not isinstance(value, PerformanceMonitor):
        raise InvalidInput(f"performance_monitor must be a PerformanceMonitor, got "
                           f"{type(value).__name__}", field="performance_monitor")
    return value


#: Health events a HealthChecker keeps while no spool takes them (the oldest are dropped).
HEALTH_EVENTS_KEPT = 10_000


class HealthChecker:
    """One health core per provider, probing on the configured interval while started, and
    told the outcome of every call a :class:`FailoverManager` given it makes (passive health).

    Providers whose API key is missing are reported unavailable with the reason and never probed.
    Its ``HealthChanged`` and ``HealthChecked`` events go to the spool of the FailoverManager it
    was given to (:meth:`attach_events`); until then they are kept (at most
    ``HEALTH_EVENTS_KEPT``, oldest dropped and counted in ``events_dropped``) for
    :meth:`drain_events` or the first spool attached.
    """

    def __init__(self, registry: ModelRegistry | RegistryConfig, *,
                 env: dict[str, str] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        from .config._secrets import load_secrets
        from .health._core import HealthCore

        self.config = _config_of(registry)
        configure_logging_for(self.config, env=env)
        self.secrets = load_secrets(self.config, env=env)
        settings = self.config.settings.health_check
        self.cores = {
            name: HealthCore(name, settings, clock=clock,
                             models=[m.wire_name for m in self.config.models if m.provider == name])
            for name in self.config.providers
        }
        self.unavailable_reasons: dict[str, str] = {}
        for name in self.config.providers:
            ok, reason = self.secrets.availability(name)
            if not ok:
                self.unavailable_reasons[name] = reason
        self._adapters: dict[str, ProviderAdapter] = {}
        self._task: asyncio.Task[None] | None = None
        self._kept: deque[Event] = deque()
        self._spools: list[EventPort] = []
        self.events_dropped = 0

    async def start(self) -> None:
        """Probe every provider that has a key once now, then on the interval in the background."""
        from .providers import make_adapter

        for name, provider in self.config.providers.items():
            if name not in self.unavailable_reasons:
                self._adapters[name] = make_adapter(name, provider, self.secrets.keys_for(name))
        await self.check_all()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.settings.health_check.interval_s)
            await self.check_all()

    async def check_all(self) -> None:
        async def one(name: str, adapter: ProviderAdapter) -> None:
            probe = await adapter.probe()
            self.cores[name].record_probe(probe.ok, probe.latency_ms, http_status=probe.http_status,
                                          error_kind=probe.error_kind, available_models=probe.models)
            self._publish()

        await asyncio.gather(*(one(n, a) for n, a in self._adapters.items()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()

    def record_outcome(self, model_id: str, ok: bool, error_kind: str | None = None) -> str:
        """One call to ``model_id`` succeeded or failed (``error_kind`` as the adapters name it:
        ``timeout``, ``server_error``, ``auth``, ...): a passive health signal for its provider.
        Returns the provider's state after it."""
        model = _model_of(self.config, model_id)
        if not isinstance(ok, bool):
            raise InvalidInput("ok must be True or False", field="ok")
        if error_kind is not None:
            _text(error_kind, "error_kind")
        self.cores[model.provider].record_outcome(ok, None if ok else error_kind or "error",
                                                  model.wire_name)
        self._publish()
        return self.provider_state(model.provider)

    def attach_events(self, spool: EventPort) -> None:
        """Write this checker's events to ``spool`` from now on, the kept ones first."""
        if self._kept:
            spool.write(list(self._kept))
            self._kept.clear()
        if spool not in self._spools:
            self._spools.append(spool)

    def detach_events(self, spool: EventPort) -> None:
        """Stop writing to ``spool`` (its FailoverManager is closing); events are kept again
        when no spool is left."""
        if spool in self._spools:
            self._spools.remove(spool)

    def drain_events(self) -> list[Event]:
        """The health events kept since the last drain (none while a spool takes them)."""
        out = list(self._kept)
        self._kept.clear()
        return out

    def _publish(self) -> None:
        """Hand on the events of every provider's core (including changes made on a core
        directly, or by time)."""
        events = [event for core in self.cores.values() for event in core.drain_events()]
        if not events:
            return
        if self._spools:
            for spool in self._spools:
                spool.write(events)
            return
        self._kept.extend(events)
        while len(self._kept) > HEALTH_EVENTS_KEPT:
            self._kept.popleft()
            self.events_dropped += 1

    def provider_state(self, provider: str) -> str:
        """The provider's health state (``unhealthy`` when its key is missing)."""
        if _text(provider, "provider") in self.unavailable_reasons:
            return "unhealthy"
        core = self.cores.get(provider)
        if core is None:
            raise InvalidInput(f"unknown provider {provider!r}", field="provider")
        return core.state

    def is_available(self, model_id: str) -> bool:
        """Whether the model's provider takes traffic and the model is not reported missing."""
        model = _model_of(self.config, model_id)
        if model.provider in self.unavailable_reasons:
            return False
        snap = self.cores[model.provider].snapshot()
        return snap.allows_traffic and model.wire_name not in snap.unavailable_models

    def get_status(self) -> dict[str, dict[str, object]]:
        """Per provider: its state, why, and the models reported missing."""
        out: dict[str, dict[str, object]] = {}
        for name, core in self.cores.items():
            snap = core.snapshot()
            out[name] = {"state": self.provider_state(name),
                         "reason": self.unavailable_reasons.get(name, snap.reason),
                         "unavailable_models": list(snap.unavailable_models)}
        return out


class RateLimiter:
    """One RPM/TPM window per model (in-process)."""

    def __init__(self, registry: ModelRegistry | RegistryConfig, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        from .ratelimit._core import RateLimiterCore

        self.config = _config_of(registry)
        configure_logging_for(self.config)
        self.cores = {
            m.id: RateLimiterCore(m.id, self.config.admitted_rate_limits(m).requests_per_minute,
                                  self.config.admitted_rate_limits(m).tokens_per_minute,
                                  settings=self.config.settings.rate_limit, clock=clock, provider=m.provider,
                                  journaled=False)
            for m in self.config.models
        }

    def is_rate_limited(self, model_id: str) -> bool:
        """Whether a one-request reservation would be refused now."""
        return self._core(model_id).is_limited()

    def check_rate_limit(self, model_id: str, tokens: int = 0) -> Admission:
        """Reserve capacity for one request; returns the admission (``granted``, ``retry_after_s``)."""
        return self._core(model_id).reserve(tokens)

    def record_usage(self, model_id: str, reservation_id: str, actual_tokens: int) -> None:
        """The request was sent: replace its estimate with the tokens it used."""
        self._core(model_id).commit(_text(reservation_id, "reservation_id"), actual_tokens)

    def status(self, model_id: str) -> RateLimitStatus:
        """Usage, leased capacity and cool-down of one model now."""
        return self._core(model_id).status()

    def _core(self, model_id: str) -> RateLimiterCore:
        core = self.cores.get(_text(model_id, "model_id"))
        if core is None:
            raise InvalidInput(f"unknown model {model_id!r}", model_id=model_id)
        return core


@dataclass
class ModelSelection:
    """The original system's selection result; ``filtered`` maps each model left out to why."""

    model_id: str
    suitability_score: float
    selection_reason: str
    fallback_models: list[str] = field(default_factory=list)
    provider: str = ""
    candidates: tuple[CandidateScore, ...] = ()
    filtered: dict[str, str] = field(default_factory=dict)


class ModelSelector:
    """Selection over the live state of a HealthChecker, RateLimiter and PerformanceMonitor.

    Before each selection the health and rate-limit state of the components given is pushed into
    the selection core; the live statistics of a :class:`FailoverManager` routing on this
    selector (its calls' outcomes, from the log's seed on), else the performance monitor's
    statistics (DuckDB over the log), at most once per
    ``settings.selection.assignment_cache_ttl_s``. A :class:`FailoverManager` given this
    selector routes on the same core."""

    def __init__(self, registry: ModelRegistry | RegistryConfig,
                 health_checker: HealthChecker | None = None,
                 rate_limiter: RateLimiter | None = None,
                 performance_monitor: PerformanceMonitor | None = None,
                 *, clock: Clock = SYSTEM_CLOCK) -> None:
        from .selection._core import SelectorCore

        self.config = _config_of(registry)
        configure_logging_for(self.config)
        self.health_checker = _component(health_checker, HealthChecker, "health_checker", self.config)
        self.rate_limiter = _component(rate_limiter, RateLimiter, "rate_limiter", self.config)
        self.performance_monitor = _monitor(performance_monitor)
        self.core = SelectorCore(self.config, clock=clock)
        self._clock = clock
        self._stats_read_at: float | None = None
        #: set by a FailoverManager on this selector: the statistics its outcomes are folded into
        self.live_stats: StatsCore | None = None

    def sync(self) -> None:
        """Push the live state of the components given into the selection core."""
        self.sync_health()
        if self.rate_limiter is not None:
            for model_id, core in self.rate_limiter.cores.items():
                self.core.update_rate_limited(model_id, core.limited_until())
                self.core.update_headroom(model_id, core.headroom())
        if self.live_stats is not None or self.performance_monitor is not None:
            now = self._clock.monotonic()
            ttl = self.config.settings.selection.assignment_cache_ttl_s
            if self._stats_read_at is None or now - self._stats_read_at >= ttl:
                self._stats_read_at = now
                stats = (self.live_stats.snapshot() if self.live_stats is not None
                         else self.performance_monitor.model_stats()
                         if self.performance_monitor is not None else {})
                if stats:
                    self.core.update_stats(stats)

    def sync_health(self, provider: str | None = None) -> None:
        """Push the health checker's state of ``provider`` (every provider when None)."""
        checker = self.health_checker
        if checker is None:
            return
        for name in self.config.providers if provider is None else (provider,):
            unavailable: list[str] = []
            if name not in checker.unavailable_reasons:
                unavailable = list(checker.cores[name].snapshot().unavailable_models)
            wire_to_id = {m.wire_name: m.id for m in self.config.models if m.provider == name}
            self.core.update_health(name, checker.provider_state(name),
                                    [wire_to_id.get(u, u) for u in unavailable])

    async def select_model(self, request: ModelRequest, agent_type: str | None = None) -> ModelSelection:
        """The best model for ``request`` (as ``agent_type`` when given: a string or an
        :class:`AgentType`), its score, the reason and the fallbacks, over the live state of the
        components given. ``NoEligibleModel`` (with the reason per model) when none is usable."""
        request = _request(request)
        if agent_type is not None:
            agent_type = _agent(agent_type)
        if agent_type is not None and agent_type != request.agent_type:
            request = request.model_copy(update={"agent_type": agent_type})
        self.sync()
        selection = self.core.select(request)
        return ModelSelection(
            model_id=selection.model_id, suitability_score=selection.suitability_score,
            selection_reason=selection.selection_reason, fallback_models=selection.fallbacks,
            provider=selection.provider, candidates=selection.candidates,
            filtered=dict(selection.filtered),
        )

    def clear_assignment_cache(self) -> None:
        """Forget the cached rankings (after a configuration change)."""
        self.core.clear_assignment_cache()


class CacheManager:
    """The response cache (in-process)."""

    def __init__(self, registry: ModelRegistry | RegistryConfig | None = None, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        from .cache._core import CacheCore
        from .config import CacheSettings

        configure_logging_for(_config_of(registry) if registry is not None else None)
        settings = _config_of(registry).settings.cache if registry is not None else CacheSettings()
        self.core = CacheCore(settings, clock=clock)

    def get(self, request: ModelRequest) -> ModelResponse | None:
        """The cached response to an identical request, or None."""
        entry = self.core.get(_request(request))
        return None if entry is None else entry.response

    def set(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal | str | int | float = "0") -> bool:
        """Store ``response`` (and what it cost); False when it is not cacheable."""
        if not isinstance(response, ModelResponse):
            raise InvalidInput(f"response must be a ModelResponse, got {type(response).__name__}",
                               field="response")
        return self.core.put(_request(request), response, _money(cost_usd))

    def clear(self) -> None:
        """Drop every entry."""
        self.core.clear()

    def get_stats(self) -> CacheStats:
        """Hits, misses, savings, entries, bytes, evictions."""
        return self.core.stats()


class CostTracker:
    """Spend and budgets (in-process), rebuilt from an event log directory when given."""

    def __init__(self, registry: ModelRegistry | RegistryConfig, *,
                 data_dir: str | Path | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        from .budget._ledger import CostLedgerCore

        self.config = _config_of(registry)
        configure_logging_for(self.config)
        events: list[Event] = []
        if data_dir is not None:
            from .events._ingest import read_all_events

            events = read_all_events(data_dir, ("RequestCompleted", "RequestFailed", "FeedbackRecorded", "BudgetAlert"))
        self.core = CostLedgerCore.from_events(self.config.settings.budgets, events, clock=clock, registry=self.config)

    def record_cost(self, model_id: str, agent_type: str, cost_usd: Decimal | str | int | float) -> list[BudgetAlert]:
        """Record spend of ``model_id`` for ``agent_type``; returns the budget alerts it crossed."""
        from .budget import SpendKey

        model = _model_of(self.config, model_id)
        key = SpendKey(model.provider, model.id, _agent(agent_type))
        return self.core.record(key, _money(cost_usd))

    def get_total_cost(self, window: Literal["day", "month"] = "day") -> Decimal:
        """Everything spent in the current day or month."""
        if window not in ("day", "month"):
            raise InvalidInput("window must be 'day' or 'month'", field="window")
        return self.core.spend("global", "*", window)

    def get_budget_status(self) -> list[BudgetStatus]:
        """Every configured limit in its current window."""
        return self.core.status()


class _FacadeBackend(LocalBackend):
    """The in-process backend on the cores of the facades given: the RateLimiter's windows, the
    CostTracker's ledger (every spend recorded there, limited or not), the CacheManager's cache,
    and call outcomes to ``outcomes`` (the HealthChecker); its own cores for the rest."""

    def __init__(self, config: RegistryConfig, clock: Clock, *, rate_limiter: RateLimiter | None,
                 cost_tracker: CostTracker | None, cache_manager: CacheManager | None,
                 outcomes: OutcomePort) -> None:
        super().__init__(config, clock)
        if rate_limiter is not None:
            self.limiters = rate_limiter.cores
        if cost_tracker is not None:
            self.ledger, self.budgets_limited = cost_tracker.core, True
        if cache_manager is not None:
            self.cache_core = cache_manager.core
        self._outcomes = outcomes

    def outcomes(self, stats: StatsCore) -> OutcomePort:
        return self._outcomes


class _LiveOutcomes:
    """Call outcomes into the live statistics (pushed to selection by ``ModelSelector.sync``)
    and, with a HealthChecker, straight into its cores (in-process, no batching), then the
    selector's view of that provider's health."""

    def __init__(self, stats: StatsCore, checker: HealthChecker | None,
                 selector: ModelSelector) -> None:
        self.stats = stats
        self.checker = checker
        self.selector = selector

    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        self.stats.record(model_id, ok, latency_ms, quality, error_kind=error_kind)
        if self.checker is None or provider in self.checker.unavailable_reasons:
            return
        self.checker.record_outcome(model_id, ok, error_kind)
        self.selector.sync_health(provider)


class _LearningEvents:
    """The FailoverManager's event port: every event to the spool; the quality outcomes
    (``ResponseEvaluated``, ``FeedbackRecorded``) also folded into the learnt quality its
    selector scores with, as the Selector actor does from the log."""

    def __init__(self, spool: ResilientSpool, fold: QualityFold, selector: SelectorCore) -> None:
        self.spool = spool
        self.fold = fold
        self.selector = selector

    def check(self) -> None:
        self.spool.check()

    def write(self, events: Sequence[Event]) -> None:
        self.spool.write(events)
        changed = False
        for event in events:
            changed = self.fold.apply(event) or changed
        if changed:
            self.selector.update_quality(self.fold.snapshot())

    def write_intent(self, event: Event) -> None:
        self.spool.write_intent(event)


#: Feedback (request, source) pairs a FailoverManager remembers, to record each once.
FEEDBACK_MEMORY = 100_000
#: Failover reasons that mean the model's rate limit, not its health (a cool-down follows).
_RATE_LIMIT_REASONS = ("rate", "429", "quota_per_minute")


class FailoverManager:
    """Runs requests through the full request path in-process (selection, admission, failover
    with backoff, evaluation, cache, budgets), writing events to ``data_dir``'s spool.

    Given the other facades it acts with them as one system: it selects on the ModelSelector's
    core (health, rate limits and statistics pushed in before each request), admits on the
    RateLimiter's windows, reports every call's outcome to the HealthChecker (whose events it
    then writes), records spend in the CostTracker's ledger and caches in the CacheManager.
    Without a component it uses a private one. ``FailoverManager(model_selector=selector,
    max_retries=3)`` (the original system's form) takes the registry, the health checker and the
    rate limiter from the selector. Quality outcomes (evaluations, :meth:`feedback`) are learnt
    at once by its selection, as the Selector actor learns them from the log (which is read at
    construction)."""

    def __init__(self, registry: ModelRegistry | RegistryConfig | None = None, *,
                 model_selector: ModelSelector | None = None,
                 health_checker: HealthChecker | None = None,
                 rate_limiter: RateLimiter | None = None,
                 cost_tracker: CostTracker | None = None,
                 cache_manager: CacheManager | None = None,
                 max_retries: int | None = None,
                 env: dict[str, str] | None = None, data_dir: str | Path | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        from .events._ingest import read_all_events
        from .routing._factory import build_local_router
        from .selection import QualityFold, seed_stats

        config = self._config(registry, model_selector, max_retries)
        configure_logging_for(config, env=env)
        self.config = config
        self.model_selector = self._selector(model_selector, health_checker, rate_limiter, clock)
        self.health_checker = self.model_selector.health_checker
        self.rate_limiter = self.model_selector.rate_limiter
        self.cost_tracker = _component(cost_tracker, CostTracker, "cost_tracker", config)
        self.cache_manager = _cache(cache_manager)
        # a str, not a Path: a remote log's URI (s3://...) would lose a slash in a Path
        self.data_dir: str | Path = data_dir if data_dir is not None else config.settings.data_dir
        settings = config.settings.events
        self.spool = ResilientSpool(SpoolWriter(self.data_dir, fsync=settings.fsync,
                                                spool_dir=settings.spool_dir,
                                                fsync_interval_ms=settings.fsync_interval_ms),
                                    clock=clock)
        # no cold start: reliability as the log shows it, then as this manager's calls go
        self.stats = seed_stats(self.data_dir, [m.id for m in config.models],
                                alerts=self.spool.write)
        self.model_selector.live_stats = self.stats
        outcomes: OutcomePort = _LiveOutcomes(self.stats, self.health_checker, self.model_selector)
        backend = _FacadeBackend(config, clock, rate_limiter=self.rate_limiter,
                                 cost_tracker=self.cost_tracker, cache_manager=self.cache_manager,
                                 outcomes=outcomes)
        self.quality = QualityFold({m.id: m.quality_prior for m in config.models})
        self._feedback: OrderedDict[tuple[str, str], None] = OrderedDict()
        for event in read_all_events(self.data_dir, ("ResponseEvaluated", "FeedbackRecorded"),
                                     spool_dir=settings.spool_dir):
            self.quality.apply(event)
            if isinstance(event, FeedbackRecorded) and event.request_id:
                self._remember_feedback(event.request_id, event.source)
        core = self.model_selector.core
        core.update_quality(self.quality.snapshot())
        self.events = _LearningEvents(self.spool, self.quality, core)
        self.router = build_local_router(config, env=env, clock=clock, events=self.events,
                                         backend=backend, selector=core, stats=self.stats)
        if self.health_checker is not None:
            self.health_checker.attach_events(self.events)

    @staticmethod
    def _config(registry: ModelRegistry | RegistryConfig | None, selector: ModelSelector | None,
                max_retries: int | None) -> RegistryConfig:
        if registry is None and selector is None:
            raise InvalidInput("FailoverManager needs a registry or a model_selector", field="registry")
        config = _config_of(registry) if registry is not None else _selector_config(selector)
        if max_retries is None:
            return config
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidInput("max_retries must be an integer >= 0", field="max_retries")
        from .config import override

        return override(config, settings={"failover": {"max_attempts": max_retries + 1}})

    def _selector(self, selector: ModelSelector | None, checker: HealthChecker | None,
                  limiter: RateLimiter | None, clock: Clock) -> ModelSelector:
        selector = _component(selector, ModelSelector, "model_selector", self.config)
        checker = _component(checker, HealthChecker, "health_checker", self.config)
        limiter = _component(limiter, RateLimiter, "rate_limiter", self.config)
        if selector is None:
            return ModelSelector(self.config, checker, limiter, clock=clock)
        for name, given, held in (("health_checker", checker, selector.health_checker),
                                  ("rate_limiter", limiter, selector.rate_limiter)):
            if given is not None and held is not None and given is not held:
                raise InvalidInput(f"the model_selector watches another {name}: give the "
                                   f"FailoverManager the selector's own, or none", field=name)
        if checker is not None:
            selector.health_checker = checker  # the selector follows the checker it routes by
        if limiter is not None:
            selector.rate_limiter = limiter
        return selector

    async def execute(self, request: ModelRequest) -> ModelResponse:
        """Run one request through the full path; typed errors on failure."""
        request = _request(request)
        if type(request.agent_type) is not str:  # an AgentType member: its value, a plain string
            request = request.model_copy(update={"agent_type": _agent(request.agent_type)})
        self.model_selector.sync()
        try:
            return await self.router.complete(request)
        finally:
            self.spool.tick()  # the housekeeping an actor's loop does: fsync on the interval, rotation

    async def feedback(self, request_id: str, score: float, *, source: str = "user",
                       comment: str | None = None) -> bool:
        """Report an outcome for a request this manager answered (or the log shows evaluated):
        ``score`` in [0, 1], as ``ModelManagement.feedback``. Recorded once per (request, source)
        as a ``FeedbackRecorded`` event in the spool and learnt at once by selection; False when
        this request already had feedback from ``source`` (nothing written). ``InvalidInput``
        for an unknown request id, a score outside [0, 1] or an unknown source."""
        check_feedback(request_id, score, source, comment)
        answer = self.router.answer_of(request_id)
        if answer is None:
            known = self.quality.answer_of(request_id)
            answer = (known[0], known[1], None) if known is not None else None
        if answer is None:
            raise InvalidInput(f"unknown request id {request_id!r}: no request with this id was "
                               "answered (recently) by this FailoverManager", field="request_id")
        if (request_id, source) in self._feedback:
            return False
        model_id, agent_type, task_id = answer
        self.events.write([feedback_event(self.config, request_id, score, source, model_id,
                                          agent_type, task_id, comment)])
        self._remember_feedback(request_id, source)
        return True

    def _remember_feedback(self, request_id: str, source: str) -> None:
        self._feedback[(request_id, source)] = None
        if len(self._feedback) > FEEDBACK_MEMORY:
            self._feedback.popitem(last=False)

    def find_request(self, task_id: str, model_id: str | None = None,
                     agent_type: str | None = None) -> str | None:
        """The id of the latest request of ``task_id`` this manager answered (by ``model_id``,
        for ``agent_type``, when given), or None."""
        _text(task_id, "task_id")
        if model_id is not None:
            _model_of(self.config, model_id)
        agent = _agent(agent_type) if agent_type is not None else None
        for request_id, (answered_by, answered_for, task) in reversed(self.router.recent.items()):
            if task == task_id and model_id in (None, answered_by) and agent in (None, answered_for):
                return request_id
        return None

    def record_failover(self, original_model: str, alternative_model: str, reason: object, *,
                        task_id: str | None = None, agent_type: str | None = None,
                        retry_after_s: float | None = None) -> None:
        """A failover the caller made itself (``reason``: a string or an enum member whose value
        is one, e.g. ``rate_limited``, ``timeout``, ``unavailable``): a ``FailoverTriggered``
        event in the spool, and the live state told, as for the system's own failovers: a rate
        limit cools the model down in the rate limiter (``retry_after_s``, default 1 s); a
        quality reason changes no state (report quality with :meth:`feedback`); any other
        reason is a failed call of the model for its provider's HealthChecker."""
        original = _model_of(self.config, original_model)
        alternative = _model_of(self.config, alternative_model)
        why = _agent(reason, "reason").strip().lower()
        agent = _agent(agent_type) if agent_type is not None else None
        if task_id is not None:
            _text(task_id, "task_id")
        if retry_after_s is not None and (isinstance(retry_after_s, bool) or not isinstance(
                retry_after_s, int | float) or not 0 < retry_after_s < float("inf")):
            raise InvalidInput("retry_after_s must be a positive number of seconds",
                               field="retry_after_s")
        self.events.write([FailoverTriggered(
            task_id=task_id, agent_type=agent, model_id=original.id, provider=original.provider,
            from_model_id=original.id, to_model_id=alternative.id, reason=why,
        )])
        if any(word in why for word in _RATE_LIMIT_REASONS):
            self.router.limiters[original.id].cool_down(float(retry_after_s or 1.0))
        elif "quality" not in why and self.health_checker is not None and (
                original.provider not in self.health_checker.unavailable_reasons):
            kind = "timeout" if "timeout" in why else "server_error"
            self.health_checker.record_outcome(original.id, False, kind)
            self.model_selector.sync_health(original.provider)

    def flush(self) -> int:
        """Make what this manager wrote visible to the log's readers (PerformanceMonitor,
        ``amm report``): close the spool's open segment and move every closed spool segment of
        ``data_dir`` into the Parquet log, as the EventSink does in the actor system (safe beside
        a running EventSink: moving a segment twice writes the same file). Returns the events
        written."""
        from .events._ingest import SpoolIngestor

        self.spool.rotate()
        return SpoolIngestor(self.data_dir, self.config.settings.events).ingest()

    async def aclose(self) -> None:
        """Close the provider connections and the spool; the health checker keeps its events
        again."""
        if self.health_checker is not None:
            self.health_checker.detach_events(self.events)
        for adapter in self.router.adapters.values():
            await adapter.aclose()
        self.spool.close()


def _selector_config(selector: ModelSelector | None) -> RegistryConfig:
    if not isinstance(selector, ModelSelector):
        raise InvalidInput(f"model_selector must be a ModelSelector, got {type(selector).__name__}",
                           field="model_selector")
    return selector.config


def _cache(value: object) -> CacheManager | None:
    if value is not None and not isinstance(value, CacheManager):
        raise InvalidInput(f"cache_manager must be a CacheManager, got {type(value).__name__}",
                           field="cache_manager")
    return value
