"""``/metrics`` of a server with several workers: snapshots, their exchange and their sum."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from api_model_management.budget import BudgetStatus
from api_model_management.gateway import KeyStatus, Metrics
from api_model_management.gateway._metrics import BudgetGauge, Snapshot, merge, render
from api_model_management.gateway._peers import Peers

pytestmark = pytest.mark.unit


def worker(requests: int, cost: str, spent: str, reserved: str, seconds: float) -> Snapshot:
    """One worker's figures: ``requests`` answered, each after ``seconds``, and its half of a
    key's budget of 10 and of a registry budget of 4."""
    metrics = Metrics()
    for _ in range(requests):
        metrics.observe("chat.completions", "dev", "m", 200, seconds, Decimal(cost))
    metrics.observe("messages", "dev", "-", 429, 0.001, failure="rate_limit")
    metrics.in_flight = 1
    key = KeyStatus("dev", Decimal("5"), Decimal(spent), Decimal(reserved), 30, requests)
    budget = BudgetStatus(scope="global", key="*", window="day",
                          window_start=datetime(2026, 1, 1, tzinfo=UTC), limit_usd=Decimal("2"),
                          spent_usd=Decimal(spent), reserved_usd=Decimal(reserved), share=0.5)
    return metrics.snapshot([key], [budget])


def test_counters_and_histograms_sum_exactly_and_gauges_are_the_servers() -> None:
    a = worker(3, "0.1", "1.5", "0.25", 0.02)
    b = worker(4, "0.2", "2", "0", 0.3)
    limits = {("global", "*", "day"): Decimal("4")}
    total = merge([a, b], {"dev": Decimal("10")}, limits.get)
    ok = (("endpoint", "chat.completions"), ("key", "dev"), ("model", "m"), ("status", "200"))
    assert total.requests[ok] == 7
    assert total.failures[(("endpoint", "messages"), ("key", "dev"), ("kind", "rate_limit"))] == 2
    assert total.cost_usd[(("key", "dev"), ("model", "m"))] == Decimal("1.1")  # exact, not float
    chat = total.latency[(("endpoint", "chat.completions"),)]
    assert chat.n == 7 and sum(chat.counts) == 7
    assert chat.total_ns == 3 * 20_000_000 + 4 * 300_000_000
    assert total.in_flight == 2
    (key,) = total.keys
    assert (key.limit_usd, key.spent_usd, key.reserved_usd, key.headroom_usd) == (
        Decimal("10"), Decimal("3.5"), Decimal("0.25"), Decimal("6.25"))
    assert (key.requests_per_minute, key.requests_in_window) == (60, 7)
    (budget,) = total.budgets
    assert budget.limit_usd == Decimal("4") and budget.headroom_usd == Decimal("0.25")
    text = render(total, workers=2)
    assert "amm_gateway_workers 2" in text and 'pid="' not in text
    assert 'amm_gateway_key_budget_headroom_usd{key="dev"} 6.25' in text
    assert 'amm_budget_headroom_usd{scope="global",key="*",window="day"} 0.25' in text
    assert 'amm_gateway_request_duration_seconds_count{endpoint="chat.completions"} 7' in text
    assert 'amm_gateway_request_duration_seconds_sum{endpoint="chat.completions"} 1.260000' in text


def test_a_limit_not_configured_is_the_sum_of_the_workers_shares() -> None:
    a, b = worker(1, "0.1", "0", "0", 0.01), worker(1, "0.1", "0", "0", 0.01)
    total = merge([a, b], {}, lambda budget: None)
    assert total.keys[0].limit_usd == Decimal("10")
    assert total.budgets[0].limit_usd == Decimal("4")


def test_a_snapshot_survives_its_json_and_is_a_copy() -> None:
    metrics = Metrics()
    metrics.observe("messages", 'k"1', "m", 200, 0.03, Decimal("0.000000000001"))
    status = KeyStatus("k", None, Decimal(0), Decimal(0), None, 1)
    snap = metrics.snapshot([status], [])
    again = Snapshot.from_json(snap.to_json())
    assert again == snap
    metrics.observe("messages", 'k"1', "m", 200, 0.03)
    assert sum(snap.requests.values()) == 1  # taken then, not a view
    assert again.budgets == [] and isinstance(again.keys[0], KeyStatus)
    gauge = BudgetGauge("model", "m", "month", Decimal("1"), Decimal("2"), Decimal(0))
    assert gauge.headroom_usd == 0 and gauge.id == ("model", "m", "month")


def test_each_worker_answers_the_others_with_its_snapshot_now(tmp_path: Path) -> None:
    """Over Unix sockets in the run directory (local IPC; no network)."""
    metrics = Metrics()

    async def snapshot() -> Snapshot:
        return metrics.snapshot([], [])

    async def main() -> None:
        here = Peers(tmp_path)
        there = Peers(tmp_path)
        there.path = tmp_path / "other.sock"  # two workers in one test process
        (tmp_path / "gone.sock").touch()  # a worker that died without cleaning up
        await here.start(snapshot)
        await there.start(snapshot)
        metrics.observe("messages", "dev", "m", 200, 0.01)
        found, unreachable = await here.others()
        assert [sum(s.requests.values()) for s in found] == [1] and unreachable == 1
        await there.close()
        assert not there.path.exists()
        found, unreachable = await here.others()
        assert found == [] and unreachable == 0
        await here.close()
        assert list(tmp_path.iterdir()) == []

    asyncio.run(main())
