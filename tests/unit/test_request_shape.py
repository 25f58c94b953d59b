"""The agent-grade request and response shape (issue 13.1): OpenAI's Chat Completions form with
tools, tool calls and results, images and response formats, validated once with one clear line
naming the field (never a value); the helpers the rest of the system uses."""

from __future__ import annotations

import base64
import hashlib
import pickle
import struct

import orjson
import pytest

from api_model_management import (
    ImagePart,
    ImageURL,
    JsonSchemaFormat,
    Message,
    ModelRequest,
    ModelResponse,
    NamedToolChoice,
    ProviderResult,
    ResponseFormat,
    StreamChunk,
    TextPart,
    Tool,
    ToolCall,
)
from api_model_management._images import image_size, parse_data_url
from api_model_management._request import (
    JSON_OBJECT_INSTRUCTION,
    TOOL_USE_SYSTEM_PROMPT_TOKENS,
    check_json_schema,
)
from api_model_management.config._load import CAPABILITIES
from api_model_management.errors import InvalidInput

pytestmark = pytest.mark.unit

SECRET = "SECRET-the-launch-code-is-0000"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"type": "function",
                "function": {"name": "get_weather", "description": "Weather now",
                             "parameters": WEATHER}}


def png(width: int, height: int) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
            + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00" + b"\x00" * 8)


def data_url(raw: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(raw).decode()}"


def call(call_id: str = "call_1", name: str = "get_weather", args: str = '{"city": "Paris"}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def conversation(*extra: dict) -> list[dict]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
        *extra,
    ]


def invalid(**fields) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        ModelRequest(**fields)
    return info.value


# -- the OpenAI shape is accepted ------------------------------------------------------------------


def test_a_tool_conversation_in_openai_form():
    request = ModelRequest(messages=conversation(), tools=[WEATHER_TOOL], tool_choice="auto",
                           parallel_tool_calls=False)
    assistant = request.messages[2]
    assert assistant.tool_calls == (ToolCall(id="call_1", name="get_weather",
                                             arguments='{"city": "Paris"}'),)
    assert assistant.content is None and assistant.text == ""
    assert assistant.tool_calls[0].parsed_arguments() == {"city": "Paris"}
    assert request.messages[3].role == "tool" and request.messages[3].tool_call_id == "call_1"
    assert request.tools == (Tool(name="get_weather", description="Weather now",
                                  parameters=WEATHER),)
    assert request.system_prompt() == "Be brief."
    assert [m.role for m in request.chat_messages()] == ["user", "assistant", "tool"]


def test_openai_forms_go_back_out_as_they_came():
    request = ModelRequest(messages=conversation(), tools=[WEATHER_TOOL],
                           tool_choice={"type": "function", "function": {"name": "get_weather"}},
                           response_format={"type": "json_schema", "json_schema": {
                               "name": "weather", "schema": WEATHER, "strict": True}})
    assert request.tools[0].to_openai() == WEATHER_TOOL
    assert request.messages[2].to_openai() == {"role": "assistant", "content": None,
                                               "tool_calls": [call()]}
    assert request.messages[3].to_openai() == {"role": "tool", "content": '{"temp_c": 21}',
                                               "tool_call_id": "call_1"}
    assert isinstance(request.tool_choice, NamedToolChoice)
    assert request.tool_choice.to_openai() == {"type": "function",
                                               "function": {"name": "get_weather"}}
    assert request.response_format is not None
    assert request.response_format.to_openai() == {
        "type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER,
                                               "strict": True}}


def test_content_parts_with_images_by_url_and_by_data_url():
    inline = data_url(png(640, 480))
    request = ModelRequest(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": inline},  # the URL as a bare string, accepted too
    ]}])
    message = request.messages[0]
    assert message.text == "What is this?"
    assert [i.url for i in message.images] == ["https://example.com/a.png", inline]
    first, second = request.images()
    assert first.detail == "low" and not first.is_inline and first.inline is None
    assert first.size is None
    assert second.is_inline and second.size == (640, 480)
    assert second.inline is not None and second.inline.media_type == "image/png"
    assert request.image_count() == 2
    assert message.to_openai()["content"][1] == {
        "type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}


def test_from_openai_reads_a_chat_completions_body():
    body = {"model": "gpt-4.1", "messages": conversation(), "tools": [WEATHER_TOOL],
            "tool_choice": "required", "parallel_tool_calls": True, "temperature": 0,
            "top_p": 0.5, "stop": ["END"], "seed": 7, "max_completion_tokens": 99,
            "response_format": {"type": "json_object"}, "user": "ignored"}
    request = ModelRequest.from_openai(body, agent_type="coder")
    assert request.agent_type == "coder" and request.max_tokens == 99
    assert request.tool_choice == "required" and request.parallel_tool_calls is True
    assert request.sampling() == {"temperature": 0.0, "top_p": 0.5, "stop": ["END"], "seed": 7}
    assert request.wants_json() and request.output_schema() is None
    assert ModelRequest.from_openai({"messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 5}).max_tokens == 5


def test_plain_requests_keep_working():
    request = ModelRequest(prompt="hi", system="s", parameters={"temperature": 0.3})
    [message] = request.chat_messages()
    assert message.is_plain and message.text == "hi"
    assert request.capabilities_needed() == ("text-generation",)
    assert request.tool_names() == () and request.tool_count() == 0 and request.images() == ()
    assert not request.has_tool_history() and request.response_format is None
    assert Message(role="user", content="x").is_plain


# -- each bad input: one line, the field, never the value -------------------------------------------


@pytest.mark.parametrize(("fields", "field", "problem"), [
    ({"messages": [{"role": "tool", "tool_call_id": SECRET, "content": SECRET}]},
     "messages[0].tool_call_id", "answers no tool call"),
    ({"messages": conversation({"role": "tool", "tool_call_id": "call_1", "content": "again"})},
     "messages[4].tool_call_id", "already answered"),
    ({"messages": [{"role": "assistant", "tool_calls": [call()]},
                   {"role": "user", "content": SECRET}]},
     "messages[0].tool_calls", "has no tool result"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [call()]}]},
     "messages[1].tool_calls", "has no tool result"),
    ({"messages": conversation({"role": "assistant", "tool_calls": [call()]},
                               {"role": "tool", "tool_call_id": "call_1", "content": "x"})},
     "messages[4].tool_calls[0].id", "repeats the id"),
    ({"messages": [{"role": "assistant", "tool_calls": [call(args=SECRET)]}]},
     "messages[0].tool_calls[0].arguments", "is not valid JSON"),
    ({"messages": [{"role": "assistant", "tool_calls": [call(args='["a list"]')]}]},
     "messages[0].tool_calls[0].arguments", "is not a JSON object"),
    ({"messages": [{"role": "assistant", "tool_calls": [call(name="get weather")]}]},
     "messages[0].tool_calls[0].name", "should match pattern"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [call()]}]},
     "messages[0].tool_calls", "only an assistant message"),
    ({"messages": [{"role": "user", "content": SECRET, "tool_call_id": "call_1"}]},
     "messages[0].tool_call_id", "only a tool message"),
    ({"messages": [{"role": "tool", "content": SECRET}]},
     "messages[0].tool_call_id", "needs the id"),
    ({"messages": [{"role": "assistant"}]}, "messages[0].content", "content or tool_calls"),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "has no parts"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "image_url", "image_url": "https://example.com/a.png"}]}]},
     "messages[0].content", "only a user message may hold images"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "url": SECRET}]}]},
     "messages[0].content[0]", "must be a text or image_url part"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": f"ftp://example.com/{SECRET}.png"}]}]},
     "messages[0].content[0].image_url.url", "http(s) URL or a base64 data URL"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "data:image/png;base64,@@" + SECRET}]}]},
     "messages[0].content[0].image_url.url", "not valid base64"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "data:image/tiff;base64,AAAA"}]}]},
     "messages[0].content[0].image_url.url", "image type must be one of"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": "data:text/plain,hello"}]}]},
     "messages[0].content[0].image_url.url", "data:image/<type>;base64"),
    ({"prompt": "q", "tools": [{"name": "f", "parameters": {"type": "strin", SECRET: 1}}]},
     "tools[0].parameters", "is not a valid JSON Schema"),
    ({"prompt": "q", "tools": [{"name": "f", "parameters": {"type": "array"}}]},
     "tools[0].parameters", "of type object"),
    ({"prompt": "q", "tools": [{"name": "f", "parameters": ["not", "a", "schema"]}]},
     "tools[0].parameters", "valid dictionary"),
    ({"prompt": "q", "tools": [{"name": "f"}, {"name": "f"}]}, "tools[1].name", "repeats"),
    ({"prompt": "q", "tools": [{"type": "retrieval", "function": {"name": "f"}}]},
     "tools[0]", "only tools of type function"),
    ({"prompt": "q", "tools": [{"name": "f"}], "tool_choice": {"name": "g"}},
     "tool_choice", "names no tool of tools"),
    ({"prompt": "q", "tool_choice": "required"}, "tool_choice", "tools is empty"),
    ({"prompt": "q", "tool_choice": "sometimes"}, "tool_choice", "'auto', 'none' or 'required'"),
    ({"prompt": "q", "response_format": {"type": "json_schema"}},
     "response_format.json_schema", "needs json_schema.schema"),
    ({"prompt": "q", "response_format": {"type": "json_object", "json_schema": {"schema": {}}}},
     "response_format.json_schema", "only type json_schema"),
    ({"prompt": "q", "response_format": {"type": "json_schema", "json_schema": {
        "schema": {"type": "object", "properties": {"a": {"minimum": SECRET}}}}}},
     "response_format.json_schema.schema", "is not a valid JSON Schema"),
    ({"prompt": "q", "response_format": {"type": "yaml"}}, "response_format.type", "Input should"),
    ({"prompt": "q", "parameters": {"temperature": 2.5}}, "parameters.temperature", "0 to 2"),
    ({"prompt": "q", "parameters": {"temperature": True}}, "parameters.temperature", "0 to 2"),
    ({"prompt": "q", "parameters": {"top_p": -0.1}}, "parameters.top_p", "0 to 1"),
    ({"prompt": "q", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, "parameters.stop",
     "1 to 4"),
    ({"prompt": "q", "parameters": {"stop": [SECRET, ""]}}, "parameters.stop", "1 to 4"),
    ({"prompt": "q", "parameters": {"seed": 1.5}}, "parameters.seed", "an integer"),
])
def test_each_bad_input_is_one_line_naming_the_field(fields, field, problem):
    error = invalid(**fields)
    assert error.field == field
    assert problem in str(error) and str(error).startswith("invalid ModelRequest: ")
    assert "\n" not in str(error) and SECRET not in str(error) and SECRET not in repr(error)
    assert pickle.loads(pickle.dumps(error)).field == field  # crosses Ray processes


def test_several_problems_are_all_named():
    error = invalid(prompt="q", max_tokens=0, parameters={"top_p": 3},
                    tools=[{"name": "1f"}])
    assert [where for where, _ in error.problems] == ["parameters.top_p", "tools[0].name",
                                                      "max_tokens"]


def test_the_parts_raise_invalid_input_too():
    with pytest.raises(InvalidInput) as info:
        Message(role="tool", content=SECRET)
    assert info.value.field == "tool_call_id" and SECRET not in str(info.value)
    with pytest.raises(InvalidInput, match="invalid ToolCall: arguments: is not valid JSON"):
        ToolCall(id="c", name="f", arguments="{" + SECRET)
    with pytest.raises(InvalidInput, match="invalid ImageURL: url"):
        ImageURL(url="javascript:alert(1)")
    with pytest.raises(InvalidInput, match="invalid Tool: name"):
        Tool(name="")
    with pytest.raises(InvalidInput, match="invalid JsonSchemaFormat: name"):
        JsonSchemaFormat(name="a b", schema={})
    with pytest.raises(InvalidInput, match="invalid ResponseFormat: json_schema"):
        ResponseFormat(type="json_schema")
    with pytest.raises(InvalidInput, match="invalid NamedToolChoice: name"):
        NamedToolChoice(name="")
    with pytest.raises(InvalidInput, match="invalid ImagePart: image_url"):
        ImagePart(image_url="https://")
    with pytest.raises(InvalidInput, match="invalid TextPart: text"):
        TextPart(text=None)  # type: ignore[arg-type]


def test_a_tool_call_takes_its_arguments_as_a_dict_or_a_json_string():
    assert ToolCall(id="c", name="f", arguments={"b": [1, 2], "a": None}).arguments == (
        '{"b":[1,2],"a":null}')
    assert ToolCall(id="c", name="f").parsed_arguments() == {}
    with pytest.raises(InvalidInput, match="arguments: is not JSON"):
        ToolCall(id="c", name="f", arguments={"a": {1, 2}})
    with pytest.raises(InvalidInput, match="only tool calls of type function"):
        ToolCall(**{"id": "c", "type": "custom", "function": {"name": "f"}})
    with pytest.raises(InvalidInput, match="id"):
        ToolCall(id="has space", name="f")


def test_a_result_answers_only_the_calls_of_the_assistant_message_before_it():
    # results in any order, a system message between them, two calls answered
    request = ModelRequest(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "b", "content": "2"},
        {"role": "system", "content": "note"},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "assistant", "content": "done"},
    ])
    assert request.has_tool_history()
    # a result of a call made two assistant turns before is not an answer to this one
    error = invalid(messages=[
        {"role": "assistant", "tool_calls": [call("a")]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "assistant", "tool_calls": [call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
    ])
    assert error.field == "messages[3].tool_call_id"


# -- what the request needs -----------------------------------------------------------------------


def test_capabilities_needed():
    base = {"messages": [{"role": "user", "content": "q"}]}
    assert ModelRequest(**base, tools=[WEATHER_TOOL]).capabilities_needed() == (
        "text-generation", "function-calling")
    assert ModelRequest(messages=conversation()).capabilities_needed() == (
        "text-generation", "function-calling")  # a tool conversation, no tools offered now
    image = ModelRequest(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": "https://example.com/a.png"}]}],
        required_capabilities=("vision", "analysis"))
    assert image.capabilities_needed() == ("vision", "analysis")
    schema = ModelRequest(**base, response_format={"type": "json_schema",
                                                   "json_schema": {"schema": WEATHER}})
    assert schema.capabilities_needed() == ("text-generation", "structured-output")
    assert schema.output_schema() == WEATHER and schema.wants_json()
    json_object = ModelRequest(**base, response_format={"type": "json_object"})
    assert json_object.capabilities_needed() == ("text-generation",)
    assert not ModelRequest(**base, response_format={"type": "text"}).wants_json()
    assert {"function-calling", "vision", "structured-output"} <= CAPABILITIES


def test_tool_names_and_counts():
    request = ModelRequest(prompt="q", tools=[WEATHER_TOOL, {"name": "now"}])
    assert request.tool_names() == ("get_weather", "now") and request.tool_count() == 2
    assert request.tools[1].parameters is None
    assert request.tools[1].input_schema() == {"type": "object", "properties": {}}


def test_sampling_normalizes_the_known_parameters():
    request = ModelRequest(prompt="q", parameters={"temperature": 1, "top_p": 1, "stop": "END",
                                                   "seed": 3, "custom": "kept"})
    assert request.sampling() == {"temperature": 1.0, "top_p": 1.0, "stop": ["END"], "seed": 3}
    assert request.parameters["custom"] == "kept"
    assert ModelRequest(prompt="q", parameters={"temperature": None}).sampling() == {}


# -- the token bound and the cache key ------------------------------------------------------------


def utf8(value: object) -> int:
    return len(orjson.dumps(value)) if not isinstance(value, str) else len(value.encode())


def test_the_input_bound_covers_tools_calls_results_and_schemas():
    plain = ModelRequest(messages=conversation()[:2])
    tools = ModelRequest(messages=conversation()[:2], tools=[WEATHER_TOOL])
    assert tools.input_token_bound() >= (plain.input_token_bound() + utf8(WEATHER_TOOL)
                                         + TOOL_USE_SYSTEM_PROMPT_TOKENS)
    history = ModelRequest(messages=conversation())
    sent = "call_1" + "get_weather" + '{"city": "Paris"}' + "call_1" + "get_weather"
    assert history.input_token_bound() >= plain.input_token_bound() + len(sent)
    schema = {"type": "object", "properties": {"é" * 100: {"type": "string"}}}
    structured = ModelRequest(messages=conversation()[:2], response_format={
        "type": "json_schema", "json_schema": {"schema": schema}})
    assert structured.input_token_bound() >= plain.input_token_bound() + utf8(schema)
    json_object = ModelRequest(messages=conversation()[:2],
                               response_format={"type": "json_object"})
    assert json_object.input_token_bound() >= (plain.input_token_bound()
                                               + len(JSON_OBJECT_INSTRUCTION))
    assert tools.estimated_input_tokens() > plain.estimated_input_tokens()


def test_a_plain_requests_cache_key_is_the_original_one():
    request = ModelRequest(prompt="hi", system="s", parameters={"temperature": 0})
    original = {"system": "s", "messages": [("user", "hi")], "parameters": {"temperature": 0},
                "max_tokens": 512, "model": None}
    raw = orjson.dumps(original, option=orjson.OPT_SORT_KEYS)
    assert request.cache_key() == hashlib.blake2b(raw, digest_size=16).hexdigest()
    assert request.canonical() == original


def test_the_cache_key_covers_tools_choice_format_and_calls():
    base = {"messages": conversation(), "parameters": {"temperature": 0}}
    keys = {
        ModelRequest(**base).cache_key(),
        ModelRequest(**base, tools=[WEATHER_TOOL]).cache_key(),
        ModelRequest(**base, tools=[WEATHER_TOOL], tool_choice="required").cache_key(),
        ModelRequest(**base, tools=[WEATHER_TOOL], parallel_tool_calls=False).cache_key(),
        ModelRequest(**base, response_format={"type": "json_object"}).cache_key(),
        ModelRequest(**base, response_format={"type": "json_schema",
                                              "json_schema": {"schema": WEATHER}}).cache_key(),
        ModelRequest(messages=conversation()[:2] + [
            {"role": "assistant", "tool_calls": [call(args='{"city": "Rome"}')]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}],
            parameters={"temperature": 0}).cache_key(),
    }
    assert len(keys) == 7
    # the same arguments in another key order are the same request
    reordered = [call(args='{"b": 2, "a": 1}')]
    first = ModelRequest(messages=[{"role": "assistant", "tool_calls": [call(args='{"a":1,"b":2}')]},
                                   {"role": "tool", "tool_call_id": "call_1", "content": "r"}])
    second = ModelRequest(messages=[{"role": "assistant", "tool_calls": reordered},
                                    {"role": "tool", "tool_call_id": "call_1", "content": "r"}])
    assert first.cache_key() == second.cache_key()


def test_images_enter_the_key_by_digest_never_by_data():
    def with_image(raw: bytes) -> ModelRequest:
        return ModelRequest(messages=[{"role": "user", "content": [
            {"type": "text", "text": "what?"}, {"type": "image_url", "image_url": data_url(raw)}]}])

    one, other = with_image(png(10, 10)), with_image(png(10, 11))
    assert one.cache_key() != other.cache_key()
    canonical = orjson.dumps(one.canonical()).decode()
    assert base64.b64encode(png(10, 10)).decode() not in canonical and "blake2b:" in canonical
    assert one.images()[0].digest() == with_image(png(10, 10)).images()[0].digest()


# -- responses ------------------------------------------------------------------------------------


def test_responses_carry_tool_calls_and_a_normalized_finish_reason():
    calls = (ToolCall(id="c1", name="f", arguments='{"x": 1}'),)
    result = ProviderResult(text="", finish_reason="tool_calls", tool_calls=calls)
    assert result.tool_calls[0].parsed_arguments() == {"x": 1}
    with pytest.raises(ValueError, match="finish_reason"):
        ProviderResult(text="", finish_reason="end_turn")  # type: ignore[arg-type]
    assert StreamChunk(tool_call=calls[0]).tool_call == calls[0]
    response = ModelResponse(request_id="r", model_id="m", provider="p", text="",
                             finish_reason="tool_calls", tool_calls=calls)
    assert response.tool_calls == calls
    assert pickle.loads(pickle.dumps(result)) == result


# -- schemas and images ---------------------------------------------------------------------------


def test_check_json_schema_uses_the_declared_draft():
    assert check_json_schema({"$schema": "http://json-schema.org/draft-04/schema#",
                              "type": "object", "properties": {"a": {"type": "integer",
                                                                     "minimum": 0,
                                                                     "exclusiveMinimum": True}}})
    with pytest.raises(ValueError, match="'type' rule"):  # booleans are draft-06+ numbers
        check_json_schema({"type": "object", "properties": {"a": {"exclusiveMinimum": True}}})
    with pytest.raises(ValueError, match="not JSON"):
        check_json_schema({"type": "object", "default": float("nan")} | {"x": {1}})


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 6


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\x03" + b"\x00" * 9
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def webp_lossy(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(frame)) + b"WEBPVP8 " + struct.pack(
        "<I", len(frame)) + frame


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBPVP8L" + struct.pack(
        "<I", len(body)) + body


def webp_extended(width: int, height: int) -> bytes:
    body = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(
        3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBPVP8X" + struct.pack(
        "<I", len(body)) + body


@pytest.mark.parametrize("make", [png, gif, jpeg, webp_lossy, webp_lossless, webp_extended])
def test_image_sizes_from_headers(make):
    assert image_size(make(1234, 567)) == (1234, 567)
    assert image_size(make(1234, 567)[:9]) is None  # cut short: unknown, not an error


def test_image_size_unknown_for_other_bytes_and_zero_sizes():
    assert image_size(b"not an image at all") is None
    assert image_size(png(0, 10)) is None
    assert image_size(b"\xff\xd8\x00\x00") is None
    assert parse_data_url(data_url(b"\x00\x01", "image/jpg")).media_type == "image/jpeg"
    assert parse_data_url(data_url(b"\x00\x01", "image/webp")).size is None
