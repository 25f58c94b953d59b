"""Rate limits, in one place: the per-model RPM/TPM core (sliding windows, leases, cool-downs,
the provider's own view), admission on the router's side (per-request or from leases), and the
parsers of the providers' rate-limit headers."""

from ._admission import (
    AdmissionPort,
    LeaseAdmission,
    LeaseGranter,
    LeaseHolder,
    LocalAdmission,
    LocalLeaseGranter,
    RateTicket,
)
from ._core import (
    Admission,
    Lease,
    RateLimiterCore,
    RateLimiterSnapshot,
    RateLimitStatus,
    count,
)
from ._headers import (
    anthropic_rate_limit_state,
    gemini_retry_delay_s,
    openai_rate_limit_state,
    parse_go_duration,
    parse_retry_after,
    retry_after_from_headers,
    suggested_wait_s,
)
from ._idle import IdleRetirement
from ._journal import LimiterJournal
from ._state import RateLimitState

__all__ = [
    "Admission",
    "AdmissionPort",
    "Lease",
    "IdleRetirement",
    "LeaseAdmission",
    "LeaseGranter",
    "LeaseHolder",
    "LimiterJournal",
    "LocalAdmission",
    "LocalLeaseGranter",
    "RateLimitState",
    "RateLimitStatus",
    "RateLimiterCore",
    "RateLimiterSnapshot",
    "RateTicket",
    "anthropic_rate_limit_state",
    "count",
    "gemini_retry_delay_s",
    "openai_rate_limit_state",
    "parse_go_duration",
    "parse_retry_after",
    "retry_after_from_headers",
    "suggested_wait_s",
]
