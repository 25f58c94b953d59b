"""Budget spend from the log (``budget_spend_for``), joined with the configured limits.

Windows are the CostLedger's: the day and the month containing ``at`` in
``BudgetSettings.timezone``, each starting at local midnight. :func:`spend_by_scope` is the SQL side
of the cross-check with ``CostLedgerCore.spend(scope, key, window, at)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal

import duckdb
from pydantic import BaseModel, ConfigDict

from ..budget import limit_keys
from ..budget import window_start as _window_start
from ..config import BudgetSettings, Scope, Window
from ..errors import InvalidInput
from ._sql import install

SpendKey = tuple[str, str, str]  # scope, scope_key, window
BudgetState = Literal["ok", "warning", "exceeded"]


class BudgetRow(BaseModel):
    """One configured limit (one key of a ``*`` limit) in the window containing ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    key: str
    window: Window
    window_start: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    remaining_usd: Decimal
    used_share: float
    #: The highest alert threshold reached, if any.
    threshold_reached: float | None
    status: BudgetState


def window_start(window: Window, at: datetime, timezone: str) -> datetime:
    """Start (UTC) of the day or month containing ``at`` in ``timezone`` (the ledger's rule)."""
    return _window_start(window, at, timezone)


def spend_by_scope(con: duckdb.DuckDBPyConnection, settings: BudgetSettings,
                   at: datetime) -> dict[SpendKey, Decimal]:
    """Spend per ``(scope, scope_key, window)`` in the windows containing ``at``.

    ``con`` has the event views (``projections._duckdb.connect``); the projection macros are
    (re)installed on it. Only keys with positive spend appear, as in the CostLedger's fold: spend of
    ``RequestCompleted``, ``RequestFailed`` and ``FeedbackRecorded`` (a judge call counted to the
    judge model) by ``occurred_at``; the global scope's key is ``*``."""
    _check_aware(at)
    install(con)
    rows = con.execute(
        """
        SELECT scope, scope_key, "window", spent_usd
        FROM budget_spend_for($tz)
        WHERE ("window" = 'day' AND window_start = $day) OR ("window" = 'month' AND window_start = $month)
        """,
        {"tz": settings.timezone, "day": window_start("day", at, settings.timezone),
         "month": window_start("month", at, settings.timezone)},
    ).fetchall()
    return {(scope, key, window): spent for scope, key, window, spent in rows}


def budget_rows(spend: dict[SpendKey, Decimal], settings: BudgetSettings,
                at: datetime) -> list[BudgetRow]:
    """Each configured limit with its spend; a non-global ``*`` limit gives one row per key seen."""
    rows = []
    for limit in settings.limits:
        seen = [k for (s, k, w) in spend if s == limit.scope and w == limit.window]
        for key in limit_keys(limit, seen):
            spent = spend.get((limit.scope, key, limit.window), Decimal(0))
            rows.append(_row(limit.scope, key, limit.window, limit.limit_usd, spent, settings, at))
    return rows


def _row(scope: Scope, key: str, window: Window, limit_usd: Decimal, spent: Decimal,
         settings: BudgetSettings, at: datetime) -> BudgetRow:
    share = float(spent / limit_usd)
    status, reached = limit_status(spent, limit_usd, settings.alert_thresholds)
    return BudgetRow(
        scope=scope, key=key, window=window,
        window_start=window_start(window, at, settings.timezone),
        limit_usd=limit_usd, spent_usd=spent, remaining_usd=max(Decimal(0), limit_usd - spent),
        used_share=share, threshold_reached=reached, status=status,
    )


def limit_status(spent: Decimal, limit_usd: Decimal,
                 thresholds: Sequence[float]) -> tuple[BudgetState, float | None]:
    """A limit's state for ``spent``: ``exceeded`` at or over the limit, ``warning`` once an
    alert threshold (a share of the limit) is reached, else ``ok``; and the highest threshold
    reached, if any."""
    reached = [t for t in thresholds if spent >= Decimal(str(t)) * limit_usd]
    top = max(reached) if reached else None
    if spent >= limit_usd:
        return "exceeded", top
    return ("warning" if reached else "ok"), top


def _check_aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise InvalidInput("at must be a timezone-aware datetime", field="at")
