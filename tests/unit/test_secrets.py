"""API keys from the environment / .env as SecretStr, log redaction, and a scan that no key leaks."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management.cli import app
from api_model_management.config._load import config_from_dict, load_config
from api_model_management.config._logging import (
    LEVEL_ENV,
    PACKAGE_LOGGER,
    REDACTED,
    RedactingFilter,
    configure_logging,
    redact,
    redaction_filter,
)
from api_model_management.config._secrets import load_secrets
from api_model_management.errors import ConfigError, ProviderError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "config" / "model_registry.json"

OPENAI_KEY = "sk-proj-Zq7AbCdEfGhIjKlMnOpQrStUvWx0123456789"
ANTHROPIC_KEY = "sk-ant-api03-QwErTyUiOpAsDfGhJkLzXcVbNm-0987654321"
GOOGLE_KEY = "AIzaSyD-4f6a9B2c8E1g7H3j5K0lMnOpQrStUvW"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY)


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """Tests change the package logger; put its handlers, filters and level back afterwards."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    saved = (list(logger.handlers), list(logger.filters), logger.level)
    yield
    logger.handlers[:], logger.filters[:] = saved[0], saved[1]
    logger.setLevel(saved[2])


@pytest.fixture
def config():
    return load_config(REAL)


# --------------------------------------------------------------------------------------------
# load_secrets


def test_keys_from_environment(config) -> None:
    secrets = load_secrets(config, env={"OPENAI_API_KEY": OPENAI_KEY}, dotenv_path=None)
    key = secrets.key_for("openai")
    assert key is not None and key.get_secret_value() == OPENAI_KEY
    assert secrets.availability("openai") == (True, "key from OPENAI_API_KEY (environment)")
    available, reason = secrets.availability("anthropic")
    assert not available and "ANTHROPIC_API_KEY" in reason and "not set" in reason
    assert secrets.key_for("anthropic") is None


def test_keys_from_dotenv_and_environment_wins(config, tmp_path: Path) -> None:
    dotenv = tmp_path / "keys.env"
    dotenv.write_text(f"OPENAI_API_KEY=from-dotenv-value\nANTHROPIC_API_KEY={ANTHROPIC_KEY}\n")
    before = dict(os.environ)
    secrets = load_secrets(config, env={"OPENAI_API_KEY": OPENAI_KEY}, dotenv_path=dotenv)
    assert dict(os.environ) == before  # the process environment is never changed
    assert secrets.key_for("openai").get_secret_value() == OPENAI_KEY
    assert secrets.key_for("anthropic").get_secret_value() == ANTHROPIC_KEY
    assert secrets.availability("anthropic").reason == "key from ANTHROPIC_API_KEY (.env)"


def test_default_dotenv_is_read_from_the_working_directory(config, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".env").write_text(f"GOOGLE_API_KEY={GOOGLE_KEY}\n")
    monkeypatch.chdir(tmp_path)
    secrets = load_secrets(config, env={})
    assert secrets.key_for("google").get_secret_value() == GOOGLE_KEY


def test_missing_explicit_dotenv_is_an_error(config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_secrets(config, env={}, dotenv_path=tmp_path / "nope.env")


def test_empty_key_is_unavailable(config) -> None:
    secrets = load_secrets(config, env={"OPENAI_API_KEY": "  "})
    assert secrets.availability("openai") == (False, "OPENAI_API_KEY (environment) is set but empty")


def test_gemini_api_key_is_an_alternative_for_google(config) -> None:
    secrets = load_secrets(config, env={"GEMINI_API_KEY": GOOGLE_KEY})
    assert secrets.key_for("google").get_secret_value() == GOOGLE_KEY
    assert "GEMINI_API_KEY" in secrets.availability("google").reason
    none = load_secrets(config, env={})
    assert "GOOGLE_API_KEY or GEMINI_API_KEY" in none.availability("google").reason


def test_ollama_needs_no_key_and_unknown_provider_is_unavailable(config) -> None:
    secrets = load_secrets(config, env={})
    assert secrets.availability("ollama") == (True, "no API key needed")
    assert secrets.key_for("ollama") is None
    assert secrets.availability("azure").available is False


def test_secrets_pickle_round_trip_keeps_keys_and_hides_them(config) -> None:
    secrets = load_secrets(config, env={"OPENAI_API_KEY": OPENAI_KEY})
    clone = pickle.loads(pickle.dumps(secrets))
    assert clone.key_for("openai").get_secret_value() == OPENAI_KEY
    assert clone.availability("anthropic") == secrets.availability("anthropic")
    assert OPENAI_KEY not in repr(clone) and "openai=set" in repr(clone)


# --------------------------------------------------------------------------------------------
# redaction and log level


@pytest.mark.parametrize(
    "text",
    [
        f"calling with {OPENAI_KEY}",
        f"key={ANTHROPIC_KEY}!",
        f"google {GOOGLE_KEY} done",
        "Authorization: Bearer abc.DEF-123_xyz",
        "headers {'x-api-key': 'k3y-value-9'}",
        "x-goog-api-key=AnotherValue42",
        "GET /v1beta/models?key=secretvalue123&pageSize=5",
    ],
)
def test_redact_removes_key_shaped_text(text: str) -> None:
    out = redact(text)
    assert REDACTED in out
    for fragment in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, "abc.DEF-123_xyz", "k3y-value-9", "AnotherValue42", "secretvalue123"):
        assert fragment not in out


def test_redact_keeps_ordinary_text_and_removes_registered_secrets() -> None:
    assert redact("task-0123456789 on risk-assessment-report") == "task-0123456789 on risk-assessment-report"
    redactor = RedactingFilter()
    redactor.add_secret("plain-demo-key")
    redactor.add_secret("abc")  # too short to redact by value
    assert redactor.redact("k=plain-demo-key abc") == f"k={REDACTED} abc"


def test_configure_logging_honours_environment(capsys) -> None:
    assert configure_logging(env={LEVEL_ENV: "debug"}) == logging.DEBUG
    assert configure_logging("WARNING", env={}) == logging.WARNING
    assert logging.getLogger(PACKAGE_LOGGER).level == logging.WARNING
    consoles = [h for h in logging.getLogger(PACKAGE_LOGGER).handlers if getattr(h, "_amm_console", False)]
    assert len(consoles) == 1  # calling again replaced the handler
    with pytest.raises(ConfigError) as info:
        configure_logging(env={LEVEL_ENV: "LOUD"})
    assert "API_MODEL_LOG_LEVEL='LOUD' is not a log level" in str(info.value)
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in info.value.issues[0].hint


def test_redaction_filter_is_installed_once() -> None:
    assert redaction_filter() is redaction_filter()
    logger = logging.getLogger(PACKAGE_LOGGER)
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1


# --------------------------------------------------------------------------------------------
# the scan: set real-looking keys everywhere, exercise everything, find none of them in any output


def test_no_key_appears_in_logs_reprs_errors_or_cli_output(tmp_path: Path, monkeypatch, caplog, capsys) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"ANTHROPIC_API_KEY={ANTHROPIC_KEY}\nGOOGLE_API_KEY={GOOGLE_KEY}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv(LEVEL_ENV, "DEBUG")
    texts: list[str] = []

    config = load_config(REAL)
    secrets = load_secrets(config)
    assert all(secrets.availability(p).available for p in config.providers)
    configure_logging()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="api_model_management")  # whatever an entry point set
    log = logging.getLogger(f"{PACKAGE_LOGGER}.providers.openai")
    for key in KEYS:
        log.debug("sending with key %s", key)
        log.info("headers=%r", {"Authorization": f"Bearer {key}", "x-api-key": key})
        log.warning(f"raw {key} in an f-string")
    logging.getLogger(PACKAGE_LOGGER).error("direct on the package logger: %s", OPENAI_KEY)
    try:
        raise ProviderError(f"upstream said: bad key {ANTHROPIC_KEY}", provider="anthropic", http_status=401)
    except ProviderError:
        log.exception("call failed")
    # Registered by value: even a key without a recognisable shape is redacted.
    plain = load_secrets(config_from_dict(_with_env(config, "PLAIN_KEY")), env={"PLAIN_KEY": "opaque-token-77"})
    log.info("plain %s", plain.key_for("openai").get_secret_value())

    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [repr(secrets), str(secrets), repr(secrets.key_for("openai")), str(secrets.key_for("google"))]
    texts += [repr(secrets.availability(p)) for p in config.providers]
    texts += [repr(pickle.loads(pickle.dumps(secrets)))]
    with pytest.raises(ConfigError) as info:
        config_from_dict({**config.model_dump(mode="python"), "providers": {"openai": {"type": "openai", "base_url": "https://x", "api_key_env": OPENAI_KEY}}})
    texts += [str(info.value), repr(info.value), repr(info.value.issues), str(pickle.loads(pickle.dumps(info.value)))]
    result = CliRunner().invoke(app, ["config", "validate", str(REAL)])
    assert result.exit_code == 0 and "available" in result.output
    texts += [result.output]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    assert "sending with key" in captured.err  # the console handler did print the lines

    everything = "\n".join(texts)
    for key in (*KEYS, "opaque-token-77"):
        for start in range(0, len(key) - 12):
            assert key[start : start + 12] not in everything, f"a fragment of a key leaked: {key[:6]}..."


def _with_env(config, env_name: str) -> dict:
    data = config.model_dump(mode="python")
    data["providers"]["openai"]["api_key_env"] = env_name
    return data
