"""RayBudget, RayAdmission and RayCache with fake actor handles (no ``ray.init``).

A fake handle's ``.method.remote(...)`` runs the method on a real core at once (as Ray would run it
eventually) and returns an awaitable "object ref" that can be held back by a gate (a slow actor) or
fail with ``RayActorError`` (a dead or restarting actor).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from ray.exceptions import RayActorError

from api_model_management import ModelRequest, ModelResponse
from api_model_management._clock import SYSTEM_CLOCK
from api_model_management._config_load import demo_config
from api_model_management.actors._ports import RateTicket, SpendKey
from api_model_management.actors._ray_ports import RayAdmission, RayBudget, RayCache
from api_model_management.actors.cache import CacheCore
from api_model_management.actors.cost_ledger import CostLedgerCore
from api_model_management.actors.rate_limiter import RateLimiterCore
from api_model_management.config import RateLimitSettings
from api_model_management.errors import AMMError, BudgetExceeded, ComponentUnavailable

from _fakes import GOOD_PROMPT, config_with

pytestmark = pytest.mark.unit

D = Decimal
LIMITED = SpendKey("openai", "gpt-4.1-mini", "research")
FREE_KEY = SpendKey("openai", "gpt-4.1-mini", "default")


class Ref:
    """An awaitable result of a fake ``.remote`` call."""

    def __init__(self, value=None, error: BaseException | None = None, gate: asyncio.Event | None = None):
        self.value, self.error, self.gate = value, error, gate

    def __await__(self):
        if self.gate is not None:
            yield from self.gate.wait().__await__()
        if self.error is not None:
            raise self.error
        return self.value


class FakeHandle:
    """A Ray actor handle over ``target``: ``handle.method.remote(*args)`` records and runs the call."""

    def __init__(self, target) -> None:
        self._target = target
        self.down = False
        self.gates: dict[str, asyncio.Event] = {}
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def calls_of(self, name: str) -> list[tuple]:
        return [args for method, args in self.calls if method == name]


class _Method:
    def __init__(self, handle: FakeHandle, name: str) -> None:
        self.handle, self.name = handle, name

    def remote(self, *args, **kwargs) -> Ref:
        handle = self.handle
        handle.calls.append((self.name, args))
        if handle.down:
            return Ref(error=RayActorError())
        try:
            value = getattr(handle._target, self.name)(*args, **kwargs)
        except AMMError as exc:  # the error travels inside the ref, as with Ray
            return Ref(error=exc, gate=handle.gates.get(self.name))
        return Ref(value=value, gate=handle.gates.get(self.name))


async def _held_back(handle: FakeHandle, method: str, calls: list) -> list:
    """Start ``calls`` while the actor's ``method`` is held back (a slow actor): none may finish
    before it answers; then let it answer and return their results."""
    gate = handle.gates[method] = asyncio.Event()
    tasks = [asyncio.create_task(call()) for call in calls]
    for _ in range(10):
        await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)
    gate.set()
    return await asyncio.gather(*tasks)


class LedgerTarget:
    """The CostLedger actor's methods on a core (the slice-granting policy of the real shell aside:
    ``grant_cap_usd`` caps every grant)."""

    def __init__(self, core: CostLedgerCore, grant_cap_usd: Decimal | None = None) -> None:
        self.core = core
        self.grant_cap_usd = grant_cap_usd

    def grant_slice(self, key, amount_usd, holder, minimum_usd=None):
        if self.grant_cap_usd is not None:
            amount_usd = min(amount_usd, self.grant_cap_usd)
        return self.core.grant_slice(key, amount_usd, holder)

    def return_slice(self, slice_id, spent_usd, key=None):
        self.core.return_slice(slice_id, spent_usd)
        return True

    def record(self, key, amount_usd):
        self.core.record(key, amount_usd)
        return True


def budget_setup(enforcement: str = "strict", limit_usd: str = "1", grant_cap_usd: Decimal | None = None):
    config = config_with(budgets={"enforcement": enforcement, "limits": [
        {"scope": "agent_type", "key": "research", "limit_usd": limit_usd}]})
    core = CostLedgerCore(config.settings.budgets, registry=config)
    handle = FakeHandle(LedgerTarget(core, grant_cap_usd))
    return RayBudget(handle, config, "router-1", slice_requests=4), handle, core


def spent(core: CostLedgerCore, key: SpendKey = LIMITED) -> Decimal:
    return core.spend("agent_type", key.agent_type, "day")


# ---------------------------------------------------------------------------------------------
# RayBudget


def test_slices_are_reused_without_round_trips():
    budget, handle, core = budget_setup()

    async def scenario():
        tickets = [await budget.reserve(LIMITED, D("0.01"), f"r{i}") for i in range(4)]
        for ticket in tickets:
            budget.settle(ticket, D("0.004"))
        await budget.flush(everything=True)

    asyncio.run(scenario())
    assert len(handle.calls_of("grant_slice")) == 1
    assert handle.calls_of("grant_slice")[0][1] == D("0.04")  # four worst cases at once
    assert len(handle.calls_of("return_slice")) == 1
    assert spent(core) == D("0.016") and core.reserved_usd() == 0


def test_a_released_reservation_frees_its_part_of_the_slice():
    budget, handle, core = budget_setup()

    async def scenario():
        for i in range(10):
            ticket = await budget.reserve(LIMITED, D("0.01"), f"r{i}")
            budget.release(ticket)
        await budget.flush(everything=True)

    asyncio.run(scenario())
    assert len(handle.calls_of("grant_slice")) == 1
    assert spent(core) == 0 and core.reserved_usd() == 0


def test_concurrent_reservations_share_one_refill():
    budget, handle, core = budget_setup()

    tickets = asyncio.run(_held_back(handle, "grant_slice",
                                     [lambda i=i: budget.reserve(LIMITED, D("0.01"), f"r{i}") for i in range(3)]))
    assert len(tickets) == 3 and len(handle.calls_of("grant_slice")) == 1


def test_budget_exceeded_when_the_ledger_grants_less_than_the_worst_case():
    budget, handle, core = budget_setup(limit_usd="0.005")

    async def scenario():
        with pytest.raises(BudgetExceeded) as info:
            await budget.reserve(LIMITED, D("0.01"), "r1")
        assert info.value.requested_usd == D("0.01")
        # a call whose worst case fits what is left still goes through
        ticket = await budget.reserve(LIMITED, D("0.002"), "r2")
        budget.settle(ticket, D("0.001"))
        await budget.flush(everything=True)

    asyncio.run(scenario())
    assert spent(core) == D("0.001") and core.reserved_usd() == 0


def test_budget_exceeded_when_the_grant_is_capped_below_the_worst_case():
    budget, handle, core = budget_setup(grant_cap_usd=D("0.005"))

    async def scenario():
        with pytest.raises(BudgetExceeded):
            await budget.reserve(LIMITED, D("0.01"), "r1")
        await budget.flush(everything=True)

    asyncio.run(scenario())
    assert core.reserved_usd() == 0


def test_strict_budgets_refuse_while_the_ledger_is_down():
    budget, handle, core = budget_setup("strict")
    handle.down = True
    with pytest.raises(ComponentUnavailable) as info:
        asyncio.run(budget.reserve(LIMITED, D("0.01"), "r1"))
    assert info.value.component == "CostLedger"
    handle.down = False
    ticket = asyncio.run(budget.reserve(LIMITED, D("0.01"), "r2"))
    assert ticket.amount_usd == D("0.01")


def test_best_effort_proceeds_while_the_ledger_is_down_and_reconciles_later():
    budget, handle, core = budget_setup("best_effort")

    async def scenario():
        handle.down = True
        ticket = await budget.reserve(LIMITED, D("0.01"), "r1")
        budget.settle(ticket, D("0.007"))
        await budget.flush()  # still down: kept for later
        assert spent(core) == 0
        handle.down = False
        await budget.flush()
        assert spent(core) == D("0.007")
        await budget.flush()  # reported once only
        assert spent(core) == D("0.007")

    asyncio.run(scenario())
    assert len(handle.calls_of("record")) == 2
    assert core.reserved_usd() == 0


def test_keys_without_a_limit_need_no_round_trip_and_are_reported_in_batches():
    budget, handle, core = budget_setup()

    async def scenario():
        for i in range(3):
            ticket = await budget.reserve(FREE_KEY, D("0.01"), f"r{i}")
            budget.settle(ticket, D("0.002"))
        assert handle.calls == []
        await budget.flush()

    asyncio.run(scenario())
    assert handle.calls_of("record") == [(FREE_KEY, D("0.006"))]
    assert core.spend("agent_type", "default", "day") == D("0.006")


# ---------------------------------------------------------------------------------------------
# RayAdmission


class LimiterTarget:
    def __init__(self, core: RateLimiterCore) -> None:
        self.core = core

    def lease(self, holder, requests, tokens):
        return self.core.lease(holder, requests, tokens)

    def return_lease(self, lease_id, used_requests, used_tokens):
        self.core.return_lease(lease_id, used_requests, used_tokens)
        return True

    def cool_down(self, retry_after_s):
        self.core.cool_down(retry_after_s)
        return True

    def observe(self, state):
        self.core.observe(state)
        return True


def admission_setup(rpm: int = 100, tpm: int = 1_000_000, lease_requests: int = 4, lease_tokens: int = 4000):
    core = RateLimiterCore("m", rpm, tpm, settings=RateLimitSettings(lease_ttl_s=60.0))
    handle = FakeHandle(LimiterTarget(core))
    admission = RayAdmission({"m": handle}, "router-1", lease_requests=lease_requests, lease_tokens=lease_tokens)
    return admission, handle, core


def test_concurrent_waiters_share_one_lease_refill():
    admission, handle, core = admission_setup()

    tickets = asyncio.run(_held_back(handle, "lease", [lambda: admission.acquire("m", 100)] * 3))
    assert all(isinstance(t, RateTicket) for t in tickets)
    assert len(handle.calls_of("lease")) == 1


def test_steady_admission_needs_no_round_trip():
    admission, handle, core = admission_setup(lease_requests=4)

    async def scenario():
        return [await admission.acquire("m", 10) for _ in range(4)]

    tickets = asyncio.run(scenario())
    assert all(isinstance(t, RateTicket) for t in tickets)
    assert len(handle.calls_of("lease")) == 1


def test_never_admits_beyond_the_limiters_grants():
    admission, handle, core = admission_setup(rpm=3, lease_requests=2)

    async def scenario():
        results = []
        for _ in range(4):
            results.extend(await asyncio.gather(*(admission.acquire("m", 10) for _ in range(3))))
        return results

    results = asyncio.run(scenario())
    tickets = [r for r in results if isinstance(r, RateTicket)]
    refusals = [r for r in results if not isinstance(r, RateTicket)]
    assert len(tickets) == 3 and len(refusals) == 9
    assert all(isinstance(r, float) and r > 0 for r in refusals)
    leased = sum(lease_args[1] for lease_args in handle.calls_of("lease"))
    assert leased >= 3  # asked for at least as much as it admitted
    assert core.status().requests_used <= 3


def test_a_request_not_sent_is_given_back_to_the_lease():
    admission, handle, core = admission_setup(rpm=100, lease_requests=1)

    async def scenario():
        for _ in range(5):
            ticket = await admission.acquire("m", 10)
            assert isinstance(ticket, RateTicket)
            admission.release(ticket)

    asyncio.run(scenario())
    assert len(handle.calls_of("lease")) == 1


def test_refuses_with_a_retry_delay_while_the_limiter_is_down():
    admission, handle, core = admission_setup()
    handle.down = True
    retry = asyncio.run(admission.acquire("m", 10))
    assert not isinstance(retry, RateTicket) and retry > 0
    assert core.status().requests_used == 0
    handle.down = False
    assert isinstance(asyncio.run(admission.acquire("m", 10)), RateTicket)


def test_cool_down_refuses_locally_and_tells_the_limiter():
    admission, handle, core = admission_setup()

    async def scenario():
        assert isinstance(await admission.acquire("m", 10), RateTicket)
        admission.cool_down("m", 30.0)
        return await admission.acquire("m", 10)

    retry = asyncio.run(scenario())
    assert not isinstance(retry, RateTicket) and 29 < retry <= 30
    assert handle.calls_of("cool_down") == [(30.0,)]
    assert core.status().cooling_until_monotonic is not None
    assert len(handle.calls_of("return_lease")) == 1  # the lease was handed back


def test_leases_are_returned_with_their_usage():
    admission, handle, core = admission_setup(lease_requests=4)

    async def scenario():
        ticket = await admission.acquire("m", 100)
        admission.commit(ticket, 40)
        released = await admission.acquire("m", 100)
        admission.release(released)
        for ref in admission.return_all():
            await ref

    asyncio.run(scenario())
    assert handle.calls_of("return_lease")[0][1:] == (1, 40)
    status = core.status()
    assert status.requests_used == 1 and status.tokens_used == 40 and status.leased_requests == 0


# ---------------------------------------------------------------------------------------------
# RayCache


class SharedTier:
    """The Cache actor's methods on a core."""

    def __init__(self, core: CacheCore) -> None:
        self.core = core

    def get(self, request):
        entry = self.core.get(request)
        return None if entry is None else (entry.response, entry.cost_usd)

    def put(self, request, response, cost_usd):
        self.core.put(request, response, cost_usd)
        return True


def test_ray_cache_shares_through_the_actor_and_misses_while_it_is_down():
    settings = demo_config().settings.cache
    handle = FakeHandle(SharedTier(CacheCore(settings, clock=SYSTEM_CLOCK)))

    def router_cache() -> RayCache:
        return RayCache(handle, CacheCore(settings, clock=SYSTEM_CLOCK))

    request = ModelRequest(prompt=GOOD_PROMPT, parameters={"temperature": 0})
    response = ModelResponse(request_id="r", model_id="m", provider="p", text="t", finish_reason="stop")
    first, second = router_cache(), router_cache()
    first.put(request, response, D("0.01"))
    assert asyncio.run(second.get(request)) == (response, D("0.01"))  # through the shared tier
    handle.down = True
    assert asyncio.run(router_cache().get(request)) is None  # the shared tier is down: a miss
    assert asyncio.run(second.get(request)) == (response, D("0.01"))  # its local copy


# ---------------------------------------------------------------------------------------------
# the fast path: taken at once from a lease and a slice, or None when a round trip is needed


def test_try_acquire_takes_from_the_lease_at_once_and_says_none_when_it_cannot():
    admission, handle, core = admission_setup(lease_requests=2)
    assert admission.try_acquire("m", 10) is None  # no lease yet: a round trip is needed
    assert not handle.calls  # and try_acquire never makes one

    async def scenario():
        first = await admission.acquire("m", 10)
        return first, admission.try_acquire("m", 10), admission.try_acquire("m", 10)

    first, second, third = asyncio.run(scenario())
    assert isinstance(first, RateTicket) and isinstance(second, RateTicket)
    assert third is None  # the lease of two is used up
    assert len(handle.calls_of("lease")) == 1
    admission.release(second)
    assert isinstance(admission.try_acquire("m", 10), RateTicket)  # given back, taken again
    admission.cool_down("m", 5.0)
    assert admission.try_acquire("m", 10) is None  # cooling down: acquire says for how long


def test_a_polled_cool_down_never_shortens_one_set_here():
    admission, handle, core = admission_setup()
    admission.cool_down("m", 30.0)
    until = time.monotonic() + 30.0
    admission.extend_cooling("m", time.monotonic() + 1.0)  # older news from the Selector
    retry = asyncio.run(admission.acquire("m", 10))
    assert not isinstance(retry, RateTicket) and retry > 28
    admission.extend_cooling("m", until + 60.0)  # a longer one is taken
    assert asyncio.run(admission.acquire("m", 10)) > 80


def test_try_reserve_spends_the_slice_at_once_and_never_past_it():
    budget, handle, core = budget_setup(limit_usd="1")
    assert budget.try_reserve(LIMITED, D("0.01")) is None  # no slice yet
    free = budget.try_reserve(FREE_KEY, D("0.01"))  # no limit applies: nothing to reserve
    assert free is not None and free.token is None
    assert not handle.calls

    async def scenario():
        first = await budget.reserve(LIMITED, D("0.01"), "r0")  # a slice of four worst cases
        rest = [budget.try_reserve(LIMITED, D("0.01")) for _ in range(4)]
        return first, rest

    first, rest = asyncio.run(scenario())
    assert all(t is not None for t in rest[:3]) and rest[3] is None
    for ticket in [first, *rest[:3]]:
        budget.settle(ticket, D("0.01"))
    asyncio.run(budget.flush(everything=True))
    assert spent(core) == D("0.04") and len(handle.calls_of("grant_slice")) == 1
