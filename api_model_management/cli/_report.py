"""``amm report``: the report over the log, as rich tables or JSON (wired in ``cli.py``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from rich.console import Console

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigError, InvalidInput
from ..projections._api import Projections
from ..projections._plotdata import PlotData
from ..projections._report import render_report
from ._errors import print_error
from ._query import data_dir_text, open_log, warn_quarantined

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``24h``, ``7d``, ``30m``, ``2w`` (before ``now``) or an ISO date/time (UTC if no zone)."""
    if not text:
        return None
    match = _RELATIVE.match(text.strip().lower())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--since {text!r}: use e.g. 24h, 7d or 2026-03-01T00:00",
                           field="since") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def report_command(data_dir: Path, since: str | None = None, agent_type: str | None = None,
                   fmt: str = "table", config_path: Path | None = None, *,
                   console: Console | None = None, clock: Clock = SYSTEM_CLOCK,
                   plot_dir: Path | None = None, html_path: Path | None = None,
                   plot_format: str = "png") -> int:
    """Print the report; with ``plot_dir`` also write one chart file per chart there, with
    ``html_path`` one self-contained HTML page of them (folders are created, and said so on
    stderr). 0 on success, 2 (one line on stderr) on bad input or a target that cannot be
    written."""
    out = console or Console()
    try:
        if fmt not in ("table", "json"):
            raise InvalidInput(f"--format {fmt!r}: use table or json", field="format")
        if plot_dir is not None or html_path is not None:
            prepare_chart_targets(plot_dir, html_path, plot_format)
        budgets = None
        if config_path is not None:
            from ..config._load import load_config
            from ..config._logging import configure_logging_for

            registry = load_config(config_path)
            configure_logging_for(registry)  # its settings.log_level, unless API_MODEL_LOG_LEVEL
            budgets = registry.settings.budgets
        log = open_log(data_dir_text(data_dir))
        try:
            with Projections(log, clock=clock) as projections:
                start = parse_since(since, clock.now())
                report = projections.report(since=start, agent_type=agent_type, budgets=budgets)
                if plot_dir is not None or html_path is not None:
                    from ..projections._plotdata import gather_plot_data

                    charts = gather_plot_data(projections, since=start, agent_type=agent_type,
                                              budgets=budgets, at=report.generated_at)
                    write_charts(charts, plot_dir, html_path, plot_format)
        finally:
            warn_quarantined(log)
    except (InvalidInput, ConfigError, duckdb.Error, OSError) as exc:
        return print_error(exc)
    if fmt == "json":
        out.print_json(report.model_dump_json())
    else:
        render_report(report, out)
    return 0


def prepare_chart_targets(plot_dir: Path | None, html_path: Path | None, plot_format: str) -> None:
    """Check the chart targets before any work: the format, ``plot_dir`` a directory (created
    if missing), ``html_path`` not a directory (its folder created if missing). Folders created
    are said on stderr; a target that cannot be used raises ``InvalidInput`` naming it."""
    from ..projections._plots import FORMATS

    if plot_format not in FORMATS:
        raise InvalidInput(f"--plot-format {plot_format!r}: use {' or '.join(FORMATS)}",
                           field="plot_format")
    if plot_dir is not None:
        _ensure_folder(plot_dir, "--plot")
    if html_path is not None:
        if html_path.is_dir():
            raise InvalidInput(f"--html {html_path} is a directory: name a file", field="html")
        _ensure_folder(html_path.parent, "--html")


def _ensure_folder(folder: Path, option: str) -> None:
    if folder.is_dir():
        return
    if folder.exists():
        raise InvalidInput(f"{option} {folder} is not a directory", field=option.lstrip("-"))
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise InvalidInput(f"{option}: cannot create {folder} ({exc.strerror or type(exc).__name__})",
                           field=option.lstrip("-")) from None
    _note(f"created {folder}")


def write_charts(charts: PlotData, plot_dir: Path | None, html_path: Path | None,
                 plot_format: str) -> None:
    """Write the chart files and the HTML page; one line on stderr for each target written."""
    from ..projections._plots import CHARTS, write_html, write_plots

    if plot_dir is not None:
        try:
            write_plots(charts, plot_dir, plot_format)
        except OSError as exc:
            raise InvalidInput(f"--plot: cannot write into {plot_dir} "
                               f"({exc.strerror or type(exc).__name__})", field="plot") from None
        _note(f"wrote {len(CHARTS)} charts to {plot_dir}")
    if html_path is not None:
        try:
            write_html(charts, html_path, plot_format)
        except OSError as exc:
            raise InvalidInput(f"--html: cannot write {html_path} "
                               f"({exc.strerror or type(exc).__name__})", field="html") from None
        _note(f"wrote {html_path}")


def _note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False, soft_wrap=True)
