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
from ..projections._report import render_report
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
                   console: Console | None = None, clock: Clock = SYSTEM_CLOCK) -> int:
    """Print the report; 0 on success, 2 (one line on stderr) on bad input."""
    out = console or Console()
    errors = Console(stderr=True)
    try:
        if fmt not in ("table", "json"):
            raise InvalidInput(f"--format {fmt!r}: use table or json", field="format")
        budgets = None
        if config_path is not None:
            from ..config._load import load_config

            budgets = load_config(config_path).settings.budgets
        log = open_log(data_dir_text(data_dir))
        try:
            with Projections(log, clock=clock) as projections:
                report = projections.report(since=parse_since(since, clock.now()),
                                            agent_type=agent_type, budgets=budgets)
        finally:
            warn_quarantined(log)
    except (InvalidInput, ConfigError, duckdb.Error, OSError) as exc:
        errors.print(f"[red]error:[/] {str(exc).splitlines()[0]}", highlight=False)
        return 2
    if fmt == "json":
        out.print_json(report.model_dump_json())
    else:
        render_report(report, out)
    return 0
