"""ModelRegistry: the original facade over the validated configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api_model_management.compat import ModelRegistry
from api_model_management.config._load import load_config
from api_model_management.errors import ConfigError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "config" / "model_registry.json"


@pytest.fixture
def registry() -> ModelRegistry:
    registry = ModelRegistry(REAL)
    registry.load_config()
    return registry


def test_load_config_returns_and_keeps_the_config(registry: ModelRegistry) -> None:
    assert registry.config == load_config(REAL)
    assert registry.load_config() == registry.config
    assert set(registry.providers) == {"openai", "anthropic", "google", "ollama"}
    assert registry.settings == registry.config.settings


def test_get_model(registry: ModelRegistry) -> None:
    model = registry.get_model("claude-haiku-4-5")
    assert model is not None and model.provider == "anthropic"
    assert registry.get_model("gpt-9") is None


def test_list_models_filters(registry: ModelRegistry) -> None:
    all_enabled = registry.list_models()
    assert all(m.enabled for m in all_enabled)
    everything = registry.list_models(enabled_only=False)
    disabled = {m.id for m in everything} - {m.id for m in all_enabled}
    assert disabled == {"claude-opus-4-1"}
    ollama = registry.list_models(provider="ollama")
    assert {m.id for m in ollama} == {"llama3.2", "qwen2.5", "mistral"}
    coders = registry.list_models(capability="code-generation", provider="ollama")
    assert [m.id for m in coders] == ["qwen2.5"]
    both = registry.list_models(capability=["reasoning", "vision"])
    assert both and all({"reasoning", "vision"} <= set(m.capabilities) for m in both)
    assert registry.list_models(capability="teleportation") == []
    assert [m.id for m in everything] == [m.id for m in registry.config.models]  # file order


def test_config_is_read_on_first_use_without_load_config() -> None:
    assert len(ModelRegistry(str(REAL)).config.models) == len(load_config(REAL).models)


def test_from_config() -> None:
    config = load_config(REAL)
    registry = ModelRegistry.from_config(config)
    assert registry.load_config() is config
    assert registry.reload() is config
    with pytest.raises(ValueError):
        ModelRegistry()


def test_reload_picks_up_changes_and_keeps_old_config_when_invalid(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    data = json.loads(REAL.read_text())
    path.write_text(json.dumps(data))
    registry = ModelRegistry(path)
    registry.load_config()
    data["models"][0]["enabled"] = False
    path.write_text(json.dumps(data))
    assert registry.reload().models[0].enabled is False
    path.write_text('{"models": [')
    with pytest.raises(ConfigError):
        registry.reload()
    assert registry.config.models[0].enabled is False  # the last good configuration is kept


def test_load_config_of_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ModelRegistry(tmp_path / "absent.json").load_config()
    assert info.value.issues[0].path == "$"
