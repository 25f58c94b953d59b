"""Errors as the SDKs expect them: the package's typed errors mapped, in one table, to an HTTP
status, a kind the two wire formats spell their own way, a code and a ``Retry-After``.

Messages are the errors' own, which are built from structured fields only (no key, no prompt
text: see ``errors``); an unexpected exception is answered with its class name, never its text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import (
    AllCandidatesFailed,
    BudgetExceeded,
    ComponentUnavailable,
    ConcurrencyLimitTimeout,
    ContentPolicyViolation,
    ContextWindowExceeded,
    InvalidInput,
    InvalidRequest,
    NoEligibleModel,
    ProviderError,
    ProviderTimeout,
    RateLimitExceeded,
    StreamInterrupted,
    error_kind_of,
)
from ._wire import GatewayRefusal

#: Error kinds of a failed attempt that mean "busy", not "broken" (all of them: 503, retry).
_BUSY = frozenset({"rate_limited", "rate_limit_exceeded", "overloaded", "concurrency_limit",
                   "budget_exceeded", "spool_unavailable", "component_unavailable"})


@dataclass(frozen=True)
class HttpError:
    """What an error is on the wire."""

    status: int
    kind: str  # invalid_request, authentication, permission, not_found, request_too_large,
    #            rate_limit, budget, overloaded, upstream, timeout, internal
    message: str
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after_s)))}


def http_error(exc: BaseException) -> HttpError:
    """The HTTP form of ``exc``."""
    message = str(exc)
    retry = getattr(exc, "retry_after_s", None)
    if isinstance(exc, GatewayRefusal):
        return HttpError(exc.status, exc.kind, message, exc.code, exc.param)
    if isinstance(exc, InvalidInput):
        return HttpError(400, "invalid_request", message, "invalid_request",
                         getattr(exc, "field", None))
    if isinstance(exc, NoEligibleModel):
        return HttpError(400, "invalid_request", message, "no_eligible_model", "model")
    if isinstance(exc, BudgetExceeded):
        return HttpError(429, "budget", message, "budget_exceeded", None, retry or 60.0)
    if isinstance(exc, RateLimitExceeded):
        return HttpError(429, "rate_limit", message, "rate_limit_exceeded", None, retry or 1.0)
    if isinstance(exc, ConcurrencyLimitTimeout):
        return HttpError(503, "overloaded", message, "concurrency_limit", None, 1.0)
    if isinstance(exc, ComponentUnavailable):
        return HttpError(503, "overloaded", message, exc.error_kind, None, retry or 1.0)
    if isinstance(exc, AllCandidatesFailed):
        return _all_failed(exc)
    if isinstance(exc, ContextWindowExceeded):
        return HttpError(400, "invalid_request", message, "context_length_exceeded", "messages")
    if isinstance(exc, InvalidRequest | ContentPolicyViolation):
        return HttpError(400, "invalid_request", message, exc.error_kind)
    if isinstance(exc, ProviderTimeout):
        return HttpError(504, "timeout", message, "timeout")
    if isinstance(exc, ProviderError):
        return HttpError(502, "upstream", message, exc.error_kind)
    if isinstance(exc, StreamInterrupted):
        return HttpError(502, "upstream", message, "stream_interrupted")
    return HttpError(500, "internal", f"internal error ({type(exc).__name__})", "internal")


def _all_failed(exc: AllCandidatesFailed) -> HttpError:
    kinds = list(getattr(exc, "errors", None) or [])
    if kinds and all(k in _BUSY for k in kinds):
        return HttpError(503, "overloaded", str(exc), "all_candidates_busy", None, 1.0)
    return HttpError(502, "upstream", str(exc), "all_candidates_failed")


def failure_kind(exc: BaseException) -> str:
    """The label a failure is counted under in ``/metrics``."""
    if isinstance(exc, GatewayRefusal):
        return exc.kind
    return error_kind_of(exc)
