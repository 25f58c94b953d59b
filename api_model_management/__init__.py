"""API Model Management: model selection, failover, quality, caching, cost and budgets for
API-hosted LLMs, as an event-sourced actor system on Ray.

The public API is what this module exports; everything else is private.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> the private module that defines it. Imported on first use (PEP 562), so that a
#: Ray worker importing one actor module does not pay for DuckDB, the evaluator or the facades.
_EXPORTS = {
    "Message": "._request",
    "ModelRequest": "._request",
    "ModelResponse": "._request",
    "ProviderResult": "._request",
    "RateLimitState": "._request",
    "SelectionConstraints": "._request",
    "StreamChunk": "._request",
    "ModelManagement": "._system",
    "ModelConfig": ".config",
    "ProviderConfig": ".config",
    "RegistryConfig": ".config",
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
    "InvalidInput": ".errors",
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
    "StreamInterrupted": ".errors",
    "TransientProviderError": ".errors",
    "ResponseEvaluator": ".evaluation",
    "CacheManager": ".facades",
    "CostTracker": ".facades",
    "FailoverManager": ".facades",
    "HealthChecker": ".facades",
    "ModelSelection": ".facades",
    "ModelSelector": ".facades",
    "RateLimiter": ".facades",
    "PerformanceMonitor": ".projections",
    "ModelRegistry": ".registry",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if _TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from ._request import (
        Message,
        ModelRequest,
        ModelResponse,
        ProviderResult,
        RateLimitState,
        SelectionConstraints,
        StreamChunk,
    )
    from ._system import ModelManagement
    from .config import ModelConfig, ProviderConfig, RegistryConfig, Settings
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
        InvalidInput,
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
        StreamInterrupted,
        TransientProviderError,
    )
    from .evaluation import ResponseEvaluator
    from .facades import (
        CacheManager,
        CostTracker,
        FailoverManager,
        HealthChecker,
        ModelSelection,
        ModelSelector,
        RateLimiter,
    )
    from .projections import PerformanceMonitor
    from .registry import ModelRegistry

__all__ = [
    "AMMError",
    "AllCandidatesFailed",
    "AuthenticationError",
    "BudgetExceeded",
    "CacheManager",
    "ComponentUnavailable",
    "ConcurrencyLimitTimeout",
    "ConfigError",
    "ContentPolicyViolation",
    "ContextWindowExceeded",
    "CostTracker",
    "FailoverManager",
    "HealthChecker",
    "InvalidInput",
    "InvalidRequest",
    "MalformedResponse",
    "Message",
    "ModelConfig",
    "ModelManagement",
    "ModelNotFound",
    "ModelRegistry",
    "ModelRequest",
    "ModelResponse",
    "ModelSelection",
    "ModelSelector",
    "NoEligibleModel",
    "PerformanceMonitor",
    "PermanentProviderError",
    "ProviderConfig",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderOverloaded",
    "ProviderResult",
    "ProviderServerError",
    "ProviderTimeout",
    "QuotaExceeded",
    "RateLimitExceeded",
    "RateLimitState",
    "RateLimited",
    "RateLimiter",
    "RegistryConfig",
    "ResponseEvaluator",
    "SelectionConstraints",
    "Settings",
    "StreamChunk",
    "StreamInterrupted",
    "TransientProviderError",
    "__version__",
]
