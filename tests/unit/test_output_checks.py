"""Quality of answers that are not prose (issue 13): a tool call judged by whether it may be made
and its arguments validate against its tool's schema, a structured answer by whether it parses
and validates against the requested schema (``evaluation.check_output``), and what the evaluator
makes of it (``evaluator="schema"``). Problems name positions, tools and schema rules, never an
argument, a value or the schema."""

from __future__ import annotations

import asyncio

import pytest

from api_model_management import ModelRequest, ToolCall
from api_model_management.config import QualitySettings
from api_model_management.errors import InvalidInput
from api_model_management.evaluation import OutputCheck, ResponseEvaluator, check_output

pytestmark = pytest.mark.unit

SECRET = "Zanzibar-7731"
WEATHER = {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"},
                                     "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city"], "additionalProperties": False}}
TIME = {"name": "get_time"}  # no parameters: any object
ANSWER = {"type": "object", "properties": {"answer": {"type": "string"},
                                           "confidence": {"type": "number", "minimum": 0}},
          "required": ["answer", "confidence"]}


def tools_request(**fields) -> ModelRequest:
    return ModelRequest(prompt="Weather in Paris?", tools=[WEATHER, TIME], **fields)


def schema_request(schema: dict = ANSWER) -> ModelRequest:
    return ModelRequest(prompt="Answer in JSON.", response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})


def call(name: str = "get_weather", arguments: str = '{"city": "Paris"}', i: int = 1) -> ToolCall:
    return ToolCall(id=f"call_{i}", name=name, arguments=arguments)


EVALUATOR = ResponseEvaluator(QualitySettings())


# ---------------------------------------------------------------------------------------------
# check_output


def test_a_prose_answer_to_a_prose_request_is_not_checked():
    assert check_output(ModelRequest(prompt="Hi"), "Hello!") is None
    assert check_output(tools_request(), "It is sunny.") is None  # tools offered, none called (auto)


def test_valid_tool_calls():
    check = check_output(tools_request(), "", [call(), call("get_time", "{}", 2)])
    assert check == OutputCheck("tool_calls", 2, 2, 2, ())
    assert check.ok and check.describe() == "tool calls: 2 of 2 valid against their schemas"


@pytest.mark.parametrize(("arguments", "rule"), [
    ("{}", "required"),
    ('{"city": 7}', "type"),
    ('{"city": "Paris", "unit": "kelvin"}', "enum"),
    (f'{{"city": "Paris", "{SECRET}": 1}}', "additionalProperties"),
])
def test_arguments_that_fail_the_tools_schema_name_the_rule(arguments, rule):
    check = check_output(tools_request(), "", [call(arguments=arguments)])
    assert check is not None and not check.ok
    assert (check.checked, check.parsed, check.valid) == (1, 1, 0)
    assert check.problems == (f"call 1 (get_weather): arguments fail the schema's {rule!r} rule",)
    assert SECRET not in check.describe() and "Paris" not in check.describe()


def test_a_call_of_a_tool_not_offered_or_not_allowed():
    check = check_output(tools_request(), "", [call("launch_missiles", "{}")])
    assert check.problems == ("call 1 names a tool that was not offered",)
    assert "launch_missiles" not in check.describe()
    named = tools_request(tool_choice={"type": "function", "function": {"name": "get_time"}})
    check = check_output(named, "", [call()])
    assert check.problems == ("call 1 (get_weather) is not the tool tool_choice names",)
    none = tools_request(tool_choice="none")
    assert check_output(none, "", [call()]).problems == (
        "call 1 (get_weather) though tool_choice is none",)


def test_a_required_call_that_was_not_made():
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        check = check_output(tools_request(tool_choice=choice), "I would rather not.")
        assert check == OutputCheck("tool_calls", 0, 0, 0,
                                    ("no tool call, though tool_choice requires one",))


def test_one_bad_call_among_good_ones():
    check = check_output(tools_request(), "", [call(), call(arguments="{}", i=2)])
    assert (check.checked, check.parsed, check.valid) == (2, 2, 1) and not check.ok
    assert check.describe() == ("tool calls: 1 of 2 valid against their schemas (call 2 "
                                "(get_weather): arguments fail the schema's 'required' rule)")


def test_a_structured_answer_against_its_schema():
    request = schema_request()
    assert check_output(request, '{"answer": "42", "confidence": 0.9}').ok
    assert check_output(request, ' \n{"answer": "42", "confidence": 0.9}\n').ok  # whitespace
    bad = check_output(request, f'{{"answer": "{SECRET}", "confidence": -1}}')
    assert bad == OutputCheck("structured", 1, 1, 0, ("the answer fails the schema's 'minimum' rule",))
    assert SECRET not in bad.describe()
    assert check_output(request, f"The answer is {SECRET}.").problems == ("the answer is not JSON",)
    fenced = '```json\n{"answer": "42", "confidence": 0.9}\n```'
    assert check_output(request, fenced).problems == ("the answer is not JSON",)  # not repaired


def test_json_object_takes_any_object_and_nothing_else():
    request = ModelRequest(prompt="JSON please", response_format={"type": "json_object"})
    assert check_output(request, '{"anything": [1, 2]}').ok
    assert check_output(request, "[1, 2]").problems == ("the answer is not a JSON object",)
    assert check_output(request, "").problems == ("the answer is not JSON",)


def test_a_schema_whose_root_is_not_an_object():
    request = schema_request({"type": "array", "items": {"type": "integer"}, "minItems": 1})
    assert check_output(request, "[1, 2, 3]").ok
    assert check_output(request, "[]").problems == ("the answer fails the schema's 'minItems' rule",)


def test_the_declared_draft_decides():
    """Draft 4's boolean exclusiveMaximum: 10 fails ``maximum: 10, exclusiveMaximum: true``."""
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"n": {"type": "number", "maximum": 10, "exclusiveMaximum": True}}}
    request = schema_request(schema)
    assert check_output(request, '{"n": 9}').ok
    assert not check_output(request, '{"n": 10}').ok


def test_an_answer_with_calls_is_judged_by_its_calls_even_when_json_was_asked_for():
    request = ModelRequest(prompt="Weather?", tools=[WEATHER], response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}})
    check = check_output(request, "not json at all", [call()])
    assert check is not None and check.kind == "tool_calls" and check.ok


# ---------------------------------------------------------------------------------------------
# the evaluator


def test_valid_calls_score_full_marks_by_schema():
    evaluation = EVALUATOR.evaluate(tools_request(), "", "tool_calls", [call()])
    assert evaluation.evaluator == "schema" and evaluation.calibration is None
    assert evaluation.quality_score == 1.0 and not evaluation.low_quality
    assert (evaluation.completeness, evaluation.relevance, evaluation.coherence) == (1.0, 1.0, 1.0)
    assert evaluation.tool_calls_valid is True and evaluation.structured_valid is None
    assert not evaluation.invalid_output
    event = evaluation.to_event(request_id="r-1")
    assert event.evaluator == "schema" and event.quality_score == 1.0


def test_an_invalid_call_scores_the_share_of_valid_ones():
    evaluation = EVALUATOR.evaluate(tools_request(), "", "tool_calls",
                                    [call(), call("launch_missiles", "{}", 2)])
    assert evaluation.quality_score == 0.5 and evaluation.low_quality  # threshold 0.6
    assert (evaluation.completeness, evaluation.relevance) == (0.5, 0.5)
    assert evaluation.tool_calls_valid is False and evaluation.invalid_output
    assert "call 2 names a tool that was not offered" in evaluation.explanation


def test_a_structured_answer_scores_one_or_zero():
    good = EVALUATOR.evaluate(schema_request(), '{"answer": "x", "confidence": 1}', "stop")
    assert (good.quality_score, good.structured_valid, good.evaluator) == (1.0, True, "schema")
    assert good.explanation == "structured answer valid against the requested format"
    bad = EVALUATOR.evaluate(schema_request(), '{"answer": "x"}', "stop")
    assert (bad.quality_score, bad.structured_valid, bad.low_quality) == (0.0, False, True)
    assert (bad.relevance, bad.completeness) == (1.0, 0.0)  # JSON of the right kind, invalid
    assert bad.explanation == "structured answer invalid (the answer fails the schema's 'required' rule)"
    prose = EVALUATOR.evaluate(schema_request(), "Sure! Here it is.", "stop")
    assert (prose.relevance, prose.completeness, prose.quality_score) == (0.0, 0.0, 0.0)


def test_prose_is_still_scored_as_prose():
    evaluation = EVALUATOR.evaluate(tools_request(), "It is 18 degrees and clear in Paris today.",
                                    "stop")
    assert evaluation.evaluator == "heuristic"
    assert evaluation.structured_valid is None and evaluation.tool_calls_valid is None


def test_evaluate_async_and_features_take_the_calls():
    evaluation = asyncio.run(EVALUATOR.evaluate_async(tools_request(), "", "tool_calls", [call()]))
    assert evaluation.evaluator == "schema" and evaluation.quality_score == 1.0
    large = asyncio.run(EVALUATOR.evaluate_async(schema_request(), " " * 40_000 + "{}", "stop"))
    assert large.structured_valid is False  # scored in a worker thread, the same way
    assert EVALUATOR.features(tools_request(), "", "tool_calls", [call()]) is None
    assert EVALUATOR.features(schema_request(), "{}", "stop") is None  # no calibration applies
    assert EVALUATOR.features(ModelRequest(prompt="Hi there"), "Hello, how are you?", "stop")


def test_bad_tool_calls_argument_is_invalid_input():
    with pytest.raises(InvalidInput, match="tool_calls must be a sequence of ToolCall"):
        EVALUATOR.evaluate(tools_request(), "", "stop", [{"name": "get_weather"}])
    with pytest.raises(InvalidInput, match="tool_calls must be a sequence of ToolCall"):
        EVALUATOR.features(tools_request(), "", "stop", "get_weather")
