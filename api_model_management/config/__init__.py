"""Typed, validated configuration: the schema, loading and overrides, secrets from the
environment, and logging (level and redaction).

    config = load_config("config/model_registry.json")     # ConfigError lists every problem
    config = override(config, settings={"data_dir": "/tmp/amm"})
    secrets = load_secrets(config)                          # API keys as SecretStr, never logged
"""

from ._defaults import BUILTIN_PROVIDERS, ProviderDefault
from ._load import (
    ConfigIssue,
    LoadedConfig,
    config_from_dict,
    config_warnings,
    demo_config,
    load_config,
    override,
    read_config,
    with_emulator_port,
    with_provider_base_urls,
)
from ._logging import configure_logging, redact, register_secret
from ._schema import (
    BudgetLimit,
    BudgetSettings,
    CacheSettings,
    ConcurrencySettings,
    EventSettings,
    FailoverSettings,
    HealthCheckEndpoint,
    HealthSettings,
    JudgeSettings,
    ModelConfig,
    ProviderConfig,
    ProviderType,
    QualitySettings,
    QualityWeights,
    RateLimits,
    RateLimitSettings,
    RegistryConfig,
    RouterSettings,
    Scope,
    SelectionSettings,
    SelectionWeights,
    Settings,
    Timeouts,
    Window,
)
from ._secrets import Availability, Secrets, load_secrets

__all__ = [
    "Availability",
    "BUILTIN_PROVIDERS",
    "BudgetLimit",
    "BudgetSettings",
    "CacheSettings",
    "ConcurrencySettings",
    "ConfigIssue",
    "EventSettings",
    "FailoverSettings",
    "HealthCheckEndpoint",
    "HealthSettings",
    "JudgeSettings",
    "LoadedConfig",
    "ModelConfig",
    "ProviderConfig",
    "ProviderDefault",
    "ProviderType",
    "QualitySettings",
    "QualityWeights",
    "RateLimitSettings",
    "RateLimits",
    "RegistryConfig",
    "RouterSettings",
    "Scope",
    "Secrets",
    "SelectionSettings",
    "SelectionWeights",
    "Settings",
    "Timeouts",
    "Window",
    "config_from_dict",
    "config_warnings",
    "configure_logging",
    "demo_config",
    "load_config",
    "load_secrets",
    "override",
    "read_config",
    "redact",
    "register_secret",
    "with_emulator_port",
    "with_provider_base_urls",
]
