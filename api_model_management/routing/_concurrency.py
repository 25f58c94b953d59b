"""In-flight limits per provider, per model and overall (config ``settings.concurrency``).

Limits are system-wide in the configuration; each of ``replicas`` routers enforces its share
(rounded up), so the total in flight never exceeds ``limit + replicas - 1`` and equals the limit
whenever it divides evenly.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..config import ConcurrencySettings
from ..errors import ConcurrencyLimitTimeout


class ConcurrencyLimits:
    def __init__(self, settings: ConcurrencySettings, *, replicas: int = 1) -> None:
        self.settings = settings
        self.replicas = max(1, replicas)
        self._overall = asyncio.Semaphore(self._share(settings.max_in_flight))
        self._providers: dict[str, asyncio.Semaphore] = {}
        self._models: dict[str, asyncio.Semaphore] = {}

    def _share(self, limit: int) -> int:
        return max(1, math.ceil(limit / self.replicas))

    def _provider(self, name: str) -> asyncio.Semaphore:
        sem = self._providers.get(name)
        if sem is None:
            limit = self.settings.per_provider.get(name, self.settings.default_per_provider)
            sem = self._providers[name] = asyncio.Semaphore(self._share(limit))
        return sem

    def _model(self, model_id: str) -> asyncio.Semaphore:
        sem = self._models.get(model_id)
        if sem is None:
            limit = self.settings.per_model.get(model_id, self.settings.default_per_model)
            sem = self._models[model_id] = asyncio.Semaphore(self._share(limit))
        return sem

    @asynccontextmanager
    async def slot(self, provider: str, model_id: str, *, timeout_s: float) -> AsyncIterator[None]:
        """Hold one slot of each limit, or raise ConcurrencyLimitTimeout within ``timeout_s``."""
        # most specific first: a request waiting for its model holds no provider or overall slot
        # that another model's request could use
        sems = (self._model(model_id), self._provider(provider), self._overall)
        taken: list[asyncio.Semaphore] = []
        try:
            for sem in sems:
                if sem.locked():
                    try:
                        await asyncio.wait_for(sem.acquire(), timeout=max(0.0, timeout_s))
                    except TimeoutError:
                        raise ConcurrencyLimitTimeout(
                            f"no in-flight slot for {model_id} within the deadline",
                            provider=provider, model_id=model_id,
                        ) from None
                else:
                    await sem.acquire()
                taken.append(sem)
            yield
        finally:
            for sem in reversed(taken):
                sem.release()

    def in_flight(self) -> dict[str, int]:
        return {name: self._share(self.settings.per_provider.get(name, self.settings.default_per_provider)) - s._value
                for name, s in self._providers.items()}
