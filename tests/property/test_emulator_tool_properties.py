"""Properties of the emulator's tool calls and structured output over random JSON Schemas (objects
with typed and bounded properties, required lists, enums, nested arrays and objects, optional
values, references): every generated value validates; every violation does not; and on every wire,
plain or streamed, every tool call validates against its tool's schema unless a fault (by rate or
header) says otherwise, as counted in the emulator's statistics."""

from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management.emulator import Engine, parse_profile
from api_model_management.emulator._schema import generate, violate

from strategies import json_schemas

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _emulator_wires import PROVIDERS, body_of, send, user  # noqa: E402

pytestmark = pytest.mark.property

seeds = st.integers(0, 2**64 - 1)
words = st.lists(st.text("abcdefghij", min_size=1, max_size=8), max_size=4)


def validator(schema: dict) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@settings(max_examples=150, deadline=None)
@given(json_schemas(), seeds, words)
def test_every_generated_value_validates(schema, seed, vocabulary):
    value = generate(schema, seed, vocabulary)
    errors = [e.message for e in validator(schema).iter_errors(value)]
    assert not errors, (value, errors)
    assert generate(schema, seed, vocabulary) == value  # deterministic


@settings(max_examples=150, deadline=None)
@given(json_schemas(), seeds)
def test_every_violation_is_invalid_and_keeps_an_object(schema, seed):
    ok, value = violate(schema, seed)
    if ok:
        assert not validator(schema).is_valid(value) and isinstance(value, dict)
    else:  # only a schema with nothing to break in place: no required or typed property, extras allowed
        assert not schema.get("required") and schema.get("additionalProperties") is not False


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_schemas(), st.sampled_from(PROVIDERS), st.booleans(),
       st.sampled_from(["none", "header", "rate"]), st.text("abcdefgh ", min_size=3, max_size=30))
def test_every_tool_call_validates_unless_a_fault_says_otherwise(schema, provider, stream, fault, prompt):
    engine = Engine(parse_profile({"seed": 3, "defaults": {"bad_tool_args_rate": 0.5}} if fault == "rate" else {}))
    headers = {"x-emulator-fault": "bad-tool-args"} if fault == "header" else None
    body = body_of(provider, [user(provider, "Use the tool: " + prompt)], stream=stream,
                   tools={"tool_a": schema, "tool_b": schema})
    reply = send(engine, provider, body, stream=stream, headers=headers)
    assert reply.status == 200 and reply.calls
    faulted = engine.stats()["providers"][provider].get("bad_tool_args", 0)
    verdicts = []
    for call in reply.calls:
        try:
            verdicts.append(validator(schema).is_valid(orjson.loads(call.arguments)))
        except orjson.JSONDecodeError:
            verdicts.append(False)
    assert all(verdicts[1:])  # a fault breaks the first call only
    assert verdicts[0] is not bool(faulted), (verdicts, faulted)
    if fault == "header" and violate(schema, 0) != (False, None):
        assert faulted  # a breakable schema is broken when the header asks
