"""Selection knows agent requests (issue 13): tools need ``function-calling``, images
``vision`` and a ``json_schema`` answer ``structured-output`` (``ModelRequest.capabilities_needed``),
and images count per model by its provider's rule in the input estimate (context window, expected
cost) and in the worst-case cost the ``max_cost_per_request`` constraint checks, the same bound
admission reserves."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

import pytest

from api_model_management import ModelRequest, SelectionConstraints, config
from api_model_management._clock import ManualClock
from api_model_management.budget._pricing import worst_case_cost_usd
from api_model_management.errors import NoEligibleModel
from api_model_management.selection._core import SelectorCore

pytestmark = pytest.mark.unit

TEXT = ["text-generation"]
WEATHER = {"name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def model(mid, provider, caps=TEXT, cin="0.001", cout="0.002", ctx=128_000, **kw):
    return config.ModelConfig(
        id=mid, provider=provider, name=mid, capabilities=list(caps),
        cost_per_1k_input_tokens=Decimal(cin), cost_per_1k_output_tokens=Decimal(cout),
        rate_limits=config.RateLimits(requests_per_minute=60, tokens_per_minute=100_000),
        context_window=ctx, average_response_time_ms=800.0, **kw,
    )


def provider(kind: str) -> config.ProviderConfig:
    return config.ProviderConfig(type=kind, base_url="http://127.0.0.1:1")


PROVIDERS = {"openai": provider("openai"), "anthropic": provider("anthropic"),
             "google": provider("google"), "ollama": provider("ollama")}
ALL = TEXT + ["function-calling", "vision", "structured-output"]
FLEET = config.RegistryConfig(providers=PROVIDERS, models=[
    model("plain", "openai", TEXT, cin="0.0001", cout="0.0002"),
    model("tools", "anthropic", TEXT + ["function-calling"], cin="0.003", cout="0.015"),
    model("seeing", "google", TEXT + ["vision"], cin="0.0003", cout="0.0025"),
    model("everything", "openai", ALL, cin="0.002", cout="0.008"),
    model("local", "ollama", ALL, cin="0", cout="0", ctx=8192),
])


def make(cfg: config.RegistryConfig = FLEET) -> SelectorCore:
    return SelectorCore(cfg, clock=ManualClock())


def png_url(width: int, height: int) -> str:
    raw = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
           + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00")
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def with_image(url: str, **fields) -> ModelRequest:
    parts = [{"type": "text", "text": "What is in this picture?"},
             {"type": "image_url", "image_url": {"url": url}}]
    return ModelRequest(messages=[{"role": "user", "content": parts}], **fields)


def eligible(selection) -> set[str]:
    return {c.model_id for c in selection.candidates}


# ---------------------------------------------------------------------------------------------
# capabilities the request needs


def test_tools_need_function_calling():
    selection = make().select(ModelRequest(prompt="Weather in Paris?", tools=[WEATHER]))
    assert eligible(selection) == {"tools", "everything", "local"}
    assert selection.filtered["plain"] == "missing capabilities: function-calling"
    assert selection.filtered["seeing"] == "missing capabilities: function-calling"


def test_a_tool_conversation_without_tools_still_needs_function_calling():
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, clear"},
    ]
    selection = make().select(ModelRequest(messages=messages))
    assert eligible(selection) == {"tools", "everything", "local"}


def test_images_need_vision():
    selection = make().select(with_image("https://example.com/cat.png"))
    assert eligible(selection) == {"seeing", "everything"}  # local: see the context test
    assert selection.filtered["tools"] == "missing capabilities: vision"


def test_a_json_schema_answer_needs_structured_output_and_json_object_nothing():
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    selection = make().select(ModelRequest(prompt="Answer in JSON.", response_format=schema))
    assert eligible(selection) == {"everything", "local"}
    assert selection.filtered["plain"] == "missing capabilities: structured-output"
    json_object = make().select(ModelRequest(prompt="Answer in JSON.",
                                             response_format={"type": "json_object"}))
    assert eligible(json_object) == {"plain", "tools", "seeing", "everything", "local"}


def test_needed_capabilities_add_to_the_required_ones():
    request = ModelRequest(prompt="Weather?", tools=[WEATHER],
                           required_capabilities=("text-generation", "vision"))
    selection = make().select(request)
    assert eligible(selection) == {"everything", "local"}
    assert selection.filtered["tools"] == "missing capabilities: vision"
    assert selection.filtered["plain"] == "missing capabilities: function-calling, vision"


def test_no_model_with_the_capabilities_is_no_eligible_model():
    cfg = config.RegistryConfig(providers=PROVIDERS, models=[model("plain", "openai")])
    with pytest.raises(NoEligibleModel) as caught:
        make(cfg).select(ModelRequest(prompt="Weather?", tools=[WEATHER]))
    assert caught.value.filtered == {"plain": "missing capabilities: function-calling"}


def test_failover_selection_filters_on_needed_capabilities_too():
    request = ModelRequest(prompt="Weather?", tools=[WEATHER])
    selection = make().select_for_failover(request, exclude={"everything", "local"})
    assert selection.model_id == "tools" and eligible(selection) == {"tools"}


def test_the_assignment_cache_tells_a_request_with_tools_from_one_without():
    core = make()
    assert "plain" in eligible(core.select(ModelRequest(prompt="Weather in Paris?")))
    with_tools = core.select(ModelRequest(prompt="Weather in Paris?", tools=[WEATHER]))
    assert "plain" not in eligible(with_tools)
    assert "plain" in eligible(core.select(ModelRequest(prompt="Weather in Paris?")))


def test_capabilities_the_request_needs_are_not_counted_as_extra():
    """capability = 0.8 + 0.2 * min(1, extra / 3), extra beyond the needed capabilities."""
    selection = make().select(ModelRequest(prompt="Weather?", tools=[WEATHER]))
    by_id = {c.model_id: c.capability for c in selection.candidates}
    assert by_id["tools"] == pytest.approx(0.8)  # text-generation and function-calling: needed
    assert by_id["everything"] == pytest.approx(0.8 + 0.2 * 2 / 3)


# ---------------------------------------------------------------------------------------------
# images: per model, by its provider's rule


def test_the_worst_case_cost_counts_images_by_the_candidates_provider():
    """A 1000 x 1000 image: Gemini 2.x bills 258 x 4 tiles, OpenAI's gpt-4o-mini rule
    2833 + 5667 x 4 tiles; the constraint checks each at its own rule, as admission reserves."""
    cfg = config.RegistryConfig(providers=PROVIDERS, models=[
        model("gemini-2.5-flash", "google", TEXT + ["vision"], cin="0.0003", cout="0.0025"),
        model("gpt-4o-mini", "openai", TEXT + ["vision"], cin="0.00015", cout="0.0006"),
    ])
    request = with_image(png_url(1000, 1000), max_tokens=100)
    worst = {m.id: worst_case_cost_usd(m, request.input_token_bound(m.wire_name,
                                                                    PROVIDERS[m.provider].type),
                                       request.max_tokens)
             for m in cfg.models}
    assert request.image_token_bound("gpt-4o-mini", "openai") == 2833 + 5667 * 4
    assert request.image_token_bound("gemini-2.5-flash", "google") == 258 * 4
    assert worst["gemini-2.5-flash"] < worst["gpt-4o-mini"]
    limit = (worst["gemini-2.5-flash"] + worst["gpt-4o-mini"]) / 2
    request = request.model_copy(update={
        "constraints": SelectionConstraints(max_cost_per_request=limit)})
    selection = make(cfg).select(request)
    assert eligible(selection) == {"gemini-2.5-flash"}
    assert selection.filtered["gpt-4o-mini"] == (
        f"worst-case cost ${worst['gpt-4o-mini']:.6f} > max ${limit}")
    # the same request without its image passes on both
    text_only = ModelRequest(prompt="What is in this picture?", max_tokens=100,
                             constraints=SelectionConstraints(max_cost_per_request=limit))
    assert eligible(make(cfg).select(text_only)) == {"gemini-2.5-flash", "gpt-4o-mini"}


def test_images_count_towards_the_context_window_per_provider():
    """Ollama's rule counts at least 6,404 tokens an image: an 8k-context model has no room for
    two, though their text fits; Gemini's 258 a small image leaves room."""
    small = png_url(300, 300)
    parts = [{"type": "text", "text": "Compare."},
             {"type": "image_url", "image_url": {"url": small}},
             {"type": "image_url", "image_url": {"url": small}}]
    request = ModelRequest(messages=[{"role": "user", "content": parts}], max_tokens=256)
    selection = make().select(request)
    needed = request.estimated_input_tokens() + 2 * 6404 + 256
    assert selection.filtered["local"] == f"context window 8192 < {needed} tokens needed"
    assert eligible(selection) == {"seeing", "everything"}


def test_the_expected_cost_counts_each_models_image_tokens():
    """The cost sub-score reads (text estimate + the model's image tokens) at its prices: an
    image costs a model with a dear image rule more than the text alone."""
    cfg = config.RegistryConfig(providers=PROVIDERS, models=[
        model("gpt-4o-mini", "openai", TEXT + ["vision"], cin="0.00015", cout="0.0006"),
    ])
    text = make(cfg).select(ModelRequest(messages=[{"role": "user", "content": "Describe."}]))
    image = make(cfg).select(with_image(png_url(512, 512)))
    assert image.candidates[0].cost < text.candidates[0].cost


def test_the_assignment_cache_tells_image_sizes_apart():
    cfg = config.RegistryConfig(providers=PROVIDERS, models=[
        model("gpt-4o-mini", "openai", TEXT + ["vision"], cin="0.00015", cout="0.0006"),
        model("gemini-2.5-flash", "google", TEXT + ["vision"], cin="0.0003", cout="0.0025"),
    ])
    small, large = png_url(64, 64), png_url(2000, 2000)
    limit = Decimal("0.0025")  # fits a small image on gpt-4o-mini (one tile), not a large one
    core = make(cfg)
    constraints = SelectionConstraints(max_cost_per_request=limit)
    first = core.select(with_image(small, max_tokens=16, constraints=constraints))
    second = core.select(with_image(large, max_tokens=16, constraints=constraints))
    assert "gpt-4o-mini" in eligible(first) and "gpt-4o-mini" not in eligible(second)


def test_an_unknown_provider_type_bounds_an_image_at_every_rules_largest():
    """A model whose provider is not configured: the image counts at the largest of the four
    rules (as ``input_token_bound()`` without a provider)."""
    cfg = config.RegistryConfig(models=[model("m", "nowhere", TEXT + ["vision"])])
    request = with_image("https://example.com/cat.png", max_tokens=10)
    bound = request.input_token_bound()
    worst = worst_case_cost_usd(cfg.models[0], bound, 10)
    assert bound == request.text_token_bound() + request.image_token_bound()
    tight = request.model_copy(update={
        "constraints": SelectionConstraints(max_cost_per_request=worst - Decimal("1e-9"))})
    with pytest.raises(NoEligibleModel) as caught:
        make(cfg).select(tight)
    assert caught.value.filtered["m"].startswith(f"worst-case cost ${worst:.6f}")
