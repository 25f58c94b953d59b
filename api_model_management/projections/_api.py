"""``Projections``: the Python API over the projection SQL (DuckDB over the event log).

    with open_projections("data") as p:
        p.cost_by_model_day()                         # list of dicts
        p.table("latency_by_model", since=yesterday)  # an Arrow table
        p.budget_status(settings.budgets)             # limits joined with spend
        render_report(p.report(), Console())

Filters are SQL parameters bound to the projection macros (``<name>_for($since, $agent)``), never
formatted into the SQL text. ``since`` must be timezone-aware.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .._clock import SYSTEM_CLOCK, Clock
from ..config import BudgetSettings
from ..errors import InvalidInput
from ..events._log import EventLog
from ._budget import BudgetRow, budget_rows, spend_by_scope
from ._duckdb import connect
from ._report import Report, build_report
from ._sql import PROJECTIONS, install

Rows = list[dict[str, Any]]


class Projections:
    """Read-only queries over one event log. Views reflect the log's files as of opening (or the
    last :meth:`refresh`); ``log.quarantined`` lists the files left out as unreadable."""

    def __init__(self, data_dir: str | Path | EventLog, *, clock: Clock = SYSTEM_CLOCK,
                 con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.log = data_dir if isinstance(data_dir, EventLog) else EventLog(data_dir)
        self._clock = clock
        self.connection = connect(self.log, con=con)
        self.connection.execute("SET TimeZone = 'UTC'")
        install(self.connection)

    # -- plumbing ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """See files written since opening."""
        connect(self.log, con=self.connection)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Projections:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def now(self) -> datetime:
        return self._clock.now()

    def _select(self, name: str, since: datetime | None, agent_type: str | None
                ) -> tuple[str, dict[str, Any]]:
        if name not in PROJECTIONS:
            raise InvalidInput(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}",
                               field="name")
        if since is not None and since.tzinfo is None:
            raise InvalidInput("since must be a timezone-aware datetime", field="since")
        return f"SELECT * FROM {name}_for($since, $agent)", {"since": since, "agent": agent_type}

    def table(self, name: str, since: datetime | None = None,
              agent_type: str | None = None) -> pa.Table:
        """Projection ``name`` (one of ``PROJECTIONS``) as an Arrow table."""
        sql, params = self._select(name, since, agent_type)
        return to_arrow(self.connection.sql(sql, params=params))

    def rows(self, name: str, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        """Projection ``name`` as a list of dicts (money as ``Decimal``)."""
        sql, params = self._select(name, since, agent_type)
        return fetch_dicts(self.connection.execute(sql, params))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> Rows:
        """Any SQL over the event and projection views, with bound parameters."""
        return fetch_dicts(self.connection.execute(sql, params or {}))

    # -- the projections ---------------------------------------------------------------------------
    def cost_by_model_day(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("cost_by_model_day", since, agent_type)

    def cost_by_provider(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("cost_by_provider", since, agent_type)

    def cost_by_agent_type(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("cost_by_agent_type", since, agent_type)

    def latency_by_model(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("latency_by_model", since, agent_type)

    def success_rates(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("success_rates", since, agent_type)

    def quality_by_model(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("quality_by_model", since, agent_type)

    def token_usage(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("token_usage", since, agent_type)

    def cost_per_request(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("cost_per_request", since, agent_type)

    def cache_savings(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("cache_savings", since, agent_type)

    def alerts(self, since: datetime | None = None, agent_type: str | None = None) -> Rows:
        return self.rows("alerts", since, agent_type)

    def budget_status(self, settings: BudgetSettings, at: datetime | None = None) -> list[BudgetRow]:
        """Every configured limit with the spend of its window containing ``at`` (default now)."""
        at = at or self.now()
        return budget_rows(spend_by_scope(self.connection, settings, at), settings, at)

    def report(self, since: datetime | None = None, agent_type: str | None = None,
               budgets: BudgetSettings | None = None, at: datetime | None = None) -> Report:
        """Requests, success, failovers, cache, cost, latency, quality, budgets (when ``budgets``
        is given) and alerts, in one :class:`Report`."""
        return build_report(self, since=since, agent_type=agent_type, budgets=budgets, at=at)


def open_projections(data_dir: str | Path, *, clock: Clock = SYSTEM_CLOCK) -> Projections:
    """Open the projections over the log in ``data_dir``."""
    return Projections(data_dir, clock=clock)


def fetch_dicts(cursor: duckdb.DuckDBPyConnection) -> Rows:
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def to_arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A relation's rows as an Arrow table (``to_arrow_table`` in recent DuckDB, ``arrow``
    before)."""
    method = getattr(relation, "to_arrow_table", None) or relation.arrow
    return method()
