"""Gemini generateContent requests beyond chat: function declarations and calls, structured output,
images. Field names in lowerCamelCase or snake_case (the API accepts both).

Validated as the API does: a turn of ``functionResponse`` parts follows a turn of as many
``functionCall`` parts; function names start with a letter or underscore (letters, digits, ``_ .
: -``, at most 64); inline images are base64 of a known format; ``responseSchema`` /
``responseJsonSchema`` need ``responseMimeType`` ``application/json`` (or ``text/x.enum``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from . import _images
from ._shape import Shape, ShapeError, ToolSpec
from ._text import count_tokens

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_PLAIN_PART_KEYS = frozenset({"text", "thought", "thoughtSignature", "thought_signature"})
_MODES = {"AUTO": "auto", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto", "ANY": "required",
          "NONE": "none"}


def field(mapping: dict[str, Any], camel: str, snake: str) -> Any:
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


def wanted(body: dict[str, Any], contents: list[Any], config: dict[str, Any]) -> bool:
    if "tools" in body or "toolConfig" in body or "tool_config" in body:
        return True
    if any(key in config for key in ("responseMimeType", "response_mime_type", "responseSchema",
                                     "response_schema", "responseJsonSchema", "response_json_schema")):
        return True
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            return True
        if any(not isinstance(p, dict) or p.keys() - _PLAIN_PART_KEYS for p in parts):
            return True
    return False


def read(body: dict[str, Any], contents: list[Any], config: dict[str, Any],
         system_text: str) -> tuple[str, str, Shape | None]:
    """``(conversation, prompt, shape)``; :class:`ShapeError` for what the API rejects."""
    shape = Shape()
    texts = [system_text] if system_text else []
    users: list[str] = []
    previous_calls = 0
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise ShapeError("Invalid value at 'contents' (type.googleapis.com/google.ai."
                             "generativelanguage.v1beta.Content)")
        role = content.get("role", "user")
        text, said, calls, responses = _parts(content.get("parts"), i, shape)
        if responses:
            if not previous_calls:
                raise ShapeError("Please ensure that function response turn comes immediately after a "
                                 "function call turn.")
            if responses != previous_calls:
                raise ShapeError("Please ensure that the number of function response parts is equal to "
                                 "the number of function call parts of the function call turn.")
            shape.tool_results += responses
        previous_calls = calls if role == "model" else 0
        shape.after_tool_result = responses > 0
        texts.append(text)
        if role == "user" and said:
            users.append(text)
    _tools(body.get("tools"), shape)
    _tool_config(field(body, "toolConfig", "tool_config"), shape)
    _output(config, shape)
    plain = not shape.tools and shape.output == "text" and not shape.images and not shape.tool_results
    return "\n".join(texts), users[-1] if users else texts[-1], None if plain else shape


def _parts(parts: object, i: int, shape: Shape) -> tuple[str, bool, int, int]:
    """A turn's text (function arguments and responses included), whether it has text of its own,
    and its counts of function calls and responses."""
    if not isinstance(parts, list):
        raise ShapeError(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
    pieces: list[str] = []
    said = False
    calls = responses = 0
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise ShapeError(f"Invalid value at 'contents[{i}].parts[{j}]' (type.googleapis.com/google.ai."
                             "generativelanguage.v1beta.Part)")
        if isinstance(part.get("text"), str) and not part.get("thought"):
            pieces.append(part["text"])
            said = said or bool(part["text"].strip())
        inline = field(part, "inlineData", "inline_data")
        if isinstance(inline, dict):
            _inline(inline, f"contents[{i}].parts[{j}].inline_data", shape)
        stored = field(part, "fileData", "file_data")
        if isinstance(stored, dict):
            _file(stored, f"contents[{i}].parts[{j}].file_data", shape)
        call = field(part, "functionCall", "function_call")
        if isinstance(call, dict):
            calls += 1
            pieces.append(orjson.dumps(call.get("args")).decode())
        response = field(part, "functionResponse", "function_response")
        if isinstance(response, dict):
            responses += 1
            pieces.append(orjson.dumps(response.get("response")).decode())
    return "\n".join(pieces), said, calls, responses


def _inline(inline: dict[str, Any], where: str, shape: Shape) -> None:
    mime = field(inline, "mimeType", "mime_type")
    if not isinstance(mime, str) or not mime:
        raise ShapeError(f"* GenerateContentRequest.{where}.mime_type: mime_type is required.")
    data = inline.get("data")
    try:
        raw = _decode(data if isinstance(data, str) else "")
    except _images.BadImage:
        raise ShapeError(f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed") from None
    if not mime.startswith("image/"):
        return
    try:
        info = _images.sniff(raw)
    except _images.BadImage:
        raise ShapeError("Unable to process input image. Please retry or report in "
                         "https://developers.generativeai.google/guide/troubleshooting") from None
    shape.images += 1
    shape.image_tokens += _images.gemini_tokens(info)


def _decode(data: str) -> bytes:
    """Base64 as proto JSON reads bytes: the standard or the URL-safe alphabet."""
    try:
        return _images.decode_base64(data)
    except _images.BadImage:
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise _images.BadImage("illegal base64 data") from None


def _file(stored: dict[str, Any], where: str, shape: Shape) -> None:
    if not isinstance(field(stored, "fileUri", "file_uri"), str):
        raise ShapeError(f"* GenerateContentRequest.{where}.file_uri: file_uri is required.")
    mime = field(stored, "mimeType", "mime_type")
    if isinstance(mime, str) and mime.startswith("image/"):
        shape.images += 1
        shape.image_tokens += _images.gemini_tokens(_images.UNSEEN)


def _tools(tools: object, shape: Shape) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise ShapeError("Invalid value at 'tools' (type.googleapis.com/google.ai.generativelanguage."
                         "v1beta.Tool)")
    specs = []
    for k, tool in enumerate(tools):
        declarations = field(tool, "functionDeclarations", "function_declarations") \
            if isinstance(tool, dict) else None
        for n, decl in enumerate(declarations if isinstance(declarations, list) else []):
            name = decl.get("name") if isinstance(decl, dict) else None
            if not isinstance(name, str) or not _NAME.match(name):
                raise ShapeError(f"* GenerateContentRequest.tools[{k}].function_declarations[{n}].name: "
                                 "Invalid function name. Must start with a letter or an underscore. Must be "
                                 "alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or "
                                 "dashes (-), with a maximum length of 64.")
            assert isinstance(decl, dict)
            schema = field(decl, "parametersJsonSchema", "parameters_json_schema")
            if schema is None:
                schema = decl.get("parameters")
            specs.append(ToolSpec(name, schema if isinstance(schema, dict) else {}))
    shape.tools = tuple(specs)
    if specs:
        shape.extra_tokens += count_tokens(orjson.dumps(tools).decode())


def _tool_config(config: object, shape: Shape) -> None:
    calling = field(config, "functionCallingConfig", "function_calling_config") \
        if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return
    mode = calling.get("mode", "AUTO")
    if mode not in _MODES:
        raise ShapeError("Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/"
                         f"google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\"")
    shape.choice = _MODES[mode]
    names = field(calling, "allowedFunctionNames", "allowed_function_names")
    if isinstance(names, list) and shape.choice == "required":
        shape.allowed = tuple(n for n in names if isinstance(n, str))


def _output(config: dict[str, Any], shape: Shape) -> None:
    mime = field(config, "responseMimeType", "response_mime_type") or "text/plain"
    schema = field(config, "responseJsonSchema", "response_json_schema")
    if schema is None:
        schema = field(config, "responseSchema", "response_schema")
    if schema is not None and mime not in ("application/json", "text/x.enum"):
        raise ShapeError("* GenerateContentRequest.generation_config.response_schema: response_schema is "
                         "only supported with response_mime_type \"application/json\" or "
                         "\"text/x.enum\".")
    if mime == "application/json":
        shape.output, shape.schema = ("schema", schema) if schema else ("json", None)
    elif mime == "text/x.enum" and isinstance(schema, dict) and schema.get("enum"):
        shape.output, shape.schema = "enum", schema
    if schema is not None:
        shape.extra_tokens += count_tokens(orjson.dumps(schema).decode())
