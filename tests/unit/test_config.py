"""Loading and validating the registry: every class of bad configuration names its JSON path."""

from __future__ import annotations

import copy
import json
import pickle
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from api_model_management.config import RegistryConfig
from api_model_management.config._load import (
    CAPABILITIES,
    ConfigIssue,
    config_from_dict,
    config_warnings,
    demo_config,
    load_config,
    override,
    with_emulator_port,
    with_provider_base_urls,
)
from api_model_management.errors import ConfigError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "config" / "model_registry.json"
DEMO = ROOT / "config" / "demo_registry.json"
PACKAGED_DEMO = ROOT / "api_model_management" / "_data" / "demo_registry.json"


def _model(model_id: str, provider: str = "openai", **extra) -> dict:
    return {
        "id": model_id,
        "provider": provider,
        "name": model_id.upper(),
        "capabilities": ["text-generation"],
        "cost_per_1k_input_tokens": "0.001",
        "cost_per_1k_output_tokens": "0.002",
        "rate_limits": {"requests_per_minute": 60, "tokens_per_minute": 10000},
        "context_window": 8000,
        "average_response_time_ms": 500,
        **extra,
    }


def valid_data() -> dict:
    return {
        "models": [_model("m0"), _model("m1", "anthropic"), _model("m2")],
        "providers": {
            "openai": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"},
            "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "api_key_env": "ANTHROPIC_API_KEY"},
        },
        "settings": {"budgets": {"limits": [{"scope": "global", "window": "day", "limit_usd": "10"}]}},
    }


def issues_of(data: dict) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return info.value.issues


def only_issue(data: dict) -> ConfigIssue:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


# --------------------------------------------------------------------------------------------
# shipped registries


def test_valid_data_loads() -> None:
    config = config_from_dict(valid_data())
    assert [m.id for m in config.models] == ["m0", "m1", "m2"]


@pytest.mark.parametrize("path", [REAL, DEMO, PACKAGED_DEMO])
def test_shipped_registries_load_without_warnings(path: Path) -> None:
    config = load_config(path)
    assert config.updated and config.updated.startswith("2026-11")
    assert config_warnings(config) == []
    assert {p.type for p in config.providers.values()} == {"openai", "anthropic", "google", "ollama"}


def test_packaged_demo_registry_is_identical_to_config_copy() -> None:
    assert PACKAGED_DEMO.read_bytes() == DEMO.read_bytes()
    assert demo_config() == load_config(DEMO)


def test_real_registry_providers_and_prices() -> None:
    config = load_config(REAL)
    assert config.providers["openai"].base_url == "https://api.openai.com/v1"
    assert config.providers["anthropic"].api_key_env == "ANTHROPIC_API_KEY"
    assert config.providers["google"].api_key_env == "GOOGLE_API_KEY"
    assert config.providers["ollama"].api_key_env is None
    assert config.providers["ollama"].base_url == "http://localhost:11434"
    gpt4o = config.model("gpt-4o")
    assert gpt4o.cost_per_1k_input_tokens == Decimal("0.0025")
    assert gpt4o.cost_per_1k_output_tokens == Decimal("0.01")
    assert all(m.cost_per_1k_input_tokens == 0 for m in config.models if m.provider == "ollama")
    assert {"research", "coder", "reviewer", "planner"} <= {
        limit.key for limit in config.settings.budgets.limits if limit.scope == "agent_type"
    }


def test_demo_registry_shape() -> None:
    config = load_config(DEMO)
    assert len(config.models) == 12
    per_provider = {name: sum(m.provider == name for m in config.models) for name in config.providers}
    assert per_provider == {"openai": 3, "anthropic": 3, "google": 3, "ollama": 3}
    assert all(p.base_url.startswith("http://127.0.0.1:8765") for p in config.providers.values())
    assert config.providers["openai"].base_url.endswith("/v1")
    assert min(m.rate_limits.requests_per_minute for m in config.models) <= 30
    assert {"research", "coder", "reviewer", "planner"} == {
        limit.key for limit in config.settings.budgets.limits if limit.scope == "agent_type"
    }
    assert any(limit.scope == "global" for limit in config.settings.budgets.limits)
    assert config.settings.store_prompts is False and config.settings.data_dir == "./data"
    assert config.providers["openai"].api_key_env == "AMM_DEMO_OPENAI_KEY"


def test_shipped_capabilities_use_the_vocabulary() -> None:
    used = {c for path in (REAL, DEMO) for m in load_config(path).models for c in m.capabilities}
    assert used <= CAPABILITIES


# --------------------------------------------------------------------------------------------
# each class of bad configuration, with its exact path


def _set(data: dict, dotted: str, value) -> dict:
    """Copy of ``data`` with the value at a dotted path (integers index lists) replaced."""
    data = copy.deepcopy(data)
    target = data
    parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    for part in parts[:-1]:
        if isinstance(target, dict):
            target = target.setdefault(part, {})
        else:
            target = target[part]
    target[parts[-1]] = value
    return data


BAD = [
    ("unknown provider", "models.1.provider", "opnai", "models[1].provider", "unknown provider 'opnai'"),
    ("negative input price", "models.2.cost_per_1k_input_tokens", "-0.5", "models[2].cost_per_1k_input_tokens", "greater than or equal to 0"),
    ("negative output price", "models.0.cost_per_1k_output_tokens", -1, "models[0].cost_per_1k_output_tokens", "greater than or equal to 0"),
    ("price not a number", "models.0.cost_per_1k_input_tokens", "cheap", "models[0].cost_per_1k_input_tokens", "decimal"),
    ("infinite price", "models.0.cost_per_1k_input_tokens", "Infinity", "models[0].cost_per_1k_input_tokens", "finite"),
    ("zero rpm", "models.2.rate_limits.requests_per_minute", 0, "models[2].rate_limits.requests_per_minute", "greater than 0"),
    ("unknown fallback", "models.0.fallbacks", ["m1", "gpt-9"], "models[0].fallbacks[1]", "unknown model 'gpt-9'"),
    ("self fallback", "models.0.fallbacks", ["m0"], "models[0].fallbacks[0]", "itself"),
    ("thresholds out of order", "settings.budgets.alert_thresholds", [0.8, 0.5, 1.0], "settings.budgets.alert_thresholds", "ascending"),
    ("threshold out of range", "settings.budgets.alert_thresholds", [0.5, 2.0], "settings.budgets.alert_thresholds", "(0, 1.5]"),
    (
        "selection weights",
        "settings.selection.weights",
        {"capability": 0.5, "cost": 0.5, "performance": 0.25, "availability": 0.2},
        "settings.selection.weights",
        "sum to 1",
    ),
    ("agent weights", "settings.selection.agent_weights", {"coder": {"capability": 0.9}}, "settings.selection.agent_weights.coder", "sum to 1"),
    ("quality weights", "settings.quality.weights", {"completeness": 0.9}, "settings.quality.weights", "sum to 1"),
    ("budget unknown provider", "settings.budgets.limits.0", {"scope": "provider", "key": "gogle", "limit_usd": 1}, "settings.budgets.limits[0].key", "unknown provider 'gogle'"),
    ("budget unknown model", "settings.budgets.limits.0", {"scope": "model", "key": "m9", "limit_usd": 1}, "settings.budgets.limits[0].key", "unknown model 'm9'"),
    ("zero budget", "settings.budgets.limits.0.limit_usd", 0, "settings.budgets.limits[0].limit_usd", "greater than 0"),
    ("bad window", "settings.budgets.limits.0.window", "week", "settings.budgets.limits[0].window", "'day' or 'month'"),
    ("judge unknown", "settings.quality.judge", {"enabled": True, "model_id": "gpt-judge"}, "settings.quality.judge.model_id", "not a known model"),
    ("bad provider type", "providers.openai.type", "azure", "providers.openai.type", "Input should be"),
    ("bad base url", "providers.anthropic.base_url", "api.anthropic.com", "providers.anthropic.base_url", "http://"),
    ("unknown time zone", "settings.budgets.timezone", "Mars/Olympus", "settings.budgets.timezone", "unknown time zone"),
    ("per-model concurrency unknown", "settings.concurrency.per_model", {"m7": 3}, "settings.concurrency.per_model.m7", "unknown model"),
    ("bad log level", "settings.log_level", "LOUD", "settings.log_level", "Input should be"),
]


@pytest.mark.parametrize(("label", "where", "value", "path", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_configuration_names_the_path(label, where, value, path, text) -> None:
    issue = only_issue(_set(valid_data(), where, value))
    assert issue.path == path
    assert text in issue.message
    assert issue.hint


def test_duplicate_id_points_at_the_second() -> None:
    issue = only_issue(_set(valid_data(), "models.2.id", "m0"))
    assert issue.path == "models[2].id"
    assert "duplicate model id 'm0'" in issue.message and "models[0]" in issue.message


def test_missing_price_is_reported_as_missing() -> None:
    data = valid_data()
    del data["models"][1]["cost_per_1k_output_tokens"]
    issue = only_issue(data)
    assert issue.path == "models[1].cost_per_1k_output_tokens"
    assert issue.message == "Field required"


def test_misspelt_field_gets_a_did_you_mean_hint() -> None:
    data = _set(valid_data(), "models.0.cost_per_1k_input", "0.1")
    issue = only_issue(data)
    assert issue.path == "models[0].cost_per_1k_input"
    assert "cost_per_1k_input_tokens" in issue.hint


def test_provider_names_with_odd_characters_are_quoted_in_paths() -> None:
    data = valid_data()
    data["providers"]["my.proxy"] = {"type": "openai", "base_url": "ftp://x"}
    assert only_issue(data).path == 'providers["my.proxy"].base_url'


def test_api_key_pasted_into_api_key_env_is_not_echoed() -> None:
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX1234"
    with pytest.raises(ConfigError) as info:
        config_from_dict(_set(valid_data(), "providers.openai.api_key_env", key))
    assert [i.path for i in info.value.issues] == ["providers.openai.api_key_env"]
    assert key not in str(info.value) and key not in repr(info.value.issues)
    assert key not in str(pickle.loads(pickle.dumps(info.value)))


def test_every_problem_is_its_own_issue() -> None:
    data = valid_data()
    data["models"][1]["provider"] = "nope"
    data["models"][2]["id"] = "m0"
    data["models"][0]["cost_per_1k_input_tokens"] = -1
    data["models"][0]["fallbacks"] = ["ghost"]
    data["settings"]["quality"] = {"judge": {"enabled": True, "model_id": "ghost"}}
    data["settings"]["selection"] = {"weights": {"capability": 1, "cost": 1, "performance": 0, "availability": 0}}
    paths = {issue.path for issue in issues_of(data)}
    assert paths == {
        "models[1].provider",
        "models[2].id",
        "models[0].cost_per_1k_input_tokens",
        "models[0].fallbacks[0]",
        "settings.quality.judge.model_id",
        "settings.selection.weights",
    }


def test_error_message_lists_each_issue_and_pickles() -> None:
    data = _set(_set(valid_data(), "models.1.provider", "nope"), "models.0.context_window", 0)
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.json")
    text = str(info.value)
    assert "test.json: 2 problems" in text
    assert "models[1].provider: unknown provider 'nope'" in text
    assert "models[0].context_window: Input should be greater than 0" in text
    clone = pickle.loads(pickle.dumps(info.value))
    assert isinstance(clone, ConfigError)
    assert clone.issues == info.value.issues and str(clone) == text


def test_no_models_and_wrong_top_level() -> None:
    assert only_issue({"models": []}).path == "models"
    assert only_issue({"providers": {}}).path == "models"
    assert only_issue([1, 2]).path == "$"  # type: ignore[arg-type]


def test_direct_model_validation_still_runs_cross_checks() -> None:
    with pytest.raises(ValidationError) as info:
        RegistryConfig.model_validate(_set(valid_data(), "models.1.provider", "nope"))
    assert "models[1].provider: unknown provider 'nope'" in str(info.value)


def test_models_without_providers_section_skip_provider_check() -> None:
    data = valid_data()
    del data["providers"]
    assert len(config_from_dict(data).models) == 3


# --------------------------------------------------------------------------------------------
# reading files


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "models": [\n    {"id": "a",}\n  ]\n}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert issue.path == "$"
    assert "line 3, column 16" in issue.message  # the "}" after the trailing comma
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.json")
    assert "file not found" in info.value.issues[0].message


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "directory" in info.value.issues[0].message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"models": "\xe9"}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "UTF-8" in info.value.issues[0].message


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read a file without read permission")
    path = tmp_path / "locked.json"
    path.write_text(json.dumps(valid_data()))
    path.chmod(0)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "permission denied" in info.value.issues[0].message


def test_prices_are_exact_decimals_from_numbers_and_strings(tmp_path: Path) -> None:
    data = valid_data()
    data["models"][0]["cost_per_1k_input_tokens"] = 0.0001
    data["models"][0]["cost_per_1k_output_tokens"] = "0.1"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    model = load_config(path).models[0]
    assert model.cost_per_1k_input_tokens == Decimal("0.0001")
    assert model.cost_per_1k_output_tokens == Decimal("0.1")


# --------------------------------------------------------------------------------------------
# copies


def test_override_merges_and_revalidates() -> None:
    config = config_from_dict(valid_data())
    changed = override(config, settings={"store_prompts": True, "budgets": {"enforcement": "best_effort"}})
    assert changed.settings.store_prompts is True
    assert changed.settings.budgets.enforcement == "best_effort"
    assert changed.settings.budgets.limits == config.settings.budgets.limits
    assert config.settings.store_prompts is False
    with pytest.raises(ConfigError) as info:
        override(config, settings={"selection": {"weights": {"cost": 0.9}}})
    assert info.value.issues[0].path == "settings.selection.weights"


def test_with_provider_base_urls_and_emulator_port() -> None:
    config = config_from_dict(valid_data())
    moved = with_provider_base_urls(config, {"openai": "http://127.0.0.1:9999/v1/"})
    assert moved.providers["openai"].base_url == "http://127.0.0.1:9999/v1"
    assert moved.providers["anthropic"] == config.providers["anthropic"]
    with pytest.raises(ConfigError) as info:
        with_provider_base_urls(config, {"azure": "http://127.0.0.1:1"})
    assert info.value.issues[0].path == "providers.azure"
    demo = with_emulator_port(load_config(DEMO), 40123)
    assert demo.providers["openai"].base_url == "http://127.0.0.1:40123/v1"
    assert demo.providers["google"].base_url == "http://127.0.0.1:40123"


def test_warnings_for_unknown_capability() -> None:
    data = _set(valid_data(), "models.1.capabilities", ["text-generation", "code-gen"])
    (warning,) = config_warnings(config_from_dict(data))
    assert warning.path == "models[1].capabilities[1]"
    assert "code-generation" in warning.hint


def test_config_readme_example_runs(monkeypatch) -> None:
    import re

    monkeypatch.chdir(ROOT)
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "config" / "README.md").read_text(), re.S)
    namespace: dict = {}
    exec(compile(code, "config/README.md", "exec"), namespace)
    assert namespace["debug"].settings.log_level == "DEBUG"
    assert namespace["demo"].providers["openai"].base_url == "http://127.0.0.1:9000/v1"


def test_a_per_key_budget_is_valid_and_applies_to_each_key_separately():
    """One answer to "which limits apply": ``key: "*"`` on a non-global scope is one limit per
    key, for validation as for the ledger and the routers (budget.applicable_limits)."""
    from api_model_management.budget import SpendKey, applicable_limits

    data = valid_data()
    data["settings"]["budgets"]["limits"] = [{"scope": "agent_type", "limit_usd": 1}]
    config = config_from_dict(data)
    (limit,) = config.settings.budgets.limits
    research = list(applicable_limits([limit], SpendKey("openai", "m0", "research")))
    coder = list(applicable_limits([limit], SpendKey("openai", "m0", "coder")))
    assert research == [(limit, "research")] and coder == [(limit, "coder")]
    assert list(applicable_limits([limit], SpendKey("openai", "m0", None))) == []
