"""OpenAI Chat Completions on the wire (protocols.md section 1)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import _shape_openai
from ._engine import RateInfo
from ._shape import ShapeError
from ._text import Answer, split_for_stream, split_json
from ._wire import Call, Reply, WireError, dumps, go_duration, json_reply, random_id

name = "openai"
stream_content_type = b"text/event-stream; charset=utf-8"
_FINGERPRINT = "fp_emulator01"
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "invalid_request_error", 409: "conflict_error", 422: "invalid_request_error",
                429: "requests"}
_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout.",
}


def error(status: int, message: str | None = None, code: str | None = None, param: str | None = None,
          retry_after_s: float | None = None, rate: RateInfo | None = None) -> Reply:
    """The error body of OpenAI: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if status == 429 and code is None:
        code = "rate_limit_exceeded"
    if message is None:
        message = _MESSAGES.get(status, f"Request failed with status {status}.")
        if status == 429 and rate is not None:
            message = (f"Rate limit reached on requests per min (RPM): Limit {rate.limit_requests}, "
                       f"Used {rate.limit_requests - rate.remaining_requests}, Requested 1. "
                       f"Please try again in {go_duration(retry_after_s or 1.0)}.")
    headers = [(b"x-request-id", b"req_" + random_id(24).encode())]
    if rate is not None:
        headers += rate_headers(rate)
    if retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, int(-(-retry_after_s // 1)))).encode()))
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json_reply(status, body, headers)


def auth_error(problem: str) -> Reply:
    if problem == "missing":
        message = ("You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    else:
        message = ("Incorrect API key provided. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.")
    return error(401, message, code="invalid_api_key")


def api_key(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    if not value.lower().startswith("bearer "):
        return None
    return value[7:].strip() or None


def rate_headers(rate: RateInfo) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-requests", str(rate.limit_requests).encode()),
        (b"x-ratelimit-limit-tokens", str(rate.limit_tokens).encode()),
        (b"x-ratelimit-remaining-requests", str(rate.remaining_requests).encode()),
        (b"x-ratelimit-remaining-tokens", str(rate.remaining_tokens).encode()),
        (b"x-ratelimit-reset-requests", go_duration(rate.reset_requests_s).encode()),
        (b"x-ratelimit-reset-tokens", go_duration(rate.reset_tokens_s).encode()),
    ]


def success_headers(rate: RateInfo, now: datetime, latency_ms: int) -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", b"req_" + random_id(24).encode()),
            (b"openai-processing-ms", str(latency_ms).encode()),
            (b"openai-version", b"2020-10-01"), *rate_headers(rate)]


def parse(body: dict, query: dict[str, str]) -> Call:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(error(400, "you must provide a model parameter", param="model"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(error(400, "[] is too short - 'messages'", param="messages"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise WireError(error(400, "max_completion_tokens must be a positive integer",
                              param="max_completion_tokens"))
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    if _shape_openai.wanted(body, messages):
        try:
            conversation, prompt, shape = _shape_openai.read(body, messages)
        except ShapeError as exc:
            raise WireError(error(400, exc.message, code=exc.code, param=exc.param)) from None
        return Call("openai", model, prompt, conversation, max_tokens, stream, include_usage, shape=shape)
    texts = [m["content"] for m in messages]
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return Call("openai", model, users[-1] if users else texts[-1], "\n".join(texts), max_tokens,
                stream, include_usage)


def _usage(answer: Answer) -> dict:
    return {"prompt_tokens": answer.input_tokens, "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _finish(answer: Answer) -> str:
    if answer.truncated:
        return "length"
    return "tool_calls" if answer.tool_calls else "stop"


def _message(answer: Answer) -> dict[str, Any]:
    if not answer.tool_calls:
        return {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []}
    calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.text}}
             for c in answer.tool_calls]
    return {"role": "assistant", "content": answer.text or None, "tool_calls": calls, "refusal": None,
            "annotations": []}


def body(call: Call, answer: Answer) -> bytes:
    return dumps({
        "id": "chatcmpl-" + random_id(29), "object": "chat.completion", "created": int(time.time()),
        "model": call.model,
        "choices": [{"index": 0, "message": _message(answer), "logprobs": None,
                     "finish_reason": _finish(answer)}],
        "usage": _usage(answer), "service_tier": "default", "system_fingerprint": _FINGERPRINT,
    })


def _tool_deltas(answer: Answer) -> list[dict[str, Any]]:
    """Deltas of streamed tool calls: each call's id and name first (with empty arguments), then
    its arguments in pieces, by ``index``; the first delta also carries the role."""
    deltas: list[dict[str, Any]] = []
    for index, c in enumerate(answer.tool_calls):
        head = {"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}
        if index == 0:
            deltas.append({"role": "assistant", "content": answer.text or None, "tool_calls": [head],
                           "refusal": None})
        else:
            deltas.append({"tool_calls": [head]})
        deltas += [{"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                   for piece in split_json(c.text) if piece]
    return deltas


def frames(call: Call, answer: Answer) -> list[bytes]:
    """SSE events; the caller inserts a mid-stream fault after the first content frames."""
    base = {"id": "chatcmpl-" + random_id(29), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": call.model, "system_fingerprint": _FINGERPRINT}
    usage_null = {"usage": None} if call.include_usage else {}

    def event(delta: dict, finish: str | None) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                       "finish_reason": finish}], **usage_null}
        return b"data: " + dumps(chunk) + b"\n\n"

    if answer.tool_calls:
        out = [event(delta, None) for delta in _tool_deltas(answer)]
    else:
        pieces = split_json(answer.text) if call.shape is not None and answer.text.startswith("{") \
            else split_for_stream(answer.text)
        out = [event({"role": "assistant", "content": "", "refusal": None}, None)]
        out += [event({"content": piece}, None) for piece in pieces]
    out.append(event({}, _finish(answer)))
    if call.include_usage:
        out.append(b"data: " + dumps({**base, "choices": [], "usage": _usage(answer)}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def midstream_error() -> bytes:
    payload = {"error": {"message": "The server had an error while processing your request.",
                         "type": "server_error", "param": None, "code": None}}
    return b"data: " + dumps(payload) + b"\n\n"


def malformed_frame() -> bytes:
    return b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"delta":\n\n'


def models(catalog: list[str]) -> bytes:
    return dumps({"object": "list", "data": [
        {"id": m, "object": "model", "created": 1686935002, "owned_by": "system"} for m in catalog]})


def not_found(model: str) -> Reply:
    return error(404, f"The model `{model}` does not exist or you do not have access to it.",
                 code="model_not_found")
