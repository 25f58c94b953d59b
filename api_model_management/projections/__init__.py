"""Projections: DuckDB SQL over the event log (cost, latency, success, quality, tokens, cache,
budgets, alerts), with a Python API, a report, the operator's charts (``plot_figures``,
``write_plots``, ``write_html``: matplotlib, imported when a chart is drawn) and the original
``PerformanceMonitor`` facade.

Each ``<name>.sql`` file in this package defines a view ``<name>`` and a table macro
``<name>_for(p_since, p_agent)`` over the per-event-type views of ``_duckdb.connect``.
"""

from ._api import Projections, fetch_dicts, open_projections, to_arrow
from ._budget import BudgetRow, spend_by_scope, window_start
from ._monitor import PerformanceMonitor
from ._plotdata import PlotData, gather_plot_data
from ._plots import CHARTS, plot_figures, write_html, write_plots
from ._report import (
    AlertRow,
    CostRow,
    LatencyRow,
    QualityRow,
    Report,
    SuccessRow,
    build_report,
    render_report,
)
from ._sql import PROJECTIONS, VIEWS, install, sql_text

__all__ = [
    "CHARTS",
    "PROJECTIONS",
    "VIEWS",
    "AlertRow",
    "BudgetRow",
    "CostRow",
    "LatencyRow",
    "PerformanceMonitor",
    "PlotData",
    "Projections",
    "QualityRow",
    "Report",
    "SuccessRow",
    "build_report",
    "fetch_dicts",
    "gather_plot_data",
    "install",
    "open_projections",
    "plot_figures",
    "render_report",
    "spend_by_scope",
    "sql_text",
    "to_arrow",
    "window_start",
    "write_html",
    "write_plots",
]
