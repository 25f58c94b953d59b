"""CostLedger core and router-side SliceHolder: every method, every bad input (no Ray)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api_model_management._clock import ManualClock
from api_model_management.budget import SliceHolder
from api_model_management.budget._ledger import CostLedgerCore, Slice, SpendKey
from api_model_management.config import BudgetLimit, BudgetSettings, RegistryConfig
from api_model_management.errors import BudgetExceeded, InvalidInput
from api_model_management.events import (
    BudgetAlert,
    FeedbackRecorded,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)

pytestmark = pytest.mark.unit

D = Decimal
KEY = SpendKey("openai", "gpt-a", "research")
OTHER = SpendKey("anthropic", "claude-b", "coding")
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def settings(*limits: BudgetLimit, **kwargs) -> BudgetSettings:
    return BudgetSettings(limits=list(limits), **kwargs)


def make(*limits: BudgetLimit, **kwargs) -> tuple[CostLedgerCore, ManualClock]:
    clock = ManualClock(start=START)
    return CostLedgerCore(settings(*limits, **kwargs), clock=clock), clock


GLOBAL_10 = BudgetLimit(limit_usd=D(10))


# -- reserve / settle / release --------------------------------------------------------------------


def test_reserve_up_to_the_limit_then_refuse_with_the_numbers():
    ledger, _ = make(GLOBAL_10)
    ledger.settle(ledger.reserve(KEY, D("4")), D("3.5"))
    ledger.reserve(KEY, D("6.5"))  # exactly at the limit is allowed
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(OTHER, D("0.01"))
    err = info.value
    assert (err.scope, err.scope_key, err.window) == ("global", "*", "day")
    assert (err.limit_usd, err.spent_usd, err.reserved_usd, err.requested_usd) == (
        D(10), D("3.5"), D("6.5"), D("0.01"))
    again = pickle.loads(pickle.dumps(err))
    assert again.spent_usd == D("3.5") and str(again) == str(err)


def test_limits_apply_by_scope_and_key():
    ledger, _ = make(
        BudgetLimit(scope="provider", key="openai", limit_usd=D(2)),
        BudgetLimit(scope="agent_type", key="coding", limit_usd=D(1), window="month"),
    )
    ledger.reserve(KEY, D(2))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(KEY, D("0.5"))
    assert (info.value.scope, info.value.scope_key) == ("provider", "openai")
    ledger.reserve(OTHER, D(1))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(OTHER, D("0.001"))
    assert (info.value.scope, info.value.window) == ("agent_type", "month")
    ledger.reserve(SpendKey("google", "gem", "other"), D(100))  # no limit applies


def test_wildcard_key_limits_each_key_separately():
    ledger, _ = make(BudgetLimit(scope="model", key="*", limit_usd=D(1)))
    ledger.reserve(KEY, D(1))
    ledger.reserve(OTHER, D(1))
    with pytest.raises(BudgetExceeded):
        ledger.reserve(KEY, D("0.1"))
    assert {(s.key, s.reserved_usd) for s in ledger.status()} == {
        ("gpt-a", D(1)), ("claude-b", D(1))}


def test_best_effort_never_refuses():
    ledger, _ = make(GLOBAL_10, enforcement="best_effort")
    ledger.reserve(KEY, D(50))
    assert ledger.grant_slice(KEY, D(5), "r").amount_usd == D(5)


def test_settle_records_spend_in_every_scope_and_window():
    ledger, clock = make()
    ledger.settle(ledger.reserve(KEY, D(1)), D("0.25"))
    for scope, key in (("global", "*"), ("provider", "openai"), ("model", "gpt-a"),
                       ("agent_type", "research")):
        for window in ("day", "month"):
            assert ledger.spend(scope, key, window) == D("0.25")
    assert ledger.reserved_usd() == 0
    clock.advance(86_400)
    assert ledger.spend("global", "*", "day") == 0
    assert ledger.spend("global", "*", "month") == D("0.25")
    assert ledger.spend("global", "*", "day", at=START) == D("0.25")


def test_release_frees_the_hold():
    ledger, _ = make(GLOBAL_10)
    rid = ledger.reserve(KEY, D(10))
    ledger.release(rid)
    assert ledger.reserved_usd() == 0
    ledger.reserve(KEY, D(10))


@pytest.mark.parametrize("op", ["settle", "release"])
def test_unknown_or_closed_reservation_refused(op):
    ledger, _ = make(GLOBAL_10)
    rid = ledger.reserve(KEY, D(1))
    ledger.settle(rid, D(1))
    before = ledger.snapshot()
    call = (lambda r: ledger.settle(r, D(1))) if op == "settle" else ledger.release
    for bad in (rid, "nope", None):
        with pytest.raises(InvalidInput):
            call(bad)
    assert ledger.snapshot() == before


@pytest.mark.parametrize(
    "amount", [D(-1), D("NaN"), D("Infinity"), "abc", 0.5, None, True, [1], "-2"]
)
def test_bad_amounts_leave_state_untouched(amount):
    ledger, _ = make(GLOBAL_10)
    rid = ledger.reserve(KEY, D(1))
    before = ledger.snapshot()
    for call in (
        lambda: ledger.reserve(KEY, amount),
        lambda: ledger.settle(rid, amount),
        lambda: ledger.record(KEY, amount),
        lambda: ledger.grant_slice(KEY, amount, "r"),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert ledger.snapshot() == before and ledger.drain_events() == []


def test_ints_and_numeric_strings_are_exact_amounts():
    ledger, _ = make()
    ledger.record(KEY, "0.1")
    ledger.record(KEY, "0.2")
    ledger.record(KEY, 1)
    assert ledger.spend("global", "*", "day") == D("1.3")


def test_bad_keys_and_times_refused():
    ledger, _ = make()
    with pytest.raises(InvalidInput):
        ledger.reserve(object(), D(1))
    with pytest.raises(InvalidInput):
        ledger.reserve(SpendKey("p", 5, "a"), D(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ledger.record(KEY, D(1), occurred_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput):
        ledger.spend("team", "*", "day")
    assert ledger.snapshot().settled == ()


# -- expiry ------------------------------------------------------------------------------------


def test_orphaned_reservations_expire_and_reserve_expires_them():
    ledger, clock = make(GLOBAL_10, reservation_ttl_s=120)
    ledger.reserve(KEY, D(6), holder="dead-router")
    clock.advance(60)
    ledger.reserve(KEY, D(4))
    clock.advance(60)  # the first is 120 s old
    ledger.reserve(KEY, D(6))  # fits only because reserve expired the first
    assert ledger.reserved_usd() == D(10)
    clock.advance(120)
    assert ledger.expire() == 2
    assert ledger.reserved_usd() == 0 and ledger.reservations() == []


def test_late_settle_of_an_expired_reservation_still_records_the_spend():
    ledger, clock = make(GLOBAL_10, reservation_ttl_s=10)
    late = ledger.reserve(KEY, D(2))
    gone = ledger.reserve(KEY, D(2))
    clock.advance(11)
    assert ledger.expire() == 2
    ledger.settle(late, D("1.5"))
    ledger.release(gone)  # nothing to free, and no error
    assert ledger.spend("global", "*", "day") == D("1.5")
    with pytest.raises(InvalidInput):
        ledger.settle(late, D(1))


# -- alerts ------------------------------------------------------------------------------------


def alert_keys(events) -> list[tuple[str, str, float]]:
    return [(e.scope, e.scope_key, e.threshold) for e in events if isinstance(e, BudgetAlert)]


def test_one_alert_per_crossing_per_window():
    ledger, clock = make(GLOBAL_10)
    assert ledger.record(KEY, D(4)) == []
    alerts = ledger.record(KEY, D(1))
    assert alert_keys(alerts) == [("global", "*", 0.5)]
    assert alerts[0].spent_usd == D(5) and alerts[0].limit_usd == D(10)
    assert ledger.record(KEY, D(1)) == []  # still above 0.5: no repeat
    assert alert_keys(ledger.record(KEY, D(5))) == [("global", "*", 0.8), ("global", "*", 1.0)]
    assert alert_keys(ledger.drain_events()) == [
        ("global", "*", 0.5), ("global", "*", 0.8), ("global", "*", 1.0)]
    clock.advance(86_400)  # the next day window: again
    assert alert_keys(ledger.record(KEY, D(6))) == [("global", "*", 0.5)]


def test_monthly_alert_not_repeated_on_the_next_day():
    ledger, clock = make(BudgetLimit(scope="model", key="gpt-a", window="month", limit_usd=D(10)))
    assert len(ledger.record(KEY, D(6))) == 1
    clock.advance(86_400)
    assert ledger.record(KEY, D(1)) == []
    alert = ledger.record(KEY, D(1))[0]
    assert (alert.threshold, alert.model_id, alert.window) == (0.8, "gpt-a", "month")
    assert alert.window_start == datetime(2026, 3, 1, tzinfo=UTC)


def test_windows_follow_the_configured_time_zone():
    clock = ManualClock(start=datetime(2026, 3, 10, 3, 0, tzinfo=UTC))  # 22:00 on the 9th in NY
    ledger = CostLedgerCore(settings(timezone="America/New_York"), clock=clock)
    ledger.record(KEY, D(1))
    clock.advance(3600 * 2)  # 00:00 on the 10th in New York
    ledger.record(KEY, D(2))
    assert ledger.spend("global", "*", "day") == D(2)
    assert ledger.spend("global", "*", "day", at=datetime(2026, 3, 10, 3, tzinfo=UTC)) == D(1)
    first_bucket = ledger.snapshot().settled[0][0]
    assert first_bucket == ("agent_type", "research", "day", datetime(2026, 3, 9, 4, tzinfo=UTC))


# -- slices ------------------------------------------------------------------------------------


def test_slice_is_granted_up_to_the_headroom_and_holds_it():
    ledger, clock = make(GLOBAL_10)
    ledger.reserve(KEY, D(7))
    # a tenth of the headroom of $3 at most, but at least one worst case while that much is left
    assert ledger.grant_slice(KEY, D(5), "router-0").amount_usd == D("0.3")
    ledger.return_slice(ledger.reservations()[-1].reservation_id, D(0))
    piece = ledger.grant_slice(KEY, D(5), "router-1", minimum_usd=D(5))
    assert piece.amount_usd == D(3) and piece.slice_id
    assert piece.expires_at_monotonic == clock.monotonic() + 30
    with pytest.raises(BudgetExceeded):
        ledger.reserve(OTHER, D("0.01"))
    empty = ledger.grant_slice(KEY, D(1), "router-2")
    assert (empty.slice_id, empty.key, empty.amount_usd) == (None, KEY, D(0))
    # a refusal names the limit that refused, with its numbers
    assert empty.limited_by is not None and empty.limited_by.scope == "global"
    assert empty.limited_by.limit_usd == D(10) and empty.limited_by.reserved_usd == D(10)
    ledger.return_slice(piece.slice_id, D("1.25"))
    assert ledger.spend("global", "*", "day") == D("1.25")
    assert ledger.reserved_usd() == D(7)
    with pytest.raises(InvalidInput):
        ledger.return_slice(piece.slice_id, D(0))


def test_slice_expires_after_its_use_time_plus_the_reservation_ttl():
    ledger, clock = make(GLOBAL_10, reservation_ttl_s=100)
    piece = ledger.grant_slice(KEY, D(4), "router-1", ttl_s=10)
    clock.advance(109)
    assert ledger.expire() == 0
    clock.advance(1)
    assert ledger.expire() == 1 and ledger.reserved_usd() == 0
    alerts = ledger.return_slice(piece.slice_id, D(6))  # a late return still counts
    assert ledger.spend("model", "gpt-a", "day") == D(6) and len(alerts) == 1


def test_slice_and_reservation_ids_are_not_interchangeable():
    ledger, _ = make()
    piece = ledger.grant_slice(KEY, D(1), "r")
    rid = ledger.reserve(KEY, D(1))
    with pytest.raises(InvalidInput):
        ledger.settle(piece.slice_id, D(1))
    with pytest.raises(InvalidInput):
        ledger.return_slice(rid, D(1))
    with pytest.raises(InvalidInput):
        ledger.grant_slice(KEY, D(1), "")
    with pytest.raises(InvalidInput):
        ledger.grant_slice(KEY, D(1), "r", ttl_s=0)


def test_slice_holder_spends_locally():
    clock = ManualClock()
    holder = SliceHolder(Slice("s1", KEY, D("1.00"), clock.monotonic() + 30), clock)
    assert holder.try_reserve(D("0.60"))
    assert not holder.try_reserve(D("0.50"))
    holder.settle(D("0.60"), D("0.10"))
    assert holder.try_reserve(D("0.50"))
    holder.release(D("0.50"))
    assert (holder.spent_usd, holder.in_flight_usd, holder.available_usd()) == (
        D("0.10"), D(0), D("0.90"))
    with pytest.raises(InvalidInput):
        holder.settle(D("0.01"), D(0))
    with pytest.raises(InvalidInput):
        holder.try_reserve(0.1)
    clock.advance(30)
    assert holder.expired() and not holder.try_reserve(D("0.01"))


# -- rebuild from the event log ---------------------------------------------------------------------


def completed(key: SpendKey, cost: Decimal, at: datetime, **kw) -> RequestCompleted:
    return RequestCompleted(occurred_at=at, provider=key.provider, model_id=key.model_id,
                            agent_type=key.agent_type, latency_ms=10.0, cost_usd=cost, **kw)


def test_rebuilt_ledger_equals_the_live_one():
    limits = (GLOBAL_10, BudgetLimit(scope="model", key="*", window="month", limit_usd=D(4)))
    live, clock = make(*limits)
    log = []
    for key, reserve, actual in ((KEY, "2", "1.9"), (OTHER, "3", "2.5"), (KEY, "1", "0.75")):
        live.settle(live.reserve(key, D(reserve)), D(actual))
        log.append(completed(key, D(actual), clock.now()))
        clock.advance(3600 * 7)
    log.extend(live.drain_events())
    rebuilt = CostLedgerCore.from_events(settings(*limits), log, clock=clock)
    assert rebuilt.snapshot() == live.snapshot()
    assert rebuilt.drain_events() == []  # alerts already in the log are not emitted again
    assert rebuilt.status() == live.status()


def test_rebuild_emits_alerts_the_dead_ledger_never_emitted():
    log = [completed(KEY, D(9), START)]
    rebuilt = CostLedgerCore.from_events(settings(GLOBAL_10), log, clock=ManualClock(start=START))
    assert alert_keys(rebuilt.drain_events()) == [("global", "*", 0.5), ("global", "*", 0.8)]


def test_apply_folds_failed_requests_and_judge_feedback():
    registry = RegistryConfig.model_validate({"models": [{
        "id": "judge-1", "provider": "anthropic", "name": "Judge", "capabilities": ["chat"],
        "cost_per_1k_input_tokens": "0.001", "cost_per_1k_output_tokens": "0.002",
        "rate_limits": {"requests_per_minute": 10, "tokens_per_minute": 1000},
        "context_window": 1000, "average_response_time_ms": 100}]})
    ledger = CostLedgerCore(settings(), clock=ManualClock(start=START), registry=registry)
    ledger.apply(RequestFailed(occurred_at=START, provider="openai", model_id="gpt-a",
                               agent_type="research", attempts=2, error_kind="timeout",
                               cost_usd=D("0.5")))
    ledger.apply(FeedbackRecorded(occurred_at=START, provider="openai", model_id="gpt-a",
                                  agent_type="research", score=0.9, source="judge",
                                  judge_model_id="judge-1", cost_usd=D("0.01")))
    ledger.apply(ResponseEvaluated(occurred_at=START, completeness=1, relevance=1, coherence=1,
                                   quality_score=1, low_quality=False))
    ledger.apply(completed(KEY, D(0), START))
    assert ledger.spend("model", "gpt-a", "day") == D("0.5")
    assert ledger.spend("model", "judge-1", "day") == D("0.01")
    assert ledger.spend("provider", "anthropic", "day") == D("0.01")
    assert ledger.spend("global", "*", "month") == D("0.51")


# -- status ------------------------------------------------------------------------------------


def test_status_lists_every_limit_in_its_current_window():
    ledger, _ = make(GLOBAL_10, BudgetLimit(scope="provider", key="openai", window="month",
                                            limit_usd=D(100)))
    ledger.record(KEY, D(2))
    ledger.reserve(KEY, D(3))
    day, month = ledger.status()
    assert (day.scope, day.key, day.window, day.spent_usd, day.reserved_usd, day.share) == (
        "global", "*", "day", D(2), D(3), 0.2)
    assert day.window_start == datetime(2026, 3, 10, tzinfo=UTC)
    assert (month.key, month.window_start, month.share) == (
        "openai", datetime(2026, 3, 1, tzinfo=UTC), 0.02)
    assert month.window_start + timedelta(days=9) == day.window_start


def test_zero_amount_holds_release_cleanly():
    ledger, _ = make(GLOBAL_10)
    first, second = ledger.reserve(KEY, D(0)), ledger.reserve(KEY, D(0))
    ledger.release(first)
    ledger.release(second)
    assert ledger.reserved_usd() == 0 and ledger.status()[0].reserved_usd == 0


def test_negative_headroom_grants_an_empty_slice_and_admission_says_budget_exceeded():
    """Issue 10.2: spend above the limit (an actual cost above its reservation, or slices
    returned to a restarted ledger on top of spend read from the log) leaves the headroom
    negative: a slice is then empty with the limit named, never ``InvalidInput``, and a
    request is refused with ``BudgetExceeded``."""
    import asyncio

    from api_model_management.budget._admission import LocalSliceGranter, SliceBudget

    ledger, _ = make(GLOBAL_10)
    ledger.record(KEY, D("12.5"))  # $2.50 over the $10 limit
    empty = ledger.grant_slice(KEY, D(1), "router-0", minimum_usd=D("0.01"))
    assert (empty.slice_id, empty.amount_usd) == (None, D(0))
    assert empty.limited_by is not None and empty.limited_by.limit_usd == D(10)
    budget = SliceBudget(LocalSliceGranter(ledger), settings(GLOBAL_10), "router-0")
    with pytest.raises(BudgetExceeded) as refused:
        asyncio.run(budget.reserve(KEY, D("0.01"), "req-1"))
    assert not isinstance(refused.value, InvalidInput)
    assert ledger.reserved_usd() == 0  # nothing held by the refusal
