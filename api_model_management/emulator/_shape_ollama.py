"""Ollama /api/chat requests beyond chat: ``tools``, tool calls and ``tool`` messages, ``images``,
``format`` ("json" or a JSON Schema).

Ollama decodes requests into Go types and checks little else: content is a string, tool call
arguments an object, images standard base64 of a known format, ``format`` "json" or a schema.
It has no tool choice: given tools, a model may call them.
"""

from __future__ import annotations

from typing import Any

import orjson

from . import _images
from ._shape import Shape, ShapeError, ToolSpec
from ._text import count_tokens

_GO_TYPES = {str: "string", int: "number", float: "number", bool: "bool", list: "array",
             dict: "object", type(None): "null"}


def wanted(body: dict[str, Any], messages: list[Any]) -> bool:
    if "tools" in body or "format" in body:
        return True
    return any(not isinstance(m, dict) or not isinstance(m.get("content") or "", str)
               or "images" in m or "tool_calls" in m or m.get("role") == "tool" for m in messages)


def _unmarshal(value: object, go_type: str, field: str) -> ShapeError:
    return ShapeError(f"json: cannot unmarshal {_GO_TYPES.get(type(value), 'value')} into Go struct field "
                      f"{field} of type {go_type}")


def read(body: dict[str, Any], messages: list[Any]) -> tuple[str, str, Shape | None]:
    """``(conversation, prompt, shape)``; :class:`ShapeError` for what Ollama rejects."""
    shape = Shape()
    texts: list[str] = []
    users: list[str] = []
    for m in messages:
        if not isinstance(m, dict):
            raise _unmarshal(m, "api.Message", "ChatRequest.messages")
        content = m.get("content") or ""  # Go reads null into a string as ""
        if not isinstance(content, str):
            raise _unmarshal(content, "string", "Message.messages.content")
        pieces = [content]
        _images_of(m.get("images"), shape)
        pieces += _calls_of(m.get("tool_calls"))
        if m.get("role") == "tool":
            shape.tool_results += 1
        texts.append("\n".join(p for p in pieces if p))
        if m.get("role") == "user" and content.strip():
            users.append(content)
    last = messages[-1]
    shape.after_tool_result = isinstance(last, dict) and last.get("role") == "tool"
    _tools(body.get("tools"), shape)
    _format(body.get("format"), shape)
    plain = not shape.tools and shape.output == "text" and not shape.images and not shape.tool_results
    return "\n".join(texts), users[-1] if users else texts[-1], None if plain else shape


def _images_of(images: object, shape: Shape) -> None:
    if images is None:
        return
    if not isinstance(images, list):
        raise _unmarshal(images, "[]api.ImageData", "Message.messages.images")
    for image in images:
        if not isinstance(image, str):
            raise _unmarshal(image, "api.ImageData", "Message.messages.images")
        try:
            raw = _images.decode_base64(image)
        except _images.BadImage:
            raise ShapeError("illegal base64 data at input byte 0") from None
        try:
            info = _images.sniff(raw)
        except _images.BadImage:
            raise ShapeError("image: unknown format") from None
        shape.images += 1
        shape.image_tokens += _images.ollama_tokens(info)


def _calls_of(calls: object) -> list[str]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise _unmarshal(calls, "[]api.ToolCall", "Message.messages.tool_calls")
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise _unmarshal(fn, "api.ToolCallFunction", "ToolCall.messages.tool_calls.function")
        arguments = fn.get("arguments", {})
        if not isinstance(arguments, dict):
            raise _unmarshal(arguments, "api.ToolCallFunctionArguments",
                             "ToolCallFunction.messages.tool_calls.function.arguments")
        out.append(orjson.dumps(arguments).decode())
    return out


def _tools(tools: object, shape: Shape) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _unmarshal(tools, "api.Tools", "ChatRequest.tools")
    if not tools:  # ollama-python sends an empty list
        return
    specs = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _unmarshal(fn, "api.ToolFunction", "Tool.tools.function")
        schema = fn.get("parameters")
        specs.append(ToolSpec(fn["name"], schema if isinstance(schema, dict) else {}))
    shape.tools = tuple(specs)
    shape.extra_tokens += count_tokens(orjson.dumps(tools).decode())


def _format(value: object, shape: Shape) -> None:
    if value is None or value == "":
        return
    if value == "json":
        shape.output = "json"
        return
    if not isinstance(value, dict):
        raise ShapeError(f"invalid format: {orjson.dumps(value).decode()}; expected \"json\" or a valid "
                         "JSON schema")
    shape.output, shape.schema = "schema", value
    shape.extra_tokens += count_tokens(orjson.dumps(value).decode())
