"""Tools at the adapter edge, shared by the four adapters.

- **Call ids across providers.** A conversation keeps the ids its calls were made with, whichever
  provider made them, so it can continue on another provider after a failover:
  :func:`anthropic_id` makes an id Anthropic accepts (``^[A-Za-z0-9_-]+$``) reversibly
  (:func:`from_anthropic_id`); :func:`openai_id` keeps an id of up to 40 characters (OpenAI's
  limit) and shortens a longer one to a hash (deterministic, not reversible); Gemini carries our
  ids in ``functionCall.id`` / ``functionResponse.id``. Where a reply gives no id (Gemini without
  one, Ollama), :func:`derived_id` makes one from the reply: the same reply gets the same ids.
- **Streamed calls** are assembled by :class:`ToolCallAssembler` (bounded in size).
- **Structured output without a JSON Schema mode**: :func:`response_tool` is a tool whose input
  schema is the requested one, called instead of answering (its input becomes the answer's text).
- **Gemini's Schema**: :func:`gemini_schema` writes a JSON Schema in Gemini's OpenAPI subset when it
  can be said there exactly enough (else the adapter sends it as JSON Schema).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._request import Message, ModelRequest, ToolCall

_ANTHROPIC_ID = re.compile(r"[A-Za-z0-9_-]+")
#: The prefix of an id rewritten for Anthropic (base64url of the original's UTF-8 follows).
ESCAPED_ID_PREFIX = "amm64_"
#: The longest tool-call id OpenAI takes.
OPENAI_MAX_ID = 40
#: Keywords Gemini's ``Schema`` (OpenAPI 3.0 subset) has with JSON Schema's meaning.
_GEMINI_KEYWORDS = frozenset({
    "type", "format", "title", "description", "enum", "properties", "required", "items",
    "minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "minimum", "maximum", "anyOf", "default", "example", "nullable",
})
#: Keywords dropped on the way to Gemini's ``Schema``: meta-data, and ``additionalProperties``
#: (which that form lacks; the answer is still checked against the whole schema).
_GEMINI_DROPPED = frozenset({"$schema", "$id", "$comment", "additionalProperties", "examples"})
_GEMINI_FORMATS = frozenset({"float", "double", "int32", "int64", "enum", "date-time"})
_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})


def anthropic_id(call_id: str) -> str:
    """``call_id`` when Anthropic accepts it as it is, else ``amm64_`` + its base64url."""
    if _ANTHROPIC_ID.fullmatch(call_id) and not call_id.startswith(ESCAPED_ID_PREFIX):
        return call_id
    encoded = base64.urlsafe_b64encode(call_id.encode("utf-8", "surrogatepass"))
    return ESCAPED_ID_PREFIX + encoded.decode("ascii").rstrip("=")


def from_anthropic_id(wire_id: str) -> str:
    """The id :func:`anthropic_id` was given (an id of Anthropic's own comes back as it is)."""
    if not wire_id.startswith(ESCAPED_ID_PREFIX):
        return wire_id
    text = wire_id.removeprefix(ESCAPED_ID_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return raw.decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError):
        return wire_id


def openai_id(call_id: str) -> str:
    """``call_id`` when it has at most 40 characters, else ``call_`` + 32 hex digits of its hash."""
    if len(call_id) <= OPENAI_MAX_ID:
        return call_id
    return "call_" + hashlib.blake2b(call_id.encode("utf-8", "surrogatepass"),
                                     digest_size=16).hexdigest()


def derived_id(*parts: str) -> str:
    """An id for a call the provider gave none: ``call_`` + a hash of ``parts`` (the reply's id
    or time, the call's position, name and arguments)."""
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return "call_" + hashlib.blake2b(joined, digest_size=12).hexdigest()


def assistant_message(text: str, calls: tuple[ToolCall, ...]) -> Message:
    """An assistant turn read back from a provider's body: its text, and its tool calls if any
    (content None when a turn holds calls and no text, as the OpenAI shape has it)."""
    if not calls:
        return Message(role="assistant", content=text)
    return Message(role="assistant", content=text or None, tool_calls=calls)


def call_names(request: ModelRequest) -> dict[str, str]:
    """The function name of every tool call of the conversation, by call id (Gemini's
    ``functionResponse`` and Ollama's ``tool_name`` name the function a result answers)."""
    return {call.id: call.name for m in request.messages or () for call in m.tool_calls}


@dataclass(frozen=True, slots=True)
class ResponseTool:
    """The tool a structured answer is given through: its name, description and input schema."""

    name: str
    description: str
    schema: dict[str, Any]

    def declaration(self) -> dict[str, Any]:
        """Anthropic's tool form."""
        return {"name": self.name, "description": self.description, "input_schema": self.schema}


def response_tool(request: ModelRequest) -> ResponseTool | None:
    """For a ``json_schema`` response format: a tool named after the format (made unique among
    the request's tools), whose input is the answer. None otherwise."""
    fmt = request.response_format
    if fmt is None or fmt.json_schema is None:
        return None
    schema_format = fmt.json_schema
    taken = set(request.tool_names())
    name = schema_format.name if _is_tool_name(schema_format.name) else "response"
    while name in taken:
        name = ("answer_" + name)[:64]
    description = schema_format.description or "Give the final answer, as this tool's input."
    return ResponseTool(name, description, schema_format.schema_)


def _is_tool_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", name))


@dataclass(slots=True)
class _Partial:
    id: str
    name: str
    fragments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Calls streamed in pieces (OpenAI's ``tool_calls`` deltas by index, Anthropic's
    ``input_json_delta`` by block): started with an id and a name, argument text added, taken
    whole when complete. Their argument text together is held to ``limit_bytes``."""

    def __init__(self, limit_bytes: int, too_large: Callable[[], Exception]) -> None:
        self._open: dict[int, _Partial] = {}
        self._limit = limit_bytes
        self._too_large = too_large
        self._bytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self._open

    def start(self, key: int, call_id: str, name: str) -> None:
        self._open[key] = _Partial(call_id, name)

    def add(self, key: int, fragment: str) -> None:
        self._bytes += len(fragment.encode("utf-8", "surrogatepass"))
        if self._bytes > self._limit:
            raise self._too_large()
        self._open[key].fragments.append(fragment)

    def name(self, key: int) -> str:
        return self._open[key].name

    def take(self, key: int) -> tuple[str, str, str]:
        """(id, name, arguments) of call ``key``, which is done (no arguments: ``{}``)."""
        partial = self._open.pop(key)
        return partial.id, partial.name, "".join(partial.fragments) or "{}"

    def take_before(self, key: int) -> list[tuple[str, str, str]]:
        """Every open call with a key below ``key``, in order (a later call has begun)."""
        return [self.take(k) for k in sorted(self._open) if k < key]

    def take_all(self) -> list[tuple[str, str, str]]:
        return [self.take(k) for k in sorted(self._open)]


def gemini_schema(schema: Any) -> dict[str, Any] | None:
    """``schema`` in Gemini's ``Schema`` form (upper-case type names, ``nullable`` for a type
    list with ``null``, ``const`` of a string as a one-value ``enum``), or None when it uses
    what that form cannot say (``$ref``, ``oneOf``, non-string enums, ...): the adapter then
    sends the JSON Schema as it is (``parametersJsonSchema`` / ``responseJsonSchema``)."""
    if not isinstance(schema, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _GEMINI_DROPPED:
            continue
        converted = _gemini_keyword(key, value)
        if converted is None:
            return None
        if converted:
            out.update(converted)
    return out


def _gemini_keyword(key: str, value: Any) -> dict[str, Any] | None:
    """The Gemini form of one keyword ({} to drop it), None when it has none."""
    if key == "format":  # Gemini knows a few formats; the answer is checked against the rest
        return {key: value} if value in _GEMINI_FORMATS else {}
    if key == "type":
        return _gemini_type(value)
    if key == "const":
        return {"enum": [value]} if isinstance(value, str) else None
    if key not in _GEMINI_KEYWORDS:
        return None
    if key == "enum" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return None
    if key == "properties":
        if not isinstance(value, dict):
            return None
        props = {name: gemini_schema(sub) for name, sub in value.items()}
        return None if any(p is None for p in props.values()) else {key: props}
    if key == "items":
        items = gemini_schema(value)
        return None if items is None else {key: items}
    if key == "anyOf":
        if not isinstance(value, list):
            return None
        branches = [gemini_schema(sub) for sub in value]
        return None if any(b is None for b in branches) else {key: branches}
    return {key: value}


def _gemini_type(value: Any) -> dict[str, Any] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    real = [n for n in names if n != "null"]
    if len(real) != 1 or real[0] not in _JSON_TYPES:
        return None
    out: dict[str, Any] = {"type": real[0].upper()}
    if len(real) < len(names):
        out["nullable"] = True
    return out
