"""Tools, structured output and images at the adapter edge (issue 13.2), against scripted
``httpx.MockTransport`` replies: each adapter's request body in its provider's protocol
(protocols.md and the providers' API references), its replies and streams read back into tool
calls, and the failures that belong to tool calls. No sockets."""

from __future__ import annotations

import asyncio
import base64
import struct
from decimal import Decimal

import httpx
import orjson
import pytest
from pydantic import SecretStr

from api_model_management import errors
from api_model_management._clock import ManualClock
from api_model_management._request import (
    JSON_OBJECT_INSTRUCTION,
    ModelRequest,
    StreamChunk,
    ToolCall,
)
from api_model_management.config import ModelConfig, ProviderConfig
from api_model_management.providers import make_adapter
from api_model_management.providers._tools import (
    ESCAPED_ID_PREFIX,
    anthropic_id,
    derived_id,
    from_anthropic_id,
    gemini_schema,
    openai_id,
)
from api_model_management.providers.anthropic import messages_from_anthropic
from api_model_management.providers.gemini import messages_from_gemini

pytestmark = pytest.mark.unit

KEY = "sk-proj-SeCrEtKeY0123456789abcdef"
BASES = {"openai": "https://api.openai.test/v1", "anthropic": "https://api.anthropic.test",
         "google": "https://gemini.test", "ollama": "http://ollama.test:11434"}
WIRE = {"openai": "gpt-4.1", "anthropic": "claude-x", "google": "gemini-2.5-flash",
        "ollama": "llama3.2"}
KINDS = list(BASES)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"},
                                            "unit": {"type": ["string", "null"],
                                                     "enum": ["c", "f"]}},
           "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time"}}]
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
                         + struct.pack(">II", 800, 600) + b"\x08\x02\x00\x00\x00").decode()
DATA_URL = f"data:image/png;base64,{PIXEL}"
REPORT = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def call(call_id: str, name: str = "get_weather", args: dict | None = None) -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(
                {"city": "Paris"} if args is None else args).decode()}}


def conversation() -> list[dict]:
    """System, a user turn with an image, two calls answered, a user follow-up."""
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather where this is?"},
                                     {"type": "image_url", "image_url": {"url": DATA_URL}},
                                     {"type": "image_url",
                                      "image_url": {"url": "https://img.test/b.jpg"}}]},
        {"role": "assistant", "content": "Checking.",
         "tool_calls": [call("call_A"), call("call_B", "get_time", {})]},
        {"role": "tool", "tool_call_id": "call_B", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_A", "content": '{"temp_c": 21}'},
        {"role": "user", "content": "And tomorrow?"},
    ]


def agent_request(**kw) -> ModelRequest:
    return ModelRequest(**{"messages": conversation(), "tools": TOOLS, "max_tokens": 64,
                           "parameters": {"temperature": 1.5, "seed": 11}, **kw})


def model_config(kind: str) -> ModelConfig:
    return ModelConfig(id=f"{kind}-model", provider=kind, name=kind,
                       capabilities=["text-generation"], cost_per_1k_input_tokens=Decimal("0.001"),
                       cost_per_1k_output_tokens=Decimal("0.002"),
                       rate_limits={"requests_per_minute": 60, "tokens_per_minute": 100000},
                       context_window=8192, average_response_time_ms=500, provider_model=WIRE[kind])


def adapter(kind: str, handler, **cfg):
    key = None if kind == "ollama" else SecretStr(KEY)
    return make_adapter(kind, ProviderConfig(type=kind, base_url=BASES[kind], **cfg), key,
                        transport=httpx.MockTransport(handler), clock=ManualClock())


def complete(kind: str, handler, request: ModelRequest | None = None, **cfg):
    async def go():
        a = adapter(kind, handler, **cfg)
        try:
            return await a.complete(request or agent_request(), model_config(kind))
        finally:
            await a.aclose()

    return asyncio.run(go())


def collect(kind: str, handler, request: ModelRequest | None = None, **cfg) -> list[StreamChunk]:
    async def go():
        a = adapter(kind, handler, **cfg)
        try:
            return [c async for c in a.stream(request or agent_request(), model_config(kind))]
        finally:
            await a.aclose()

    return asyncio.run(go())


def json_reply(body: object) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(body),
                          headers={"content-type": "application/json"})


def stream_reply(kind: str, events: list[object]) -> httpx.Response:
    if kind == "ollama":
        payload = b"".join(orjson.dumps(e) + b"\n" for e in events)
        return httpx.Response(200, content=payload, headers={"content-type": "application/x-ndjson"})
    lines = []
    for event in events:
        if isinstance(event, tuple):  # Anthropic: (event name, data)
            lines.append(f"event: {event[0]}\ndata: {orjson.dumps(event[1]).decode()}\n\n")
        elif isinstance(event, str):
            lines.append(f"data: {event}\n\n")
        else:
            lines.append(f"data: {orjson.dumps(event).decode()}\n\n")
    return httpx.Response(200, content="".join(lines).encode(),
                          headers={"content-type": "text/event-stream"})


OK_REPLY = {
    "openai": {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                       "finish_reason": "stop"}]},
    "anthropic": {"id": "m", "type": "message", "content": [{"type": "text", "text": "ok"}],
                  "stop_reason": "end_turn", "usage": {}},
    "google": {"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
               "responseId": "r"},
    "ollama": {"message": {"role": "assistant", "content": "ok"}, "done": True,
               "done_reason": "stop"},
}


def body_sent(kind: str, request: ModelRequest | None = None) -> dict:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return json_reply(OK_REPLY[kind])

    complete(kind, handler, request)
    return orjson.loads(seen[0].content)


# =============================================================================================
# request bodies


def test_openai_body_is_the_request_as_it_is():
    body = body_sent("openai", agent_request(tool_choice="required", parallel_tool_calls=False,
                                             response_format={"type": "json_object"}))
    assert body["tools"] == TOOLS[:1] + [{"type": "function", "function": {
        "name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["response_format"] == {"type": "json_object"}
    assert body["seed"] == 11 and body["temperature"] == 1.5
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert _same_messages(body["messages"][1:], conversation()[1:])
    assert body["messages"][1]["content"][1] == {"type": "image_url",
                                                 "image_url": {"url": DATA_URL, "detail": "auto"}}


def _same_messages(sent: list[dict], expected: list[dict]) -> bool:
    for got, want in zip(sent, expected, strict=True):
        assert got["role"] == want["role"]
        if want["role"] == "user" and isinstance(want["content"], list):
            assert [p["type"] for p in got["content"]] == [p["type"] for p in want["content"]]
        else:
            assert got["content"] == want["content"]
        assert got.get("tool_calls") == want.get("tool_calls")
        assert got.get("tool_call_id") == want.get("tool_call_id")
    return True


def test_openai_body_without_tools_has_no_tool_fields_and_long_ids_are_shortened():
    long_id = "toolu_" + "x" * 60
    request = ModelRequest(messages=[
        {"role": "assistant", "tool_calls": [call(long_id)]},
        {"role": "tool", "tool_call_id": long_id, "content": "r"}], tool_choice="none")
    body = body_sent("openai", request)
    assert "tools" not in body and "tool_choice" not in body and "parallel_tool_calls" not in body
    sent_id = body["messages"][0]["tool_calls"][0]["id"]
    assert sent_id == openai_id(long_id) and len(sent_id) <= 40
    assert body["messages"][1]["tool_call_id"] == sent_id
    assert openai_id("call_short") == "call_short"


def test_anthropic_body_blocks():
    body = body_sent("anthropic", agent_request())
    assert body["system"] == "Be brief."
    assert body["temperature"] == 1.0 and "seed" not in body  # Anthropic: 0-1, no seed
    user, assistant, results = body["messages"]
    assert user == {"role": "user", "content": [
        {"type": "text", "text": "Weather where this is?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "image", "source": {"type": "url", "url": "https://img.test/b.jpg"}}]}
    assert assistant == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_B", "name": "get_time", "input": {}}]}
    # both results and the follow-up are one user turn, results first
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_B", "content": "12:00"},
        {"type": "tool_result", "tool_use_id": "call_A", "content": '{"temp_c": 21}'},
        {"type": "text", "text": "And tomorrow?"}]}
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in body


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_time"}}, None,
     {"type": "tool", "name": "get_time"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_anthropic_tool_choice(choice, parallel, expected):
    body = body_sent("anthropic", agent_request(tool_choice=choice, parallel_tool_calls=parallel))
    assert body["tool_choice"] == expected


def test_anthropic_declares_tools_the_conversation_called_and_answers_in_text():
    request = ModelRequest(messages=conversation())  # no tools offered now
    body = body_sent("anthropic", request)
    assert body["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}},
                             {"name": "get_time", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "none"}


def test_anthropic_structured_output_through_a_forced_tool():
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": REPORT}}
    alone = body_sent("anthropic", ModelRequest(prompt="q", response_format=fmt))
    assert alone["tools"] == [{"name": "report", "description": (
        "Give the final answer, as this tool's input."), "input_schema": REPORT}]
    assert alone["tool_choice"] == {"type": "tool", "name": "report"}
    with_tools = body_sent("anthropic", agent_request(response_format=fmt))
    assert [t["name"] for t in with_tools["tools"]] == ["get_weather", "get_time", "report"]
    assert with_tools["tool_choice"] == {"type": "any"}  # a real call or the answer
    clash = body_sent("anthropic", ModelRequest(prompt="q", tools=[{"name": "report"}],
                                                response_format=fmt))
    assert [t["name"] for t in clash["tools"]] == ["report", "answer_report"]
    as_object = body_sent("anthropic", ModelRequest(prompt="q", system="S",
                                                    response_format={"type": "json_object"}))
    assert as_object["system"] == f"S\n\n{JSON_OBJECT_INSTRUCTION}" and "tools" not in as_object


def test_anthropic_ids_are_escaped_reversibly():
    odd = "call:1/é"
    request = ModelRequest(messages=[{"role": "assistant", "tool_calls": [call(odd)]},
                                     {"role": "tool", "tool_call_id": odd, "content": "r"}])
    body = body_sent("anthropic", request)
    wire = body["messages"][0]["content"][0]["id"]
    assert wire.startswith(ESCAPED_ID_PREFIX) and body["messages"][1]["content"][0][
        "tool_use_id"] == wire
    assert from_anthropic_id(wire) == odd
    assert anthropic_id("toolu_01A-b") == "toolu_01A-b"
    assert from_anthropic_id(anthropic_id(ESCAPED_ID_PREFIX + "x")) == ESCAPED_ID_PREFIX + "x"
    assert [c.id for c in messages_from_anthropic(body)[0].tool_calls] == [odd]


def test_gemini_body_parts():
    body = body_sent("google", agent_request(tool_choice="auto"))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    user, model, results = body["contents"]
    assert user == {"role": "user", "parts": [
        {"text": "Weather where this is?"},
        {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://img.test/b.jpg"}}]}
    assert model == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"id": "call_A", "name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"id": "call_B", "name": "get_time", "args": {}}}]}
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"id": "call_B", "name": "get_time",
                              "response": {"result": "12:00"}}},
        {"functionResponse": {"id": "call_A", "name": "get_weather",
                              "response": {"result": '{"temp_c": 21}'}}},
        {"text": "And tomorrow?"}]}
    [declarations] = body["tools"]
    assert declarations == {"functionDeclarations": [
        {"name": "get_weather", "description": "Weather now", "parameters": {
            "type": "OBJECT", "properties": {"city": {"type": "STRING"},
                                             "unit": {"type": "STRING", "nullable": True,
                                                      "enum": ["c", "f"]}},
            "required": ["city"]}},
        {"name": "get_time"}]}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body["generationConfig"] == {"maxOutputTokens": 64, "temperature": 1.5, "seed": 11}


@pytest.mark.parametrize(("choice", "expected"), [
    ("required", {"mode": "ANY"}), ("none", {"mode": "NONE"}),
    ({"type": "function", "function": {"name": "get_time"}},
     {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
])
def test_gemini_tool_config(choice, expected):
    body = body_sent("google", agent_request(tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_gemini_structured_output():
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": REPORT}}
    config = body_sent("google", ModelRequest(prompt="q", response_format=fmt))["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {"type": "OBJECT", "properties": {
        "answer": {"type": "STRING"}}, "required": ["answer"]}
    recursive = {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                 "$ref": "#/$defs/n"}
    config = body_sent("google", ModelRequest(prompt="q", response_format={
        "type": "json_schema", "json_schema": {"schema": recursive}}))["generationConfig"]
    assert config["responseJsonSchema"] == recursive and "responseSchema" not in config
    json_object = body_sent("google", ModelRequest(prompt="q",
                                                   response_format={"type": "json_object"}))
    assert json_object["generationConfig"]["responseMimeType"] == "application/json"
    # beside tools Gemini takes no JSON MIME type: a response tool, or the instruction
    with_tools = body_sent("google", agent_request(response_format=fmt))
    assert "responseMimeType" not in with_tools["generationConfig"]
    names = [d["name"] for d in with_tools["tools"][0]["functionDeclarations"]]
    assert names == ["get_weather", "get_time", "report"]
    assert with_tools["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    object_with_tools = body_sent("google", agent_request(response_format={"type": "json_object"}))
    assert JSON_OBJECT_INSTRUCTION in object_with_tools["systemInstruction"]["parts"][0]["text"]


def test_gemini_schema_conversion():
    assert gemini_schema({"type": "array", "items": {"type": "integer", "format": "int64"},
                          "$schema": "x", "minItems": 1}) == {
        "type": "ARRAY", "items": {"type": "INTEGER", "format": "int64"}, "minItems": 1}
    assert gemini_schema({"type": "string", "format": "email"}) == {"type": "STRING"}
    assert gemini_schema({"const": "a"}) == {"enum": ["a"]}
    assert gemini_schema({"anyOf": [{"type": "string"}, {"type": "null"}]}) is None
    assert gemini_schema({"oneOf": [{"type": "string"}]}) is None
    assert gemini_schema({"enum": [1, 2]}) is None
    assert gemini_schema({"type": ["string", "integer"]}) is None
    assert gemini_schema({"type": "object", "properties": {"a": {"$ref": "#"}}}) is None


def test_gemini_parameters_that_do_not_convert_go_as_json_schema():
    odd = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}
    body = body_sent("google", ModelRequest(prompt="q", tools=[{"name": "f", "parameters": odd}]))
    assert body["tools"][0]["functionDeclarations"] == [{"name": "f", "parametersJsonSchema": odd}]


def test_ollama_body():
    body = body_sent("ollama", ModelRequest(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                     {"type": "image_url", "image_url": {"url": DATA_URL}}]},
        {"role": "assistant", "tool_calls": [call("call_A")]},
        {"role": "tool", "tool_call_id": "call_A", "content": "sunny"},
    ], tools=TOOLS, response_format={"type": "json_schema", "json_schema": {"schema": REPORT}},
        parameters={"seed": 5}))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is it?", "images": [PIXEL]},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["format"] == REPORT and body["options"]["seed"] == 5
    assert body_sent("ollama", ModelRequest(prompt="q", response_format={
        "type": "json_object"}))["format"] == "json"
    assert "tools" not in body_sent("ollama", ModelRequest(prompt="q", tools=TOOLS,
                                                           tool_choice="none"))
    named = body_sent("ollama", ModelRequest(prompt="q", tools=TOOLS, tool_choice={
        "type": "function", "function": {"name": "get_time"}}))
    assert [t["function"]["name"] for t in named["tools"]] == ["get_time"]


def test_ollama_refuses_an_image_by_url_before_sending():
    sent: list[httpx.Request] = []
    with pytest.raises(errors.InvalidRequest, match="base64 data, not URLs") as info:
        complete("ollama", lambda r: sent.append(r) or json_reply({}), agent_request())
    assert sent == [] and info.value.raw_type == "image_url_unsupported"
    assert not info.value.failover


# =============================================================================================
# replies


def calls_of(result) -> list[tuple[str, str, dict]]:
    return [(c.id, c.name, c.parsed_arguments()) for c in result.tool_calls]


def test_openai_reply_with_tool_calls():
    reply = {"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [call("call_1"), call("call_2", "get_time", {})]}}]}
    result = complete("openai", lambda r: json_reply(reply))
    assert result.text == "" and result.finish_reason == "tool_calls"
    assert calls_of(result) == [("call_1", "get_weather", {"city": "Paris"}),
                                ("call_2", "get_time", {})]


@pytest.mark.parametrize("bad_call", [
    {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"cut": '}},
    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}},
    {"id": "c", "type": "function", "function": {"name": "bad name", "arguments": "{}"}},
    {"type": "function", "function": {"name": "f", "arguments": "{}"}},
])
def test_openai_reply_with_a_broken_tool_call_is_malformed(bad_call):
    reply = {"choices": [{"index": 0, "finish_reason": "tool_calls",
                          "message": {"content": None, "tool_calls": [bad_call]}}]}
    with pytest.raises(errors.MalformedResponse) as info:
        complete("openai", lambda r: json_reply(reply))
    assert "cut" not in str(info.value) and info.value.failover


def test_openai_refusal_without_content_is_a_policy_violation():
    reply = {"choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"content": None, "refusal": "I can't help with that."}}]}
    with pytest.raises(errors.ContentPolicyViolation):
        complete("openai", lambda r: json_reply(reply))


def test_anthropic_reply_with_tool_use():
    reply = {"id": "msg_1", "type": "message", "stop_reason": "tool_use", "usage": {},
             "content": [{"type": "text", "text": "Let me check."},
                         {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                          "input": {"city": "Oslo"}},
                         {"type": "tool_use", "id": anthropic_id("call:x"), "name": "get_time",
                          "input": {}}]}
    result = complete("anthropic", lambda r: json_reply(reply))
    assert result.text == "Let me check." and result.finish_reason == "tool_calls"
    assert calls_of(result) == [("toolu_01", "get_weather", {"city": "Oslo"}),
                                ("call:x", "get_time", {})]


def test_anthropic_structured_answer_comes_back_as_text():
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": REPORT}}
    reply = {"id": "msg_1", "type": "message", "stop_reason": "tool_use", "usage": {},
             "content": [{"type": "tool_use", "id": "toolu_9", "name": "report",
                          "input": {"answer": "42"}}]}
    result = complete("anthropic", lambda r: json_reply(reply),
                      ModelRequest(prompt="q", response_format=fmt))
    assert orjson.loads(result.text) == {"answer": "42"}
    assert result.tool_calls == () and result.finish_reason == "stop"


def test_gemini_reply_with_function_calls_and_derived_ids():
    def reply(response_id: str) -> dict:
        return {"responseId": response_id, "candidates": [{"finishReason": "STOP", "content": {
            "role": "model", "parts": [{"text": "On it."},
                                       {"functionCall": {"name": "get_weather",
                                                         "args": {"city": "Rome"}}},
                                       {"functionCall": {"id": "g-7", "name": "get_time"}}]}}]}

    first = complete("google", lambda r: json_reply(reply("resp-1")))
    assert first.text == "On it." and first.finish_reason == "tool_calls"
    assert first.raw_finish_reason == "STOP"
    derived = derived_id("resp-1", "1", "get_weather", '{"city":"Rome"}')
    assert calls_of(first) == [(derived, "get_weather", {"city": "Rome"}),
                               ("g-7", "get_time", {})]
    again = complete("google", lambda r: json_reply(reply("resp-1")))
    other = complete("google", lambda r: json_reply(reply("resp-2")))
    assert again.tool_calls == first.tool_calls  # deterministic
    assert other.tool_calls[0].id != first.tool_calls[0].id


def test_gemini_response_tool_answer_is_text():
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": REPORT}}
    reply = {"responseId": "r", "candidates": [{"finishReason": "STOP", "content": {"parts": [
        {"functionCall": {"name": "report", "args": {"answer": "yes"}}}]}}]}
    result = complete("google", lambda r: json_reply(reply), agent_request(response_format=fmt))
    assert orjson.loads(result.text) == {"answer": "yes"}
    assert result.tool_calls == () and result.finish_reason == "stop"


def test_ollama_reply_with_tool_calls():
    reply = {"created_at": "2025-01-01T00:00:00Z", "done": True, "done_reason": "stop",
             "message": {"role": "assistant", "content": "",
                         "tool_calls": [{"function": {"name": "get_weather",
                                                      "arguments": {"city": "Lima"}}}]}}
    result = complete("ollama", lambda r: json_reply(reply), ModelRequest(prompt="q", tools=TOOLS))
    assert result.finish_reason == "tool_calls" and result.raw_finish_reason == "stop"
    expected_id = derived_id("2025-01-01T00:00:00Z", "1", "get_weather", '{"city":"Lima"}')
    assert calls_of(result) == [(expected_id, "get_weather", {"city": "Lima"})]


# =============================================================================================
# streams


def openai_chunk(delta: dict | None = None, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-s", "choices": [{"index": 0, "delta": delta or {},
                                             "finish_reason": finish}]}


def tool_delta(index: int, arguments: str, call_id: str | None = None,
               name: str | None = None) -> dict:
    piece: dict = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        piece.update(id=call_id, type="function")
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


def test_openai_stream_assembles_tool_call_deltas_by_index():
    events = [
        openai_chunk({"role": "assistant", "content": "Sure. "}),
        openai_chunk(tool_delta(0, "", "call_1", "get_weather")),
        openai_chunk(tool_delta(0, '{"ci')),
        openai_chunk(tool_delta(0, 'ty": "Paris"}')),
        openai_chunk(tool_delta(1, '{}', "call_2", "get_time")),
        openai_chunk(finish="tool_calls"),
        {"id": "chatcmpl-s", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}},
        "[DONE]",
    ]
    chunks = collect("openai", lambda r: stream_reply("openai", events))
    kinds = [("text", c.delta) if c.delta else ("call", c.tool_call.id) if c.tool_call else "done"
             for c in chunks]
    # call_1 is whole once index 1 begins; call_2 at the finish
    assert kinds == [("text", "Sure. "), ("call", "call_1"), ("call", "call_2"), "done"]
    result = chunks[-1].result
    assert result.finish_reason == "tool_calls" and result.text == "Sure. "
    assert calls_of(result) == [("call_1", "get_weather", {"city": "Paris"}),
                                ("call_2", "get_time", {})]
    assert result.output_tokens == 9


def anthropic_events(blocks: list[tuple[str, list[str] | str, dict | None]],
                     stop: str = "tool_use") -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_s", "usage": {"input_tokens": 7, "output_tokens": 1}}})]
    for index, (kind, pieces, start) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": start or {"type": "text",
                                                                          "text": ""}}))
        for piece in pieces:
            delta = ({"type": "text_delta", "text": piece} if kind == "text"
                     else {"type": "input_json_delta", "partial_json": piece})
            events.append(("content_block_delta", {"type": "content_block_delta",
                                                   "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop},
                                     "usage": {"output_tokens": 12}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def test_anthropic_stream_assembles_input_json_deltas():
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    empty = {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
    events = anthropic_events([("text", ["Let ", "me."], None),
                               ("tool", ['{"city":', ' "Oslo"}'], use), ("tool", [], empty)])
    chunks = collect("anthropic", lambda r: stream_reply("anthropic", events))
    assert [c.delta for c in chunks if c.delta] == ["Let ", "me."]
    assert [c.tool_call.id for c in chunks if c.tool_call] == ["toolu_1", "toolu_2"]
    result = chunks[-1].result
    assert calls_of(result) == [("toolu_1", "get_weather", {"city": "Oslo"}),
                                ("toolu_2", "get_time", {})]
    assert result.finish_reason == "tool_calls" and result.output_tokens == 12


def test_anthropic_streamed_structured_answer_is_a_text_delta():
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": REPORT}}
    use = {"type": "tool_use", "id": "toolu_1", "name": "report", "input": {}}
    events = anthropic_events([("tool", ['{"answer"', ': "7"}'], use)])
    chunks = collect("anthropic", lambda r: stream_reply("anthropic", events),
                     ModelRequest(prompt="q", response_format=fmt))
    assert [c.delta for c in chunks if c.delta] == ['{"answer":"7"}']
    assert chunks[-1].result.finish_reason == "stop" and chunks[-1].result.tool_calls == ()


def test_gemini_stream_yields_whole_function_calls():
    events = [
        {"responseId": "rs", "candidates": [{"content": {"parts": [{"text": "Hm. "}]}}]},
        {"responseId": "rs", "candidates": [{"content": {"parts": [
            {"functionCall": {"id": "f1", "name": "get_weather", "args": {"city": "Bern"}}}]}}]},
        {"responseId": "rs", "candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_time", "args": {}}}]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}},
    ]
    chunks = collect("google", lambda r: stream_reply("google", events))
    assert [c.tool_call.id for c in chunks if c.tool_call] == [
        "f1", derived_id("rs", "2", "get_time", "{}")]
    result = chunks[-1].result
    assert result.text == "Hm. " and result.finish_reason == "tool_calls"


def test_ollama_stream_yields_the_calls_of_a_message():
    events = [
        {"created_at": "t0", "message": {"role": "assistant", "content": "",
                                         "tool_calls": [{"function": {"name": "get_time",
                                                                      "arguments": {}}}]},
         "done": False},
        {"created_at": "t1", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2},
    ]
    chunks = collect("ollama", lambda r: stream_reply("ollama", events),
                     ModelRequest(prompt="q", tools=TOOLS))
    [chunk] = [c for c in chunks if c.tool_call]
    assert chunk.tool_call == ToolCall(id=derived_id("t0", "1", "get_time", "{}"),
                                       name="get_time", arguments="{}")
    assert chunks[-1].result.finish_reason == "tool_calls"


def test_a_stream_failing_after_a_tool_call_is_interrupted_not_failed_over():
    events = [openai_chunk(tool_delta(0, "{}", "call_1", "get_time")),
              openai_chunk(tool_delta(1, "{}", "call_2", "get_time")),
              {"error": {"type": "server_error", "message": "boom"}}]
    with pytest.raises(errors.StreamInterrupted) as info:
        collect("openai", lambda r: stream_reply("openai", events))
    assert info.value.partial_text == ""


def test_streamed_tool_arguments_are_bounded():
    events = [openai_chunk(tool_delta(0, '{"a": "', "call_1", "f"))]
    events += [openai_chunk(tool_delta(0, "x" * 60)) for _ in range(40)]
    with pytest.raises(errors.ResponseTooLarge):
        collect("openai", lambda r: stream_reply("openai", events), max_response_bytes=2000)


@pytest.mark.parametrize("events", [
    [openai_chunk(tool_delta(0, "{}"))],  # a call begun without id and name
    [openai_chunk({"tool_calls": [{"function": {"arguments": "{}"}}]})],  # no index
    [openai_chunk(tool_delta(0, '{"cut', "call_1", "f")), openai_chunk(finish="tool_calls"),
     "[DONE]"],
])
def test_malformed_streamed_tool_calls(events):
    with pytest.raises(errors.MalformedResponse):
        collect("openai", lambda r: stream_reply("openai", events))


# =============================================================================================
# reading request bodies back


@pytest.mark.parametrize(("kind", "back"), [("anthropic", messages_from_anthropic),
                                            ("google", messages_from_gemini)])
def test_a_body_reads_back_into_the_conversation(kind, back):
    request = agent_request()
    messages = back(body_sent(kind, request))
    original = list(request.messages or ())
    assert [m.role for m in messages] == [m.role for m in original]
    for got, want in zip(messages, original, strict=True):
        assert got.text == want.text
        assert [(c.id, c.name, c.parsed_arguments()) for c in got.tool_calls] == [
            (c.id, c.name, c.parsed_arguments()) for c in want.tool_calls]
        assert got.tool_call_id == want.tool_call_id
        assert [i.url for i in got.images] == [i.url for i in want.images]


def test_every_adapter_sends_a_plain_request_as_before():
    """Without tools, images or formats the bodies hold no new field."""
    for kind in KINDS:
        body = body_sent(kind, ModelRequest(prompt="hi", parameters={"temperature": 0}))
        assert not {"tools", "tool_choice", "toolConfig", "format", "response_format",
                    "parallel_tool_calls"} & set(body), kind


def test_anthropic_sends_no_empty_text():
    request = ModelRequest(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": ""},
                                     {"type": "image_url", "image_url": DATA_URL}]}])
    _, assistant, results = body_sent("anthropic", request)["messages"]
    assert [b["type"] for b in assistant["content"]] == ["tool_use"]
    assert results["content"][0] == {"type": "tool_result", "tool_use_id": "c1"}
    assert [b["type"] for b in results["content"]] == ["tool_result", "image"]
