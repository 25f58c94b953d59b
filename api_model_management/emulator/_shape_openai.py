"""OpenAI Chat Completions requests beyond chat: tools, tool messages, images, response_format.

Validated as the API does (the errors carry its messages, ``param`` and ``code``): a ``tool``
message must answer a call of the assistant message just before, every call must be answered
before the next other message, ``arguments`` are a string, images are by http(s) URL or base64
data URL and only in user messages, ``tool_choice``/``parallel_tool_calls`` need ``tools``,
``json_object`` needs the word "json" in the messages, and ``strict`` schemas need
``additionalProperties: false`` and every property required on every object.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from . import _images
from ._shape import Shape, ShapeError, ToolSpec
from ._text import count_tokens
from ._wire import text_of

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SHAPE_KEYS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
_UNSUPPORTED_IMAGE = ("You uploaded an unsupported image. Please make sure your image has of one "
                      "the following formats: ['png', 'jpeg', 'gif', 'webp'].")


def wanted(body: dict[str, Any], messages: list[Any]) -> bool:
    """Whether the request needs more than the plain chat path."""
    if any(key in body for key in _SHAPE_KEYS):
        return True
    return any(not isinstance(m, dict) or not isinstance(m.get("content"), str)
               or m.get("role") == "tool" or "tool_calls" in m for m in messages)


def read(body: dict[str, Any], messages: list[Any]) -> tuple[str, str, Shape | None]:
    """``(conversation, prompt, shape)``; :class:`ShapeError` for what the API rejects."""
    shape = Shape()
    texts, users = _messages(messages, shape)
    shape.tools = _tools(body.get("tools"), shape)
    _tool_choice(body, shape)
    _response_format(body.get("response_format"), texts, shape)
    conversation = "\n".join(texts)
    prompt = users[-1] if users else texts[-1]
    plain = (not shape.tools and shape.output == "text" and not shape.images and not shape.tool_results)
    return conversation, prompt, None if plain else shape


def _type_name(value: object) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), "a value")


def _messages(messages: list[Any], shape: Shape) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    users: list[str] = []
    pending: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ShapeError(f"Invalid type for 'messages[{i}]': expected an object, but got "
                             f"{_type_name(m)} instead.", f"messages.[{i}]", "invalid_type")
        role = m.get("role")
        if pending and role != "tool":
            raise ShapeError("An assistant message with 'tool_calls' must be followed by tool messages "
                             "responding to each 'tool_call_id'. The following tool_call_ids did not "
                             f"have response messages: {', '.join(pending)}", f"messages.[{i}].role")
        text = _content(m.get("content"), i, role, shape)
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in pending:
                raise ShapeError("Invalid parameter: messages with role 'tool' must be a response to a "
                                 "preceeding message with 'tool_calls'.", f"messages.[{i}].role")
            pending.remove(call_id)
            shape.tool_results += 1
        elif role == "assistant" and m.get("tool_calls"):
            ids, arguments = _assistant_calls(m["tool_calls"], i)
            pending = ids
            text = "\n".join([text, *arguments]) if text else "\n".join(arguments)
        texts.append(text)
        if role == "user" and text.strip():
            users.append(text)
    if pending:
        raise ShapeError("An assistant message with 'tool_calls' must be followed by tool messages "
                         "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                         f"response messages: {', '.join(pending)}", "messages")
    shape.after_tool_result = isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
    return texts, users


def _assistant_calls(calls: object, i: int) -> tuple[list[str], list[str]]:
    if not isinstance(calls, list):
        raise ShapeError(f"Invalid type for 'messages[{i}].tool_calls': expected an array, but got "
                         f"{_type_name(calls)} instead.", f"messages.[{i}].tool_calls", "invalid_type")
    ids, arguments = [], []
    for k, c in enumerate(calls):
        where = f"messages[{i}].tool_calls[{k}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(fn, dict):
            raise ShapeError(f"Missing required parameter: '{where}.id'.", where.replace("[", ".["),
                             "missing_required_parameter")
        if not isinstance(fn.get("name"), str):
            raise ShapeError(f"Missing required parameter: '{where}.function.name'.",
                             f"{where}.function.name", "missing_required_parameter")
        args = fn.get("arguments")
        if not isinstance(args, str):
            raise ShapeError(f"Invalid type for '{where}.function.arguments': expected a string, but got "
                             f"{_type_name(args)} instead.", f"{where}.function.arguments", "invalid_type")
        ids.append(c["id"])
        arguments.append(args)
    return ids, arguments


def _content(content: object, i: int, role: object, shape: Shape) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    if not isinstance(content, list):
        raise ShapeError(f"Invalid type for 'messages[{i}].content': expected one of a string or array "
                         f"of objects, but got {_type_name(content)} instead.", f"messages.[{i}].content",
                         "invalid_type")
    for j, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            if role != "user":
                raise ShapeError(f"Invalid 'messages[{i}].content[{j}]': Image URLs are only allowed for "
                                 f"messages with role 'user', but this message with role '{role}' contains "
                                 "an image URL.", f"messages.[{i}].content.[{j}]", "invalid_value")
            _image(part.get("image_url"), i, j, shape)
    return text_of(content)


def _image(spec: object, i: int, j: int, shape: Shape) -> None:
    where = f"messages[{i}].content[{j}].image_url"
    url = spec.get("url") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(url, str):
        raise ShapeError(f"Missing required parameter: '{where}.url'.", f"{where}.url",
                         "missing_required_parameter")
    detail = spec.get("detail", "auto")
    if detail not in ("auto", "low", "high"):
        raise ShapeError(f"Invalid value: '{detail}'. Supported values are: 'auto', 'low', and 'high'.",
                         f"{where}.detail", "invalid_value")
    try:
        data = _images.parse_data_url(url)
    except _images.BadImage:
        raise ShapeError(_UNSUPPORTED_IMAGE, None, "invalid_image_format") from None
    if data is not None:
        info = data[1]
    elif url.startswith(("http://", "https://")):
        info = _images.UNSEEN
    else:
        raise ShapeError(f"Invalid '{where}.url'. Expected a base64-encoded data URL with an image MIME "
                         "type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got an invalid "
                         "value.", f"{where}.url", "invalid_value")
    shape.images += 1
    shape.image_tokens += _images.openai_tokens(info, detail)


def _tools(tools: object, shape: Shape) -> tuple[ToolSpec, ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise ShapeError(f"Invalid type for 'tools': expected an array, but got {_type_name(tools)} instead.",
                         "tools", "invalid_type")
    if not tools:
        raise ShapeError("Invalid 'tools': empty array. Expected an array with minimum length 1, but got "
                         "an empty array instead.", "tools", "empty_array")
    specs = []
    for k, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "custom":
            continue
        if kind != "function":
            raise ShapeError(f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                             f"tools[{k}].type", "invalid_value")
        specs.append(_function(tool.get("function"), k))
    shape.extra_tokens += count_tokens(orjson.dumps(tools).decode())
    return tuple(specs)


def _function(fn: object, k: int) -> ToolSpec:
    if not isinstance(fn, dict):
        raise ShapeError(f"Missing required parameter: 'tools[{k}].function'.", f"tools[{k}].function",
                         "missing_required_parameter")
    name = fn.get("name")
    if not isinstance(name, str):
        raise ShapeError(f"Missing required parameter: 'tools[{k}].function.name'.",
                         f"tools[{k}].function.name", "missing_required_parameter")
    if not _NAME.match(name):
        raise ShapeError(f"Invalid 'tools[{k}].function.name': string does not match pattern. Expected a "
                         "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                         f"tools[{k}].function.name", "invalid_value")
    params = fn.get("parameters", {})
    if not isinstance(params, dict):
        raise ShapeError(f"Invalid type for 'tools[{k}].function.parameters': expected an object, but got "
                         f"{_type_name(params)} instead.", f"tools[{k}].function.parameters", "invalid_type")
    if fn.get("strict") is True:
        _strict(params, f"function '{name}'", f"tools[{k}].function.parameters")
    return ToolSpec(name, params)


def _tool_choice(body: dict[str, Any], shape: Shape) -> None:
    for key in ("tool_choice", "parallel_tool_calls"):
        if key in body and not shape.tools:
            raise ShapeError(f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are "
                             "specified.", key)
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise ShapeError(f"Invalid type for 'parallel_tool_calls': expected a boolean, but got "
                         f"{_type_name(parallel)} instead.", "parallel_tool_calls", "invalid_type")
    shape.parallel = parallel
    choice = body.get("tool_choice", "auto")
    if choice in ("none", "auto", "required"):
        shape.choice = choice
        return
    fn = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(fn, dict):
        raise ShapeError(f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and "
                         "'required'.", "tool_choice", "invalid_value")
    name = fn.get("name")
    if name not in {t.name for t in shape.tools}:
        raise ShapeError(f"Invalid value for 'tool_choice': function '{name}' not found in 'tools'.",
                         "tool_choice.function.name", "invalid_value")
    shape.choice, shape.allowed = "required", (name,)


def _response_format(value: object, texts: list[str], shape: Shape) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ShapeError(f"Invalid type for 'response_format': expected an object, but got "
                         f"{_type_name(value)} instead.", "response_format", "invalid_type")
    kind = value.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        if not any("json" in text.lower() for text in texts):
            raise ShapeError("'messages' must contain the word 'json' in some form, to use "
                             "'response_format' of type 'json_object'.", "messages")
        shape.output = "json"
        return
    if kind != "json_schema":
        raise ShapeError(f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', "
                         "and 'text'.", "response_format.type", "invalid_value")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise ShapeError("Missing required parameter: 'response_format.json_schema'.",
                         "response_format.json_schema", "missing_required_parameter")
    name = spec.get("name")
    if not isinstance(name, str):
        raise ShapeError("Missing required parameter: 'response_format.json_schema.name'.",
                         "response_format.json_schema.name", "missing_required_parameter")
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise ShapeError(f"Invalid type for 'response_format.json_schema.schema': expected an object, but "
                         f"got {_type_name(schema)} instead.", "response_format.json_schema.schema",
                         "invalid_type")
    if spec.get("strict") is True:
        _strict(schema or {}, f"response_format '{name}'", "response_format")
    shape.output, shape.schema = ("schema", schema) if schema else ("json", None)
    shape.extra_tokens += count_tokens(orjson.dumps(schema).decode()) if schema else 0


def _strict(schema: dict[str, Any], label: str, param: str) -> None:
    """Structured Outputs' rules for ``strict``: an object root; on every object,
    ``additionalProperties: false`` and every property in ``required``."""
    kind = schema.get("type")
    if kind != "object":
        raise ShapeError(f"Invalid schema for {label}: schema must be a JSON Schema of 'type: \"object\"', "
                         f"got 'type: \"{kind}\"'.", param, "invalid_json_schema")
    for path, node in _nodes(schema, ()):
        if node.get("type") != "object" and "properties" not in node:
            continue
        if node.get("additionalProperties") is not False:
            raise ShapeError(f"Invalid schema for {label}: In context={path!r}, 'additionalProperties' is "
                             "required to be supplied and to be false.", param, "invalid_json_schema")
        properties = node.get("properties") or {}
        required = node.get("required") if isinstance(node.get("required"), list) else []
        missing = [p for p in properties if p not in required]
        if missing:
            raise ShapeError(f"Invalid schema for {label}: In context={path!r}, 'required' is required to "
                             "be supplied and to be an array including every key in properties. Missing "
                             f"'{missing[0]}'.", param, "invalid_json_schema")


def _nodes(node: object, path: tuple[str, ...]) -> Any:
    """Every subschema of ``node`` with its path (properties, items, definitions, combinators)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key in ("properties", "$defs", "definitions"):
        children = node.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                yield from _nodes(child, (*path, key, name))
    items = node.get("items")
    if isinstance(items, dict):
        yield from _nodes(items, (*path, "items"))
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        children = node.get(key)
        if isinstance(children, list):
            for n, child in enumerate(children):
                yield from _nodes(child, (*path, key, str(n)))
