"""API Model Management: model selection, failover, quality, caching, cost and budgets for
API-hosted LLMs, as an event-sourced actor system on Ray.

The public API is what this module exports (``_EXPORTS``, the one list; ``__all__`` is derived
from it and a test checks the type-checking imports below against it); everything else is
private.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

#: public name -> the module that defines it. Imported on first use (PEP 562), so that a Ray
#: worker importing one actor module does not pay for DuckDB, the evaluator or the facades.
_EXPORTS = {
    "ImagePart": "._request",
    "ImageURL": "._request",
    "JsonSchemaFormat": "._request",
    "Message": "._request",
    "ModelRequest": "._request",
    "ModelResponse": "._request",
    "NamedToolChoice": "._request",
    "ProviderResult": "._request",
    "RateLimitState": "._request",
    "ResponseFormat": "._request",
    "SelectionConstraints": "._request",
    "StreamChunk": "._request",
    "TextPart": "._request",
    "Tool": "._request",
    "ToolCall": "._request",
    "BudgetLimit": ".config",
    "BudgetSettings": ".config",
    "config_from_dict": ".config",
    "configure_logging": ".config",
    "demo_config": ".config",
    "load_config": ".config",
    "load_secrets": ".config",
    "ModelConfig": ".config",
    "override": ".config",
    "ProviderConfig": ".config",
    "RegistryConfig": ".config",
    "SelectionWeights": ".config",
    "Settings": ".config",
    "AllCandidatesFailed": ".errors",
    "AMMError": ".errors",
    "AuthenticationError": ".errors",
    "BudgetExceeded": ".errors",
    "ComponentUnavailable": ".errors",
    "ConcurrencyLimitTimeout": ".errors",
    "ConfigError": ".errors",
    "ContentPolicyViolation": ".errors",
    "ContextWindowExceeded": ".errors",
    "EventsNotShipped": ".errors",
    "InvalidInput": ".errors",
    "InvalidOutput": ".errors",
    "InvalidRequest": ".errors",
    "MalformedResponse": ".errors",
    "ModelNotFound": ".errors",
    "NoEligibleModel": ".errors",
    "PermanentProviderError": ".errors",
    "ProviderConnectionError": ".errors",
    "ProviderError": ".errors",
    "ProviderOverloaded": ".errors",
    "ProviderServerError": ".errors",
    "ProviderTimeout": ".errors",
    "QuotaExceeded": ".errors",
    "RateLimited": ".errors",
    "RateLimitExceeded": ".errors",
    "ResponseTooLarge": ".errors",
    "SpoolUnavailable": ".errors",
    "StreamInterrupted": ".errors",
    "TransientProviderError": ".errors",
    "ResponseEvaluator": ".evaluation",
    "CacheManager": ".compat",
    "CostTracker": ".compat",
    "FailoverManager": ".compat",
    "HealthChecker": ".compat",
    "ModelRegistry": ".compat",
    "ModelSelection": ".compat",
    "ModelSelector": ".compat",
    "RateLimiter": ".compat",
    "AgentType": "._model_optimizer",
    "APIModelAssignment": "._model_optimizer",
    "ModelOptimizerIntegration": "._model_optimizer",
    "PerformanceMonitor": ".projections",
    "Selection": ".selection",
    "ActorHandles": ".runtime",
    "ModelManagement": ".runtime",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if _TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly (checked by a test)
    from ._model_optimizer import (
        AgentType,
        APIModelAssignment,
        ModelOptimizerIntegration,
    )
    from ._request import (
        ImagePart,
        ImageURL,
        JsonSchemaFormat,
        Message,
        ModelRequest,
        ModelResponse,
        NamedToolChoice,
        ProviderResult,
        RateLimitState,
        ResponseFormat,
        SelectionConstraints,
        StreamChunk,
        TextPart,
        Tool,
        ToolCall,
    )
    from .compat import (
        CacheManager,
        CostTracker,
        FailoverManager,
        HealthChecker,
        ModelRegistry,
        ModelSelection,
        ModelSelector,
        RateLimiter,
    )
    from .config import (
        BudgetLimit,
        BudgetSettings,
        ModelConfig,
        ProviderConfig,
        RegistryConfig,
        SelectionWeights,
        Settings,
        config_from_dict,
        configure_logging,
        demo_config,
        load_config,
        load_secrets,
        override,
    )
    from .errors import (
        AllCandidatesFailed,
        AMMError,
        AuthenticationError,
        BudgetExceeded,
        ComponentUnavailable,
        ConcurrencyLimitTimeout,
        ConfigError,
        ContentPolicyViolation,
        ContextWindowExceeded,
        EventsNotShipped,
        InvalidInput,
        InvalidOutput,
        InvalidRequest,
        MalformedResponse,
        ModelNotFound,
        NoEligibleModel,
        PermanentProviderError,
        ProviderConnectionError,
        ProviderError,
        ProviderOverloaded,
        ProviderServerError,
        ProviderTimeout,
        QuotaExceeded,
        RateLimited,
        RateLimitExceeded,
        ResponseTooLarge,
        SpoolUnavailable,
        StreamInterrupted,
        TransientProviderError,
    )
    from .evaluation import (
        ResponseEvaluator,
    )
    from .projections import (
        PerformanceMonitor,
    )
    from .runtime import (
        ActorHandles,
        ModelManagement,
    )
    from .selection import (
        Selection,
    )
