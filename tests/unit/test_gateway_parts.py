"""The gateway's parts without HTTP: virtual keys and their limits (on a ManualClock), the two
wire formats, routing from model names, keys, aliases and overrides, the error table, metrics
and one worker's share of the limits."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from api_model_management._clock import ManualClock
from api_model_management._request import ModelResponse, ToolCall
from api_model_management.budget import BudgetStatus
from api_model_management.config import GatewayKey, demo_config, override
from api_model_management.errors import (
    AllCandidatesFailed,
    BudgetExceeded,
    ConfigError,
    ContextWindowExceeded,
    InvalidInput,
    NoEligibleModel,
    ProviderTimeout,
    RateLimitExceeded,
    SpoolUnavailable,
)
from api_model_management.events import RequestCompleted
from api_model_management.gateway import (
    GatewayRefusal,
    KeyLimits,
    KeyRing,
    Metrics,
    Router,
    WireRequest,
    http_error,
    key_hash,
    new_key,
    presented_key,
    share_of,
)
from api_model_management.gateway._anthropic import EventWriter, message, parse_messages
from api_model_management.gateway._engine import scaled_spend
from api_model_management.gateway._errors import failure_kind
from api_model_management.gateway._openai import ChunkWriter, completion, parse_chat
from api_model_management.gateway._wire import header_text

pytestmark = pytest.mark.unit

SECRET = "amm-secret-value-0123456789"


def gkey(name: str = "dev", **fields: object) -> GatewayKey:
    fields.setdefault("key_sha256", key_hash(SECRET))
    return GatewayKey(name=name, **fields)  # type: ignore[arg-type]


# -- keys -----------------------------------------------------------------------------------------
def test_new_keys_are_random_and_hashed() -> None:
    (a, ha), (b, hb) = new_key(), new_key()
    assert a != b and a.startswith("amm-") and len(a) > 40
    assert ha == hashlib.sha256(a.encode()).hexdigest() == key_hash(a) and ha != hb


def test_the_presented_key_comes_from_either_sdks_header() -> None:
    assert presented_key({"authorization": "Bearer  k1 "}) == "k1"
    assert presented_key({"authorization": "bearer k2"}) == "k2"
    assert presented_key({"x-api-key": "k3"}) == "k3"
    assert presented_key({"authorization": "Basic abc", "x-api-key": "k4"}) == "k4"
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None and presented_key({"x-api-key": " "}) is None


def test_a_key_ring_matches_hashes_and_variables() -> None:
    other, _ = new_key()
    ring = KeyRing([gkey("hashed"), GatewayKey(name="from-env", key_env="CI_KEY")],
                   {"CI_KEY": other})
    assert len(ring) == 2
    assert ring.authenticate(SECRET).name == "hashed"  # type: ignore[union-attr]
    assert ring.authenticate(other).name == "from-env"  # type: ignore[union-attr]
    assert ring.authenticate(SECRET + "x") is None and ring.authenticate(None) is None
    assert ring.authenticate("\udcff") is None  # any string, even one that is not UTF-8


def test_a_key_whose_variable_is_unset_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        KeyRing([GatewayKey(name="ci", key_env="CI_KEY")], {"CI_KEY": "  "})
    assert caught.value.issues[0].path == "settings.gateway.keys[0].key_env"
    assert "CI_KEY is not set" in caught.value.issues[0].message


def test_requests_per_minute_slide_with_the_clock() -> None:
    clock = ManualClock()
    limits = KeyLimits([gkey(requests_per_minute=2)], clock=clock)
    limits.admit("dev")
    clock.advance(10)
    limits.admit("dev")
    with pytest.raises(RateLimitExceeded) as caught:
        limits.admit("dev")
    assert caught.value.retry_after_s == pytest.approx(50)
    assert limits.status()[0].requests_in_window == 2
    clock.advance(50)
    limits.admit("dev")  # the first left the window
    for _ in range(100):  # a key without a limit is never refused
        KeyLimits([gkey()], clock=clock).admit("dev")


def test_a_keys_budget_holds_worst_cases_and_counts_spend() -> None:
    clock = ManualClock(start=datetime(2026, 3, 5, 23, 0, tzinfo=UTC))
    limits = KeyLimits([gkey(budget_usd=Decimal("1"))], clock=clock)
    first = limits.reserve("dev", Decimal("0.6"))
    with pytest.raises(BudgetExceeded) as caught:
        limits.reserve("dev", Decimal("0.5"))  # 0.6 held + 0.5 > 1
    assert caught.value.retry_after_s == pytest.approx(3600)  # the day turns in an hour
    limits.settle(first, Decimal("0.2"))
    second = limits.reserve("dev", Decimal("0.5"))
    limits.release(second)
    (status,) = limits.status()
    assert (status.spent_usd, status.reserved_usd, status.headroom_usd) == (
        Decimal("0.2"), Decimal(0), Decimal("0.8"))
    clock.advance(3600)  # a new day: nothing spent in it
    assert limits.status()[0].spent_usd == 0
    limits.reserve("dev", Decimal("1"))


def test_spend_survives_a_restart_and_each_worker_counts_its_share(tmp_path: Path) -> None:
    clock = ManualClock(start=datetime(2026, 3, 5, 12, 0, tzinfo=UTC))
    journal = tmp_path / "state" / "spend.jsonl"
    keys = [gkey(budget_usd=Decimal("1"), budget_window="month"), GatewayKey(name="other", key_env="X")]
    limits = KeyLimits(keys, clock=clock, journal=journal)
    limits.settle(limits.reserve("dev", Decimal("0.5")), Decimal("0.3"))
    limits.settle(limits.reserve("other", Decimal(0)), Decimal("0.1"))
    limits.close()
    text = journal.read_text()
    assert SECRET not in text and '"dev"' in text
    again = KeyLimits(keys, clock=clock, journal=journal)
    assert {s.name: s.spent_usd for s in again.status()} == {"dev": Decimal("0.3"), "other": Decimal("0.1")}
    half = KeyLimits(keys, clock=clock, journal=journal, share=0.5)
    dev = {s.name: s for s in half.status()}["dev"]
    assert (dev.limit_usd, dev.spent_usd) == (Decimal("0.5"), Decimal("0.15"))
    with pytest.raises(BudgetExceeded):
        half.reserve("dev", Decimal("0.4"))  # 0.15 + 0.4 > 0.5
    clock.advance(timedelta(days=30).total_seconds())  # April: a new month
    assert KeyLimits(keys, clock=clock, journal=journal).status()[0].spent_usd == 0
    with pytest.raises(ValueError):
        KeyLimits(keys, share=0)


# -- OpenAI's wire --------------------------------------------------------------------------------
def test_an_openai_body_maps_onto_the_request_fields() -> None:
    wire = parse_chat({
        "model": "auto", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "developer", "content": "Be brief."},
                     {"role": "user", "content": "Hi", "name": "ann"}],
        "temperature": 0.2, "seed": 7, "max_completion_tokens": 99, "max_tokens": 5,
        "metadata": {"agent_type": "coder"}, "user": "u1", "mystery": 1,
    })
    assert (wire.model, wire.stream, wire.include_usage) == ("auto", True, True)
    assert wire.fields["messages"] == [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Hi"}]
    assert wire.fields["parameters"] == {"temperature": 0.2, "seed": 7}
    assert wire.fields["max_tokens"] == 99 and wire.metadata == {"agent_type": "coder"}
    assert wire.ignored == ["mystery"]


@pytest.mark.parametrize("body, param", [
    ([], None), ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "auto"}, "messages"), ({"model": "auto", "messages": []}, "messages"),
    ({"model": "auto", "messages": [{}], "stream": "yes"}, "stream"),
    ({"model": "auto", "messages": [{}], "n": 3}, "n"),
    ({"model": "auto", "messages": [{}], "metadata": []}, "metadata"),
    ({"model": "auto", "messages": [{}], "stream_options": 1}, "stream_options"),
])
def test_bad_openai_bodies_name_the_field(body: object, param: str | None) -> None:
    with pytest.raises(GatewayRefusal) as caught:
        parse_chat(body)
    assert caught.value.status == 400 and caught.value.param == param


def response(**fields: object) -> ModelResponse:
    base: dict[str, object] = {"request_id": "r1", "model_id": "gpt-4.1-mini", "provider": "openai",
                               "text": "Hello", "finish_reason": "stop", "input_tokens": 3,
                               "output_tokens": 2, "cost_usd": Decimal("0.001")}
    return ModelResponse(**{**base, **fields})  # type: ignore[arg-type]


def test_openai_completions_and_chunks() -> None:
    call = ToolCall(id="c1", name="f", arguments="{}")
    body = completion(response(text="", tool_calls=(call,), finish_reason="tool_calls"), 123)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": None, "refusal": None,
                                             "tool_calls": [call.to_openai()]}
    assert completion(response(finish_reason="other"), 1)["choices"][0]["finish_reason"] == "stop"
    writer = ChunkWriter("r1", "m", 5, include_usage=False)
    chunks = [writer.first(), writer.text("a"), writer.tool_call(call), writer.tool_call(call),
              *writer.last(response())]
    assert [c["choices"][0]["delta"].get("tool_calls", [{}])[0].get("index") for c in chunks] == [
        None, None, 0, 1, None]
    assert len(chunks) == 5 and "usage" not in chunks[-1]


# -- Anthropic's wire -----------------------------------------------------------------------------
def test_an_anthropic_body_maps_onto_the_request_fields() -> None:
    wire = parse_messages({
        "model": "auto", "max_tokens": 64, "system": [{"type": "text", "text": "A"},
                                                      {"type": "text", "text": "B"}],
        "stop_sequences": ["END"], "top_k": 5, "thinking": {"type": "enabled"},
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                {"type": "text", "text": "What?"}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
                                              {"type": "text", "text": "Let me"},
                                              {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": "42"}]}]}],
    })
    m = wire.fields["messages"]
    assert m[0] == {"role": "system", "content": "A\nB"}
    assert m[1]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}
    assert m[1]["content"][1]["image_url"]["url"] == "https://x.test/a.png"
    assert m[2] == {"role": "assistant", "content": "Let me",
                    "tool_calls": [{"id": "t1", "name": "f", "arguments": {"a": 1}}]}
    assert m[3] == {"role": "tool", "tool_call_id": "t1", "content": "42"}
    assert wire.fields["tools"] == [{"name": "f", "parameters": {"type": "object"}, "description": "d"}]
    assert wire.fields["tool_choice"] == {"name": "f"} and wire.fields["parameters"] == {"stop": ["END"]}
    assert wire.ignored == ["thinking"] and wire.include_usage


@pytest.mark.parametrize("body, param", [
    ({"model": "auto", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "auto", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"model": "auto", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0].type"),
    ({"model": "auto", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
      "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ({"model": "auto", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
    ({"model": "auto", "max_tokens": 1, "system": [{"type": "image"}],
      "messages": [{"role": "user", "content": "x"}]}, "system[0]"),
])
def test_bad_anthropic_bodies_name_the_field(body: object, param: str) -> None:
    with pytest.raises(GatewayRefusal) as caught:
        parse_messages(body)
    assert caught.value.param == param


def test_anthropic_messages_and_the_event_order() -> None:
    call = ToolCall(id="t1", name="f", arguments='{"a": 1}')
    body = message(response(text="", tool_calls=(call,), finish_reason="tool_calls"))
    assert body["content"] == [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]
    assert body["stop_reason"] == "tool_use"
    assert message(response(finish_reason="length"))["stop_reason"] == "max_tokens"
    writer = EventWriter("r1", "m")
    events = [*writer.start(), *writer.text("a"), *writer.text("b"), *writer.tool_call(call),
              *writer.end(response())]
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert [d.get("index") for _, d in events][1:8] == [0, 0, 0, 0, 1, 1, 1]
    assert json.loads(events[6][1]["delta"]["partial_json"]) == {"a": 1}
    empty = EventWriter("r2", "m")  # no text at all: one empty text block, as Anthropic sends
    assert [n for n, _ in [*empty.start(), *empty.end(response(text=""))]] == [
        "message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"]


# -- routing --------------------------------------------------------------------------------------
def router() -> Router:
    config = override(demo_config(), settings={"gateway": {"aliases": {
        "auto:code": {"agent_type": "coder", "priority": "high",
                      "required_capabilities": ["code-generation"],
                      "models": ["gpt-4.1", "claude-sonnet-4-5", "qwen2.5"],
                      "constraints": {"max_cost_per_request": "0.5", "excluded_providers": ["ollama"]}}}}})
    return Router(config)


def wire(model: str, metadata: dict | None = None) -> WireRequest:
    return WireRequest(model, {"messages": [{"role": "user", "content": "Hi"}]},
                       metadata=metadata or {})


def test_a_model_id_or_wire_name_pins_it() -> None:
    r = router()
    request = r.request(wire("gpt-4.1-mini"), gkey(agent_type="research"), {}, "rid")
    assert request.model_id == "gpt-4.1-mini" and request.request_id == "rid"
    assert request.agent_type == "research" and request.max_tokens == 4096
    with pytest.raises(GatewayRefusal) as caught:
        r.request(wire("gpt-9"), gkey(), {}, "rid")
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")
    with pytest.raises(GatewayRefusal) as caught:
        r.request(wire("gpt-4.1"), gkey(allowed_models=["gpt-4.1-mini"]), {}, "rid")
    assert (caught.value.status, caught.value.code) == (403, "model_not_allowed")


def test_auto_and_an_alias_let_the_selector_choose_within_the_key() -> None:
    r = router()
    key = gkey(allowed_models=["gpt-4.1", "qwen2.5", "gpt-4o-mini"], priority="low",
               required_capabilities=["analysis"],
               constraints={"max_cost_per_request": "0.1", "min_quality": 0.5})
    auto = r.request(wire("auto"), key, {}, "r")
    assert auto.model_id is None and auto.priority == "low"
    assert auto.constraints.allowed_models == ("gpt-4.1", "qwen2.5", "gpt-4o-mini")
    assert auto.required_capabilities == ("text-generation", "analysis")
    code = r.request(wire("auto:code"), key, {}, "r")
    assert (code.agent_type, code.priority) == ("coder", "high")
    assert code.constraints.allowed_models == ("gpt-4.1", "qwen2.5")  # key ∩ alias
    assert code.constraints.max_cost_per_request == Decimal("0.1")  # the stricter
    assert code.constraints.excluded_providers == ("ollama",) and code.constraints.min_quality == 0.5
    assert code.required_capabilities == ("text-generation", "analysis", "code-generation")
    names = [n for n, _ in r.model_names(key)]
    assert names == ["gpt-4.1", "gpt-4o-mini", "qwen2.5", "auto", "auto:code"]


def test_headers_and_metadata_override_when_the_key_allows() -> None:
    r = router()
    headers = {"x-amm-agent-type": "reviewer", "x-amm-priority": "critical",
               "x-amm-max-cost-usd": "0.05", "x-amm-capabilities": "reasoning, vision",
               "x-amm-excluded-models": "gpt-4.1", "x-amm-timeout-s": "30", "x-amm-cache": "off"}
    request = r.request(wire("auto", {"task_id": "t-9", "agent_type": "planner", "min_quality": 0.7}),
                        gkey(constraints={"max_cost_per_request": "0.01"}), headers, "r")
    assert (request.agent_type, request.priority, request.task_id) == ("reviewer", "critical", "t-9")
    assert request.constraints.max_cost_per_request == Decimal("0.01")  # never loosened
    assert request.constraints.min_quality == 0.7 and request.constraints.excluded_models == ("gpt-4.1",)
    assert request.required_capabilities == ("text-generation", "reasoning", "vision")
    assert request.timeout_s == 30 and request.cacheable is False
    with pytest.raises(GatewayRefusal) as caught:
        r.request(wire("auto"), gkey(allow_overrides=False), {"x-amm-priority": "high"}, "r")
    assert caught.value.status == 403
    for bad in ({"x-amm-priority": "urgent"}, {"x-amm-max-cost-usd": "lots"},
                {"x-amm-min-quality": "2"}, {"x-amm-timeout-s": "nan"}, {"x-amm-cache": "maybe"},
                {"x-amm-agent-type": " "}):
        with pytest.raises(GatewayRefusal) as caught:
            r.request(wire("auto"), gkey(), bad, "r")
        assert caught.value.status == 400 and caught.value.param is not None
    with pytest.raises(InvalidInput):  # the request's own validation, naming the field
        r.request(WireRequest("auto", {"messages": [{"role": "user", "content": "x"}],
                                       "max_tokens": -1}), gkey(), {}, "r")


# -- errors, metrics, shares ----------------------------------------------------------------------
@pytest.mark.parametrize("exc, status, code, retry", [
    (InvalidInput("bad", field="messages"), 400, "invalid_request", None),
    (NoEligibleModel("none"), 400, "no_eligible_model", None),
    (BudgetExceeded("over", retry_after_s=12.2), 429, "budget_exceeded", "13"),
    (RateLimitExceeded("slow down"), 429, "rate_limit_exceeded", "1"),
    (AllCandidatesFailed("x", errors=["server_error", "rate_limited"]), 502, "all_candidates_failed", None),
    (AllCandidatesFailed("x", errors=["rate_limited", "overloaded"]), 503, "all_candidates_busy", "1"),
    (SpoolUnavailable("disk"), 503, "spool_unavailable", "1"),
    (ContextWindowExceeded("long"), 400, "context_length_exceeded", None),
    (ProviderTimeout("slow"), 504, "timeout", None),
    (KeyError("secret text"), 500, "internal", None),
])
def test_the_error_table(exc: BaseException, status: int, code: str, retry: str | None) -> None:
    error = http_error(exc)
    assert (error.status, error.code, error.headers().get("retry-after")) == (status, code, retry)
    assert "secret text" not in error.message
    assert failure_kind(exc) == getattr(exc, "error_kind", type(exc).__name__)


def test_metrics_render_prometheus_text() -> None:
    metrics = Metrics()
    metrics.observe("messages", "k\"1", "m", 200, 0.03, Decimal("0.5"))
    metrics.observe("messages", "k\"1", "m", 429, 0.001, failure="budget_exceeded")
    budget = BudgetStatus(scope="agent_type", key="coder", window="day",
                          window_start=datetime(2026, 1, 1, tzinfo=UTC), limit_usd=Decimal("2"),
                          spent_usd=Decimal("0.5"), reserved_usd=Decimal("0.25"), share=0.25)
    text = metrics.render([], [budget])
    assert 'key="k\\"1"' in text
    assert 'amm_gateway_request_duration_seconds_bucket{pid="' in text
    buckets = [line for line in text.splitlines() if "_bucket" in line]
    assert buckets[0].endswith(" 1") and buckets[-1].endswith(" 2")  # cumulative, +Inf last
    labels = f'pid="{metrics.pid}",scope="agent_type",key="coder",window="day"'
    assert f"amm_budget_headroom_usd{{{labels}}} 1.25" in text
    assert text.count("# TYPE amm_gateway_requests_total counter") == 1


def test_header_text_is_one_printable_line() -> None:
    assert header_text("a − b × c\nd ≥ é") == "a - b x c?d >= ?"
    assert len(header_text("x" * 2000)) == 512


def test_one_workers_share_of_every_limit() -> None:
    config = demo_config()
    half = share_of(config, 0.5)
    assert share_of(config, 1.0) is config
    for whole, part in zip(config.models, half.models, strict=True):
        assert part.rate_limits.requests_per_minute == max(1, whole.rate_limits.requests_per_minute // 2)
    assert [lim.limit_usd for lim in half.settings.budgets.limits] == [
        lim.limit_usd / 2 for lim in config.settings.budgets.limits]
    assert half.settings.concurrency.max_in_flight == config.settings.concurrency.max_in_flight // 2
    event = RequestCompleted(request_id="r", agent_type="a", model_id="m", provider="p", attempts=1,
                             latency_ms=1.0, cost_usd=Decimal("0.3"))
    assert scaled_spend([event], 0.5)[0].cost_usd == Decimal("0.15")
