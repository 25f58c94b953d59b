"""What the gateway's handlers call: a router in their own process, behind one small interface.

- :class:`LocalEngine` (here, no Ray): the original system's in-process components acting as one
  system (``compat``: a FailoverManager on ``build_local_router`` with a HealthChecker probing
  and told every call's outcome, a RateLimiter, a CostTracker rebuilt from the log, a cache, and
  selection that learns from evaluations and feedback); events to ``data_dir``'s spool.
- ``runtime.RayEngine``: the embedded router of a ``ModelManagement`` (the actors' leases,
  slices, health and learnt quality).

With N gateway workers (processes that share no memory) each :class:`LocalEngine` holds
``share`` = 1/N of every rate limit, budget and concurrency limit (:func:`share_of`), and counts
1/N of the spend the log holds, so that together they never pass a limit.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Mapping
from decimal import Decimal
from typing import Protocol

from .._request import ModelRequest, ModelResponse, StreamChunk
from ..budget import BudgetStatus
from ..config import RegistryConfig, override
from ..errors import InvalidInput
from ..events import Event, FeedbackRecorded, RequestCompleted, RequestFailed
from ..routing import AdapterPort


class GatewayEngine(Protocol):
    """The request path as the gateway uses it."""

    config: RegistryConfig
    #: ``standalone`` or ``ray`` (in ``/health``)
    mode: str

    async def start(self) -> None: ...

    async def complete(self, request: ModelRequest) -> ModelResponse: ...

    def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]: ...

    async def feedback(self, request_id: str, score: float, source: str,
                       comment: str | None) -> bool: ...

    async def provider_health(self) -> dict[str, str]:
        """Each provider's state: healthy, degraded, half_open or unhealthy (``unknown`` when
        it cannot be asked)."""
        ...

    async def budget_status(self) -> list[BudgetStatus]:
        """Every registry budget limit in its current window."""
        ...

    async def aclose(self) -> None: ...


def share_of(config: RegistryConfig, share: float) -> RegistryConfig:
    """``config`` with ``share`` of every rate limit (at least 1 request and 1 token a minute),
    budget limit and concurrency limit (at least 1): one worker's part of N."""
    if share >= 1:
        return config
    models = [{"id": m.id, "rate_limits": {
        "requests_per_minute": max(1, math.floor(m.rate_limits.requests_per_minute * share)),
        "tokens_per_minute": max(1, math.floor(m.rate_limits.tokens_per_minute * share))}}
        for m in config.models]
    data = config.model_dump(mode="python")
    for model, part in zip(data["models"], models, strict=True):
        model["rate_limits"] = part["rate_limits"]
    budgets = data["settings"]["budgets"]
    fraction = Decimal(str(share))
    for limit in budgets["limits"]:
        limit["limit_usd"] = (Decimal(limit["limit_usd"]) * fraction).quantize(Decimal("1e-12"))
    concurrency = data["settings"]["concurrency"]
    for name in ("max_in_flight", "default_per_provider", "default_per_model"):
        concurrency[name] = max(1, math.floor(concurrency[name] * share))
    for table in ("per_provider", "per_model"):
        concurrency[table] = {k: max(1, math.floor(v * share))
                              for k, v in concurrency[table].items()}
    return override(config, models=data["models"], settings=data["settings"])


def scaled_spend(events: list[Event], share: float) -> list[Event]:
    """The log's spend as one worker counts it: each cost times ``share`` (alerts dropped: they
    were raised on the whole limits)."""
    fraction = Decimal(str(share))
    out: list[Event] = []
    for event in events:
        if isinstance(event, RequestCompleted | RequestFailed | FeedbackRecorded):
            out.append(event.model_copy(update={"cost_usd": event.cost_usd * fraction}))
    return out


class LocalEngine:
    """The standalone engine: one process's router on the in-process components."""

    mode = "standalone"

    def __init__(self, config: RegistryConfig, *, env: Mapping[str, str] | None = None,
                 share: float = 1.0, probe: bool = True,
                 adapters: Mapping[str, AdapterPort] | None = None) -> None:
        """``env``: where provider keys are read (default the process environment and
        ``.env``); ``probe``: probe the providers on the configured interval; ``adapters``:
        the provider adapters to call instead of those built from the configuration."""
        from ..budget._ledger import CostLedgerCore
        from ..compat import (
            CacheManager,
            CostTracker,
            FailoverManager,
            HealthChecker,
            ModelSelector,
            RateLimiter,
        )
        from ..events._ingest import read_all_events

        self.share = share
        self.config = share_of(config, share)
        self.probe = probe
        data_dir = self.config.settings.data_dir
        plain_env = dict(env) if env is not None else None
        self.health = HealthChecker(self.config, env=plain_env)
        self.selector = ModelSelector(self.config, self.health, RateLimiter(self.config))
        self.costs = CostTracker(self.config)
        spent = read_all_events(data_dir, ("RequestCompleted", "RequestFailed", "FeedbackRecorded",
                                           "BudgetAlert"))
        if share < 1:
            spent = scaled_spend(spent, share)
        self.costs.core = CostLedgerCore.from_events(self.config.settings.budgets, spent,
                                                     registry=self.config)
        self.manager = FailoverManager(self.config, model_selector=self.selector,
                                       cost_tracker=self.costs,
                                       cache_manager=CacheManager(self.config),
                                       env=plain_env, data_dir=data_dir)
        self._unused: list[AdapterPort] = []
        if adapters is not None:
            self._unused = list(self.manager.router.adapters.values())
            self.manager.router.adapters = dict(adapters)

    async def start(self) -> None:
        """Probe the providers once, then on the configured interval (``probe``)."""
        if self.probe:
            await self.health.start()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        try:
            return await self.manager.execute(request)
        finally:
            self._budget_alerts()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]:
        """The router's stream; closing this generator early cancels the call (the request
        ends in ``RequestFailed(cancelled)``)."""
        self.selector.sync()
        chunks = self.manager.router.stream(request)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
            self.manager.spool.tick()
            self._budget_alerts()

    async def feedback(self, request_id: str, score: float, source: str,
                       comment: str | None) -> bool:
        """Feedback for a request this process answered, or (another worker's) one the log
        holds: looked up there when this process does not know the id."""
        try:
            return await self.manager.feedback(request_id, score, source=source, comment=comment)
        except InvalidInput as exc:
            if getattr(exc, "field", None) != "request_id" or not isinstance(request_id, str):
                raise
            found = await asyncio.to_thread(answer_in_log, self.config.settings.data_dir,
                                            request_id, source)
            if found is None:
                raise
            answer, already = found
            if already:
                return False
            self.manager.router.recent[request_id] = answer
            return await self.manager.feedback(request_id, score, source=source, comment=comment)

    async def provider_health(self) -> dict[str, str]:
        return {name: str(status["state"]) for name, status in self.health.get_status().items()}

    async def budget_status(self) -> list[BudgetStatus]:
        return self.costs.get_budget_status()

    def _budget_alerts(self) -> None:
        """The ledger's budget alerts into the log (one worker of N: dropped, they would be
        about its share)."""
        alerts = self.costs.core.drain_events()
        if alerts and self.share >= 1:
            self.manager.events.write(alerts)

    async def aclose(self) -> None:
        """Stop probing, close the provider connections and the spool (its segment is then
        ingested by whoever ingests: the server's parent process)."""
        await self.health.stop()
        await self.manager.aclose()
        for adapter in self._unused:
            await adapter.aclose()


def answer_in_log(data_dir: str, request_id: str,
                  source: str) -> tuple[tuple[str, str, str | None], bool] | None:
    """``((model id, agent type, task id), whether feedback from source is logged)`` of a request
    the log holds as completed, or None."""
    from ..projections import open_projections

    with open_projections(data_dir) as log:
        rows = log.query("SELECT model_id, agent_type, task_id FROM request_completed "
                         "WHERE request_id = $id LIMIT 1", {"id": request_id})
        if not rows:
            return None
        given = log.query("SELECT count(*) AS n FROM feedback_recorded WHERE request_id = $id "
                          "AND source = $source", {"id": request_id, "source": source})
    row = rows[0]
    return (row["model_id"], row["agent_type"], row["task_id"]), bool(given[0]["n"])
