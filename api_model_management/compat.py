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
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._clock import SYSTEM_CLOCK, Clock
from ._request import ModelRequest, ModelResponse
from .budget import BudgetStatus
from .cache import CacheStats
from .config import ModelConfig, ProviderConfig, RegistryConfig, Settings, load_config
from .errors import InvalidInput
from .events import BudgetAlert, CandidateScore, Event
from .events._resilient import ResilientSpool
from .events._spool import SpoolWriter
from .ratelimit import Admission, RateLimiterCore, RateLimitStatus

if TYPE_CHECKING:
    from .projections import PerformanceMonitor
    from .providers import ProviderAdapter

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


class HealthChecker:
    """One health core per provider, probing on the configured interval while started.

    Providers whose API key is missing are reported unavailable with the reason and never probed.
    """

    def __init__(self, registry: ModelRegistry | RegistryConfig, *,
                 env: dict[str, str] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        from .config._secrets import load_secrets
        from .health._core import HealthCore

        self.config = _config_of(registry)
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

    async def start(self) -> None:
        """Probe every provider that has a key once now, then on the interval in the background."""
        from .providers import make_adapter

        for name, provider in self.config.providers.items():
            if name not in self.unavailable_reasons:
                self._adapters[name] = make_adapter(name, provider, self.secrets.key_for(name))
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
            self.cores[name].drain_events()

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
        self.cores = {
            m.id: RateLimiterCore(m.id, m.rate_limits.requests_per_minute, m.rate_limits.tokens_per_minute,
                                  settings=self.config.settings.rate_limit, clock=clock, provider=m.provider)
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
    """The original system's selection result."""

    model_id: str
    suitability_score: float
    selection_reason: str
    fallback_models: list[str] = field(default_factory=list)
    provider: str = ""
    candidates: tuple[CandidateScore, ...] = ()


class ModelSelector:
    """Selection over the live state of a HealthChecker, RateLimiter and PerformanceMonitor."""

    def __init__(self, registry: ModelRegistry | RegistryConfig,
                 health_checker: HealthChecker | None = None,
                 rate_limiter: RateLimiter | None = None,
                 performance_monitor: PerformanceMonitor | None = None,
                 *, clock: Clock = SYSTEM_CLOCK) -> None:
        from .selection._core import SelectorCore

        self.config = _config_of(registry)
        self.health_checker = health_checker
        self.rate_limiter = rate_limiter
        self.performance_monitor = performance_monitor
        self.core = SelectorCore(self.config, clock=clock)

    def _sync(self) -> None:
        if self.health_checker is not None:
            for name in self.config.providers:
                unavailable = []
                if name not in self.health_checker.unavailable_reasons:
                    unavailable = list(self.health_checker.cores[name].snapshot().unavailable_models)
                wire_to_id = {m.wire_name: m.id for m in self.config.models if m.provider == name}
                self.core.update_health(name, self.health_checker.provider_state(name),
                                        [wire_to_id.get(u, u) for u in unavailable])
        if self.rate_limiter is not None:
            for model_id, core in self.rate_limiter.cores.items():
                self.core.update_rate_limited(model_id, core.limited_until())
                self.core.update_headroom(model_id, core.headroom())
        if self.performance_monitor is not None:
            stats = self.performance_monitor.model_stats()
            if stats:
                self.core.update_stats(stats)

    async def select_model(self, request: ModelRequest, agent_type: str | None = None) -> ModelSelection:
        """The best model for ``request`` (as ``agent_type`` when given), its score, the reason
        and the fallbacks, over the live state of the components given."""
        request = _request(request)
        if agent_type is not None:
            _text(agent_type, "agent_type")
        if agent_type is not None and agent_type != request.agent_type:
            request = request.model_copy(update={"agent_type": agent_type})
        self._sync()
        selection = self.core.select(request)
        return ModelSelection(
            model_id=selection.model_id, suitability_score=selection.suitability_score,
            selection_reason=selection.selection_reason, fallback_models=selection.fallbacks,
            provider=selection.provider, candidates=selection.candidates,
        )

    def clear_assignment_cache(self) -> None:
        self.core.clear_assignment_cache()


class CacheManager:
    """The response cache (in-process)."""

    def __init__(self, registry: ModelRegistry | RegistryConfig | None = None, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        from .cache._core import CacheCore
        from .config import CacheSettings

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
        events: list[Event] = []
        if data_dir is not None:
            from .events._ingest import read_all_events

            events = read_all_events(data_dir, ("RequestCompleted", "RequestFailed", "FeedbackRecorded", "BudgetAlert"))
        self.core = CostLedgerCore.from_events(self.config.settings.budgets, events, clock=clock, registry=self.config)

    def record_cost(self, model_id: str, agent_type: str, cost_usd: Decimal | str | int | float) -> list[BudgetAlert]:
        """Record spend of ``model_id`` for ``agent_type``; returns the budget alerts it crossed."""
        from .budget import SpendKey

        model = _model_of(self.config, model_id)
        key = SpendKey(model.provider, model.id, _text(agent_type, "agent_type"))
        return self.core.record(key, _money(cost_usd))

    def get_total_cost(self, window: Literal["day", "month"] = "day") -> Decimal:
        """Everything spent in the current day or month."""
        if window not in ("day", "month"):
            raise InvalidInput("window must be 'day' or 'month'", field="window")
        return self.core.spend("global", "*", window)

    def get_budget_status(self) -> list[BudgetStatus]:
        """Every configured limit in its current window."""
        return self.core.status()


class FailoverManager:
    """Runs requests through the full request path in-process (selection, admission, failover
    with backoff, evaluation, cache, budgets), writing events to ``data_dir``'s spool."""

    def __init__(self, registry: ModelRegistry | RegistryConfig, *,
                 env: dict[str, str] | None = None, data_dir: str | Path | None = None) -> None:
        from .routing._factory import build_local_router

        self.config = _config_of(registry)
        self.router = build_local_router(self.config, env=env, data_dir=data_dir)

    async def execute(self, request: ModelRequest) -> ModelResponse:
        """Run one request through the full path; typed errors on failure."""
        return await self.router.complete(_request(request))

    async def aclose(self) -> None:
        """Close the provider connections and the spool."""
        for adapter in self.router.adapters.values():
            await adapter.aclose()
        if isinstance(self.router.events, ResilientSpool | SpoolWriter):
            self.router.events.close()
