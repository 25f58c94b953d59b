"""httpx adapters for the providers' wire protocols (OpenAI, Anthropic, Gemini, Ollama), their
rate-limit header parsers, and exact cost.

    adapter = make_adapter("openai", provider_config, api_key)   # or secrets.keys_for("openai")
    result = await adapter.complete(request, model_config)
    async for chunk in adapter.stream(request, model_config): ...
    await adapter.aclose()
"""

from __future__ import annotations

import httpx

from .._clock import SYSTEM_CLOCK, Clock
from ..budget._pricing import cost_usd, worst_case_cost_usd
from ..config import ConfigIssue, ProviderConfig
from ..config._logging import register_secret
from ..errors import ConfigError
from ._base import ProbeResult, ProviderAdapter
from ._errors import redact, translate_transport_error
from ._keys import KeyPool, KeySource, KeyState, keys_of
from .anthropic import AnthropicAdapter
from .gemini import GeminiAdapter
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "google": GeminiAdapter,
    "ollama": OllamaAdapter,
}


def make_adapter(
    provider_name: str,
    config: ProviderConfig,
    api_key: KeySource = None,
    *,
    client: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> ProviderAdapter:
    """The adapter for ``config.type`` (openai, anthropic, google, ollama), with one key or a
    pool of keys (``secrets.keys_for(name)``: each an ``ApiKey`` named by its variable)."""
    try:
        cls = ADAPTERS[config.type]
    except KeyError:
        raise ConfigError(
            f"provider {provider_name!r}: unknown provider type {config.type!r}",
            issues=[
                ConfigIssue(
                    f"providers.{provider_name}.type", "unknown provider type", ", ".join(ADAPTERS)
                )
            ],
        ) from None
    keys = keys_of(api_key)
    for key in keys:  # every process holding a key redacts it (actors included)
        register_secret(key.secret.get_secret_value())
    return cls(provider_name, config, keys, client=client, transport=transport, clock=clock)


__all__ = [
    "ADAPTERS",
    "AnthropicAdapter",
    "GeminiAdapter",
    "KeyPool",
    "KeySource",
    "KeyState",
    "OllamaAdapter",
    "OpenAIAdapter",
    "ProbeResult",
    "ProviderAdapter",
    "cost_usd",
    "make_adapter",
    "redact",
    "translate_transport_error",
    "worst_case_cost_usd",
]
