"""Anthropic Messages (protocols.md §2).

Usage: ``input_tokens`` excludes cache reads *and* cache writes. Normalized ``input_tokens`` is
``input_tokens + cache_creation_input_tokens`` (cache writes priced as input; Anthropic bills them
at a premium, so cost is a slight underestimate there) and ``cached_tokens`` is
``cache_read_input_tokens``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import SecretStr

from .. import errors
from .._request import ModelRequest
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import anthropic_rate_limit_state, suggested_wait_s
from ._base import ProviderAdapter, StreamState, Usage, api_root, count, ids_of_data_list
from ._errors import generic_kind, malformed, mentions_context_overflow, safe_token, status_error
from ._sse import iter_sse
from .openai import sampling

API_VERSION = "2023-06-01"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}

_ERROR_TYPES: dict[str, type[errors.ProviderError]] = {
    "authentication_error": errors.AuthenticationError,
    "permission_error": errors.AuthenticationError,
    "billing_error": errors.QuotaExceeded,
    "not_found_error": errors.ModelNotFound,
    "rate_limit_error": errors.RateLimited,
    "overloaded_error": errors.ProviderOverloaded,
    "api_error": errors.ProviderServerError,
    "timeout_error": errors.ProviderServerError,
    "request_too_large": errors.InvalidRequest,
    "model_context_window_exceeded": errors.ContextWindowExceeded,
}


def anthropic_usage(usage: Any, previous: Usage | None = None) -> Usage:
    """Normalized usage from an Anthropic ``usage`` object. In streams, ``message_delta`` may
    carry only ``output_tokens``; fields it lacks keep their ``previous`` values."""
    prev = previous or Usage()
    if not isinstance(usage, dict):
        return prev
    uncached = prev.input_tokens
    if "input_tokens" in usage or "cache_creation_input_tokens" in usage:
        uncached = count(usage.get("input_tokens")) + count(
            usage.get("cache_creation_input_tokens")
        )
    cached = (
        count(usage["cache_read_input_tokens"])
        if "cache_read_input_tokens" in usage
        else prev.cached_tokens
    )
    output = count(usage["output_tokens"]) if "output_tokens" in usage else prev.output_tokens
    return Usage(input_tokens=uncached, output_tokens=output, cached_tokens=cached)


class AnthropicAdapter(ProviderAdapter):
    """``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version``; probe ``GET /v1/models``."""

    provider_type = "anthropic"

    def _root(self) -> str:
        return api_root(self.config.base_url, "v1")

    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key is not None:
            headers["x-api-key"] = key.get_secret_value()
        return headers

    def _complete_url(self, model: ModelConfig) -> str:
        return f"{self._root()}/messages"

    _stream_url = _complete_url

    def _probe_path(self) -> str:
        return f"{self._root()}/models"

    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict:
        params = sampling(request)
        body: dict[str, Any] = {
            "model": model.wire_name,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.chat_messages()],
        }
        system = request.system_prompt()
        if system:
            body["system"] = system
        for key in ("temperature", "top_p"):
            if key in params:
                body[key] = params[key]
        if "stop" in params:
            body["stop_sequences"] = params["stop"]
        body["stream"] = stream
        return body

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("request-id")

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return anthropic_rate_limit_state(headers, self._clock.now())

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        return ids_of_data_list(body)

    # -- replies -------------------------------------------------------------------------------
    def _parse_reply(self, body: Any, model: ModelConfig) -> tuple[str, StreamState]:
        if body.get("type") == "error":
            raise self._error_object(200, body.get("error"), {}, model.id)
        blocks = body["content"]
        text = "".join(b["text"] for b in blocks if b.get("type") == "text")
        state = StreamState(provider_request_id=body.get("id"))
        self._finish(state, body.get("stop_reason"))
        self._set_usage(state, anthropic_usage(body.get("usage")))
        return text, state

    def _finish(self, state: StreamState, raw: Any) -> None:
        if raw is None:
            return
        state.raw_finish_reason = str(raw)
        state.finish_reason = FINISH_REASONS.get(str(raw), "other")

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str]:
        usage = Usage()
        async for event in iter_sse(lines):
            data = self._decode_event(event.data, model.id)
            if not isinstance(data, dict):
                raise malformed(self.name, model.id, "stream event is not an object")
            name = event.event or data.get("type")
            if name == "message_start":
                message = data.get("message") or {}
                state.provider_request_id = state.provider_request_id or message.get("id")
                usage = anthropic_usage(message.get("usage"), usage)
            elif name == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    yield delta["text"]
            elif name == "message_delta":
                self._finish(state, (data.get("delta") or {}).get("stop_reason"))
                usage = anthropic_usage(data.get("usage"), usage)
            elif name == "message_stop":
                state.completed = True
                break
            elif name == "error":
                raise self._error_object(200, data.get("error"), {}, model.id)
            # ping, content_block_start/stop and unknown events carry nothing we need
        self._set_usage(state, usage)

    # -- errors --------------------------------------------------------------------------------
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        return self._error_object(status, error, headers, model_id)

    def _error_object(
        self, status: int, error: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        """Classify an Anthropic ``error`` object (HTTP error body or ``event: error``)."""
        error = error if isinstance(error, dict) else {}
        etype = safe_token(error.get("type"))
        message = error.get("message")
        kind = _ERROR_TYPES.get(etype or "")
        if kind is None:  # invalid_request_error or an unknown type: the message tells more
            kind = _invalid_request_kind(message)
        if kind is None:
            kind = generic_kind(status) if status != 200 else errors.ProviderServerError
        retry_after_s = suggested_wait_s(self._rate_limit(headers)) if headers else None
        return status_error(
            status,
            provider=self.name,
            model_id=model_id,
            raw_type=etype,
            retry_after_s=retry_after_s,
            kind=kind,
        )


def _invalid_request_kind(message: Any) -> type[errors.ProviderError] | None:
    if mentions_context_overflow(message):
        return errors.ContextWindowExceeded
    if isinstance(message, str) and "credit balance" in message.lower():
        return errors.QuotaExceeded
    return None
