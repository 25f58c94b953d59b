"""Tool calls through RouterCore (issue 13): a reply's calls reach the ModelResponse, and a
stream passes each call on as it completes, then the final result with all of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api_model_management import ModelRequest, SelectionConstraints, StreamChunk, ToolCall
from api_model_management.config import ModelConfig

from _fakes import FakeAdapter, make_router, ok

pytestmark = pytest.mark.unit

MINI = "gpt-4.1-mini"
CALLS = (ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
         ToolCall(id="call_2", name="get_time", arguments="{}"))


def request() -> ModelRequest:
    return ModelRequest(prompt="Weather and time in Paris?", cacheable=False,
                        tools=[{"name": "get_weather", "parameters": {"type": "object"}},
                               {"name": "get_time"}],
                        constraints=SelectionConstraints(allowed_models=(MINI,)))


class CallingAdapter(FakeAdapter):
    """Streams a little text, then each call, then the result holding them."""

    async def stream(self, request: ModelRequest, model: ModelConfig, *,
                     timeout_s: float | None = None) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(delta="Checking. ", model_id=model.id)
        for call in CALLS:
            yield StreamChunk(tool_call=call, model_id=model.id)
        yield StreamChunk(done=True, model_id=model.id, result=ok(
            "Checking. ", finish_reason="tool_calls", tool_calls=CALLS))


def test_a_replys_tool_calls_reach_the_response():
    router, _, _, _ = make_router()
    router.adapters["openai"].script(MINI, ok("", finish_reason="tool_calls", tool_calls=CALLS))
    response = asyncio.run(router.complete(request()))
    assert response.tool_calls == CALLS and response.finish_reason == "tool_calls"


def test_a_stream_passes_each_tool_call_on():
    router, _, _, _ = make_router()
    router.adapters["openai"] = CallingAdapter("openai")

    async def drain() -> list[StreamChunk]:
        return [chunk async for chunk in router.stream(request())]

    chunks = asyncio.run(drain())
    assert [c.tool_call for c in chunks if c.tool_call] == list(CALLS)
    assert [c.delta for c in chunks if c.delta] == ["Checking. "]
    assert chunks[-1].done and chunks[-1].result is not None
    assert chunks[-1].result.tool_calls == CALLS
