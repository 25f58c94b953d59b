"""The emulator's ``bad_tool_args_rate`` / ``bad_json_rate`` faults through RouterCore and the real
adapters (issue 13), in process (ASGI transport, no socket): the model the selector chooses first
answers with tool arguments that fail the tool's schema, or a structured answer that fails the
requested one; the router records it as ``invalid_output`` and the next model's valid answer is
returned. With ``fail_over_on_invalid_output`` off the broken answer is returned, recorded invalid."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from _emulator_wires import REPORT, WEATHER
from pydantic import SecretStr

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management.emulator import Engine, create_app, parse_profile
from api_model_management.evaluation import check_output
from api_model_management.events import AttemptFailed, RequestCompleted, ResponseEvaluated
from api_model_management.providers import make_adapter

from _fakes import config_with, make_router, of_type

pytestmark = pytest.mark.unit

HAIKU, FLASH, QWEN = "claude-haiku-4-5", "gemini-2.5-flash", "qwen2.5"
#: Pairs of models on wires that carry arguments as objects (OpenAI's are sometimes not JSON at
#: all under the fault: a malformed reply, another failure kind).
PAIRS = [(HAIKU, FLASH), (FLASH, QWEN), (QWEN, HAIKU)]


def tools_request(*allowed: str) -> ModelRequest:
    return ModelRequest(prompt="What is the weather in Lisbon this week?", cacheable=False,
                        tools=[{"name": "get_weather", "parameters": WEATHER}],
                        tool_choice="required", max_tokens=400,
                        constraints=SelectionConstraints(allowed_models=allowed))


def schema_request(*allowed: str) -> ModelRequest:
    return ModelRequest(prompt="Rate this week's weather in Lisbon.", cacheable=False,
                        max_tokens=400, response_format={"type": "json_schema", "json_schema": {
                            "name": "report", "schema": REPORT, "strict": True}},
                        constraints=SelectionConstraints(allowed_models=allowed))


def run(request: ModelRequest, *, fail_over: bool = True):
    """(response, events, the model broken): the model the selector puts first answers broken."""
    config = config_with(quality={"fail_over_on_invalid_output": fail_over})
    router, _, _, events = make_router(config, adapters={})
    broken = router.select(request).model_id
    engine = Engine(parse_profile({"models": {broken: {"bad_tool_args_rate": 1.0,
                                                       "bad_json_rate": 1.0}}}))
    transport = httpx.ASGITransport(app=create_app(engine))
    for name, provider in config.providers.items():
        key = None if provider.type == "ollama" else SecretStr("emulator-key")
        router.adapters[name] = make_adapter(name, provider, key, transport=transport)

    async def go():
        try:
            return await router.complete(request)
        finally:
            for adapter in router.adapters.values():
                await adapter.aclose()

    return asyncio.run(go()), events.events, broken


@pytest.mark.parametrize("pair", PAIRS)
def test_bad_tool_arguments_fail_over_to_a_valid_call(pair):
    request = tools_request(*pair)
    response, events, broken = run(request)
    assert response.model_id != broken and response.tool_calls
    assert check_output(request, response.text, response.tool_calls).ok
    (failed,) = of_type(events, AttemptFailed)
    assert (failed.model_id, failed.error_kind) == (broken, "invalid_output")
    first = of_type(events, ResponseEvaluated)[0]
    assert first.model_id == broken and "arguments fail the schema's" in first.explanation
    done = events[-1]
    assert isinstance(done, RequestCompleted) and done.tool_calls_valid is True
    assert done.tool_calls == ("get_weather",) and done.attempts == 2


@pytest.mark.parametrize("pair", PAIRS)
def test_a_broken_structured_answer_fails_over_to_a_valid_one(pair):
    request = schema_request(*pair)
    response, events, broken = run(request)
    assert response.model_id != broken
    assert check_output(request, response.text).ok
    (failed,) = of_type(events, AttemptFailed)
    assert (failed.model_id, failed.error_kind) == (broken, "invalid_output")
    done = events[-1]
    assert done.structured_valid is True and done.response_format == "json_schema"


def test_with_fail_over_off_the_broken_answer_is_returned_and_recorded():
    request = tools_request(HAIKU, FLASH)
    response, events, broken = run(request, fail_over=False)
    assert response.model_id == broken and response.quality_score < 1.0
    assert not of_type(events, AttemptFailed)
    done = events[-1]
    assert done.tool_calls_valid is False and done.tool_calls == ("get_weather",)
