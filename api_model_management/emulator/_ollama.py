"""Ollama's native chat API on the wire (protocols.md section 4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from . import _shape_ollama
from ._engine import RateInfo
from ._shape import ShapeError
from ._text import Answer, split_for_stream
from ._wire import Call, Reply, WireError, dumps, json_reply

name = "ollama"
stream_content_type = b"application/x-ndjson"
JSON_UTF8 = b"application/json; charset=utf-8"
VERSION = "0.5.1"
_MESSAGES = {429: "too many requests, please slow down",
             500: "the model failed to generate a response",
             503: "server busy, please try again.  maximum pending requests exceeded"}


def error(status: int, message: str | None = None, **_: object) -> Reply:
    """``{"error": "<string>"}``: Ollama has no error types, no retry hints, no rate headers."""
    return json_reply(status, {"error": message or _MESSAGES.get(status, f"error {status}")},
                      content_type=JSON_UTF8)


def success_headers(rate: RateInfo, now: datetime, latency_ms: int) -> list[tuple[bytes, bytes]]:
    return []


def parse(body: dict, query: dict[str, str]) -> Call:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(error(400, "model is required"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(error(400, "messages is required"))
    options = body.get("options") or {}
    max_tokens = options.get("num_predict") if isinstance(options, dict) else None
    if not isinstance(max_tokens, int) or max_tokens < 1:
        max_tokens = None
    stream = body.get("stream", True) is not False
    if _shape_ollama.wanted(body, messages):
        try:
            conversation, prompt, shape = _shape_ollama.read(body, messages)
        except ShapeError as exc:
            raise WireError(error(400, exc.message)) from None
        return Call("ollama", model, prompt, conversation, max_tokens, stream, shape=shape)
    texts = [m.get("content") or "" for m in messages]
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return Call("ollama", model, users[-1] if users else texts[-1], "\n".join(texts), max_tokens, stream)


def _created_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _message(answer: Answer, content: str, with_calls: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    calls = [{"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}}
             for i, c in enumerate(answer.tool_calls) if c.arguments is not None]
    if calls and with_calls:
        message["tool_calls"] = calls
    return message


def _final(call: Call, answer: Answer, content: str, latency_ns: int, with_calls: bool = True) -> dict:
    return {"model": call.model, "created_at": _created_at(),
            "message": _message(answer, content, with_calls), "done": True,
            "done_reason": "length" if answer.truncated else "stop",
            "total_duration": latency_ns + 1_000_000, "load_duration": 1_000_000,
            "prompt_eval_count": answer.input_tokens, "prompt_eval_duration": latency_ns // 4,
            "eval_count": answer.output_tokens, "eval_duration": latency_ns - latency_ns // 4}


def body(call: Call, answer: Answer, latency_ns: int = 1_000_000) -> bytes:
    return dumps(_final(call, answer, answer.text, latency_ns))


def frames(call: Call, answer: Answer, latency_ns: int = 1_000_000) -> list[bytes]:
    """Text pieces, then (with tool calls) one chunk carrying them whole, then the final line."""
    pieces = split_for_stream(answer.text) if answer.text or not answer.tool_calls else []
    out = [dumps({"model": call.model, "created_at": _created_at(),
                  "message": {"role": "assistant", "content": piece}, "done": False}) + b"\n"
           for piece in pieces]
    message = _message(answer, "", True)
    if "tool_calls" in message:
        out.append(dumps({"model": call.model, "created_at": _created_at(), "message": message,
                          "done": False}) + b"\n")
    out.append(dumps(_final(call, answer, "", latency_ns, with_calls=False)) + b"\n")
    return out


def midstream_error() -> bytes:
    return dumps({"error": "an error was encountered while running the model: unexpected EOF"}) + b"\n"


def malformed_frame() -> bytes:
    return b'{"model":"broken","message":{"role":"assistant","content":\n'


def tags(catalog: list[str]) -> bytes:
    return dumps({"models": [{
        "name": f"{m}:latest" if ":" not in m else m, "model": f"{m}:latest" if ":" not in m else m,
        "modified_at": "2025-05-04T17:37:44.706015396-07:00", "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                    "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}} for m in catalog]})


def not_found(model: str) -> Reply:
    return error(404, f"model '{model}' not found")
