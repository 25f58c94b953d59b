"""The report: one pydantic model gathering the projections, and its rich rendering."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator
from rich.console import Console
from rich.table import Table

from ..config import BudgetSettings
from ._budget import BudgetRow

if TYPE_CHECKING:
    from ._api import Projections

_ALERTS_SHOWN = 20


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CostRow(_Row):
    """Spend of one model, provider or agent type (whichever fields apply)."""

    model_id: str | None = None
    provider: str | None = None
    agent_type: str | None = None
    requests: int
    failed_requests: int
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int


class LatencyRow(_Row):
    model_id: str | None
    provider: str | None
    requests: int
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    max_latency_ms: float


class QualityRow(_Row):
    model_id: str | None
    provider: str | None
    evaluations: int
    avg_quality: float
    low_quality_share: float


class SuccessRow(_Row):
    model_id: str
    provider: str | None
    attempts: int
    successes: int
    failures: int
    requests_failed: int
    failovers: int
    success_rate: float | None
    failover_rate: float | None


class AlertRow(_Row):
    occurred_at: datetime
    category: str
    kind: str
    severity: str
    subject: str
    message: str


class Report(BaseModel):
    """What happened in the log (since ``since``, for ``agent_type`` if given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generated_at: datetime
    since: datetime | None
    agent_type: str | None
    requests: int
    completed: int
    failed: int
    success_rate: float | None
    attempts: int
    attempt_success_rate: float | None
    failovers: int
    cache_hits: int
    cache_hit_rate: float | None
    saved_cost_usd: Decimal
    total_cost_usd: Decimal
    average_quality: float | None
    low_quality_share: float | None
    cost_by_model: list[CostRow]
    cost_by_provider: list[CostRow]
    cost_by_agent_type: list[CostRow]
    latency_by_model: list[LatencyRow]
    success_by_model: list[SuccessRow]
    quality_by_model: list[QualityRow]
    budget_status: list[BudgetRow]
    alerts: list[AlertRow]

    @field_validator("saved_cost_usd", "total_cost_usd")
    @classmethod
    def _plain_zero(cls, value: Decimal) -> Decimal:
        return Decimal(0) if value == 0 else value  # not "0E-12"


def build_report(p: Projections, *, since: datetime | None, agent_type: str | None,
                 budgets: BudgetSettings | None, at: datetime | None) -> Report:
    """Gather the report from the projections (filters bound as SQL parameters)."""
    at = at or p.now()
    params = {"since": since, "agent": agent_type}
    totals = p.query(
        "SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(failed_requests), 0) AS failed,"
        " coalesce(sum(cost_usd), 0) AS cost_usd FROM amm_ledger($since, $agent)", params)[0]
    by_model = p.query(
        "SELECT model_id, provider, sum(requests) AS requests, sum(failed_requests) AS failed_requests,"
        " sum(cost_usd) AS cost_usd, sum(input_tokens) AS input_tokens,"
        " sum(output_tokens) AS output_tokens FROM cost_by_model_day_for($since, $agent)"
        " GROUP BY ALL ORDER BY cost_usd DESC, model_id NULLS LAST", params)
    quality = p.query(
        "SELECT avg(quality_score) AS avg_quality, avg(CAST(low_quality AS INTEGER)) AS low_share"
        " FROM amm_evaluated($since, $agent)", params)[0]
    failovers = p.query("SELECT count(*) AS n FROM amm_failovers($since, $agent)", params)[0]["n"]
    success = [SuccessRow(**r) for r in p.success_rates(since, agent_type)]
    cache = (p.cache_savings(since, agent_type) or [{}])[0]
    requests, failed = int(totals["requests"]), int(totals["failed"])
    attempts = sum(r.attempts for r in success)
    return Report(
        generated_at=at, since=since, agent_type=agent_type,
        requests=requests, completed=requests - failed, failed=failed,
        success_rate=_share(requests - failed, requests),
        attempts=attempts, attempt_success_rate=_share(sum(r.successes for r in success), attempts),
        failovers=int(failovers),
        cache_hits=int(cache.get("cache_hits", 0)), cache_hit_rate=cache.get("hit_rate"),
        saved_cost_usd=cache.get("saved_cost_usd", Decimal(0)),
        total_cost_usd=Decimal(totals["cost_usd"]),
        average_quality=quality["avg_quality"], low_quality_share=quality["low_share"],
        cost_by_model=[CostRow(**r) for r in by_model],
        cost_by_provider=[CostRow(**r) for r in p.cost_by_provider(since, agent_type)],
        cost_by_agent_type=[CostRow(**r) for r in p.cost_by_agent_type(since, agent_type)],
        latency_by_model=[LatencyRow(**r) for r in p.latency_by_model(since, agent_type)],
        success_by_model=success,
        quality_by_model=[QualityRow(**r) for r in p.quality_by_model(since, agent_type)],
        budget_status=p.budget_status(budgets, at) if budgets else [],
        alerts=[AlertRow(**r) for r in p.alerts(since, agent_type)],
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- rendering -----------------------------------------------------------------------------------


def render_report(report: Report, console: Console) -> None:
    """Print the report as rich tables."""
    console.print(_summary(report))
    console.print(_cost_table("Cost by model", report.cost_by_model, ("model_id", "provider")))
    console.print(_cost_table("Cost by provider", report.cost_by_provider, ("provider",)))
    console.print(_cost_table("Cost by agent type", report.cost_by_agent_type, ("agent_type",)))
    console.print(_latency_table(report))
    console.print(_reliability_table(report))
    if report.quality_by_model:
        console.print(_quality_table(report))
    if report.budget_status:
        console.print(_budget_table(report))
    console.print(_alerts_table(report))


def _summary(r: Report) -> Table:
    scope = f"since {r.since:%Y-%m-%d %H:%M} UTC" if r.since else "whole log"
    table = Table(title=f"Summary ({scope}{', agent ' + r.agent_type if r.agent_type else ''})",
                  show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in (
        ("requests", f"{r.requests:,}"),
        ("completed / failed", f"{r.completed:,} / {r.failed:,}"),
        ("success rate", _pct(r.success_rate)),
        ("provider attempts (success)", f"{r.attempts:,} ({_pct(r.attempt_success_rate)})"),
        ("failovers", f"{r.failovers:,}"),
        ("cache hits", f"{r.cache_hits:,} ({_pct(r.cache_hit_rate)})"),
        ("saved by cache", _usd(r.saved_cost_usd)),
        ("total cost", _usd(r.total_cost_usd)),
        ("average quality", _num(r.average_quality, 3)),
        ("low-quality share", _pct(r.low_quality_share)),
    ):
        table.add_row(name, value)
    return table


def _cost_table(title: str, rows: list[CostRow], keys: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for key in keys:
        table.add_column(key)
    for name in ("requests", "failed", "cost", "input tok", "output tok"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*(str(getattr(row, k) or "-") for k in keys), f"{row.requests:,}",
                      f"{row.failed_requests:,}", _usd(row.cost_usd), f"{row.input_tokens:,}",
                      f"{row.output_tokens:,}")
    return table


def _latency_table(r: Report) -> Table:
    table = Table(title="Latency by model (ms, provider calls only)")
    table.add_column("model")
    for name in ("requests", "avg", "p50", "p95", "p99", "max"):
        table.add_column(name, justify="right")
    for row in r.latency_by_model:
        table.add_row(row.model_id or "-", f"{row.requests:,}", *(
            f"{v:,.0f}" for v in (row.avg_latency_ms, row.p50_latency_ms, row.p95_latency_ms,
                                  row.p99_latency_ms, row.max_latency_ms)))
    return table


def _reliability_table(r: Report) -> Table:
    table = Table(title="Reliability by model")
    table.add_column("model")
    for name in ("attempts", "success rate", "failures", "requests failed", "failovers"):
        table.add_column(name, justify="right")
    for row in r.success_by_model:
        table.add_row(row.model_id, f"{row.attempts:,}", _pct(row.success_rate),
                      f"{row.failures:,}", f"{row.requests_failed:,}", f"{row.failovers:,}")
    return table


def _quality_table(r: Report) -> Table:
    table = Table(title="Quality by model")
    table.add_column("model")
    for name in ("evaluations", "avg quality", "low quality"):
        table.add_column(name, justify="right")
    for row in r.quality_by_model:
        table.add_row(row.model_id or "-", f"{row.evaluations:,}", _num(row.avg_quality, 3),
                      _pct(row.low_quality_share))
    return table


def _budget_table(r: Report) -> Table:
    table = Table(title="Budgets")
    for name in ("scope", "key", "window"):
        table.add_column(name)
    for name in ("spent", "limit", "used", "status"):
        table.add_column(name, justify="right")
    colours = {"ok": "green", "warning": "yellow", "exceeded": "red"}
    for row in r.budget_status:
        table.add_row(row.scope, row.key, row.window, _usd(row.spent_usd), _usd(row.limit_usd),
                      _pct(row.used_share), f"[{colours[row.status]}]{row.status}[/]")
    return table


def _alerts_table(r: Report) -> Table:
    shown = r.alerts[-_ALERTS_SHOWN:]
    title = f"Alerts ({len(r.alerts)}{', latest ' + str(len(shown)) if len(shown) < len(r.alerts) else ''})"
    table = Table(title=title)
    for name in ("time (UTC)", "severity", "category", "kind", "subject", "message"):
        table.add_column(name)
    colours = {"critical": "red", "warning": "yellow", "info": "green"}
    for alert in shown:
        colour = colours.get(alert.severity, "yellow")
        table.add_row(f"{alert.occurred_at:%Y-%m-%d %H:%M:%S}", f"[{colour}]{alert.severity}[/]",
                      alert.category, alert.kind, alert.subject, alert.message)
    return table


def _usd(value: Decimal) -> str:
    return f"${value:,.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
