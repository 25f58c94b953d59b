"""What the gateway's handlers call: a router in their own process, behind one small interface.

- :class:`LocalEngine` (here, no Ray): the original system's in-process components acting as one
  system (``compat``: a FailoverManager on ``build_local_router`` with a HealthChecker probing
  and told every call's outcome, a RateLimiter, a CostTracker rebuilt from the log, a cache, and
  selection that learns from evaluations and feedback); events to ``data_dir``'s spool.
- ``runtime.RayEngine``: the embedded router of a ``ModelManagement`` (the actors' leases,
  slices, health and learnt quality).

What need not precede a reply runs after it (:class:`_AfterReply`: scheduled when the router
returns, run on the event loop once the reply has been written): the evaluation of a prose answer
(``RouterCore.later``), the settlement of the registry budgets' holds (the worst case stays held
until then: the ledger never admits more meanwhile; its spend is rebuilt from the log's terminal
events on start), folding the request's events into the learnt quality, and the spool's
housekeeping (whose ``fsync`` and segment closing run in the spool's own thread). The request's
events, terminal one included, are in the spool before the router returns, as before.

With N gateway workers (processes that share no memory) each :class:`LocalEngine` holds
``share`` = 1/N of every rate limit, budget and concurrency limit (:func:`share_of`), and counts
1/N of the spend the log holds, so that together they never pass a limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from .._clock import SYSTEM_CLOCK, Clock
from .._request import ModelRequest, ModelResponse, StreamChunk
from ..budget import BudgetPort, BudgetStatus, BudgetTicket, SpendKey
from ..config import RegistryConfig, override
from ..errors import InvalidInput
from ..events import Event, FeedbackRecorded, RequestCompleted, RequestFailed
from ..ratelimit import AdmissionPort, RateLimitState, RateTicket
from ..routing import AdapterPort
from ..selection import StatsCore

log = logging.getLogger(__name__)

#: The longest a selector's view of what no request changed (health from probes, rate-limit
#: headroom freed as the window slides) may lag behind: a full sync at least this often.
FULL_SYNC_S = 0.25


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
        router = self.manager.router
        self._admission = _NotedAdmission(router.admission)
        router.admission = self._admission
        self.after_reply = _AfterReply(self._housekeeping)
        self._learning = _DeferredLearning(self.manager.events, self.after_reply.add)
        router.events = self._learning
        router.later = self.after_reply.add
        if router.budget is not None:
            router.budget = _SettledAfterReply(router.budget, self.after_reply.add)
        self.manager.spool.writer.sync_in_thread()  # fsync and closing segments off the loop
        if self.health is not None:
            router.outcomes = _HealthOutcomes(self.health, self.selector, self.manager.stats)
        self._clock: Clock = SYSTEM_CLOCK
        self._synced_at = -math.inf

    async def start(self) -> None:
        """Probe the providers once, then on the configured interval (``probe``)."""
        if self.probe:
            await self.health.start()

    def sync(self) -> None:
        """Bring the selector's view up to date before a request, as ``FailoverManager.execute``
        does with ``ModelSelector.sync`` but at a fraction of its cost: the rate-limit state of
        the models whose limiters requests changed since the last sync (what a request changes
        is seen by the next selection, exactly), and everything (health from probes, headroom
        freed by time, the quality learnt from answers) at least every ``FULL_SYNC_S``. Health
        from calls' outcomes is pushed as they happen (:class:`_HealthOutcomes`), feedback's
        quality as it is recorded."""
        now = self._clock.monotonic()
        if now - self._synced_at >= FULL_SYNC_S:
            self._synced_at = now
            self._admission.changed.clear()
            self.selector.sync()
            self._learning.push()
            if isinstance(self.manager.router.outcomes, _HealthOutcomes):
                self.manager.router.outcomes.steady.clear()
            return
        changed = self._admission.changed
        if changed:
            cores = self.selector.rate_limiter.cores if self.selector.rate_limiter else {}
            core = self.selector.core
            for model_id in changed:
                limiter = cores.get(model_id)
                if limiter is not None:
                    core.update_rate_limited(model_id, limiter.limited_until())
                    core.update_headroom(model_id, limiter.headroom())
            changed.clear()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The router's answer (``FailoverManager.execute``'s path, with :meth:`sync`)."""
        self.sync()
        try:
            return await self.manager.router.complete(request)
        finally:
            self.after_reply.schedule()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]:
        """The router's stream; closing this generator early cancels the call (the request
        ends in ``RequestFailed(cancelled)``)."""
        self.sync()
        chunks = self.manager.router.stream(request)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
            self.after_reply.schedule()

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

    def _housekeeping(self) -> None:
        """After the replies of a turn: the spool's (fsync on the interval and closing an old
        segment, both handed to its thread), then the budget alerts the settlements raised."""
        self.manager.spool.tick()
        self._budget_alerts()

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
        self.after_reply.close()  # what is still waiting, before the spool closes
        await self.manager.aclose()
        for adapter in self._unused:
            await adapter.aclose()


class _NotedAdmission:
    """The router's admission port, noting the models whose limiters a call changed (for
    :meth:`LocalEngine.sync`)."""

    def __init__(self, inner: AdmissionPort) -> None:
        self.inner = inner
        self.changed: set[str] = set()
        self.immediate = bool(getattr(inner, "immediate", False))

    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        self.changed.add(model_id)
        return self.inner.try_acquire(model_id, tokens)

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        self.changed.add(model_id)
        return await self.inner.acquire(model_id, tokens)

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        self.changed.add(ticket.model_id)
        self.inner.commit(ticket, actual_tokens)

    def release(self, ticket: RateTicket) -> None:
        self.changed.add(ticket.model_id)
        self.inner.release(ticket)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self.changed.add(model_id)
        self.inner.cool_down(model_id, retry_after_s)

    def observe(self, model_id: str, state: RateLimitState) -> None:
        self.changed.add(model_id)
        self.inner.observe(model_id, state)


class _AfterReply:
    """Work that need not precede a reply (``add``), run by :meth:`run` on the event loop after
    the replies of the current turn are written: :meth:`schedule` (when the router returns)
    queues the run behind what the turn queues (the transport sends a reply at the end of its
    turn, ``_server.OneSendTransport``). Each job runs once; one that fails is logged. After the
    jobs, ``housekeeping``."""

    def __init__(self, housekeeping: Callable[[], None]) -> None:
        self._housekeeping = housekeeping
        self._jobs: list[Callable[[], None]] = []
        self._scheduled = False
        self._closed = False

    def add(self, job: Callable[[], None]) -> None:
        self._jobs.append(job)

    def schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream finalized outside the loop: nothing to wait for
            self.run()
            return
        self._scheduled = True
        loop.call_soon(loop.call_soon, self.run)  # after the callbacks this turn schedules

    def close(self) -> None:
        """Run what is waiting; nothing runs after (the engine is closing its spool)."""
        self.run()
        self._closed = True

    def run(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        while self._jobs:  # a job may add more (its events' folding)
            jobs, self._jobs = self._jobs, []
            for job in jobs:
                try:
                    job()
                except Exception:  # noqa: BLE001 - one job's failure must not drop the others
                    log.exception("gateway: work after a reply failed")
        try:
            self._housekeeping()
        except Exception:  # noqa: BLE001
            log.exception("gateway: housekeeping after a reply failed")


class _SettledAfterReply:
    """The router's budget port, settling after the reply: until then the call's worst case
    stays held (admission only sees less headroom, never more); the amount is the one the
    terminal event records."""

    def __init__(self, inner: BudgetPort, later: Callable[[Callable[[], None]], None]) -> None:
        self.inner = inner
        self._later = later
        self.immediate = bool(getattr(inner, "immediate", False))

    def try_reserve(self, key: SpendKey, amount_usd: Decimal,
                    request_id: str | None = None) -> BudgetTicket | None:
        return self.inner.try_reserve(key, amount_usd, request_id)

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        return await self.inner.reserve(key, amount_usd, request_id)

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        inner = self.inner
        self._later(lambda: inner.settle(ticket, actual_usd))

    def release(self, ticket: BudgetTicket) -> None:
        self.inner.release(ticket)


class _DeferredLearning:
    """The router's event port: every event to the spool at once, folded into the learnt
    quality after the reply (``later``) and pushed to selection by :meth:`push` (each full
    sync) instead of after every answer; pushing re-ranks every model, so per answer it would
    leave selection's assignment cache no use."""

    def __init__(self, learning: Any,
                 later: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.learning = learning
        self.dirty = False
        self._later = later

    def check(self) -> None:
        self.learning.check()

    def write(self, events: Sequence[Event]) -> None:
        self.learning.spool.write(events)
        if self._later is None:
            self._fold(events)
        else:
            batch = tuple(events)
            self._later(lambda: self._fold(batch))

    def _fold(self, events: Sequence[Event]) -> None:
        fold = self.learning.fold
        for event in events:
            if fold.apply(event):
                self.dirty = True

    def write_intent(self, event: Event) -> None:
        self.learning.write_intent(event)

    def push(self) -> None:
        if self.dirty:
            self.dirty = False
            self.learning.selector.update_quality(self.learning.fold.snapshot())


class _HealthOutcomes:
    """Call outcomes into the HealthChecker, then the selector's view of that provider's health
    (as ``compat``'s port), except after a success on a provider known ``steady`` (healthy,
    no model unavailable): a success there changes nothing. The set is emptied by every full
    sync (probes may have changed a state meanwhile). Every outcome is also folded into the live
    statistics (``stats``, seeded from the log), which the full sync pushes to selection."""

    def __init__(self, checker: Any, selector: Any, stats: StatsCore) -> None:
        self.checker = checker
        self.selector = selector
        self.stats = stats
        self.steady: set[str] = set()

    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        self.stats.record(model_id, ok, latency_ms, quality, error_kind=error_kind)
        checker = self.checker
        if provider in checker.unavailable_reasons:
            return
        state = checker.record_outcome(model_id, ok, error_kind)
        if ok and provider in self.steady:
            return
        self.selector.sync_health(provider)
        if state == "healthy" and not checker.cores[provider].snapshot().unavailable_models:
            self.steady.add(provider)
        else:
            self.steady.discard(provider)


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
