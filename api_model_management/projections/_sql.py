"""The projection SQL files: loading them into a DuckDB connection that has the event views."""

from __future__ import annotations

from importlib import resources

import duckdb

#: The projections, each a view ``<name>`` and a table macro ``<name>_for(p_since, p_agent)``.
PROJECTIONS: tuple[str, ...] = (
    "cost_by_model_day",
    "cost_by_provider",
    "cost_by_agent_type",
    "latency_by_model",
    "success_rates",
    "quality_by_model",
    "token_usage",
    "cost_per_request",
    "cache_savings",
    "alerts",
)
#: ``budget_status`` is a view too, but its macro takes a time zone: ``budget_spend_for(p_tz)``.
VIEWS: tuple[str, ...] = (*PROJECTIONS, "budget_status")
_FILES = ("_base", *VIEWS)


def sql_text(name: str) -> str:
    """The text of ``<name>.sql`` shipped with the package."""
    return resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def install(con: duckdb.DuckDBPyConnection, *, force: bool = False) -> duckdb.DuckDBPyConnection:
    """Create every projection macro and view on ``con`` (once per connection unless ``force``);
    returns ``con``."""
    if not force and con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'budget_spend_for'"
    ).fetchall()[0][0]:
        return con
    for name in _FILES:
        con.execute(sql_text(name))
    return con
