"""The emulator's JSON Schema values (``_schema``), image sniffing and token rules (``_images``), and
the provider-neutral answers of ``_shape``, checked with ``jsonschema``."""

from __future__ import annotations

import base64
import io

import jsonschema
import orjson
import pytest

from api_model_management.emulator import _images
from api_model_management.emulator._schema import generate, violate
from api_model_management.emulator._shape import (
    JSON,
    TEXT,
    TOOL_CALL,
    Shape,
    ToolSpec,
    answer_counts,
    answer_kind,
    break_json,
    break_tool_calls,
    chosen_tools,
    fault_kind,
    json_text,
    request_counts,
    shaped_answer,
    tool_call_id,
    unparseable,
)
from api_model_management.emulator._text import Answer, ToolCall, make_answer, split_json
from api_model_management.emulator._wire import Call

pytestmark = pytest.mark.unit


def valid(schema: object, value: object) -> bool:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).is_valid(value)


def values(schema: object, n: int = 60, words: tuple[str, ...] = ()) -> list[object]:
    return [generate(schema, seed, words) for seed in range(n)]


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("schema", [
    {"type": "string", "minLength": 5, "maxLength": 7},
    {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 6},
    {"type": "integer", "minimum": 3, "maximum": 4, "exclusiveMinimum": True},  # draft 4 boolean
    {"type": "number", "minimum": -1.5, "maximum": -1.25},
    {"type": "number", "minimum": 0, "maximum": 3, "multipleOf": 0.1},
    {"type": "integer", "minimum": 10, "maximum": 40, "multipleOf": 7},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 50}, "minItems": 4,
     "maxItems": 4, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
    {"type": "object", "minProperties": 3, "properties": {"a": {"type": "null"}}},
    {"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"const": 7}}, "required": ["b"]}]},
    {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "boolean"}]},
    {"enum": [[1, 2], {"k": None}, "x"]},
    {"type": ["null", "boolean"]},
])
def test_generated_values_validate(schema):
    generated = values(schema)
    assert all(valid(schema, v) for v in generated), [v for v in generated if not valid(schema, v)]


@pytest.mark.parametrize("fmt", ["date", "date-time", "time", "email", "uuid", "ipv4", "hostname"])
def test_formats_are_real(fmt):
    schema = {"type": "string", "format": fmt}
    assert all(valid(schema, v) for v in values(schema, 20))


def test_gemini_openapi_schemas_are_read():
    schema = {"type": "OBJECT", "properties": {
        "n": {"type": "INTEGER", "minimum": 2, "maximum": 3},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "2", "maxItems": "2"},
        "maybe": {"type": "STRING", "nullable": True}}, "required": ["n", "tags", "maybe"]}
    standard = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 2, "maximum": 3},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        "maybe": {"type": ["string", "null"]}}, "required": ["n", "tags", "maybe"]}
    assert all(valid(standard, v) for v in values(schema))


def test_recursive_references_end():
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "label": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["label", "children"]}},
        "$ref": "#/$defs/node"}
    generated = values(tree, 20)
    assert all(valid(tree, v) for v in generated)
    assert any(v["children"] for v in generated)  # it does recurse, and stops

    itself = {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
              "required": ["next"]}
    assert all(valid(itself, v) for v in values(itself, 20))


def test_strings_come_from_the_words_given_and_values_repeat_by_seed():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    assert {v["city"].split()[0] for v in values(schema, 30, ("lisbon", "porto"))} <= {"lisbon", "porto"}
    assert generate(schema, 42, ("a", "b")) == generate(schema, 42, ("a", "b"))
    assert len({orjson.dumps(v) for v in values({"type": "integer"}, 30)}) > 10


# ---------------------------------------------------------------- violate


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"type": "object", "properties": {"a": {"type": "integer"}}},
    {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
    {"anyOf": [{"type": "string"}, {"type": "object"}]},
    {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
    {"type": "array", "items": {"type": "string"}},
    {"type": "string"},
    {"enum": [1, 2]},
    {"$defs": {"o": {"type": "object", "required": ["q"]}}, "$ref": "#/$defs/o"},
])
def test_violations_do_not_validate(schema):
    """Also an ``anyOf`` of typed branches: a value of none of their types."""
    for seed in range(20):
        ok, value = violate(schema, seed)
        assert ok and not valid(schema, value), value


@pytest.mark.parametrize("schema", [{}, True, {"type": "object"}, {"type": "object", "properties": {"a": {}}},
                                    {"anyOf": [{"type": "string"}, {}]}])
def test_schemas_accepting_everything_of_their_type_cannot_be_broken(schema):
    assert violate(schema, 1) == (False, None)


def test_an_object_stays_an_object_when_broken():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
              "required": ["a", "b"]}
    broken = [violate(schema, seed)[1] for seed in range(20)]
    assert all(isinstance(b, dict) and len(b) == 1 for b in broken)  # one required property missing
    assert {next(iter(b)) for b in broken} == {"a", "b"}


# ---------------------------------------------------------------- images


def picture(fmt: str, size: tuple[int, int] = (600, 400), **options: object) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("JPEG", {}), ("GIF", {}), ("WEBP", {}),
                                              ("WEBP", {"lossless": True}), ("JPEG", {"progressive": True})])
def test_sniff_reads_format_and_size(fmt, options):
    info = _images.sniff(picture(fmt, (123, 45), **options))
    assert (info.format, info.width, info.height) == (fmt.lower(), 123, 45)
    assert _images.from_base64(base64.b64encode(picture(fmt, (7, 9), **options)).decode()).width == 7


def test_bad_bytes_and_bad_base64_are_refused():
    with pytest.raises(_images.BadImage):
        _images.sniff(b"GIF8")
    with pytest.raises(_images.BadImage):
        _images.decode_base64("abc*")
    with pytest.raises(_images.BadImage):
        _images.parse_data_url("data:image/png;base64,aGVsbG8=")
    assert _images.parse_data_url("https://example.com/a.png") is None
    media, info = _images.parse_data_url("data:image/jpeg;base64," + base64.b64encode(picture("JPEG")).decode())
    assert media == "image/jpeg" and info.width == 600


@pytest.mark.parametrize(("size", "openai_auto", "anthropic", "gemini"), [
    ((100, 100), 255, 14, 258),
    ((384, 384), 255, 197, 258),
    ((1024, 1024), 765, 1399, 1032),
    ((4000, 1000), 765, 820, 258 * 6 * 2),  # OpenAI: 2048x512 (4x1 tiles); Anthropic: 1568x392
    ((3000, 2000), 1105, 1600, 258 * 4 * 3),
])
def test_token_rules(size, openai_auto, anthropic, gemini):
    info = _images.ImageInfo("png", *size)
    assert _images.openai_tokens(info) == _images.openai_tokens(info, "high") == openai_auto
    assert _images.openai_tokens(info, "low") == 85
    assert _images.anthropic_tokens(info) == anthropic
    assert _images.gemini_tokens(info) == gemini
    assert _images.ollama_tokens(info) == 576


# ---------------------------------------------------------------- shapes


def call_with(shape: Shape, provider: str = "openai", conversation: str = "weather in lisbon?") -> Call:
    return Call(provider, "m", conversation, conversation, None, False, shape=shape)


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_answer_kinds():
    tools = (ToolSpec("w", WEATHER),)
    assert answer_kind(None) == TEXT
    assert answer_kind(Shape(tools=tools)) == TOOL_CALL
    assert answer_kind(Shape(tools=tools, choice="none")) == TEXT
    assert answer_kind(Shape(tools=tools, after_tool_result=True, output="schema")) == JSON
    assert answer_kind(Shape(output="enum")) == "enum" and fault_kind("enum") == TEXT
    assert fault_kind(TOOL_CALL) == TOOL_CALL and fault_kind(JSON) == JSON


def test_chosen_tools_honour_the_forced_name_and_parallel_flag():
    tools = tuple(ToolSpec(n, WEATHER) for n in ("a", "b", "c"))
    assert all(chosen_tools(Shape(tools=tools, choice="required", allowed=("b",)), s) == ["b"] for s in range(64))
    many = [chosen_tools(Shape(tools=tools), s) for s in range(0, 1 << 26, 1 << 19)]
    assert any(len(c) == 2 and len(set(c)) == 2 for c in many) and any(len(c) == 1 for c in many)
    assert all(len(chosen_tools(Shape(tools=tools, parallel=False), s)) == 1 for s in range(0, 1 << 26, 1 << 19))
    narrowed = {chosen_tools(Shape(tools=tools, choice="required", allowed=("a", "c"), parallel=False), s)[0]
                for s in range(50)}
    assert narrowed == {"a", "c"}


def test_tool_call_ids_in_each_providers_format():
    assert tool_call_id("openai").startswith("call_") and len(tool_call_id("openai")) == 29
    assert tool_call_id("anthropic").startswith("toolu_01") and len(tool_call_id("anthropic")) == 30
    assert tool_call_id("ollama").startswith("call_") and tool_call_id("gemini") == ""
    assert tool_call_id("openai") != tool_call_id("openai")


def test_shaped_answers_count_their_input_and_output():
    shape = Shape(tools=(ToolSpec("w", WEATHER),), extra_tokens=40, image_tokens=85, images=1)
    answer, kind = shaped_answer(call_with(shape), lambda: "unused")
    assert kind == TOOL_CALL and len(answer.tool_calls) == 1
    call = answer.tool_calls[0]
    assert orjson.loads(call.text) == call.arguments and jsonschema.validate(call.arguments, WEATHER) is None
    assert answer.input_tokens == (len("weather in lisbon?") + 3) // 4 + 40 + 85
    assert answer.output_tokens == (len("w" + call.text) + 3) // 4
    assert request_counts(shape) == {"images": 1, "image_tokens": 85, "tool_results": 0, "requests_with_tools": 1}
    assert answer_counts(answer, kind) == {"tool_calls": 1}
    text, kind = shaped_answer(call_with(Shape(output="schema", schema=WEATHER)), lambda: "unused")
    assert kind == JSON and jsonschema.validate(orjson.loads(text.text), WEATHER) is None
    assert answer_counts(text, kind) == {"structured": 1} and answer_counts(text, TEXT) == {}


def test_json_text_without_a_schema_wraps_the_answer():
    assert orjson.loads(json_text(Shape(output="json"), 1, [], lambda: "hello")) == {"answer": "hello"}


def test_a_tool_call_cut_by_max_tokens():
    shape = Shape(tools=(ToolSpec("w", WEATHER),))
    call = Call("openai", "m", "p", "weather in lisbon?", 2, False, shape=shape)
    answer, _ = shaped_answer(call, lambda: "")
    assert answer.truncated and answer.output_tokens == 2 and answer.tool_calls[0].arguments is None
    assert len(answer.tool_calls[0].text) <= 8 - 1


def test_breaking_answers():
    shape = Shape(tools=(ToolSpec("w", WEATHER),), output="schema", schema=WEATHER)
    for provider in ("openai", "anthropic", "gemini", "ollama"):
        answer, _ = shaped_answer(call_with(shape, provider), lambda: "")
        broken = break_tool_calls(call_with(shape, provider), answer)
        assert broken is not None
        first = broken.tool_calls[0]
        bad = not _parses(first.text) or not jsonschema.Draft202012Validator(WEATHER).is_valid(
            orjson.loads(first.text))
        assert bad and (provider == "openai" or first.arguments == orjson.loads(first.text))
    text = make_answer('{"city":"lisbon"}', 10, None)
    broken_json = break_json(call_with(Shape(output="json")), text)
    assert not _parses(broken_json.text)
    plain = Answer("hi", 1, 1, False)
    assert break_tool_calls(call_with(shape), plain) is None


def test_unparseable_text_never_parses():
    for text in ['{"a":1}', "12345", "[1,2]", '"str"', "{}", "1"]:
        assert not _parses(unparseable(text))


def test_split_json_rebuilds_the_text():
    text = orjson.dumps({"a": "x" * 30, "b": [1, 2, 3]}).decode()
    assert "".join(split_json(text)) == text and len(split_json(text)) > 2 and split_json("") == [""]
    assert ToolCall("i", "n", {}, "{}").text == "{}"


def _parses(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
