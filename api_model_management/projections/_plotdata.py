"""What the operator's charts show, gathered from the projections (``_plots`` draws it).

Time series are bucketed by a width chosen from the period's span (:func:`bucket_seconds`: at most
``MAX_BUCKETS`` buckets, aligned to the Unix epoch). Money is converted to ``float`` here, for
drawing only; the report and the projections keep it exact.

Budget burn follows the CostLedger's rules: a spend counts towards the limits
``budget.applicable_limits`` gives for its (provider, model, agent type), in the day or month
window ``budget.window_start`` gives in the budgets' time zone, from that window's start. It is
not narrowed by an agent-type filter (a global limit counts every agent's spend), and a window
that began before ``since`` starts from its own beginning.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..budget import SpendKey, applicable_limits, limit_keys
from ..budget import window_start as budget_window_start
from ..config import BudgetLimit, BudgetSettings
from ._report import SuccessRow

if TYPE_CHECKING:
    from ._api import Projections

#: The most buckets a time series is split into.
MAX_BUCKETS = 48
#: Bucket widths tried, shortest first (each divides the next, and those up to 900 s divide a
#: quarter hour, so a bucket never straddles a budget window's start).
BUCKET_WIDTHS_S = (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
                   7 * 86400)
#: The most budget series drawn (those closest to their limit first).
MAX_BURN_SERIES = 6
_BURN_BUCKET_MAX_S = 900


@dataclass(frozen=True)
class LatencyPoint:
    """Latency percentiles of one model's provider-answered requests in one bucket."""

    bucket: datetime
    model_id: str
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class DailyCost:
    """Spend of one key (an agent type or a model) on one UTC day."""

    day: date
    key: str
    cost_usd: float


@dataclass(frozen=True)
class RatePoint:
    """Requests ended in one bucket, how many failed, and the failovers made."""

    bucket: datetime
    requests: int
    failed: int
    failovers: int

    @property
    def success_rate(self) -> float:
        return (self.requests - self.failed) / self.requests if self.requests else 0.0

    @property
    def failovers_per_request(self) -> float:
        return self.failovers / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CachePoint:
    """Completed requests in one bucket, cache hits among them, and the cost the hits saved."""

    bucket: datetime
    requests: int
    hits: int
    saved_usd: float


@dataclass(frozen=True)
class BurnSeries:
    """One budget limit (one key of a per-key limit): spend accumulated within each window,
    at each bucket that had spend (``points``: time, cumulative USD in that time's window)."""

    scope: str
    key: str
    window: str
    limit_usd: float
    thresholds: tuple[float, ...]
    points: tuple[tuple[datetime, float], ...]
    #: The width of the buckets the points start (the spend of a bucket is at its start).
    bucket_s: int = 60

    @property
    def peak_share(self) -> float:
        return max((v for _, v in self.points), default=0.0) / self.limit_usd

    @property
    def label(self) -> str:
        return f"{self.scope} {self.key} ({self.window})"


@dataclass(frozen=True)
class PlotData:
    """Everything the charts draw, for the period ``since``..``at`` (agent type if given).
    ``budgets_configured`` is False when no budget limits were given (the burn chart says so)."""

    at: datetime
    since: datetime | None
    agent_type: str | None
    bucket_s: int
    latency: list[LatencyPoint] = field(default_factory=list)
    cost_by_agent_type: list[DailyCost] = field(default_factory=list)
    cost_by_model: list[DailyCost] = field(default_factory=list)
    success_by_model: list[SuccessRow] = field(default_factory=list)
    rates: list[RatePoint] = field(default_factory=list)
    cache: list[CachePoint] = field(default_factory=list)
    burn: list[BurnSeries] = field(default_factory=list)
    budgets_configured: bool = False


def bucket_seconds(span_s: float) -> int:
    """The shortest width in ``BUCKET_WIDTHS_S`` that splits ``span_s`` into at most
    ``MAX_BUCKETS`` buckets (the longest width when none does)."""
    for width in BUCKET_WIDTHS_S:
        if span_s / width <= MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS_S[-1]


def gather_plot_data(p: Projections, *, since: datetime | None = None,
                     agent_type: str | None = None, budgets: BudgetSettings | None = None,
                     at: datetime | None = None) -> PlotData:
    """The charts' data from the projections ``p`` (filters bound as SQL parameters)."""
    at = at or p.now()
    params: dict[str, Any] = {"since": since, "agent": agent_type}
    bucket_s = bucket_seconds(_span_s(p, params))
    bucketed = {**params, "b": bucket_s}
    return PlotData(
        at=at, since=since, agent_type=agent_type, bucket_s=bucket_s,
        latency=[LatencyPoint(**r) for r in p.query(_LATENCY_SQL, bucketed)],
        cost_by_agent_type=_daily(p.query(_DAILY_SQL.format(key="agent_type"), params)),
        cost_by_model=_daily(p.query(_DAILY_SQL.format(key="model_id"), params)),
        success_by_model=[SuccessRow(**r) for r in p.success_rates(since, agent_type)],
        rates=[RatePoint(**r) for r in p.query(_RATES_SQL, bucketed)],
        cache=[CachePoint(bucket=r["bucket"], requests=r["requests"], hits=r["hits"],
                          saved_usd=float(r["saved_usd"])) for r in p.query(_CACHE_SQL, bucketed)],
        burn=_burn(p, budgets, since, at, min(bucket_s, _BURN_BUCKET_MAX_S)),
        budgets_configured=bool(budgets and budgets.limits),
    )


def _span_s(p: Projections, params: dict[str, Any]) -> float:
    row = p.query("SELECT epoch(max(occurred_at)) - epoch(min(occurred_at)) AS span"
                  " FROM amm_ledger($since, $agent)", params)[0]
    return float(row["span"] or 0.0)


_BUCKET = "to_timestamp(floor(epoch(occurred_at) / $b) * $b)"

_LATENCY_SQL = f"""
    SELECT {_BUCKET} AS bucket, model_id, count(*) AS requests,
           quantile_cont(latency_ms, 0.5) AS p50_ms, quantile_cont(latency_ms, 0.95) AS p95_ms,
           quantile_cont(latency_ms, 0.99) AS p99_ms
    FROM amm_completed($since, $agent)
    WHERE NOT cache_hit AND model_id IS NOT NULL
    GROUP BY ALL ORDER BY bucket, model_id"""

_DAILY_SQL = """
    SELECT date AS day, coalesce(nullif({key}, ''), '(none)') AS key, sum(cost_usd) AS cost_usd
    FROM amm_ledger($since, $agent)
    GROUP BY ALL ORDER BY day, key"""

_RATES_SQL = f"""
    WITH ended AS (
        SELECT occurred_at, 1 AS requests, 0 AS failed, 0 AS failovers
        FROM amm_completed($since, $agent)
        UNION ALL SELECT occurred_at, 1, 1, 0 FROM amm_failed($since, $agent)
        UNION ALL SELECT occurred_at, 0, 0, 1 FROM amm_failovers($since, $agent)
    )
    SELECT {_BUCKET} AS bucket, CAST(sum(requests) AS BIGINT) AS requests,
           CAST(sum(failed) AS BIGINT) AS failed, CAST(sum(failovers) AS BIGINT) AS failovers
    FROM ended GROUP BY ALL ORDER BY bucket"""

_CACHE_SQL = f"""
    SELECT {_BUCKET} AS bucket, count(*) AS requests, count(*) FILTER (WHERE cache_hit) AS hits,
           coalesce(sum(saved_cost_usd) FILTER (WHERE cache_hit), 0) AS saved_usd
    FROM amm_completed($since, $agent)
    GROUP BY ALL ORDER BY bucket"""

_SPEND_SQL = f"""
    SELECT {_BUCKET} AS bucket, nullif(provider, '') AS provider, nullif(model_id, '') AS model_id,
           nullif(agent_type, '') AS agent_type, sum(cost_usd) AS cost_usd
    FROM amm_ledger($since, NULL)
    WHERE cost_usd > 0 AND occurred_at <= $at
    GROUP BY ALL ORDER BY bucket"""


def _daily(rows: list[dict[str, Any]]) -> list[DailyCost]:
    return [DailyCost(day=r["day"], key=r["key"], cost_usd=float(r["cost_usd"])) for r in rows]


# -- budget burn -----------------------------------------------------------------------------------

BurnKey = tuple[int, str]  # (index of the limit in the settings, scope key)


def _burn(p: Projections, budgets: BudgetSettings | None, since: datetime | None,
          at: datetime, bucket_s: int) -> list[BurnSeries]:
    if budgets is None or not budgets.limits:
        return []
    limits = budgets.limits
    # a window that began before `since` counts from its start: read from the earliest one
    start = None if since is None else budget_window_start("month", since, budgets.timezone)
    rows = p.query(_SPEND_SQL, {"since": start, "b": bucket_s, "at": at})
    cumulative = _accumulate(rows, limits, budgets.timezone)
    series = [_series(limits[index], key, points, budgets, since, bucket_s)
              for (index, key), points in cumulative.items()]
    series += _unspent(limits, cumulative, budgets)
    series.sort(key=lambda s: (-s.peak_share, s.label))
    return series[:MAX_BURN_SERIES]


def _accumulate(rows: list[dict[str, Any]], limits: list[BudgetLimit],
                timezone: str) -> dict[BurnKey, list[tuple[datetime, datetime, Decimal]]]:
    """Per (limit, key): (bucket, window start, spend so far in that window), in time order."""
    out: dict[BurnKey, list[tuple[datetime, datetime, Decimal]]] = defaultdict(list)
    totals: dict[tuple[BurnKey, datetime], Decimal] = defaultdict(Decimal)
    index_of = {id(limit): i for i, limit in enumerate(limits)}
    for row in rows:
        spend = SpendKey(provider=row["provider"], model_id=row["model_id"],
                         agent_type=row["agent_type"])
        for limit, key in applicable_limits(limits, spend):
            burn_key = (index_of[id(limit)], key)
            start = budget_window_start(limit.window, row["bucket"], timezone)
            totals[(burn_key, start)] += row["cost_usd"]
            _put(out[burn_key], row["bucket"], start, totals[(burn_key, start)])
    return out


def _put(points: list[tuple[datetime, datetime, Decimal]], bucket: datetime, start: datetime,
         total: Decimal) -> None:
    """Append, or replace the last point of the same bucket (several spend keys per bucket)."""
    if points and points[-1][0] == bucket:
        points[-1] = (bucket, start, total)
    else:
        points.append((bucket, start, total))


def _series(limit: BudgetLimit, key: str, points: list[tuple[datetime, datetime, Decimal]],
            budgets: BudgetSettings, since: datetime | None, bucket_s: int) -> BurnSeries:
    shown = _with_window_starts(_from(points, since, limit, budgets.timezone))
    return BurnSeries(scope=limit.scope, key=key, window=limit.window,
                      limit_usd=float(limit.limit_usd),
                      thresholds=tuple(budgets.alert_thresholds), points=tuple(shown),
                      bucket_s=bucket_s)


def _from(points: list[tuple[datetime, datetime, Decimal]], since: datetime | None,
          limit: BudgetLimit, timezone: str) -> list[tuple[datetime, datetime, Decimal]]:
    """The points at or after ``since``, starting with the spend its window already had then."""
    if since is None:
        return points
    before = [p for p in points if p[0] < since]
    after = [p for p in points if p[0] >= since]
    start = budget_window_start(limit.window, since, timezone)
    if before and before[-1][1] == start and not (after and after[0][0] == since):
        return [(since, start, before[-1][2]), *after]
    return after


def _with_window_starts(points: list[tuple[datetime, datetime, Decimal]]
                        ) -> list[tuple[datetime, float]]:
    """The points as (time, USD), with a zero at the start of each window after the first
    (the line drops there)."""
    out: list[tuple[datetime, float]] = []
    previous_start = None
    for bucket, start, total in points:
        if previous_start is not None and start != previous_start:
            out.append((start, 0.0))
        previous_start = start
        out.append((bucket, float(total)))
    return out


def _unspent(limits: list[BudgetLimit], seen: dict[BurnKey, Any],
             budgets: BudgetSettings) -> list[BurnSeries]:
    """Limits of a fixed key (or global) with no spend at all: drawn empty."""
    return [BurnSeries(scope=limit.scope, key=key, window=limit.window,
                       limit_usd=float(limit.limit_usd), thresholds=tuple(budgets.alert_thresholds),
                       points=())
            for index, limit in enumerate(limits) for key in limit_keys(limit, [])
            if (index, key) not in seen]
