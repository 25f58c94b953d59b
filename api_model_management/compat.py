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

from ._clock import SYSTEM_CLOCK, Clock
from ._request import ModelRequest, ModelResponse
from .config import ModelConfig, ProviderConfig, RegistryConfig, Settings, load_config
from .errors import InvalidInput

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
        return next((m for m in self.config.models if m.id == model_id), None)

    def list_models(
        self,
        capability: str | Iterable[str] | None = None,
        provider: str | None = None,
        enabled_only: bool = True,
    ) -> list[ModelConfig]:
        """Models in file order, filtered by capability (all given must be present), provider and
        ``enabled``."""
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


def _config_of(registry) -> RegistryConfig:
    if isinstance(registry, RegistryConfig):
        return registry
    config = getattr(registry, "config", None)
    if config is None:
        config = registry.load_config()
    return config


class HealthChecker:
    """One health core per provider, probing on the configured interval while started.

    Providers whose API key is missing are reported unavailable with the reason and never probed.
    """

    def __init__(self, registry, *, env: dict | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
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
        self._adapters: dict = {}
        self._task: asyncio.Task | None = None

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
        async def one(name, adapter):
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
        if provider in self.unavailable_reasons:
            return "unhealthy"
        return self.cores[provider].state

    def is_available(self, model_id: str) -> bool:
        model = self.config.model(model_id)
        if model.provider in self.unavailable_reasons:
            return False
        snap = self.cores[model.provider].snapshot()
        return snap.allows_traffic and model.wire_name not in snap.unavailable_models

    def get_status(self) -> dict[str, dict]:
        out = {}
        for name, core in self.cores.items():
            snap = core.snapshot()
            out[name] = {"state": self.provider_state(name),
                         "reason": self.unavailable_reasons.get(name, snap.reason if hasattr(snap, "reason") else ""),
                         "unavailable_models": list(snap.unavailable_models)}
        return out


class RateLimiter:
    """One RPM/TPM window per model (in-process)."""

    def __init__(self, registry, *, clock: Clock = SYSTEM_CLOCK) -> None:
        from .ratelimit._core import RateLimiterCore

        self.config = _config_of(registry)
        self.cores = {
            m.id: RateLimiterCore(m.id, m.rate_limits.requests_per_minute, m.rate_limits.tokens_per_minute,
                                  settings=self.config.settings.rate_limit, clock=clock, provider=m.provider)
            for m in self.config.models
        }

    def is_rate_limited(self, model_id: str) -> bool:
        return self._core(model_id).is_limited()

    def check_rate_limit(self, model_id: str, tokens: int = 0):
        """Reserve capacity for one request; returns the admission (``granted``, ``retry_after_s``)."""
        return self._core(model_id).reserve(tokens)

    def record_usage(self, model_id: str, reservation_id: str, actual_tokens: int) -> None:
        self._core(model_id).commit(reservation_id, actual_tokens)

    def status(self, model_id: str):
        return self._core(model_id).status()

    def _core(self, model_id: str):
        try:
            return self.cores[model_id]
        except KeyError:
            raise InvalidInput(f"unknown model {model_id!r}", model_id=model_id) from None


@dataclass
class ModelSelection:
    """The original system's selection result."""

    model_id: str
    suitability_score: float
    selection_reason: str
    fallback_models: list[str] = field(default_factory=list)
    provider: str = ""
    candidates: tuple = ()


class ModelSelector:
    """Selection over the live state of a HealthChecker, RateLimiter and PerformanceMonitor."""

    def __init__(self, registry, health_checker: HealthChecker | None = None,
                 rate_limiter: RateLimiter | None = None, performance_monitor=None,
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

    def __init__(self, registry=None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        from .cache._core import CacheCore
        from .config import CacheSettings

        settings = _config_of(registry).settings.cache if registry is not None else CacheSettings()
        self.core = CacheCore(settings, clock=clock)

    def get(self, request: ModelRequest) -> ModelResponse | None:
        entry = self.core.get(request)
        return None if entry is None else entry.response

    def set(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal | str = "0") -> bool:
        return self.core.put(request, response, Decimal(str(cost_usd)))

    def clear(self) -> None:
        self.core.clear()

    def get_stats(self):
        return self.core.stats()


class CostTracker:
    """Spend and budgets (in-process), rebuilt from an event log directory when given."""

    def __init__(self, registry, *, data_dir: str | Path | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        from .budget._ledger import CostLedgerCore

        self.config = _config_of(registry)
        events = []
        if data_dir is not None:
            from .events._ingest import read_all_events

            events = read_all_events(data_dir, ("RequestCompleted", "RequestFailed", "FeedbackRecorded", "BudgetAlert"))
        self.core = CostLedgerCore.from_events(self.config.settings.budgets, events, clock=clock, registry=self.config)

    def record_cost(self, model_id: str, agent_type: str, cost_usd: Decimal | str):
        from .budget import SpendKey

        model = self.config.model(model_id)
        return self.core.record(SpendKey(model.provider, model.id, agent_type), Decimal(str(cost_usd)))

    def get_total_cost(self, window: str = "day") -> Decimal:
        return self.core.spend("global", "*", window)

    def get_budget_status(self):
        return self.core.status()


class FailoverManager:
    """Runs requests through the full request path in-process (selection, admission, failover
    with backoff, evaluation, cache, budgets), writing events to ``data_dir``'s spool."""

    def __init__(self, registry, *, env: dict | None = None, data_dir: str | Path | None = None) -> None:
        from .routing._factory import build_local_router

        self.config = _config_of(registry)
        self.router = build_local_router(self.config, env=env, data_dir=data_dir)

    async def execute(self, request: ModelRequest) -> ModelResponse:
        return await self.router.complete(request)

    async def aclose(self) -> None:
        for adapter in self.router.adapters.values():
            await adapter.aclose()
        self.router.events.close()
