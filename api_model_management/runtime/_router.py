"""The Router actor's shell: one router replica on the system's actors (built by the one router
factory with a ``RayBackend``), plus its housekeeping: outcomes to the health checkers, idle
leases and slices back, statistics to the Selector, re-subscription to restarted actors, events
the spool could not take written back or, after a grace period, handed to the EventSink."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock, Every
from .._feedback import check_feedback  # the one rule (no Ray there: the facades use it too)
from .._request import ModelRequest, ModelResponse, StreamChunk
from .._supervise import Supervisor
from ..budget import SliceBudget
from ..cache import TieredCache
from ..config import RegistryConfig, SelectionWeights
from ..config._logging import configure_actor_logging
from ..errors import ComponentUnavailable, EventsNotShipped
from ..events._resilient import ResilientSpool
from ..events._shipper import GroupShipper, spool_shipper
from ..events._spool import SpoolWriter
from ..ratelimit import LeaseAdmission
from ..routing import BatchedOutcomes, RouterCore, build_router, make_adapters
from ..selection import QualitySnapshot, Selection, SelectorCore, StatsCore, seed_stats
from . import _ray
from ._limiters import LimiterDirectory
from ._ports import RayBackend
from ._ray import Handle

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 0.1
#: The longest pause of housekeeping after repeated failures.
HOUSEKEEPING_MAX_BACKOFF_S = 1.0
STATS_PUSH_S = 2.0
RESUBSCRIBE_S = 5.0
CACHE_PURGE_S = 60.0


class RouterShell:
    def __init__(
        self,
        config: RegistryConfig,
        index: int | str,
        *,
        limiters: LimiterDirectory | Mapping[str, Handle],
        ledger: Handle,
        cache: Handle | None,
        health: Mapping[str, Handle],
        selector: Handle | None,
        api_keys: Mapping[str, Any],
        sink: Handle | None = None,
        sinks: Mapping[str, Handle] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        configure_actor_logging(config)
        self.config = config
        self.index = index
        self.holder = f"router-{index}-{int(time.time() * 1000)}"
        self.node_id = _ray.current_node_id() if _ray.is_initialized() else None
        settings = config.settings
        if self.node_id is not None:  # this node's spool ({node_id} in spool_dir filled in)
            from ..events._local import node_settings

            settings = node_settings(settings, self.node_id)
        self.clock = clock
        self.adapters = make_adapters(config, api_keys)
        self.selector = SelectorCore(config, clock=clock)
        shipped = settings.events.ack == "shipped"
        self.spool = SpoolWriter(
            settings.data_dir, self.holder, fsync=settings.events.fsync,
            fsync_interval_ms=settings.events.fsync_interval_ms, spool_dir=settings.events.spool_dir,
            ships=shipped,
        )
        self.events = ResilientSpool(self.spool, clock=clock)
        #: ``ack="shipped"``: this router ships its own spool to the log (``events._shipper``)
        self.shipper: GroupShipper | None = spool_shipper(
            self.spool, settings.data_dir, timeout_s=settings.events.ack_timeout_s,
            pending=lambda: self.events.queued_events) if shipped else None
        # no cold start: what the log shows of each model (a restarted router reads it again);
        # build_router hands them to the selector before the first request
        self.stats: StatsCore = seed_stats(settings.data_dir, [m.id for m in config.models],
                                           alerts=self.events.write)
        backend = RayBackend(config, limiters=limiters, ledger=ledger, cache=cache, health=health)
        self.core: RouterCore = build_router(
            config, backend, holder=self.holder, events=self.events, adapters=self.adapters,
            clock=clock, stats=self.stats, selector=self.selector, replicas=settings.routers.count(),
            acks=self.shipper,
        )
        assert isinstance(self.core.admission, LeaseAdmission)
        assert isinstance(self.core.outcomes, BatchedOutcomes)
        self.admission: LeaseAdmission = self.core.admission
        self.outcomes: BatchedOutcomes = self.core.outcomes
        self.budget: SliceBudget | None = (
            self.core.budget if isinstance(self.core.budget, SliceBudget) else None
        )
        self.selector_actor = selector
        self.health_actors = health
        #: the EventSink of this router's node (where its spool is), else the one given
        self.sink = (sinks or {}).get(self.node_id or "", sink)
        self.supervisor = Supervisor(f"router {index}: housekeeping", backoff_s=HOUSEKEEPING_S,
                                     max_backoff_s=HOUSEKEEPING_MAX_BACKOFF_S)
        self._task: asyncio.Task[None] | None = None
        self._stats_push = Every(STATS_PUSH_S, clock, start_due=True)
        self._resubscribe_timer = Every(RESUBSCRIBE_S, clock, start_due=False)
        self._cache_purge = Every(CACHE_PURGE_S, clock, start_due=False)

    async def start(self) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._housekeeping())
        return True

    async def _housekeeping(self) -> None:
        await self.supervisor.run(self._housekeeping_step, initial_delay_s=HOUSEKEEPING_S)

    async def _housekeeping_step(self) -> float:
        await self._tick()
        return HOUSEKEEPING_S

    async def _tick(self, *, everything: bool = False) -> None:
        self.events.tick()  # first: the events of billed calls waiting in memory
        if self.shipper is not None:
            self.shipper.tick()  # segments closed by age, shipped in the background
        await self._hand_off(everything=everything)
        self.outcomes.flush()
        self.admission.return_idle()
        if self.budget is not None:
            await self.budget.flush(everything=everything)
        if self._stats_push.due():
            snapshot = self.stats.snapshot()
            self.selector.update_stats(snapshot)
            if self.selector_actor is not None:
                _ray.tell(self.selector_actor, "update_stats", snapshot)
        if self._resubscribe_timer.due():
            self._resubscribe()
        if self._cache_purge.due() and isinstance(self.core.cache, TieredCache):
            self.core.cache.local.purge_expired()

    async def _hand_off(self, *, everything: bool = False) -> None:
        """Events the spool could not take for the grace period (all of them at a flush) go to
        the EventSink, which writes them to the log or keeps them until it can; if it does not
        take them they stay here (see ``events._resilient``)."""
        batch = self.events.take_overdue(everything=everything)
        if not batch:
            return
        if self.sink is None:
            self.events.hand_back()
            return
        try:
            taken = await _ray.send(self.sink, "append", batch, what="EventSink")
        except ComponentUnavailable:  # the sink is restarting: keep them, try again later
            self.events.hand_back()
            return
        except BaseException:  # cancelled (or a bug): keep them here, and let it go on
            self.events.hand_back()
            raise
        if taken:
            self.events.handed_off()
        else:
            self.events.hand_back()

    def _resubscribe(self) -> None:
        """Make sure every HealthChecker (a restarted one too) pushes to this router."""
        me = _ray.current_actor()
        for actor in self.health_actors.values():
            _ray.tell(actor, "add_subscribers", [me, self.selector_actor])
        if self.selector_actor is not None:
            _ray.tell(self.selector_actor, "add_subscribers", [me])

    # -- the request path --------------------------------------------------------------------
    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self._task is None:
            await self.start()
        return await self.core.complete(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in self.core.stream(request):
            yield chunk

    def select(self, request: ModelRequest) -> Selection:
        return self.selector.select(request)

    # -- pushed state ------------------------------------------------------------------------
    def update_health(self, provider: str, state: str, unavailable_models: list[str]) -> bool:
        self.selector.update_health(provider, state, unavailable_models)
        return True

    def update_rate_limited(self, model_id: str, until_monotonic: float | None) -> bool:
        self.selector.update_rate_limited(model_id, until_monotonic)
        self.admission.set_cooling(model_id, until_monotonic)
        return True

    def update_headroom(self, model_id: str, headroom: float) -> bool:
        self.selector.update_headroom(model_id, headroom)
        return True

    def set_weights(self, weights: SelectionWeights, version: str,
                    agent_weights: dict[str, SelectionWeights] | None = None) -> bool:
        self.selector.set_weights(weights, version, agent_weights)
        return True

    def update_quality(self, snapshot: QualitySnapshot) -> bool:
        self.selector.update_quality(snapshot)
        return True

    def answer_of(self, request_id: str) -> tuple[str, str, str | None] | None:
        """(model id, agent type, task id) of a request this router answered recently."""
        return self.core.answer_of(request_id)

    async def feedback(self, request_id: str, score: float, source: str = "user",
                       comment: str | None = None) -> bool:
        """Record an outcome for a request (see ``ModelManagement.feedback``)."""
        return await record_feedback(self.core, self.selector_actor, request_id, score,
                                     source, comment)

    # -- operations --------------------------------------------------------------------------
    async def flush_events(self) -> bool:
        """Close the spool segment and hand back leases and budget slices (end of a run)."""
        await self._tick(everything=True)
        returns: list[Awaitable[object]] = self.admission.return_all()
        if returns:
            await asyncio.gather(*returns)
        self.events.rotate()
        if self.shipper is not None:
            try:
                await self.shipper.flush()
            except EventsNotShipped as exc:  # they stay in the spool: shipped at a later tick
                log.warning("router %s: %s", self.index, exc)
        return True

    def counters(self) -> dict[str, int]:
        """The request path's counters, the spool's (``spool_*``: write errors, events queued in
        memory, handed to the EventSink, dropped) and failed housekeeping iterations."""
        spool = {f"spool_{k}": v for k, v in self.events.counters.items()}
        shipper = ({f"shipper_{k}": v for k, v in self.shipper.counters.items()}
                   if self.shipper is not None else {})
        return {**self.core.counters, **spool, "spool_waiting_events": self.events.queued_events,
                **shipper, "housekeeping_errors": self.supervisor.errors}

    async def ping(self) -> bool:
        return await self.start()  # a restarted router resumes housekeeping on first contact

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str | None:
        """The Ray node this router runs on."""
        return self.node_id

    async def aclose(self) -> bool:
        await self.flush_events()
        if self.shipper is not None:
            await self.shipper.aclose()
        for adapter in self.adapters.values():
            await adapter.aclose()
        return True


async def record_feedback(core: RouterCore | None, selector: Handle | None, request_id: str,
                          score: float, source: str, comment: str | None,
                          routers: Sequence[Handle] = ()) -> bool:
    """Find the request (this router's memory, else the Selector's view of the log, else other
    routers' memory) and record the outcome at the Selector; InvalidInput for an unknown id."""
    from ..errors import InvalidInput

    check_feedback(request_id, score, source, comment)
    answer = core.answer_of(request_id) if core is not None else None
    if answer is None and selector is not None:
        known = await _ray.send(selector, "answer_of", request_id, what="Selector")
        if known is not None:
            answer = (known[0], known[1], None)
    for router in routers:
        if answer is not None:
            break
        answer = await _ray.send(router, "answer_of", request_id, what="Router")
    if answer is None:
        raise InvalidInput(f"unknown request id {request_id!r}: no request with this id was "
                           "answered (recently) by this system", field="request_id")
    if selector is None:
        raise InvalidInput("no Selector to record feedback at", field="request_id")
    model_id, agent_type, task_id = answer
    recorded: bool = await _ray.send(selector, "record_feedback", request_id, float(score),
                                     source, model_id, agent_type, task_id, comment,
                                     what="Selector")
    return recorded
