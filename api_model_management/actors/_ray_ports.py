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

from .._request import ModelRequest, ModelResponse, RateLimitState
from ..config import RegistryConfig
from ..errors import BudgetExceeded
from ._ports import BudgetTicket, RateTicket, SpendKey

log = logging.getLogger(__name__)


class _LocalLease:
    """A lease's remaining capacity, consumed locally."""

    __slots__ = ("lease_id", "requests", "tokens", "used_requests", "used_tokens", "expires_at")

    def __init__(self, lease) -> None:
        self.lease_id = lease.lease_id
        self.requests = lease.requests
        self.tokens = lease.tokens
        self.used_requests = 0
        self.used_tokens = 0
        self.expires_at = lease.expires_at_monotonic

    def take(self, tokens: int, now: float) -> bool:
        if now >= self.expires_at:
            return False
        if self.used_requests + 1 > self.requests or self.used_tokens + tokens > self.tokens:
            return False
        self.used_requests += 1
        self.used_tokens += tokens
        return True


class RayAdmission:
    """Rate-limit admission through leases from one RateLimiter actor per model."""

    def __init__(self, limiters: dict, holder: str, *, lease_requests: int, lease_tokens: int) -> None:
        self.limiters = limiters
        self.holder = holder
        self.lease_requests = lease_requests
        self.lease_tokens = lease_tokens
        self._leases: dict[str, _LocalLease] = {}
        self._refills: dict[str, asyncio.Future] = {}
        self._cooling: dict[str, float] = {}

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        for _ in range(3):
            now = time.monotonic()
            cooling = self._cooling.get(model_id, 0.0)
            if now < cooling:
                return cooling - now
            lease = self._leases.get(model_id)
            if lease is not None and lease.take(tokens, now):
                return RateTicket(model_id, tokens, lease.lease_id)
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
            old = self._leases.pop(model_id, None)
            if old is not None:
                self.limiters[model_id].return_lease.remote(old.lease_id, old.used_requests, old.used_tokens)
            lease = await self.limiters[model_id].lease.remote(
                self.holder, self.lease_requests, max(self.lease_tokens, tokens)
            )
            if lease.requests <= 0 or lease.tokens < tokens:
                if lease.requests > 0 or lease.tokens > 0:
                    self.limiters[model_id].return_lease.remote(lease.lease_id, 0, 0)
                retry = max(0.001, getattr(lease, "retry_after_s", 0.0) or 0.05)
                future.set_result(retry)
                return retry
            self._leases[model_id] = _LocalLease(lease)
            future.set_result(None)
            return None
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved
            raise
        finally:
            self._refills.pop(model_id, None)

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        """Lease capacity is counted at grant time (conservative); nothing to do per request."""

    def release(self, ticket: RateTicket) -> None:
        lease = self._leases.get(ticket.model_id)
        if lease is not None and lease.lease_id == ticket.token:
            lease.used_requests -= 1
            lease.used_tokens -= ticket.tokens

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self._cooling[model_id] = time.monotonic() + retry_after_s
        lease = self._leases.pop(model_id, None)
        if lease is not None:
            self.limiters[model_id].return_lease.remote(lease.lease_id, lease.used_requests, lease.used_tokens)
        self.limiters[model_id].cool_down.remote(retry_after_s)

    def set_cooling(self, model_id: str, until_monotonic: float | None) -> None:
        if until_monotonic is None:
            self._cooling.pop(model_id, None)
        else:
            self._cooling[model_id] = until_monotonic

    def observe(self, model_id: str, state: RateLimitState) -> None:
        if state.remaining_requests == 0 or state.remaining_tokens == 0:
            self.limiters[model_id].observe.remote(state)

    def return_all(self) -> list:
        refs = [
            self.limiters[m].return_lease.remote(lease.lease_id, lease.used_requests, lease.used_tokens)
            for m, lease in self._leases.items()
        ]
        self._leases.clear()
        return refs


class RayBudget:
    """Budget admission through slices of budget from the CostLedger actor.

    Keys no configured limit applies to need no reservation; their spend is reported in batches.
    """

    def __init__(self, ledger, config: RegistryConfig, holder: str, *, slice_requests: int = 8) -> None:
        self.ledger = ledger
        self.holder = holder
        self.limits = config.settings.budgets.limits
        self.slice_requests = slice_requests
        self._slices: dict[SpendKey, dict] = {}
        self._refills: dict[SpendKey, asyncio.Future] = {}
        self._unlimited_spend: dict[SpendKey, Decimal] = defaultdict(Decimal)
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

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        if not self._limited(key):
            return BudgetTicket(key, amount_usd, None)
        for _ in range(3):
            current = self._slices.get(key)
            now = time.monotonic()
            if current and now < current["expires_at"] and current["left"] >= amount_usd:
                current["left"] -= amount_usd
                current["held"] += amount_usd
                return BudgetTicket(key, amount_usd, current["slice_id"])
            await self._refill(key, amount_usd)
        raise BudgetExceeded("no budget slice could be obtained", scope="global", scope_key=key.agent_type)

    async def _refill(self, key: SpendKey, amount_usd: Decimal) -> None:
        pending = self._refills.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future = asyncio.get_running_loop().create_future()
        self._refills[key] = future
        try:
            self._return(key)
            grant = await self.ledger.grant_slice.remote(
                key, amount_usd * self.slice_requests, self.holder, amount_usd
            )
            self._slices[key] = {
                "slice_id": grant.slice_id, "left": grant.amount_usd, "held": Decimal(0),
                "spent": Decimal(0), "expires_at": grant.expires_at_monotonic,
            }
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._refills.pop(key, None)

    def _return(self, key: SpendKey):
        current = self._slices.pop(key, None)
        if current is None:
            return None
        # money held by requests still in flight is counted as spent: conservative and exact
        return self.ledger.return_slice.remote(current["slice_id"], current["spent"] + current["held"])

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        if ticket.token is None:
            self._unlimited_spend[ticket.key] += actual_usd
            return
        current = self._slices.get(ticket.key)
        if current is not None and current["slice_id"] == ticket.token:
            current["held"] -= ticket.amount_usd
            current["spent"] += actual_usd
            current["left"] += ticket.amount_usd - actual_usd
        else:  # the slice was returned while the call ran: report the actual spend directly
            self.ledger.record.remote(ticket.key, actual_usd)

    def release(self, ticket: BudgetTicket) -> None:
        if ticket.token is None:
            return
        current = self._slices.get(ticket.key)
        if current is not None and current["slice_id"] == ticket.token:
            current["held"] -= ticket.amount_usd
            current["left"] += ticket.amount_usd

    def flush(self) -> list:
        refs = [self.ledger.record.remote(k, v) for k, v in self._unlimited_spend.items() if v]
        self._unlimited_spend.clear()
        now = time.monotonic()
        for key in [k for k, s in self._slices.items() if now >= s["expires_at"] - 0.5 or s["held"] == 0]:
            ref = self._return(key)
            if ref is not None:
                refs.append(ref)
        return refs


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
        hit = await self.actor.get.remote(request)
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
