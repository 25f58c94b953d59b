"""Design §6: the CostLedger's state rebuilt from events equals the budget projection over the
same log.

Hypothesis writes logs of ``RequestCompleted`` / ``RequestFailed`` / ``FeedbackRecorded`` events
(random costs, including zero and negative ones; agent types, models and providers, some missing or
empty; judge calls keyed by the judge model) at instants around day and month boundaries and DST
changes, to a real Parquet log with ``EventLog``. For every instant of the log and each window
boundary around it, ``CostLedgerCore.from_events(...).spend(scope, key, window, at)`` must equal
``spend_by_scope(con, settings, at)`` (the SQL) for every scope, key and window, in several time
zones; both must also equal a plain Python sum (a third, obvious implementation) for the global key.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management._clock import ManualClock
from api_model_management.budget._ledger import SCOPES, WINDOWS, CostLedgerCore
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.events import EventLog, FeedbackRecorded, RequestCompleted, RequestFailed
from api_model_management.projections._budget import spend_by_scope, window_start
from api_model_management.projections._duckdb import connect
from api_model_management.projections._sql import install

from strategies import TIMEZONES, ids

pytestmark = pytest.mark.property

#: Each example writes Parquet and runs DuckDB: keep the count modest.
EXAMPLES = 15

#: UTC; a zone with DST (23- and 25-hour days); a +05:45 zone (not a whole hour, so windows start
#: at odd UTC minutes); a zone whose DST shift is 30 minutes.
ZONES = ["UTC", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"]

AGENTS = ["research", "coder", "reviewer", None, ""]
MODELS = ["gpt-4.1", "claude-haiku-4-5", "qwen2.5", None, ""]
PROVIDERS = ["openai", "anthropic", "ollama", None, ""]
#: Not "": see test_an_empty_judge_model_id_is_keyed_alike.
JUDGES = [None, "gpt-4.1-mini", "claude-haiku-4-5"]

# Instants near boundaries that matter: new year, month ends (28, 30, 31 days; leap February),
# the US DST changes of 2024, and Lord Howe's.
_ANCHORS = [
    datetime(2025, 12, 31, 23, 0, tzinfo=UTC),
    datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 4, 0, tzinfo=UTC),
    datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
    datetime(2024, 11, 3, 6, 0, tzinfo=UTC),
    datetime(2026, 4, 30, 18, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
]

instants = st.builds(
    lambda anchor, us, tz: (anchor + timedelta(microseconds=us)).astimezone(tz),
    st.sampled_from(_ANCHORS),
    # ±36 hours around the anchor; sometimes exactly on a whole quarter hour
    st.one_of(st.integers(-36 * 3600 * 10**6, 36 * 3600 * 10**6),
              st.integers(-144, 144).map(lambda q: q * 900 * 10**6)),
    st.sampled_from(TIMEZONES),
)

# Exact amounts with up to 12 decimal places; zero and negative ones are not spend.
costs = st.one_of(
    st.integers(1, 10**16).map(lambda units: Decimal(f"{units}e-12")),
    st.integers(0, 10_000).map(lambda cents: Decimal(cents) / 100),
    st.sampled_from([Decimal(0), Decimal("-0.5"), Decimal("1e-12")]),
)

_common = {
    "event_id": ids,
    "occurred_at": instants,
    "cost_usd": costs,
    "agent_type": st.sampled_from(AGENTS),
    "model_id": st.sampled_from(MODELS),
    "provider": st.sampled_from(PROVIDERS),
}

spend_events = st.one_of(
    st.builds(RequestCompleted, latency_ms=st.floats(0, 1e4), cache_hit=st.booleans(), **_common),
    st.builds(RequestFailed, attempts=st.integers(1, 4), error_kind=st.just("server_error"),
              **_common),
    st.builds(FeedbackRecorded, score=st.floats(0, 1), source=st.sampled_from(["user", "judge"]),
              judge_model_id=st.sampled_from(JUDGES), **_common),
)


def _settings(zone: str) -> BudgetSettings:
    # limits do not change spend, but a "*" limit per scope exercises the same code as production
    limits = [BudgetLimit(limit_usd=Decimal(5))] + [
        BudgetLimit(scope=scope, key="*", window=window, limit_usd=Decimal(1))
        for scope in ("provider", "model", "agent_type") for window in WINDOWS
    ]
    return BudgetSettings(timezone=zone, limits=limits)


def _query_instants(events, zone: str) -> list[datetime]:
    """One instant per distinct (day, month) window pair: each event's instant, and the last
    microsecond before its day and month windows start (the previous windows)."""
    found: dict[tuple[datetime, datetime], datetime] = {}
    candidates = [e.occurred_at for e in events]
    candidates += [window_start(w, e.occurred_at, zone) - timedelta(microseconds=1)
                   for e in events for w in WINDOWS]
    for at in candidates:
        found.setdefault((window_start("day", at, zone), window_start("month", at, zone)), at)
    return sorted(found.values())


def _python_global_spend(events, window: str, at: datetime, zone: str) -> Decimal:
    start = window_start(window, at, zone)
    return sum((e.cost_usd for e in events if e.cost_usd > 0
                and window_start(window, e.occurred_at, zone) == start), Decimal(0))


def _ledger_keys(ledger: CostLedgerCore, at: datetime, zone: str) -> set[tuple[str, str, str]]:
    """The (scope, key, window) buckets with spend in the windows containing ``at``."""
    starts = {w: window_start(w, at, zone) for w in WINDOWS}
    return {(scope, key, window) for (scope, key, window, start), amount in ledger.snapshot().settled
            if start == starts[window] and amount > 0}


@contextmanager
def _projection_connection(data_dir: str):
    """The event views of ``data_dir`` with the shipped projection SQL installed (once)."""
    con = install(connect(data_dir))
    try:
        yield con
    finally:
        con.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(spend_events, min_size=1, max_size=12))
def test_ledger_rebuilt_from_events_equals_the_sql_budget_projection(events):
    with tempfile.TemporaryDirectory() as data_dir:
        EventLog(data_dir, fsync="never").append(events)
        with _projection_connection(data_dir) as con:
            for zone in ZONES:  # the log is the same; only the windows move
                _check_zone(con, events, zone)


def _check_zone(con, events, zone: str) -> None:
    budget = _settings(zone)
    ledger = CostLedgerCore.from_events(budget, events, clock=ManualClock(_ANCHORS[0]))
    names = {"*", *AGENTS, *MODELS, *PROVIDERS, *JUDGES} - {None}
    for at in _query_instants(events, zone):
        sql = spend_by_scope(con, budget, at)
        assert set(sql) == _ledger_keys(ledger, at, zone), (zone, at)
        for scope, key, window in sorted({(s, k, w) for s in SCOPES for k in names for w in WINDOWS}):
            expected = ledger.spend(scope, key, window, at)
            assert sql.get((scope, key, window), Decimal(0)) == expected, (zone, scope, key, window, at)
        for window in WINDOWS:
            assert ledger.spend("global", "*", window, at) == _python_global_spend(events, window, at, zone)


def test_windows_in_new_york_start_at_local_midnight():
    """A known case, worked by hand: 04:30 UTC on 1 March 2026 is still 28 February in New York,
    so that spend counts to February's month and to the day starting 28 Feb 05:00 UTC."""
    at = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)
    event = RequestCompleted(occurred_at=at, latency_ms=1.0, cost_usd=Decimal("0.25"),
                             agent_type="coder", model_id="gpt-4.1", provider="openai")
    budget = _settings("America/New_York")
    ledger = CostLedgerCore.from_events(budget, [event], clock=ManualClock(at))
    with tempfile.TemporaryDirectory() as data_dir:
        EventLog(data_dir, fsync="never").append([event])
        con = connect(data_dir)
        try:
            sql = spend_by_scope(con, budget, at)
            next_day = spend_by_scope(con, budget, datetime(2026, 3, 1, 5, 0, tzinfo=UTC))
        finally:
            con.close()
    assert window_start("day", at, "America/New_York") == datetime(2026, 2, 28, 5, tzinfo=UTC)
    assert window_start("month", at, "America/New_York") == datetime(2026, 2, 1, 5, tzinfo=UTC)
    assert sql[("provider", "openai", "month")] == Decimal("0.25")
    assert ledger.spend("agent_type", "coder", "day", at) == Decimal("0.25")
    assert next_day == {}
    assert ledger.spend("global", "*", "day", datetime(2026, 3, 1, 5, 0, tzinfo=UTC)) == 0
    assert ZoneInfo("America/New_York").utcoffset(at.replace(tzinfo=None)) == timedelta(hours=-5)


def test_an_empty_judge_model_id_is_keyed_alike():
    at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    events = [FeedbackRecorded(occurred_at=at, score=0.5, source="judge", judge_model_id="",
                               model_id="gpt-4.1", provider="openai", agent_type="coder",
                               cost_usd=Decimal("0.1"))]
    with tempfile.TemporaryDirectory() as data_dir:
        EventLog(data_dir, fsync="never").append(events)
        with _projection_connection(data_dir) as con:
            _check_zone(con, events, "UTC")


# -- which limits apply: one rule (budget.applicable_limits / limit_keys), two readers ----------

limit_choices = st.builds(
    BudgetLimit,
    scope=st.sampled_from(SCOPES),
    key=st.sampled_from(["*", "", "research", "coder", "gpt-4.1", "openai", "anthropic"]),
    window=st.sampled_from(WINDOWS),
    limit_usd=st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(5)]),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(spend_events, min_size=1, max_size=10),
       limits=st.lists(limit_choices, min_size=1, max_size=5))
def test_budget_rows_from_sql_equal_the_ledgers_status(events, limits):
    """Every configured limit, per-key ``*`` limits included, is reported with the same keys and
    spend by the ledger (``status``) and by the SQL projection (``budget_rows``)."""
    from api_model_management.projections._budget import budget_rows

    budget = BudgetSettings(limits=limits)
    at = events[0].occurred_at
    ledger = CostLedgerCore.from_events(budget, events, clock=ManualClock(at))
    with tempfile.TemporaryDirectory() as data_dir:
        EventLog(data_dir, fsync="never").append(events)
        with _projection_connection(data_dir) as con:
            rows = budget_rows(spend_by_scope(con, budget, at), budget, at)
    ledger_rows = sorted((r.scope, r.key, r.window, r.limit_usd, r.spent_usd) for r in ledger.status())
    sql_rows = sorted((r.scope, r.key, r.window, r.limit_usd, r.spent_usd) for r in rows)
    assert sql_rows == ledger_rows
