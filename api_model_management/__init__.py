"""API Model Management: model selection, failover, quality, caching, cost and budgets for
API-hosted LLMs, as an event-sourced actor system on Ray."""

from ._request import (
    Message,
    ModelRequest,
    ModelResponse,
    ProviderResult,
    RateLimitState,
    SelectionConstraints,
    StreamChunk,
)
from .config import ModelConfig, ProviderConfig, RegistryConfig, Settings
from .errors import *  # noqa: F403

__version__ = "0.1.0"
