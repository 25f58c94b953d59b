"""The Ray side of the router's ports: granters and tiers that call the actors, and the
``RayBackend`` that hands them to the one router factory. No policy here: lease and slice
sizing, refills and expiry are in ``ratelimit`` and ``budget``; these classes only forward."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from decimal import Decimal

from .._clock import Clock
from .._request import ModelRequest, ModelResponse
from ..budget import BudgetPort, Slice, SliceBudget, SpendKey
from ..cache import CacheCore, CacheHit, CachePort, TieredCache
from ..config import RegistryConfig
from ..errors import ComponentUnavailable
from ..ratelimit import AdmissionPort, Lease, LeaseAdmission, RateLimitState
from ..routing import BatchedOutcomes, OutcomePort, OutcomeReport
from ..selection import StatsCore
from . import _ray
from ._limiters import LimiterDirectory
from ._ray import Handle, Reply


class RayLeaseGranter:
    """Leases from the RateLimiter actor of each model, started on first use by the directory.
    A call that finds the actor gone (retired when idle, or its owner died) forgets the handle
    and goes to the model's limiter started again, which replays its journal; one that finds it
    restarting (Ray brings it back) raises ``ComponentUnavailable`` as before."""

    def __init__(self, limiters: LimiterDirectory) -> None:
        self.limiters = limiters
        self._watching: set[asyncio.Task[object]] = set()

    async def lease(self, model_id: str, holder: str, requests: int, tokens: int,
                    min_tokens: int = 0) -> Lease:
        lease = await self._call(model_id, "lease", holder, requests, tokens, min_tokens)
        assert isinstance(lease, Lease)
        return lease

    def return_lease(self, model_id: str, lease_id: str, used_requests: int,
                     used_tokens: int) -> Awaitable[object]:
        return self._send(model_id, "return_lease", lease_id, used_requests, used_tokens)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self._send(model_id, "cool_down", retry_after_s)

    def observe(self, model_id: str, state: RateLimitState) -> None:
        self._send(model_id, "observe", state)

    async def _call(self, model_id: str, method: str, *args: object) -> object:
        for attempt in range(LIMITER_ATTEMPTS):
            handle = await self.limiters.aget(model_id)
            try:
                return await _ray.send(handle, method, *args, what=f"RateLimiter {model_id}")
            except ComponentUnavailable as exc:
                if not _gone(exc) or attempt == LIMITER_ATTEMPTS - 1:
                    raise
                self.limiters.forget(model_id, handle)
        raise AssertionError("not reached")

    def _send(self, model_id: str, method: str, *args: object) -> Awaitable[object]:
        """Sent now (to the limiter held, or started here); on an event loop the reply is
        watched, and a call that found the actor gone is made again to its successor."""
        handle = self.limiters.get(model_id)
        reply = _ray.send(handle, method, *args, what=f"RateLimiter {model_id}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return reply
        task = loop.create_task(self._settle(model_id, handle, reply, method, args))
        self._watching.add(task)
        task.add_done_callback(_watched)
        task.add_done_callback(self._watching.discard)
        return task

    async def _settle(self, model_id: str, handle: Handle, reply: Reply, method: str,
                      args: tuple[object, ...]) -> object:
        try:
            return await reply
        except ComponentUnavailable as exc:
            if not _gone(exc):
                raise
            self.limiters.forget(model_id, handle)
            return await self._call(model_id, method, *args)


#: Calls to a model's limiter that find it gone before one is given up (each one starts it).
LIMITER_ATTEMPTS = 3


def _gone(exc: ComponentUnavailable) -> bool:
    """The actor is gone for good and may be started again (not restarting by Ray, not one whose
    constructor failed, not an error it answered with)."""
    return (_ray.actor_down(exc) and not getattr(exc, "restarting", False)
            and getattr(exc, "cause", None) is None)


def _watched(task: asyncio.Task[object]) -> None:
    """Mark the outcome of a watched reply as seen (most are never awaited: fire and forget)."""
    if not task.cancelled():
        task.exception()


class RaySliceGranter:
    """Budget slices from the CostLedger actor, which learns settled spend from the event log:
    returned slices carry their charges, held at the ledger until the log delivers them."""

    follows_log = True

    def __init__(self, ledger: Handle) -> None:
        self.ledger = ledger

    async def grant_slice(self, key: SpendKey, amount_usd: Decimal, holder: str,
                          minimum_usd: Decimal) -> Slice:
        grant: Slice = await _ray.send(self.ledger, "grant_slice", key, amount_usd, holder,
                                       minimum_usd, what="CostLedger")
        return grant

    def return_slice(self, slice_id: str, spent_usd: Decimal, key: SpendKey,
                     charges: Sequence[tuple[str, Decimal]] | None = None) -> Reply:
        return _ray.send(self.ledger, "return_slice", slice_id, spent_usd, key,
                         None if charges is None else tuple(charges), what="CostLedger")

    async def record(self, key: SpendKey, amount_usd: Decimal) -> None:
        await _ray.send(self.ledger, "record", key, amount_usd, what="CostLedger")


class RaySharedCache:
    """The shared Cache actor as a cache tier."""

    def __init__(self, cache: Handle) -> None:
        self.cache = cache

    async def get(self, request: ModelRequest) -> CacheHit | None:
        hit: CacheHit | None = await _ray.send(self.cache, "get", request, what="Cache")
        return hit

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None:
        _ray.tell(self.cache, "put", request, response, cost_usd)


class RayHealthReporter:
    """Outcome batches to the HealthChecker actor of each provider."""

    def __init__(self, health: Mapping[str, Handle]) -> None:
        self.health = health

    def report(self, provider: str, batch: list[OutcomeReport]) -> Reply | None:
        actor = self.health.get(provider)
        if actor is None:
            return None
        return _ray.send(actor, "report_outcomes", batch, what=f"HealthChecker {provider}")


class RayBackend:
    """A router's ports on the system's actors (see ``routing.build_router``)."""

    def __init__(self, config: RegistryConfig, *,
                 limiters: LimiterDirectory | Mapping[str, Handle], ledger: Handle,
                 cache: Handle | None, health: Mapping[str, Handle]) -> None:
        self.config = config
        self.limiters = (limiters if isinstance(limiters, LimiterDirectory)
                         else LimiterDirectory.of(limiters))
        self.ledger, self.cache_actor, self.health = ledger, cache, health

    def admission(self, holder: str, clock: Clock) -> AdmissionPort:
        rate = self.config.settings.rate_limit
        return LeaseAdmission(RayLeaseGranter(self.limiters), holder, clock=clock,
                              lease_requests=rate.lease_requests, lease_tokens=rate.lease_tokens)

    def budget(self, holder: str, clock: Clock) -> BudgetPort | None:
        budgets = self.config.settings.budgets
        if not budgets.limits:
            return None
        return SliceBudget(RaySliceGranter(self.ledger), budgets, holder, clock=clock)

    def cache(self, clock: Clock) -> CachePort | None:
        shared = RaySharedCache(self.cache_actor) if self.cache_actor is not None else None
        return TieredCache(CacheCore(self.config.settings.cache, clock=clock), shared)

    def outcomes(self, stats: StatsCore) -> OutcomePort:
        return BatchedOutcomes(stats, RayHealthReporter(self.health))


__all__: list[str] = [
    "RayBackend",
    "RayHealthReporter",
    "RayLeaseGranter",
    "RaySharedCache",
    "RaySliceGranter",
]
