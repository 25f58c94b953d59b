"""Built-in providers, for registry files that name a provider without defining it.

The original system's ``model_registry.json`` has a ``models`` list and no ``providers``: a model's
``provider`` is one of ``openai``, ``anthropic``, ``google``, ``ollama``, and the official SDKs'
environment variables say where each one is and which key it uses. The loader adds such a provider
from :data:`BUILTIN_PROVIDERS` when a model names it and the file does not define it:

- ``openai``: ``https://api.openai.com/v1``, or ``OPENAI_BASE_URL``; key ``OPENAI_API_KEY``;
- ``anthropic``: ``https://api.anthropic.com``, or ``ANTHROPIC_BASE_URL``; key ``ANTHROPIC_API_KEY``;
- ``google``: ``https://generativelanguage.googleapis.com``; key ``GOOGLE_API_KEY`` (or
  ``GEMINI_API_KEY``, see ``_secrets.py``);
- ``ollama``: ``http://localhost:11434``, or ``OLLAMA_BASE_URL`` (the original system's), else
  ``OLLAMA_HOST`` (the ``ollama`` CLI's); no key.

Variables are read from the process environment, then from ``./.env`` (the environment wins), as
the keys are. ``OLLAMA_HOST`` may be a bare ``host`` or ``host:port`` (as the ``ollama`` CLI takes
it): ``http://`` and port 11434 are added when missing. A provider the file defines is never
changed. A value that is not an http(s) URL is a configuration problem naming the variable, never
its value (a URL may carry credentials).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

#: The ``.env`` file read after the environment (relative to the working directory).
DEFAULT_DOTENV = Path(".env")
#: Ollama's default port, added to an ``OLLAMA_HOST`` that names none.
OLLAMA_PORT = 11434


@dataclass(frozen=True, slots=True)
class BuiltinProvider:
    """One provider the loader can add: its type, official base URL, the variables that override
    the URL (first set wins) and the variable holding its key (None: no key needed)."""

    type: str
    base_url: str
    url_envs: tuple[str, ...]
    api_key_env: str | None


BUILTIN_PROVIDERS: dict[str, BuiltinProvider] = {
    "openai": BuiltinProvider("openai", "https://api.openai.com/v1", ("OPENAI_BASE_URL",),
                              "OPENAI_API_KEY"),
    "anthropic": BuiltinProvider("anthropic", "https://api.anthropic.com", ("ANTHROPIC_BASE_URL",),
                                 "ANTHROPIC_API_KEY"),
    "google": BuiltinProvider("google", "https://generativelanguage.googleapis.com", (),
                              "GOOGLE_API_KEY"),
    "ollama": BuiltinProvider("ollama", "http://localhost:11434",
                              ("OLLAMA_BASE_URL", "OLLAMA_HOST"), None),
}


@dataclass(frozen=True, slots=True)
class ProviderDefault:
    """A provider the loader added: its name, base URL, where the URL came from (``built in``, or
    e.g. ``OPENAI_BASE_URL in the environment``) and the key's variable."""

    name: str
    type: str
    base_url: str
    base_url_from: str
    api_key_env: str | None

    def provider_data(self) -> dict[str, Any]:
        """The ``providers`` entry this default stands for (plain data, to be validated)."""
        return {"type": self.type, "base_url": self.base_url, "api_key_env": self.api_key_env}

    def __str__(self) -> str:
        key = "no key" if self.api_key_env is None else f"key from {self.api_key_env}"
        if self.type == "google" and self.api_key_env == "GOOGLE_API_KEY":
            key += " or GEMINI_API_KEY"
        return f"{self.name}: {self.base_url} ({self.base_url_from}), {key}"


@dataclass(frozen=True, slots=True)
class DefaultProblem:
    """A variable whose value cannot be a base URL; ``path`` is where the provider would be."""

    path: str
    message: str
    hint: str


def provider_defaults(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    dotenv_path: str | Path | None = None,
) -> tuple[list[ProviderDefault], list[DefaultProblem]]:
    """The built-in providers that registry ``data`` (raw, as parsed from JSON) names in
    ``models[].provider`` without defining them under ``providers``, in the order first named, and
    the problems with the variables that override their URLs. ``env`` defaults to ``os.environ``;
    ``.env`` (``dotenv_path``, default ``./.env``) is read only when it exists and a variable is
    not in ``env``."""
    wanted = _undefined_builtins(data)
    if not wanted:
        return [], []
    environ: Mapping[str, str] = os.environ if env is None else env
    dotenv = _read_dotenv(Path(dotenv_path) if dotenv_path is not None else DEFAULT_DOTENV)
    defaults: list[ProviderDefault] = []
    problems: list[DefaultProblem] = []
    for name in wanted:
        builtin = BUILTIN_PROVIDERS[name]
        base_url, origin = builtin.base_url, "built in"
        found = _first_set(builtin.url_envs, environ, dotenv)
        if found is not None:
            variable, where, value = found
            url = _as_base_url(variable, value)
            if url is None:
                problems.append(DefaultProblem(
                    f"providers.{name}.base_url",
                    f"{variable} {where} is not an http:// or https:// URL",
                    f"set {variable} to a URL such as {builtin.base_url}, or define "
                    f"providers.{name} in the file"))
                continue
            base_url, origin = url, f"{variable} {where}"
        defaults.append(ProviderDefault(name, builtin.type, base_url, origin, builtin.api_key_env))
    return defaults, problems


def with_defaults(data: Mapping[str, Any], defaults: Sequence[ProviderDefault]) -> dict[str, Any]:
    """A copy of ``data`` whose ``providers`` also hold ``defaults`` (the file's own first)."""
    out = dict(data)
    providers = data.get("providers")
    merged = dict(providers) if isinstance(providers, Mapping) else {}
    for default in defaults:
        merged.setdefault(default.name, default.provider_data())
    out["providers"] = merged
    return out


def _undefined_builtins(data: Mapping[str, Any]) -> list[str]:
    models = data.get("models")
    providers = data.get("providers")
    if providers is not None and not isinstance(providers, Mapping):
        return []  # malformed: the field validation reports it
    defined = set(providers or ())
    named = [m.get("provider") for m in models if isinstance(m, Mapping)] if isinstance(models, list) else []
    return [p for p in dict.fromkeys(n for n in named if isinstance(n, str))
            if p in BUILTIN_PROVIDERS and p not in defined]


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _first_set(names: Sequence[str], env: Mapping[str, str],
               dotenv: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(variable, ``in the environment`` or ``in .env``, value) of the first variable set to a
    non-blank value."""
    for name in names:
        for where, values in (("in the environment", env), ("in .env", dotenv)):
            value = values.get(name)
            if value is not None and value.strip():
                return name, where, value.strip()
    return None


def _as_base_url(variable: str, value: str) -> str | None:
    """``value`` as a base URL, or None when it cannot be one. ``OLLAMA_HOST`` may omit the
    scheme (``http://`` is added) and the port (11434 is added for plain http)."""
    if variable == "OLLAMA_HOST" and "://" not in value:
        value = f"http://{value}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if variable == "OLLAMA_HOST" and port is None and parts.scheme == "http":
        value = f"{parts.scheme}://{parts.netloc}:{OLLAMA_PORT}{parts.path}"
    return value.rstrip("/")
