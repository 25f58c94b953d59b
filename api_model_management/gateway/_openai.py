"""OpenAI's Chat Completions on the wire: a request body in, a completion, its SSE chunks and
errors out, in the shapes OpenAI's SDKs parse.

Fields the system honours are mapped (messages with tools, tool results and images; tools,
``tool_choice``, ``parallel_tool_calls``, ``response_format``; ``temperature``, ``top_p``,
``stop``, ``seed``; ``max_completion_tokens`` / ``max_tokens``; ``stream`` and
``stream_options.include_usage``; ``metadata``). Fields no provider behind the gateway can honour
as asked (``n`` above 1, ``logprobs``, audio output) are refused with a 400 naming them; other
unknown fields are ignored and named in the ``x-amm-ignored-fields`` response header.
"""

from __future__ import annotations

from typing import Any

from .._request import ModelResponse, ToolCall
from ._wire import (
    OPENAI_FINISH,
    WireRequest,
    bad_request,
    fingerprint,
    flag,
    model_name,
    require_object,
    string_metadata,
)

#: Top-level fields mapped onto the request.
_HONOURED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "seed", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "metadata", "user", "store", "service_tier",
})
#: Fields whose request cannot be honoured as asked when they are set to anything but these.
_NEUTRAL = {"n": (None, 1), "logprobs": (None, False), "top_logprobs": (None, 0),
            "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,)}
#: Message fields that carry nothing the providers use (dropped, not refused).
_MESSAGE_EXTRAS = ("name", "refusal", "audio", "annotations")


def parse_chat(body: Any) -> WireRequest:
    """The body of ``POST /v1/chat/completions`` as a :class:`WireRequest`; ``GatewayRefusal``
    (400, naming the field) for what cannot be served."""
    body = require_object(body)
    model = model_name(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty array", param="messages")
    for name, allowed in _NEUTRAL.items():
        if name in body and body[name] not in allowed:
            raise bad_request(f"{name} is not supported by this gateway (leave it unset)",
                              param=name, code="unsupported_parameter")
    stream = flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("stream_options must be an object", param="stream_options")
    include_usage = bool(options and options.get("include_usage"))
    fields: dict[str, Any] = {"messages": [_message(m, i) for i, m in enumerate(messages)]}
    for key in ("tools", "tool_choice", "parallel_tool_calls", "response_format"):
        if body.get(key) is not None:
            fields[key] = body[key]
    parameters = {k: body[k] for k in ("temperature", "top_p", "stop", "seed")
                  if body.get(k) is not None}
    if parameters:
        fields["parameters"] = parameters
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    ignored = sorted(k for k in body if k not in _HONOURED and k not in _NEUTRAL)
    return WireRequest(model, fields, stream=stream, include_usage=include_usage,
                       metadata=string_metadata(body), ignored=ignored)


def _message(message: Any, index: int) -> Any:
    """OpenAI's newer forms mapped to the request's: ``developer`` is a system message; fields
    the providers do not use are dropped."""
    if not isinstance(message, dict):
        return message  # the request's own validation names it
    out = {k: v for k, v in message.items() if k not in _MESSAGE_EXTRAS}
    if out.get("role") == "developer":
        out["role"] = "system"
    if out.get("role") == "assistant" and out.get("content") == "":
        out["content"] = None if out.get("tool_calls") else ""
    return out


# -- responses ------------------------------------------------------------------------------------
def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def finish_reason(response_reason: str) -> str:
    return OPENAI_FINISH.get(response_reason, "stop")


def usage(response: ModelResponse) -> dict[str, Any]:
    return {
        "prompt_tokens": response.input_tokens,
        "completion_tokens": response.output_tokens,
        "total_tokens": response.input_tokens + response.output_tokens,
        "prompt_tokens_details": {"cached_tokens": response.cached_tokens},
    }


def completion(response: ModelResponse, created: int) -> dict[str, Any]:
    """The Chat Completions body of ``response``."""
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None,
                               "refusal": None}
    if response.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in response.tool_calls]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": completion_id(response.request_id),
        "object": "chat.completion",
        "created": created,
        "model": response.model_id,
        "system_fingerprint": fingerprint(response.model_id),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(response.finish_reason)}],
        "usage": usage(response),
    }


class ChunkWriter:
    """The ``chat.completion.chunk`` objects of one streamed reply, in order."""

    def __init__(self, request_id: str, model_id: str, created: int, include_usage: bool) -> None:
        self._base = {"id": completion_id(request_id), "object": "chat.completion.chunk",
                      "created": created, "model": model_id,
                      "system_fingerprint": fingerprint(model_id)}
        self._include_usage = include_usage
        self._tool_index = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk = {**self._base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}]}
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def first(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def text(self, delta: str) -> dict[str, Any]:
        return self._chunk({"content": delta})

    def tool_call(self, call: ToolCall) -> dict[str, Any]:
        item = {"index": self._tool_index, **call.to_openai()}
        self._tool_index += 1
        return self._chunk({"tool_calls": [item]})

    def last(self, response: ModelResponse) -> list[dict[str, Any]]:
        """The chunk with the finish reason, then (when asked for) the usage chunk, whose
        ``usage`` also carries ``cost_usd``: what the request cost (a number, USD)."""
        out = [self._chunk({}, finish_reason(response.finish_reason))]
        if self._include_usage:  # with the request's cost in USD, an extra field of usage
            out.append({**self._base, "choices": [],
                        "usage": {**usage(response), "cost_usd": float(response.cost_usd)}})
        return out


# -- errors ---------------------------------------------------------------------------------------
_TYPES = {
    "invalid_request": "invalid_request_error", "authentication": "invalid_request_error",
    "permission": "invalid_request_error", "not_found": "invalid_request_error",
    "request_too_large": "invalid_request_error", "rate_limit": "rate_limit_error",
    "budget": "insufficient_quota", "overloaded": "server_error", "upstream": "server_error",
    "timeout": "server_error", "internal": "server_error",
}


def error_body(kind: str, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": _TYPES.get(kind, "server_error"),
                      "param": param, "code": code}}
