"""The cache and agent requests (issue 13): the key (``ModelRequest.canonical``) covers tools, tool
choice, parallel tool calls and response format, so requests differing only in those miss each
other; an answer that calls tools is a complete answer and is cached with its calls."""

from __future__ import annotations

from decimal import Decimal

import pytest

from api_model_management import ModelRequest, ModelResponse, ToolCall, config
from api_model_management._clock import ManualClock
from api_model_management.cache._core import CacheCore

pytestmark = pytest.mark.unit

WEATHER = {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time"}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')


def req(**fields) -> ModelRequest:
    return ModelRequest(prompt="Weather in Paris?", parameters={"temperature": 0}, **fields)


def resp(**fields) -> ModelResponse:
    fields.setdefault("text", "")
    fields.setdefault("finish_reason", "tool_calls")
    return ModelResponse(request_id="r1", model_id="m", provider="openai", **fields)


def cache() -> CacheCore:
    return CacheCore(config.CacheSettings(), clock=ManualClock())


@pytest.mark.parametrize("other", [
    {},  # no tools at all
    {"tools": [TIME]},
    {"tools": [WEATHER, TIME]},
    {"tools": [{**WEATHER, "description": "Current weather"}]},
    {"tools": [WEATHER], "tool_choice": "required"},
    {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"tools": [WEATHER], "parallel_tool_calls": False},
    {"tools": [WEATHER], "response_format": {"type": "json_object"}},
    {"tools": [WEATHER], "response_format": {"type": "json_schema",
                                             "json_schema": {"name": "a", "schema": SCHEMA}}},
])
def test_requests_differing_only_in_tools_or_format_miss_each_other(other):
    core = cache()
    stored = req(tools=[WEATHER])
    assert core.put(stored, resp(tool_calls=(CALL,)), Decimal("0.001"))
    assert core.get(req(**other)) is None
    assert core.get(stored) is not None
    assert core.get(req(tools=[WEATHER])) is not None  # an equal request: the same key


def test_two_schemas_are_two_entries():
    core = cache()
    first = req(response_format={"type": "json_schema",
                                 "json_schema": {"name": "a", "schema": SCHEMA}})
    second = req(response_format={"type": "json_schema", "json_schema": {
        "name": "a", "schema": {**SCHEMA, "required": ["answer"]}}})
    core.put(first, resp(text='{"answer": "sunny"}', finish_reason="stop"), Decimal("0.001"))
    assert core.get(second) is None and core.get(first) is not None


def test_an_answer_calling_tools_is_cached_with_its_calls():
    core = cache()
    assert core.put(req(tools=[WEATHER]), resp(tool_calls=(CALL,)), Decimal("0.002"))
    hit = core.get(req(tools=[WEATHER]))
    assert hit is not None and hit.response.tool_calls == (CALL,)
    assert hit.response.finish_reason == "tool_calls" and hit.cost_usd == Decimal("0.002")


def test_a_tool_calls_finish_without_its_calls_is_not_cached():
    assert not cache().put(req(tools=[WEATHER]), resp(), Decimal(0))
