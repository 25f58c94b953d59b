"""The original system's registry file as written (a ``models`` list, no ``providers``): built-in
providers located by the official SDKs' variables, and ``amm config validate`` saying which it
applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management import ModelRegistry
from api_model_management.cli import app
from api_model_management.config import BUILTIN_PROVIDERS, load_secrets, read_config
from api_model_management.config._load import config_from_dict, load_config, override
from api_model_management.errors import ConfigError

pytestmark = pytest.mark.unit

#: The model of the original README's "Configure models in config/model_registry.json", as written.
ORIGINAL_MODEL = {
    "id": "gpt-4-turbo",
    "provider": "openai",
    "name": "GPT-4 Turbo",
    "capabilities": ["text-generation", "code-generation", "analysis"],
    "cost_per_1k_input_tokens": 0.01,
    "cost_per_1k_output_tokens": 0.03,
    "rate_limits": {"requests_per_minute": 500, "tokens_per_minute": 150000},
    "context_window": 128000,
    "average_response_time_ms": 2000,
    "enabled": True,
}
#: Every variable the defaults read, unset (as an empty environment would have them).
NO_VARIABLES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout


def original(*providers: str) -> dict:
    models = [ORIGINAL_MODEL]
    for provider in providers:
        models.append({**ORIGINAL_MODEL, "id": f"{provider}-model", "provider": provider})
    return {"models": models}


def write(tmp_path: Path, data: dict, name: str = "model_registry.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), "utf-8")
    return path


def test_the_original_file_gets_the_official_openai_provider(tmp_path):
    loaded = read_config(write(tmp_path, original()), env=NO_VARIABLES)

    provider = loaded.config.providers["openai"]
    assert (provider.type, provider.base_url, provider.api_key_env) == (
        "openai", "https://api.openai.com/v1", "OPENAI_API_KEY")
    assert list(loaded.config.providers) == ["openai"]  # only what the models name
    (default,) = loaded.provider_defaults
    assert str(default) == "openai: https://api.openai.com/v1 (built in), key from OPENAI_API_KEY"
    assert loaded.config.provider_of("gpt-4-turbo") is provider


def test_each_builtin_provider_has_its_official_url_and_key_variable():
    config = config_from_dict(original("anthropic", "google", "ollama"), env=NO_VARIABLES)

    assert {name: (p.base_url, p.api_key_env) for name, p in config.providers.items()} == {
        "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
        "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        "google": ("https://generativelanguage.googleapis.com", "GOOGLE_API_KEY"),
        "ollama": ("http://localhost:11434", None),
    }
    assert set(BUILTIN_PROVIDERS) == set(config.providers)


@pytest.mark.parametrize(("provider", "env", "url"), [
    ("openai", {"OPENAI_BASE_URL": "http://127.0.0.1:8765/v1/"}, "http://127.0.0.1:8765/v1"),
    ("anthropic", {"ANTHROPIC_BASE_URL": "https://proxy.example/anthropic"},
     "https://proxy.example/anthropic"),
    ("ollama", {"OLLAMA_BASE_URL": "http://gpu-box:11434"}, "http://gpu-box:11434"),
    ("ollama", {"OLLAMA_HOST": "gpu-box"}, "http://gpu-box:11434"),
    ("ollama", {"OLLAMA_HOST": "gpu-box:9999"}, "http://gpu-box:9999"),
    ("ollama", {"OLLAMA_HOST": "https://ollama.example"}, "https://ollama.example"),
    ("ollama", {"OLLAMA_HOST": "gpu-box", "OLLAMA_BASE_URL": "http://other:1"}, "http://other:1"),
])
def test_the_sdk_variables_move_a_builtin_provider(provider, env, url):
    loaded = read_config(_file_with(provider), env=env)

    assert loaded.config.providers[provider].base_url == url
    (variable,) = [v for v in BUILTIN_PROVIDERS[provider].url_envs if v in env][:1]
    assert f"({variable} in the environment)" in str(loaded.provider_defaults[-1])


def _file_with(provider: str) -> Path:
    data = {"models": [{**ORIGINAL_MODEL, "id": "m", "provider": provider}]}
    return write(Path.cwd(), data)


def test_dotenv_is_read_after_the_environment(tmp_path):
    dotenv = tmp_path / "custom.env"
    dotenv.write_text("OPENAI_BASE_URL=http://from-dotenv:1/v1\n", "utf-8")
    path = write(tmp_path, original())

    from_file = read_config(path, env=NO_VARIABLES, dotenv_path=dotenv)
    assert from_file.config.providers["openai"].base_url == "http://from-dotenv:1/v1"
    assert "OPENAI_BASE_URL in .env" in str(from_file.provider_defaults[0])
    environment_wins = load_config(path, env={"OPENAI_BASE_URL": "http://from-env:2/v1"},
                                   dotenv_path=dotenv)
    assert environment_wins.providers["openai"].base_url == "http://from-env:2/v1"

    (tmp_path / ".env").write_text("OPENAI_BASE_URL=http://default-dotenv:3/v1\n", "utf-8")
    assert load_config(path, env=NO_VARIABLES).providers["openai"].base_url == (
        "http://default-dotenv:3/v1")  # ./.env by default, as for the keys


def test_a_provider_the_file_defines_is_never_changed():
    data = {**original("anthropic"), "providers": {
        "openai": {"type": "openai", "base_url": "http://mine:1/v1", "api_key_env": "MY_KEY"}}}

    loaded = read_config(write(Path.cwd(), data), env={"OPENAI_BASE_URL": "http://elsewhere/v1"})

    assert loaded.config.providers["openai"].base_url == "http://mine:1/v1"
    assert loaded.config.providers["openai"].api_key_env == "MY_KEY"
    assert [d.name for d in loaded.provider_defaults] == ["anthropic"]


def test_a_copy_keeps_the_providers_the_loader_added():
    config = config_from_dict(original(), env={"OPENAI_BASE_URL": "http://a:1/v1"})
    copy = override(config, settings={"store_prompts": True})
    assert copy.providers == config.providers


@pytest.mark.parametrize("value", ["sk-not-a-url-0123456789", "ftp://host/v1", "https:///no-host", "http://h:x"])
def test_a_variable_that_is_not_a_url_is_one_problem_naming_the_variable(value):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(original(), env={"OPENAI_BASE_URL": value})

    (issue,) = caught.value.issues
    assert issue.path == "providers.openai.base_url"
    assert "OPENAI_BASE_URL in the environment is not an http:// or https:// URL" in issue.message
    assert value not in str(caught.value)


def test_an_unknown_provider_in_a_file_without_providers_is_a_problem():
    data = {"models": [{**ORIGINAL_MODEL, "provider": "opneai"}]}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env=NO_VARIABLES)
    (issue,) = caught.value.issues
    assert issue.path == "models[0].provider"
    assert "unknown provider 'opneai'" in issue.message and "openai" in issue.hint


def test_the_keys_of_builtin_providers_come_from_the_official_variables():
    config = config_from_dict(original("google", "ollama"), env=NO_VARIABLES)
    secrets = load_secrets(config, env={"OPENAI_API_KEY": "sk-test-openai-1234",
                                        "GEMINI_API_KEY": "gemini-test-5678"})

    assert secrets.key_for("openai").get_secret_value() == "sk-test-openai-1234"
    assert secrets.key_for("google").get_secret_value() == "gemini-test-5678"
    assert secrets.availability("ollama").available
    assert "sk-test" not in repr(secrets)


def test_the_registry_facade_reads_the_original_file(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    (tmp_path / "config").mkdir()
    registry = ModelRegistry(write(tmp_path / "config", original()))
    registry.load_config()
    assert registry.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert registry.get_model("gpt-4-turbo").provider == "openai"


# ---------------------------------------------------------------------------------------------
# amm config validate


def run(*args: str, env: dict[str, str]):
    return CliRunner().invoke(app, list(args), env=env)


def test_validate_says_which_defaults_it_applied(tmp_path):
    path = write(tmp_path, original("ollama"))
    result = run("config", "validate", str(path),
                 env={"OPENAI_BASE_URL": "http://127.0.0.1:8765/v1", "OPENAI_API_KEY": "sk-test-4321",
                      "OLLAMA_BASE_URL": "", "OLLAMA_HOST": ""})

    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("default provider")]
    assert lines == [
        "default provider applied (not defined in the file): openai: http://127.0.0.1:8765/v1 "
        "(OPENAI_BASE_URL in the environment), key from OPENAI_API_KEY",
        "default provider applied (not defined in the file): ollama: http://localhost:11434 "
        "(built in), no key",
    ]
    assert "openai: available (key from OPENAI_API_KEY" in result.stdout
    assert "sk-test-4321" not in result.output


def test_validate_of_a_file_with_providers_applies_no_default(tmp_path):
    data = {**original(), "providers": {
        "openai": {"type": "openai", "base_url": "http://mine:1/v1", "api_key_env": "MY_KEY"}}}
    result = run("config", "validate", str(write(tmp_path, data)), env={})
    assert result.exit_code == 0, result.output
    assert "default provider" not in result.output


def test_validate_refuses_a_base_url_variable_that_is_not_a_url(tmp_path):
    result = run("config", "validate", str(write(tmp_path, original())),
                 env={"OPENAI_BASE_URL": "not a url"})
    assert result.exit_code == 2
    assert "providers.openai.base_url: OPENAI_BASE_URL in the environment is not" in result.output
    assert "not a url" not in result.output
