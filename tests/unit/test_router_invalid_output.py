"""Invalid tool calls and structured output through RouterCore (issue 13): with
``settings.quality.fail_over_on_invalid_output`` (the default) an answer that fails its schema is a
failed attempt of that model (``invalid_output``: neutral for its provider's health, a failure in
its statistics) and the next candidate is tried; without, it is returned and recorded invalid.
``RequestCompleted`` records tool names and counts, the format asked, the verdicts and image
counts, never an argument, a schema or an image (``tool_calls_json`` only with store_prompts)."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from api_model_management import ModelRequest, SelectionConstraints, StreamChunk, ToolCall
from api_model_management.budget._pricing import cost_usd
from api_model_management.config import ModelConfig
from api_model_management.errors import AllCandidatesFailed, ProviderServerError, StreamInterrupted
from api_model_management.events import (
    AttemptFailed,
    FailoverTriggered,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from api_model_management.health._core import classify
from api_model_management.selection._stats import StatsCore

from _fakes import FakeAdapter, config_with, make_router, names, of_type, ok

pytestmark = pytest.mark.unit

MINI, FLASH, HAIKU = "gpt-4.1-mini", "gemini-2.5-flash", "claude-haiku-4-5"
SECRET = "Zanzibar-7731"
WEATHER = {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": SECRET}},
    "required": ["city"]}}
ANSWER = {"type": "object", "properties": {"answer": {"type": "string"}, SECRET: {"type": "number"}},
          "required": ["answer"]}


def tools_request(*allowed: str, **fields) -> ModelRequest:
    fields.setdefault("cacheable", False)
    if allowed:
        fields["constraints"] = SelectionConstraints(allowed_models=allowed)
    return ModelRequest(prompt="Weather in Paris?", tools=[WEATHER, {"name": "get_time"}],
                        **fields)


def schema_request(*allowed: str, **fields) -> ModelRequest:
    fields.setdefault("cacheable", False)
    return ModelRequest(prompt="Answer in JSON.", constraints=SelectionConstraints(
        allowed_models=allowed), response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}}, **fields)


def calls(arguments: str) -> tuple[ToolCall, ...]:
    return (ToolCall(id="call_1", name="get_weather", arguments=arguments),)


GOOD = ok("", finish_reason="tool_calls", tool_calls=calls(f'{{"city": "{SECRET}"}}'))
BAD = ok("", finish_reason="tool_calls", tool_calls=calls(f'{{"town": "{SECRET}"}}'))


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str | None]] = []

    def outcome(self, provider, model_id, ok, error_kind, latency_ms, quality=None) -> None:
        self.seen.append((model_id, ok, error_kind))


def script(router, model_id: str, *outcomes) -> FakeAdapter:
    adapter = router.adapters[router.config.model(model_id).provider]
    adapter.script(model_id, *outcomes)
    return adapter


def no_secret(events) -> None:
    for event in events:
        assert SECRET not in event.model_dump_json(), type(event).__name__


def test_invalid_tool_arguments_fail_over_to_the_next_model():
    router, _, sleep, events = make_router()
    router.outcomes = outcomes = Outcomes()
    script(router, MINI, BAD)
    script(router, FLASH, GOOD)
    response = asyncio.run(router.complete(tools_request(MINI, FLASH)))

    assert response.model_id == FLASH and response.attempts == 2
    assert response.tool_calls == GOOD.tool_calls and response.quality_score == 1.0
    assert names(events.events) == [
        "ModelSelected", "ResponseEvaluated", "AttemptFailed", "FailoverTriggered",
        "ResponseEvaluated", "RequestCompleted"]
    first, second = of_type(events.events, ResponseEvaluated)
    assert (first.model_id, first.evaluator, first.quality_score) == (MINI, "schema", 0.0)
    assert "call 1 (get_weather): arguments fail the schema's 'required' rule" in first.explanation
    assert (second.model_id, second.quality_score) == (FLASH, 1.0)
    (failed,) = of_type(events.events, AttemptFailed)
    assert (failed.model_id, failed.error_kind, failed.transient) == (MINI, "invalid_output", False)
    (failover,) = of_type(events.events, FailoverTriggered)
    assert (failover.reason, failover.backoff_ms) == ("invalid_output", 0.0)
    assert sleep.delays == []  # the provider answered: nothing to wait for
    done = events.events[-1]
    assert (done.tool_calls, done.tool_count, done.image_count) == (("get_weather",), 2, 0)
    assert (done.tool_calls_valid, done.structured_valid, done.response_format) == (True, None, None)
    assert done.tool_calls_json is None
    # both answers were paid for
    mini, flash = router.config.model(MINI), router.config.model(FLASH)
    assert response.cost_usd == done.cost_usd == (cost_usd(mini, 12, 50) + cost_usd(flash, 12, 50))
    # a failure of the model, not of its provider
    assert outcomes.seen == [(MINI, False, "invalid_output"), (FLASH, True, None)]
    assert classify(False, "invalid_output") == "neutral"
    stats = StatsCore.from_events(events.events).snapshot()
    assert (stats[MINI].failures, stats[FLASH].successes) == (1, 1)
    no_secret(events.events)


def test_an_invalid_structured_answer_fails_over():
    router, _, _, events = make_router()
    script(router, MINI, ok(f'{{"answer": 42, "{SECRET}": 1}}'))
    script(router, FLASH, ok('{"answer": "42"}'))
    response = asyncio.run(router.complete(schema_request(MINI, FLASH)))
    assert (response.model_id, response.text) == (FLASH, '{"answer": "42"}')
    first, _ = of_type(events.events, ResponseEvaluated)
    assert first.explanation == "structured answer invalid (the answer fails the schema's 'type' rule)"
    done = events.events[-1]
    assert (done.response_format, done.structured_valid, done.tool_calls_valid) == (
        "json_schema", True, None)
    assert done.tool_calls is None and done.tool_count == 0
    no_secret(events.events)


def test_when_every_model_answers_invalidly_the_request_fails():
    router, _, _, events = make_router()
    script(router, MINI, ok("Sure! Here is your JSON."))
    script(router, FLASH, ok("```json\n{\"answer\": \"42\"}\n```"))
    with pytest.raises(AllCandidatesFailed) as caught:
        asyncio.run(router.complete(schema_request(MINI, FLASH)))
    assert caught.value.errors == ["invalid_output", "invalid_output"]
    (failed,) = of_type(events.events, RequestFailed)
    assert failed.error_kind == "all_candidates_failed" and failed.models_tried == (MINI, FLASH)
    assert failed.cost_usd > 0  # the answers were billed
    assert not of_type(events.events, RequestCompleted)


def test_a_pinned_model_has_nowhere_to_go():
    router, _, _, _ = make_router()
    script(router, MINI, BAD)
    with pytest.raises(AllCandidatesFailed):
        asyncio.run(router.complete(tools_request(model_id=MINI)))


def test_a_required_call_not_made_fails_over():
    router, _, _, events = make_router()
    script(router, MINI, ok("I will not call anything."))
    script(router, FLASH, GOOD)
    response = asyncio.run(router.complete(tools_request(MINI, FLASH, tool_choice="required")))
    assert response.model_id == FLASH
    first, _ = of_type(events.events, ResponseEvaluated)
    assert "no tool call, though tool_choice requires one" in first.explanation


def test_with_fail_over_off_the_invalid_answer_is_returned_and_recorded():
    router, _, _, events = make_router(config_with(quality={"fail_over_on_invalid_output": False}))
    adapter = script(router, MINI, BAD, BAD)
    request = tools_request(MINI, FLASH, cacheable=True, parameters={"temperature": 0})
    response = asyncio.run(router.complete(request))
    assert response.model_id == MINI and response.tool_calls == BAD.tool_calls
    assert response.quality_score == 0.0
    assert names(events.events) == ["ModelSelected", "ResponseEvaluated", "QualityLow",
                                    "RequestCompleted"]
    done = events.events[-1]
    assert (done.tool_calls, done.tool_calls_valid) == (("get_weather",), False)
    # an invalid answer is never cached: the same request asks the model again
    asyncio.run(router.complete(request))
    assert len(adapter.calls_to(MINI)) == 2


def test_a_valid_answer_is_cached_and_the_hit_records_the_request_not_a_verdict():
    router, _, _, events = make_router()
    adapter = script(router, MINI, ok('{"answer": "42"}'))
    request = schema_request(MINI, cacheable=True, parameters={"temperature": 0})
    asyncio.run(router.complete(request))
    hit = asyncio.run(router.complete(request))
    assert hit.cache_hit and hit.text == '{"answer": "42"}' and len(adapter.calls) == 1
    cached = of_type(events.events, RequestCompleted)[-1]
    assert cached.cache_hit and cached.response_format == "json_schema"
    assert cached.structured_valid is None  # not evaluated on a hit


def test_a_stream_is_never_failed_over_for_invalid_output():
    router, _, _, events = make_router()
    script(router, MINI, ok("Not JSON at all."))

    async def drain() -> list[StreamChunk]:
        return [chunk async for chunk in router.stream(schema_request(MINI, FLASH))]

    chunks = asyncio.run(drain())
    assert chunks[-1].done and chunks[-1].model_id == MINI
    done = events.events[-1]
    assert isinstance(done, RequestCompleted) and done.streamed and done.structured_valid is False
    assert not of_type(events.events, AttemptFailed)


class CallThenFail(FakeAdapter):
    """Streams one whole tool call, then fails."""

    async def stream(self, request: ModelRequest, model: ModelConfig, *,
                     timeout_s: float | None = None) -> AsyncIterator[StreamChunk]:
        self.calls.append(None)
        yield StreamChunk(tool_call=GOOD.tool_calls[0], model_id=model.id)
        raise ProviderServerError("boom", provider=self.name, model_id=model.id)


def test_a_stream_that_fails_after_a_tool_call_is_interrupted_not_failed_over():
    """The caller has the call: another model's answer would come on top of it."""
    router, _, _, events = make_router()
    router.adapters["openai"] = CallThenFail("openai")
    flash = script(router, FLASH, GOOD)

    async def drain() -> list[StreamChunk]:
        return [chunk async for chunk in router.stream(tools_request(MINI, FLASH))]

    with pytest.raises(StreamInterrupted):
        asyncio.run(drain())
    assert flash.calls == [] and not of_type(events.events, FailoverTriggered)


def png_url(width: int, height: int) -> str:
    raw = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
           + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00")
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def test_images_are_counted_never_logged_and_tool_calls_json_only_with_store_prompts():
    image = png_url(64, 64)
    parts = [{"type": "text", "text": "Weather where this was taken?"},
             {"type": "image_url", "image_url": {"url": image}},
             {"type": "image_url", "image_url": {"url": "https://example.com/" + SECRET}}]

    def request() -> ModelRequest:
        return ModelRequest(messages=[{"role": "user", "content": parts}], tools=[WEATHER],
                            cacheable=False, constraints=SelectionConstraints(allowed_models=(MINI,)))

    router, _, _, events = make_router()
    script(router, MINI, GOOD)
    asyncio.run(router.complete(request()))
    done = events.events[-1]
    assert (done.image_count, done.tool_count, done.tool_calls_json) == (2, 1, None)
    no_secret(events.events)
    assert not any(image[30:60] in e.model_dump_json() for e in events.events)

    router, _, _, events = make_router(config_with(store_prompts=True))
    script(router, MINI, GOOD)
    asyncio.run(router.complete(request()))
    done = events.events[-1]
    assert done.tool_calls_json == (
        f'[{{"id":"call_1","type":"function","function":{{"name":"get_weather",'
        f'"arguments":"{{\\"city\\": \\"{SECRET}\\"}}"}}}}]')
    assert done.prompt_text == "Weather where this was taken?"  # texts only, never the images


def test_a_plain_request_records_zero_counts_and_no_verdict():
    router, _, _, events = make_router()
    script(router, MINI, ok())
    asyncio.run(router.complete(ModelRequest(prompt="Explain what a hash map is.", cacheable=False,
                                             constraints=SelectionConstraints(allowed_models=(MINI,)))))
    done = events.events[-1]
    assert (done.tool_calls, done.tool_count, done.image_count, done.response_format) == (
        None, 0, 0, None)
    assert (done.structured_valid, done.tool_calls_valid) == (None, None)
    assert of_type(events.events, ResponseEvaluated)[0].evaluator == "heuristic"
    assert done.cost_usd == cost_usd(router.config.model(MINI), 12, 50) > Decimal(0)


def test_the_judge_never_rates_an_answer_its_schema_judged():
    """A judge reads prose: a tool call (or a JSON answer) is judged by its schema alone, so no
    judge rating (a higher tier of learnt quality) overrides that verdict."""
    config = config_with(quality={"judge": {"enabled": True, "model_id": MINI, "sample_rate": 1.0}})
    router, _, _, events = make_router(config)
    script(router, FLASH, GOOD)

    async def scenario():
        await router.complete(tools_request(FLASH))
        await asyncio.gather(*list(router._background))

    asyncio.run(scenario())
    assert router.adapters["openai"].calls_to(MINI) == [] and not router._background
    assert [e.agent_type for e in of_type(events.events, RequestCompleted)] == ["default"]
