"""``amm status``: what a system is doing now, as one :class:`SystemStatus`, and its rich tables.

Two sources fill the same model: a running system's actors (``runtime._status.live_status``) or,
when none is asked, the event log (:func:`log_status`, here). From the log:

- providers: the last ``HealthChanged`` of each (its state holds until the next), with the
  provider calls and failures of the last ``window_s`` (answers and ``AttemptFailed``);
- models: each model with a ``RateLimitHit`` in the last ``window_s``: ``cooling down`` while a
  provider 429's ``retry_after_s`` has not passed, else ``rate-limited`` (its own limit was
  exceeded), ``near its limit`` (approaching) or ``was cooling down``; models whose own last
  ``HealthChanged`` left them degraded or unhealthy; and models the last ``HealthChecked`` of
  their provider found missing (``unavailable``);
- budgets: every configured limit in its current window, with the headroom left (``--config``);
- in flight: requests with an ``AttemptStarted`` and no terminal event yet (in flight while a
  system runs; the EventSink records those of a writer that is gone as lost);
- alerts: the latest of the ``alerts`` projection since ``alerts_since``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..config import BudgetSettings
from ._budget import BudgetState, limit_status
from ._report import AlertRow

if TYPE_CHECKING:
    from ._api import Projections

#: How far back the log is read for provider calls and rate-limit hits.
WINDOW_S = 900.0
#: How far back alerts are read, and how many are shown.
ALERTS_SINCE_S = 86400.0
ALERTS_SHOWN = 10


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProviderHealth(_Row):
    """A provider's health: its state, since when and why; calls and failures counted over
    ``window`` (the breaker's window live, the last minutes of the log otherwise)."""

    provider: str
    state: str
    since: datetime | None = None
    reason: str = ""
    calls: int | None = None
    failures: int | None = None
    window: str = ""


class ModelLimit(_Row):
    """A model that is rate-limited, cooling down, near its limit or unavailable."""

    model_id: str
    provider: str | None = None
    state: str
    until: datetime | None = None
    detail: str = ""


class BudgetHeadroom(_Row):
    """One budget limit in its current window: spent, held by reservations (live only), and the
    headroom left for new calls."""

    scope: str
    key: str
    window: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal | None = None
    headroom_usd: Decimal
    used_share: float
    status: BudgetState


class InFlight(_Row):
    """Requests started and not yet ended, where they are counted."""

    where: str
    requests: int
    detail: str = ""


class SystemStatus(BaseModel):
    """The state of a running system (``source="live"``) or of its log (``"log"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["live", "log"]
    generated_at: datetime
    system: str | None = None
    address: str | None = None
    data_dir: str | None = None
    providers: list[ProviderHealth]
    models: list[ModelLimit]
    budgets: list[BudgetHeadroom]
    in_flight: list[InFlight]
    alerts: list[AlertRow]
    #: What this status cannot show, or where it came from, in a sentence each.
    notes: list[str] = []


def headroom_row(scope: str, key: str, window: str, limit_usd: Decimal, spent_usd: Decimal,
                 reserved_usd: Decimal | None, thresholds: Iterable[float]) -> BudgetHeadroom:
    """A limit's headroom: what is left after spend and reservations (never below zero)."""
    status, _ = limit_status(spent_usd, limit_usd, list(thresholds))
    left = limit_usd - spent_usd - (reserved_usd or Decimal(0))
    return BudgetHeadroom(
        scope=scope, key=key, window=window, limit_usd=limit_usd, spent_usd=spent_usd,
        reserved_usd=reserved_usd, headroom_usd=max(Decimal(0), left),
        used_share=float(spent_usd / limit_usd) if limit_usd else 1.0, status=status,
    )


def recent_alerts(p: Projections, at: datetime, since_s: float = ALERTS_SINCE_S,
                  shown: int = ALERTS_SHOWN) -> list[AlertRow]:
    """The latest ``shown`` alerts of the last ``since_s`` seconds, oldest first."""
    rows = p.alerts(since=at - timedelta(seconds=since_s))
    return [AlertRow(**r) for r in rows[-shown:]]


# -- from the log ----------------------------------------------------------------------------------


def log_status(p: Projections, *, budgets: BudgetSettings | None = None,
               at: datetime | None = None, window_s: float = WINDOW_S,
               alerts_since_s: float = ALERTS_SINCE_S, data_dir: str | None = None,
               notes: Iterable[str] = ()) -> SystemStatus:
    """The status the log shows at ``at`` (default now)."""
    at = at or p.now()
    since = at - timedelta(seconds=window_s)
    window = f"last {_duration(window_s)}"
    budget_rows = [headroom_row(r.scope, r.key, r.window, r.limit_usd, r.spent_usd, None,
                                budgets.alert_thresholds)
                   for r in p.budget_status(budgets, at)] if budgets else []
    extra = [] if budgets else ["budgets: no limits known (pass --config with the registry)"]
    return SystemStatus(
        source="log", generated_at=at, data_dir=data_dir,
        providers=_providers(p, since, window), models=_models(p, since, at),
        budgets=budget_rows, in_flight=_open_requests(p),
        alerts=recent_alerts(p, at, alerts_since_s), notes=[*notes, *extra],
    )


def _providers(p: Projections, since: datetime, window: str) -> list[ProviderHealth]:
    last = {r["provider"]: r for r in p.query(
        "SELECT provider, to_state, occurred_at, reason FROM health_changed"
        " WHERE provider IS NOT NULL AND model_id IS NULL"
        " QUALIFY row_number() OVER (PARTITION BY provider ORDER BY occurred_at DESC, event_id DESC) = 1")}
    calls = {r["provider"]: r for r in p.query(
        "WITH calls AS (SELECT provider, 0 AS failed FROM amm_completed($since, NULL) WHERE NOT cache_hit"
        " UNION ALL SELECT provider, 1 FROM amm_attempts($since, NULL))"
        " SELECT provider, count(*) AS calls, CAST(sum(failed) AS BIGINT) AS failures FROM calls"
        " WHERE provider IS NOT NULL GROUP BY ALL", {"since": since})}
    out = []
    for provider in sorted(set(last) | set(calls)):
        health, seen = last.get(provider), calls.get(provider)
        out.append(ProviderHealth(
            provider=provider, state=health["to_state"] if health else "unknown",
            since=health["occurred_at"] if health else None,
            reason=health["reason"] if health else "no health event in the log",
            calls=seen["calls"] if seen else 0, failures=seen["failures"] if seen else 0,
            window=window,
        ))
    return out


def _models(p: Projections, since: datetime, at: datetime) -> list[ModelLimit]:
    hits = p.query(
        "SELECT model_id, provider, kind, limit_type, used, \"limit\", retry_after_s, occurred_at"
        " FROM rate_limit_hit WHERE occurred_at >= $since AND occurred_at <= $at"
        " AND model_id IS NOT NULL ORDER BY occurred_at, event_id", {"since": since, "at": at})
    by_model: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        by_model.setdefault(hit["model_id"], []).append(hit)
    limited = [_limit_state(model_id, rows, at) for model_id, rows in sorted(by_model.items())]
    return [*limited, *_unhealthy_models(p), *_missing_models(p)]


def _limit_state(model_id: str, hits: list[dict[str, Any]], at: datetime) -> ModelLimit:
    """A model's rate-limit state from its recent hits (oldest first)."""
    cooling = [h["occurred_at"] + timedelta(seconds=h["retry_after_s"]) for h in hits
               if h["kind"] == "provider_429" and h["retry_after_s"] is not None]
    last = hits[-1]
    detail = (f"{len(hits)} hit{'s' if len(hits) > 1 else ''}; last {last['limit_type']} "
              f"{last['used']:,} of {last['limit']:,} at {last['occurred_at']:%H:%M:%S} UTC")
    if cooling and max(cooling) > at:
        return ModelLimit(model_id=model_id, provider=last["provider"], state="cooling down",
                          until=max(cooling), detail=detail)
    state = {"exceeded": "rate-limited", "approaching": "near its limit",
             "provider_429": "was cooling down"}[last["kind"]]
    return ModelLimit(model_id=model_id, provider=last["provider"], state=state, detail=detail)


def _unhealthy_models(p: Projections) -> list[ModelLimit]:
    """Models whose own last ``HealthChanged`` left them other than healthy."""
    rows = p.query(
        "SELECT model_id, provider, to_state, occurred_at, reason FROM health_changed"
        " WHERE model_id IS NOT NULL"
        " QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY occurred_at DESC, event_id DESC) = 1")
    return [ModelLimit(model_id=r["model_id"], provider=r["provider"], state=r["to_state"],
                       detail=f"since {r['occurred_at']:%Y-%m-%d %H:%M:%S} UTC: {r['reason']}")
            for r in rows if r["to_state"] != "healthy"]


def _missing_models(p: Projections) -> list[ModelLimit]:
    rows = p.query(
        "SELECT provider, missing_models, occurred_at FROM health_checked WHERE provider IS NOT NULL"
        " QUALIFY row_number() OVER (PARTITION BY provider ORDER BY occurred_at DESC, event_id DESC) = 1")
    return [ModelLimit(model_id=model, provider=r["provider"], state="unavailable",
                       detail=f"missing from the provider's model list at "
                              f"{r['occurred_at']:%H:%M:%S} UTC")
            for r in rows for model in (r["missing_models"] or [])]


def _open_requests(p: Projections) -> list[InFlight]:
    row = p.query(
        "SELECT count(DISTINCT s.request_id) AS open, min(s.occurred_at) AS oldest"
        " FROM attempt_started s WHERE s.request_id IS NOT NULL"
        " AND s.request_id NOT IN (SELECT request_id FROM request_completed WHERE request_id IS NOT NULL)"
        " AND s.request_id NOT IN (SELECT request_id FROM request_failed WHERE request_id IS NOT NULL)")[0]
    detail = (f"attempt started, no terminal event yet; oldest at {row['oldest']:%Y-%m-%d %H:%M:%S} UTC"
              if row["open"] else "every request started in the log has ended")
    return [InFlight(where="log", requests=int(row["open"]), detail=detail)]


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# -- rendering -------------------------------------------------------------------------------------

_STATE_COLOURS = {"healthy": "green", "degraded": "yellow", "half_open": "yellow",
                  "unhealthy": "red", "unknown": "dim", "cooling down": "red",
                  "rate-limited": "red", "near its limit": "yellow", "unavailable": "red",
                  "was cooling down": "dim", "ok": "green", "warning": "yellow", "exceeded": "red"}


def render_status(status: SystemStatus, console: Console) -> None:
    """Print the status as rich tables, a heading first and notes last."""
    console.print(_heading(status), highlight=False)
    console.print(_providers_table(status))
    console.print(_models_table(status))
    if status.budgets:
        console.print(_budgets_table(status))
    console.print(_in_flight_table(status))
    console.print(_alerts_table(status))
    for note in status.notes:
        console.print(Text(f"note: {note}", style="dim"))


def _heading(s: SystemStatus) -> str:
    when = f"{s.generated_at:%Y-%m-%d %H:%M:%S} UTC"
    if s.source == "live":
        return (f"[bold]System {s.system}[/] on the Ray cluster at {s.address}, live at {when}"
                f" (log: {s.data_dir})")
    return f"[bold]From the event log[/] at {s.data_dir}, as of {when} (no running system asked)"


def _state(text: str) -> str:
    colour = _STATE_COLOURS.get(text)
    return f"[{colour}]{text}[/]" if colour else text


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _providers_table(s: SystemStatus) -> Table:
    table = Table(title="Providers")
    for name in ("provider", "state", "since (UTC)", "calls", "failed", "window", "why"):
        table.add_column(name, justify="right" if name in ("calls", "failed") else "left")
    for row in s.providers:
        table.add_row(row.provider, _state(row.state), _time(row.since),
                      "-" if row.calls is None else f"{row.calls:,}",
                      "-" if row.failures is None else f"{row.failures:,}", row.window,
                      Text(row.reason))
    return table


def _models_table(s: SystemStatus) -> Table:
    title = "Models rate-limited or cooling down" + ("" if s.models else ": none")
    table = Table(title=title)
    for name in ("model", "provider", "state", "until (UTC)", "detail"):
        table.add_column(name)
    for row in s.models:
        table.add_row(row.model_id, row.provider or "-", _state(row.state), _time(row.until),
                      Text(row.detail))
    return table


def _budgets_table(s: SystemStatus) -> Table:
    table = Table(title="Budgets (current windows)")
    for name in ("scope", "key", "window"):
        table.add_column(name)
    for name in ("spent", "reserved", "limit", "headroom", "used", "status"):
        table.add_column(name, justify="right")
    for row in s.budgets:
        reserved = "-" if row.reserved_usd is None else _usd(row.reserved_usd)
        table.add_row(row.scope, row.key, row.window, _usd(row.spent_usd), reserved,
                      _usd(row.limit_usd), _usd(row.headroom_usd), f"{row.used_share:.1%}",
                      _state(row.status))
    return table


def _in_flight_table(s: SystemStatus) -> Table:
    table = Table(title=f"In flight: {sum(r.requests for r in s.in_flight):,}")
    table.add_column("where")
    table.add_column("requests", justify="right")
    table.add_column("detail")
    for row in s.in_flight:
        table.add_row(row.where, f"{row.requests:,}", Text(row.detail))
    return table


def _alerts_table(s: SystemStatus) -> Table:
    table = Table(title=f"Recent alerts ({len(s.alerts)})")
    for name in ("time (UTC)", "severity", "category", "subject", "message"):
        table.add_column(name)
    for alert in s.alerts:
        colour = "red" if alert.severity == "critical" else "yellow"
        table.add_row(f"{alert.occurred_at:%Y-%m-%d %H:%M:%S}", f"[{colour}]{alert.severity}[/]",
                      alert.category, alert.subject, Text(alert.message))
    return table


def _usd(value: Decimal) -> str:
    return f"${value:,.4f}"
