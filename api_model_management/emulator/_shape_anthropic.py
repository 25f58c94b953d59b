"""Anthropic Messages requests beyond chat: tools, ``tool_use``/``tool_result`` blocks, images.

Validated as the API does (its messages): every ``tool_use`` of an assistant message needs a
``tool_result`` in the next message and every ``tool_result`` a ``tool_use`` in the previous one;
ids match ``^[a-zA-Z0-9_-]+$``; a tool's ``input_schema`` is an object schema; images are base64
(jpeg, png, gif, webp, matching their bytes), a URL or a file. Structured output is
``output_config.format`` (``{"type": "json_schema", "schema": ...}``): the answer is one text block
of JSON.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from . import _images
from ._shape import ANTHROPIC_TOOL_PROMPT_TOKENS, Shape, ShapeError, ToolSpec
from ._text import count_tokens
from ._wire import text_of

_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_CHOICES = {"auto": "auto", "any": "required", "tool": "required", "none": "none"}


def wanted(body: dict[str, Any], messages: list[Any]) -> bool:
    if "tools" in body or "tool_choice" in body or "output_config" in body:
        return True
    return any(not isinstance(m, dict) or not isinstance(m.get("content"), str) for m in messages)


def read(body: dict[str, Any], messages: list[Any]) -> tuple[str, str, Shape | None]:
    """``(conversation, prompt, shape)``; :class:`ShapeError` for what the API rejects."""
    shape = Shape()
    system = body.get("system")
    texts = [text_of(system)] if system else []
    users: list[str] = []
    previous_ids: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ShapeError(f"messages.{i}: Input should be a valid dictionary")
        role = m.get("role")
        text, said, use_ids, result_ids = _blocks(m.get("content"), i, role, previous_ids, shape)
        missing = [tid for tid in previous_ids if tid not in result_ids]
        if missing:
            raise ShapeError(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                             f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                             "corresponding `tool_result` block in the next message.")
        previous_ids = use_ids
        texts.append(text)
        if role == "user" and said:
            users.append(text)
        shape.after_tool_result = bool(result_ids)
    _tools(body.get("tools"), shape)
    _tool_choice(body.get("tool_choice"), shape)
    _output(body.get("output_config"), shape)
    plain = not shape.tools and shape.output == "text" and not shape.images and not shape.tool_results
    prompt = users[-1] if users else texts[-1]
    return "\n".join(texts), prompt, None if plain else shape


def _blocks(content: object, i: int, role: object, previous_ids: list[str],
            shape: Shape) -> tuple[str, bool, list[str], set[str]]:
    """A message's text (tool inputs and results included), whether it says something itself
    (text blocks), its tool_use ids and the ids its tool_result blocks answer."""
    if isinstance(content, str):
        return content, bool(content.strip()), [], set()
    if not isinstance(content, list):
        raise ShapeError(f"messages.{i}.content: Input should be a valid list")
    texts: list[str] = []
    said = False
    use_ids: list[str] = []
    result_ids: set[str] = set()
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(block, dict):
            raise ShapeError(f"messages.{i}.content.{j}: Input should be a valid dictionary")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
            said = said or bool(block["text"].strip())
        elif kind == "image":
            _image(block.get("source"), f"messages.{i}.content.{j}.image.source", shape)
        elif kind == "tool_use":
            use_ids.append(_tool_use(block, i, j, role))
            texts.append(orjson.dumps(block.get("input")).decode())
        elif kind == "tool_result":
            tid = block.get("tool_use_id")
            if role != "user" or tid not in previous_ids:
                raise ShapeError(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                                 f"`tool_result` blocks: {tid}. Each `tool_result` block must have a "
                                 "corresponding `tool_use` block in the previous message.")
            result_ids.add(tid)
            shape.tool_results += 1
            texts.append(_result_text(block.get("content"), f"messages.{i}.content.{j}", shape))
    return "\n".join(texts), said, use_ids, result_ids


def _tool_use(block: dict[str, Any], i: int, j: int, role: object) -> str:
    where = f"messages.{i}.content.{j}.tool_use"
    if role != "assistant":
        raise ShapeError(f"messages.{i}.content.{j}: `tool_use` blocks can only be in `assistant` messages")
    tid = block.get("id")
    if not isinstance(tid, str) or not _ID.match(tid):
        raise ShapeError(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    if not isinstance(block.get("name"), str):
        raise ShapeError(f"{where}.name: Field required")
    if not isinstance(block.get("input"), dict):
        raise ShapeError(f"{where}.input: Input should be a valid dictionary")
    return tid


def _result_text(content: object, where: str, shape: Shape) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ShapeError(f"{where}.tool_result.content: Input should be a valid list")
    for k, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "image":
            _image(block.get("source"), f"{where}.tool_result.content.{k}.image.source", shape)
    return text_of(content)


def _image(source: object, where: str, shape: Shape) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if not isinstance(source, dict) or kind not in ("base64", "url", "file"):
        raise ShapeError(f"{where}: Input tag '{kind}' found using 'type' does not match any of the "
                         "expected tags: 'base64', 'url', 'file'")
    info = _images.UNSEEN
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in _images.MEDIA_TYPES.values():
            raise ShapeError(f"{where}.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                             "'image/gif' or 'image/webp'")
        try:
            info = _images.from_base64(str(source.get("data") or ""))
        except _images.BadImage:
            raise ShapeError(f"{where}.base64.data: Could not process image") from None
        if _images.MEDIA_TYPES[info.format or ""] != media_type:
            raise ShapeError(f"{where}.base64.data: Image does not match the provided media type {media_type}")
    elif kind == "url" and not isinstance(source.get("url"), str):
        raise ShapeError(f"{where}.url.url: Field required")
    shape.images += 1
    shape.image_tokens += _images.anthropic_tokens(info)


def _tools(tools: object, shape: Shape) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise ShapeError("tools: Input should be a valid list")
    if not tools:
        return
    specs = []
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ShapeError(f"tools.{k}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution...): the emulator never calls it
        name = tool.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ShapeError(f"tools.{k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise ShapeError(f"tools.{k}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise ShapeError(f"tools.{k}.custom.input_schema.type: Input should be 'object'")
        specs.append(ToolSpec(name, schema))
    shape.tools = tuple(specs)
    shape.extra_tokens += count_tokens(orjson.dumps(tools).decode())


def _tool_choice(choice: object, shape: Shape) -> None:
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if not isinstance(choice, dict) or kind not in _CHOICES:
            raise ShapeError(f"tool_choice: Input tag '{kind}' found using 'type' does not match any of "
                             "the expected tags: 'auto', 'any', 'tool', 'none'")
        if not shape.tools:
            raise ShapeError("tool_choice may only be specified while providing tools.")
        shape.choice = _CHOICES[kind]
        if kind == "tool":
            name = choice.get("name")
            if name not in {t.name for t in shape.tools}:
                raise ShapeError(f"tool_choice.name: tool '{name}' not found in tools")
            shape.allowed = (name,)
        shape.parallel = choice.get("disable_parallel_tool_use") is not True
    if shape.tools:
        shape.preface = shape.choice == "auto"
        shape.extra_tokens += ANTHROPIC_TOOL_PROMPT_TOKENS[shape.choice]


def _output(config: object, shape: Shape) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise ShapeError("output_config: Input should be a valid dictionary")
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise ShapeError("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise ShapeError("output_config.format.schema: Field required")
    shape.output, shape.schema = "schema", schema
    shape.extra_tokens += count_tokens(orjson.dumps(schema).decode())
