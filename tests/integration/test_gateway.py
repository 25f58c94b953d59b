"""``amm serve`` as its own process on 127.0.0.1, the emulator behind it, the official OpenAI and
Anthropic SDKs (and raw HTTP) in front: plain and streamed replies, tool calls, errors in each
SDK's own exception, wrong keys, the model list, malformed and oversized bodies, unknown fields,
a client going away mid-stream; then SIGTERM: exit 0, every request served has exactly one
terminal event in the log, and no key or prompt text is in the log or the server's output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serve_process import ServeProcess

from api_model_management.config import demo_config, with_emulator_port
from api_model_management.emulator import Profile, parse_profile
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.events._ingest import read_all_events
from api_model_management.gateway import key_hash, new_key

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("openai") is None
                                 or importlib.util.find_spec("anthropic") is None,
                                 reason="the openai and anthropic SDKs are needed")]

PROMPT = "Describe the water cycle: evaporation, condensation and precipitation"
KEY, _ = new_key()
ENV_KEY, _ = new_key()
POOR_KEY, _ = new_key()
SLOW_MODEL = "gemini-2.5-pro"
BROKEN_MODEL = "gemini-2.5-flash-lite"


def _environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMM_DEMO")}
    for provider in demo_config().providers.values():
        if provider.api_key_env:
            env[provider.api_key_env] = "emulator-key"
    env["GATEWAY_CI_KEY"] = ENV_KEY
    env["API_MODEL_LOG_LEVEL"] = "DEBUG"  # everything the package logs, checked for secrets below
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _registry(emulator: EmulatorServer, data_dir: Path) -> dict[str, Any]:
    registry = with_emulator_port(demo_config(), emulator.port).model_dump(mode="json")
    registry["settings"]["data_dir"] = str(data_dir)
    registry["settings"]["gateway"] = {
        "max_body_bytes": 65536,
        "keys": [
            {"name": "dev", "key_sha256": key_hash(KEY), "agent_type": "coder"},
            {"name": "ci", "key_env": "GATEWAY_CI_KEY", "agent_type": "reviewer"},
            {"name": "poor", "key_sha256": key_hash(POOR_KEY), "budget_usd": "0.000001"},
        ],
        "aliases": {"auto:cheap": {"constraints": {"max_cost_per_request": "0.01"}}},
    }
    return registry


@pytest.fixture(scope="module")
def served(emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One gateway for the module; after its tests, SIGTERM and the checks of the whole run."""
    tmp = tmp_path_factory.mktemp("gateway")
    path = tmp / "registry.json"
    path.write_text(json.dumps(_registry(emulator, tmp / "data")))
    gateway = ServeProcess(["--config", str(path), "--port", "0"], _environment(tmp))
    state: dict[str, Any] = {"gateway": gateway, "data_dir": tmp / "data", "served": set(),
                             "prompts": {PROMPT}}
    try:
        yield state
    finally:
        state["exit_code"] = gateway.stop()


def _remember(state: dict[str, Any], request_id: str | None) -> None:
    assert request_id, "every request that reached the router has an id"
    state["served"].add(request_id)


def openai_client(state: dict[str, Any], key: str = KEY) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{state['gateway'].base_url}/v1", api_key=key, max_retries=0)


def anthropic_client(state: dict[str, Any], key: str = KEY) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=state["gateway"].base_url, api_key=key, max_retries=0)


def _restated(text: str) -> bool:
    return sum(w in text.lower() for w in ("water", "cycle", "evaporation", "condensation",
                                           "precipitation")) >= 2


# -- the OpenAI SDK -------------------------------------------------------------------------------
def test_openai_sdk_plain_and_streamed(served: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    with openai_client(served) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages)
        reply = raw.parse()
        _remember(served, raw.headers.get("x-amm-request-id"))
        assert _restated(reply.choices[0].message.content)
        assert reply.model == raw.headers["x-amm-model"] == "gpt-4.1-mini"
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
        assert reply.id == f"chatcmpl-{raw.headers['x-amm-request-id']}"
        assert float(raw.headers["x-amm-cost-usd"]) > 0 and raw.headers["x-amm-selection-reason"]
        stream = client.chat.completions.create(model="gpt-4.1-mini", messages=messages, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        _remember(served, chunks[0].id.removeprefix("chatcmpl-"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reply.choices[0].message.content  # the emulator answers deterministically
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        # the stream's cost: an extra field of the usage chunk, which the SDK keeps
        assert (chunks[-1].usage.model_extra or {}).get("cost_usd", 0) > 0
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4.1-mini", messages=messages, stream=True) as streamed:
            assert streamed.headers["x-amm-model"] == "gpt-4.1-mini"
            assert streamed.headers["x-amm-selection-reason"].startswith("pinned gpt-4.1-mini")
            assert streamed.headers["x-amm-request-id"]
            _remember(served, streamed.headers["x-amm-request-id"])
            assert "".join(c.choices[0].delta.content or "" for c in streamed.parse()
                           if c.choices) == text
        auto = client.chat.completions.with_raw_response.create(
            model="auto:cheap", messages=messages, extra_headers={"x-amm-priority": "high"})
        _remember(served, auto.headers.get("x-amm-request-id"))
        assert auto.parse().model == auto.headers["x-amm-model"]
    with openai_client(served, ENV_KEY) as client:  # the key read from a variable
        reply = client.chat.completions.create(model="auto", messages=messages)
        _remember(served, reply.id.removeprefix("chatcmpl-"))


def test_openai_sdk_tool_call_round_trip(served: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    served["prompts"].add(messages[0]["content"])
    with openai_client(served) as client:
        first = client.chat.completions.create(model="gpt-4.1-mini", messages=messages, tools=tools,
                                               tool_choice="required")
        _remember(served, first.id.removeprefix("chatcmpl-"))
        (call,) = first.choices[0].message.tool_calls
        assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
        second = client.chat.completions.create(model="gpt-4.1-mini", messages=messages, tools=tools)
        _remember(served, second.id.removeprefix("chatcmpl-"))
        assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


def test_openai_sdk_errors_and_model_list(served: dict[str, Any]) -> None:
    import openai

    messages = [{"role": "user", "content": PROMPT}]
    with openai_client(served, "amm-not-a-key") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="auto", messages=messages)
    with openai_client(served) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="gpt-9", messages=messages)
        assert caught.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="auto", messages=messages, temperature=5)
        assert bad.value.param == "parameters.temperature"
        ids = [m.id for m in client.models.list()]
        assert ids == [m.id for m in demo_config().models] + ["auto", "auto:cheap"]
    with openai_client(served, POOR_KEY) as client:
        with pytest.raises(openai.RateLimitError) as poor:
            client.chat.completions.create(model="gpt-4.1", messages=messages)
        assert poor.value.code == "budget_exceeded"
        assert int(poor.value.response.headers["retry-after"]) >= 1


def test_all_candidates_failing_is_a_502(served: dict[str, Any], fresh_emulator: EmulatorServer) -> None:
    import openai

    fallbacks = demo_config().model(BROKEN_MODEL).fallbacks
    broken = {"error_rates": {"500": 1.0}}
    fresh_emulator.set_profile(parse_profile({"models": {BROKEN_MODEL: broken}}))
    with openai_client(served) as client:  # the pin fails: its first fallback serves
        raw = client.chat.completions.with_raw_response.create(
            model=BROKEN_MODEL, messages=[{"role": "user", "content": PROMPT}])
        _remember(served, raw.headers.get("x-amm-request-id"))
        assert raw.headers["x-amm-model"] == raw.parse().model == fallbacks[0]
        assert raw.headers["x-amm-selection-reason"].startswith(f"pinned {BROKEN_MODEL} (fallbacks: ")
    fresh_emulator.set_profile(parse_profile({"models": {m: broken for m in (BROKEN_MODEL, *fallbacks)}}))
    with openai_client(served) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.with_raw_response.create(
            model=BROKEN_MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert caught.value.status_code == 502
    _remember(served, caught.value.response.headers.get("x-amm-request-id"))


# -- the Anthropic SDK ----------------------------------------------------------------------------
def test_anthropic_sdk_plain_streamed_tools_and_errors(served: dict[str, Any]) -> None:
    import anthropic

    messages = [{"role": "user", "content": PROMPT}]
    with anthropic_client(served) as client:
        raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=512,
                                                       messages=messages)
        reply = raw.parse()
        _remember(served, raw.headers.get("x-amm-request-id"))
        assert _restated(reply.content[0].text) and reply.stop_reason == "end_turn"
        assert reply.model == "claude-haiku-4-5" and reply.usage.output_tokens > 0
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=512, messages=messages) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        _remember(served, final.id.removeprefix("msg_"))
        assert streamed == reply.content[0].text and final.usage.output_tokens == reply.usage.output_tokens
        raw_stream = client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=512, messages=messages, stream=True)
        events = list(raw_stream.parse())  # the SDK's own events, parsed
        _remember(served, raw_stream.headers["x-amm-request-id"])
        assert raw_stream.headers["x-amm-model"] == "claude-haiku-4-5"
        assert raw_stream.headers["x-amm-selection-reason"].startswith("pinned claude-haiku-4-5")
        delta = next(e for e in events if e.type == "message_delta")
        assert (delta.usage.model_extra or {}).get("cost_usd", 0) > 0
        tool = {"name": "lookup", "description": "Look a term up",
                "input_schema": {"type": "object", "properties": {"term": {"type": "string"}},
                                 "required": ["term"]}}
        used = client.messages.create(model="claude-haiku-4-5", max_tokens=256, tools=[tool],
                                      tool_choice={"type": "any"}, messages=messages)
        _remember(served, used.id.removeprefix("msg_"))
        call = next(b for b in used.content if b.type == "tool_use")
        assert used.stop_reason == "tool_use" and call.name == "lookup" and "term" in call.input
        models = client.models.list()
        assert [m.id for m in models.data][-2:] == ["auto", "auto:cheap"]
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="claude-9", max_tokens=10, messages=messages)
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="auto", max_tokens=10,
                                   messages=[{"role": "user", "content": [{"type": "audio"}]}])
    with anthropic_client(served, "sk-ant-wrong") as client, pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="auto", max_tokens=10, messages=messages)


# -- raw HTTP -------------------------------------------------------------------------------------
def test_raw_http_malformed_oversized_and_unknown_fields(served: dict[str, Any]) -> None:
    base, auth = served["gateway"].base_url, {"authorization": f"Bearer {KEY}"}
    malformed = httpx.post(f"{base}/v1/chat/completions", content=b'{"model": "auto", ',
                           headers={**auth, "content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    big = {"model": "auto", "messages": [{"role": "user", "content": "x" * 70_000}]}
    too_large = httpx.post(f"{base}/v1/messages", json=big, headers={"x-api-key": KEY})
    assert too_large.status_code == 413
    assert too_large.json()["error"]["type"] == "request_too_large"
    extra = httpx.post(f"{base}/v1/chat/completions", headers=auth, json={
        "model": "gpt-4.1-mini", "messages": [{"role": "user", "content": PROMPT}],
        "frobnicate": {"deep": True}, "user": "someone"})
    assert extra.status_code == 200 and extra.headers["x-amm-ignored-fields"] == "frobnicate"
    _remember(served, extra.headers["x-amm-request-id"])
    assert httpx.get(f"{base}/health").json()["ready"] is True
    metrics = httpx.get(f"{base}/metrics").text
    assert 'amm_gateway_requests_total{pid="' in metrics and 'key="dev"' in metrics


def test_a_client_going_away_mid_stream_cancels_the_request(
        served: dict[str, Any], fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.set_profile(parse_profile({"models": {SLOW_MODEL: {
        "latency": {"kind": "fixed", "latency_s": 8.0, "ttft_share": 0.01}}}}))
    base = served["gateway"].base_url
    body = {"model": SLOW_MODEL, "stream": True, "max_tokens": 2000,
            "messages": [{"role": "user", "content": PROMPT}]}
    started = time.monotonic()
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", f"{base}/v1/chat/completions", json=body,
            headers={"authorization": f"Bearer {KEY}"}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-amm-request-id"]
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")  # the first chunk arrived; then we go away
    assert time.monotonic() - started < 6  # not the 8 s the whole answer takes
    served["cancelled"] = request_id
    _remember(served, request_id)
    fresh_emulator.set_profile(Profile())


def test_the_readmes_client_lines_work_as_written(served: dict[str, Any]) -> None:
    """The README's gateway section: its OpenAI and Anthropic lines and its curl line, run as
    written, with ``AMM_KEY`` the key and the port this gateway's."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    section = readme[readme.index("## The HTTP gateway"):readme.index("## Coming from the original")]
    port = served["gateway"].base_url.rsplit(":", 1)[1]
    blocks = [b.replace("127.0.0.1:4000", f"127.0.0.1:{port}")
              for b in re.findall(r"```py\n(.*?)```", section, re.S)]
    assert len(blocks) == 2
    served["prompts"].add("Explain CRDTs")
    for block in blocks:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, "README.md", "exec"), {"AMM_KEY": KEY})  # noqa: S102
        assert printed.getvalue().strip()
    (curl,) = re.findall(r"```bash\n(curl .*?)```", section, re.S)
    done = subprocess.run(["bash", "-c", curl.replace("127.0.0.1:4000", f"127.0.0.1:{port}")],
                          env={**os.environ, "AMM_KEY": KEY}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["choices"][0]["message"]["content"]


# -- after SIGTERM --------------------------------------------------------------------------------
def test_zz_after_stop_one_terminal_event_each_and_no_secret_anywhere(served: dict[str, Any]) -> None:
    gateway: ServeProcess = served["gateway"]
    assert gateway.stop() == 0
    events = read_all_events(served["data_dir"])
    terminal: dict[str, list[str]] = {}
    for event in events:
        if type(event).__name__ in ("RequestCompleted", "RequestFailed"):
            terminal.setdefault(event.request_id, []).append(type(event).__name__)
    assert {rid: kinds for rid, kinds in terminal.items() if len(kinds) != 1} == {}
    assert served["served"] <= set(terminal), "a request served without a terminal event"
    cancelled = [e for e in events if type(e).__name__ == "RequestFailed"
                 and e.request_id == served.get("cancelled")]
    assert [e.error_kind for e in cancelled] == ["cancelled"]
    output = gateway.output
    assert "listening on" in output and "stopped" in output
    for secret in (KEY, ENV_KEY, POOR_KEY, *served["prompts"]):
        assert secret not in output
        for path in served["data_dir"].rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# -- the other ways to run it ---------------------------------------------------------------------
def test_two_workers_serve_and_stop_cleanly(emulator: EmulatorServer, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "registry.json"
    path.write_text(json.dumps(_registry(emulator, tmp_path / "data")))
    gateway = ServeProcess(["--config", str(path), "--port", "0", "--workers", "2"],
                             _environment(tmp_path))
    try:
        def one(i: int) -> httpx.Response:
            return httpx.post(f"{gateway.base_url}/v1/chat/completions", timeout=30,
                              headers={"authorization": f"Bearer {KEY}"},
                              json={"model": "auto", "messages": [{"role": "user",
                                                                   "content": f"{PROMPT} ({i})"}]})

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(one, range(24)))
        assert [r.status_code for r in replies] == [200] * 24
        for _ in range(600):  # the second worker may still be starting
            if "amm_gateway_workers 2" in httpx.get(f"{gateway.base_url}/metrics").text:
                break
            time.sleep(0.1)
        for _ in range(8):  # whichever worker answers, it answers for both
            text = httpx.get(f"{gateway.base_url}/metrics").text
            assert "amm_gateway_workers 2" in text and "amm_gateway_workers_unreachable 0" in text
            assert 'pid="' not in text
            served = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("amm_gateway_requests_total{") and 'status="200"' in line]
            assert sum(served) == 24
            assert 'amm_gateway_request_duration_seconds_count{endpoint="chat.completions"} 24' in text
            assert 'amm_gateway_key_budget_limit_usd{key="poor"} 0.000001' in text  # not 2 shares
    finally:
        code = gateway.stop()
    assert code == 0
    ids = {r.headers["x-amm-request-id"] for r in replies}
    done = [e.request_id for e in read_all_events(tmp_path / "data", ("RequestCompleted",))]
    assert sorted(done) == sorted(ids)


def test_demo_mode_prints_a_generated_key_once_and_stops_on_sigint(tmp_path: Path) -> None:
    import openai

    env = _environment(tmp_path)
    gateway = ServeProcess(["--demo", "--port", "0", "--data-dir", str(tmp_path / "data")], env)
    try:
        found = re.search(r"virtual key \(generated[^)]*\): (amm-\S+)", gateway.output)
        assert found is not None, gateway.output
        key = found.group(1)
        assert gateway.output.count(key) == 1
        with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0) as client:
            reply = client.chat.completions.create(
                model="auto:code", messages=[{"role": "user", "content": PROMPT}])
            assert reply.choices[0].message.content
            with pytest.raises(openai.AuthenticationError):
                client.with_options(api_key=KEY).models.list()
    finally:
        code = gateway.stop(signal.SIGINT)
    assert code == 0
    assert len(read_all_events(tmp_path / "data", ("RequestCompleted",))) == 1
