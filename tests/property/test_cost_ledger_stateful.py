"""Hypothesis state machine over the CostLedger core.

An independent model keeps the open holds (reservations and slices, with their creation times)
and every settled amount with its timestamp. Checked after every step: settled + held never passes
a hard limit, no hold leaks past its TTL, settled spend equals the sum settled, one alert per
crossing per window, and a ledger rebuilt from the events equals the live one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, multiple, rule

from api_model_management._clock import ManualClock
from api_model_management.budget._ledger import CostLedgerCore, SpendKey
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.errors import BudgetExceeded
from api_model_management.events import BudgetAlert, Event, RequestCompleted

pytestmark = pytest.mark.property

D = Decimal
TTL_S = 120.0
SLICE_TTL_S = 30.0
SETTINGS = BudgetSettings(
    reservation_ttl_s=TTL_S,
    alert_thresholds=[0.5, 0.8, 1.0],
    limits=[
        BudgetLimit(limit_usd=D(10)),
        BudgetLimit(scope="model", key="*", limit_usd=D(4)),
        BudgetLimit(scope="provider", key="p1", window="month", limit_usd=D(8)),
        BudgetLimit(scope="agent_type", key="a2", limit_usd=D("2.5")),
    ],
)
KEYS = [SpendKey("p1", "m1", "a1"), SpendKey("p1", "m2", "a2"), SpendKey("p2", "m3", "a2")]
CENTS = st.integers(0, 400).map(lambda c: D(c) / 100)


@dataclass
class Hold:
    hold_id: str
    kind: str
    key: SpendKey
    amount: Decimal
    drop_at: float


class CostLedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(start=datetime(2026, 1, 30, 22, 0, tzinfo=UTC))
        self.ledger = CostLedgerCore(SETTINGS, clock=self.clock, slice_ttl_s=SLICE_TTL_S)
        self.open: dict[str, Hold] = {}
        self.settled: list[tuple[SpendKey, Decimal, datetime]] = []
        self.log: list[Event] = []  # what the router and the ledger would have written
        self.alerts: list[BudgetAlert] = []

    @rule(target=holds, key=st.sampled_from(KEYS), amount=CENTS)
    def reserve(self, key, amount):
        try:
            rid = self.ledger.reserve(key, amount, holder="router")
        except BudgetExceeded as exc:
            assert exc.spent_usd + exc.reserved_usd + amount > exc.limit_usd
            return multiple()
        hold = Hold(rid, "reservation", key, amount, self.clock.monotonic() + TTL_S)
        self.open[rid] = hold
        return hold

    @rule(target=holds, key=st.sampled_from(KEYS), amount=CENTS)
    def grant_slice(self, key, amount):
        piece = self.ledger.grant_slice(key, amount, "router")
        assert piece.amount_usd <= amount
        if piece.slice_id is None:
            return multiple()
        drop_at = piece.expires_at_monotonic + TTL_S
        hold = Hold(piece.slice_id, "slice", key, piece.amount_usd, drop_at)
        self.open[piece.slice_id] = hold
        return hold

    @rule(hold=consumes(holds), data=st.data())
    def settle(self, hold, data):
        if hold.hold_id not in self.open:
            return  # expired: late settles are covered by the unit tests
        actual = data.draw(st.integers(0, int(hold.amount * 100)).map(lambda c: D(c) / 100))
        if hold.kind == "slice":
            alerts = self.ledger.return_slice(hold.hold_id, actual)
        else:
            alerts = self.ledger.settle(hold.hold_id, actual)
        del self.open[hold.hold_id]
        now = self.clock.now()
        self.settled.append((hold.key, actual, now))
        self.log.append(RequestCompleted(
            occurred_at=now, provider=hold.key.provider, model_id=hold.key.model_id,
            agent_type=hold.key.agent_type, latency_ms=1.0, cost_usd=actual,
        ))
        assert alerts == [e for e in self.ledger.drain_events() if isinstance(e, BudgetAlert)]
        self.alerts.extend(alerts)
        self.log.extend(alerts)

    @rule(hold=consumes(holds))
    def release(self, hold):
        if hold.hold_id not in self.open or hold.kind != "reservation":
            return
        self.ledger.release(hold.hold_id)
        del self.open[hold.hold_id]

    @rule(seconds=st.sampled_from([1.0, 30.0, 119.0, 120.0, 600.0, 3600.0, 43_200.0]))
    def advance(self, seconds):
        self.clock.advance(seconds)
        now = self.clock.monotonic()
        self.open = {k: h for k, h in self.open.items() if h.drop_at > now}

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def holds_match_the_model_and_never_leak(self):
        self.ledger.expire()
        assert {r.reservation_id for r in self.ledger.reservations()} == set(self.open)
        assert self.ledger.reserved_usd() == sum((h.amount for h in self.open.values()), D(0))

    @invariant()
    def settled_plus_held_never_passes_a_hard_limit(self):
        for row in self.ledger.status():
            assert row.spent_usd + row.reserved_usd <= row.limit_usd, row

    @invariant()
    def settled_spend_is_the_sum_settled(self):
        now = self.clock.now()
        for window in ("day", "month"):
            start = self.ledger._window_start(window, now)
            expected = sum((a for _, a, at in self.settled
                            if self.ledger._window_start(window, at) == start), D(0))
            assert self.ledger.spend("global", "*", window) == expected

    @invariant()
    def one_alert_per_crossing_per_window(self):
        keys = [(a.scope, a.scope_key, a.window, a.window_start, a.threshold, a.limit_usd)
                for a in self.alerts]
        assert len(keys) == len(set(keys))
        for row in self.ledger.status():
            for threshold in SETTINGS.alert_thresholds:
                crossed = row.spent_usd >= D(str(threshold)) * row.limit_usd
                alerted = (row.scope, row.key, row.window, row.window_start, threshold,
                           row.limit_usd) in keys
                assert crossed == alerted, (row, threshold)

    @invariant()
    def rebuilding_from_the_events_reproduces_the_spend(self):
        rebuilt = CostLedgerCore.from_events(SETTINGS, self.log, clock=self.clock)
        live = self.ledger.snapshot()
        assert rebuilt.snapshot().settled == live.settled
        assert rebuilt.snapshot().alerted == live.alerted
        assert rebuilt.drain_events() == []


CostLedgerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCostLedgerMachine = CostLedgerMachine.TestCase
