"""Agent-grade requests in provider-neutral form: tools, tool choice, structured output, images.

Each protocol's request parser (``_shape_<provider>.py``) reads its own fields into a
:class:`Shape`; only requests that carry any of these get one (plain chat takes the fast path).
What the emulator answers:

- **a tool call** when tools are given, the tool choice allows a call and the last message is not
  a tool result (so a multi-turn tool conversation ends): the named tool when one is forced, else
  one chosen by a hash of the conversation (two different tools, one in four conversations, when
  parallel calls are allowed and two or more tools may be called). Arguments are generated from
  the tool's JSON Schema (:mod:`._schema`), deterministic from the model, conversation and tool.
- **structured output** (a JSON object or a schema) otherwise, when asked for: a conforming JSON
  object (``{"answer": <text>}`` when only "a JSON object" is asked for).
- **text** otherwise, as for plain chat.

Input tokens: the messages' characters / 4, plus the tool definitions' and schema's JSON / 4,
plus each image by its provider's rule (:mod:`._images`), plus Anthropic's tool-use system
prompt. Output tokens of a tool call: its name and arguments' JSON / 4.

Faults: ``bad_tool_args`` breaks the first call's arguments (OpenAI: half the time text that is
not JSON, else an object that violates the schema; the other wires carry an object, so always the
latter; a schema that accepts every object cannot be broken in place, and then only OpenAI's text
breaks). ``bad_json`` breaks structured output (half the time text that does not parse, else an
object that violates the schema).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ._schema import generate, violate
from ._text import Answer, ToolCall, count_tokens, keywords, make_answer, seed_of
from ._wire import Call, random_id

TOOL_CALL, JSON, ENUM, TEXT = "tool_call", "json", "enum", "text"
#: Tokens of Anthropic's tool-use system prompt (Claude 4 models) by tool choice.
ANTHROPIC_TOOL_PROMPT_TOKENS = {"auto": 346, "none": 346, "required": 313}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    #: The parameters' JSON Schema ({} when the tool declares none).
    schema: Any


@dataclass(slots=True)
class Shape:
    """What a request asks beyond chat."""

    tools: tuple[ToolSpec, ...] = ()
    #: ``auto``, ``none`` or ``required`` (a call must be made; ``allowed`` may narrow the tools).
    choice: str = "auto"
    #: The tools a forced call may use (empty: any); one name forces that tool.
    allowed: tuple[str, ...] = ()
    parallel: bool = True
    #: ``text``, ``json`` (any JSON object), ``schema`` (``schema`` below) or ``enum`` (Gemini's
    #: ``text/x.enum``: one of the schema's values, as plain text).
    output: str = "text"
    schema: Any = None
    tool_results: int = 0
    #: The last message is a tool result (the answer is then text, or structured output).
    after_tool_result: bool = False
    images: int = 0
    image_tokens: int = 0
    #: Input tokens of tool definitions, schemas and the provider's tool prompt.
    extra_tokens: int = 0
    #: Anthropic writes a sentence before an unforced tool call.
    preface: bool = False


class ShapeError(ValueError):
    """A request the provider rejects with 400: the message (and OpenAI's ``param``/``code``)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def answer_kind(shape: Shape | None) -> str:
    """``tool_call``, ``json``, ``enum`` or ``text``."""
    if shape is None:
        return TEXT
    if shape.tools and shape.choice != "none" and not shape.after_tool_result:
        return TOOL_CALL
    if shape.output in ("json", "schema"):
        return JSON
    return ENUM if shape.output == "enum" else TEXT


def fault_kind(kind: str) -> str:
    """The answer kind as :meth:`Engine.plan` knows it (``tool_call``, ``json`` or ``text``)."""
    return kind if kind in (TOOL_CALL, JSON) else TEXT


def shaped_answer(call: Call, compose: Callable[[], str]) -> tuple[Answer, str]:
    """The answer to a request with a shape, and its kind; ``compose`` gives the text answer."""
    shape = call.shape
    assert shape is not None
    kind = answer_kind(shape)
    extra = shape.extra_tokens + shape.image_tokens
    seed = seed_of(call.model, call.conversation)
    if kind == TOOL_CALL:
        return _tool_answer(call, shape, seed, extra), kind
    if kind == JSON:
        text = json_text(shape, seed, keywords(call.prompt), compose)
    elif kind == ENUM:
        values = shape.schema.get("enum") if isinstance(shape.schema, dict) else None
        text = str(values[seed % len(values)]) if isinstance(values, list) and values else compose()
    else:
        text = compose()
    return make_answer(text, len(call.conversation), call.max_tokens, extra), kind


def json_text(shape: Shape, seed: int, words: list[str], compose: Callable[[], str]) -> str:
    if shape.output == "schema" and shape.schema is not None:
        return orjson.dumps(generate(shape.schema, seed, words)).decode()
    return orjson.dumps({"answer": compose()}).decode()


def chosen_tools(shape: Shape, seed: int) -> list[str]:
    """The tools called: one, or two different ones (see the module docstring)."""
    names = [t.name for t in shape.tools]
    if shape.allowed:
        names = [n for n in names if n in shape.allowed] or names
    first = names[seed % len(names)]
    forced_one = shape.choice == "required" and len(shape.allowed) == 1
    if shape.parallel and not forced_one and len(names) >= 2 and (seed >> 20) % 4 == 0:
        return [first, names[(names.index(first) + 1) % len(names)]]
    return [first]


def tool_call_id(provider: str) -> str:
    """A new id in the provider's format (Gemini has none)."""
    if provider == "openai":
        return "call_" + random_id(24)
    if provider == "anthropic":
        return "toolu_01" + random_id(22)
    if provider == "ollama":
        return "call_" + random_id(8).lower()
    return ""


def _tool_answer(call: Call, shape: Shape, seed: int, extra: int) -> Answer:
    specs = {t.name: t for t in shape.tools}
    words = keywords(call.prompt)
    calls = []
    for name in chosen_tools(shape, seed):
        args = generate(specs[name].schema, seed_of(f"{call.model}\x00{name}", call.conversation), words)
        if not isinstance(args, dict):
            args = {}
        calls.append(ToolCall(tool_call_id(call.provider), name, args, orjson.dumps(args).decode()))
    preface = f"I'll use the {calls[0].name} tool to help with this." if shape.preface else ""
    output = count_tokens(preface) + sum(count_tokens(c.name + c.text) for c in calls)
    input_tokens = max(1, (len(call.conversation) + 3) // 4) + extra
    answer = Answer(preface, input_tokens, output, False, tuple(calls))
    return _fit(answer, call.max_tokens)


def _fit(answer: Answer, max_tokens: int | None) -> Answer:
    """A tool-call answer cut at ``max_tokens``, as a model stops mid-call: the cut call's text
    ends early and its ``arguments`` are None (no object was completed); later calls are dropped."""
    if max_tokens is None or answer.output_tokens <= max_tokens:
        return answer
    budget = max(0, max_tokens - count_tokens(answer.text)) * 4
    calls: list[ToolCall] = []
    for c in answer.tool_calls:
        size = len(c.name) + len(c.text)
        if size <= budget:
            calls.append(c)
            budget -= size
            continue
        calls.append(dataclasses.replace(c, arguments=None, text=c.text[: max(0, budget - len(c.name))]))
        break
    return Answer(answer.text, answer.input_tokens, max_tokens, True, tuple(calls))


def break_tool_calls(call: Call, answer: Answer) -> Answer | None:
    """The answer with its first tool call's arguments broken, or None when they cannot be."""
    if not answer.tool_calls or call.shape is None or answer.tool_calls[0].arguments is None:
        return None
    first = answer.tool_calls[0]
    seed = seed_of(f"{call.model}\x00bad\x00{first.name}", call.conversation)
    schema: Any = next((t.schema for t in call.shape.tools if t.name == first.name), {})
    ok, value = (False, None) if call.provider == "openai" and seed & 1 else violate(schema, seed)
    if ok:
        broken = ToolCall(first.id, first.name, value, orjson.dumps(value).decode())
    elif call.provider == "openai":
        broken = dataclasses.replace(first, text=unparseable(first.text))
    else:
        return None
    return dataclasses.replace(answer, tool_calls=(broken, *answer.tool_calls[1:]))


def break_json(call: Call, answer: Answer) -> Answer:
    """The structured answer broken: text that does not parse, or (half the time, when the
    schema allows) an object that violates the schema."""
    shape = call.shape
    seed = seed_of(f"{call.model}\x00bad-json", call.conversation)
    if shape is not None and shape.output == "schema" and not seed & 1:
        ok, value = violate(shape.schema, seed, keywords(call.prompt))
        if ok:
            text = orjson.dumps(value).decode()
            return dataclasses.replace(answer, text=text, output_tokens=count_tokens(text))
    text = unparseable(answer.text)
    return dataclasses.replace(answer, text=text, output_tokens=count_tokens(text))


def unparseable(text: str) -> str:
    """``text`` cut in the middle, as a model stopping mid-object writes it: not JSON."""
    cut = text[: max(1, len(text) // 2)]
    while _parses(cut):
        cut = "{" + cut
    return cut


def _parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def request_counts(shape: Shape) -> dict[str, int]:
    """What a request brought, for the emulator's statistics."""
    return {"images": shape.images, "image_tokens": shape.image_tokens,
            "tool_results": shape.tool_results, "requests_with_tools": int(bool(shape.tools))}


def answer_counts(answer: Answer, kind: str) -> dict[str, int]:
    """What an answer carried, for the emulator's statistics."""
    if answer.tool_calls:
        return {"tool_calls": len(answer.tool_calls)}
    return {"structured": 1} if kind in (JSON, ENUM) else {}
