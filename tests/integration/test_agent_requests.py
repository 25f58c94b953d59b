"""Agent requests through ``ModelManagement`` (issue 13): real Ray (the session's), the emulator over
loopback, the four real adapters.

- A request pinned to a model of each provider, offering a tool that must be called, returns a
  tool call whose arguments validate against the tool's schema; the log records the tool's name
  and the verdict, never the arguments or the schema.
- A tool conversation begun on one provider continues on another when the first fails for its
  second turn (an emulator outage): the router fails over mid-conversation, the other provider
  takes the first one's call ids and arguments (the emulator refuses a tool result that answers no
  call) and answers.
- The same through a Router actor (the request, its tools and an inline image cross Ray).

The system ranks by cost alone (``weights``: cost 1), so which model is tried first is certain.
"""

from __future__ import annotations

import asyncio
import base64
import io

import orjson
import pytest

from api_model_management import ModelRequest, ModelResponse
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.evaluation import check_output
from api_model_management.events import (
    AttemptFailed,
    FailoverTriggered,
    RequestCompleted,
    ResponseEvaluated,
)
from api_model_management.events._ingest import read_all_events

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}
SECRET = "quartz-zebra-4471"  # in the tool's schema: must reach no event
WEATHER = {
    "name": "get_weather",
    "description": "The weather forecast for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2, "description": SECRET},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
}
PINNED = ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "llama3.2"]
#: (the cheaper model, which answers the first turn; the model the second turn fails over to)
HANDOVERS = [("gemini-2.5-flash", "claude-haiku-4-5"), ("gpt-4o-mini", "gemini-2.5-flash"),
             ("llama3.2", "gpt-4o-mini")]
#: The emulator's name for each provider type.
WIRE = {"openai": "openai", "anthropic": "anthropic", "google": "gemini", "ollama": "ollama"}


@pytest.fixture(scope="module")
def system(ray_session, emulator, tmp_path_factory):
    from api_model_management.runtime._system import ModelManagement

    config = demo_config()
    config = with_provider_base_urls(
        config, {n: emulator.url_for(p.type) for n, p in config.providers.items()})
    config = override(config, settings={
        "data_dir": str(tmp_path_factory.mktemp("agent-events")),
        "routers": {"replicas": 1},
        "selection": {"weights": {"capability": 0.0, "cost": 1.0, "performance": 0.0,
                                  "availability": 0.0}},
    })
    emulator.set_profile(Profile())
    mm = ModelManagement.start(config, env=KEYS)
    yield mm
    mm.shutdown()
    emulator.set_profile(Profile())


def events_of(mm, request_id: str) -> list:
    mm.flush()
    return [e for e in read_all_events(mm.config.settings.data_dir) if e.request_id == request_id]


def assert_nothing_secret(events, response: ModelResponse) -> None:
    for event in events:
        dumped = event.model_dump_json()
        assert SECRET not in dumped, type(event).__name__
        for call in response.tool_calls:
            assert call.arguments not in dumped, type(event).__name__


@pytest.mark.parametrize("model_id", PINNED)
def test_a_pinned_request_with_tools_returns_a_valid_tool_call(system, model_id):
    request = ModelRequest(prompt="What will the weather be in Lisbon this week?", model_id=model_id,
                           tools=[WEATHER], tool_choice="required", max_tokens=300)
    response = asyncio.run(system.complete(request))
    assert response.model_id == model_id and response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.id
    assert check_output(request, response.text, response.tool_calls).ok
    events = events_of(system, response.request_id)
    (done,) = [e for e in events if isinstance(e, RequestCompleted)]
    assert (done.tool_calls, done.tool_count, done.tool_calls_valid) == (("get_weather",), 1, True)
    (evaluated,) = [e for e in events if isinstance(e, ResponseEvaluated)]
    assert evaluated.evaluator == "schema" and evaluated.quality_score == 1.0
    assert_nothing_secret(events, response)


def next_turn(turn: ModelRequest, response: ModelResponse, **fields) -> ModelRequest:
    """The conversation so far, the model's calls, and one result for each."""
    messages = [m.model_dump(exclude_none=True) for m in turn.messages or ()]
    messages.append({"role": "assistant", "content": response.text or None,
                     "tool_calls": [c.to_openai() for c in response.tool_calls]})
    for call in response.tool_calls:
        city = orjson.loads(call.arguments).get("city", "Lisbon")
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": f"{city}: 21 C and clear all week"})
    return ModelRequest(messages=[m for m in messages if m.get("content") is not None
                                  or m.get("tool_calls")],
                        tools=turn.tools, **fields)


@pytest.mark.parametrize(("first", "second"), HANDOVERS)
def test_a_tool_conversation_fails_over_mid_conversation_and_completes(
        system, emulator, first, second):
    allowed = {"allowed_models": (first, second)}
    turn1 = ModelRequest(messages=[{"role": "user", "content": "Should I pack an umbrella for "
                                                               "Lisbon this week?"}],
                         tools=[WEATHER], tool_choice="required", max_tokens=300,
                         constraints=allowed)
    one = asyncio.run(system.complete(turn1))
    assert one.model_id == first and one.tool_calls  # the cheaper model calls the tool
    provider = system.config.providers[system.config.model(first).provider].type
    turn2 = next_turn(turn1, one, max_tokens=300, constraints=allowed)
    emulator.set_profile(Profile.model_validate(
        {"providers": {WIRE[provider]: {"outages": [{"start_s": 0, "end_s": 600}]}}}))
    try:
        two = asyncio.run(system.complete(turn2))
    finally:
        emulator.set_profile(Profile())
    assert two.model_id == second and two.attempts == 2
    assert two.finish_reason == "stop" and two.text and not two.tool_calls
    events = events_of(system, two.request_id)
    (failed,) = [e for e in events if isinstance(e, AttemptFailed)]
    assert failed.model_id == first and failed.transient
    (failover,) = [e for e in events if isinstance(e, FailoverTriggered)]
    assert (failover.from_model_id, failover.to_model_id) == (first, second)
    (done,) = [e for e in events if isinstance(e, RequestCompleted)]
    assert done.model_id == second and done.tool_count == 1 and done.tool_calls is None
    assert_nothing_secret(events, one)


def png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 30)).save(out, "PNG")
    return out.getvalue()


def test_tools_and_an_image_through_a_router_actor(system):
    import ray

    image = "data:image/png;base64," + base64.b64encode(png(320, 200)).decode()
    request = ModelRequest(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Where was this taken, and what is the weather there?"},
        {"type": "image_url", "image_url": {"url": image}}]}],
        tools=[WEATHER], tool_choice="required", model_id="gpt-4.1-mini", max_tokens=300)
    response = ray.get(system.handles.routers[0].complete.remote(request), timeout=60)
    assert response.tool_calls and check_output(request, response.text, response.tool_calls).ok
    events = events_of(system, response.request_id)
    (done,) = [e for e in events if isinstance(e, RequestCompleted)]
    assert (done.image_count, done.tool_calls_valid) == (1, True)
    assert all(image[40:80] not in e.model_dump_json() for e in events)
