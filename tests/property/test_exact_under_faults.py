"""Exactness under faults (issue 10): hypothesis state machines that drive routers' budget slices
and rate-limit leases through grants, settlements, expiries, holder deaths and restarts of the
ledger and the limiter, checking after every step:

- budgets: what may have been spent (settled calls at their cost, calls in flight or lost at
  their worst case) never passes the strict limit, and the ledger counts no less than what was
  settled: settled + reserved + sliced + pending >= true spend; across ledger restarts (rebuilt
  from the log, holds from their journal);
- rate limits: requests sent in any window never pass RPM, and used + leased never passes it at
  the limiter; across limiter restarts (replayed from its journal).

The runtime's pieces are used as they are: ``SliceBudget`` and ``LeaseAdmission`` on the
router side, ``CostLedgerCore`` with ``HoldJournal`` and ``RateLimiterCore`` with
``LimiterJournal`` on the owner side; what Ray does (carry calls) is a direct call here, and what
the EventSink does (bring a router's spooled terminal events into the log) is a rule.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from api_model_management._clock import ManualClock
from api_model_management.budget import (
    CostLedgerCore,
    HoldJournal,
    Slice,
    SliceBudget,
    SpendDelta,
    SpendKey,
)
from api_model_management.config import BudgetLimit, BudgetSettings, RateLimitSettings
from api_model_management.errors import BudgetExceeded, ComponentUnavailable
from api_model_management.ratelimit import (
    Lease,
    LeaseAdmission,
    LimiterJournal,
    RateLimiterCore,
    RateLimitState,
    RateTicket,
)

pytestmark = pytest.mark.property

D = Decimal
LIMIT = D("1.00")
KEY = SpendKey("p1", "m1", "a1")
BUDGETS = BudgetSettings(limits=[BudgetLimit(limit_usd=LIMIT)], reservation_ttl_s=5.0,
                         slice_ttl_s=3.0)
START = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
HOLDERS = ["router-a", "router-b", "router-c"]


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------------------------------------
# budgets


class LedgerBox:
    """The one CostLedger (replaced on restart), as a SliceGranter that follows the log (the
    Ray runtime's granter, with the actor call made directly)."""

    follows_log = True

    def __init__(self, machine: BudgetMachine) -> None:
        self.machine = machine

    @property
    def core(self) -> CostLedgerCore:
        return self.machine.ledger

    def _answer(self) -> None:
        if self.machine.ledger_down:
            raise ComponentUnavailable("restarting", component="CostLedger")

    async def grant_slice(self, key: SpendKey, amount_usd: Decimal, holder: str,
                          minimum_usd: Decimal) -> Slice:
        self._answer()
        try:
            return self.core.grant_slice(key, amount_usd, holder, minimum_usd=minimum_usd)
        finally:
            self.machine.journal.append(self.core.drain_hold_changes())

    def return_slice(self, slice_id: str, spent_usd: Decimal, key: SpendKey,
                     charges: Sequence[tuple[str, Decimal]] | None = None) -> None:
        if self.machine.ledger_down:
            return  # lost on the wire: the slice stays held until it expires
        self.core.return_slice(slice_id, spent_usd, key, charges=charges)
        self.machine.journal.append(self.core.drain_hold_changes())

    async def record(self, key: SpendKey, amount_usd: Decimal) -> None:
        raise AssertionError("a ledger that follows the log is never sent unreserved spend")


@dataclass
class Call:
    holder: str
    request_id: str
    ticket: object
    worst: Decimal
    actual: Decimal


@dataclass
class Holder:
    name: str
    budget: SliceBudget
    in_flight: list[Call] = field(default_factory=list)
    spooled: list[tuple[str, Decimal]] = field(default_factory=list)  # terminal events, unsent
    dead: bool = False


class BudgetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="amm-exact-"))
        self.clock = ManualClock(start=START)
        self.gone: set[str] = set()
        self.journal = HoldJournal(self.tmp / "holds.jsonl", self.clock)
        self.ledger_down = False
        self.log: list[tuple[str, Decimal]] = []  # (request id, cost) delivered to the log
        self.ledger = self._new_ledger()
        self.box = LedgerBox(self)
        self.holders = {name: self._holder(name) for name in HOLDERS[:2]}
        self.seq = 0
        self.spent = D(0)  # settled calls' actual costs and lost calls' worst cases
        self.incarnation = 0

    def teardown(self) -> None:
        self.journal.close()

    def _new_ledger(self) -> CostLedgerCore:
        return CostLedgerCore(BUDGETS, clock=self.clock, follows_log=True,
                              holder_gone=lambda holder: holder in self.gone)

    def _holder(self, name: str) -> Holder:
        return Holder(name, SliceBudget(LedgerBox(self), BUDGETS, name, clock=self.clock,
                                        slice_calls=2))

    def _live(self) -> list[Holder]:
        return [h for h in self.holders.values() if not h.dead]

    # -- the routers -----------------------------------------------------------------------
    @rule(which=st.integers(0, 5), cents=st.integers(1, 20), share=st.integers(0, 100))
    def start_call(self, which: int, cents: int, share: int) -> None:
        live = self._live()
        if not live:
            return
        holder = live[which % len(live)]
        worst = D(cents) / 100
        self.seq += 1
        rid = f"r{self.seq}"
        try:
            ticket = run(holder.budget.reserve(KEY, worst, rid))
        except (BudgetExceeded, ComponentUnavailable):
            return
        holder.in_flight.append(Call(holder.name, rid, ticket, worst, worst * share / 100))

    @rule(which=st.integers(0, 5), pick=st.integers(0, 50), made=st.booleans())
    def end_call(self, which: int, pick: int, made: bool) -> None:
        live = [h for h in self._live() if h.in_flight]
        if not live:
            return
        holder = live[which % len(live)]
        call = holder.in_flight.pop(pick % len(holder.in_flight))
        if made:
            holder.budget.settle(call.ticket, call.actual)  # type: ignore[arg-type]
            holder.spooled.append((call.request_id, call.actual))
            self.spent += call.actual
        else:
            holder.budget.release(call.ticket)  # type: ignore[arg-type]
            holder.spooled.append((call.request_id, D(0)))

    @rule(which=st.integers(0, 5), everything=st.booleans())
    def router_housekeeping(self, which: int, everything: bool) -> None:
        live = self._live()
        if live:
            run(live[which % len(live)].budget.flush(everything=everything))

    @rule(finalize=st.booleans())
    def sink_ingests(self, finalize: bool) -> None:
        """Spooled terminal events of every holder reach the log, and the ledger; a dead
        holder's spool too, and (``finalize``) the holder is then known to be gone."""
        for holder in self.holders.values():
            self._deliver(holder.spooled)
            holder.spooled = []
            if holder.dead and finalize:
                self.gone.add(holder.name)

    def _deliver(self, charges: list[tuple[str, Decimal]]) -> None:
        if not charges:
            return
        self.log.extend(charges)
        if not self.ledger_down:
            self.ledger.apply_log(_delta(charges, self.clock.now()))

    @rule(which=st.integers(0, 5))
    def a_router_dies(self, which: int) -> None:
        """kill -9: slices unreturned; calls in flight are lost, charged at their worst case by
        the sink when it ingests the dead writer's spool (some time later)."""
        live = self._live()
        if not live:
            return
        holder = live[which % len(live)]
        holder.dead = True
        holder.spooled += [(c.request_id, c.worst) for c in holder.in_flight]
        self.spent += sum((c.worst for c in holder.in_flight), D(0))
        holder.in_flight = []

    @precondition(lambda self: len(self.holders) < len(HOLDERS))
    @rule()
    def a_router_starts(self) -> None:
        name = HOLDERS[len(self.holders)]
        self.holders[name] = self._holder(name)

    # -- the ledger ------------------------------------------------------------------------
    @rule()
    def the_ledger_restarts(self) -> None:
        """A new incarnation: settled spend from the log, holds from the journal."""
        self.ledger_down = False
        self.ledger = self._new_ledger()
        self.ledger.apply_log(_delta(self.log, self.clock.now()))
        self.ledger.restore_holds(HoldJournal(self.tmp / "holds.jsonl", self.clock).load())
        self.journal.close()
        self.journal.rewrite(self.ledger.reservations())
        self.ledger.drain_hold_changes()

    @rule()
    def the_ledger_is_down(self) -> None:
        self.ledger_down = True

    @rule(seconds=st.sampled_from([0.1, 1.0, 2.5, 9.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        if not self.ledger_down:
            self.ledger.expire()
            self.journal.append(self.ledger.drain_hold_changes())

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def what_may_have_been_spent_never_passes_the_limit(self) -> None:
        in_flight = sum((c.worst for h in self.holders.values() for c in h.in_flight), D(0))
        assert self.spent + in_flight <= LIMIT, (self.spent, in_flight)

    @invariant()
    def the_ledger_counts_at_least_what_was_spent(self) -> None:
        """Every cent that left is counted: settled (the log delivered it), pending (a returned
        slice reported it), or inside a slice still held (its holder is alive, or dead and not
        yet in the log); across restarts (settled from the log, holds from the journal)."""
        if self.ledger_down:
            return
        counted = self.ledger.spend("global", "*", "day") + self.ledger.reserved_usd()
        assert counted >= self.spent
        assert self.ledger.spend("global", "*", "day") <= self.spent  # never counted twice


def _delta(charges: list[tuple[str, Decimal]], at: datetime) -> SpendDelta:
    return SpendDelta(added=[(KEY, at, cost) for _, cost in charges if cost > 0],
                      request_ids=[rid for rid, _ in charges])


TestBudgetsUnderFaults = BudgetMachine.TestCase
TestBudgetsUnderFaults.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ---------------------------------------------------------------------------------------------
# rate limits

RPM = 4
WINDOW_S = 60.0
RATE = RateLimitSettings(window_s=WINDOW_S, lease_ttl_s=5.0, lease_requests=2, lease_tokens=300)


class LimiterBox:
    """The model's RateLimiter (replaced on restart) as a LeaseGranter, journaling each decision
    before it answers (as the actor shell does)."""

    def __init__(self, machine: LimiterMachine) -> None:
        self.machine = machine

    def _answer(self) -> RateLimiterCore:
        if self.machine.limiter_down:
            raise ComponentUnavailable("restarting", component="RateLimiter")
        return self.machine.limiter

    def _saved(self) -> None:
        self.machine.journal.append(self.machine.limiter.drain_records())

    async def lease(self, model_id: str, holder: str, requests: int, tokens: int,
                    min_tokens: int = 0) -> Lease:
        core = self._answer()
        try:
            return core.lease(holder, requests, tokens, min_tokens)
        finally:
            self._saved()

    def return_lease(self, model_id: str, lease_id: str, used_requests: int,
                     used_tokens: int) -> None:
        if self.machine.limiter_down:
            return
        try:
            self.machine.limiter.return_lease(lease_id, used_requests, used_tokens)
        except Exception:  # noqa: BLE001 - a lease the restarted limiter forgot: counted, expires
            pass
        self._saved()

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        if not self.machine.limiter_down:
            self.machine.limiter.cool_down(retry_after_s)
            self._saved()

    def observe(self, model_id: str, state: RateLimitState) -> None:
        return None


class LimiterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="amm-exact-rl-"))
        self.clock = ManualClock(start=START)
        self.journal = LimiterJournal(self.tmp / "m.jsonl", self.clock)
        self.limiter_down = False
        self.limiter = self._replayed()
        self.ports = {name: self._port(name) for name in HOLDERS}
        self.tickets: list[tuple[str, RateTicket]] = []
        self.sent: list[float] = []  # when each request reached the provider

    def teardown(self) -> None:
        self.journal.close()

    def _replayed(self) -> RateLimiterCore:
        return RateLimiterCore.replay(LimiterJournal(self.tmp / "m.jsonl", self.clock).load(),
                                      "m", RPM, 100_000, settings=RATE, clock=self.clock)

    def _port(self, name: str) -> LeaseAdmission:
        return LeaseAdmission(LimiterBox(self), name, lease_requests=RATE.lease_requests,
                              lease_tokens=RATE.lease_tokens, clock=self.clock)

    @rule(which=st.sampled_from(HOLDERS), tokens=st.integers(1, 50))
    def admit(self, which: str, tokens: int) -> None:
        ticket = self.ports[which].try_acquire("m", tokens)
        if ticket is None:
            answer = run(self.ports[which].acquire("m", tokens))
            if not isinstance(answer, RateTicket):
                return
            ticket = answer
        self.tickets.append((which, ticket))

    @rule(pick=st.integers(0, 50), sent=st.booleans())
    def finish(self, pick: int, sent: bool) -> None:
        if not self.tickets:
            return
        which, ticket = self.tickets.pop(pick % len(self.tickets))
        if sent:
            self.sent.append(self.clock.monotonic())
            self.ports[which].commit(ticket, ticket.tokens)
        else:
            self.ports[which].release(ticket)

    @rule(which=st.sampled_from(HOLDERS))
    def housekeeping(self, which: str) -> None:
        self.ports[which].return_idle()

    @rule(which=st.sampled_from(HOLDERS))
    def a_router_dies(self, which: str) -> None:
        """Its leases are never returned; its tickets vanish (in flight: count them as sent)."""
        for _ in [t for t in self.tickets if t[0] == which]:
            self.sent.append(self.clock.monotonic())
        self.tickets = [t for t in self.tickets if t[0] != which]
        self.ports[which] = self._port(which)

    @rule()
    def the_limiter_restarts(self) -> None:
        self.limiter_down = False
        self.journal.close()
        self.limiter = self._replayed()

    @rule()
    def the_limiter_is_down(self) -> None:
        self.limiter_down = True

    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0, 20.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        """A router sends a request at once when it has its ticket (it holds its concurrency
        slot before it takes the ticket): whatever is in flight is sent before time moves."""
        for which, ticket in self.tickets:
            self.sent.append(self.clock.monotonic())
            self.ports[which].commit(ticket, ticket.tokens)
        self.tickets = []
        self.clock.advance(seconds)

    @invariant()
    def no_window_sends_more_than_rpm(self) -> None:
        # every request taken from a lease is counted as possibly sent (it may be in flight)
        now = self.clock.monotonic()
        in_flight = len(self.tickets)
        recent = [t for t in self.sent if t > now - WINDOW_S]
        assert len(recent) + in_flight <= RPM
        for i, t in enumerate(self.sent):  # and no earlier window either
            assert sum(1 for u in self.sent[i:] if u < t + WINDOW_S) <= RPM

    @invariant()
    def used_and_leased_stay_within_rpm_at_the_limiter(self) -> None:
        if not self.limiter_down:
            assert self.limiter.status().requests_used <= RPM


TestRateLimitsUnderFaults = LimiterMachine.TestCase
TestRateLimitsUnderFaults.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
