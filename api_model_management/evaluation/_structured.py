"""Non-prose answers, judged by their schemas rather than read as prose.

- **Tool calls.** Each call must name a tool the request offers (and the one ``tool_choice``
  names, if it names one; none at all under ``tool_choice: none``), and its arguments must parse
  as a JSON object that validates against that tool's ``parameters``. A request whose
  ``tool_choice`` is ``required`` or names a tool must get a call.
- **Structured output.** Under ``response_format`` ``json_object`` the answer must be one JSON
  object; under ``json_schema`` a JSON value that validates against the schema. Nothing is
  repaired: code fences or prose around the JSON fail, as they would fail the agent reading it.

Schemas are checked with ``jsonschema`` under their declared draft (``$schema``, else 2020-12),
formats not asserted (as the providers' structured outputs do not promise them); a validator is
built once per distinct schema. Problems name the call's position, the tool and the schema rule
that failed (``'required'``, ``'type'``...), never an argument, a value or a part of the schema:
they reach the log in ``ResponseEvaluated.explanation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .._request import ModelRequest, NamedToolChoice, ToolCall

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["OutputCheck", "check_output"]

#: Distinct schemas whose validators are kept (tools and response formats of recent requests).
_VALIDATORS_KEPT = 512


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """How a non-prose answer fared against the request's schemas.

    ``kind``: ``tool_calls`` (the answer calls tools, or had to) or ``structured`` (a JSON
    answer was asked for). ``checked``: the calls (or the one structured answer) looked at;
    ``parsed``: those that are JSON of the right shape naming a tool that may be called;
    ``valid``: those that also validate against their schema. ``problems``: one short reason per
    failure (positions, tool names and schema rules only)."""

    kind: Literal["tool_calls", "structured"]
    checked: int
    parsed: int
    valid: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Everything checked is valid (and a call that was required was made)."""
        return not self.problems

    def describe(self) -> str:
        """One line for the explanation: what was checked and, if anything failed, why."""
        if self.kind == "structured":
            head = ("structured answer valid against the requested format" if self.ok
                    else "structured answer invalid")
        else:
            head = f"tool calls: {self.valid} of {self.checked} valid against their schemas"
        return head if self.ok else f"{head} ({'; '.join(self.problems)})"


def check_output(request: ModelRequest, text: str,
                 tool_calls: Sequence[ToolCall] = ()) -> OutputCheck | None:
    """The check of an answer that is not prose: its tool calls when it makes any (or when the
    request requires one), else its text when the request asks for JSON; None for a prose
    answer to a prose request."""
    if tool_calls or _call_required(request):
        return _check_calls(request, tool_calls)
    if request.wants_json():
        return _check_structured(request, text)
    return None


def _call_required(request: ModelRequest) -> bool:
    choice = request.tool_choice
    return bool(request.tools) and (choice == "required" or isinstance(choice, NamedToolChoice))


def _check_calls(request: ModelRequest, calls: Sequence[ToolCall]) -> OutputCheck:
    tools = {tool.name: tool for tool in request.tools}
    choice = request.tool_choice
    problems: list[str] = []
    if not calls:
        problems.append("no tool call, though tool_choice requires one")
    parsed = valid = 0
    for i, call in enumerate(calls, start=1):
        tool = tools.get(call.name)
        if tool is None:
            problems.append(f"call {i} names a tool that was not offered")
            continue
        if choice == "none":
            problems.append(f"call {i} ({call.name}) though tool_choice is none")
            continue
        if isinstance(choice, NamedToolChoice) and call.name != choice.name:
            problems.append(f"call {i} ({call.name}) is not the tool tool_choice names")
            continue
        try:
            arguments = call.parsed_arguments()
        except ValueError:  # a ToolCall holds a JSON object; one built around validation may not
            problems.append(f"call {i} ({call.name}): arguments are not a JSON object")
            continue
        parsed += 1
        rule = _failed_rule(tool.input_schema(), arguments)
        if rule is not None:
            problems.append(f"call {i} ({call.name}): arguments fail the schema's {rule!r} rule")
            continue
        valid += 1
    return OutputCheck("tool_calls", len(calls), parsed, valid, tuple(problems))


def _check_structured(request: ModelRequest, text: str) -> OutputCheck:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return OutputCheck("structured", 1, 0, 0, ("the answer is not JSON",))
    schema = request.output_schema()
    if schema is None:  # json_object: any object
        if not isinstance(value, dict):
            return OutputCheck("structured", 1, 0, 0, ("the answer is not a JSON object",))
        return OutputCheck("structured", 1, 1, 1, ())
    rule = _failed_rule(schema, value)
    if rule is not None:
        return OutputCheck("structured", 1, 1, 0, (f"the answer fails the schema's {rule!r} rule",))
    return OutputCheck("structured", 1, 1, 1, ())


def _failed_rule(schema: dict[str, Any], value: Any) -> str | None:
    """The schema keyword of the most relevant failure of ``value``, or None when it is valid."""
    from jsonschema.exceptions import best_match

    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    error = best_match(validator.iter_errors(value))
    return None if error is None else str(error.validator)


@lru_cache(maxsize=_VALIDATORS_KEPT)
def _validator(schema_json: bytes) -> Validator:
    from jsonschema import Draft202012Validator, validators

    schema = orjson.loads(schema_json)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    return cls(schema)
