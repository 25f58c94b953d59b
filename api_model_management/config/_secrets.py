"""API keys, read from the environment or a ``.env`` file and held as ``SecretStr``.

Each provider names the variable holding its key (``api_key_env``), or several (``api_key_envs``:
a key pool, each key read as an :class:`ApiKey` named by its variable); providers with none (local
Ollama) need no key. The process environment wins over the ``.env`` file; ``os.environ`` is never
changed. A key is never in a repr, a log line or an error: reasons name the variable, not its value,
and every key read is registered with the log redaction filter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key and its name: the variable it was read from (or ``#<n>`` for a key given
    directly). Logs, events and errors name a key by ``name`` only; ``repr`` shows no value."""

    name: str
    secret: SecretStr

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r})"

    __str__ = __repr__


class Secrets:
    """The API keys of the configured providers. ``repr`` and ``str`` show only which are set."""

    def __init__(self, keys: Mapping[str, SecretStr | Sequence[ApiKey]],
                 availability: Mapping[str, Availability]) -> None:
        self._keys = {name: _as_keys(found) for name, found in keys.items() if _as_keys(found)}
        self._availability = dict(availability)

    def key_for(self, provider: str) -> SecretStr | None:
        """The provider's (first) key, or None (no key needed, or missing: see
        :meth:`availability`)."""
        keys = self._keys.get(provider)
        return keys[0].secret if keys else None

    def keys_for(self, provider: str) -> tuple[ApiKey, ...]:
        """Every key of the provider that is set, in configured order (empty: none needed, or
        missing: see :meth:`availability`)."""
        return self._keys.get(provider, ())

    def availability(self, provider: str) -> Availability:
        """``(available, reason)`` for a provider; unknown providers are unavailable."""
        found = self._availability.get(provider)
        return found if found is not None else Availability(False, f"provider {provider!r} is not configured")

    @property
    def providers(self) -> list[str]:
        return sorted(self._availability)

    def __repr__(self) -> str:
        state = ", ".join(f"{name}={_count(len(self._keys.get(name, ())))}" for name in self.providers)
        return f"Secrets({state})"

    __str__ = __repr__

    def __reduce__(self):  # re-registers the keys for redaction in the process that unpickles
        return (_restore, (self._keys, self._availability))


def _restore(keys: Mapping[str, Sequence[ApiKey]], availability: Mapping[str, Availability]) -> Secrets:
    for pool in keys.values():
        for key in pool:
            register_secret(key.secret.get_secret_value())
    return Secrets(keys, availability)


def _as_keys(found: SecretStr | Sequence[ApiKey]) -> tuple[ApiKey, ...]:
    return (ApiKey("#1", found),) if isinstance(found, SecretStr) else tuple(found)


def _count(keys: int) -> str:
    return "unset" if keys == 0 else "set" if keys == 1 else f"set ({keys} keys)"


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
    keys: dict[str, tuple[ApiKey, ...]] = {}
    availability: dict[str, Availability] = {}
    for name, provider in config.providers.items():
        keys[name], availability[name] = _lookup_all(provider, env, dotenv)
        for key in keys[name]:
            register_secret(key.secret.get_secret_value())
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


def _candidates(provider: ProviderConfig, env_name: str) -> tuple[str, ...]:
    if provider.type == "google" and env_name == "GOOGLE_API_KEY":
        return (env_name, *GOOGLE_ALTERNATIVES)
    return (env_name,)


def _lookup_all(provider: ProviderConfig, env: Mapping[str, str],
                dotenv: Mapping[str, str]) -> tuple[tuple[ApiKey, ...], Availability]:
    """Every key of ``provider`` that is set, named by the variable it came from, and whether
    the provider can be called: with at least one key (the reason names each variable and
    where it was found, and which are missing), or without any when it needs none. A variable
    holding the same key as an earlier one adds no key (its limits are that key's)."""
    if not provider.key_envs:
        return (), Availability(True, "no API key needed")
    found: dict[str, ApiKey] = {}  # value -> the first key holding it
    reasons: list[str] = []
    for env_name in provider.key_envs:
        key, availability = _lookup(_candidates(provider, env_name), env, dotenv)
        if key is None:
            reasons.append(availability.reason)
            continue
        value = key.secret.get_secret_value()
        if value in found:
            reasons.append(f"{key.name} holds the same key as {found[value].name}")
            continue
        found[value] = key
        reasons.append(availability.reason)
    keys = tuple(found.values())
    if len(provider.key_envs) == 1:
        return keys, Availability(bool(keys), reasons[0])
    summary = f"{len(keys)} of {len(provider.key_envs)} keys: {'; '.join(reasons)}"
    return keys, Availability(bool(keys), summary)


def _lookup(names: tuple[str, ...], env: Mapping[str, str],
            dotenv: Mapping[str, str]) -> tuple[ApiKey | None, Availability]:
    """The key held by the first of ``names`` that is set (environment, then .env)."""
    empty = []
    for name in names:
        for where, values in (("environment", env), (".env", dotenv)):
            value = values.get(name)
            if value is None:
                continue
            if value.strip():
                key = ApiKey(name, SecretStr(value.strip()))
                return key, Availability(True, f"key from {name} ({where})")
            empty.append(f"{name} ({where})")
    if empty:
        return None, Availability(False, f"{' and '.join(empty)} is set but empty")
    wanted = " or ".join(names)
    return None, Availability(False, f"{wanted} is not set (environment or .env)")
