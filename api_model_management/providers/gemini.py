"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` (protocols.md §3).

Usage: ``promptTokenCount`` includes ``cachedContentTokenCount``, so
``input_tokens = promptTokenCount - cachedContentTokenCount (+ toolUsePromptTokenCount)``;
``thoughtsTokenCount`` is *not* in ``candidatesTokenCount`` but is billed as output, so
``output_tokens = candidatesTokenCount + thoughtsTokenCount`` and ``reasoning_tokens`` the latter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import SecretStr

from .. import errors
from .._request import ModelRequest
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import (
    gemini_is_daily_quota,
    gemini_retry_delay_s,
    retry_after_from_headers,
    retry_only_state,
)
from ._base import ProviderAdapter, StreamState, Usage, api_root, count
from ._errors import generic_kind, malformed, mentions_context_overflow, safe_token, status_error
from ._sse import iter_sse
from .openai import sampling

_SAFETY = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "LANGUAGE",
}
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", **{r: "content_filter" for r in _SAFETY}}

_STATUS_KINDS: dict[str, type[errors.ProviderError]] = {
    "UNAUTHENTICATED": errors.AuthenticationError,
    "PERMISSION_DENIED": errors.AuthenticationError,
    "NOT_FOUND": errors.ModelNotFound,
    "UNAVAILABLE": errors.ProviderOverloaded,
    "INTERNAL": errors.ProviderServerError,
    "DEADLINE_EXCEEDED": errors.ProviderServerError,
    "FAILED_PRECONDITION": errors.QuotaExceeded,
}


def gemini_usage(meta: Any) -> Usage:
    """Normalized usage from ``usageMetadata`` (missing counts are 0)."""
    if not isinstance(meta, dict):
        return Usage()
    prompt = count(meta.get("promptTokenCount"))
    cached = min(count(meta.get("cachedContentTokenCount")), prompt)
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=prompt - cached + count(meta.get("toolUsePromptTokenCount")),
        output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
        cached_tokens=cached,
        reasoning_tokens=thoughts,
    )


class GeminiAdapter(ProviderAdapter):
    """``POST /v1beta/models/{model}:generateContent`` with ``x-goog-api-key``; probe
    ``GET /v1beta/models``."""

    provider_type = "google"

    def _root(self) -> str:
        return api_root(self.config.base_url, "v1beta")

    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        if key is None:
            return {}
        return {"x-goog-api-key": key.get_secret_value()}

    def _model_path(self, model: ModelConfig) -> str:
        name = model.wire_name
        return f"{self._root()}/{name if name.startswith('models/') else 'models/' + name}"

    def _complete_url(self, model: ModelConfig) -> str:
        return f"{self._model_path(model)}:generateContent"

    def _stream_url(self, model: ModelConfig) -> str:
        return f"{self._model_path(model)}:streamGenerateContent?alt=sse"

    def _probe_path(self) -> str:
        return f"{self._root()}/models?pageSize=50"

    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict:
        params = sampling(request)
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if "temperature" in params:
            config["temperature"] = params["temperature"]
        if "top_p" in params:
            config["topP"] = params["top_p"]
        if "stop" in params:
            config["stopSequences"] = params["stop"]
        body: dict[str, Any] = {
            "contents": [
                {
                    "role": "model" if m.role == "assistant" else "user",
                    "parts": [{"text": m.content}],
                }
                for m in request.chat_messages()
            ],
            "generationConfig": config,
        }
        system = request.system_prompt()
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        return body

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return retry_only_state(headers, self._clock.now())

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            return None
        names = (str(m["name"]) for m in models if isinstance(m, dict) and "name" in m)
        return tuple(n.removeprefix("models/") for n in names)

    # -- replies -------------------------------------------------------------------------------
    def _parse_reply(self, body: Any, model: ModelConfig) -> tuple[str, StreamState]:
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        state = StreamState(provider_request_id=body.get("responseId"))
        text = self._read_chunk(body, state, model.id)
        if state.finish_reason is None and not body["candidates"]:
            raise KeyError("candidates")
        return text, state

    def _read_chunk(self, chunk: dict, state: StreamState, model_id: str) -> str:
        """Text of one response object; updates usage, id and finish reason in ``state``."""
        if "error" in chunk:
            raise self._classify_error(200, chunk, {}, model_id)
        state.provider_request_id = state.provider_request_id or chunk.get("responseId")
        if "usageMetadata" in chunk:
            self._set_usage(state, gemini_usage(chunk["usageMetadata"]))
        block = (chunk.get("promptFeedback") or {}).get("blockReason")
        candidates = chunk.get("candidates") or []
        if block and not candidates:
            self._finish(state, "SAFETY", raw=str(block))
            return ""
        if not candidates:
            return ""
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(
            p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")
        )
        if candidate.get("finishReason"):
            self._finish(state, str(candidate["finishReason"]))
        return text

    def _finish(self, state: StreamState, reason: str, raw: str | None = None) -> None:
        state.raw_finish_reason = raw or reason
        state.finish_reason = FINISH_REASONS.get(reason, "other")
        state.completed = True

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str]:
        async for event in iter_sse(lines):
            chunk = self._decode_event(event.data, model.id)
            if not isinstance(chunk, dict):
                raise malformed(self.name, model.id, "stream chunk is not an object")
            text = self._read_chunk(chunk, state, model.id)
            if text:
                yield text
        # the stream ends when the connection closes; ``completed`` says a finishReason arrived

    # -- errors --------------------------------------------------------------------------------
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        if status == 200 and isinstance(code, int) and code >= 400:
            status = code  # an error object inside a 200 stream carries its own code
        rpc_status = safe_token(error.get("status"))
        reason = _error_reason(error)
        kind, retry_after_s = self._kind(status, rpc_status, reason, body, error.get("message"))
        if retry_after_s is None:
            retry_after_s = retry_after_from_headers(headers, self._clock.now())
        return status_error(
            status,
            provider=self.name,
            model_id=model_id,
            raw_type=reason or rpc_status,
            retry_after_s=retry_after_s,
            kind=kind,
        )

    def _kind(
        self, status: int, rpc_status: str | None, reason: str | None, body: Any, message: Any
    ) -> tuple[type[errors.ProviderError], float | None]:
        if reason == "API_KEY_INVALID" or (
            isinstance(message, str) and "api key not valid" in message.lower()
        ):
            return errors.AuthenticationError, None
        if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
            if gemini_is_daily_quota(body):
                return errors.QuotaExceeded, None
            return errors.RateLimited, gemini_retry_delay_s(body)
        if rpc_status == "INVALID_ARGUMENT" and mentions_context_overflow(message):
            return errors.ContextWindowExceeded, None
        kind = _STATUS_KINDS.get(rpc_status or "")
        if kind is None:
            kind = generic_kind(status) if status != 200 else errors.ProviderServerError
        return kind, None


def _error_reason(error: dict) -> str | None:
    """``ErrorInfo.reason`` (e.g. ``API_KEY_INVALID``) from an error's details."""
    details = error.get("details")
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("rpc.ErrorInfo"):
            return safe_token(detail.get("reason"))
    return None
