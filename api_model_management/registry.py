"""``ModelRegistry``: the original system's facade over the validated configuration.

    registry = ModelRegistry("config/model_registry.json")
    registry.load_config()
    registry.list_models(capability="code-generation", provider="openai")

It only reads the configuration; selection, health and rate limits live in their components.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ._config_load import load_config
from .config import ModelConfig, ProviderConfig, RegistryConfig, Settings


class ModelRegistry:
    """Model metadata from a registry file (or an already validated ``RegistryConfig``)."""

    def __init__(self, config_path: str | Path | None = None, *, config: RegistryConfig | None = None) -> None:
        if config_path is None and config is None:
            raise ValueError("ModelRegistry needs a config path or a RegistryConfig")
        self.config_path = Path(config_path) if config_path is not None else None
        self._config = config

    @classmethod
    def from_config(cls, config: RegistryConfig) -> ModelRegistry:
        return cls(config=config)

    def load_config(self) -> RegistryConfig:
        """Read and validate the file (``ConfigError`` lists every problem); keep and return it."""
        if self.config_path is None:  # built from a RegistryConfig
            return self.config
        self._config = load_config(self.config_path)
        return self._config

    def reload(self) -> RegistryConfig:
        """Read the file again. If it is now invalid, ``ConfigError`` is raised and the previous
        configuration is kept."""
        return self.load_config()

    @property
    def config(self) -> RegistryConfig:
        """The configuration, read from the file on first use if ``load_config`` was not called."""
        if self._config is None:  # only when built from a path
            return self.load_config()
        return self._config

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        return dict(self.config.providers)

    @property
    def settings(self) -> Settings:
        return self.config.settings

    def get_model(self, model_id: str) -> ModelConfig | None:
        """The model with this id, or None."""
        return next((m for m in self.config.models if m.id == model_id), None)

    def list_models(
        self,
        capability: str | Iterable[str] | None = None,
        provider: str | None = None,
        enabled_only: bool = True,
    ) -> list[ModelConfig]:
        """Models in file order, filtered by capability (all given must be present), provider and
        ``enabled``."""
        wanted = {capability} if isinstance(capability, str) else set(capability or ())
        return [
            model
            for model in self.config.models
            if (not enabled_only or model.enabled)
            and (provider is None or model.provider == provider)
            and wanted.issubset(model.capabilities)
        ]

    def __repr__(self) -> str:
        state = f"{len(self._config.models)} models" if self._config is not None else "not loaded"
        return f"ModelRegistry({str(self.config_path) if self.config_path else '<config>'!r}, {state})"
