"""The providers' official Python SDKs work against the emulator unchanged (only base URL and key).

Each SDK: a chat call, a streamed call, and a 429 recognised as the SDK's own rate-limit error.
SDK retries are off so the 429 surfaces at once.
"""

from __future__ import annotations

import importlib.util

import pytest

from api_model_management.emulator import parse_profile
from api_model_management.emulator.testing import EmulatorServer

pytestmark = pytest.mark.integration

PROMPT = "Describe the water cycle: evaporation, condensation and precipitation"
KEY = "sk-emulator-test"


def _sdk(module: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(module.split(".")[0]) is None
    return pytest.mark.skipif(missing, reason=f"the {module} SDK is not installed (pip install it)")


def _limit(emu: EmulatorServer, model: str) -> None:
    emu.set_profile(parse_profile({"models": {model: {"rate_limits": {"requests_per_minute": 1}}}}))


def _restated(text: str) -> bool:
    return sum(w in text.lower() for w in ("water", "cycle", "evaporation", "condensation",
                                           "precipitation")) >= 2


@_sdk("openai")
def test_openai_sdk(fresh_emulator: EmulatorServer) -> None:
    import openai

    with openai.OpenAI(base_url=fresh_emulator.url_for("openai"), api_key=KEY, max_retries=0) as client:
        messages = [{"role": "user", "content": PROMPT}]
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert _restated(reply.choices[0].message.content) and reply.usage.total_tokens > 0
        assert reply._request_id.startswith("req_")
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reply.choices[0].message.content and chunks[-1].usage is not None
        _limit(fresh_emulator, "gpt-4o-mini")
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert caught.value.code == "rate_limit_exceeded"


@_sdk("anthropic")
def test_anthropic_sdk(fresh_emulator: EmulatorServer) -> None:
    import anthropic

    with anthropic.Anthropic(base_url=fresh_emulator.url_for("anthropic"), api_key=KEY,
                             max_retries=0) as client:
        messages = [{"role": "user", "content": PROMPT}]
        reply = client.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=messages)
        text = reply.content[0].text
        assert _restated(text) and reply.stop_reason == "end_turn" and reply.usage.output_tokens > 0
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=512, messages=messages) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert streamed == text and final.usage.output_tokens == reply.usage.output_tokens
        _limit(fresh_emulator, "claude-haiku-4-5")
        client.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=messages)
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=messages)


@_sdk("anthropic")
def test_anthropic_sdk_sees_overload_mid_stream(fresh_emulator: EmulatorServer) -> None:
    import anthropic

    fresh_emulator.set_profile(parse_profile({"models": {"claude-haiku-4-5": {"midstream_error_rate": 1}}}))
    with anthropic.Anthropic(base_url=fresh_emulator.url_for("anthropic"), api_key=KEY,
                             max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=512,
                                        messages=[{"role": "user", "content": PROMPT}]) as stream:
                list(stream.text_stream)
        assert "overloaded_error" in str(caught.value)


@_sdk("google.genai")
def test_google_genai_sdk(fresh_emulator: EmulatorServer) -> None:
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fresh_emulator.url_for("gemini")))
    try:
        reply = client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        assert _restated(reply.text) and reply.usage_metadata.total_token_count > 0
        streamed = "".join(chunk.text or "" for chunk in
                           client.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
        assert streamed == reply.text
        _limit(fresh_emulator, "gemini-2.5-flash")
        client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        with pytest.raises(errors.ClientError) as caught:
            client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
        bad = genai.Client(api_key="invalid",
                           http_options=types.HttpOptions(base_url=fresh_emulator.url_for("gemini")))
        with pytest.raises(errors.ClientError) as denied:
            bad.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        assert denied.value.code == 400
        bad.close()
    finally:
        client.close()


@_sdk("ollama")
def test_ollama_sdk(fresh_emulator: EmulatorServer) -> None:
    import ollama

    client = ollama.Client(host=fresh_emulator.url_for("ollama"))
    messages = [{"role": "user", "content": PROMPT}]
    reply = client.chat(model="llama3.2", messages=messages)
    assert _restated(reply.message.content) and reply.done and reply.eval_count > 0
    streamed = "".join(part.message.content for part in client.chat(model="llama3.2", messages=messages,
                                                                    stream=True))
    assert streamed == reply.message.content
    assert client.list().models[0].model == "llama3.2:latest"
    _limit(fresh_emulator, "llama3.2")
    client.chat(model="llama3.2", messages=messages)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="llama3.2", messages=messages)
    assert caught.value.status_code == 429
