"""OpenAI Chat Completions (protocols.md §1).

Usage: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``, so
``input_tokens = prompt_tokens - cached_tokens``; ``completion_tokens`` already includes reasoning.

Tools, tool choice, parallel tool calls, images and ``response_format`` go as they are (the
request's shape is OpenAI's); tool-call ids longer than OpenAI's 40 characters are shortened
(``_tools.openai_id``). A stream's ``tool_calls`` deltas are assembled by index: a call is whole
when the next index begins or the choice finishes. A ``refusal`` (structured outputs) with no
content is ``content_filter``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import SecretStr

from .. import errors
from .._request import FinishReason, Message, ModelRequest, ToolCall
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import openai_rate_limit_state, suggested_wait_s
from ._base import ProviderAdapter, StreamState, Usage, api_root, count, ids_of_data_list
from ._errors import generic_kind, malformed, mentions_context_overflow, safe_token, status_error
from ._sse import iter_sse
from ._tools import ToolCallAssembler, openai_id

logger = logging.getLogger(__name__)

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


def openai_usage(usage: Any) -> Usage:
    """Normalized usage from an OpenAI ``usage`` object (absent → zeros)."""
    if not isinstance(usage, dict):
        return Usage()
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    cached = count(prompt_details.get("cached_tokens"))
    prompt = count(usage.get("prompt_tokens"))
    return Usage(
        input_tokens=max(0, prompt - cached),
        output_tokens=count(usage.get("completion_tokens")),
        cached_tokens=min(cached, prompt),
        reasoning_tokens=count(completion_details.get("reasoning_tokens")),
    )


def sampling(request: ModelRequest) -> dict[str, Any]:
    """``temperature``, ``top_p``, ``stop`` (as a list) and ``seed`` from the request's
    parameters (checked by the request)."""
    return request.sampling()


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Messages in OpenAI's form, system prompt first."""
    messages: list[dict[str, Any]] = []
    system = request.system_prompt()
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(_wire_message(m) for m in request.chat_messages())
    return messages


def _wire_message(message: Message) -> dict[str, Any]:
    out = message.to_openai()
    if message.tool_calls:
        out["tool_calls"] = [{**c.to_openai(), "id": openai_id(c.id)} for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = openai_id(message.tool_call_id)
    return out


def tool_fields(request: ModelRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice``, ``parallel_tool_calls`` (only with tools: OpenAI refuses them
    alone) and ``response_format``."""
    out: dict[str, Any] = {}
    if request.tools:
        out["tools"] = [t.to_openai() for t in request.tools]
        choice = request.tool_choice
        if choice is not None:
            out["tool_choice"] = choice if isinstance(choice, str) else choice.to_openai()
        if request.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None:
        out["response_format"] = request.response_format.to_openai()
    return out


class OpenAIAdapter(ProviderAdapter):
    """``POST /v1/chat/completions`` with Bearer auth; probe ``GET /v1/models``."""

    provider_type = "openai"

    def _root(self) -> str:
        return api_root(self.config.base_url, "v1")

    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        if key is None:
            return {}
        return {"authorization": f"Bearer {key.get_secret_value()}"}

    def _complete_url(self, model: ModelConfig) -> str:
        return f"{self._root()}/chat/completions"

    _stream_url = _complete_url

    def _probe_path(self) -> str:
        return f"{self._root()}/models"

    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict:
        body: dict[str, Any] = {
            "model": model.wire_name,
            "messages": chat_messages(request),
            "max_completion_tokens": request.max_tokens,
            **sampling(request),
            **tool_fields(request),
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-request-id")

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return openai_rate_limit_state(headers, self._clock.now())

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        return ids_of_data_list(body)

    # -- replies -------------------------------------------------------------------------------
    def _parse_reply(self, body: Any, model: ModelConfig, state: StreamState) -> str:
        choice = body["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        state.provider_request_id = body.get("id")
        self._finish(state, choice.get("finish_reason"))
        if message.get("refusal") and not content:
            state.finish_reason = "content_filter"
        self._set_usage(state, openai_usage(body.get("usage")))
        state.tool_calls = [self._reply_call(c, model.id) for c in message.get("tool_calls") or ()]
        return content or ""

    def _reply_call(self, call: Any, model_id: str) -> ToolCall:
        function = call["function"]
        return self._tool_call(model_id, call["id"], function["name"], function["arguments"])

    def _finish(self, state: StreamState, raw: Any) -> None:
        if raw is None:
            return
        state.raw_finish_reason = str(raw)
        state.finish_reason = FINISH_REASONS.get(str(raw), "other")

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str | ToolCall]:
        calls = ToolCallAssembler(self.config.max_response_bytes,
                                  lambda: self._too_large(model.id, 200, "streamed tool calls"))
        async for event in iter_sse(lines):
            if event.data.strip() == "[DONE]":
                state.completed = True
                break
            chunk = self._decode_event(event.data, model.id)
            if not isinstance(chunk, dict):
                raise malformed(self.name, model.id, "stream chunk is not an object")
            if chunk.get("error"):
                raise self._error_object(None, chunk["error"], {}, model.id)
            state.provider_request_id = state.provider_request_id or chunk.get("id")
            if chunk.get("usage"):
                self._set_usage(state, openai_usage(chunk["usage"]))
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                if not isinstance(delta, dict):
                    raise malformed(self.name, model.id, "stream delta is not an object")
                text = delta.get("content")
                if isinstance(text, str) and text:
                    yield text
                for done in self._call_deltas(delta.get("tool_calls"), calls, model.id):
                    yield done
                if delta.get("refusal") and not state.tool_calls:
                    state.extra["refusal"] = True
                if choice.get("finish_reason") is not None:
                    self._finish(state, choice["finish_reason"])
                    for call in calls.take_all():
                        yield self._tool_call(model.id, *call)
        for call in calls.take_all():  # a stream that ended without a finish reason
            yield self._tool_call(model.id, *call)
        if state.extra.get("refusal") and state.finish_reason in ("stop", None):
            state.finish_reason = "content_filter"

    def _call_deltas(self, deltas: Any, calls: ToolCallAssembler,
                     model_id: str) -> list[ToolCall]:
        """Fold one chunk's ``tool_calls`` deltas into ``calls``; the calls they complete (an
        index begun closes the ones before it)."""
        if not deltas:
            return []
        if not isinstance(deltas, list):
            raise malformed(self.name, model_id, "tool_calls delta is not a list")
        done: list[ToolCall] = []
        for delta in deltas:
            index = delta.get("index") if isinstance(delta, dict) else None
            if not isinstance(index, int) or isinstance(index, bool):
                raise malformed(self.name, model_id, "tool_calls delta has no index")
            function = delta.get("function") or {}
            if index not in calls:
                done.extend(self._tool_call(model_id, *c) for c in calls.take_before(index))
                call_id, name = delta.get("id"), function.get("name")
                if not isinstance(call_id, str) or not isinstance(name, str):
                    raise malformed(self.name, model_id, "a tool call began without id and name")
                calls.start(index, call_id, name)
            fragment = function.get("arguments")
            if isinstance(fragment, str) and fragment:
                calls.add(index, fragment)
        return done

    # -- errors --------------------------------------------------------------------------------
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        return self._error_object(
            status, error if isinstance(error, dict) else {}, headers, model_id
        )

    def _error_object(
        self, status: int | None, error: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        """Classify an OpenAI ``error`` object (HTTP error body or mid-stream ``data: {error}``)."""
        error = error if isinstance(error, dict) else {}
        code = safe_token(error.get("code"))
        etype = safe_token(error.get("type"))
        raw = code or etype
        kind = _kind(status, code, etype, error.get("message"))
        retry_after_s = suggested_wait_s(self._rate_limit(headers)) if headers else None
        return status_error(
            status or 200,
            provider=self.name,
            model_id=model_id,
            raw_type=raw,
            retry_after_s=retry_after_s,
            kind=kind,
        )


def _kind(
    status: int | None, code: str | None, etype: str | None, message: Any
) -> type[errors.ProviderError]:
    tokens = {code, etype}
    if "insufficient_quota" in tokens:
        return errors.QuotaExceeded
    if "context_length_exceeded" in tokens or (
        status == 400 and mentions_context_overflow(message)
    ):
        return errors.ContextWindowExceeded
    if tokens & {"content_filter", "content_policy_violation"}:
        return errors.ContentPolicyViolation
    if "invalid_api_key" in tokens:
        return errors.AuthenticationError
    if "model_not_found" in tokens:
        return errors.ModelNotFound
    if tokens & {"rate_limit_exceeded", "requests", "tokens"}:
        return errors.RateLimited
    if status is None:  # a mid-stream error with an unknown type: the server gave up
        return (
            errors.ProviderServerError
            if etype != "invalid_request_error"
            else errors.InvalidRequest
        )
    return generic_kind(status)
