"""Anthropic's Messages API on the wire: a request body in, a message, its stream events and
errors out, in the shapes Anthropic's SDKs parse.

The request is mapped onto the system's (OpenAI-shaped) request: ``system`` (a string or text
blocks) is the system prompt; content blocks ``text`` and ``image`` (base64 or URL) become
parts, an assistant's ``tool_use`` blocks its tool calls, a user's ``tool_result`` blocks tool
messages (before the rest of that turn); ``tools`` (``input_schema``), ``tool_choice``
(``auto``/``any``/``tool``/``none``, ``disable_parallel_tool_use``), ``stop_sequences``,
``temperature``, ``top_p``, ``max_tokens`` (required, as Anthropic's), ``stream`` and
``metadata``. ``thinking`` blocks of earlier turns are dropped; other unknown fields are ignored
and named in the ``x-amm-ignored-fields`` response header.
"""

from __future__ import annotations

from typing import Any

import orjson

from .._request import ModelResponse, ToolCall
from ._wire import ANTHROPIC_STOP, WireRequest, bad_request, model_name, require_object

_HONOURED = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences",
    "tools", "tool_choice", "stream", "metadata", "top_k", "service_tier",
})


def parse_messages(body: Any) -> WireRequest:
    """The body of ``POST /v1/messages`` as a :class:`WireRequest`; ``GatewayRefusal`` (400,
    naming the field) for what cannot be served."""
    body = require_object(body)
    model = model_name(body)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise bad_request("max_tokens is required: a positive integer", param="max_tokens")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise bad_request("messages must be a non-empty array", param="messages")
    messages: list[Any] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        messages.extend(_turn(turn, i))
    fields: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
    parameters = {k: body[k] for k in ("temperature", "top_p") if body.get(k) is not None}
    if body.get("stop_sequences"):
        parameters["stop"] = body["stop_sequences"]
    if parameters:
        fields["parameters"] = parameters
    if body.get("tools"):
        fields["tools"] = [_tool(t, i) for i, t in enumerate(_list(body["tools"], "tools"))]
    if body.get("tool_choice") is not None:
        fields.update(_tool_choice(body["tool_choice"]))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream must be true or false", param="stream")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object", param="metadata")
    ignored = sorted(k for k in body if k not in _HONOURED)
    return WireRequest(model, fields, stream=stream, include_usage=True, metadata=metadata,
                       ignored=ignored)


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad_request(f"{param} must be an array", param=param)
    return value


def _system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system or None
    blocks = _list(system, "system")
    texts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise bad_request("system blocks must be text blocks", param=f"system[{i}]")
        texts.append(block["text"])
    return "\n".join(texts) or None


def _turn(turn: Any, index: int) -> list[dict[str, Any]]:
    """One Anthropic turn as one or more OpenAI-shaped messages."""
    where = f"messages[{index}]"
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
        raise bad_request("each message has role user or assistant", param=f"{where}.role")
    role, content = turn["role"], turn.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = _list(content, f"{where}.content")
    if role == "assistant":
        return [_assistant(blocks, where)]
    return _user(blocks, where)


def _assistant(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "name": block.get("name"),
                          "arguments": block.get("input", {})})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise bad_request("an assistant block is text, tool_use or thinking",
                              param=f"{where}.content[{j}].type")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _user(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        path = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, path)}})
        elif kind == "tool_result":
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": _result_text(block.get("content"), path)})
        else:
            raise bad_request("a user block is text, image or tool_result", param=f"{path}.type")
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _image_url(block: dict[str, Any], path: str) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad_request("an image needs a source", param=f"{path}.source")
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise bad_request("an image source is base64 or url", param=f"{path}.source.type")


def _result_text(content: Any, path: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for block in _list(content, f"{path}.content"):
        if isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        else:
            raise bad_request("a tool result holds text blocks only here",
                              param=f"{path}.content")
    return "\n".join(texts)


def _tool(tool: Any, index: int) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise bad_request("a tool is an object", param=f"tools[{index}]")
    if tool.get("type") not in (None, "custom"):
        raise bad_request("only custom tools (name, input_schema) are supported",
                          param=f"tools[{index}].type")
    out = {"name": tool.get("name"), "parameters": tool.get("input_schema")}
    if tool.get("description") is not None:
        out["description"] = tool["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict):
        raise bad_request("tool_choice is an object with a type", param="tool_choice")
    kind = choice.get("type")
    mapped: dict[str, Any]
    if kind == "auto":
        mapped = {"tool_choice": "auto"}
    elif kind == "any":
        mapped = {"tool_choice": "required"}
    elif kind == "none":
        mapped = {"tool_choice": "none"}
    elif kind == "tool":
        mapped = {"tool_choice": {"name": choice.get("name")}}
    else:
        raise bad_request("tool_choice.type is auto, any, tool or none", param="tool_choice.type")
    if choice.get("disable_parallel_tool_use"):
        mapped["parallel_tool_calls"] = False
    return mapped


# -- responses ------------------------------------------------------------------------------------
def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def stop_reason(response_reason: str) -> str:
    return ANTHROPIC_STOP.get(response_reason, "end_turn")


def _usage(response: ModelResponse) -> dict[str, Any]:
    return {"input_tokens": response.input_tokens, "output_tokens": response.output_tokens,
            "cache_read_input_tokens": response.cached_tokens,
            "cache_creation_input_tokens": 0}


def _tool_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name,
            "input": call.parsed_arguments()}


def message(response: ModelResponse) -> dict[str, Any]:
    """The Messages body of ``response``."""
    content: list[dict[str, Any]] = []
    if response.text or not response.tool_calls:
        content.append({"type": "text", "text": response.text})
    content.extend(_tool_block(c) for c in response.tool_calls)
    return {
        "id": message_id(response.request_id), "type": "message", "role": "assistant",
        "model": response.model_id, "content": content,
        "stop_reason": stop_reason(response.finish_reason), "stop_sequence": None,
        "usage": _usage(response),
    }


class EventWriter:
    """The stream events of one reply, in Anthropic's order: ``message_start``, for each block
    ``content_block_start``/``_delta``.../``_stop``, ``message_delta`` (stop reason, usage with
    an extra ``cost_usd``: what the request cost, a number in USD), ``message_stop``. Each item
    is ``(event name, data)``."""

    def __init__(self, request_id: str, model_id: str) -> None:
        self._request_id = request_id
        self._model_id = model_id
        self._index = -1
        self._open: str | None = None  # the kind of the open block

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        return [("message_start", {"type": "message_start", "message": {
            "id": message_id(self._request_id), "type": "message", "role": "assistant",
            "model": self._model_id, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})]

    def text(self, delta: str) -> list[tuple[str, dict[str, Any]]]:
        out = self._open_block("text", {"type": "text", "text": ""})
        out.append(("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                            "delta": {"type": "text_delta", "text": delta}}))
        return out

    def tool_call(self, call: ToolCall) -> list[tuple[str, dict[str, Any]]]:
        out = self._close_block()
        self._index += 1
        self._open = "tool_use"
        out.append(("content_block_start", {"type": "content_block_start", "index": self._index,
                                            "content_block": {"type": "tool_use", "id": call.id,
                                                              "name": call.name, "input": {}}}))
        arguments = orjson.dumps(call.parsed_arguments()).decode()
        out.append(("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                            "delta": {"type": "input_json_delta",
                                                      "partial_json": arguments}}))
        out.extend(self._close_block())
        return out

    def end(self, response: ModelResponse) -> list[tuple[str, dict[str, Any]]]:
        out = self._open_block("text", {"type": "text", "text": ""}) if self._index < 0 else []
        out.extend(self._close_block())
        out.append(("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop_reason(response.finish_reason),
                                                "stop_sequence": None},
                                      "usage": {**_usage(response),
                                                "cost_usd": float(response.cost_usd)}}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if self._open == kind:
            return []
        out = self._close_block()
        self._index += 1
        self._open = kind
        out.append(("content_block_start", {"type": "content_block_start", "index": self._index,
                                            "content_block": block}))
        return out

    def _close_block(self) -> list[tuple[str, dict[str, Any]]]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]


# -- errors ---------------------------------------------------------------------------------------
_TYPES = {
    "invalid_request": "invalid_request_error", "authentication": "authentication_error",
    "permission": "permission_error", "not_found": "not_found_error",
    "request_too_large": "request_too_large", "rate_limit": "rate_limit_error",
    "budget": "rate_limit_error", "overloaded": "overloaded_error", "upstream": "api_error",
    "timeout": "api_error", "internal": "api_error",
}


def error_body(kind: str, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    """Anthropic's error object."""
    return {"type": "error", "error": {"type": _TYPES.get(kind, "api_error"), "message": message}}
