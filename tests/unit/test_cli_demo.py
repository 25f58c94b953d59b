"""`amm demo` and `amm report` refuse bad input with one line and exit 2, before starting anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from api_model_management.cli import app

pytestmark = pytest.mark.unit

runner = CliRunner()


def test_demo_refuses_a_non_positive_request_count():
    result = runner.invoke(app, ["demo", "--requests", "0"])
    assert result.exit_code == 2
    assert "--requests" in result.output


def test_demo_refuses_a_data_dir_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["demo", "--data-dir", str(blocker / "log"), "--requests", "5"])
    assert result.exit_code == 2
    assert "not a writable directory" in result.output
    assert "Traceback" not in result.output


def test_report_on_a_directory_without_a_log(tmp_path):
    result = runner.invoke(app, ["report", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no event log" in result.output


def _row(scope: str, key: str, reserved: str, window: str = "day"):
    from datetime import UTC, datetime
    from decimal import Decimal

    from api_model_management.budget import BudgetStatus

    return BudgetStatus(scope=scope, key=key, window=window,
                        window_start=datetime(2026, 1, 1, tzinfo=UTC), limit_usd=Decimal("5"),
                        spent_usd=Decimal(0), reserved_usd=Decimal(reserved), share=0.0)


def test_the_demo_counts_each_budget_hold_once_not_once_per_limit_covering_it():
    """A hold is in the global row and in its agent type's (and in each window's): the demo
    used to print the rows' sum, twice what was held."""
    from decimal import Decimal

    from api_model_management.cli._demo import held_usd

    rows = [_row("global", "*", "0.0030878"), _row("global", "*", "0.0030878", window="month"),
            _row("agent_type", "research", "0.0006"), _row("agent_type", "reviewer", "0.0024878")]
    assert held_usd(rows) == Decimal("0.0030878")
    assert held_usd([_row("agent_type", "research", "0.0006"),
                     _row("agent_type", "reviewer", "0.0024878")]) == Decimal("0.0024878")
    assert held_usd([_row("global", "*", "0")]) == 0
    assert held_usd([]) is None
