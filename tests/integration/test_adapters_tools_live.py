"""Tools, structured output and images through the four adapters against the emulator over real
loopback HTTP (issue 13): a forced tool call whose arguments validate against the tool's schema,
the conversation continued with the tool's result, a structured answer valid against the
requested schema, an image counted within the bound, each plain and streamed; and a conversation
begun on one provider (with its call ids) continued on every other."""

from __future__ import annotations

import asyncio
import base64
import struct
from decimal import Decimal

import jsonschema
import orjson
import pytest
from pydantic import SecretStr

from api_model_management._request import ModelRequest, ProviderResult
from api_model_management.config import ModelConfig, ProviderConfig
from api_model_management.providers import make_adapter

pytestmark = pytest.mark.integration

KINDS = ("openai", "anthropic", "google", "ollama")
WIRE = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
        "ollama": "llama3.2"}
KEY = "sk-test-integration-0123456789"
WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "minLength": 1},
    "unit": {"type": "string", "enum": ["c", "f"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "unit"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Forecast",
                                           "parameters": WEATHER}}]
REPORT = {"type": "object", "properties": {
    "summary": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
    "required": ["summary", "score", "tags"], "additionalProperties": False}  # strict: all required


def png_url(width: int, height: int) -> str:
    raw = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
           + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00" + b"\x00" * 16)
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def model_config(kind: str) -> ModelConfig:
    return ModelConfig(id=f"{kind}-model", provider=kind, name=kind,
                       capabilities=["text-generation"], cost_per_1k_input_tokens=Decimal("0.001"),
                       cost_per_1k_output_tokens=Decimal("0.002"),
                       rate_limits={"requests_per_minute": 600, "tokens_per_minute": 1_000_000},
                       context_window=128_000, average_response_time_ms=100,
                       provider_model=WIRE[kind])


def call(emulator, kind: str, request: ModelRequest, *, streamed: bool) -> tuple[
        ProviderResult, list]:
    """The result and, streamed, the tool calls as the stream yielded them."""
    config = ProviderConfig(type=kind, base_url=emulator.url_for(kind), max_connections=8,
                            timeouts={"connect_s": 2.0, "read_s": 10.0, "total_s": 15.0})

    async def go():
        adapter = make_adapter(kind, config, SecretStr(KEY) if kind != "ollama" else None)
        try:
            if not streamed:
                return await adapter.complete(request, model_config(kind)), []
            chunks = [c async for c in adapter.stream(request, model_config(kind))]
            assert chunks[-1].done and chunks[-1].result is not None
            return chunks[-1].result, [c.tool_call for c in chunks if c.tool_call]
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def ask_weather(**fields) -> ModelRequest:
    return ModelRequest(**{"messages": [{"role": "system", "content": "Use the tools."},
                                        {"role": "user", "content": "Weather in Paris?"}],
                           "tools": TOOLS, "tool_choice": "required", "max_tokens": 200,
                           "parameters": {"temperature": 0}, **fields})


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_forced_tool_call_then_the_answer(fresh_emulator, kind, streamed):
    result, yielded = call(fresh_emulator, kind, ask_weather(), streamed=streamed)
    assert result.finish_reason == "tool_calls"
    [tool_call] = result.tool_calls
    assert tool_call.name == "get_weather" and tool_call.id
    jsonschema.validate(tool_call.parsed_arguments(), WEATHER)
    if streamed:
        assert yielded == [tool_call]
    history = [*(ask_weather().messages or ()),
               {"role": "assistant", "content": result.text or None,
                "tool_calls": [tool_call.to_openai()]},
               {"role": "tool", "tool_call_id": tool_call.id, "content": '{"temp_c": 18}'}]
    answer, _ = call(fresh_emulator, kind, ask_weather(messages=history, tool_choice="auto"),
                     streamed=streamed)
    assert answer.text.strip() and answer.tool_calls == ()
    assert answer.finish_reason in ("stop", "length")


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_structured_answer_validates_against_the_schema(fresh_emulator, kind, streamed):
    request = ModelRequest(prompt="Summarize the weather report.", max_tokens=300,
                           response_format={"type": "json_schema", "json_schema": {
                               "name": "report", "schema": REPORT, "strict": True}})
    result, yielded = call(fresh_emulator, kind, request, streamed=streamed)
    jsonschema.validate(orjson.loads(result.text), REPORT)
    assert result.tool_calls == () and yielded == []
    assert result.finish_reason in ("stop", "length")


@pytest.mark.parametrize("kind", ["openai", "anthropic", "google"])
def test_an_image_is_counted_within_the_bound(fresh_emulator, kind):
    def request(*images: str) -> ModelRequest:
        parts = [{"type": "text", "text": "What is in this picture?"}]
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        return ModelRequest(messages=[{"role": "user", "content": parts}], max_tokens=50)

    plain, _ = call(fresh_emulator, kind, request(), streamed=False)
    pictured = request(png_url(1600, 1200))
    result, _ = call(fresh_emulator, kind, pictured, streamed=True)
    billed = result.input_tokens + result.cached_tokens
    assert billed > plain.input_tokens + plain.cached_tokens  # the image was counted
    assert billed <= pictured.input_token_bound(WIRE[kind], kind)


@pytest.mark.parametrize("first", KINDS)
def test_a_conversation_begun_on_one_provider_continues_on_every_other(fresh_emulator, first):
    result, _ = call(fresh_emulator, first, ask_weather(), streamed=False)
    [tool_call] = result.tool_calls
    history = [*(ask_weather().messages or ()),
               {"role": "assistant", "content": None, "tool_calls": [tool_call.to_openai()]},
               {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 18 C"}]
    for kind in KINDS:
        if kind == first:
            continue
        answer, _ = call(fresh_emulator, kind, ask_weather(messages=history, tool_choice="auto"),
                         streamed=kind == "anthropic")
        assert answer.text.strip(), (first, kind)
