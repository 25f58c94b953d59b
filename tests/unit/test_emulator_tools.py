"""The emulator's tool calls, structured output and images on the four wires, plain and streamed
(raw requests in process, see ``_emulator_wires``); answers checked with ``jsonschema``."""

from __future__ import annotations

import base64

import jsonschema
import orjson
import pytest
from _emulator_wires import (
    CLOCK,
    MODELS,
    PROMPT,
    PROVIDERS,
    REPORT,
    TEXT_FINISH,
    TOOL_FINISH,
    TOOLS,
    WEATHER,
    Reply,
    body_of,
    follow_up,
    png,
    send,
    send_all,
    user,
)

from api_model_management.emulator import Engine, parse_profile

pytestmark = pytest.mark.unit

BOTH = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
EACH = pytest.mark.parametrize("provider", PROVIDERS)
ID_PREFIX = {"openai": "call_", "anthropic": "toolu_01", "ollama": "call_"}


def valid(schema: dict, value: object) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def ask(provider: str, prompt: str = PROMPT, *, stream: bool = False, tools: dict | None = TOOLS,
        extra: dict | None = None, engine: Engine | None = None, headers: dict | None = None,
        images: tuple[bytes, ...] = ()) -> Reply:
    body = body_of(provider, [user(provider, prompt, images)], stream=stream, tools=tools, extra=extra)
    return send(engine or Engine(), provider, body, stream=stream, headers=headers)


def ask_many(provider: str, prompts: list[str], *, streams: list[bool] | None = None,
             tools: dict | None = TOOLS, extra: dict | None = None, engine: Engine | None = None) -> list[Reply]:
    streams = streams or [False] * len(prompts)
    requests = [(body_of(provider, [user(provider, p)], stream=s, tools=tools, extra=extra), s)
                for p, s in zip(prompts, streams, strict=True)]
    return send_all(engine or Engine(), provider, requests)


# ---------------------------------------------------------------- tool calls


@EACH
@BOTH
def test_a_tool_call_validates_against_its_schema(provider, stream):
    reply = ask(provider, stream=stream)
    assert reply.status == 200 and reply.calls, reply
    assert reply.finish == TOOL_FINISH[provider]
    for call, arguments in zip(reply.calls, reply.arguments(), strict=True):
        assert valid(TOOLS[call.name], arguments), (call.name, arguments)
        if provider == "gemini":
            assert call.id is None  # Gemini's calls carry no id
        else:
            assert call.id.startswith(ID_PREFIX[provider]) and len(call.id) > len(ID_PREFIX[provider]) + 6
    if provider != "gemini":
        assert len({c.id for c in reply.calls}) == len(reply.calls)


@EACH
def test_plain_and_streamed_calls_agree_and_repeat(provider):
    plain, streamed, again = ask(provider), ask(provider, stream=True), ask(provider)
    assert [(c.name, orjson.loads(c.arguments)) for c in plain.calls] == \
        [(c.name, orjson.loads(c.arguments)) for c in streamed.calls] == \
        [(c.name, orjson.loads(c.arguments)) for c in again.calls]
    assert plain.input_tokens == streamed.input_tokens


@EACH
def test_the_tool_is_chosen_by_the_conversation(provider):
    chosen = {r.calls[0].name for r in ask_many(provider, [f"Question {i}: {PROMPT}" for i in range(24)])}
    assert chosen == set(TOOLS)


FORCE = {
    "openai": {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
    "anthropic": {"tool_choice": {"type": "tool", "name": "get_time"}},
    "gemini": {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}},
}
NO_TOOLS = {"openai": {"tool_choice": "none"}, "anthropic": {"tool_choice": {"type": "none"}},
            "gemini": {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}}


@pytest.mark.parametrize("provider", sorted(FORCE))
@BOTH
def test_a_forced_tool_is_the_one_called(provider, stream):
    for reply in ask_many(provider, [f"Question {i}: {PROMPT}" for i in range(8)], streams=[stream] * 8,
                          extra=FORCE[provider]):
        assert [c.name for c in reply.calls] == ["get_time"]
        assert valid(CLOCK, reply.arguments()[0])
        assert reply.text == ""  # no sentence before a forced call (Anthropic writes one otherwise)


@pytest.mark.parametrize("provider", sorted(NO_TOOLS))
def test_a_choice_of_none_answers_in_text(provider):
    reply = ask(provider, extra=NO_TOOLS[provider])
    assert not reply.calls and "lisbon" in reply.text.lower() and reply.finish == TEXT_FINISH[provider]


def test_anthropic_writes_a_sentence_before_an_unforced_call():
    reply = ask("anthropic")
    assert reply.text.startswith("I'll use the ") and reply.body["content"][0]["type"] == "text"


PARALLEL_OFF = {"openai": {"parallel_tool_calls": False},
                "anthropic": {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}}


@pytest.mark.parametrize("provider", sorted(PARALLEL_OFF))
def test_parallel_calls_happen_only_when_allowed(provider):
    prompts = [f"Question {i}: {PROMPT}" for i in range(40)]
    counts = [len(r.calls) for r in ask_many(provider, prompts)]
    assert 1 in counts and 2 in counts and set(counts) == {1, 2}
    two = prompts[counts.index(2)]
    streamed = ask(provider, two, stream=True)
    assert len({c.name for c in streamed.calls}) == 2  # streamed by index / block, reassembled
    assert all(len(r.calls) == 1 for r in ask_many(provider, prompts, extra=PARALLEL_OFF[provider]))


@EACH
@BOTH
def test_a_tool_result_turn_is_answered_in_text(provider, stream):
    engine = Engine()
    first = ask(provider, engine=engine)
    messages = [user(provider, PROMPT), *follow_up(provider, first)]
    reply = send(engine, provider, body_of(provider, messages, stream=stream, tools=TOOLS), stream=stream)
    assert reply.status == 200 and not reply.calls, reply
    assert "lisbon" in reply.text.lower() and reply.finish == TEXT_FINISH[provider]
    assert reply.input_tokens > first.input_tokens  # the calls and results count as input
    assert engine.stats()["content"][provider]["tool_results"] == len(first.calls)


def test_a_conversation_begun_on_one_provider_continues_on_another_with_its_ids():
    engine = Engine()
    first = ask("openai", engine=engine)
    messages = [user("anthropic", PROMPT), *follow_up("anthropic", first)]
    assert messages[-1]["content"][0]["tool_use_id"].startswith("call_")
    reply = send(engine, "anthropic", body_of("anthropic", messages, tools=TOOLS))
    assert reply.status == 200 and reply.finish == "end_turn" and not reply.calls


REFUSED = {
    "openai": [
        ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}],
         "must be a response to a preceeding message with 'tool_calls'"),
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "tool_calls": [{"id": "call_x", "type": "function",
                                                "function": {"name": "get_time", "arguments": "{}"}}]},
          {"role": "user", "content": "and?"}],
         "did not have response messages: call_x"),
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "tool_calls": [{"id": "call_x", "type": "function",
                                                "function": {"name": "get_time", "arguments": {}}}]},
          {"role": "tool", "tool_call_id": "call_x", "content": "1"}],
         "expected a string, but got an object instead"),
    ],
    "anthropic": [
        ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}],
         "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x"),
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "get_time",
                                             "input": {}}]},
          {"role": "user", "content": "and?"}],
         "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_x"),
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "content": [{"type": "tool_use", "id": "bad.id", "name": "get_time",
                                             "input": {}}]},
          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "bad.id", "content": "1"}]}],
         "String should match pattern"),
    ],
    "gemini": [
        ([{"role": "user", "parts": [{"text": "hi"}]},
          {"role": "user", "parts": [{"functionResponse": {"name": "get_time", "response": {}}}]}],
         "function response turn comes immediately after a function call turn"),
        ([{"role": "user", "parts": [{"text": "hi"}]},
          {"role": "model", "parts": [{"functionCall": {"name": "get_time", "args": {}}},
                                      {"functionCall": {"name": "get_time", "args": {}}}]},
          {"role": "user", "parts": [{"functionResponse": {"name": "get_time", "response": {}}}]}],
         "number of function response parts is equal to the number of function call parts"),
    ],
    "ollama": [
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "tool_calls": [{"function": {"name": "get_time", "arguments": "{}"}}]}],
         "cannot unmarshal string into Go struct field"),
    ],
}


@pytest.mark.parametrize(("provider", "messages", "says"),
                         [(p, m, s) for p, cases in REFUSED.items() for m, s in cases])
def test_a_malformed_tool_conversation_is_refused_as_the_api_does(provider, messages, says):
    engine = Engine()
    reply = send(engine, provider, body_of(provider, messages, tools=TOOLS))
    assert reply.status == 400 and says in orjson.dumps(reply.body).decode()
    assert engine.stats()["providers"][provider] == {"400": 1}


BAD_TOOLS = {
    "openai": ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "does not match pattern"),
    "anthropic": ({"tools": [{"name": "t"}]}, "input_schema: Field required"),
    "gemini": ({"tools": [{"functionDeclarations": [{"name": "9lives"}]}]}, "Invalid function name"),
}


@pytest.mark.parametrize("provider", sorted(BAD_TOOLS))
def test_a_malformed_tool_definition_is_refused(provider):
    extra, says = BAD_TOOLS[provider]
    reply = ask(provider, tools=None, extra=extra)
    assert reply.status == 400 and says in orjson.dumps(reply.body).decode()


def test_openai_refuses_tool_choice_without_tools_and_an_unknown_forced_tool():
    alone = ask("openai", tools=None, extra={"tool_choice": "auto"})
    assert alone.status == 400 and alone.body["error"]["param"] == "tool_choice"
    unknown = ask("openai", extra={"tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert unknown.status == 400 and "nope" in unknown.body["error"]["message"]


@EACH
def test_a_call_cut_at_max_tokens_ends_as_the_api_reports_it(provider):
    limit = {"openai": {"max_completion_tokens": 4}, "anthropic": {"max_tokens": 4},
             "gemini": {"generationConfig": {"maxOutputTokens": 4}}, "ollama": {"options": {"num_predict": 4}}}
    reply = ask(provider, extra=limit[provider], tools={"get_weather": WEATHER})
    assert reply.finish == {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS",
                            "ollama": "length"}[provider]
    if provider == "openai":
        assert not parses(reply.calls[0].arguments)  # arguments cut mid-way
    elif provider == "anthropic":
        assert reply.arguments() == [{}]
    else:
        assert not reply.calls  # no complete call to report


# ---------------------------------------------------------------- structured output

STRUCTURED = {
    "openai": {"response_format": {"type": "json_schema",
                                   "json_schema": {"name": "report", "strict": True, "schema": REPORT}}},
    "anthropic": {"output_config": {"format": {"type": "json_schema", "schema": REPORT}}},
    "gemini": {"generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": REPORT}},
    "ollama": {"format": REPORT},
}


@EACH
@BOTH
def test_structured_output_validates(provider, stream):
    engine = Engine()
    replies = ask_many(provider, [f"Review {i}: {PROMPT}" for i in range(6)], streams=[stream] * 6,
                       tools=None, extra=STRUCTURED[provider], engine=engine)
    for reply in replies:
        assert reply.status == 200 and not reply.calls and reply.finish == TEXT_FINISH[provider]
        assert valid(REPORT, orjson.loads(reply.text)), reply.text
    assert len({r.text for r in replies}) > 1
    assert engine.stats()["content"][provider]["structured"] == 6


def test_gemini_reads_an_openapi_response_schema():
    schema = {"type": "ARRAY", "minItems": "2", "maxItems": "3",
              "items": {"type": "OBJECT", "properties": {"name": {"type": "STRING"},
                                                         "size": {"type": "INTEGER", "minimum": 1,
                                                                  "nullable": True},
                                                         "kind": {"type": "STRING", "format": "enum",
                                                                  "enum": ["a", "b"]}},
                        "required": ["name", "size", "kind"], "propertyOrdering": ["name", "size"]}}
    reply = ask("gemini", tools=None, extra={"generationConfig": {"responseMimeType": "application/json",
                                                                   "responseSchema": schema}})
    value = orjson.loads(reply.text)
    assert 2 <= len(value) <= 3 and all(item["kind"] in ("a", "b") and item["size"] >= 1 for item in value)


def test_gemini_answers_one_enum_value_for_text_x_enum():
    schema = {"type": "STRING", "format": "enum", "enum": ["sunny", "rainy", "cloudy"]}
    reply = ask("gemini", tools=None, extra={"generationConfig": {"responseMimeType": "text/x.enum",
                                                                   "responseSchema": schema}})
    assert reply.text in ("sunny", "rainy", "cloudy")


JSON_MODE = {"openai": {"response_format": {"type": "json_object"}},
             "gemini": {"generationConfig": {"responseMimeType": "application/json"}},
             "ollama": {"format": "json"}}


@pytest.mark.parametrize("provider", sorted(JSON_MODE))
@BOTH
def test_a_json_object_is_answered_when_only_json_is_asked(provider, stream):
    reply = ask(provider, PROMPT + " Answer in JSON.", stream=stream, tools=None, extra=JSON_MODE[provider])
    value = orjson.loads(reply.text)
    assert isinstance(value, dict) and "lisbon" in value["answer"].lower()


def test_openai_json_object_needs_the_word_json():
    reply = ask("openai", tools=None, extra=JSON_MODE["openai"])
    assert reply.status == 400 and "must contain the word 'json'" in reply.body["error"]["message"]


@pytest.mark.parametrize(("change", "says"), [
    (lambda s: s.pop("additionalProperties"), "In context=(), 'additionalProperties' is required"),
    (lambda s: s["required"].remove("score"), "Missing 'score'"),
    (lambda s: s["properties"]["detail"]["anyOf"][1].pop("additionalProperties"),
     "In context=('properties', 'detail', 'anyOf', '1'), 'additionalProperties'"),
])
def test_openai_strict_schemas_follow_structured_outputs_rules(change, says):
    schema = orjson.loads(orjson.dumps(REPORT))
    change(schema)
    fmt = {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": True, "schema": schema}}}
    reply = ask("openai", tools=None, extra=fmt)
    assert reply.status == 400 and says in reply.body["error"]["message"]
    assert reply.body["error"]["message"].startswith("Invalid schema for response_format 'r'")
    loose = {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}}
    assert ask("openai", tools=None, extra=loose).status == 200  # not strict: accepted


def test_gemini_wants_a_json_mime_type_with_a_schema():
    reply = ask("gemini", tools=None, extra={"generationConfig": {"responseSchema": {"type": "STRING"}}})
    assert reply.status == 400 and reply.body["error"]["status"] == "INVALID_ARGUMENT"


def test_after_a_tool_result_a_structured_answer_is_given():
    engine = Engine()
    first = ask("openai", engine=engine, extra=STRUCTURED["openai"])
    assert first.calls  # tools win while a call may be made
    messages = [user("openai", PROMPT), *follow_up("openai", first)]
    reply = send(engine, "openai", body_of("openai", messages, tools=TOOLS, extra=STRUCTURED["openai"]))
    assert valid(REPORT, orjson.loads(reply.text))


# ---------------------------------------------------------------- images

#: Input tokens of one 600x400 PNG by each provider's rule (see emulator/_images.py).
IMAGE_TOKENS = {"openai": 85 + 170 * 2 * 1, "anthropic": 320, "gemini": 258, "ollama": 576}


@EACH
@BOTH
def test_an_image_is_accepted_and_counted(provider, stream):
    engine = Engine()
    without = ask(provider, "Describe this picture", stream=stream, tools=None, engine=engine)
    with_image = ask(provider, "Describe this picture", stream=stream, tools=None, engine=engine,
                     images=(png(),))
    assert with_image.status == 200 and with_image.text
    assert with_image.input_tokens - without.input_tokens == IMAGE_TOKENS[provider]
    content = engine.stats()["content"][provider]
    assert content["images"] == 1 and content["image_tokens"] == IMAGE_TOKENS[provider]


def test_image_rules_follow_size_and_detail():
    big = png(3000, 2000)
    assert ask("openai", "x", tools=None, images=(big,)).input_tokens - ask("openai", "x", tools=None).input_tokens \
        == 85 + 170 * 3 * 2  # fitted to 2048x1365, then 1152x768: 3x2 tiles
    low = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(big).decode(),
                                              "detail": "low"}}
    body = body_of("openai", [{"role": "user", "content": [{"type": "text", "text": "x"}, low]}])
    assert send(Engine(), "openai", body).input_tokens - ask("openai", "x", tools=None).input_tokens == 85
    assert ask("gemini", "x", tools=None, images=(big,)).input_tokens - ask("gemini", "x", tools=None).input_tokens \
        == 258 * 4 * 3


URL_IMAGES = {
    "openai": ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, 765),
    "anthropic": ({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}, 1399),
    "gemini": ({"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/files/cat"}}, 1032),
}


@pytest.mark.parametrize("provider", sorted(URL_IMAGES))
def test_an_image_by_url_counts_as_1024_square(provider):
    part, tokens = URL_IMAGES[provider]
    text_part = {"text": "x"} if provider == "gemini" else {"type": "text", "text": "x"}
    message = ({"role": "user", "parts": [part, text_part]} if provider == "gemini"
               else {"role": "user", "content": [part, text_part]})
    reply = send(Engine(), provider, body_of(provider, [message]))
    assert reply.input_tokens - ask(provider, "x", tools=None).input_tokens == tokens


BAD_IMAGES = {
    "openai": ({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
               "unsupported image"),
    "anthropic": ({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                               "data": base64.b64encode(png()).decode()}},
                  "Image does not match the provided media type image/jpeg"),
    "gemini": ({"inlineData": {"mimeType": "image/png", "data": "%%%"}}, "Base64 decoding failed"),
}


@pytest.mark.parametrize("provider", sorted(BAD_IMAGES))
def test_a_broken_image_is_refused(provider):
    part, says = BAD_IMAGES[provider]
    message = ({"role": "user", "parts": [part]} if provider == "gemini"
               else {"role": "user", "content": [part, {"type": "text", "text": "x"}]})
    reply = send(Engine(), provider, body_of(provider, [message]))
    assert reply.status == 400 and says in orjson.dumps(reply.body).decode()


def test_ollama_refuses_images_that_are_not_base64_images():
    bad = body_of("ollama", [{"role": "user", "content": "x", "images": ["bm90IGFuIGltYWdl"]}])
    assert send(Engine(), "ollama", bad).body == {"error": "image: unknown format"}
    worse = body_of("ollama", [{"role": "user", "content": "x", "images": ["***"]}])
    assert "illegal base64" in send(Engine(), "ollama", worse).body["error"]


def test_openai_images_only_in_user_messages():
    part = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    body = body_of("openai", [{"role": "system", "content": [part]}, {"role": "user", "content": "x"}])
    reply = send(Engine(), "openai", body)
    assert reply.status == 400 and "only allowed for messages with role 'user'" in reply.body["error"]["message"]


# ---------------------------------------------------------------- faults


def _profile(**rates: float) -> Engine:
    return Engine(parse_profile({"seed": 11, "defaults": rates}))


def _invalid_call(reply: Reply, schema: dict) -> bool:
    call = reply.calls[0]
    return not parses(call.arguments) or not valid(schema, orjson.loads(call.arguments))


@EACH
def test_bad_tool_args_appear_at_about_their_rate(provider):
    engine = _profile(bad_tool_args_rate=0.3)
    replies = ask_many(provider, [f"Request {i}: {PROMPT}" for i in range(120)],
                       streams=[i % 2 == 1 for i in range(120)], tools={"get_weather": WEATHER}, engine=engine)
    invalid = sum(_invalid_call(r, WEATHER) for r in replies)
    assert 20 <= invalid <= 52  # 36 expected; binomial sd 5
    assert engine.stats()["providers"][provider] == {"200": 120 - invalid, "bad_tool_args": invalid}


def test_openai_bad_tool_args_are_sometimes_not_json_at_all():
    engine = _profile(bad_tool_args_rate=1.0)
    replies = ask_many("openai", [f"Request {i}: {PROMPT}" for i in range(30)], engine=engine)
    not_json = sum(not parses(r.calls[0].arguments) for r in replies)
    assert 0 < not_json < 30 and all(_invalid_call(r, TOOLS[r.calls[0].name]) for r in replies)


@EACH
def test_bad_json_appears_at_about_its_rate(provider):
    engine = _profile(bad_json_rate=0.3)
    replies = ask_many(provider, [f"Request {i}: {PROMPT}" for i in range(120)],
                       streams=[i % 2 == 1 for i in range(120)], tools=None, extra=STRUCTURED[provider],
                       engine=engine)
    invalid = [r for r in replies if not parses(r.text) or not valid(REPORT, orjson.loads(r.text))]
    assert 20 <= len(invalid) <= 52
    assert engine.stats()["providers"][provider] == {"200": 120 - len(invalid), "bad_json": len(invalid)}
    assert any(parses(r.text) for r in invalid) and any(not parses(r.text) for r in invalid)


def test_shaped_faults_leave_other_answers_and_plain_draws_alone():
    engine = _profile(bad_tool_args_rate=1.0, bad_json_rate=1.0)
    text = ask("openai", tools=None, engine=engine)
    tool_result = send(engine, "openai", body_of("openai", [user("openai", PROMPT), *follow_up(
        "openai", ask("openai", engine=Engine()))], tools=TOOLS))
    assert text.status == tool_result.status == 200 and not tool_result.calls
    assert engine.stats()["providers"]["openai"] == {"200": 2}
    plain = Engine(parse_profile({"seed": 5, "defaults": {"degraded_rate": 0.5}}))
    shaped = Engine(parse_profile({"seed": 5, "defaults": {"degraded_rate": 0.5, "bad_json_rate": 0.4}}))
    assert [plain.plan("openai", "m", 10).kind for _ in range(200)] == \
        [shaped.plan("openai", "m", 10).kind for _ in range(200)]


@EACH
def test_the_fault_header_breaks_one_answer(provider):
    engine = Engine()
    broken = ask(provider, engine=engine, tools={"get_weather": WEATHER},
                 headers={"x-emulator-fault": "bad-tool-args"})
    assert _invalid_call(broken, WEATHER)
    bad_json = ask(provider, engine=engine, tools=None, extra=STRUCTURED[provider],
                   headers={"x-emulator-fault": "bad-json"})
    assert not parses(bad_json.text) or not valid(REPORT, orjson.loads(bad_json.text))
    plain = ask(provider, engine=engine, tools=None, headers={"x-emulator-fault": "bad-tool-args"})
    assert plain.status == 200 and plain.text  # nothing to break: answered as without the header
    assert engine.stats()["providers"][provider] == {"bad_tool_args": 1, "bad_json": 1, "200": 1}


def test_a_schema_that_accepts_any_object_cannot_be_broken_in_place():
    engine = Engine()
    anything = {"get_anything": {"type": "object", "properties": {"x": {}}}}
    reply = ask("anthropic", engine=engine, tools=anything, headers={"x-emulator-fault": "bad-tool-args"})
    assert reply.calls and engine.stats()["providers"]["anthropic"] == {"200": 1}
    openai = ask("openai", engine=engine, tools=anything, headers={"x-emulator-fault": "bad-tool-args"})
    assert not parses(openai.calls[0].arguments)  # OpenAI's text arguments can still break


# ---------------------------------------------------------------- statistics and plain chat


def test_content_statistics_count_what_came_and_went():
    engine = Engine()
    ask("openai", engine=engine, images=(png(), png(100, 100)))
    ask("openai", engine=engine, tools=None)
    content = engine.stats()["content"]["openai"]
    assert content["images"] == 2 and content["image_tokens"] == 425 + 255
    assert content["requests_with_tools"] == 1 and content["tool_calls"] >= 1
    engine.count_content("gemini", {"images": 2, "tool_calls": 0})
    assert engine.stats()["content"]["gemini"] == {"images": 2}
    engine.reset()
    assert engine.stats()["content"] == {}


@EACH
def test_plain_chat_carries_no_shape(provider):
    from api_model_management.emulator import _anthropic, _gemini, _ollama, _openai

    wire = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini, "ollama": _ollama}[provider]
    body = body_of(provider, [user(provider, PROMPT)])
    call = wire.parse(body, {}, MODELS[provider], False) if provider == "gemini" else wire.parse(body, {})
    assert call.shape is None and call.prompt == PROMPT


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "ollama"])
def test_an_empty_tool_list_is_no_tools(provider):
    empty = {"tools": [{"functionDeclarations": []}] if provider == "gemini" else []}
    with_empty, without = ask(provider, tools=None, extra=empty), ask(provider, tools=None)
    assert with_empty.input_tokens == without.input_tokens and with_empty.text == without.text


def test_gemini_reads_snake_case_fields_too():
    image = {"inline_data": {"mime_type": "image/png", "data": base64.urlsafe_b64encode(png()).decode()}}
    body = {"contents": [{"role": "user", "parts": [image, {"text": PROMPT}]}],
            "tools": [{"function_declarations": [{"name": "get_time", "parameters_json_schema": CLOCK}]}],
            "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_time"]}}}
    engine = Engine()
    reply = send(engine, "gemini", body)
    assert [c.name for c in reply.calls] == ["get_time"] and valid(CLOCK, reply.arguments()[0])
    assert engine.stats()["content"]["gemini"]["images"] == 1
    structured = send(engine, "gemini", {"contents": [{"parts": [{"text": "x"}]}], "generation_config": {
        "response_mime_type": "application/json", "response_schema": {"type": "OBJECT", "properties": {
            "n": {"type": "INTEGER"}}, "required": ["n"]}}})
    assert isinstance(orjson.loads(structured.text)["n"], int)
