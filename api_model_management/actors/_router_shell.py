"""The Router actor's shell: builds a RouterCore with Ray ports, runs housekeeping."""

from __future__ import annotations

import asyncio
import logging
import time

from .._clock import SYSTEM_CLOCK
from .._request import ModelRequest
from ..config import RegistryConfig
from ..events._spool import SpoolWriter

log = logging.getLogger(__name__)

_HOUSEKEEPING_S = 0.1
_STATS_PUSH_S = 2.0
_RESUBSCRIBE_S = 5.0


class RouterShell:
    def __init__(
        self,
        config: RegistryConfig,
        index: int | str,
        *,
        limiters: dict,
        ledger,
        cache,
        health: dict,
        selector,
        api_keys: dict,
    ) -> None:
        from ..providers import make_adapter
        from ._ray_ports import RayAdmission, RayBudget, RayCache, RayOutcomes
        from .cache import CacheCore
        from .router import RouterCore
        from .selector import SelectorCore
        from .stats import StatsCore

        self.config = config
        self.index = index
        holder = f"router-{index}-{int(time.time() * 1000)}"
        settings = config.settings
        self.adapters = {
            name: make_adapter(name, provider, api_keys.get(name))
            for name, provider in config.providers.items()
        }
        self.selector = SelectorCore(config, clock=SYSTEM_CLOCK)
        self.stats = StatsCore()
        self.spool = SpoolWriter(
            settings.data_dir, holder, fsync=settings.events.fsync,
            fsync_interval_ms=settings.events.fsync_interval_ms,
        )
        self.admission = RayAdmission(
            limiters, holder, lease_requests=settings.rate_limit.lease_requests,
            lease_tokens=settings.rate_limit.lease_tokens,
        )
        self.budget = RayBudget(ledger, config, holder) if settings.budgets.limits else None
        self.outcomes = RayOutcomes(health, self.stats)
        self.cache = RayCache(cache, CacheCore(settings.cache, clock=SYSTEM_CLOCK))
        self.selector_actor = selector
        self.core = RouterCore(
            config, adapters=self.adapters, selector=self.selector, admission=self.admission,
            budget=self.budget, events=self.spool, cache=self.cache, outcomes=self.outcomes,
            replicas=settings.routers.count(),
        )
        self.health_actors = health
        self._task: asyncio.Task | None = None
        self._last_stats_push = 0.0
        self._last_subscribe = time.monotonic()

    async def start(self) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._housekeeping())
        return True

    async def _housekeeping(self) -> None:
        from ray.exceptions import RayError

        while True:
            await asyncio.sleep(_HOUSEKEEPING_S)
            try:
                await self._tick()
            except (RayError, OSError) as exc:  # one bad tick must not end housekeeping
                log.warning("router housekeeping: %s; retrying next tick", type(exc).__name__)

    async def _tick(self, *, everything: bool = False) -> None:
        self.outcomes.flush()
        self.admission.return_idle()
        if self.budget is not None:
            await self.budget.flush(everything=everything)
        self.spool.tick()
        now = time.monotonic()
        if now - self._last_stats_push >= _STATS_PUSH_S:
            self._last_stats_push = now
            snapshot = self.stats.snapshot()
            self.selector.update_stats(snapshot)
            if self.selector_actor is not None:
                self.selector_actor.update_stats.remote(snapshot)
        if now - self._last_subscribe >= _RESUBSCRIBE_S:
            self._last_subscribe = now
            self._resubscribe()

    def _resubscribe(self) -> None:
        """Make sure every HealthChecker (a restarted one too) pushes to this router."""
        import ray

        me = ray.get_runtime_context().current_actor
        for actor in self.health_actors.values():
            actor.add_subscribers.remote([me, self.selector_actor])
        if self.selector_actor is not None:
            self.selector_actor.add_subscribers.remote([me])

    # -- the request path --------------------------------------------------------------------
    async def complete(self, request: ModelRequest):
        if self._task is None:
            await self.start()
        return await self.core.complete(request)

    async def stream(self, request: ModelRequest):
        async for chunk in self.core.stream(request):
            yield chunk

    def select(self, request: ModelRequest):
        return self.selector.select(request)

    # -- pushed state ------------------------------------------------------------------------
    def update_health(self, provider: str, state: str, unavailable_models: list) -> bool:
        self.selector.update_health(provider, state, unavailable_models)
        return True

    def update_rate_limited(self, model_id: str, until_monotonic: float | None) -> bool:
        self.selector.update_rate_limited(model_id, until_monotonic)
        self.admission.set_cooling(model_id, until_monotonic)
        return True

    def set_weights(self, weights, version: str) -> bool:
        self.selector.set_weights(weights, version)
        return True

    # -- operations --------------------------------------------------------------------------
    async def flush_events(self) -> bool:
        """Close the spool segment and hand back leases and budget slices (end of a run)."""
        await self._tick(everything=True)
        refs = self.admission.return_all()
        if refs:
            await asyncio.gather(*refs)
        self.spool.rotate()
        return True

    def counters(self) -> dict:
        return dict(self.core.counters)

    async def ping(self) -> bool:
        return await self.start()  # a restarted router resumes housekeeping on first contact

    def pid(self) -> int:
        import os

        return os.getpid()

    async def aclose(self) -> bool:
        await self.flush_events()
        for adapter in self.adapters.values():
            await adapter.aclose()
        return True
