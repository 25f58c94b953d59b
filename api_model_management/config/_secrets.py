"""API keys, read from the environment or a ``.env`` file and held as ``SecretStr``.

Each provider names the variable holding its key (``api_key_env``); providers with none (local
Ollama) need no key. The process environment wins over the ``.env`` file; ``os.environ`` is never
changed. A key is never in a repr, a log line or an error: reasons name the variable, not its value,
and every key read is registered with the log redaction filter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from dotenv import dotenv_values
from pydantic import SecretStr

from ._logging import register_secret
from ._schema import ProviderConfig, RegistryConfig

#: Variables tried after ``GOOGLE_API_KEY`` for Google providers (the Gemini SDKs read either).
GOOGLE_ALTERNATIVES = ("GEMINI_API_KEY",)
DEFAULT_DOTENV = Path(".env")


class Availability(NamedTuple):
    """Whether a provider can be called, and why not (``available, reason = ...`` works)."""

    available: bool
    reason: str


class Secrets:
    """The API keys of the configured providers. ``repr`` and ``str`` show only which are set."""

    def __init__(self, keys: Mapping[str, SecretStr], availability: Mapping[str, Availability]) -> None:
        self._keys = dict(keys)
        self._availability = dict(availability)

    def key_for(self, provider: str) -> SecretStr | None:
        """The provider's key, or None (no key needed, or missing: see :meth:`availability`)."""
        return self._keys.get(provider)

    def availability(self, provider: str) -> Availability:
        """``(available, reason)`` for a provider; unknown providers are unavailable."""
        found = self._availability.get(provider)
        return found if found is not None else Availability(False, f"provider {provider!r} is not configured")

    @property
    def providers(self) -> list[str]:
        return sorted(self._availability)

    def __repr__(self) -> str:
        state = ", ".join(f"{name}={'set' if name in self._keys else 'unset'}" for name in self.providers)
        return f"Secrets({state})"

    __str__ = __repr__

    def __reduce__(self):  # re-registers the keys for redaction in the process that unpickles
        return (_restore, (self._keys, self._availability))


def _restore(keys: Mapping[str, SecretStr], availability: Mapping[str, Availability]) -> Secrets:
    for key in keys.values():
        register_secret(key.get_secret_value())
    return Secrets(keys, availability)


def load_secrets(
    config: RegistryConfig,
    *,
    env: Mapping[str, str] | None = None,
    dotenv_path: str | Path | None = None,
) -> Secrets:
    """Read each provider's key from ``env`` (default ``os.environ``), then from the ``.env`` file
    (default ``./.env`` if it exists). Missing keys make a provider unavailable, with the reason."""
    env = os.environ if env is None else env
    dotenv = _read_dotenv(DEFAULT_DOTENV if dotenv_path is None else Path(dotenv_path), explicit=dotenv_path is not None)
    keys: dict[str, SecretStr] = {}
    availability: dict[str, Availability] = {}
    for name, provider in config.providers.items():
        key, availability[name] = _lookup(provider, env, dotenv)
        if key is not None:
            register_secret(key)
            keys[name] = SecretStr(key)
    return Secrets(keys, availability)


def _read_dotenv(path: Path, *, explicit: bool) -> dict[str, str]:
    if not path.is_file():
        if explicit:
            from ..errors import ConfigError
            from ._load import ConfigIssue

            message = f"the .env file {str(path)!r} does not exist"
            raise ConfigError(message, issues=[ConfigIssue("$dotenv", message, "check the path or omit it")])
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _candidates(provider: ProviderConfig) -> tuple[str, ...]:
    if provider.api_key_env is None:
        return ()
    if provider.type == "google" and provider.api_key_env == "GOOGLE_API_KEY":
        return (provider.api_key_env, *GOOGLE_ALTERNATIVES)
    return (provider.api_key_env,)


def _lookup(provider: ProviderConfig, env: Mapping[str, str], dotenv: Mapping[str, str]) -> tuple[str | None, Availability]:
    names = _candidates(provider)
    if not names:
        return None, Availability(True, "no API key needed")
    empty = []
    for name in names:
        for where, values in (("environment", env), (".env", dotenv)):
            value = values.get(name)
            if value is None:
                continue
            if value.strip():
                return value.strip(), Availability(True, f"key from {name} ({where})")
            empty.append(f"{name} ({where})")
    if empty:
        return None, Availability(False, f"{' and '.join(empty)} is set but empty")
    wanted = " or ".join(names)
    return None, Availability(False, f"{wanted} is not set (environment or .env)")
