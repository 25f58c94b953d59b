"""The emulator over real loopback HTTP: formats, auth, rate limits, faults, outages, traces."""

from __future__ import annotations

import asyncio
import csv
import re
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import orjson
import pytest

from api_model_management.emulator import Profile, parse_profile
from api_model_management.emulator._client import chat_request
from api_model_management.emulator._data import shared_data_dir
from api_model_management.emulator.testing import EmulatorServer

pytestmark = pytest.mark.integration

PROVIDERS = ["openai", "anthropic", "gemini", "ollama"]
PROMPT = "Explain how photosynthesis converts sunlight into chemical energy in plants"
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s)?$|^\d+ms$")
DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="shared data folder (../shared/data or $AMM_SHARED_DATA) is absent")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def call(emu: EmulatorServer, client: httpx.Client, provider: str, prompt: str = PROMPT,
         fault: str | None = None, timeout: float = 5, **kwargs) -> httpx.Response:
    path, headers, body = chat_request(provider, prompt, **kwargs)
    if fault:
        headers["x-emulator-fault"] = fault
    return client.post(emu.base_url + path, headers=headers, json=body, timeout=timeout)


def text_of(provider: str, body: dict) -> str:
    if provider == "openai":
        return body["choices"][0]["message"]["content"]
    if provider == "anthropic":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    if provider == "gemini":
        return "".join(p["text"] for p in body["candidates"][0]["content"]["parts"])
    return body["message"]["content"]


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    events = []
    for block in re.split(r"\r?\n\r?\n", raw.strip()):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        events.append((name, "\n".join(data)))
    return events


def streamed_text(provider: str, raw: str) -> str:
    if provider == "ollama":
        return "".join(orjson.loads(line)["message"]["content"] for line in raw.splitlines())
    parts = []
    for name, data in sse_events(raw):
        if data == "[DONE]" or not data:
            continue
        payload = orjson.loads(data)
        if provider == "openai" and payload["choices"]:
            parts.append(payload["choices"][0]["delta"].get("content") or "")
        elif provider == "anthropic" and name == "content_block_delta":
            parts.append(payload["delta"]["text"])
        elif provider == "gemini":
            parts.append(payload["candidates"][0]["content"]["parts"][0]["text"])
    return "".join(parts)


# ------------------------------------------------------------------------------------ success


def test_openai_success_body_and_headers(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "openai")
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == (len(PROMPT) + 3) // 4
    assert r.headers["x-request-id"].startswith("req_")
    assert int(r.headers["x-ratelimit-remaining-requests"]) < int(r.headers["x-ratelimit-limit-requests"])
    assert GO_DURATION.match(r.headers["x-ratelimit-reset-requests"])
    assert GO_DURATION.match(r.headers["x-ratelimit-reset-tokens"])


def test_anthropic_success_body_and_headers(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "anthropic")
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("msg_") and body["type"] == "message"
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    assert r.headers["request-id"].startswith("req_")
    reset = datetime.fromisoformat(r.headers["anthropic-ratelimit-requests-reset"])
    assert reset.tzinfo is not None
    assert int(r.headers["anthropic-ratelimit-tokens-remaining"]) > 0


def test_gemini_success_body(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "gemini")
    assert r.status_code == 200
    body = r.json()
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["candidates"][0]["content"]["role"] == "model"
    meta = body["usageMetadata"]
    assert meta["totalTokenCount"] == meta["promptTokenCount"] + meta["candidatesTokenCount"]
    assert body["responseId"] and body["modelVersion"] == "gemini-2.5-flash"


def test_gemini_accepts_key_in_query(emulator: EmulatorServer, client: httpx.Client) -> None:
    path, _, body = chat_request("gemini", PROMPT)
    r = client.post(f"{emulator.base_url}{path}?key=sk-test", json=body)
    assert r.status_code == 200


def test_ollama_success_body(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "ollama")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["eval_count"] > 0 and body["prompt_eval_count"] > 0
    assert body["total_duration"] > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_answers_are_deterministic_and_restate_the_prompt(
    emulator: EmulatorServer, client: httpx.Client, provider: str
) -> None:
    first = text_of(provider, call(emulator, client, provider).json())
    again = text_of(provider, call(emulator, client, provider).json())
    other = text_of(provider, call(emulator, client, provider, model="another-model").json())
    assert first == again and first != other
    assert len(re.findall(r"[.!?](\s|$)", first)) >= 3
    restated = {w for w in ("photosynthesis", "sunlight", "chemical", "energy", "plants", "converts")
                if w in first.lower()}
    assert len(restated) >= 2


@pytest.mark.parametrize(("provider", "finish"), [
    ("openai", ("choices", 0, "finish_reason", "length")),
    ("anthropic", ("stop_reason", "max_tokens")),
    ("gemini", ("candidates", 0, "finishReason", "MAX_TOKENS")),
    ("ollama", ("done_reason", "length")),
])
def test_max_tokens_truncates(emulator: EmulatorServer, client: httpx.Client, provider: str,
                              finish: tuple) -> None:
    body = call(emulator, client, provider, max_tokens=5).json()
    value = body
    for key in finish[:-1]:
        value = value[key]
    assert value == finish[-1]
    assert len(text_of(provider, body)) <= 5 * 4


# ------------------------------------------------------------------------------------ streams


def test_openai_stream_format(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "openai", stream=True, include_usage=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "event:" not in r.text
    events = sse_events(r.text)
    assert events[-1][1] == "[DONE]"
    chunks = [orjson.loads(d) for _, d in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    plain = text_of("openai", call(emulator, client, "openai").json())
    assert streamed_text("openai", r.text) == plain


def test_openai_stream_without_include_usage_has_no_usage(emulator: EmulatorServer,
                                                          client: httpx.Client) -> None:
    r = call(emulator, client, "openai", stream=True)
    chunks = [orjson.loads(d) for _, d in sse_events(r.text)[:-1]]
    assert all("usage" not in c for c in chunks) and all(c["choices"] for c in chunks)


def test_anthropic_stream_event_order(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "anthropic", stream=True)
    names = [name for name, _ in sse_events(r.text)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    for name, data in sse_events(r.text):
        assert orjson.loads(data)["type"] == name
    delta = orjson.loads(sse_events(r.text)[-2][1])
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 1
    assert streamed_text("anthropic", r.text) == text_of("anthropic", call(emulator, client, "anthropic").json())


def test_gemini_stream_format(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = call(emulator, client, "gemini", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert all(name is None for name, _ in events) and len(events) > 1
    chunks = [orjson.loads(d) for _, d in events]
    assert len({c["responseId"] for c in chunks}) == 1
    assert "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert streamed_text("gemini", r.text) == text_of("gemini", call(emulator, client, "gemini").json())


def test_gemini_stream_without_alt_sse_is_a_json_array(emulator: EmulatorServer,
                                                       client: httpx.Client) -> None:
    path, headers, body = chat_request("gemini", PROMPT, stream=True)
    r = client.post(emulator.base_url + path.removesuffix("?alt=sse"), headers=headers, json=body)
    assert isinstance(r.json(), list) and r.json()[0]["candidates"][0]["finishReason"] == "STOP"


def test_ollama_streams_ndjson_by_default(emulator: EmulatorServer, client: httpx.Client) -> None:
    path, _, body = chat_request("ollama", PROMPT)
    del body["stream"]
    r = client.post(emulator.base_url + path, json=body)
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"] is True
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] > 0
    assert streamed_text("ollama", r.text) == text_of("ollama", call(emulator, client, "ollama").json())


# ------------------------------------------------------------------------------------ probes


def test_v1_models_is_shared_by_auth_headers(emulator: EmulatorServer, client: httpx.Client) -> None:
    openai = client.get(emulator.base_url + "/v1/models", headers={"authorization": "Bearer k"}).json()
    anthropic = client.get(emulator.base_url + "/v1/models",
                           headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}).json()
    assert openai["object"] == "list" and openai["data"][0]["object"] == "model"
    assert anthropic["has_more"] is False and anthropic["data"][0]["type"] == "model"
    assert client.get(emulator.base_url + "/v1/models").status_code == 401


def test_gemini_and_ollama_probes(emulator: EmulatorServer, client: httpx.Client) -> None:
    models = client.get(emulator.base_url + "/v1beta/models", headers={"x-goog-api-key": "k"}).json()
    assert models["models"][0]["name"].startswith("models/")
    assert client.get(emulator.base_url + "/api/version").json() == {"version": "0.5.1"}
    assert client.get(emulator.base_url + "/api/tags").json()["models"][0]["name"] == "llama3.2:latest"
    root = client.get(emulator.base_url + "/")
    assert root.text == "Ollama is running" and root.headers["content-type"].startswith("text/plain")
    assert client.head(emulator.base_url + "/api/version").status_code == 200


# ------------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(("provider", "key", "status", "check"), [
    ("openai", None, 401, lambda b: b["error"]["code"] == "invalid_api_key"),
    ("openai", "invalid", 401, lambda b: b["error"]["code"] == "invalid_api_key"),
    ("anthropic", None, 401, lambda b: b["error"]["type"] == "authentication_error"),
    ("anthropic", "invalid", 401, lambda b: b["type"] == "error" and b["request_id"].startswith("req_")),
    ("gemini", None, 403, lambda b: b["error"]["status"] == "PERMISSION_DENIED"),
    ("gemini", "invalid", 400, lambda b: b["error"]["status"] == "INVALID_ARGUMENT"
     and b["error"]["details"][0]["reason"] == "API_KEY_INVALID"),
])
def test_auth_failures_are_provider_faithful(emulator: EmulatorServer, client: httpx.Client,
                                             provider: str, key: str | None, status: int, check) -> None:
    r = call(emulator, client, provider, key=key)
    assert r.status_code == status
    assert check(r.json())


def test_empty_openai_bearer_is_rejected(emulator: EmulatorServer, client: httpx.Client) -> None:
    path, _, body = chat_request("openai", PROMPT)
    r = client.post(emulator.base_url + path, json=body, headers={"authorization": "Bearer"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_anthropic_requires_version_and_max_tokens(emulator: EmulatorServer, client: httpx.Client) -> None:
    path, headers, body = chat_request("anthropic", PROMPT)
    no_version = client.post(emulator.base_url + path, json=body, headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"
    del body["max_tokens"]
    no_max = client.post(emulator.base_url + path, json=body, headers=headers)
    assert no_max.status_code == 400 and "max_tokens" in no_max.json()["error"]["message"]


def test_ollama_needs_no_auth_and_valid_keys_restrict(fresh_emulator: EmulatorServer,
                                                      client: httpx.Client) -> None:
    fresh_emulator.set_profile(Profile(valid_keys=["sk-good"]))
    assert call(fresh_emulator, client, "ollama", key=None).status_code == 200
    assert call(fresh_emulator, client, "openai", key="sk-good").status_code == 200
    assert call(fresh_emulator, client, "openai", key="sk-other").status_code == 401
    assert call(fresh_emulator, client, "gemini", key="sk-other").status_code == 400


def test_malformed_request_body_is_a_400(emulator: EmulatorServer, client: httpx.Client) -> None:
    r = client.post(emulator.base_url + "/v1/chat/completions", content=b"{not json",
                    headers={"authorization": "Bearer k", "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# ------------------------------------------------------------------------------------ rate limits


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rpm_limit_answers_429_the_provider_way(fresh_emulator: EmulatorServer, client: httpx.Client,
                                                provider: str) -> None:
    model = "limited-model"
    fresh_emulator.set_profile(parse_profile(
        {"models": {model: {"rate_limits": {"requests_per_minute": 2}}}}))
    for _ in range(2):
        assert call(fresh_emulator, client, provider, model=model).status_code == 200
    r = call(fresh_emulator, client, provider, model=model)
    assert r.status_code == 429
    body = r.json()
    if provider == "openai":
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    elif provider == "anthropic":
        assert body["error"]["type"] == "rate_limit_error"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["anthropic-ratelimit-requests-remaining"] == "0"
    elif provider == "gemini":
        assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
        retry = [d for d in body["error"]["details"] if d["@type"].endswith("RetryInfo")]
        assert re.fullmatch(r"\d+s", retry[0]["retryDelay"])
    else:
        assert isinstance(body["error"], str)
    fresh_emulator.advance(60)
    assert call(fresh_emulator, client, provider, model=model).status_code == 200
    assert fresh_emulator.stats()["models"][model] == {"200": 3, "429": 1}


def test_tpm_limit(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    fresh_emulator.set_profile(parse_profile(
        {"models": {"gpt-4o-mini": {"rate_limits": {"tokens_per_minute": 150}}}}))
    assert call(fresh_emulator, client, "openai").status_code == 200
    r = call(fresh_emulator, client, "openai")
    assert r.status_code == 429 and int(r.headers["x-ratelimit-remaining-tokens"]) < 150


def test_success_headers_count_down(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    fresh_emulator.set_profile(parse_profile(
        {"models": {"gpt-4o-mini": {"rate_limits": {"requests_per_minute": 10}}}}))
    remaining = [int(call(fresh_emulator, client, "openai").headers["x-ratelimit-remaining-requests"])
                 for _ in range(3)]
    assert remaining == [9, 8, 7]


# ------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(("provider", "status", "check"), [
    ("openai", 500, lambda b: b["error"]["type"] == "server_error"),
    ("openai", 503, lambda b: b["error"]["type"] == "server_error"),
    ("anthropic", 529, lambda b: b["error"]["type"] == "overloaded_error"),
    ("anthropic", 500, lambda b: b["error"]["type"] == "api_error"),
    ("gemini", 503, lambda b: b["error"]["status"] == "UNAVAILABLE" and b["error"]["code"] == 503),
    ("ollama", 503, lambda b: b["error"] == "server busy, please try again.  maximum pending requests exceeded"),
])
def test_error_rates_use_provider_bodies(fresh_emulator: EmulatorServer, client: httpx.Client,
                                         provider: str, status: int, check) -> None:
    fresh_emulator.set_profile(parse_profile({"providers": {provider: {"error_rates": {str(status): 1.0}}}}))
    r = call(fresh_emulator, client, provider)
    assert r.status_code == status and check(r.json())


def test_error_rate_is_seeded(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    profile = parse_profile({"seed": 3, "defaults": {"error_rates": {"500": 0.5}}})
    runs = []
    for _ in range(2):
        fresh_emulator.set_profile(profile)
        runs.append([call(fresh_emulator, client, "openai").status_code for _ in range(20)])
    assert runs[0] == runs[1] and {200, 500} == set(runs[0])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_drop_closes_the_connection_without_a_response(fresh_emulator: EmulatorServer,
                                                       client: httpx.Client, provider: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        call(fresh_emulator, client, provider, fault="drop")
    fresh_emulator.set_profile(parse_profile({"defaults": {"drop_rate": 1.0}}))
    with pytest.raises(httpx.RemoteProtocolError):
        call(fresh_emulator, client, provider)
    assert fresh_emulator.stats()["providers"][provider] == {"drop": 1}


def test_hang_lasts_until_the_client_times_out(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        call(fresh_emulator, client, "anthropic", fault="timeout", timeout=0.3)
    assert time.monotonic() - started >= 0.3
    fresh_emulator.set_profile(parse_profile({"models": {"gpt-4o-mini": {"hang_rate": 1.0}}}))
    with pytest.raises(httpx.ReadTimeout):
        call(fresh_emulator, client, "openai", timeout=0.2)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_midstream_error_per_protocol(fresh_emulator: EmulatorServer, client: httpx.Client,
                                      provider: str) -> None:
    if provider == "gemini":
        with pytest.raises(httpx.RemoteProtocolError):
            call(fresh_emulator, client, provider, stream=True, fault="midstream-error")
        return
    r = call(fresh_emulator, client, provider, stream=True, fault="midstream-error")
    assert r.status_code == 200
    if provider == "openai":
        last = sse_events(r.text)[-1]
        assert orjson.loads(last[1])["error"]["type"] == "server_error" and "[DONE]" not in r.text
    elif provider == "anthropic":
        name, data = sse_events(r.text)[-1]
        assert name == "error" and orjson.loads(data)["error"]["type"] == "overloaded_error"
        assert "message_stop" not in r.text
    else:
        last = orjson.loads(r.text.splitlines()[-1])
        assert "error" in last and '"done":true' not in r.text


def test_midstream_error_on_a_plain_request_cuts_the_body(fresh_emulator: EmulatorServer,
                                                          client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        call(fresh_emulator, client, "openai", fault="midstream-error")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_bodies(fresh_emulator: EmulatorServer, client: httpx.Client, provider: str) -> None:
    r = call(fresh_emulator, client, provider, fault="malformed")
    assert r.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)
    fresh_emulator.set_profile(parse_profile({"defaults": {"malformed_rate": 1.0}}))
    streamed = call(fresh_emulator, client, provider, stream=True)
    assert streamed.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        streamed_text(provider, streamed.text)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_header_status_fault(fresh_emulator: EmulatorServer, client: httpx.Client, provider: str) -> None:
    r = call(fresh_emulator, client, provider, fault="status=429")
    assert r.status_code == 429
    bad = call(fresh_emulator, client, provider, fault="explode")
    assert bad.status_code == 400


def test_latency_fixed_delays_the_answer(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    fresh_emulator.set_profile(parse_profile({"defaults": {"latency": {"kind": "fixed", "latency_s": 0.15}}}))
    started = time.monotonic()
    assert call(fresh_emulator, client, "ollama", stream=True).status_code == 200
    assert time.monotonic() - started >= 0.15


# ------------------------------------------------------------------------------------ outages


def test_outage_window_follows_the_emulator_clock(fresh_emulator: EmulatorServer,
                                                  client: httpx.Client) -> None:
    fresh_emulator.set_profile(parse_profile({"providers": {
        "anthropic": {"outages": [{"start_s": 5, "end_s": 20}]},
        "openai": {"outages": [{"start_s": 5, "end_s": 20, "mode": "drop"}]}}}))
    assert call(fresh_emulator, client, "anthropic").status_code == 200
    fresh_emulator.advance(6)
    r = call(fresh_emulator, client, "anthropic")
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    probe = client.get(fresh_emulator.base_url + "/v1/models",
                       headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert probe.status_code == 529
    with pytest.raises(httpx.RemoteProtocolError):
        call(fresh_emulator, client, "openai")
    assert call(fresh_emulator, client, "gemini").status_code == 200
    fresh_emulator.advance(15)
    assert call(fresh_emulator, client, "anthropic").status_code == 200
    assert call(fresh_emulator, client, "openai").status_code == 200


def test_model_outage_with_status(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    fresh_emulator.set_profile(parse_profile({"models": {"gemini-2.5-flash": {
        "outages": [{"start_s": 0, "end_s": 10}]}}}))
    r = call(fresh_emulator, client, "gemini")
    assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"
    assert call(fresh_emulator, client, "gemini", model="gemini-2.5-pro").status_code == 200


def test_strict_models_answer_404(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    fresh_emulator.set_profile(Profile(strict_models=True))
    assert call(fresh_emulator, client, "openai", model="gpt-nope").json()["error"]["code"] == "model_not_found"
    assert call(fresh_emulator, client, "anthropic", model="claude-nope").json()["error"]["type"] == "not_found_error"
    assert call(fresh_emulator, client, "gemini", model="gemini-nope").json()["error"]["status"] == "NOT_FOUND"
    assert call(fresh_emulator, client, "ollama", model="nope").status_code == 404


# ------------------------------------------------------------------------------------ real data


@needs_data
def test_trace_latency_is_replayed(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    trace = orjson.loads((DATA / "llmperf" / "groq_70b.json").read_bytes())
    fastest_s = min(r["end_to_end_latency_s"] for r in trace if r["error_code"] is None)
    fresh_emulator.set_profile(parse_profile({"models": {"gpt-4o-mini": {
        "latency": {"kind": "trace", "file": "groq_70b.json", "scale": 0.05}}}}))
    for _ in range(3):
        started = time.monotonic()
        assert call(fresh_emulator, client, "openai").status_code == 200
        assert time.monotonic() - started >= fastest_s * 0.05 * 0.9


@needs_data
def test_trace_errors_are_replayed_at_their_real_rate(fresh_emulator: EmulatorServer,
                                                      client: httpx.Client) -> None:
    trace = orjson.loads((DATA / "llmperf" / "lepton_70b.json").read_bytes())
    real_429_share = sum(r["error_code"] == 429 for r in trace) / len(trace)
    fresh_emulator.set_profile(parse_profile({"seed": 1, "providers": {"ollama": {
        "latency": {"kind": "trace", "file": "lepton_70b.json", "scale": 0.0}}}}))
    statuses = [call(fresh_emulator, client, "ollama").status_code for _ in range(80)]
    share = statuses.count(429) / len(statuses)
    assert abs(share - real_429_share) < 0.2
    assert set(statuses) <= {200, 429, 500}


@needs_data
def test_answer_world_marks_correctness(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    with (DATA / "routellm" / "mmlu" / "mmlu_anatomy.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:6]
    fresh_emulator.set_profile(parse_profile({
        "world_dir": "routellm/mmlu",
        "world_models": {"gpt-4o": {"column": "gpt-4-1106-preview"},
                         "mixtral": {"column": "mistralai/Mixtral-8x7B-Instruct-v0.1"}}}))
    for row in rows:
        for model, column in (("gpt-4o", "gpt-4-1106-preview"),
                              ("mixtral", "mistralai/Mixtral-8x7B-Instruct-v0.1")):
            text = text_of("openai", call(fresh_emulator, client, "openai", row["prompt"], model=model).json())
            marker = "[correct]" if row[column] == "True" else "[incorrect]"
            assert re.fullmatch(r"Answer: [ABCD] \[(in)?correct\]", text) and text.endswith(marker)
    unknown = text_of("openai", call(fresh_emulator, client, "openai", model="gpt-4o").json())
    assert "[correct]" not in unknown and "[incorrect]" not in unknown


def test_admin_endpoints(fresh_emulator: EmulatorServer, client: httpx.Client) -> None:
    base = fresh_emulator.base_url
    put = client.put(base + "/_emulator/profile", json={"providers": {"ollama": {"error_rates": {"500": 1}}}})
    assert put.status_code == 200
    assert call(fresh_emulator, client, "ollama").status_code == 500
    assert client.get(base + "/_emulator/stats").json()["providers"]["ollama"] == {"500": 1}
    assert client.put(base + "/_emulator/profile", json={"seed": "x"}).status_code == 400
    assert client.post(base + "/_emulator/clock", json={"advance_s": 1}).status_code == 200
    assert client.post(base + "/_emulator/reset").json() == {"reset": True}
    assert client.get(base + "/_emulator/stats").json()["total"] == 0


def test_async_context_manager_and_clean_stop() -> None:
    async def scenario() -> tuple[int, int]:
        async with EmulatorServer() as emu, httpx.AsyncClient() as c:
            r = await c.get(emu.base_url + "/api/version")
            return r.status_code, emu.port

    status, port = asyncio.run(scenario())
    assert status == 200
    with pytest.raises(httpx.ConnectError), httpx.Client() as c:
        c.get(f"http://127.0.0.1:{port}/api/version")


def test_stop_releases_hung_requests() -> None:
    import threading

    errors: list[BaseException] = []
    with EmulatorServer() as emu:
        def hang() -> None:
            try:
                with httpx.Client() as c:
                    call(emu, c, "openai", fault="timeout", timeout=30)
            except httpx.HTTPError as exc:
                errors.append(exc)

        worker = threading.Thread(target=hang)
        worker.start()
        deadline = time.monotonic() + 5
        while emu.stats()["total"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
    worker.join(5)
    assert time.monotonic() - started < 5 and errors and isinstance(errors[0], httpx.RemoteProtocolError)
