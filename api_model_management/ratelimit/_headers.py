"""Pure parsers for the providers' rate-limit signals (protocols.md 1.6, 2.6, 3.6).

Every parser takes the raw header or body value and returns seconds (or a state object), or None
when the value is absent or unparseable. None of them raises on garbage: a malformed header must
never turn a successful response into a failure.

- OpenAI ``x-ratelimit-reset-*``: Go-style durations (``6m0s``, ``12ms``, ``1h2m3s``, ``1.5s``).
- Anthropic ``anthropic-ratelimit-*-reset``: RFC 3339 timestamps, converted to seconds from ``now``.
- ``retry-after`` (seconds, possibly fractional, or an HTTP-date) and ``retry-after-ms``.
- Gemini: ``google.rpc.RetryInfo.retryDelay`` in a 429 body (protobuf Duration JSON, ``"38s"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ._state import RateLimitState

_GO_UNITS_S = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|μs|ns|h|m|s)")
_GO_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|us|µs|μs|ns|h|m|s))+")
_PROTO_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)s")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
_MAX_REASONABLE_S = 10.0 * 365 * 24 * 3600  # anything beyond ten years is garbage


def _finite(value: float) -> float | None:
    if math.isfinite(value) and 0.0 <= value <= _MAX_REASONABLE_S:
        return value
    return None


def parse_go_duration(value: str | None) -> float | None:
    """``"6m0s"`` → 360.0, ``"12ms"`` → 0.012, ``"1h2m3s"`` → 3723.0; ``"0"`` → 0.0."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text == "0":
        return 0.0
    if not _GO_FULL.fullmatch(text):
        return None
    total = 0.0
    for number, unit in _GO_PART.findall(text):
        total += float(number) * _GO_UNITS_S[unit]
    return _finite(total)


def format_go_duration(seconds: float) -> str:
    """The inverse of :func:`parse_go_duration` for whole milliseconds (as OpenAI writes them)."""
    total_ms = round(seconds * 1000)
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    secs = rest_ms / 1000
    sec_text = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{sec_text}s"
    if minutes:
        return f"{minutes}m{sec_text}s"
    return f"{sec_text}s"


def parse_rfc3339(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or ``±hh:mm`` offset) as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _RFC3339.fullmatch(text):
        return None
    text = text.replace("z", "Z").replace("t", "T").replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, sep, frac_and_zone = text.partition(".")
    if sep:  # fromisoformat accepts at most 6 fractional digits on 3.11
        digits = frac_and_zone[:-6]
        text = f"{head}.{digits[:6].ljust(6, '0')}{frac_and_zone[-6:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # e.g. month 13 passes the regex
        return None


def seconds_until(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` to the RFC 3339 time ``value`` (0.0 when already past)."""
    moment = parse_rfc3339(value)
    if moment is None:
        return None
    return _finite(max(0.0, (moment - now).total_seconds()))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``retry-after``: delay seconds (``"20"``, ``"1.5"``) or an HTTP-date (seconds from ``now``)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return _finite(float(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _finite(max(0.0, (moment - now).total_seconds()))


def parse_retry_after_ms(value: str | None) -> float | None:
    """``retry-after-ms``: milliseconds (float allowed) → seconds."""
    if not isinstance(value, str) or not _SECONDS.fullmatch(value.strip()):
        return None
    return _finite(float(value.strip()) / 1000.0)


def parse_protobuf_duration(value: Any) -> float | None:
    """A protobuf Duration in JSON (``"38s"``, ``"1.5s"``, ``"0s"``) → seconds."""
    if not isinstance(value, str):
        return None
    match = _PROTO_DURATION.fullmatch(value.strip())
    if not match:
        return None
    return _finite(float(match.group(1)))


def retry_after_from_headers(headers: Mapping[str, str], now: datetime) -> float | None:
    """``retry-after-ms`` if present and valid, else ``retry-after`` (the Stainless SDKs' order)."""
    delay = parse_retry_after_ms(headers.get("retry-after-ms"))
    if delay is not None:
        return delay
    return parse_retry_after(headers.get("retry-after"), now)


def gemini_retry_delay_s(body: Any) -> float | None:
    """``RetryInfo.retryDelay`` from a Gemini error body (``{"error": {"details": [...]}}``)."""
    for detail in _gemini_details(body):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = parse_protobuf_duration(detail.get("retryDelay"))
            if delay is not None:
                return delay
    return None


def gemini_is_daily_quota(body: Any) -> bool:
    """True when a Gemini 429 names a per-day quota (do not retry soon: treat as quota exhausted)."""
    for detail in _gemini_details(body):
        if not str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            continue
        violations = detail.get("violations")
        if not isinstance(violations, list):
            continue
        for violation in violations:
            if (
                isinstance(violation, dict)
                and "perday" in str(violation.get("quotaId", "")).lower()
            ):
                return True
    return False


def _gemini_details(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict)]


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def openai_rate_limit_state(headers: Mapping[str, str], now: datetime) -> RateLimitState | None:
    """The ``x-ratelimit-*`` headers (and ``retry-after``) of an OpenAI response, or None."""
    state = RateLimitState(
        limit_requests=_int_header(headers, "x-ratelimit-limit-requests"),
        remaining_requests=_int_header(headers, "x-ratelimit-remaining-requests"),
        reset_requests_s=parse_go_duration(headers.get("x-ratelimit-reset-requests")),
        limit_tokens=_int_header(headers, "x-ratelimit-limit-tokens"),
        remaining_tokens=_int_header(headers, "x-ratelimit-remaining-tokens"),
        reset_tokens_s=parse_go_duration(headers.get("x-ratelimit-reset-tokens")),
        retry_after_s=retry_after_from_headers(headers, now),
    )
    return _nonempty(state)


def anthropic_rate_limit_state(headers: Mapping[str, str], now: datetime) -> RateLimitState | None:
    """The ``anthropic-ratelimit-*`` headers (and ``retry-after``) of an Anthropic response.

    Tokens come from the combined ``tokens-*`` bucket (the most restrictive limit in effect), or
    the ``input-tokens-*`` bucket when only that is sent.
    """
    tokens = "anthropic-ratelimit-tokens"
    if headers.get(f"{tokens}-limit") is None and headers.get(f"{tokens}-remaining") is None:
        tokens = "anthropic-ratelimit-input-tokens"
    state = RateLimitState(
        limit_requests=_int_header(headers, "anthropic-ratelimit-requests-limit"),
        remaining_requests=_int_header(headers, "anthropic-ratelimit-requests-remaining"),
        reset_requests_s=seconds_until(headers.get("anthropic-ratelimit-requests-reset"), now),
        limit_tokens=_int_header(headers, f"{tokens}-limit"),
        remaining_tokens=_int_header(headers, f"{tokens}-remaining"),
        reset_tokens_s=seconds_until(headers.get(f"{tokens}-reset"), now),
        retry_after_s=retry_after_from_headers(headers, now),
    )
    return _nonempty(state)


def retry_only_state(headers: Mapping[str, str], now: datetime) -> RateLimitState | None:
    """Providers without rate-limit headers (Gemini, Ollama) may still send ``retry-after``."""
    return _nonempty(RateLimitState(retry_after_s=retry_after_from_headers(headers, now)))


def suggested_wait_s(state: RateLimitState | None) -> float | None:
    """How long to wait before retrying: ``retry-after`` if given, else the reset of an empty
    bucket (remaining 0), else None."""
    if state is None:
        return None
    if state.retry_after_s is not None:
        return state.retry_after_s
    waits = []
    if state.remaining_requests == 0 and state.reset_requests_s is not None:
        waits.append(state.reset_requests_s)
    if state.remaining_tokens == 0 and state.reset_tokens_s is not None:
        waits.append(state.reset_tokens_s)
    return max(waits) if waits else None


def _nonempty(state: RateLimitState) -> RateLimitState | None:
    return state if any(v is not None for v in state.model_dump().values()) else None
