"""Admission from leases and budget from slices (``LeaseAdmission``, ``SliceBudget``,
``TieredCache``) against recording granters over real cores, on a ManualClock (no Ray).

A recording granter runs each call on a real core at once (as an actor would run it eventually)
and hands back an awaitable that can be held back by a gate (a slow owner) or fail with
``ComponentUnavailable`` (an owner that died or is restarting).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from api_model_management import ModelRequest, ModelResponse
from api_model_management._clock import ManualClock
from api_model_management.budget import (
    CostLedgerCore,
    LocalSliceGranter,
    SliceBudget,
    SpendKey,
)
from api_model_management.cache import CacheCore, LocalCache, TieredCache
from api_model_management.config import RateLimitSettings
from api_model_management.config._load import demo_config
from api_model_management.errors import BudgetExceeded, ComponentUnavailable
from api_model_management.ratelimit import (
    LeaseAdmission,
    LocalLeaseGranter,
    RateLimiterCore,
    RateTicket,
)

from _fakes import GOOD_PROMPT, config_with

pytestmark = pytest.mark.unit

D = Decimal
LIMITED = SpendKey("openai", "gpt-4.1-mini", "research")
FREE_KEY = SpendKey("openai", "gpt-4.1-mini", "default")


class Ref:
    """What a recorded call hands back: awaitable, maybe held back by a gate or failing."""

    def __init__(self, value: Any = None, error: BaseException | None = None,
                 gate: asyncio.Event | None = None) -> None:
        self.value, self.error, self.gate = value, error, gate

    def __await__(self):
        if self.gate is not None:
            yield from self.gate.wait().__await__()
        if self.error is not None:
            raise self.error
        return self.value


class Recorder:
    """Records every call to ``target`` and runs it at once; ``down`` makes calls fail with
    ``ComponentUnavailable``; ``gates[method]`` holds a method's answer back."""

    def __init__(self, target: Any, name: str) -> None:
        self.target, self.name = target, name
        self.down = False
        self.gates: dict[str, asyncio.Event] = {}
        self.calls: list[tuple[str, tuple]] = []

    def call(self, method: str, *args: Any) -> Ref:
        self.calls.append((method, args))
        if self.down:
            return Ref(error=ComponentUnavailable(f"{self.name} is down", component=self.name))
        value = getattr(self.target, method)(*args)
        return Ref(value=value, gate=self.gates.get(method))

    async def ask(self, method: str, *args: Any) -> Any:
        """Call and wait for the answer (the local granters answer with a coroutine)."""
        value = await self.call(method, *args)
        if asyncio.iscoroutine(value):
            value = await value
        return value

    def calls_of(self, name: str) -> list[tuple]:
        return [args for method, args in self.calls if method == name]

    async def sent(self, method: str, args: tuple, run: Any) -> Any:
        """As an actor call is: recorded and run at once (the owner acts on it whether or not
        the caller still waits), its answer held back by ``gates[method]``."""
        self.calls.append((method, args))
        value = run()
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        return value


class RecordingLeases(Recorder):
    """A LeaseGranter over RateLimiter cores."""

    def __init__(self, cores: dict[str, RateLimiterCore]) -> None:
        super().__init__(LocalLeaseGranter(cores), "RateLimiter")
        self.cores = cores

    async def lease(self, model_id: str, holder: str, requests: int, tokens: int,
                    min_tokens: int = 0):
        return await self.ask("lease", model_id, holder, requests, tokens, min_tokens)

    def return_lease(self, model_id: str, lease_id: str, used_requests: int, used_tokens: int) -> Ref:
        return self.call("return_lease", model_id, lease_id, used_requests, used_tokens)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self.call("cool_down", model_id, retry_after_s)

    def observe(self, model_id: str, state) -> None:
        self.call("observe", model_id, state)


class RecordingSlices(Recorder):
    """A SliceGranter over a CostLedger core; ``grant_cap_usd`` caps every grant (a ledger that
    grants less than asked)."""

    follows_log = False

    def __init__(self, core: CostLedgerCore, grant_cap_usd: Decimal | None = None) -> None:
        super().__init__(LocalSliceGranter(core), "CostLedger")
        self.grant_cap_usd = grant_cap_usd

    async def grant_slice(self, key, amount_usd, holder, minimum_usd):
        if self.grant_cap_usd is not None:
            amount_usd = min(amount_usd, self.grant_cap_usd)
            minimum_usd = min(minimum_usd, self.grant_cap_usd)
        return await self.ask("grant_slice", key, amount_usd, holder, minimum_usd)

    def return_slice(self, slice_id, spent_usd, key, charges=None) -> Ref:
        return self.call("return_slice", slice_id, spent_usd, key, charges)

    async def record(self, key, amount_usd) -> None:
        await self.ask("record", key, amount_usd)


async def _held_back(handle: Recorder, method: str, calls: list) -> list:
    """Start ``calls`` while the actor's ``method`` is held back (a slow actor): none may finish
    before it answers; then let it answer and return their results."""
    gate = handle.gates[method] = asyncio.Event()
    tasks = [asyncio.create_task(call()) for call in calls]
    for _ in range(10):
        await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)
    gate.set()
    return await asyncio.gather(*tasks)


def budget_setup(enforcement: str = "strict", limit_usd: str = "1",
                 grant_cap_usd: Decimal | None = None, clock: ManualClock | None = None):
    config = config_with(budgets={"enforcement": enforcement, "limits": [
        {"scope": "agent_type", "key": "research", "limit_usd": limit_usd}]})
    clock = clock or ManualClock()
    core = CostLedgerCore(config.settings.budgets, registry=config, clock=clock)
    handle = RecordingSlices(core, grant_cap_usd)
    budget = SliceBudget(handle, config.settings.budgets, "router-1", clock=clock, slice_calls=4)
    return budget, handle, core


def spent(core: CostLedgerCore, key: SpendKey = LIMITED) -> Decimal:
    return core.spend("agent_type", key.agent_type, "day")


# ---------------------------------------------------------------------------------------------
# SliceBudget


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
# LeaseAdmission


def admission_setup(rpm: int = 100, tpm: int = 1_000_000, lease_requests: int = 4,
                    lease_tokens: int = 4000, clock: ManualClock | None = None):
    clock = clock or ManualClock()
    core = RateLimiterCore("m", rpm, tpm, settings=RateLimitSettings(lease_ttl_s=60.0), clock=clock)
    handle = RecordingLeases({"m": core})
    admission = LeaseAdmission(handle, "router-1", lease_requests=lease_requests,
                               lease_tokens=lease_tokens, clock=clock)
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
    leased = sum(lease_args[2] for lease_args in handle.calls_of("lease"))
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
        ticket = await admission.acquire("m", 10)
        assert isinstance(ticket, RateTicket)
        admission.cool_down("m", 30.0)
        retry = await admission.acquire("m", 10)
        assert not handle.calls_of("return_lease")  # its ticket is in flight: not yet
        admission.commit(ticket, 25)
        return retry

    retry = asyncio.run(scenario())
    assert not isinstance(retry, RateTicket) and 29 < retry <= 30
    assert handle.calls_of("cool_down") == [("m", 30.0)]
    assert core.status().cooling_until_monotonic is not None
    assert handle.calls_of("return_lease")[0][2:] == (1, 25)  # handed back after its last ticket


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
    assert handle.calls_of("return_lease")[0][2:] == (1, 40)
    status = core.status()
    assert status.requests_used == 1 and status.tokens_used == 40 and status.leased_requests == 0


# ---------------------------------------------------------------------------------------------
# TieredCache


class RecordingTier(Recorder):
    """The shared cache tier (a CachePort) over a core."""

    async def get(self, request):
        return await self.ask("get", request)

    def put(self, request, response, cost_usd) -> None:
        self.call("put", request, response, cost_usd)


def test_tiered_cache_shares_through_the_shared_tier_and_misses_while_it_is_down():
    settings = demo_config().settings.cache
    clock = ManualClock()
    handle = RecordingTier(LocalCache(CacheCore(settings, clock=clock)), "Cache")

    def router_cache() -> TieredCache:
        return TieredCache(CacheCore(settings, clock=clock), handle)

    request = ModelRequest(prompt=GOOD_PROMPT, parameters={"temperature": 0})
    response = ModelResponse(request_id="r", model_id="m", provider="p", text="t", finish_reason="stop")
    first, second = router_cache(), router_cache()
    first.put(request, response, D("0.01"))
    hit = asyncio.run(second.get(request))  # through the shared tier
    assert (hit.response, hit.cost_usd) == (response, D("0.01"))
    handle.down = True
    assert asyncio.run(router_cache().get(request)) is None  # the shared tier is down: a miss
    hit = asyncio.run(second.get(request))  # its local copy
    assert (hit.response, hit.cost_usd) == (response, D("0.01"))


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
    clock = ManualClock()
    admission, handle, core = admission_setup(clock=clock)
    admission.cool_down("m", 30.0)
    until = clock.monotonic() + 30.0
    admission.extend_cooling("m", clock.monotonic() + 1.0)  # older news from the Selector
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


def test_growth_paces_refills_from_the_grants_arrival_not_the_ask():
    """A grant that queued at its owner longer than ``fast_s`` still doubles the next one when
    the holder used it up quickly: the pace is how fast the holder consumed it."""
    from api_model_management._grants import Growth

    clock = ManualClock()
    growth = Growth(clock, start=1, cap=16, fast_s=1.0)
    assert growth.next("m") == 1
    clock.advance(3.0)  # the owner is busy: the grant takes 3 s to come back
    growth.arrived("m")
    clock.advance(0.2)  # used up in 0.2 s
    assert growth.next("m") == 2
    clock.advance(3.0)
    growth.arrived("m")
    clock.advance(0.2)
    assert growth.next("m") == 4
    assert growth.idle_for("m") == 0.0
    clock.advance(5.0)  # a slow holder: back to the base size (leases reset)
    growth.arrived("m")
    clock.advance(2.0)
    assert growth.next("m") == 1
    growth.arrived("never-asked")  # nothing asked: nothing to count from
    assert growth.idle_for("never-asked") == float("inf")


class SentSlices(RecordingSlices):
    """Grants as a CostLedger actor does: the call is sent, and run, before its answer is
    awaited (a gate holds back only the answer)."""

    async def grant_slice(self, key, amount_usd, holder, minimum_usd):
        return await self.sent("grant_slice", (key, amount_usd, holder, minimum_usd),
                               lambda: self.target.ledger.grant_slice(
                                   key, amount_usd, holder, minimum_usd=minimum_usd))


async def _given_up(handle: Recorder, method: str, call: Any, granted: Any) -> None:
    """Start ``call`` while the owner's answer to ``method`` is held back; once the owner has
    granted (``granted()``), the caller gives up (is cancelled); then the answer arrives."""
    gate = handle.gates[method] = asyncio.Event()
    waiting = asyncio.create_task(call())
    for _ in range(10):
        await asyncio.sleep(0)
    assert granted()  # the owner acted; its answer is on its way
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)


def test_a_refill_whose_caller_gave_up_still_arrives_and_goes_back():
    """The CostLedger grants a slice whether or not the router still waits for the answer: a
    caller cancelled while its refill is on the way must not orphan the slice (the ledger would
    hold it until the router is gone); it is kept, and returned at the next flush."""
    budget, _, core = budget_setup()
    handle = budget.granter = SentSlices(core)

    async def scenario():
        await _given_up(handle, "grant_slice", lambda: budget.reserve(LIMITED, D("0.01"), "r0"),
                        granted=lambda: core.reserved_usd() == D("0.04"))  # four worst cases
        ticket = await budget.reserve(LIMITED, D("0.01"), "r1")  # from that slice, no new grant
        budget.settle(ticket, D("0.004"))
        await budget.flush(everything=True)

    asyncio.run(scenario())
    assert len(handle.calls_of("grant_slice")) == 1
    assert core.reserved_usd() == 0 and spent(core) == D("0.004")


class SentLeases(RecordingLeases):
    """Grants as a RateLimiter actor does: the call is sent, and run, before its answer is
    awaited (a gate holds back only the answer)."""

    async def lease(self, model_id: str, holder: str, requests: int, tokens: int,
                    min_tokens: int = 0):
        return await self.sent("lease", (model_id, holder, requests, tokens, min_tokens),
                               lambda: self.cores[model_id].lease(holder, requests, tokens,
                                                                  min_tokens))


def test_a_lease_refill_whose_caller_gave_up_still_arrives_and_goes_back():
    """The RateLimiter grants a lease whether or not the router still waits for the answer: a
    caller cancelled while its refill is on the way must not orphan the lease (its capacity would
    stay counted at the limiter until it expires and a second lease be asked for); it is taken in,
    used, and returned with its usage."""
    admission, _, core = admission_setup(lease_requests=4)
    handle = admission.granter = SentLeases({"m": core})

    async def scenario():
        await _given_up(handle, "lease", lambda: admission.acquire("m", 100),
                        granted=lambda: core.status().leased_requests == 4)
        ticket = await admission.acquire("m", 100)  # from that lease, no new one
        assert isinstance(ticket, RateTicket)
        admission.commit(ticket, 40)
        for ref in admission.return_all():
            await ref

    asyncio.run(scenario())
    assert len(handle.calls_of("lease")) == 1
    status = core.status()
    assert status.requests_used == 1 and status.tokens_used == 40 and status.leased_requests == 0
