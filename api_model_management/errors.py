"""The package's one error tree.

Every error is picklable (it crosses Ray process boundaries) and carries no secret and no prompt
text: constructors take structured fields, and messages are built from those fields only.

    AMMError
    ├── ConfigError                      bad configuration (with a list of issues)
    ├── InvalidInput (ValueError)        bad arguments to a core (negative tokens, NaN, unknown model)
    ├── ProviderError                    a provider call failed; ``transient`` / ``failover`` say what to do
    │   ├── TransientProviderError       retry elsewhere after backoff
    │   │   ├── ProviderTimeout
    │   │   ├── ProviderConnectionError
    │   │   ├── RateLimited              (429; ``retry_after_s``)
    │   │   ├── ProviderServerError      (5xx)
    │   │   ├── ProviderOverloaded       (Anthropic 529, Gemini 503, Ollama 503)
    │   │   └── MalformedResponse        (the body could not be parsed)
    │   │       └── ResponseTooLarge     (the body passed ``max_response_bytes``; ``limit_bytes``)
    │   ├── InvalidOutput                tool calls / structured output failed their schema (failover)
    │   └── PermanentProviderError       retrying the same model will not help
    │       ├── AuthenticationError      (401/403; failover to another provider)
    │       ├── QuotaExceeded            (billing / insufficient quota; failover)
    │       ├── ModelNotFound            (failover)
    │       ├── ContextWindowExceeded    (failover to a larger window)
    │       ├── InvalidRequest           (400; raised at once)
    │       └── ContentPolicyViolation   (raised at once)
    ├── StreamInterrupted                a stream failed after text was delivered (``partial_text``)
    ├── BudgetExceeded                   a budget reservation was refused
    ├── RateLimitExceeded                local admission refused (``retry_after_s``)
    ├── NoEligibleModel                  no model passes the filters
    ├── AllCandidatesFailed              every attempt failed (``errors``)
    ├── ConcurrencyLimitTimeout          no in-flight slot within the deadline
    └── ComponentUnavailable             an actor the path needs is down
        ├── SpoolUnavailable             the event spool cannot take writes (disk full, quota, I/O)
        └── EventsNotShipped             ``ack="shipped"``: the events did not reach the shared log in time
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .config._load import ConfigIssue


#: Numbers (and amounts) in a filter reason: reasons that differ only in these are one kind.
_NUMBERS = re.compile(r"\$?\d+(?:\.\d+)?")


def _rebuild(cls: type[AMMError], kwargs: dict[str, Any]) -> AMMError:
    return cls(**kwargs)


_Rebuild = Callable[[type["AMMError"], dict[str, Any]], "AMMError"]


class AMMError(Exception):
    """Root of the package's errors. Subclasses pass structured fields as keyword arguments."""

    error_kind: ClassVar[str] = "error"

    def __init__(self, message: str = "", **fields: Any) -> None:
        self.message = message or self.error_kind
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(self.message)

    def __reduce__(self) -> tuple[_Rebuild, tuple[type[AMMError], dict[str, Any]]]:
        # picklable across Ray processes
        return (_rebuild, (type(self), {"message": self.message, **self.fields}))

    def __str__(self) -> str:
        return self.message


class ConfigError(AMMError):
    """Configuration failed validation. ``issues`` is a list of ``(json_path, message, hint)``."""

    error_kind = "config"
    issues: list[ConfigIssue]

    def __init__(
        self, message: str = "", issues: list[ConfigIssue] | None = None, **fields: Any
    ) -> None:
        super().__init__(message, issues=list(issues or []), **fields)


class InvalidInput(AMMError, ValueError):
    """Bad input to a component; the component's state is unchanged."""

    error_kind = "invalid_input"


class ProviderError(AMMError):
    """A provider call failed. ``transient``: retrying later may succeed. ``failover``: another
    candidate should be tried (False means the request itself is at fault and is raised at once)."""

    error_kind = "provider_error"
    transient: ClassVar[bool] = False
    failover: ClassVar[bool] = True
    provider: str | None
    model_id: str | None
    http_status: int | None
    retry_after_s: float | None
    raw_type: str | None

    def __init__(
        self,
        message: str = "",
        *,
        provider: str | None = None,
        model_id: str | None = None,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        raw_type: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            model_id=model_id,
            http_status=http_status,
            retry_after_s=retry_after_s,
            raw_type=raw_type,
            **fields,
        )


class TransientProviderError(ProviderError):
    error_kind = "transient"
    transient = True


class ProviderTimeout(TransientProviderError):
    error_kind = "timeout"


class ProviderConnectionError(TransientProviderError):
    error_kind = "connection"


class RateLimited(TransientProviderError):
    error_kind = "rate_limited"


class ProviderServerError(TransientProviderError):
    error_kind = "server_error"


class ProviderOverloaded(TransientProviderError):
    error_kind = "overloaded"


class MalformedResponse(TransientProviderError):
    error_kind = "malformed_response"


class ResponseTooLarge(MalformedResponse):
    """The reply passed the provider's ``max_response_bytes`` (``limit_bytes``) and was not read
    further; another candidate is tried."""

    error_kind = "response_too_large"


class InvalidOutput(ProviderError):
    """The model answered, but its tool calls or its structured answer failed the request's
    schemas (``evaluation.check_output``; ``settings.quality.fail_over_on_invalid_output``): a
    failure of that model, not of its provider (neutral for health), and the next candidate is
    tried. The message names the rule that failed, never an argument or a value."""

    error_kind = "invalid_output"


class PermanentProviderError(ProviderError):
    error_kind = "permanent"


class AuthenticationError(PermanentProviderError):
    error_kind = "auth"


class QuotaExceeded(PermanentProviderError):
    error_kind = "quota"


class ModelNotFound(PermanentProviderError):
    error_kind = "model_not_found"


class ContextWindowExceeded(PermanentProviderError):
    error_kind = "context_window"


class InvalidRequest(PermanentProviderError):
    error_kind = "invalid_request"
    failover = False


class ContentPolicyViolation(PermanentProviderError):
    error_kind = "content_policy"
    failover = False


class StreamInterrupted(AMMError):
    """A stream failed after text was delivered. ``partial_text`` is what the caller already has;
    nothing is replayed or duplicated."""

    error_kind = "stream_interrupted"


class BudgetExceeded(AMMError):
    error_kind = "budget_exceeded"


class RateLimitExceeded(AMMError):
    error_kind = "rate_limit_exceeded"


class NoEligibleModel(AMMError):
    """No model passes selection's filters. ``filtered`` maps every model id to the reason it
    was left out; the message stays one short line (see :meth:`from_reasons`)."""

    error_kind = "no_eligible_model"
    filtered: dict[str, str]

    @classmethod
    def from_reasons(cls, filtered: Mapping[str, str]) -> NoEligibleModel:
        """The error for these per-model reasons. Its message names how many models were left
        out and the most common reason (reasons that differ only in their numbers count as one)
        with one model it applies to, e.g. ``no eligible model among 14: 12 like gpt-4o
        (max_tokens 100000 > max output 16384), 2 for other reasons; each model's reason is in
        .filtered``."""
        reasons = dict(filtered)
        if len(reasons) <= 1:
            detail = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "no model is configured"
            return cls(f"no eligible model ({detail})", filtered=reasons)
        kinds: dict[str, list[str]] = {}
        for model_id, reason in reasons.items():
            kinds.setdefault(_NUMBERS.sub("#", reason), []).append(model_id)
        common = max(kinds.values(), key=len)
        example = common[0]
        others = len(reasons) - len(common)
        message = (f"no eligible model among {len(reasons)}: {len(common)} like {example} "
                   f"({reasons[example]})" + (f", {others} for other reasons" if others else "")
                   + "; each model's reason is in .filtered")
        return cls(message, filtered=reasons)


class AllCandidatesFailed(AMMError):
    error_kind = "all_candidates_failed"


class ConcurrencyLimitTimeout(AMMError):
    error_kind = "concurrency_limit"


class ComponentUnavailable(AMMError):
    error_kind = "component_unavailable"


class SpoolUnavailable(ComponentUnavailable):
    """The router's event spool cannot take writes (its disk is full, over quota or failing:
    ``cause`` names the errno). Raised before any provider call, never after: no call is made
    that could not be announced durably (``AttemptStarted``), and a call already made keeps its
    events in memory until they are written. Admission resumes by itself once a spool write
    succeeds again; ``retry_after_s`` is a hint for when to try again."""

    error_kind = "spool_unavailable"


class EventsNotShipped(ComponentUnavailable):
    """With ``settings.events.ack="shipped"``: a request's events did not reach the shared log
    within ``ack_timeout_s`` (or the upload failed), so its answer is not durable against the loss
    of the node. The provider call was made and its events (cost included) are in the node's
    spool, shipped or ingested later. ``request_id`` names the request; ``response`` is its answer
    (a ``ModelResponse``, None for a stream or a failed request) and ``final`` a stream's last
    chunk (its result and cost, None otherwise), for a caller that prefers the answer to the
    guarantee."""

    error_kind = "events_not_shipped"


def error_kind_of(exc: BaseException) -> str:
    """The ``error_kind`` recorded in events for any exception (``cancelled`` when the caller
    went away: an abandoned stream or a cancelled task)."""
    import asyncio

    if isinstance(exc, GeneratorExit | asyncio.CancelledError):
        return "cancelled"
    return getattr(exc, "error_kind", type(exc).__name__)
