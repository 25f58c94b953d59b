"""Exact Decimal cost from per-1k prices, cached-token pricing, worst case, and (property) monotone,
non-negative cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_model_management.budget._pricing import (
    UsageBound,
    cost_usd,
    settle_usage,
    usage_bound,
    worst_case_cost_usd,
)
from api_model_management.config import ModelConfig
from api_model_management.errors import InvalidInput

pytestmark = pytest.mark.unit


def model(
    input_price: str = "0.00015",
    output_price: str = "0.0006",
    cached_price: str | None = None,
    max_output_tokens: int | None = None,
) -> ModelConfig:
    return ModelConfig(
        id="gpt-4o-mini",
        provider="openai",
        name="GPT-4o mini",
        capabilities=["text-generation"],
        cost_per_1k_input_tokens=Decimal(input_price),
        cost_per_1k_output_tokens=Decimal(output_price),
        cost_per_1k_cached_input_tokens=Decimal(cached_price) if cached_price else None,
        rate_limits={"requests_per_minute": 500, "tokens_per_minute": 200000},
        context_window=128000,
        max_output_tokens=max_output_tokens,
        average_response_time_ms=800,
    )


@pytest.mark.parametrize(
    ("inp", "out", "cached", "expected"),
    [
        (0, 0, 0, "0"),
        (1000, 0, 0, "0.00015"),
        (0, 1000, 0, "0.0006"),
        (1234, 567, 0, "0.0005253"),  # 1.234*0.00015 + 0.567*0.0006 = 0.0001851 + 0.0003402
        (1, 1, 0, "0.00000075"),
        (1000, 1000, 1000, "0.00090"),  # cached priced at the input price by default
    ],
)
def test_exact_cost(inp, out, cached, expected):
    result = cost_usd(model(), inp, out, cached)
    assert isinstance(result, Decimal)
    assert result == Decimal(expected)


def test_cached_tokens_priced_at_cached_price():
    m = model(cached_price="0.000075")
    assert cost_usd(m, 1000, 0, 2000) == Decimal("0.00030")  # 0.00015 + 2*0.000075
    assert cost_usd(m, 0, 0, 1) == Decimal("0.000000075")


def test_worst_case_prices_all_input_uncached_and_all_max_tokens():
    m = model(cached_price="0.000075")
    assert worst_case_cost_usd(m, 2000, 500) == Decimal("0.0006")  # 0.0003 + 0.0003
    capped = model(max_output_tokens=100)
    assert worst_case_cost_usd(capped, 0, 500) == Decimal("0.00006")


def test_worst_case_bounds_the_actual_cost():
    m = model(cached_price="0.000075")
    assert cost_usd(m, 800, 300, 200) <= worst_case_cost_usd(m, 1000, 300)


@pytest.mark.parametrize(
    ("inp", "out", "cached"), [(-1, 0, 0), (0, -1, 0), (0, 0, -5), (1.5, 0, 0), (True, 0, 0)]
)
def test_bad_counts_are_refused(inp, out, cached):
    with pytest.raises(InvalidInput):
        cost_usd(model(), inp, out, cached)


prices = st.decimals(min_value=0, max_value=Decimal("0.2"), places=7, allow_nan=False)
counts = st.integers(min_value=0, max_value=2_000_000)


@pytest.mark.property
@settings(max_examples=150, deadline=None)
@given(prices, prices, st.none() | prices, counts, counts, counts, counts)
def test_cost_is_non_negative_and_monotone(p_in, p_out, p_cached, inp, out, cached, extra):
    m = ModelConfig(
        id="m",
        provider="p",
        name="m",
        capabilities=["text-generation"],
        cost_per_1k_input_tokens=p_in,
        cost_per_1k_output_tokens=p_out,
        cost_per_1k_cached_input_tokens=p_cached,
        rate_limits={"requests_per_minute": 1, "tokens_per_minute": 1},
        context_window=1000,
        average_response_time_ms=1,
    )
    base = cost_usd(m, inp, out, cached)
    assert base >= 0
    assert cost_usd(m, inp + extra, out, cached) >= base
    assert cost_usd(m, inp, out + extra, cached) >= base
    assert cost_usd(m, inp, out, cached + extra) >= base
    # exact: the sum of the parts, no rounding
    assert base == cost_usd(m, inp, 0, 0) + cost_usd(m, 0, out, 0) + cost_usd(m, 0, 0, cached)
    # the worst case: the usage bound (input capped at the context window), input at the higher price
    bound = usage_bound(m, inp, out)
    assert bound == UsageBound(min(inp, 1000), out)
    top = p_in if p_cached is None else max(p_in, p_cached)
    assert worst_case_cost_usd(m, inp, out) == (bound.input_tokens * top + out * p_out) / 1000


# ---------------------------------------------------------------------------------------------
# the usage bound and settlement within it


def test_usage_bound_caps_input_at_the_context_window_and_output_at_max_output():
    assert usage_bound(model(), 500, 300) == UsageBound(500, 300)
    assert usage_bound(model(), 10_000_000, 300) == UsageBound(128_000, 300)
    assert usage_bound(model(max_output_tokens=100), 500, 300) == UsageBound(500, 100)


def test_worst_case_prices_input_at_the_higher_of_input_and_cached_price():
    odd = model(input_price="0.001", cached_price="0.002")  # a cached price above the input price
    assert worst_case_cost_usd(odd, 1000, 0) == Decimal("0.002")
    assert cost_usd(odd, 0, 0, 1000) <= worst_case_cost_usd(odd, 1000, 0)


def test_usage_within_the_bound_is_charged_exactly():
    m = model(cached_price="0.000075")
    settled = settle_usage(m, UsageBound(1000, 500), 800, 500, 200)
    assert settled.cost_usd == cost_usd(m, 800, 500, 200)
    assert settled.tokens == 1500 and settled.overruns == ()


def test_five_million_output_tokens_are_charged_at_most_the_worst_case():
    m = model()
    bound = usage_bound(m, 60, 100)
    settled = settle_usage(m, bound, 20, 5_000_000)
    assert settled.cost_usd == cost_usd(m, 20, 100) <= worst_case_cost_usd(m, 60, 100)
    assert settled.tokens == 120
    assert [(o.metric, o.reported, o.bound) for o in settled.overruns] == [
        ("output_tokens", 5_000_000, 100)
    ]


def test_input_beyond_the_bound_clips_uncached_then_cached():
    m = model(cached_price="0.000075")
    settled = settle_usage(m, UsageBound(100, 10), 80, 5, 50)  # 130 input tokens reported
    assert settled.cost_usd == cost_usd(m, 80, 5, 20)
    assert [(o.metric, o.reported, o.bound) for o in settled.overruns] == [("input_tokens", 130, 100)]


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(prices, prices, st.none() | prices, counts, counts, counts, counts,
       st.integers(min_value=1, max_value=5000))
def test_settlement_never_exceeds_the_worst_case(p_in, p_out, p_cached, inp, out, cached,
                                                  in_bound, max_tokens):
    m = ModelConfig(
        id="m", provider="p", name="m", capabilities=["text-generation"],
        cost_per_1k_input_tokens=p_in, cost_per_1k_output_tokens=p_out,
        cost_per_1k_cached_input_tokens=p_cached,
        rate_limits={"requests_per_minute": 1, "tokens_per_minute": 1},
        context_window=1_000_000, average_response_time_ms=1,
    )
    bound = usage_bound(m, in_bound, max_tokens)
    settled = settle_usage(m, bound, inp, out, cached)
    assert 0 <= settled.cost_usd <= worst_case_cost_usd(m, in_bound, max_tokens)
    assert settled.tokens <= bound.total_tokens
    within = inp + cached <= bound.input_tokens and out <= bound.output_tokens
    assert (settled.overruns == ()) == within
    if within:
        assert settled.cost_usd == cost_usd(m, inp, out, cached)


def test_input_token_bound_is_utf8_bytes_plus_framing():
    from api_model_management import Message, ModelRequest
    from api_model_management._request import FRAMING_TOKENS_PER_MESSAGE as PER_MESSAGE
    from api_model_management._request import FRAMING_TOKENS_PER_REQUEST as PER_REQUEST

    assert ModelRequest(prompt="hello").input_token_bound() == 5 + PER_MESSAGE + PER_REQUEST
    # a character may be several bytes (and so several tokens): "é" is 2, "漢" 3, "🙂" 4
    assert ModelRequest(prompt="é漢🙂").input_token_bound() == 9 + PER_MESSAGE + PER_REQUEST
    both = ModelRequest(system="be brief", messages=(
        Message(role="user", content="hi"), Message(role="assistant", content="hello"),
        Message(role="user", content="more"),
    ))
    assert both.input_token_bound() == 8 + 2 + 5 + 4 + 4 * PER_MESSAGE + PER_REQUEST
    assert both.input_token_bound() >= both.estimated_input_tokens()
