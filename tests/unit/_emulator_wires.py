"""Raw requests and replies of the four wire protocols with tools, structured output and images, for
tests of the emulator (in process, through httpx's ASGI transport: no socket).

``send`` posts one request and reads the reply, plain or streamed, into a :class:`Reply` (text,
tool calls, finish reason, input tokens) the same way for every protocol; ``follow_up`` builds the
next turn of a tool conversation (the calls, then one tool result each) in the protocol's form.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from api_model_management.emulator import Engine, create_app

PROVIDERS = ["openai", "anthropic", "gemini", "ollama"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash",
          "ollama": "llama3.2"}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "hourly": {"type": "boolean"},
        "where": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                                     "lon": {"type": "number", "minimum": -180,
                                                             "maximum": 180}},
                  "required": ["lat", "lon"], "additionalProperties": False},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    },
    "required": ["city", "days", "where"],
    "additionalProperties": False,
}
CLOCK = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"],
         "additionalProperties": False}
TOOLS = {"get_weather": WEATHER, "get_time": CLOCK}
#: A strict structured-output schema (every property required, no additional ones).
REPORT = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "labels": {"type": "array", "items": {"enum": ["good", "bad", "ugly"]}},
        "detail": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"note": {"type": "string"}},
                                                "required": ["note"], "additionalProperties": False}]},
    },
    "required": ["title", "score", "labels", "detail"],
    "additionalProperties": False,
}
PROMPT = "What is the weather in Lisbon this week, and should I pack an umbrella?"


def png(width: int = 600, height: int = 400) -> bytes:
    """A real PNG of that size (drawn by Pillow)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Call:
    id: str | None
    name: str
    #: The arguments as sent: JSON text (OpenAI) or the JSON of the object the wire carries.
    arguments: str


@dataclass
class Reply:
    status: int
    text: str = ""
    calls: list[Call] = field(default_factory=list)
    finish: str | None = None
    input_tokens: int = 0
    body: Any = None

    def arguments(self) -> list[Any]:
        return [orjson.loads(c.arguments) for c in self.calls]


def path_of(provider: str, stream: bool) -> str:
    if provider == "openai":
        return "/v1/chat/completions"
    if provider == "anthropic":
        return "/v1/messages"
    if provider == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"/v1beta/models/{MODELS['gemini']}:{method}"
    return "/api/chat"


HEADERS = {"openai": {"authorization": "Bearer sk-test"},
           "anthropic": {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"},
           "gemini": {"x-goog-api-key": "sk-test"}, "ollama": {}}


def user(provider: str, text: str, images: tuple[bytes, ...] = ()) -> dict:
    """A user message with text and images in the protocol's form."""
    if provider == "openai":
        parts: list[dict] = [{"type": "text", "text": text}]
        parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(i)}"}} for i in images]
        return {"role": "user", "content": parts if images else text}
    if provider == "anthropic":
        blocks: list[dict] = [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                           "data": b64(i)}} for i in images]
        return {"role": "user", "content": [*blocks, {"type": "text", "text": text}] if images else text}
    if provider == "gemini":
        parts = [{"inlineData": {"mimeType": "image/png", "data": b64(i)}} for i in images]
        return {"role": "user", "parts": [*parts, {"text": text}]}
    message: dict = {"role": "user", "content": text}
    if images:
        message["images"] = [b64(i) for i in images]
    return message


def body_of(provider: str, messages: list[dict], *, stream: bool = False, tools: dict | None = None,
            extra: dict | None = None) -> dict:
    """A request body: messages, optional tools (name -> parameters schema), extra fields."""
    if provider == "openai":
        body: dict = {"model": MODELS[provider], "messages": messages}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        if tools:
            body["tools"] = [{"type": "function", "function": {"name": n, "description": f"The {n} tool",
                                                               "parameters": s}} for n, s in tools.items()]
    elif provider == "anthropic":
        body = {"model": MODELS[provider], "max_tokens": 1024, "messages": messages, "stream": stream}
        if tools:
            body["tools"] = [{"name": n, "description": f"The {n} tool", "input_schema": s}
                             for n, s in tools.items()]
    elif provider == "gemini":
        body = {"contents": messages}
        if tools:
            body["tools"] = [{"functionDeclarations": [{"name": n, "description": f"The {n} tool",
                                                        "parametersJsonSchema": s} for n, s in tools.items()]}]
    else:
        body = {"model": MODELS[provider], "messages": messages, "stream": stream}
        if tools:
            body["tools"] = [{"type": "function", "function": {"name": n, "parameters": s}}
                             for n, s in tools.items()]
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def send(engine: Engine, provider: str, body: dict, *, stream: bool = False,
         headers: dict | None = None) -> Reply:
    return asyncio.run(send_async(engine, provider, body, stream=stream, headers=headers))


async def send_async(engine: Engine, provider: str, body: dict, *, stream: bool = False,
                     headers: dict | None = None) -> Reply:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        return await _post(client, provider, body, stream, headers)


def send_all(engine: Engine, provider: str, requests: list[tuple[dict, bool]],
             headers: dict | None = None) -> list[Reply]:
    """Several ``(body, stream)`` requests, one after the other, through one client."""
    async def run() -> list[Reply]:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            return [await _post(client, provider, body, stream, headers) for body, stream in requests]

    return asyncio.run(run())


async def _post(client: httpx.AsyncClient, provider: str, body: dict, stream: bool,
                headers: dict | None) -> Reply:
    response = await client.post(path_of(provider, stream), json=body,
                                 headers={**HEADERS[provider], **(headers or {})})
    if response.status_code != 200:
        return Reply(response.status_code, body=response.json())
    if not stream:
        return _READ_PLAIN[provider](response.json())
    return _READ_STREAM[provider](response.text)


def _openai_plain(body: dict) -> Reply:
    choice = body["choices"][0]
    message = choice["message"]
    calls = [Call(c["id"], c["function"]["name"], c["function"]["arguments"])
             for c in message.get("tool_calls") or []]
    return Reply(200, message["content"] or "", calls, choice["finish_reason"],
                 body["usage"]["prompt_tokens"], body)


def _sse(raw: str) -> list[tuple[str | None, str]]:
    events = []
    for block in re.split(r"\r?\n\r?\n", raw.strip()):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((name, "\n".join(data)))
    return events


def _openai_stream(raw: str) -> Reply:
    reply = Reply(200)
    calls: dict[int, Call] = {}
    events = [data for _, data in _sse(raw)]
    assert events[-1] == "[DONE]"
    for data in events[:-1]:
        chunk = orjson.loads(data)
        if chunk.get("usage"):
            reply.input_tokens = chunk["usage"]["prompt_tokens"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            reply.text += delta.get("content") or ""
            for piece in delta.get("tool_calls") or []:
                call = calls.setdefault(piece["index"], Call(None, "", ""))
                call.id = piece.get("id") or call.id
                call.name += piece.get("function", {}).get("name") or ""
                call.arguments += piece.get("function", {}).get("arguments") or ""
            reply.finish = choice["finish_reason"] or reply.finish
    reply.calls = [calls[i] for i in sorted(calls)]
    return reply


def _anthropic_plain(body: dict) -> Reply:
    text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
    calls = [Call(b["id"], b["name"], orjson.dumps(b["input"]).decode())
             for b in body["content"] if b["type"] == "tool_use"]
    return Reply(200, text, calls, body["stop_reason"], body["usage"]["input_tokens"], body)


def _anthropic_stream(raw: str) -> Reply:
    reply = Reply(200)
    blocks: dict[int, Call] = {}
    events = _sse(raw)
    assert events[-1][0] == "message_stop"
    for name, data in events:
        event = orjson.loads(data)
        assert event["type"] == name
        if name == "message_start":
            reply.input_tokens = event["message"]["usage"]["input_tokens"]
        elif name == "content_block_start" and event["content_block"]["type"] == "tool_use":
            block = event["content_block"]
            blocks[event["index"]] = Call(block["id"], block["name"], "")
        elif name == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                reply.text += delta["text"]
            else:
                blocks[event["index"]].arguments += delta["partial_json"]
        elif name == "message_delta":
            reply.finish = event["delta"]["stop_reason"]
    reply.calls = [blocks[i] for i in sorted(blocks)]
    return reply


def _gemini_chunk(reply: Reply, chunk: dict) -> None:
    candidate = chunk["candidates"][0]
    for part in candidate["content"].get("parts", []):
        if "functionCall" in part:
            call = part["functionCall"]
            reply.calls.append(Call(call.get("id"), call["name"], orjson.dumps(call["args"]).decode()))
        else:
            reply.text += part.get("text", "")
    reply.finish = candidate.get("finishReason") or reply.finish
    reply.input_tokens = chunk["usageMetadata"]["promptTokenCount"]


def _gemini_plain(body: dict) -> Reply:
    reply = Reply(200, body=body)
    _gemini_chunk(reply, body)
    return reply


def _gemini_stream(raw: str) -> Reply:
    reply = Reply(200)
    for _, data in _sse(raw):
        _gemini_chunk(reply, orjson.loads(data))
    return reply


def _ollama_line(reply: Reply, line: dict) -> None:
    message = line["message"]
    reply.text += message.get("content") or ""
    reply.calls += [Call(c.get("id"), c["function"]["name"], orjson.dumps(c["function"]["arguments"]).decode())
                    for c in message.get("tool_calls") or []]
    if line["done"]:
        reply.finish, reply.input_tokens = line["done_reason"], line["prompt_eval_count"]


def _ollama_plain(body: dict) -> Reply:
    reply = Reply(200, body=body)
    _ollama_line(reply, body)
    return reply


def _ollama_stream(raw: str) -> Reply:
    reply = Reply(200)
    lines = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    assert lines[-1]["done"] and not any(line["done"] for line in lines[:-1])
    for line in lines:
        _ollama_line(reply, line)
    return reply


_READ_PLAIN = {"openai": _openai_plain, "anthropic": _anthropic_plain, "gemini": _gemini_plain,
               "ollama": _ollama_plain}
_READ_STREAM = {"openai": _openai_stream, "anthropic": _anthropic_stream, "gemini": _gemini_stream,
                "ollama": _ollama_stream}
#: How each protocol reports a tool call, and a plain end.
TOOL_FINISH = {"openai": "tool_calls", "anthropic": "tool_use", "gemini": "STOP", "ollama": "stop"}
TEXT_FINISH = {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP", "ollama": "stop"}


def follow_up(provider: str, reply: Reply, result: str = "18 degrees, light rain") -> list[dict]:
    """The assistant turn with ``reply``'s calls, then one tool result per call."""
    if provider == "openai":
        calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                 for c in reply.calls]
        return [{"role": "assistant", "content": reply.text or None, "tool_calls": calls},
                *({"role": "tool", "tool_call_id": c.id, "content": result} for c in reply.calls)]
    if provider == "anthropic":
        blocks: list[dict] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": orjson.loads(c.arguments)}
                   for c in reply.calls]
        results = [{"type": "tool_result", "tool_use_id": c.id, "content": result} for c in reply.calls]
        return [{"role": "assistant", "content": blocks}, {"role": "user", "content": results}]
    if provider == "gemini":
        calls = [{"functionCall": {"name": c.name, "args": orjson.loads(c.arguments)}} for c in reply.calls]
        responses = [{"functionResponse": {"name": c.name, "response": {"result": result}}} for c in reply.calls]
        return [{"role": "model", "parts": calls}, {"role": "user", "parts": responses}]
    calls = [{"function": {"name": c.name, "arguments": orjson.loads(c.arguments)}} for c in reply.calls]
    return [{"role": "assistant", "content": reply.text, "tool_calls": calls},
            *({"role": "tool", "tool_name": c.name, "content": result} for c in reply.calls)]
