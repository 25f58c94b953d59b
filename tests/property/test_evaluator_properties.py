"""Invariants of the heuristic evaluator, over generated requests and answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from api_model_management import ModelRequest
from api_model_management.evaluation import FEATURE_NAMES, Calibration, ResponseEvaluator
from api_model_management.evaluation._calibration import MONOTONE
from api_model_management.evaluation._checks import arithmetic
from api_model_management.evaluation._text import content_terms, words

pytestmark = pytest.mark.property

VOCABULARY = [
    "python", "async", "await", "coroutine", "loop", "event", "thread", "cache", "model", "budget",
    "latency", "explain", "compare", "list", "why", "how", "what", "the", "and", "of", "is", "a",
    "function", "code", "write", "three", "3", "tcp", "udp", "error", "request", "token", "cost",
]
PUNCTUATION = [".", ",", "?", "!", "\n", "\n\n", "```", "(", ")", "- ", "1. ", ":"]

word_text = st.lists(st.sampled_from(VOCABULARY + PUNCTUATION), max_size=80).map(" ".join)
any_text = st.one_of(word_text, st.text(max_size=400))
prompts = st.lists(st.sampled_from(VOCABULARY + ["?", "."]), min_size=1, max_size=20).map(" ".join)
finish_reasons = st.sampled_from([None, "stop", "length", "tool_calls", "content_filter", "error",
                                  "other"])
COMMON = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EVALUATOR = ResponseEvaluator()


def _request(prompt: str, max_tokens: int = 512) -> ModelRequest:
    return ModelRequest(prompt=prompt.strip() or "hello", max_tokens=max_tokens)


@COMMON
@given(prompts, any_text, finish_reasons, st.integers(min_value=1, max_value=4096))
def test_scores_are_in_unit_interval_and_deterministic(prompt: str, text: str,
                                                       finish: str | None, max_tokens: int) -> None:
    request = _request(prompt, max_tokens)
    first = EVALUATOR.evaluate(request, text, finish)
    for value in (first.completeness, first.relevance, first.coherence, first.quality_score):
        assert 0.0 <= value <= 1.0
    assert EVALUATOR.evaluate(request, text, finish) == first
    assert ResponseEvaluator().evaluate(request, text, finish) == first


@COMMON
@given(prompts, any_text, st.sampled_from([None, "stop", "tool_calls"]))
def test_truncation_never_raises_the_score(prompt: str, text: str, clean: str | None) -> None:
    request = _request(prompt)
    stopped = EVALUATOR.evaluate(request, text, clean)
    truncated = EVALUATOR.evaluate(request, text, "length")
    assert truncated.quality_score <= stopped.quality_score
    assert truncated.completeness <= stopped.completeness


@COMMON
@given(prompts, any_text, st.text(alphabet="qxzjkvw0123456789#$%&*~^ \n", max_size=300))
def test_appending_unrelated_garbage_never_raises_relevance(prompt: str, text: str,
                                                            garbage: str) -> None:
    request = _request(prompt)
    assume(words(text))  # an answer with no words at all scores 0 anyway
    prompt_terms = set(content_terms(words(request.prompt or ""), drop_instructions=True))
    assume(not prompt_terms & set(content_terms(words(garbage))))
    before = EVALUATOR.evaluate(request, text, "stop")
    after = EVALUATOR.evaluate(request, text + "\n" + garbage, "stop")
    assert after.relevance <= before.relevance


@COMMON
@given(prompts, any_text, st.sampled_from(["\n", "\n\n"]))
def test_duplicating_the_answer_never_raises_coherence(prompt: str, text: str, sep: str) -> None:
    request = _request(prompt)
    once = EVALUATOR.evaluate(request, text, "stop")
    twice = EVALUATOR.evaluate(request, text + sep + text, "stop")
    assert twice.coherence <= once.coherence


@COMMON
@given(prompts, st.lists(st.sampled_from(VOCABULARY), min_size=8, max_size=40).map(" ".join))
def test_duplicating_a_real_answer_strictly_lowers_coherence(prompt: str, sentence: str) -> None:
    request = _request(prompt)
    text = sentence + "."
    once = EVALUATOR.evaluate(request, text, "stop")
    twice = EVALUATOR.evaluate(request, text + "\n" + text, "stop")
    assert twice.coherence < once.coherence or once.coherence == 0.0


arithmetic_text = st.text(alphabet="0123456789+-*/^()=|xX.,$% \n<>abf", max_size=300)


@COMMON
@given(arithmetic_text)
def test_the_arithmetic_check_takes_anything_an_answer_writes(text: str) -> None:
    checked, wrong = arithmetic(text)
    assert 0 <= wrong <= checked
    assert arithmetic(text) == (checked, wrong)


@COMMON
@given(prompts, arithmetic_text, finish_reasons)
def test_answers_full_of_arithmetic_score_within_bounds(prompt: str, text: str, finish: str | None) -> None:
    result = EVALUATOR.evaluate(_request(prompt), text, finish)
    assert 0.0 <= result.quality_score <= 1.0
    assert EVALUATOR.evaluate(_request(prompt), text, finish) == result


monotone_models = st.builds(
    lambda w, c, s, b: Calibration(name="m", weights=tuple(w), center=tuple(c), scale=tuple(s), intercept=b),
    st.lists(st.floats(-1, 1), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)).map(
        lambda w: [abs(v) if name in MONOTONE else v for v, name in zip(w, FEATURE_NAMES, strict=True)]),
    st.lists(st.floats(-2, 2), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    st.lists(st.floats(0.01, 3), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    st.floats(0, 1),
)


@COMMON
@given(monotone_models, st.lists(st.floats(0, 1), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
       st.sampled_from(MONOTONE), st.floats(0, 1))
def test_a_calibration_never_rewards_a_worse_score(model: Calibration, x: list[float], name: str,
                                                   drop: float) -> None:
    worse = list(x)
    worse[FEATURE_NAMES.index(name)] *= drop
    assert model.predict(worse) <= model.predict(x)
    assert 0.0 <= model.predict(x) <= 1.0
    assert Calibration.from_json(json.loads(json.dumps(model.to_json()))) == model
