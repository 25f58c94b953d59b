"""The log level (``API_MODEL_LOG_LEVEL`` over ``settings.log_level`` over INFO) applied where the
package is entered: the level helpers, the in-process facades and every ``amm`` command.
``ModelManagement.start`` and the actors are checked in tests/integration/test_logging_actors.py."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management import compat
from api_model_management.cli import app
from api_model_management.config import load_config, override
from api_model_management.config._logging import (
    LEVEL_ENV,
    PACKAGE_LOGGER,
    configure_actor_logging,
    configure_logging,
    configure_logging_for,
    effective_level,
    with_effective_log_level,
)
from api_model_management.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo_registry.json"
PACKAGE = logging.getLogger(PACKAGE_LOGGER)


@pytest.fixture
def at(monkeypatch):
    """A demo configuration whose ``settings.log_level`` is the given name; the process's
    ``API_MODEL_LOG_LEVEL`` unset."""
    monkeypatch.delenv(LEVEL_ENV, raising=False)

    def make(level: str):
        return override(load_config(DEMO), settings={"log_level": level})

    return make


def consoles() -> list[logging.Handler]:
    return [h for h in PACKAGE.handlers if getattr(h, "_amm_console", False)]


# -- the rule ------------------------------------------------------------------------------------


def test_the_environment_wins_over_the_setting_which_wins_over_info() -> None:
    assert effective_level("WARNING", env={LEVEL_ENV: "debug"}) == "DEBUG"
    assert effective_level("WARNING", env={LEVEL_ENV: "  "}) == "WARNING"  # blank: not set
    assert effective_level("error", env={}) == "ERROR"
    assert effective_level(None, env={}) == "INFO"


def test_a_bad_level_names_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match="API_MODEL_LOG_LEVEL='LOUD' is not a log level"):
        effective_level("INFO", env={LEVEL_ENV: "LOUD"})
    with pytest.raises(ConfigError, match="log_level='LOUD' is not a log level"):
        effective_level("LOUD", env={})


def test_configure_logging_for_a_configuration(at, monkeypatch) -> None:
    config = at("ERROR")
    assert configure_logging_for(config) == logging.ERROR
    assert PACKAGE.level == logging.ERROR and len(consoles()) == 1
    monkeypatch.setenv(LEVEL_ENV, "DEBUG")
    assert configure_logging_for(config) == logging.DEBUG
    assert configure_logging_for(config, env={}) == logging.ERROR  # an explicit environment
    assert configure_logging_for(None, env={}) == logging.INFO
    assert len(consoles()) == 1


def test_actors_get_the_level_in_effect_and_ignore_their_own_environment(at, monkeypatch) -> None:
    config = at("WARNING")
    assert with_effective_log_level(config, env={}) is config
    resolved = with_effective_log_level(config, env={LEVEL_ENV: "debug"})
    assert resolved.settings.log_level == "DEBUG" and config.settings.log_level == "WARNING"
    assert resolved.models == config.models
    monkeypatch.setenv(LEVEL_ENV, "CRITICAL")  # a worker's environment: not consulted
    assert configure_actor_logging(resolved) == logging.DEBUG
    assert PACKAGE.level == logging.DEBUG


def test_the_console_writes_to_the_stderr_of_the_moment_redacted(capsys) -> None:
    configure_logging("INFO", env={})
    logging.getLogger(f"{PACKAGE_LOGGER}.somewhere").info("sent with sk-abcdefghijklmnopqrstuv")
    logging.getLogger(f"{PACKAGE_LOGGER}.somewhere").debug("below the level")
    err = capsys.readouterr().err
    assert "INFO api_model_management.somewhere: sent with [REDACTED]" in err
    assert "abcdefghijklmnop" not in err and "below the level" not in err


# -- the facades ---------------------------------------------------------------------------------


def _level_only() -> dict[str, str]:
    """The environment given to the facades that take one (for keys, and the level): the
    process's API_MODEL_LOG_LEVEL and nothing else."""
    return {LEVEL_ENV: os.environ[LEVEL_ENV]} if LEVEL_ENV in os.environ else {}


FACADES = {
    "HealthChecker": lambda c: compat.HealthChecker(c, env=_level_only()),
    "RateLimiter": lambda c: compat.RateLimiter(c),
    "ModelSelector": lambda c: compat.ModelSelector(c),
    "CacheManager": lambda c: compat.CacheManager(c),
    "CostTracker": lambda c: compat.CostTracker(c),
    "FailoverManager": lambda c: compat.FailoverManager(c, env=_level_only()),
}


@pytest.mark.parametrize("name", sorted(FACADES))
def test_each_facade_logs_at_the_configured_level(name, at, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # FailoverManager's log and spool: under tmp_path
    config = override(at("ERROR"), settings={"data_dir": str(tmp_path / "data")})
    PACKAGE.setLevel(logging.NOTSET)
    FACADES[name](config)
    assert PACKAGE.level == logging.ERROR and len(consoles()) == 1
    monkeypatch.setenv(LEVEL_ENV, "DEBUG")
    FACADES[name](config)
    assert PACKAGE.level == logging.DEBUG


def test_a_cache_manager_without_configuration_logs_at_the_environment_level(monkeypatch) -> None:
    monkeypatch.setenv(LEVEL_ENV, "WARNING")
    compat.CacheManager()
    assert PACKAGE.level == logging.WARNING


# -- the command line ----------------------------------------------------------------------------


def run(*args: str, env: dict[str, str | None] | None = None):
    return CliRunner().invoke(app, list(args), env={LEVEL_ENV: None, **(env or {})})


@pytest.mark.parametrize("command", [
    ("config", "schema"),
    ("config", "validate", str(DEMO)),
    ("query", "SELECT 1 AS one", "--data-dir", "."),
    ("replay", "--weights", "absent.json", "--data-dir", "."),
    ("calibrate", "--labels", "absent.jsonl"),
])
def test_every_command_applies_the_environment_level(command, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events").mkdir()
    PACKAGE.setLevel(logging.NOTSET)
    run(*command, env={LEVEL_ENV: "debug"})
    assert PACKAGE.level == logging.DEBUG
    logging.getLogger(f"{PACKAGE_LOGGER}.cli").debug("a debug line")
    assert "DEBUG api_model_management.cli: a debug line" in capsys.readouterr().err
    run(*command)
    assert PACKAGE.level == logging.INFO


def test_the_environment_level_quietens_a_command(tmp_path, capsys) -> None:
    run("config", "schema", env={LEVEL_ENV: "ERROR"})
    logging.getLogger(f"{PACKAGE_LOGGER}.cli").warning("a warning")
    assert "a warning" not in capsys.readouterr().err


def test_a_bad_environment_level_is_one_line_and_exit_2() -> None:
    result = run("config", "schema", env={LEVEL_ENV: "LOUD"})
    assert result.exit_code == 2
    assert result.stderr == ("error: API_MODEL_LOG_LEVEL='LOUD' is not a log level (hint: use one "
                             "of DEBUG, INFO, WARNING, ERROR, CRITICAL)\n")
    assert result.stdout == ""


def test_report_applies_its_registry_level_unless_the_environment_says(tmp_path) -> None:
    registry = json.loads(DEMO.read_text())
    registry["settings"]["log_level"] = "ERROR"
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(registry))
    (tmp_path / "data" / "events").mkdir(parents=True)
    args = ("report", "--data-dir", str(tmp_path / "data"), "--config", str(path), "--format", "json")
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert PACKAGE.level == logging.ERROR
    result = run(*args, env={LEVEL_ENV: "DEBUG"})
    assert result.exit_code == 0, result.output
    assert PACKAGE.level == logging.DEBUG


def test_version() -> None:
    from api_model_management import __version__

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"api-model-management {__version__}\n"
    assert run("--version", env={LEVEL_ENV: "LOUD"}).exit_code == 0  # eager: before logging
