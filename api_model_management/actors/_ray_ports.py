"""Ray implementations of the router's ports: leases, budget slices, batched outcome reports.

Steady-state admission needs no round trip: a router takes from a rate-limit lease (a small batch of
request and token capacity granted by the model's RateLimiter actor) and from a budget slice (a
piece of budget granted by the CostLedger actor). Both are exact at their owner: what is used plus
what is leased never exceeds the limit. A router refills a lease or slice with one awaited call
when it runs out; concurrent requests that need the same refill share that one call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from decimal import Decimal

from ray.exceptions import ActorUnavailableError, RayActorError

from .._request import ModelRequest, ModelResponse, RateLimitState
from ..config import RegistryConfig
from ..errors import BudgetExceeded, ComponentUnavailable
from ._leases import LeaseHolder, SliceHolder
from ._ports import BudgetTicket, RateTicket, SpendKey

log = logging.getLogger(__name__)

#: An actor that died, or is restarting: the path degrades instead of failing.
_ACTOR_DOWN = (RayActorError, ActorUnavailableError)


class RayAdmission:
    """Rate-limit admission through leases from one RateLimiter actor per model."""

    def __init__(self, limiters: dict, holder: str, *, lease_requests: int, lease_tokens: int) -> None:
        self.limiters = limiters
        self.holder = holder
        self.lease_requests = lease_requests
        self.lease_tokens = lease_tokens
        self._leases: dict[str, LeaseHolder] = {}
        self._refills: dict[str, asyncio.Future] = {}
        self._cooling: dict[str, float] = {}
        self._size: dict[str, int] = {}
        self._last_refill: dict[str, float] = {}

    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        """From the current lease, when it has room and the model is not cooling down."""
        lease = self._leases.get(model_id)
        if lease is None or time.monotonic() < self._cooling.get(model_id, 0.0):
            return None
        return RateTicket(model_id, tokens, lease) if lease.try_take(tokens) else None

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        for _ in range(_MAX_REFILLS):
            now = time.monotonic()
            cooling = self._cooling.get(model_id, 0.0)
            if now < cooling:
                return cooling - now
            lease = self._leases.get(model_id)
            if lease is not None and lease.try_take(tokens):
                return RateTicket(model_id, tokens, lease)
            retry = await self._refill(model_id, tokens)
            if retry is not None:
                return retry
        return 0.05

    async def _refill(self, model_id: str, tokens: int) -> float | None:
        pending = self._refills.get(model_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._refills[model_id] = future
        try:
            self._return(model_id)
            now = time.monotonic()
            size = self._size.get(model_id, 1)
            size = min(size * 2, _MAX_LEASE_GROWTH) if now - self._last_refill.get(model_id, -1e9) < _FAST_REFILL_S else 1
            self._size[model_id], self._last_refill[model_id] = size, now
            try:
                lease = await self.limiters[model_id].lease.remote(
                    self.holder, self.lease_requests * size, max(self.lease_tokens * size, tokens)
                )
            except _ACTOR_DOWN:  # restarting: refuse this model for now, never over-admit
                future.set_result(1.0)
                return 1.0
            holder = LeaseHolder(lease, safety_margin_s=_SAFETY_MARGIN_S)
            if lease.requests <= 0 or lease.tokens < tokens:
                if lease.lease_id is not None:
                    self.limiters[model_id].return_lease.remote(lease.lease_id, 0, 0)
                retry = max(0.001, getattr(lease, "retry_after_s", 0.0) or 0.05)
                future.set_result(retry)
                return retry
            self._leases[model_id] = holder
            future.set_result(None)
            return None
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._refills.pop(model_id, None)

    def _return(self, model_id: str):
        lease = self._leases.pop(model_id, None)
        if lease is None or lease.lease_id is None:
            return None
        used_requests, used_tokens = lease.usage()
        return self.limiters[model_id].return_lease.remote(lease.lease_id, used_requests, max(0, used_tokens))

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        """Lease capacity is counted at grant time; the actual tokens correct the lease's use."""
        lease = ticket.token
        if self._leases.get(ticket.model_id) is lease:
            lease.adjust(ticket.tokens, actual_tokens)

    def release(self, ticket: RateTicket) -> None:
        lease = ticket.token
        if self._leases.get(ticket.model_id) is lease:
            lease.untake(ticket.tokens)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self._cooling[model_id] = time.monotonic() + retry_after_s
        self._return(model_id)
        self.limiters[model_id].cool_down.remote(retry_after_s)

    def set_cooling(self, model_id: str, until_monotonic: float | None) -> None:
        if until_monotonic is None:
            self._cooling.pop(model_id, None)
        else:
            self._cooling[model_id] = until_monotonic

    def extend_cooling(self, model_id: str, until_monotonic: float) -> None:
        """A cool-down heard of late (polled): never shortens one this router set itself."""
        if until_monotonic > self._cooling.get(model_id, 0.0):
            self._cooling[model_id] = until_monotonic

    def observe(self, model_id: str, state: RateLimitState) -> None:
        if state.remaining_requests == 0 or state.remaining_tokens == 0:
            self.limiters[model_id].observe.remote(state)

    def return_idle(self) -> list:
        """Hand back expired leases (their unused part)."""
        return [ref for m in [m for m, h in self._leases.items() if h.expired()]
                if (ref := self._return(m)) is not None]

    def return_all(self) -> list:
        return [ref for m in list(self._leases) if (ref := self._return(m)) is not None]


class RayBudget:
    """Budget admission through slices of budget from the CostLedger actor.

    Keys no configured limit applies to need no reservation; their spend is reported in batches.
    With the ledger down, ``strict`` enforcement refuses (``ComponentUnavailable``) and
    ``best_effort`` proceeds and reconciles the spend when the ledger is back.
    """

    def __init__(self, ledger, config: RegistryConfig, holder: str, *, slice_requests: int = 8) -> None:
        self.ledger = ledger
        self.holder = holder
        self.strict = config.settings.budgets.enforcement == "strict"
        self.limits = config.settings.budgets.limits
        self.slice_requests = slice_requests
        self._slices: dict[SpendKey, SliceHolder] = {}
        self._refills: dict[SpendKey, asyncio.Future] = {}
        self._unreported: dict[SpendKey, Decimal] = defaultdict(Decimal)
        self._retired: list[SliceHolder] = []
        self._size: dict[SpendKey, int] = {}
        self._last_refill: dict[SpendKey, float] = {}
        self._limited_cache: dict[SpendKey, bool] = {}

    def _limited(self, key: SpendKey) -> bool:
        hit = self._limited_cache.get(key)
        if hit is None:
            hit = any(
                limit.scope == "global"
                or (limit.scope == "provider" and limit.key == key.provider)
                or (limit.scope == "model" and limit.key == key.model_id)
                or (limit.scope == "agent_type" and limit.key == key.agent_type)
                for limit in self.limits
            )
            self._limited_cache[key] = hit
        return hit

    def try_reserve(self, key: SpendKey, amount_usd: Decimal) -> BudgetTicket | None:
        """From the key's current slice (or no reservation at all for unlimited keys)."""
        if amount_usd <= 0 or not self._limited(key):
            return BudgetTicket(key, amount_usd, None)
        holder = self._slices.get(key)
        if holder is not None and holder.try_reserve(amount_usd):
            return BudgetTicket(key, amount_usd, holder)
        return None

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        if amount_usd <= 0 or not self._limited(key):  # free models need no budget
            return BudgetTicket(key, amount_usd, None)
        for _ in range(_MAX_REFILLS):
            holder = self._slices.get(key)
            if holder is not None and holder.try_reserve(amount_usd):
                return BudgetTicket(key, amount_usd, holder)
            try:
                granted = await self._refill(key, amount_usd)
            except _ACTOR_DOWN:
                if self.strict:
                    raise ComponentUnavailable(
                        "the CostLedger is unavailable and budgets are strict: request refused",
                        component="CostLedger",
                    ) from None
                return BudgetTicket(key, amount_usd, _BEST_EFFORT)
            if granted < amount_usd:
                break
        raise BudgetExceeded(
            f"no budget left for a worst case of ${amount_usd} (agent type {key.agent_type!r}, "
            f"model {key.model_id})", scope_key=key.agent_type, requested_usd=amount_usd,
        )

    async def _refill(self, key: SpendKey, amount_usd: Decimal) -> Decimal:
        """Replace the key's slice with a new one; returns the amount granted. Slices grow while
        they run out fast (busy keys need fewer refills) and the ledger caps them at the headroom."""
        pending = self._refills.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._refills[key] = future
        try:
            now = time.monotonic()
            size = self._size.get(key, self.slice_requests)
            if now - self._last_refill.get(key, -1e9) < _FAST_REFILL_S:
                size = min(size * 2, _MAX_SLICE_REQUESTS)
            self._size[key], self._last_refill[key] = size, now
            old = self._slices.get(key)
            if old is not None and old.in_flight_usd == 0:
                self._return(key)
            grant = await self.ledger.grant_slice.remote(key, amount_usd * size, self.holder, amount_usd)
            if grant.slice_id is not None:
                if key in self._slices:  # the old slice has calls in flight: give it back later
                    self._retired.append(self._slices[key])
                self._slices[key] = SliceHolder(grant, safety_margin_s=_SAFETY_MARGIN_S)
            future.set_result(grant.amount_usd)
            return grant.amount_usd
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._refills.pop(key, None)

    def _return(self, key: SpendKey):
        holder = self._slices.pop(key, None)
        if holder is None or holder.slice_id is None:
            return None
        return self.ledger.return_slice.remote(holder.slice_id, holder.spent_usd, key)

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        if ticket.token is None or ticket.token is _BEST_EFFORT:
            self._unreported[ticket.key] += actual_usd  # reported (reconciled) in batches
            return
        ticket.token.settle(ticket.amount_usd, actual_usd)

    def release(self, ticket: BudgetTicket) -> None:
        if ticket.token is None or ticket.token is _BEST_EFFORT:
            return
        ticket.token.release(ticket.amount_usd)

    async def flush(self, *, everything: bool = False) -> None:
        """Report unreserved spend, return expired (or, at the end, all) idle slices."""
        refs = []
        for key, amount in list(self._unreported.items()):
            if amount:
                refs.append((key, amount, self.ledger.record.remote(key, amount)))
        self._unreported.clear()
        for key, amount, ref in refs:
            try:
                await ref
            except _ACTOR_DOWN:  # ledger restarting: keep it for the next flush
                self._unreported[key] += amount
        returns = []
        now = time.monotonic()
        for key, holder in list(self._slices.items()):
            idle = now - self._last_refill.get(key, 0.0) > _IDLE_RETURN_S
            if holder.in_flight_usd == 0 and (everything or idle or holder.expired()):
                returns.append(self._return(key))
        for holder in list(self._retired):
            if holder.in_flight_usd == 0:
                self._retired.remove(holder)
                returns.append(self.ledger.return_slice.remote(holder.slice_id, holder.spent_usd, holder.slice.key))
        for ref in returns:
            if ref is not None:
                try:
                    await ref
                except _ACTOR_DOWN:
                    log.warning("a budget slice could not be returned; the ledger expires it")


_BEST_EFFORT = object()
_MAX_REFILLS = 64
_FAST_REFILL_S = 1.0
_MAX_SLICE_REQUESTS = 512
_MAX_LEASE_GROWTH = 16
_IDLE_RETURN_S = 1.0
_SAFETY_MARGIN_S = 0.5


class RayCache:
    """A per-router LRU in front of the shared Cache actor."""

    def __init__(self, cache_actor, local_core) -> None:
        self.actor = cache_actor
        self.local = local_core

    async def get(self, request: ModelRequest):
        entry = self.local.get(request)
        if entry is not None:
            return entry.response, entry.cost_usd
        if self.actor is None:
            return None
        try:
            hit = await self.actor.get.remote(request)
        except _ACTOR_DOWN:  # the shared tier is restarting: a miss
            return None
        if hit is not None:
            self.local.put(request, hit[0], hit[1])
        return hit

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None:
        self.local.put(request, response, cost_usd)
        if self.actor is not None:
            self.actor.put.remote(request, response, cost_usd)


class RayOutcomes:
    """Passive health signals and live statistics, batched to the HealthChecker actors."""

    def __init__(self, health_actors: dict, stats) -> None:
        self.health_actors = health_actors
        self.stats = stats
        self._pending: dict[str, list] = defaultdict(list)

    def outcome(self, provider, model_id, ok, error_kind, latency_ms, quality=None) -> None:
        self._pending[provider].append((ok, error_kind, model_id))
        self.stats.record(model_id, ok, latency_ms, quality)

    def flush(self) -> list:
        refs = []
        for provider, batch in self._pending.items():
            actor = self.health_actors.get(provider)
            if actor is not None and batch:
                refs.append(actor.report_outcomes.remote(batch))
        self._pending = defaultdict(list)
        return refs
