"""`amm config validate` and `amm config schema` through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management.cli import app

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "config" / "model_registry.json"
DEMO = ROOT / "config" / "demo_registry.json"
NO_KEYS = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "GOOGLE_API_KEY": "", "GEMINI_API_KEY": ""}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_validate_real_registry_summary() -> None:
    result = run("config", "validate", str(REAL), env={**NO_KEYS, "OPENAI_API_KEY": "sk-test-0123456789abcdef"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "valid (version 1, updated 2026-11-26)" in out
    assert "17 models, 16 enabled" in out
    assert "openai: available (key from OPENAI_API_KEY (environment))" in out
    assert "anthropic: unavailable (ANTHROPIC_API_KEY (environment) is set but empty)" in out
    assert "ollama: available (no API key needed)" in out
    assert "research" in out and "global" in out
    assert "sk-test-0123456789abcdef" not in result.output


def test_validate_demo_registry_names_demo_key_variables() -> None:
    result = run("config", "validate", str(DEMO), env={"AMM_DEMO_OPENAI_KEY": "anything"})
    assert result.exit_code == 0, result.output
    assert "openai: available" in result.stdout
    assert "AMM_DEMO_GOOGLE_KEY is not set" in result.stdout


def test_validate_lists_every_error_with_path_and_exits_2(tmp_path: Path) -> None:
    data = json.loads(REAL.read_text())
    data["models"][3]["provider"] = "opnai"
    data["models"][5]["cost_per_1k_input_tokens"] = "-1"
    data["settings"]["selection"]["weights"]["cost"] = 0.9
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = run("config", "validate", str(path))
    assert result.exit_code == 2
    err = result.stderr
    assert "3 problems" in err
    assert "models[3].provider: unknown provider 'opnai' (hint: did you mean 'openai'?)" in err
    assert "models[5].cost_per_1k_input_tokens: Input should be greater than or equal to 0 (hint:" in err
    assert "settings.selection.weights: selection weights must sum to 1" in err
    assert "Traceback" not in result.output


def test_validate_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"models": [\n  {"id": "x" "provider": "openai"}\n]}')
    result = run("config", "validate", str(path))
    assert result.exit_code == 2
    assert "$: invalid JSON at line 2, column 14"  # where the comma is missing in result.stderr


@pytest.mark.parametrize("name", ["absent.json", "."])
def test_validate_unreadable_path_exits_2_without_traceback(name: str, tmp_path: Path) -> None:
    result = run("config", "validate", str(tmp_path / name))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.output


def test_validate_warns_about_unknown_capabilities(tmp_path: Path) -> None:
    data = json.loads(DEMO.read_text())
    data["models"][0]["capabilities"].append("code-gen")
    path = tmp_path / "warn.json"
    path.write_text(json.dumps(data))
    result = run("config", "validate", str(path))
    assert result.exit_code == 0
    assert "warning: models[0].capabilities[" in result.stderr
    assert "did you mean 'code-generation'?" in result.stderr


def test_schema_prints_the_json_schema() -> None:
    result = run("config", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "RegistryConfig"
    assert {"models", "providers", "settings"} <= set(schema["properties"])
    assert "ModelConfig" in schema["$defs"]
