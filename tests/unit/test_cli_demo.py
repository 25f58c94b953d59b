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
