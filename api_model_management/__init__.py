"""API Model Management: model selection, failover, quality, caching, cost and budgets for
API-hosted LLMs, as an event-sourced actor system on Ray.

The public API is what this module exports; everything else is private.
"""

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

__version__ = "0.1.0"

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
