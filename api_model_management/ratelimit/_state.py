"""What a provider reports about its own rate limits on a response."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RateLimitState(BaseModel):
    """Rate-limit information a provider reported on a response (None where not reported)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    retry_after_s: float | None = None
