"""Projections over a small fixture log: golden outputs per view, filters, budgets, the report.

The fixture is written as Parquet in the log's Hive layout
(``<dir>/events/event_type=<T>/date=<D>/x.parquet``) with each type's own Arrow schema. Golden
outputs live in ``tests/unit/golden/projections/<view>.json``; regenerate them (and review the diff)
with ``AMM_UPDATE_GOLDEN=1 pytest tests/unit/test_projections.py``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from api_model_management._clock import ManualClock
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.errors import InvalidInput
from api_model_management.events import (
    AttemptFailed,
    BudgetAlert,
    Event,
    FailoverTriggered,
    FeedbackRecorded,
    HealthChanged,
    PerformanceAlert,
    RateLimitHit,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from api_model_management.projections import (
    PROJECTIONS,
    VIEWS,
    PerformanceMonitor,
    Projections,
    Report,
    open_projections,
    render_report,
    spend_by_scope,
    window_start,
)
from api_model_management.projections._duckdb import connect

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "projections"
UPDATE = os.environ.get("AMM_UPDATE_GOLDEN") == "1"
D1 = datetime(2026, 3, 9, tzinfo=UTC)  # a Monday
D2 = D1 + timedelta(days=1)


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


def _ids() -> Any:
    counter = iter(range(1, 10_000))
    return lambda: f"evt-{next(counter):04d}"


def fixture_events() -> list[Event]:
    """Two days, two providers, three models, two agent types; every projection has input."""
    nid = _ids()
    common = {"agent_type": "research"}
    gpt = {"model_id": "gpt-4o", "provider": "openai"}
    mini = {"model_id": "gpt-4o-mini", "provider": "openai"}
    claude = {"model_id": "claude-sonnet", "provider": "anthropic"}

    def done(when: datetime, model: dict, cost: str, latency: float, **kw: Any) -> RequestCompleted:
        fields = {**common, **model, **kw}
        return RequestCompleted(event_id=nid(), occurred_at=when, latency_ms=latency,
                                cost_usd=Decimal(cost), **fields)

    return [
        # day 1 -------------------------------------------------------------------------------
        done(at(D1, 1), gpt, "0.1", 100.0, request_id="r1", input_tokens=100, output_tokens=50,
             time_to_first_token_ms=40.0),
        done(at(D1, 2), gpt, "0.2", 200.0, request_id="r2", input_tokens=200, output_tokens=80,
             time_to_first_token_ms=60.0),
        done(at(D1, 3), gpt, "0", 2.0, request_id="r3", cache_hit=True, input_tokens=100,
             output_tokens=50, saved_cost_usd=Decimal("0.1")),
        AttemptFailed(event_id=nid(), occurred_at=at(D1, 4), request_id="r4", attempt=1,
                      error_kind="timeout", transient=True, **common, **claude),
        FailoverTriggered(event_id=nid(), occurred_at=at(D1, 4, 1), request_id="r4",
                          from_model_id="claude-sonnet", to_model_id="gpt-4o-mini",
                          reason="timeout", **common, **claude),
        done(at(D1, 4, 2), mini, "0.000123456789", 400.0, request_id="r4", attempts=2,
             input_tokens=30, output_tokens=20),
        AttemptFailed(event_id=nid(), occurred_at=at(D1, 5), request_id="r5", attempt=1,
                      error_kind="auth", transient=False, http_status=401, **common, **claude),
        RequestFailed(event_id=nid(), occurred_at=at(D1, 5, 1), request_id="r5", attempts=1,
                      error_kind="auth", models_tried=("claude-sonnet",),
                      cost_usd=Decimal("0.05"), **common, **claude),
        ResponseEvaluated(event_id=nid(), occurred_at=at(D1, 1), request_id="r1", completeness=1.0,
                          relevance=0.9, coherence=1.0, quality_score=0.965, low_quality=False,
                          **common, **gpt),
        ResponseEvaluated(event_id=nid(), occurred_at=at(D1, 2), request_id="r2", completeness=0.4,
                          relevance=0.5, coherence=0.6, quality_score=0.485, low_quality=True,
                          **common, **gpt),
        FeedbackRecorded(event_id=nid(), occurred_at=at(D1, 6), request_id="r1", score=0.9,
                         source="judge", judge_model_id="claude-sonnet", cost_usd=Decimal("0.01"),
                         **common, **gpt),
        BudgetAlert(event_id=nid(), occurred_at=at(D1, 7), scope="global", scope_key="*",
                    window="day", window_start=D1, threshold=0.8, spent_usd=Decimal("0.4"),
                    limit_usd=Decimal("0.5")),
        RateLimitHit(event_id=nid(), occurred_at=at(D1, 8), kind="approaching", limit_type="rpm",
                     used=45, limit=50, **mini),
        RateLimitHit(event_id=nid(), occurred_at=at(D1, 8, 1), kind="provider_429",
                     limit_type="tpm", used=0, limit=1000, retry_after_s=2.0, **mini),
        HealthChanged(event_id=nid(), occurred_at=at(D1, 9), provider="anthropic",
                      from_state="healthy", to_state="degraded", reason="1 failure"),
        HealthChanged(event_id=nid(), occurred_at=at(D1, 10), provider="anthropic",
                      from_state="degraded", to_state="unhealthy", reason="3 consecutive failures"),
        # day 2 -------------------------------------------------------------------------------
        done(at(D2, 1), claude, "0.3", 300.0, request_id="r6", input_tokens=300, output_tokens=100,
             agent_type="coding"),
        done(at(D2, 2), claude, "0.25", 500.0, request_id="r7", input_tokens=250, output_tokens=90,
             agent_type="coding", finish_reason="length"),
        done(at(D2, 3), gpt, "0.3", 600.0, request_id="r8", input_tokens=300, output_tokens=120),
        ResponseEvaluated(event_id=nid(), occurred_at=at(D2, 1), request_id="r6", completeness=0.9,
                          relevance=0.8, coherence=0.9, quality_score=0.865, low_quality=False,
                          agent_type="coding", **claude),
        PerformanceAlert(event_id=nid(), occurred_at=at(D2, 4), kind="latency_degraded",
                         metric="p95_latency_ms", value=580.0, threshold=500.0, **gpt),
        HealthChanged(event_id=nid(), occurred_at=at(D2, 5), provider="anthropic",
                      from_state="unhealthy", to_state="healthy", reason="probe ok"),
    ]


def write_log(data_dir: Path, events: list[Event]) -> Path:
    """Write ``events`` as Parquet in the Hive layout, one file per (type, UTC date)."""
    groups: dict[tuple[type[Event], str], list[Event]] = defaultdict(list)
    for event in events:
        groups[(type(event), event.occurred_at.date().isoformat())].append(event)
    for (cls, day), batch in groups.items():
        folder = data_dir / "events" / f"event_type={cls.event_type}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([e.to_row() for e in batch], schema=cls.arrow_schema())
        pq.write_table(table, folder / "x.parquet")
    return data_dir


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_log(tmp_path_factory.mktemp("log") / "data", fixture_events())


@pytest.fixture
def projections(log_dir: Path) -> Projections:
    clock = ManualClock(start=at(D2, 12))
    with Projections(log_dir, clock=clock) as p:
        yield p


# -- golden outputs ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 9)
    return value


def _golden_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("view", VIEWS)
def test_view_matches_golden_output(projections: Projections, view: str) -> None:
    actual = _golden_rows(projections.query(f"SELECT * FROM {view}"))
    path = GOLDEN / f"{view}.json"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=1) + "\n")
    assert actual == json.loads(path.read_text())


def test_golden_money_is_exact_decimal(projections: Projections) -> None:
    rows = projections.cost_by_model_day()
    assert all(isinstance(r["cost_usd"], Decimal) for r in rows)
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    # 0.1 + 0.2 + 0 + 0.000123456789 + 0.05 + 0.01 + 0.3 + 0.25 + 0.3, with no float drift
    assert total == Decimal("1.210123456789")
    per_request = {r["model_id"]: r for r in projections.cost_per_request()}
    assert per_request["gpt-4o"]["avg_cost_usd"] == Decimal("0.150000000000")  # 0.6 / 4


def test_hand_checked_values(projections: Projections) -> None:
    latency = {r["model_id"]: r for r in projections.latency_by_model()}
    gpt = latency["gpt-4o"]  # 100, 200, 600 (the cache hit's 2 ms is excluded)
    assert (gpt["requests"], gpt["p50_latency_ms"], gpt["avg_latency_ms"]) == (3, 200.0, 300.0)
    assert gpt["p95_latency_ms"] == pytest.approx(560.0)  # 200 + 0.9 * 400
    rates = {r["model_id"]: r for r in projections.success_rates()}
    claude = rates["claude-sonnet"]  # 2 provider successes, 2 failed attempts, 1 failover away
    assert (claude["attempts"], claude["successes"], claude["failures"]) == (4, 2, 2)
    assert (claude["requests_failed"], claude["failovers"], claude["failover_rate"]) == (1, 1, 0.25)
    cache = projections.cache_savings()[0]
    assert (cache["requests"], cache["cache_hits"], cache["saved_cost_usd"]) == (
        7, 1, Decimal("0.100000000000"))
    kinds = [a["category"] for a in projections.alerts()]
    assert kinds == ["budget", "rate_limit", "health", "performance"]


# -- filters ---------------------------------------------------------------------------------------


def test_since_filter(projections: Projections) -> None:
    rows = projections.cost_by_model_day(since=D2)
    assert {r["date"] for r in rows} == {D2.date()}
    assert [a["category"] for a in projections.alerts(since=D2)] == ["performance"]


def test_agent_type_filter(projections: Projections) -> None:
    rows = projections.cost_by_agent_type(agent_type="coding")
    assert [(r["agent_type"], r["requests"], r["cost_usd"]) for r in rows] == [
        ("coding", 2, Decimal("0.550000000000"))]
    assert {r["model_id"] for r in projections.latency_by_model(agent_type="coding")} == {
        "claude-sonnet"}


def test_filters_are_bound_parameters(projections: Projections) -> None:
    assert projections.cost_by_agent_type(agent_type="coding' OR 1=1 --") == []
    assert projections.rows("cost_by_provider", agent_type="x'); DROP VIEW cost_by_provider; --") == []
    assert projections.cost_by_provider()  # still there


def test_bad_arguments_are_refused(projections: Projections) -> None:
    with pytest.raises(InvalidInput):
        projections.rows("request_completed; DROP TABLE x")
    with pytest.raises(InvalidInput):
        projections.cost_by_model_day(since=datetime(2026, 3, 9))  # naive


def test_arrow_tables(projections: Projections) -> None:
    table = projections.table("cost_by_model_day")
    assert isinstance(table, pa.Table)
    assert table.schema.field("cost_usd").type == pa.decimal128(38, 12)
    assert table.num_rows == len(projections.cost_by_model_day())


# -- budgets ---------------------------------------------------------------------------------------


BUDGETS = BudgetSettings(limits=[
    BudgetLimit(scope="global", window="day", limit_usd=Decimal("1")),
    BudgetLimit(scope="model", key="gpt-4o", window="month", limit_usd=Decimal("0.5")),
    BudgetLimit(scope="provider", key="*", window="day", limit_usd=Decimal("0.5")),
])


def test_budget_status_joins_limits(projections: Projections) -> None:
    rows = {(r.scope, r.key, r.window): r for r in projections.budget_status(BUDGETS, at(D2, 12))}
    assert rows[("global", "*", "day")].spent_usd == Decimal("0.85")  # day 2: 0.3 + 0.25 + 0.3
    assert rows[("global", "*", "day")].status == "warning"
    assert rows[("global", "*", "day")].threshold_reached == 0.8
    assert rows[("model", "gpt-4o", "month")].spent_usd == Decimal("0.6")  # 0.1 + 0.2 + 0.3
    assert rows[("model", "gpt-4o", "month")].status == "exceeded"
    assert rows[("model", "gpt-4o", "month")].remaining_usd == 0
    assert rows[("provider", "anthropic", "day")].spent_usd == Decimal("0.55")
    assert rows[("provider", "openai", "day")].used_share == pytest.approx(0.6)
    assert rows[("global", "*", "day")].window_start == D2


def test_spend_by_scope_counts_judge_cost_to_the_judge(log_dir: Path) -> None:
    con = connect(log_dir)
    spend = spend_by_scope(con, BudgetSettings(), at(D1, 23))
    assert spend[("model", "claude-sonnet", "day")] == Decimal("0.06")  # failed 0.05 + judge 0.01
    assert spend[("model", "gpt-4o", "day")] == Decimal("0.3")
    assert spend[("provider", "openai", "day")] == Decimal("0.300123456789")
    assert spend[("agent_type", "research", "month")] == Decimal("0.660123456789")
    assert spend[("global", "*", "month")] == Decimal("1.210123456789")
    assert ("model", "claude-sonnet", "month") in spend and ("provider", "anthropic", "day") in spend


def test_budget_windows_follow_the_time_zone(tmp_path: Path) -> None:
    tz = "America/New_York"  # UTC-4 after the 2026-03-08 DST change, UTC-5 before
    events = [
        RequestCompleted(occurred_at=datetime(2026, 3, 8, 3, 30, tzinfo=UTC), latency_ms=1,
                         cost_usd=Decimal("1"), model_id="m", provider="p", agent_type="a"),
        RequestCompleted(occurred_at=datetime(2026, 3, 8, 4, 30, tzinfo=UTC), latency_ms=1,
                         cost_usd=Decimal("2"), model_id="m", provider="p", agent_type="a"),
        RequestCompleted(occurred_at=datetime(2026, 3, 9, 3, 59, tzinfo=UTC), latency_ms=1,
                         cost_usd=Decimal("4"), model_id="m", provider="p", agent_type="a"),
        RequestCompleted(occurred_at=datetime(2026, 3, 9, 4, 0, tzinfo=UTC), latency_ms=1,
                         cost_usd=Decimal("8"), model_id="m", provider="p", agent_type="a"),
        RequestCompleted(occurred_at=datetime(2026, 2, 28, 23, 0, tzinfo=UTC), latency_ms=1,
                         cost_usd=Decimal("16"), model_id="m", provider="p", agent_type="a"),
    ]
    con = connect(write_log(tmp_path, events))
    settings = BudgetSettings(timezone=tz)
    # 2026-03-08 local: from 05:00 UTC on the 8th (EST) to 04:00 UTC on the 9th (EDT)
    day8 = spend_by_scope(con, settings, datetime(2026, 3, 8, 12, tzinfo=UTC))
    assert day8[("global", "*", "day")] == Decimal("4")
    assert day8[("global", "*", "month")] == Decimal("15")  # Feb 28 23:00 UTC is Feb 28 local
    assert window_start("day", datetime(2026, 3, 8, 12, tzinfo=UTC), tz) == datetime(
        2026, 3, 8, 5, tzinfo=UTC)
    day7 = spend_by_scope(con, settings, datetime(2026, 3, 8, 4, 59, tzinfo=UTC))
    assert day7[("global", "*", "day")] == Decimal("3")
    day9 = spend_by_scope(con, settings, datetime(2026, 3, 9, 4, 0, tzinfo=UTC))
    assert day9[("model", "m", "day")] == Decimal("8")
    feb = spend_by_scope(con, settings, datetime(2026, 2, 28, 20, tzinfo=UTC))
    assert feb == {(s, k, w): Decimal("16") for w in ("day", "month")
                   for s, k in (("global", "*"), ("provider", "p"), ("model", "m"),
                                ("agent_type", "a"))}
    assert spend_by_scope(con, settings, datetime(2026, 2, 15, tzinfo=UTC)) == {
        (s, k, "month"): Decimal("16")
        for s, k in (("global", "*"), ("provider", "p"), ("model", "m"), ("agent_type", "a"))}


# -- report and PerformanceMonitor ------------------------------------------------------------------


def test_report(projections: Projections) -> None:
    report = projections.report(budgets=BUDGETS)
    assert isinstance(report, Report)
    assert (report.requests, report.completed, report.failed) == (8, 7, 1)
    assert (report.failovers, report.cache_hits) == (1, 1)
    assert report.total_cost_usd == Decimal("1.210123456789")
    assert report.success_rate == pytest.approx(7 / 8)
    assert report.average_quality == pytest.approx((0.965 + 0.485 + 0.865) / 3)
    # the judge call (claude-sonnet rating a gpt-4o answer) has no provider in its event
    assert {r.provider for r in report.cost_by_provider} == {"openai", "anthropic", None}
    assert report.budget_status and len(report.alerts) == 4
    Report.model_validate_json(report.model_dump_json())  # JSON round trip for `amm report`


def test_report_filtered_by_agent(projections: Projections) -> None:
    report = projections.report(agent_type="coding")
    assert (report.requests, report.total_cost_usd) == (2, Decimal("0.55"))
    assert [r.model_id for r in report.latency_by_model] == ["claude-sonnet"]


def test_render_report(projections: Projections) -> None:
    console = Console(record=True, width=160)
    render_report(projections.report(budgets=BUDGETS), console)
    text = console.export_text()
    for needle in ("Summary", "Cost by model", "Latency by model", "Budgets", "Alerts",
                   "gpt-4o-mini", "$1.2101", "exceeded", "3 consecutive failures"):
        assert needle in text


def test_performance_monitor(log_dir: Path) -> None:
    monitor = PerformanceMonitor(log_dir / "performance.db", clock=ManualClock(start=at(D2, 12)))
    assert monitor.data_dir == log_dir
    gpt = monitor.get_model_metrics("gpt-4o", window_hours=24)  # day 2 only: r8
    assert (gpt["total_requests"], gpt["total_cost"], gpt["p50_latency_ms"]) == (
        1, Decimal("0.3"), 600.0)
    week = monitor.get_performance_summary(window_hours=24 * 7)
    assert (week["total_requests"], week["total_cost"]) == (8, Decimal("1.210123456789"))
    assert week["average_success_rate"] == pytest.approx(7 / 8)
    assert set(week["models"]) == {"gpt-4o", "gpt-4o-mini", "claude-sonnet"}
    coding = monitor.get_performance_summary(agent_type="coding", window_hours=24 * 7)
    assert coding["total_requests"] == 2
    monitor.close()


# -- the empty log -----------------------------------------------------------------------------------


def test_empty_log_gives_empty_results(tmp_path: Path) -> None:
    with open_projections(tmp_path / "nothing-here") as p:
        for name in PROJECTIONS:
            assert p.rows(name) == [], name
        assert p.query("SELECT * FROM budget_status") == []
        report = p.report(budgets=BUDGETS)
        assert (report.requests, report.total_cost_usd, report.alerts) == (0, Decimal(0), [])
        assert [r.spent_usd for r in report.budget_status] == [Decimal(0), Decimal(0)]
        render_report(report, Console(record=True))
    empty = PerformanceMonitor(tmp_path / "nothing-here").get_performance_summary()
    assert (empty["total_requests"], empty["average_success_rate"]) == (0, None)


# -- amm report ------------------------------------------------------------------------------------


def test_report_command(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api_model_management.cli._report import parse_since, report_command

    now = at(D2, 12)
    assert parse_since("24h", now) == at(D1, 12)
    assert parse_since("2026-03-10", now) == D2
    assert parse_since(None, now) is None
    console = Console(record=True, width=160)
    clock = ManualClock(start=now)
    assert report_command(log_dir, since="24h", fmt="json", console=console, clock=clock) == 0
    data = json.loads(console.export_text())
    assert (data["requests"], data["total_cost_usd"]) == (3, "0.850000000000")
    assert report_command(log_dir, since="yesterday", clock=clock) == 2
    assert report_command(log_dir, fmt="yaml", clock=clock) == 2
    assert "error:" in capsys.readouterr().err
