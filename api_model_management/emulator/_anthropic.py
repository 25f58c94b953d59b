"""Anthropic Messages on the wire (protocols.md section 2)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import _shape_anthropic
from ._engine import RateInfo
from ._shape import ShapeError
from ._text import Answer, split_for_stream, split_json
from ._wire import (
    Call,
    Reply,
    WireError,
    dumps,
    json_reply,
    random_id,
    request_id,
    retry_after_header,
    rfc3339,
    text_of,
)

name = "anthropic"
stream_content_type = b"text/event-stream; charset=utf-8"
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          403: "permission_error", 404: "not_found_error", 413: "request_too_large",
          429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
_MESSAGES = {429: "Number of request tokens has exceeded your per-minute rate limit",
             500: "Internal server error", 529: "Overloaded", 504: "Request timed out"}


def error(status: int, message: str | None = None, retry_after_s: float | None = None,
          rate: RateInfo | None = None, now: datetime | None = None) -> Reply:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` with a ``request-id`` header."""
    rid = request_id()
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message or _MESSAGES.get(status, kind)},
            "request_id": rid.decode()}
    headers = [(b"request-id", rid)]
    if rate is not None and now is not None:
        headers += rate_headers(rate, now)
    if retry_after_s is not None:
        headers.append((b"retry-after", retry_after_header(retry_after_s)))
    return json_reply(status, body, headers)


def auth_error(problem: str) -> Reply:
    message = "x-api-key header is required" if problem == "missing" else "invalid x-api-key"
    return error(401, message)


def api_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip() or None
    return None


def version_error(headers: Mapping[str, str]) -> Reply | None:
    if headers.get("anthropic-version", "").strip():
        return None
    return error(400, "anthropic-version: header is required")


def rate_headers(rate: RateInfo, now: datetime) -> list[tuple[bytes, bytes]]:
    req_reset = rfc3339(now, rate.reset_requests_s).encode()
    tok_reset = rfc3339(now, rate.reset_tokens_s).encode()
    limit_t, remaining_t = str(rate.limit_tokens).encode(), str(rate.remaining_tokens).encode()
    headers = [
        (b"anthropic-ratelimit-requests-limit", str(rate.limit_requests).encode()),
        (b"anthropic-ratelimit-requests-remaining", str(rate.remaining_requests).encode()),
        (b"anthropic-ratelimit-requests-reset", req_reset),
    ]
    for bucket in (b"tokens", b"input-tokens", b"output-tokens"):
        prefix = b"anthropic-ratelimit-" + bucket
        headers += [(prefix + b"-limit", limit_t), (prefix + b"-remaining", remaining_t),
                    (prefix + b"-reset", tok_reset)]
    return headers


def success_headers(rate: RateInfo, now: datetime, latency_ms: int) -> list[tuple[bytes, bytes]]:
    return [(b"request-id", request_id()), *rate_headers(rate, now)]


def parse(body: dict, query: dict[str, str]) -> Call:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(error(400, "model: Field required"))
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise WireError(error(400, "max_tokens: Field required"))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise WireError(error(400, "max_tokens: Input should be a valid positive integer"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(error(400, "messages: Field required"))
    if not any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
        raise WireError(error(400, "messages: at least one user message is required"))
    stream = body.get("stream") is True
    if _shape_anthropic.wanted(body, messages):
        try:
            conversation, prompt, shape = _shape_anthropic.read(body, messages)
        except ShapeError as exc:
            raise WireError(error(400, exc.message)) from None
        return Call("anthropic", model, prompt, conversation, max_tokens, stream, shape=shape)
    texts = [text_of(body.get("system"))] if body.get("system") else []
    texts += [m["content"] for m in messages]
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return Call("anthropic", model, users[-1], "\n".join(texts), max_tokens, stream)


def _usage(answer: Answer) -> dict:
    return {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}


def _stop_reason(answer: Answer) -> str:
    if answer.truncated:
        return "max_tokens"
    return "tool_use" if answer.tool_calls else "end_turn"


def _content(answer: Answer) -> list[dict[str, Any]]:
    """Content blocks: the text (unless a tool call has none before it), then each tool_use."""
    blocks: list[dict[str, Any]] = []
    if answer.text or not answer.tool_calls:
        blocks.append({"type": "text", "text": answer.text})
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                "input": c.arguments if c.arguments is not None else {}} for c in answer.tool_calls]
    return blocks


def body(call: Call, answer: Answer) -> bytes:
    return dumps({
        "id": "msg_" + random_id(24), "type": "message", "role": "assistant", "model": call.model,
        "content": _content(answer), "stop_reason": _stop_reason(answer), "stop_sequence": None,
        "usage": _usage(answer),
    })


def _event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def frames(call: Call, answer: Answer) -> list[bytes]:
    start: dict[str, Any] = {"id": "msg_" + random_id(24), "type": "message", "role": "assistant", "content": [],
             "model": call.model, "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1,
                       "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
    out = [_event("message_start", {"type": "message_start", "message": start})]
    for index, (block, deltas) in enumerate(_streamed_blocks(answer)):
        out.append(_event("content_block_start", {"type": "content_block_start", "index": index,
                                                  "content_block": block}))
        if index == 0:
            out.append(_event("ping", {"type": "ping"}))
        out += [_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": delta}) for delta in deltas]
        out.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    out += [_event("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                                     "usage": {"output_tokens": answer.output_tokens}}),
            _event("message_stop", {"type": "message_stop"})]
    return out


def _streamed_blocks(answer: Answer) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each content block as it starts (empty) and its deltas: ``text_delta`` pieces of the text,
    ``input_json_delta`` pieces of a tool's input (the first one empty, as the API sends)."""
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.text or not answer.tool_calls:
        blocks.append(({"type": "text", "text": ""},
                       [{"type": "text_delta", "text": p} for p in split_for_stream(answer.text)]))
    for c in answer.tool_calls:
        pieces = ["", *(p for p in split_json(c.text) if p)]
        blocks.append(({"type": "tool_use", "id": c.id, "name": c.name, "input": {}},
                       [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
    return blocks


def midstream_error() -> bytes:
    return _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def malformed_frame() -> bytes:
    return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{\n\n'


def models(catalog: list[str]) -> bytes:
    data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
             "created_at": "2025-09-29T00:00:00Z"} for m in catalog]
    return dumps({"data": data, "has_more": False, "first_id": catalog[0] if catalog else None,
                  "last_id": catalog[-1] if catalog else None})


def not_found(model: str) -> Reply:
    return error(404, f"model: {model}")
