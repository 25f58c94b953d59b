"""The gateway's HTTP layer in process (no socket: httpx's ASGI transport), on the real
standalone engine (``LocalEngine``: the router on local cores, the spool in a temporary folder)
with scripted provider adapters: status codes, the SDKs' body and stream shapes, headers, key
limits, the events every request leaves, and metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_model_management._clock import ManualClock
from api_model_management._request import ToolCall
from api_model_management.config import RegistryConfig, config_from_dict, demo_config, override
from api_model_management.errors import ProviderServerError
from api_model_management.events._ingest import SpoolIngestor, read_all_events
from api_model_management.gateway import Gateway, KeyLimits, KeyRing, LocalEngine, new_key
from api_model_management.gateway._wire import header_text

from _fakes import GOOD_ANSWER, FakeAdapter, Streamed, fake_adapters, ok

pytestmark = pytest.mark.unit

PROMPT = "Explain what a hash map is and when to use one."
KEY, KEY_HASH = new_key()
CAPPED, CAPPED_HASH = new_key()


def registry(tmp_path: Path, **gateway: Any) -> RegistryConfig:
    keys = [{"name": "dev", "key_sha256": KEY_HASH, "agent_type": "coder"},
            {"name": "capped", "key_sha256": CAPPED_HASH, "requests_per_minute": 2,
             "budget_usd": "0.01", "allowed_models": ["gpt-4.1-mini", "gpt-4o-mini"],
             "allow_overrides": False}]
    return override(demo_config(), settings={
        "data_dir": str(tmp_path / "data"), "store_prompts": False,
        "gateway": {"keys": keys, "aliases": {"auto:cheap": {
            "constraints": {"max_cost_per_request": "0.002"}}}, **gateway}})


class Served:
    """A gateway on LocalEngine with fake adapters, and a client speaking to it in process."""

    def __init__(self, config: RegistryConfig, adapters: dict[str, FakeAdapter]) -> None:
        env = {p.api_key_env: "provider-key" for p in config.providers.values() if p.api_key_env}
        self.config = config
        self.adapters = adapters
        self.engine = LocalEngine(config, env=env, probe=False, adapters=adapters)
        #: the keys' clock (their requests-per-minute windows)
        self.key_clock = ManualClock()
        self.gateway = Gateway(config, self.engine, keys=KeyRing(config.settings.gateway.keys, {}),
                               limits=KeyLimits(config.settings.gateway.keys,
                                                clock=self.key_clock))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(self.gateway.app),
                                        base_url="http://gateway")

    async def post(self, path: str, body: Any, key: str | None = KEY, **headers: str) -> httpx.Response:
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return await self.client.post(path, json=body, headers=headers)

    def events(self) -> list[Any]:
        self.engine.manager.spool.rotate()
        SpoolIngestor(self.config.settings.data_dir).ingest()
        return read_all_events(self.config.settings.data_dir)

    async def close(self) -> None:
        await self.client.aclose()
        await self.engine.aclose()


def run(tmp_path: Path, scenario: Callable[[Served], Awaitable[None]], *,
        adapters: dict[str, FakeAdapter] | None = None, **gateway: Any) -> Served:
    """Run ``scenario`` against a fresh gateway (closed after it); returns the gateway."""
    config = registry(tmp_path, **gateway)
    served = Served(config, adapters or fake_adapters(config))

    async def main() -> None:
        await served.engine.start()
        try:
            await scenario(served)
        finally:
            await served.close()

    asyncio.run(main())
    return served


def chat(model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}


def sse(text: str) -> list[Any]:
    return [json.loads(line[6:]) if line[6:] != "[DONE]" else "[DONE]"
            for line in text.splitlines() if line.startswith("data: ")]


def terminal(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events if type(e).__name__ in ("RequestCompleted", "RequestFailed")]


# -- OpenAI ---------------------------------------------------------------------------------------
def test_a_chat_completion_in_openais_shape_with_the_routing_headers(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["reply"] = await s.post("/v1/chat/completions", chat("gpt-4.1-mini"))

    served = run(tmp_path, scenario)
    reply = seen["reply"]
    body = reply.json()
    assert reply.status_code == 200
    request_id = reply.headers["x-amm-request-id"]
    assert body["id"] == f"chatcmpl-{request_id}" and body["object"] == "chat.completion"
    assert body["model"] == reply.headers["x-amm-model"] == "gpt-4.1-mini"
    assert isinstance(body["created"], int) and body["system_fingerprint"].startswith("fp_amm_")
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": GOOD_ANSWER, "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 50, "total_tokens": 62,
                             "prompt_tokens_details": {"cached_tokens": 0}}
    completed = [e for e in served.events() if type(e).__name__ == "RequestCompleted"]
    assert [e.request_id for e in completed] == [request_id]
    assert completed[0].agent_type == "coder"  # the key's agent type
    assert Decimal(reply.headers["x-amm-cost-usd"]) == completed[0].cost_usd > 0
    assert reply.headers["x-amm-selection-reason"].startswith("pinned gpt-4.1-mini (fallbacks: ")


def test_a_streamed_chat_completion_ends_with_the_usage_chunk(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["reply"] = await s.post("/v1/chat/completions", chat(
            "gpt-4.1-mini", stream=True, stream_options={"include_usage": True}))
        seen["plain"] = await s.post("/v1/chat/completions", chat("gpt-4.1-mini", stream=True))

    served = run(tmp_path, scenario)
    reply = seen["reply"]
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    chunks = sse(reply.text)
    assert chunks[-1] == "[DONE]"
    first, *middle, finish, usage = chunks[:-1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == GOOD_ANSWER
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 62
    assert all(c["usage"] is None for c in [first, *middle, finish])
    # the stream's routing headers, and its cost at the end (as the log settled it)
    reason = reply.headers["x-amm-selection-reason"]
    assert reason.startswith("pinned gpt-4.1-mini (fallbacks: ")
    completed = {e.request_id: e for e in served.events() if type(e).__name__ == "RequestCompleted"}
    logged = completed[reply.headers["x-amm-request-id"]]
    assert logged.cost_usd > 0 and usage["usage"]["cost_usd"] == pytest.approx(float(logged.cost_usd))
    selected = [e for e in served.events() if type(e).__name__ == "ModelSelected"
                and e.request_id == logged.request_id]
    assert [header_text(e.reason) for e in selected] == [reason]  # cut to a header's length
    assert {c["id"] for c in chunks[:-1]} == {f"chatcmpl-{reply.headers['x-amm-request-id']}"}
    assert all(c["model"] == reply.headers["x-amm-model"] == "gpt-4.1-mini" for c in chunks[:-1])
    without = sse(seen["plain"].text)
    assert "usage" not in without[-2] and without[-2]["choices"][0]["finish_reason"] == "stop"
    assert terminal(served.events()) == ["RequestCompleted", "RequestCompleted"]


def test_tool_calls_plain_and_streamed(tmp_path: Path) -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')
    config = registry(tmp_path)
    adapters = fake_adapters(config)
    answer = ok("", finish_reason="tool_calls", tool_calls=(call,))
    adapters["openai"].script("gpt-4.1-mini", answer, answer)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["plain"] = await s.post("/v1/chat/completions", chat("gpt-4.1-mini", tools=tools))
        seen["stream"] = await s.post("/v1/chat/completions", chat("gpt-4.1-mini", tools=tools,
                                                                   stream=True))

    run(tmp_path, scenario, adapters=adapters)
    message = seen["plain"].json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["tool_calls"] == [call.to_openai()]
    sent = adapters["openai"].calls_to("gpt-4.1-mini")[0].request
    assert sent is not None and sent.tool_names() == ("get_weather",)
    chunks = sse(seen["stream"].text)
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks[:-1]
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls == [[{"index": 0, **call.to_openai()}]]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_unknown_fields_are_ignored_and_named_unsupported_ones_refused(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["extra"] = await s.post("/v1/chat/completions", chat(
            "gpt-4.1-mini", frobnicate=True, user="u-1", messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": PROMPT, "name": "ann"}]))
        seen["n"] = await s.post("/v1/chat/completions", chat(n=2))
        seen["logprobs"] = await s.post("/v1/chat/completions", chat(logprobs=True))

    run(tmp_path, scenario)
    assert seen["extra"].status_code == 200
    assert seen["extra"].headers["x-amm-ignored-fields"] == "frobnicate"
    for name in ("n", "logprobs"):
        error = seen[name].json()["error"]
        assert seen[name].status_code == 400 and error["param"] == name
        assert error["code"] == "unsupported_parameter"


# -- Anthropic ------------------------------------------------------------------------------------
def test_a_message_in_anthropics_shape_plain_and_streamed(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}
    body = {"model": "claude-haiku-4-5", "max_tokens": 300, "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]}

    async def scenario(s: Served) -> None:
        seen["plain"] = await s.post("/v1/messages", body, key=None, **{"x-api-key": KEY})
        seen["stream"] = await s.post("/v1/messages", {**body, "stream": True}, key=None,
                                      **{"x-api-key": KEY})

    served = run(tmp_path, scenario)
    message = seen["plain"].json()
    assert message["id"] == f"msg_{seen['plain'].headers['request-id']}"
    assert message["type"] == "message" and message["model"] == "claude-haiku-4-5"
    assert message["content"] == [{"type": "text", "text": GOOD_ANSWER}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == 12 and message["usage"]["output_tokens"] == 50
    sent = served.adapters["anthropic"].calls_to("claude-haiku-4-5")[0].request
    assert sent is not None and sent.system_prompt() == "Be brief." and sent.max_tokens == 300
    lines = seen["stream"].text.splitlines()
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    data = sse(seen["stream"].text)
    assert "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta") == GOOD_ANSWER
    assert data[-2]["delta"]["stop_reason"] == "end_turn" and data[-2]["usage"]["output_tokens"] == 50
    stream = seen["stream"]
    assert stream.headers["x-amm-model"] == "claude-haiku-4-5"
    assert stream.headers["x-amm-selection-reason"].startswith("pinned claude-haiku-4-5")
    completed = {e.request_id: e for e in served.events() if type(e).__name__ == "RequestCompleted"}
    cost = completed[stream.headers["x-amm-request-id"]].cost_usd
    assert cost > 0 and data[-2]["usage"]["cost_usd"] == pytest.approx(float(cost))


def test_a_pinned_model_fails_over_to_its_fallbacks(tmp_path: Path) -> None:
    """``model`` = a registry id: the pin serves; when its call fails its fallbacks do, in order,
    for plain and streamed replies; the headers say which model served and why."""
    data = registry(tmp_path).model_dump(mode="python")
    for model in data["models"]:
        if model["id"] == "gpt-4.1-mini":
            model["fallbacks"] = ["claude-haiku-4-5", "gemini-2.5-flash"]
    config = config_from_dict(data, source="test")
    adapters = fake_adapters(config)
    adapters["openai"].script("gpt-4.1-mini", ProviderServerError("502", http_status=502),
                              ProviderServerError("502", http_status=502))
    served = Served(config, adapters)
    seen: dict[str, httpx.Response] = {}

    async def main() -> None:
        await served.engine.start()
        try:
            seen["plain"] = await served.post("/v1/chat/completions", chat("gpt-4.1-mini"))
            seen["stream"] = await served.post("/v1/chat/completions", chat(
                "gpt-4.1-mini", stream=True, stream_options={"include_usage": True}))
        finally:
            await served.close()

    asyncio.run(main())
    events = served.events()
    for reply in seen.values():
        assert reply.status_code == 200
        assert reply.headers["x-amm-model"] == "claude-haiku-4-5"
        assert reply.headers["x-amm-selection-reason"].startswith(
            "pinned gpt-4.1-mini (fallbacks: claude-haiku-4-5, gemini-2.5-flash): ")
        request_id = reply.headers["x-amm-request-id"]
        hops = [(e.from_model_id, e.to_model_id) for e in events
                if type(e).__name__ == "FailoverTriggered" and e.request_id == request_id]
        assert hops == [("gpt-4.1-mini", "claude-haiku-4-5")]
    assert seen["plain"].json()["model"] == "claude-haiku-4-5"
    chunks = sse(seen["stream"].text)
    assert {c["model"] for c in chunks[:-1]} == {"claude-haiku-4-5"}
    assert chunks[-2]["usage"]["cost_usd"] > 0


def test_anthropic_tool_use_round_trip(tmp_path: Path) -> None:
    config = registry(tmp_path)
    adapters = fake_adapters(config)
    call = ToolCall(id="toolu_2", name="lookup", arguments='{"q": "hash map"}')
    adapters["anthropic"].script("claude-haiku-4-5",
                                 ok("Let me look.", finish_reason="tool_calls", tool_calls=(call,)))
    seen: dict[str, httpx.Response] = {}
    body = {"model": "claude-haiku-4-5", "max_tokens": 200,
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": PROMPT},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"},
                    {"type": "text", "text": "go on"}]}]}

    async def scenario(s: Served) -> None:
        seen["reply"] = await s.post("/v1/messages", body)

    run(tmp_path, scenario, adapters=adapters)
    reply = seen["reply"].json()
    assert reply["stop_reason"] == "tool_use"
    assert reply["content"] == [{"type": "text", "text": "Let me look."},
                                {"type": "tool_use", "id": "toolu_2", "name": "lookup",
                                 "input": {"q": "hash map"}}]
    sent = adapters["anthropic"].calls_to("claude-haiku-4-5")[0].request
    assert sent is not None
    assert [m.role for m in sent.messages or ()] == ["user", "assistant", "tool", "user"]
    assert sent.tool_choice == "required" and sent.parallel_tool_calls is False


# -- refusals -------------------------------------------------------------------------------------
def test_errors_in_each_sdks_shape(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["no key"] = await s.post("/v1/chat/completions", chat(), key=None)
        seen["wrong key"] = await s.post("/v1/messages", {"model": "auto"}, key="amm-wrong")
        seen["malformed"] = await s.client.post("/v1/chat/completions", content=b'{"model": ',
                                                headers={"authorization": f"Bearer {KEY}"})
        seen["no messages"] = await s.post("/v1/chat/completions", {"model": "auto"})
        seen["bad field"] = await s.post("/v1/chat/completions", chat(temperature=7))
        seen["unknown model"] = await s.post("/v1/chat/completions", chat("gpt-9"))
        seen["not allowed"] = await s.post("/v1/chat/completions", chat("gpt-4.1"), key=CAPPED)
        seen["override"] = await s.post("/v1/chat/completions", chat(), key=CAPPED,
                                        **{"x-amm-agent-type": "research"})
        seen["no max_tokens"] = await s.post("/v1/messages", {"model": "auto", "messages": []})

    run(tmp_path, scenario)
    expect = {"no key": (401, "invalid_api_key"), "wrong key": (401, None),
              "malformed": (400, "invalid_json"), "no messages": (400, None),
              "bad field": (400, "invalid_request"), "unknown model": (404, "model_not_found"),
              "not allowed": (403, "model_not_allowed"), "override": (403, None),
              "no max_tokens": (400, None)}
    for name, (status, code) in expect.items():
        assert seen[name].status_code == status, name
        if code is not None:
            assert seen[name].json()["error"]["code"] == code, name
    assert seen["wrong key"].json() == {"type": "error", "error": {
        "type": "authentication_error", "message": seen["wrong key"].json()["error"]["message"]}}
    assert seen["bad field"].json()["error"]["param"] == "parameters.temperature"
    assert seen["no max_tokens"].json()["error"]["type"] == "invalid_request_error"
    assert all(KEY not in r.text and PROMPT not in r.text for r in seen.values())


def test_an_oversized_body_is_refused_with_413_before_it_is_read(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}
    big = chat(messages=[{"role": "user", "content": "x" * 5000}])

    async def scenario(s: Served) -> None:
        seen["declared"] = await s.post("/v1/chat/completions", big)

        async def chunks() -> Any:
            yield json.dumps(big).encode()

        seen["chunked"] = await s.client.post("/v1/messages", content=chunks(),
                                              headers={"x-api-key": KEY})

    run(tmp_path, scenario, max_body_bytes=4096)
    assert seen["declared"].status_code == seen["chunked"].status_code == 413
    assert seen["declared"].json()["error"]["code"] == "request_too_large"
    assert seen["chunked"].json()["error"]["type"] == "request_too_large"


def test_a_keys_rate_limit_and_budget_are_429_with_retry_after(tmp_path: Path) -> None:
    seen: dict[str, list[httpx.Response]] = {"rpm": [], "budget": []}

    async def scenario(s: Served) -> None:
        for _ in range(3):
            seen["rpm"].append(await s.post("/v1/chat/completions", chat(max_tokens=16), key=CAPPED))
        # a fresh budget check: the worst case of 100k output tokens passes the $0.01 budget
        s.key_clock.advance(60)  # the key's minute has passed
        seen["budget"].append(await s.post("/v1/chat/completions", chat(max_tokens=100_000),
                                           key=CAPPED))

    served = run(tmp_path, scenario)
    assert [r.status_code for r in seen["rpm"]] == [200, 200, 429]
    limited = seen["rpm"][2]
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    budget = seen["budget"][0]
    assert budget.status_code == 429 and budget.json()["error"]["code"] == "budget_exceeded"
    assert int(budget.headers["retry-after"]) >= 1
    assert terminal(served.events()) == ["RequestCompleted", "RequestCompleted"]  # none for refusals
    status = {k.name: k for k in served.gateway.limits.status()}["capped"]
    assert status.reserved_usd == 0 and status.spent_usd > 0


def test_failures_map_to_502_and_503_and_a_failed_stream_to_an_http_error(tmp_path: Path) -> None:
    from api_model_management.errors import RateLimited

    data = registry(tmp_path).model_dump(mode="python")
    for model in data["models"]:
        model["fallbacks"] = []  # a pin alone: its own failure is the answer
    config = config_from_dict(data, source="test")
    adapters = fake_adapters(config)
    adapters["openai"].script("gpt-4.1", ProviderServerError("boom", http_status=500),
                              ProviderServerError("boom", http_status=500))
    adapters["openai"].script("gpt-4o-mini", RateLimited("busy", retry_after_s=3.0))
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["failed"] = await s.post("/v1/chat/completions", chat("gpt-4.1"))
        seen["busy"] = await s.post("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 50,
                                                     "messages": [{"role": "user", "content": PROMPT}]})
        seen["stream"] = await s.post("/v1/chat/completions", chat("gpt-4.1", stream=True))

    served = Served(config, adapters)

    async def main() -> None:
        await served.engine.start()
        try:
            await scenario(served)
        finally:
            await served.close()

    asyncio.run(main())
    assert seen["failed"].status_code == 502
    assert seen["failed"].json()["error"]["code"] == "all_candidates_failed"
    assert seen["busy"].status_code == 503 and seen["busy"].headers["retry-after"] == "1"
    assert seen["busy"].json()["error"]["type"] == "overloaded_error"
    assert seen["stream"].status_code == 502 and seen["stream"].headers["content-type"] == "application/json"
    assert terminal(served.events()) == ["RequestFailed"] * 3


def test_a_stream_failing_after_text_ends_with_an_error_event(tmp_path: Path) -> None:
    config = registry(tmp_path)
    adapters = fake_adapters(config)
    adapters["openai"].script("gpt-4.1-mini", Streamed(("Hash ", "maps "),
                                                       ProviderServerError("cut", http_status=500)))
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["reply"] = await s.post("/v1/chat/completions", chat("gpt-4.1-mini", stream=True))

    served = run(tmp_path, scenario, adapters=adapters)
    chunks = sse(seen["reply"].text)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Hash maps "
    assert chunks[-1]["error"]["code"] == "stream_interrupted"
    failed = [e for e in served.events() if type(e).__name__ == "RequestFailed"]
    assert [e.error_kind for e in failed] == ["stream_interrupted"]
    assert terminal(served.events()) == ["RequestFailed"]


# -- models, feedback, health, metrics ------------------------------------------------------------
def test_the_model_list_in_both_shapes(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        auth = {"authorization": f"Bearer {KEY}"}
        seen["openai"] = await s.client.get("/v1/models", headers=auth)
        seen["capped"] = await s.client.get("/v1/models", headers={"authorization": f"Bearer {CAPPED}"})
        seen["anthropic"] = await s.client.get("/v1/models", headers={
            "x-api-key": KEY, "anthropic-version": "2023-06-01"})
        seen["no key"] = await s.client.get("/v1/models")

    served = run(tmp_path, scenario)
    ids = [m["id"] for m in seen["openai"].json()["data"]]
    assert ids == [m.id for m in served.config.models] + ["auto", "auto:cheap"]
    assert [m["id"] for m in seen["capped"].json()["data"]] == ["gpt-4.1-mini", "gpt-4o-mini",
                                                               "auto", "auto:cheap"]
    anthropic = seen["anthropic"].json()
    assert anthropic["data"][0]["type"] == "model" and anthropic["has_more"] is False
    assert anthropic["first_id"] == ids[0] and anthropic["last_id"] == "auto:cheap"
    assert seen["no key"].status_code == 401


def test_feedback_over_http(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        reply = await s.post("/v1/chat/completions", chat("gpt-4.1-mini"))
        answer_id = reply.json()["id"]
        seen["first"] = await s.post("/v1/feedback", {"request_id": answer_id, "score": 0.9})
        seen["again"] = await s.post("/v1/feedback", {"request_id": answer_id, "score": 0.2})
        seen["unknown"] = await s.post("/v1/feedback", {"request_id": "nope", "score": 0.5})
        seen["bad score"] = await s.post("/v1/feedback", {"request_id": answer_id, "score": 3})
        seen["no key"] = await s.post("/v1/feedback", {"request_id": answer_id, "score": 1}, key=None)

    served = run(tmp_path, scenario)
    assert seen["first"].json()["recorded"] is True and seen["again"].json()["recorded"] is False
    assert seen["unknown"].status_code == 404 and seen["bad score"].status_code == 400
    assert seen["bad score"].json()["error"]["param"] == "score"
    assert seen["no key"].status_code == 401
    feedback = [e for e in served.events() if type(e).__name__ == "FeedbackRecorded"]
    assert [(e.score, e.source, e.model_id) for e in feedback] == [(0.9, "user", "gpt-4.1-mini")]


def test_health_says_which_providers_are_usable(tmp_path: Path) -> None:
    seen: dict[str, httpx.Response] = {}

    async def scenario(s: Served) -> None:
        seen["ok"] = await s.client.get("/health")

    run(tmp_path, scenario)
    body = seen["ok"].json()
    assert seen["ok"].status_code == 200 and body["ready"] is True and body["mode"] == "standalone"
    # nothing probed or called yet: unknown, which counts as usable
    assert body["providers"] == dict.fromkeys(("openai", "anthropic", "google", "ollama"), "unknown")

    # every provider needs a key and none is set: none is usable
    config = override(registry(tmp_path), providers={"ollama": {"api_key_env": "OLLAMA_KEY"}})
    engine = LocalEngine(config, env={}, probe=False)
    gateway = Gateway(config, engine, keys=KeyRing(config.settings.gateway.keys, {}),
                      limits=KeyLimits(config.settings.gateway.keys))

    async def down() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway.app),
                                     base_url="http://gateway") as client:
            try:
                return await client.get("/health")
            finally:
                await engine.aclose()

    reply = asyncio.run(down())
    assert reply.status_code == 503 and reply.json()["ready"] is False
    assert set(reply.json()["providers"].values()) == {"unhealthy"}


def test_metrics_count_requests_failures_latency_cost_and_headroom(tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    async def scenario(s: Served) -> None:
        await s.post("/v1/chat/completions", chat("gpt-4.1-mini"))
        await s.post("/v1/chat/completions", chat("gpt-4.1-mini"), key=CAPPED)
        await s.post("/v1/chat/completions", chat("gpt-9"))
        seen["text"] = (await s.client.get("/metrics")).text

    run(tmp_path, scenario)
    lines = seen["text"].splitlines()

    def value(prefix: str) -> float:
        matches = [line for line in lines if line.startswith(prefix)]
        assert len(matches) == 1, prefix
        return float(matches[0].rsplit(" ", 1)[1])

    ok_line = [x for x in lines if x.startswith("amm_gateway_requests_total") and 'key="dev"'
               in x and 'status="200"' in x]
    assert len(ok_line) == 1 and ok_line[0].endswith(" 1")
    assert any(x.startswith("amm_gateway_failures_total") and 'kind="not_found"' in x for x in lines)
    assert value("amm_gateway_request_duration_seconds_count") == 3
    assert any(x.startswith("amm_gateway_cost_usd_total") and 'key="capped"' in x for x in lines)
    assert value("amm_gateway_key_budget_limit_usd") == 0.01
    headroom = value("amm_gateway_key_budget_headroom_usd")
    spent = value("amm_gateway_key_spent_usd")
    assert 0 < spent and abs(headroom + spent - 0.01) < 1e-9
    assert any(x.startswith("amm_budget_headroom_usd") and 'scope="global"' in x for x in lines)
    assert KEY not in seen["text"] and CAPPED not in seen["text"]


class _SlowStream:
    """A provider that streams one delta, then nothing until it is cancelled."""

    def __init__(self) -> None:
        self.cancelled = False

    async def complete(self, request: Any, model: Any, *, timeout_s: float | None = None) -> Any:
        raise AssertionError("only streams here")

    async def stream(self, request: Any, model: Any, *, timeout_s: float | None = None) -> Any:
        from api_model_management._request import StreamChunk

        try:
            yield StreamChunk(delta="Hash ", model_id=model.id)
            await asyncio.sleep(3600)
        except BaseException:
            self.cancelled = True
            raise

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_client_going_away_mid_stream_cancels_the_call(tmp_path: Path, spec_version: str) -> None:
    config = registry(tmp_path)
    slow = _SlowStream()
    adapters: dict[str, Any] = {**fake_adapters(config), "openai": slow}
    body = json.dumps(chat("gpt-4.1-mini", stream=True)).encode()
    sent: list[dict[str, Any]] = []

    async def scenario(s: Served) -> None:
        got_text = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await got_text.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if b"Hash" in message.get("body", b""):
                got_text.set()

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version},
                 "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
                 "server": ("gateway", 80),
                 "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                             (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        await asyncio.wait_for(s.gateway.app(scope, receive, send), 10)
        assert s.gateway.metrics.in_flight == 0

    served = run(tmp_path, scenario, adapters=adapters)
    assert slow.cancelled
    assert sent[0]["status"] == 200 and not any(m.get("more_body") is False for m in sent[1:])
    failed = [e for e in served.events() if type(e).__name__ == "RequestFailed"]
    assert [e.error_kind for e in failed] == ["cancelled"]
    assert terminal(served.events()) == ["RequestFailed"]
    assert any('status="499"' in line for line in served.gateway.metrics.render([], []).splitlines())


def test_feedback_for_a_request_another_worker_answered_is_found_in_the_log(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def answer(s: Served) -> None:
        seen["id"] = (await s.post("/v1/chat/completions", chat("gpt-4.1-mini"))).json()["id"]

    first = run(tmp_path, answer)
    first.events()  # its spool ingested into the log, as the server's ingestion does

    async def feedback(s: Served) -> None:  # another worker: it never saw the request
        seen["other"] = await s.post("/v1/feedback", {"request_id": seen["id"], "score": 0.7})
        seen["again"] = await s.post("/v1/feedback", {"request_id": seen["id"], "score": 0.7})
        seen["judge"] = await s.post("/v1/feedback", {"request_id": seen["id"], "score": 0.4,
                                                      "source": "judge"})

    second = run(tmp_path, feedback)
    assert [seen[k].json()["recorded"] for k in ("other", "again", "judge")] == [True, False, True]
    recorded = [e for e in second.events() if type(e).__name__ == "FeedbackRecorded"]
    assert sorted((e.source, e.model_id) for e in recorded) == [("judge", "gpt-4.1-mini"),
                                                                ("user", "gpt-4.1-mini")]


def test_a_plain_request_cancelled_by_a_stopping_server_releases_its_hold(tmp_path: Path) -> None:
    config = registry(tmp_path)
    adapters = fake_adapters(config)
    adapters["openai"].hold = asyncio.Event()  # the provider never answers

    async def scenario(s: Served) -> None:
        call = asyncio.ensure_future(s.post("/v1/chat/completions", chat("gpt-4.1-mini"), key=CAPPED))
        while not adapters["openai"].in_flight:
            await asyncio.sleep(0.01)
        assert s.gateway.limits.status()[1].reserved_usd > 0
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert s.gateway.metrics.in_flight == 0
        assert s.gateway.limits.status()[1].reserved_usd == 0

    served = run(tmp_path, scenario, adapters=adapters)
    failed = [e for e in served.events() if type(e).__name__ == "RequestFailed"]
    assert [e.error_kind for e in failed] == ["cancelled"]
