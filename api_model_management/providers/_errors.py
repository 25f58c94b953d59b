"""Translation of transport failures and HTTP error responses into the package's error tree.

Messages are built from the provider name, HTTP status and the provider's error type/code only.
Provider error *messages* are never copied: they can echo the API key ("Incorrect API key
provided: sk-…") or parts of the prompt. They are only inspected, to tell apart e.g. a context
window overflow from another 400.
"""

from __future__ import annotations

import asyncio
import re
from typing import TypedDict

import httpx

from .. import errors

_SECRETISH = re.compile(
    r"(sk-[A-Za-z0-9_\-]{4,}|AIza[0-9A-Za-z_\-]{10,}|(?i:bearer)\s+\S+|key=[^&\s]+)"
)
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: A run of letters and digits mixed, long enough to be a key or token (error codes are words).
_KEY_SHAPED = re.compile(r"(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}")


def redact(text: str) -> str:
    """Mask anything that looks like a key or a bearer token (defence in depth for log lines)."""
    return _SECRETISH.sub("[redacted]", text)


def safe_token(value: object) -> str | None:
    """A provider's error type/code if it is a short identifier that does not look like a key;
    anything else is dropped."""
    from ..config._logging import contains_secret

    text = str(value) if isinstance(value, int | str) else ""
    if (_SAFE_TOKEN.fullmatch(text) and not _SECRETISH.search(text)
            and not _KEY_SHAPED.search(text) and not contains_secret(text)):
        return text
    return None


class _Where(TypedDict):
    provider: str
    model_id: str | None
    raw_type: str


def translate_transport_error(
    exc: BaseException, *, provider: str, model_id: str | None
) -> errors.ProviderError:
    """The one place httpx (and total-deadline) exceptions become typed provider errors.

    ``httpx`` timeouts and the total deadline → :class:`ProviderTimeout`; refused, reset or
    half-closed connections (``ConnectError``, ``ReadError``, ``RemoteProtocolError``) →
    :class:`ProviderConnectionError`; undecodable content → :class:`MalformedResponse`.
    """
    what = type(exc).__name__
    where = _Where(provider=provider, model_id=model_id, raw_type=what)
    if isinstance(exc, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError):
        phase = _timeout_phase(exc)
        return errors.ProviderTimeout(f"{provider}: {phase} timeout ({what})", **where)
    if isinstance(exc, httpx.DecodingError):
        return errors.MalformedResponse(f"{provider}: undecodable response body ({what})", **where)
    if isinstance(exc, httpx.TransportError):
        return errors.ProviderConnectionError(f"{provider}: connection failed ({what})", **where)
    raise TypeError(f"not a transport error: {what}")


def _timeout_phase(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect"
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return "read"
    return "total"


def malformed(provider: str, model_id: str | None, what: str, status: int | None = None):
    """A body that could not be understood (not JSON, or missing the fields a reply must have)."""
    return errors.MalformedResponse(
        f"{provider}: malformed response ({what})",
        provider=provider,
        model_id=model_id,
        http_status=status,
        raw_type="malformed",
    )


def status_error(
    status: int,
    *,
    provider: str,
    model_id: str | None,
    raw_type: str | None,
    retry_after_s: float | None = None,
    kind: type[errors.ProviderError] | None = None,
) -> errors.ProviderError:
    """An error for an HTTP error status (200: an error event inside a stream); ``kind``
    overrides the generic status mapping."""
    cls = kind or generic_kind(status)
    label = f" {raw_type}" if raw_type else ""
    where = "error event in stream" if status == 200 else f"HTTP {status}"
    return cls(
        f"{provider}: {where}{label}",
        provider=provider,
        model_id=model_id,
        http_status=status,
        retry_after_s=retry_after_s,
        raw_type=raw_type,
    )


def generic_kind(status: int) -> type[errors.ProviderError]:
    """The error class an HTTP status maps to when the body tells nothing more."""
    if status in (401, 403):
        return errors.AuthenticationError
    if status == 402:
        return errors.QuotaExceeded
    if status == 404:
        return errors.ModelNotFound
    if status == 408:
        return errors.ProviderTimeout
    if status == 429:
        return errors.RateLimited
    if status in (503, 529):
        return errors.ProviderOverloaded
    if status >= 500 or status == 409:
        return errors.ProviderServerError
    if 400 <= status < 500:
        return errors.InvalidRequest
    return errors.MalformedResponse  # a 1xx/3xx we did not follow


_CONTEXT_HINTS = (
    "context_length_exceeded",
    "context window",
    "context length",
    "context_window",
    "prompt is too long",
    "too many tokens",
    "maximum context",
    "exceeds the maximum number of tokens",
    "token count",
)


def mentions_context_overflow(text: object) -> bool:
    """Whether an error message (inspected, never copied) describes a context-window overflow."""
    if not isinstance(text, str):
        return False
    lowered = text.lower()
    if "token count" in lowered:
        return "exceed" in lowered
    return any(hint in lowered for hint in _CONTEXT_HINTS)
