"""Degradation alerts in the projections and in ``amm report``: a raise is a warning, its clear
is info, and a log written before ``PerformanceAlert.cleared`` existed (no file has the column)
still reports, its alerts read as raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from api_model_management.alerts import ERROR_RATE, LATENCY_DEGRADED
from api_model_management.cli import app
from api_model_management.events import EventLog, PerformanceAlert
from api_model_management.events._log import events_to_table
from api_model_management.projections import build_report, open_projections, render_report

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL = {"model_id": "gpt-4o-mini", "provider": "openai"}


def alert(minutes: int, kind: str = LATENCY_DEGRADED, *, cleared: bool = False) -> PerformanceAlert:
    return PerformanceAlert(
        occurred_at=AT + timedelta(minutes=minutes), kind=kind, metric="p95_latency_ms",
        value=100.0 if cleared else 900.0, threshold=400.0, cleared=cleared,
        message=("cleared, absent for 300 s: " if cleared else "") + "p95 latency (router local)",
        **MODEL)


def write_old_file(root: Path, event: PerformanceAlert) -> None:
    """A PerformanceAlert file as written before ``cleared`` existed."""
    log = EventLog(root, fsync="never")
    table = events_to_table([event], PerformanceAlert).drop_columns(["cleared"])
    directory = Path(log.partition_dir("PerformanceAlert", "2026-03-01"))
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "0195f000-0000-7000-8000-000000000001-1.parquet")


def test_a_raise_is_a_warning_and_its_clear_is_info(tmp_path: Path) -> None:
    EventLog(tmp_path, fsync="never").append([alert(0), alert(9, cleared=True), alert(20, ERROR_RATE)])
    rows = open_projections(tmp_path).alerts()
    assert [(r["kind"], r["severity"], r["subject"]) for r in rows] == [
        (LATENCY_DEGRADED, "warning", "gpt-4o-mini"),
        (LATENCY_DEGRADED, "info", "gpt-4o-mini"),
        (ERROR_RATE, "warning", "gpt-4o-mini"),
    ]
    assert rows[1]["message"].startswith("cleared")


def test_the_report_shows_the_kind_and_the_clear(tmp_path: Path) -> None:
    EventLog(tmp_path, fsync="never").append([alert(0), alert(9, cleared=True)])
    report = build_report(open_projections(tmp_path), since=None, agent_type=None, budgets=None,
                          at=AT + timedelta(hours=1))
    console = Console(record=True, width=200)
    render_report(report, console)
    text = console.export_text()
    assert text.count(LATENCY_DEGRADED) == 2 and "info" in text and "warning" in text
    assert "cleared, absent for 300 s" in text


def test_a_log_older_than_the_cleared_field_still_reports(tmp_path: Path) -> None:
    write_old_file(tmp_path, alert(0))
    rows = open_projections(tmp_path).alerts()
    assert [(r["kind"], r["severity"]) for r in rows] == [(LATENCY_DEGRADED, "warning")]
    assert EventLog(tmp_path, fsync="never").read("PerformanceAlert")[0].cleared is False


def test_amm_report_lists_the_alerts(tmp_path: Path) -> None:
    EventLog(tmp_path, fsync="never").append([alert(0), alert(9, cleared=True)])
    result = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    alerts = json.loads(result.output)["alerts"]
    assert [(a["kind"], a["severity"]) for a in alerts] == [
        (LATENCY_DEGRADED, "warning"), (LATENCY_DEGRADED, "info")]
