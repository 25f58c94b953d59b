"""The four adapters against scripted ``httpx.MockTransport`` replies: request mapping, reply and
stream parsing, usage normalization, error classification, redaction, transport failures, probes.
No sockets: every request is answered in-process."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import httpx
import orjson
import pytest
from pydantic import SecretStr

from api_model_management import errors
from api_model_management._clock import ManualClock
from api_model_management._request import Message, ModelRequest, StreamChunk
from api_model_management.config import ModelConfig, ProviderConfig
from api_model_management.providers import (
    AnthropicAdapter,
    GeminiAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    ProviderAdapter,
    make_adapter,
    redact,
)
from api_model_management.providers._sse import SSEDecoder, SSEEvent

pytestmark = pytest.mark.unit

KEY = "sk-proj-SeCrEtKeY0123456789abcdef"
PROMPT = "PROMPT-TEXT-the-secret-recipe-is-42"
SYSTEM = "You are terse."
BASES = {
    "openai": "https://api.openai.test/v1",
    "anthropic": "https://api.anthropic.test",
    "google": "https://gemini.test",
    "ollama": "http://ollama.test:11434",
}
WIRE = {"openai": "gpt-4o-mini", "anthropic": "claude-x", "google": "gemini-2.5-flash",
        "ollama": "llama3.2"}  # fmt: skip

Handler = Callable[[httpx.Request], httpx.Response]


def run(coro):
    return asyncio.run(coro)


def provider_config(kind: str, **extra) -> ProviderConfig:
    return ProviderConfig(type=kind, base_url=BASES[kind], **extra)


def model_config(kind: str) -> ModelConfig:
    return ModelConfig(
        id=f"{kind}-model",
        provider=kind,
        name=kind,
        capabilities=["text-generation"],
        cost_per_1k_input_tokens=Decimal("0.001"),
        cost_per_1k_output_tokens=Decimal("0.002"),
        rate_limits={"requests_per_minute": 60, "tokens_per_minute": 100000},
        context_window=8192,
        average_response_time_ms=500,
        provider_model=WIRE[kind],
    )


def adapter(
    kind: str, handler: Handler, clock: ManualClock | None = None, **cfg
) -> ProviderAdapter:
    key = None if kind == "ollama" else SecretStr(KEY)
    return make_adapter(
        kind,
        provider_config(kind, **cfg),
        key,
        transport=httpx.MockTransport(handler),
        clock=clock or ManualClock(),
    )


def request(**kw) -> ModelRequest:
    return ModelRequest(
        prompt=PROMPT,
        system=SYSTEM,
        max_tokens=64,
        parameters={"temperature": 0.2, "top_p": 0.9, "stop": "END"},
        **kw,
    )


def json_reply(body: object, status: int = 200, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
    )


def complete(kind: str, handler: Handler, clock: ManualClock | None = None, **kw):
    async def go():
        a = adapter(kind, handler, clock)
        try:
            return await a.complete(request(), model_config(kind), **kw)
        finally:
            await a.aclose()

    return run(go())


def collect(kind: str, handler: Handler, clock: ManualClock | None = None) -> list[StreamChunk]:
    async def go():
        a = adapter(kind, handler, clock)
        try:
            return [c async for c in a.stream(request(), model_config(kind))]
        finally:
            await a.aclose()

    return run(go())


def raises(kind: str, handler: Handler, *, stream: bool = False) -> BaseException:
    with pytest.raises((errors.ProviderError, errors.StreamInterrupted)) as info:
        collect(kind, handler) if stream else complete(kind, handler)
    return info.value


def sse(events: list[str], newline: str = "\n") -> bytes:
    return "".join(e.replace("\n", newline) + newline + newline for e in events).encode()


def stream_reply(payload: bytes, content_type: str = "text/event-stream", cut: bool = False):
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 7):  # small pieces: lines split across reads
            yield payload[i : i + 7]
        if cut:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    return httpx.Response(200, content=body(), headers={"content-type": content_type})


# =============================================================================================
# request mapping


def capture(reply: httpx.Response) -> tuple[list[httpx.Request], Handler]:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return reply

    return seen, handler


OPENAI_OK = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 4},
              "completion_tokens_details": {"reasoning_tokens": 3}},
}  # fmt: skip
ANTHROPIC_OK = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [{"type": "text", "text": "Hel"}, {"type": "tool_use", "id": "t", "name": "n",
                "input": {}}, {"type": "text", "text": "lo!"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 2,
              "cache_read_input_tokens": 5},
}  # fmt: skip
GEMINI_OK = {
    "candidates": [{"content": {"parts": [{"text": "thinking…", "thought": True},
                                          {"text": "Hello!"}], "role": "model"},
                    "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 20,
                      "thoughtsTokenCount": 7, "cachedContentTokenCount": 4},
    "modelVersion": "gemini-2.5-flash", "responseId": "resp-1",
}  # fmt: skip
OLLAMA_OK = {
    "model": "llama3.2", "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Hello!"}, "done": True, "done_reason": "length",
    "prompt_eval_count": 26, "eval_count": 298,
}  # fmt: skip
OK = {"openai": OPENAI_OK, "anthropic": ANTHROPIC_OK, "google": GEMINI_OK, "ollama": OLLAMA_OK}


def test_openai_request_mapping():
    seen, handler = capture(json_reply(OPENAI_OK))
    complete("openai", handler, headers={"x-emulator-fault": "none"})
    req = seen[0]
    assert req.method == "POST"
    assert str(req.url) == "https://api.openai.test/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["x-emulator-fault"] == "none"
    body = orjson.loads(req.content)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "max_completion_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END"],
        "stream": False,
    }  # fmt: skip


def test_openai_stream_request_asks_for_usage():
    seen, handler = capture(stream_reply(sse(["data: [DONE]"])))
    chunks = collect("openai", handler)
    assert len(chunks) == 1 and chunks[0].done and chunks[0].result.text == ""
    body = orjson.loads(seen[0].content)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_anthropic_request_mapping():
    seen, handler = capture(json_reply(ANTHROPIC_OK))
    complete("anthropic", handler)
    req = seen[0]
    assert str(req.url) == "https://api.anthropic.test/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    assert orjson.loads(req.content) == {
        "model": "claude-x", "max_tokens": 64, "system": SYSTEM,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"], "stream": False,
    }  # fmt: skip


def test_gemini_request_mapping_roles_and_system_instruction():
    seen, handler = capture(json_reply(GEMINI_OK))
    conversation = ModelRequest(messages=(
        Message(role="system", content=SYSTEM), Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello"), Message(role="user", content=PROMPT),
    ), max_tokens=32)  # fmt: skip

    async def go():
        a = adapter("google", handler)
        await a.complete(conversation, model_config("google"))
        await a.aclose()

    run(go())
    req = seen[0]
    assert str(req.url) == "https://gemini.test/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY
    assert "key=" not in str(req.url)
    body = orjson.loads(req.content)
    assert body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][2]["parts"] == [{"text": PROMPT}]
    assert body["generationConfig"] == {"maxOutputTokens": 32}
    assert "stream" not in body


def test_gemini_stream_url_uses_alt_sse():
    seen, handler = capture(stream_reply(sse([
        'data: {"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}'
    ])))  # fmt: skip
    collect("google", handler)
    assert seen[0].url.path.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    assert seen[0].url.params["alt"] == "sse"


def test_ollama_request_mapping():
    seen, handler = capture(json_reply(OLLAMA_OK))
    complete("ollama", handler)
    req = seen[0]
    assert str(req.url) == "http://ollama.test:11434/api/chat"
    assert "authorization" not in req.headers
    assert orjson.loads(req.content) == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "stream": False,
        "options": {"num_predict": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END"]},
    }


@pytest.mark.parametrize(
    ("kind", "base", "url"),
    [
        ("openai", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/chat/completions"),
        ("openai", "http://127.0.0.1:9/openai", "http://127.0.0.1:9/openai/v1/chat/completions"),
        ("anthropic", "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/messages"),
        ("google", "http://127.0.0.1:9/v1beta",
         "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent"),
        ("ollama", "http://127.0.0.1:9/api", "http://127.0.0.1:9/api/chat"),
    ],
)  # fmt: skip
def test_base_url_with_or_without_version_segment(kind, base, url):
    seen, handler = capture(json_reply(OK[kind]))

    async def go():
        a = make_adapter(kind, ProviderConfig(type=kind, base_url=base), SecretStr(KEY),
                         transport=httpx.MockTransport(handler))  # fmt: skip
        await a.complete(request(), model_config(kind))
        await a.aclose()

    run(go())
    assert str(seen[0].url) == url


# =============================================================================================
# replies


def test_openai_reply_normalized():
    headers = {"x-request-id": "req_abc", "x-ratelimit-remaining-requests": "59",
               "x-ratelimit-reset-tokens": "6m0s"}  # fmt: skip
    clock = ManualClock()

    def handler(req):
        clock.advance(0.25)
        return json_reply(OPENAI_OK, headers=headers)

    result = complete("openai", handler, clock)
    assert result.text == "Hello!"
    assert (result.finish_reason, result.raw_finish_reason) == ("stop", "stop")
    assert (result.input_tokens, result.cached_tokens) == (15, 4)  # prompt 19 includes 4 cached
    assert (result.output_tokens, result.reasoning_tokens) == (10, 3)
    assert result.provider_request_id == "chatcmpl-1"
    assert result.latency_ms == pytest.approx(250.0)
    assert result.time_to_first_token_ms is None
    assert result.rate_limit.remaining_requests == 59
    assert result.rate_limit.reset_tokens_s == 360.0


def test_anthropic_reply_normalized():
    headers = {"request-id": "req_018", "anthropic-ratelimit-requests-remaining": "9",
               "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z"}  # fmt: skip
    result = complete("anthropic", lambda r: json_reply(ANTHROPIC_OK, headers=headers))
    assert result.text == "Hello!"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("t", "n", "{}")]
    assert result.finish_reason == "stop" and result.raw_finish_reason == "end_turn"
    # input_tokens excludes cache reads: uncached = 12 + 2 cache writes, cached = 5 reads
    assert (result.input_tokens, result.cached_tokens, result.output_tokens) == (14, 5, 6)
    assert result.provider_request_id == "msg_1"
    assert result.rate_limit.remaining_requests == 9
    assert result.rate_limit.reset_requests_s == 30.0  # ManualClock starts 2026-01-01T00:00Z


def test_gemini_reply_normalized():
    result = complete("google", lambda r: json_reply(GEMINI_OK))
    assert result.text == "Hello!"  # the thought part is skipped
    assert result.finish_reason == "stop" and result.raw_finish_reason == "STOP"
    # promptTokenCount includes cached; thoughts are billed as output
    assert (result.input_tokens, result.cached_tokens) == (6, 4)
    assert (result.output_tokens, result.reasoning_tokens) == (10, 7)
    assert result.provider_request_id == "resp-1"
    assert result.rate_limit is None


def test_ollama_reply_normalized():
    result = complete("ollama", lambda r: json_reply(OLLAMA_OK))
    assert result.text == "Hello!"
    assert result.finish_reason == "length"
    assert (result.input_tokens, result.output_tokens, result.cached_tokens) == (26, 298, 0)
    assert result.provider_request_id is None


def test_ollama_missing_metrics_default_to_zero():
    body = {"message": {"role": "assistant", "content": "x"}, "done": True, "done_reason": "stop"}
    result = complete("ollama", lambda r: json_reply(body))
    assert (result.input_tokens, result.output_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("kind", "raw", "normalized"),
    [
        ("openai", "length", "length"), ("openai", "content_filter", "content_filter"),
        ("openai", "tool_calls", "tool_calls"), ("openai", "function_call", "tool_calls"),
        ("openai", "weird", "other"),
        ("anthropic", "max_tokens", "length"), ("anthropic", "stop_sequence", "stop"),
        ("anthropic", "tool_use", "tool_calls"), ("anthropic", "refusal", "content_filter"),
        ("anthropic", "model_context_window_exceeded", "length"),
        ("anthropic", "pause_turn", "other"),
        ("google", "MAX_TOKENS", "length"), ("google", "SAFETY", "content_filter"),
        ("google", "RECITATION", "content_filter"), ("google", "MALFORMED_FUNCTION_CALL", "other"),
    ],
)  # fmt: skip
def test_finish_reasons(kind, raw, normalized):
    body = orjson.loads(orjson.dumps(OK[kind]))
    if kind == "openai":
        body["choices"][0]["finish_reason"] = raw
    elif kind == "anthropic":
        body["stop_reason"] = raw
    else:
        body["candidates"][0]["finishReason"] = raw
    result = complete(kind, lambda r: json_reply(body))
    assert (result.finish_reason, result.raw_finish_reason) == (normalized, raw)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("openai", {**OPENAI_OK, "choices": [{"index": 0, "message": {"content": None},
                                              "finish_reason": "content_filter"}]}),
        ("anthropic", {**ANTHROPIC_OK, "content": [], "stop_reason": "refusal"}),
        ("google", {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}),
        ("google", {"candidates": [{"finishReason": "SAFETY", "index": 0}]}),
    ],
)  # fmt: skip
def test_blocked_reply_without_text_is_a_policy_violation(kind, body):
    err = raises(kind, lambda r: json_reply(body))
    assert isinstance(err, errors.ContentPolicyViolation)
    assert not err.failover and err.provider == kind


@pytest.mark.parametrize("kind", list(BASES))
@pytest.mark.parametrize(
    "reply",
    [
        lambda: httpx.Response(200, content=b"<html>oops</html>"),
        lambda: httpx.Response(200, content=b'{"truncated": '),
        lambda: json_reply({"unexpected": True}),
        lambda: json_reply([1, 2, 3]),
        lambda: json_reply({"choices": [], "content": None, "candidates": None, "message": 3}),
    ],
)
def test_malformed_replies(kind, reply):
    err = raises(kind, lambda r: reply())
    assert isinstance(err, errors.MalformedResponse)
    assert err.transient and err.http_status == 200 and err.model_id == f"{kind}-model"


# =============================================================================================
# streams


OPENAI_STREAM = [
    'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}',
    ": keep-alive comment",
    'data: {"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"obfuscation":"xx"}',
    'data: {"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}',
    'data: {"id":"chatcmpl-9","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
    'data: {"id":"chatcmpl-9","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":1}}}',
    "data: [DONE]",
]
ANTHROPIC_STREAM = [
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_4Q","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"usage":{"input_tokens":11,"output_tokens":1,"cache_read_input_tokens":3}}}',
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    'event: ping\ndata: {"type": "ping"}',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}',
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":6}}',
    'event: message_stop\ndata: {"type":"message_stop"}',
]
GEMINI_STREAM = [
    'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1},"responseId":"r-7"}',
    'data: {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":5,"thoughtsTokenCount":2},"responseId":"r-7"}',
]
OLLAMA_STREAM = [
    '{"model":"llama3.2","message":{"role":"assistant","content":"Hel"},"done":false}',
    '{"model":"llama3.2","message":{"role":"assistant","content":"lo"},"done":false}',
    '{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":2}',
]
STREAMS = {
    "openai": (OPENAI_STREAM, ("stop", 8, 1, 2, "chatcmpl-9")),
    "anthropic": (ANTHROPIC_STREAM, ("length", 11, 3, 6, "msg_4Q")),
    "google": (GEMINI_STREAM, ("stop", 4, 0, 7, "r-7")),
    "ollama": (OLLAMA_STREAM, ("stop", 26, 0, 2, None)),
}


def stream_bytes(kind: str, events: list[str], newline: str = "\n") -> bytes:
    if kind == "ollama":
        return "".join(e + newline for e in events).encode()
    return sse(events, newline)


def stream_body(kind: str, events: list[str], newline: str = "\n") -> httpx.Response:
    ctype = "application/x-ndjson" if kind == "ollama" else "text/event-stream"
    return stream_reply(stream_bytes(kind, events, newline), ctype)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("kind", list(STREAMS))
def test_streams(kind, newline):
    events, (finish, inp, cached, out, rid) = STREAMS[kind]
    clock = ManualClock()

    def handler(req):
        clock.advance(0.1)
        return stream_body(kind, events, newline)

    chunks = collect(kind, handler, clock)
    deltas = [c.delta for c in chunks if not c.done]
    assert deltas == ["Hel", "lo"]
    final = chunks[-1]
    assert final.done and sum(c.done for c in chunks) == 1
    result = final.result
    assert result.text == "Hello"
    assert (result.finish_reason, result.input_tokens, result.cached_tokens) == (
        finish,
        inp,
        cached,
    )
    assert result.output_tokens == out
    assert result.provider_request_id == rid
    assert result.time_to_first_token_ms == pytest.approx(100.0)
    assert result.latency_ms == pytest.approx(100.0)
    assert all(c.model_id == f"{kind}-model" for c in chunks)


def test_sse_decoder_framing():
    decoder = SSEDecoder()
    fed = [
        decoder.feed(line)
        for line in [
            ": comment",
            "event: e",
            "data: a",
            "data:b",
            "id: 3",
            "retry: 10",
            "",
            "",
            "data: c\r\n",
        ]
    ]
    assert fed[6] == SSEEvent("e", "a\nb")
    assert fed[7] is None
    assert decoder.pending()
    assert decoder.feed("") == SSEEvent(None, "c")


# -- mid-stream failures -----------------------------------------------------------------------

MIDSTREAM_ERRORS = {
    "openai": ('data: {"error":{"message":"The server had an error","type":"server_error",'
               '"param":null,"code":null}}', errors.ProviderServerError),
    "anthropic": ('event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                  '"message":"Overloaded"}}', errors.ProviderOverloaded),
    "google": ('data: {"error":{"code":503,"message":"The model is overloaded.",'
               '"status":"UNAVAILABLE"}}', errors.ProviderOverloaded),
    "ollama": ('{"error":"the model failed to generate a response"}', errors.ProviderServerError),
}  # fmt: skip


def _first_text_events(kind: str) -> list[str]:
    events = STREAMS[kind][0]
    return {"openai": events[:3], "anthropic": events[:4], "google": events[:1],
            "ollama": events[:1]}[kind]  # fmt: skip


@pytest.mark.parametrize("kind", list(STREAMS))
def test_midstream_error_after_text_is_stream_interrupted(kind):
    line, cause = MIDSTREAM_ERRORS[kind]
    err = raises(kind, lambda r: stream_body(kind, [*_first_text_events(kind), line]), stream=True)
    assert isinstance(err, errors.StreamInterrupted)
    assert err.partial_text == "Hel"
    assert err.cause_kind == cause.error_kind
    assert (err.provider, err.model_id) == (kind, f"{kind}-model")
    assert isinstance(err.__cause__, cause)
    assert "Hel" not in str(err)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is errors.StreamInterrupted and clone.partial_text == "Hel"


@pytest.mark.parametrize("kind", list(STREAMS))
def test_midstream_error_before_text_is_the_provider_error(kind):
    line, cause = MIDSTREAM_ERRORS[kind]
    prefix = STREAMS[kind][0][:1] if kind in ("openai", "anthropic") else []
    err = raises(kind, lambda r: stream_body(kind, [*prefix, line]), stream=True)
    assert type(err) is cause
    assert err.provider == kind and err.http_status == (503 if kind == "google" else 200)


@pytest.mark.parametrize("kind", list(STREAMS))
def test_cut_connection_mid_stream(kind):
    payload = stream_bytes(kind, _first_text_events(kind))
    err = raises(kind, lambda r: stream_reply(payload, cut=True), stream=True)
    assert isinstance(err, errors.StreamInterrupted)
    assert err.partial_text == "Hel" and err.cause_kind == "connection"


@pytest.mark.parametrize("kind", list(STREAMS))
def test_stream_ending_without_terminator(kind):
    payload = stream_bytes(kind, _first_text_events(kind))
    err = raises(kind, lambda r: stream_reply(payload), stream=True)
    assert isinstance(err, errors.StreamInterrupted) and err.cause_kind == "connection"
    empty = raises(kind, lambda r: stream_reply(b""), stream=True)
    assert isinstance(empty, errors.ProviderConnectionError)
    assert empty.raw_type == "incomplete_stream"


@pytest.mark.parametrize("kind", list(STREAMS))
def test_malformed_stream_event(kind):
    garbage = "{not json" if kind == "ollama" else "data: {not json"
    err = raises(kind, lambda r: stream_body(kind, [garbage]), stream=True)
    assert isinstance(err, errors.MalformedResponse)
    late = raises(kind, lambda r: stream_body(kind, [*_first_text_events(kind), garbage]),
                  stream=True)  # fmt: skip
    assert isinstance(late, errors.StreamInterrupted) and late.cause_kind == "malformed_response"


@pytest.mark.parametrize("kind", list(STREAMS))
def test_stream_http_error_before_body(kind):
    err = raises(kind, lambda r: json_reply({"error": "x"}, status=500), stream=True)
    assert isinstance(err, errors.ProviderServerError) and err.http_status == 500


def test_consumer_can_stop_early_and_the_response_is_closed():
    closed = []

    async def body():
        try:
            for event in OPENAI_STREAM:
                yield (event + "\n\n").encode()
        finally:
            closed.append(True)

    def handler(req):
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    async def go():
        a = adapter("openai", handler)
        agen = a.stream(request(), model_config("openai"))
        first = await anext(agen)
        await agen.aclose()
        await a.aclose()
        return first

    assert run(go()).delta == "Hel"
    assert closed == [True]


# =============================================================================================
# error classification


def openai_error(status, etype, code, message="m", headers=None):
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return json_reply(body, status, headers)


def anthropic_error(status, etype, message="m", headers=None):
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_1"}
    return json_reply(body, status, headers)


def gemini_error(status, rpc, message="m", details=None):
    body = {"error": {"code": status, "message": message, "status": rpc, "details": details or []}}
    return json_reply(body, status)


def ollama_error(status, message):
    return json_reply({"error": message}, status)


GEMINI_BAD_KEY = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                   "domain": "googleapis.com"}]  # fmt: skip
GEMINI_RETRY = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]  # fmt: skip
GEMINI_DAILY = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]  # fmt: skip

CLASSIFICATION = [
    # OpenAI
    ("openai", lambda: openai_error(400, "invalid_request_error", None), errors.InvalidRequest, None),
    ("openai", lambda: openai_error(400, "invalid_request_error", "context_length_exceeded"),
     errors.ContextWindowExceeded, None),
    ("openai", lambda: openai_error(400, "invalid_request_error", "content_policy_violation"),
     errors.ContentPolicyViolation, None),
    ("openai", lambda: openai_error(401, "invalid_request_error", "invalid_api_key"),
     errors.AuthenticationError, None),
    ("openai", lambda: openai_error(403, "permission_error", None), errors.AuthenticationError, None),
    ("openai", lambda: openai_error(404, "invalid_request_error", "model_not_found"),
     errors.ModelNotFound, None),
    ("openai", lambda: openai_error(429, "requests", "rate_limit_exceeded",
                                    headers={"retry-after": "20"}), errors.RateLimited, 20.0),
    ("openai", lambda: openai_error(429, "tokens", "rate_limit_exceeded",
                                    headers={"retry-after-ms": "10"}), errors.RateLimited, 0.01),
    ("openai", lambda: openai_error(429, "tokens", "rate_limit_exceeded",
                                    headers={"x-ratelimit-remaining-tokens": "0",
                                             "x-ratelimit-reset-tokens": "1m30s"}),
     errors.RateLimited, 90.0),
    ("openai", lambda: openai_error(429, "insufficient_quota", "insufficient_quota"),
     errors.QuotaExceeded, None),
    ("openai", lambda: openai_error(500, "server_error", None), errors.ProviderServerError, None),
    ("openai", lambda: openai_error(503, "server_error", None), errors.ProviderOverloaded, None),
    ("openai", lambda: httpx.Response(502, content=b"<html>Bad gateway</html>"),
     errors.ProviderServerError, None),
    # Anthropic
    ("anthropic", lambda: anthropic_error(400, "invalid_request_error"), errors.InvalidRequest, None),
    ("anthropic", lambda: anthropic_error(400, "invalid_request_error",
                                          "prompt is too long: 250000 tokens > 200000 maximum"),
     errors.ContextWindowExceeded, None),
    ("anthropic", lambda: anthropic_error(400, "invalid_request_error",
                                          "Your credit balance is too low to access the API."),
     errors.QuotaExceeded, None),
    ("anthropic", lambda: anthropic_error(401, "authentication_error"), errors.AuthenticationError, None),
    ("anthropic", lambda: anthropic_error(402, "billing_error"), errors.QuotaExceeded, None),
    ("anthropic", lambda: anthropic_error(403, "permission_error"), errors.AuthenticationError, None),
    ("anthropic", lambda: anthropic_error(404, "not_found_error"), errors.ModelNotFound, None),
    ("anthropic", lambda: anthropic_error(413, "request_too_large"), errors.InvalidRequest, None),
    ("anthropic", lambda: anthropic_error(429, "rate_limit_error", headers={"retry-after": "7"}),
     errors.RateLimited, 7.0),
    ("anthropic", lambda: anthropic_error(
        429, "rate_limit_error",
        headers={"anthropic-ratelimit-requests-remaining": "0",
                 "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:12Z"}),
     errors.RateLimited, 12.0),
    ("anthropic", lambda: anthropic_error(500, "api_error"), errors.ProviderServerError, None),
    ("anthropic", lambda: anthropic_error(529, "overloaded_error"), errors.ProviderOverloaded, None),
    ("anthropic", lambda: anthropic_error(504, "timeout_error"), errors.ProviderServerError, None),
    # Gemini
    ("google", lambda: gemini_error(400, "INVALID_ARGUMENT"), errors.InvalidRequest, None),
    ("google", lambda: gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a "
                                    "valid API key.", GEMINI_BAD_KEY),
     errors.AuthenticationError, None),
    ("google", lambda: gemini_error(400, "INVALID_ARGUMENT", "The input token count (1200000) "
                                    "exceeds the maximum number of tokens allowed (1048576)."),
     errors.ContextWindowExceeded, None),
    ("google", lambda: gemini_error(400, "FAILED_PRECONDITION"), errors.QuotaExceeded, None),
    ("google", lambda: gemini_error(403, "PERMISSION_DENIED"), errors.AuthenticationError, None),
    ("google", lambda: gemini_error(404, "NOT_FOUND"), errors.ModelNotFound, None),
    ("google", lambda: gemini_error(429, "RESOURCE_EXHAUSTED", details=GEMINI_RETRY),
     errors.RateLimited, 38.0),
    ("google", lambda: gemini_error(429, "RESOURCE_EXHAUSTED"), errors.RateLimited, None),
    ("google", lambda: gemini_error(429, "RESOURCE_EXHAUSTED", details=GEMINI_DAILY),
     errors.QuotaExceeded, None),
    ("google", lambda: gemini_error(500, "INTERNAL"), errors.ProviderServerError, None),
    ("google", lambda: gemini_error(503, "UNAVAILABLE"), errors.ProviderOverloaded, None),
    ("google", lambda: gemini_error(504, "DEADLINE_EXCEEDED"), errors.ProviderServerError, None),
    # Ollama
    ("ollama", lambda: ollama_error(400, "model is required"), errors.InvalidRequest, None),
    ("ollama", lambda: ollama_error(400, "input length exceeds the context length"),
     errors.ContextWindowExceeded, None),
    ("ollama", lambda: ollama_error(404, "model 'x' not found"), errors.ModelNotFound, None),
    ("ollama", lambda: ollama_error(500, "the model failed to generate a response"),
     errors.ProviderServerError, None),
    ("ollama", lambda: ollama_error(503, "server busy, please try again.  maximum pending "
                                    "requests exceeded"), errors.ProviderOverloaded, None),
    ("ollama", lambda: httpx.Response(502, content=b"bad gateway"), errors.ProviderServerError, None),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "reply", "cls", "retry_after_s"), CLASSIFICATION)
def test_error_classification(kind, reply, cls, retry_after_s):
    response = reply()
    err = raises(kind, lambda r: response)
    assert type(err) is cls
    assert err.provider == kind and err.model_id == f"{kind}-model"
    assert err.http_status == response.status_code
    assert err.retry_after_s == retry_after_s
    assert str(response.status_code) in str(err)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls and clone.fields == err.fields and str(clone) == str(err)


def test_raw_types_recorded():
    assert (
        raises(
            "openai", lambda r: openai_error(429, "insufficient_quota", "insufficient_quota")
        ).raw_type
        == "insufficient_quota"
    )
    assert raises("anthropic", lambda r: anthropic_error(529, "overloaded_error")).raw_type == (
        "overloaded_error"
    )
    assert (
        raises(
            "google", lambda r: gemini_error(400, "INVALID_ARGUMENT", "x", GEMINI_BAD_KEY)
        ).raw_type
        == "API_KEY_INVALID"
    )
    assert raises("google", lambda r: gemini_error(503, "UNAVAILABLE")).raw_type == "UNAVAILABLE"


def test_transient_and_failover_flags():
    assert raises("openai", lambda r: openai_error(500, "server_error", None)).transient
    assert not raises("openai", lambda r: openai_error(401, "x", "invalid_api_key")).transient
    bad = raises("openai", lambda r: openai_error(400, "invalid_request_error", None))
    assert not bad.transient and not bad.failover


# -- secrets and prompts never leak --------------------------------------------------------------

LEAKY = [
    ("openai", lambda: openai_error(401, "invalid_request_error", "invalid_api_key",
                                    f"Incorrect API key provided: {KEY}. You can find your key…")),
    ("openai", lambda: openai_error(400, f"invalid {KEY}", f"bad {PROMPT}", f"{PROMPT} {KEY}")),
    ("openai", lambda: openai_error(401, KEY, KEY, KEY)),
    ("anthropic", lambda: anthropic_error(400, "invalid_request_error",
                                          f"messages.0.content: '{PROMPT}' x-api-key {KEY}")),
    ("google", lambda: gemini_error(400, "INVALID_ARGUMENT", f"API key not valid: {KEY} {PROMPT}")),
    ("ollama", lambda: ollama_error(400, f"cannot parse {PROMPT} with key {KEY}")),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "reply"), LEAKY)
def test_error_never_contains_key_or_prompt(kind, reply, caplog):
    caplog.set_level(logging.DEBUG, logger="api_model_management")
    response = reply()
    err = raises(kind, lambda r: response)
    texts = [str(err), repr(err), repr(err.fields), pickle.dumps(err).decode("latin-1")]
    texts += [rec.getMessage() for rec in caplog.records]
    for text in texts:
        assert KEY not in text and "SeCrEt" not in text
        assert PROMPT not in text


def test_logs_of_a_successful_call_and_adapter_repr_hold_no_secret(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="api_model_management")  # whatever an entry point set

    async def go():
        a = adapter("openai", lambda r: json_reply(OPENAI_OK))
        await a.complete(request(), model_config("openai"))
        text = repr(a)
        await a.aclose()
        return text

    text = run(go())
    for record in [*caplog.records]:
        assert KEY not in record.getMessage() and PROMPT not in record.getMessage()
    assert KEY not in text
    assert any(r.name.startswith("api_model_management.providers") for r in caplog.records)


def test_redact_masks_keys():
    assert KEY not in redact(f"Incorrect API key provided: {KEY}.")
    assert "AIzaSyA1234567890abc" not in redact("key AIzaSyA1234567890abc here")
    assert "tok123" not in redact("Authorization: Bearer tok123")


# =============================================================================================
# transport failures and timeouts


@pytest.mark.parametrize(
    ("exc", "cls", "phase"),
    [
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            errors.ProviderConnectionError,
            None,
        ),
        (httpx.RemoteProtocolError("Server disconnected"), errors.ProviderConnectionError, None),
        (httpx.ReadError("reset by peer"), errors.ProviderConnectionError, None),
        (httpx.ConnectTimeout("connect"), errors.ProviderTimeout, "connect"),
        (httpx.ReadTimeout("read"), errors.ProviderTimeout, "read"),
        (httpx.PoolTimeout("pool"), errors.ProviderTimeout, "connect"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_transport_errors_are_translated(exc, cls, phase, stream):
    def handler(req):
        raise exc

    err = raises("anthropic", handler, stream=stream)
    assert type(err) is cls and err.transient
    assert err.raw_type == type(exc).__name__ and err.http_status is None
    if phase:
        assert phase in str(err)


@pytest.mark.parametrize("stream", [False, True])
def test_undecodable_content_encoding_is_malformed(stream):
    def handler(req):
        return httpx.Response(
            200, content=b"definitely not gzip", headers={"content-encoding": "gzip"}
        )

    err = raises("openai", handler, stream=stream)
    assert type(err) is errors.MalformedResponse and err.raw_type == "DecodingError"


# ---------------------------------------------------------------------------------------------
# max_response_bytes

LIMIT = 2048


def limited(kind: str, reply: httpx.Response, *, stream: bool = False, limit: int = LIMIT):
    """The adapter's outcome (a result, chunks or the error) with ``max_response_bytes=limit``."""

    async def go():
        a = adapter(kind, lambda r: reply, max_response_bytes=limit)
        try:
            if stream:
                return [c async for c in a.stream(request(), model_config(kind))]
            return await a.complete(request(), model_config(kind))
        except (errors.ProviderError, errors.StreamInterrupted) as exc:
            return exc
        finally:
            await a.aclose()

    return run(go())


class Body:
    """A large body served in 1 KiB pieces, counting what the adapter read."""

    def __init__(self, size: int, piece: bytes = b'{"pad": "' + b"x" * 1014 + b'"}') -> None:
        self.size, self.piece, self.read = size, piece, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < self.size:
            self.read += len(self.piece)
            yield self.piece


def assert_too_large(err: BaseException, kind: str, limit: int = LIMIT) -> None:
    assert type(err) is errors.ResponseTooLarge and isinstance(err, errors.MalformedResponse)
    assert err.transient and err.failover and err.error_kind == "response_too_large"
    assert f"max_response_bytes={limit}" in str(err) and err.limit_bytes == limit
    assert (err.provider, err.model_id) == (kind, f"{kind}-model") and "xxxx" not in str(err)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is errors.ResponseTooLarge and clone.limit_bytes == limit


@pytest.mark.parametrize("kind", list(BASES))
def test_a_reply_above_max_response_bytes_is_refused_as_it_arrives(kind):
    body = Body(20 * 1024 * 1024)
    err = limited(kind, httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    assert_too_large(err, kind)
    assert body.read <= LIMIT + 1024  # stopped at the limit, not after 20 MiB


@pytest.mark.parametrize("kind", list(BASES))
def test_a_declared_content_length_above_the_limit_is_refused_before_reading(kind):
    body = Body(20 * 1024 * 1024)
    reply = httpx.Response(200, content=body, headers={"content-length": str(20 * 1024 * 1024)})
    assert_too_large(limited(kind, reply), kind)
    assert body.read == 0


@pytest.mark.parametrize("kind", list(BASES))
def test_a_reply_of_exactly_the_limit_is_read(kind):
    payload = orjson.dumps(OK[kind])
    result = limited(kind, httpx.Response(200, content=payload), limit=len(payload))
    assert not isinstance(result, BaseException) and result.text == "Hello!"
    assert_too_large(limited(kind, httpx.Response(200, content=payload), limit=len(payload) - 1),
                     kind, len(payload) - 1)


@pytest.mark.parametrize("kind", list(STREAMS))
def test_streamed_text_above_the_limit(kind):
    first, second = "é" * 300, "b" * 600  # 600 bytes of UTF-8 each
    events = [e.replace('"Hel"', f'"{first}"').replace('"lo"', f'"{second}"')
              for e in STREAMS[kind][0]]
    ok = limited(kind, stream_body(kind, events), stream=True, limit=1200)
    assert not isinstance(ok, BaseException) and ok[-1].result.text == first + second
    late = limited(kind, stream_body(kind, events), stream=True, limit=1199)
    assert isinstance(late, errors.StreamInterrupted) and late.partial_text == first
    assert late.cause_kind == "response_too_large" and "é" not in str(late)
    early = limited(kind, stream_body(kind, events), stream=True, limit=599)  # before any text
    assert_too_large(early, kind, 599)


@pytest.mark.parametrize("kind", list(STREAMS))
def test_a_stream_line_longer_than_the_limit_is_refused_unbuffered(kind):
    body = Body(20 * 1024 * 1024, piece=b"x" * 1024)  # one endless line
    reply = httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    assert_too_large(limited(kind, reply, stream=True), kind)
    assert body.read <= LIMIT + 1024
    many_lines = Body(64 * 1024, piece=b"\n" * 1024)  # 1 KiB pieces of empty lines
    reply = httpx.Response(200, content=many_lines, headers={"content-type": "text/event-stream"})
    err = limited(kind, reply, stream=True, limit=64)
    assert type(err) is errors.ProviderConnectionError  # no terminator, but no line too long
    assert many_lines.read >= 64 * 1024


def test_total_timeout_is_enforced():
    async def slow(req):
        await asyncio.Event().wait()  # never answers

    async def go():
        a = adapter("openai", slow)
        try:
            await a.complete(request(), model_config("openai"), timeout_s=0.02)
        finally:
            await a.aclose()

    with pytest.raises(errors.ProviderTimeout, match="total") as info:
        run(go())
    assert info.value.raw_type == "TimeoutError"


def test_total_timeout_applies_to_the_whole_stream():
    async def trickle():
        yield (OPENAI_STREAM[2] + "\n\n").encode()
        await asyncio.Event().wait()

    def handler(req):
        return httpx.Response(200, content=trickle(), headers={"content-type": "text/event-stream"})

    async def go():
        a = adapter("openai", handler)
        try:
            return [c async for c in a.stream(request(), model_config("openai"), timeout_s=0.02)]
        finally:
            await a.aclose()

    with pytest.raises(errors.StreamInterrupted) as info:
        run(go())
    assert info.value.partial_text == "Hel" and info.value.cause_kind == "timeout"


def test_timeouts_from_config_reach_httpx():
    seen = []

    def handler(req):
        seen.append(req.extensions["timeout"])
        return json_reply(OPENAI_OK)

    async def go():
        cfg = ProviderConfig(type="openai", base_url=BASES["openai"],
                             timeouts={"connect_s": 1.5, "read_s": 9.0, "total_s": 30.0})  # fmt: skip
        a = make_adapter("openai", cfg, None, transport=httpx.MockTransport(handler))
        await a.complete(request(), model_config("openai"))
        await a.complete(request(), model_config("openai"), timeout_s=2.0)
        await a.aclose()

    run(go())
    assert seen[0] == {"connect": 1.5, "read": 9.0, "write": 9.0, "pool": 1.5}
    assert seen[1] == {"connect": 1.5, "read": 2.0, "write": 2.0, "pool": 1.5}


# =============================================================================================
# probes, factory, lifecycle


PROBES = {
    "openai": ("/v1/models", {"object": "list", "data": [{"id": "gpt-4o-mini"}, {"id": "o3"}]},
               ("gpt-4o-mini", "o3")),
    "anthropic": ("/v1/models", {"data": [{"type": "model", "id": "claude-x"}], "has_more": False},
                  ("claude-x",)),
    "google": ("/v1beta/models", {"models": [{"name": "models/gemini-2.5-flash"}]},
               ("gemini-2.5-flash",)),
    "ollama": ("/api/tags", {"models": [{"name": "llama3.2:latest"}]}, ("llama3.2:latest", "llama3.2")),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(PROBES))
def test_probe_ok_lists_models(kind):
    path, body, models = PROBES[kind]
    seen, handler = capture(json_reply(body))
    clock = ManualClock()

    def timed(req):
        clock.advance(0.05)
        return handler(req)

    async def go():
        a = adapter(kind, timed, clock)
        result = await a.probe()
        await a.aclose()
        return result

    result = run(go())
    assert result.ok and result.http_status == 200 and result.models == models
    assert result.latency_ms == pytest.approx(50.0) and result.error_kind is None
    assert seen[0].method == "GET" and seen[0].url.path == path
    if kind == "anthropic":
        assert seen[0].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(
    ("kind", "reply", "status", "error_kind"),
    [
        ("openai", lambda r: openai_error(401, "invalid_request_error", "invalid_api_key"), 401, "auth"),
        ("google", lambda r: gemini_error(503, "UNAVAILABLE"), 503, "overloaded"),
        ("anthropic", lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), None,
         "connection"),
    ],
)  # fmt: skip
def test_probe_failure_is_reported_not_raised(kind, reply, status, error_kind):
    async def go():
        a = adapter(kind, reply)
        result = await a.probe()
        await a.aclose()
        return result

    result = run(go())
    assert not result.ok and result.http_status == status and result.error_kind == error_kind


def test_probe_uses_configured_path_and_accepts_plain_text():
    seen, handler = capture(httpx.Response(200, content=b"Ollama is running"))

    async def go():
        a = adapter("ollama", handler, health_check={"path": "/"})
        result = await a.probe()
        await a.aclose()
        return result

    result = run(go())
    assert result.ok and result.models is None
    assert str(seen[0].url) == "http://ollama.test:11434/"


def test_make_adapter_by_type_and_injected_client_is_not_closed():
    classes = {"openai": OpenAIAdapter, "anthropic": AnthropicAdapter, "google": GeminiAdapter,
               "ollama": OllamaAdapter}  # fmt: skip
    for kind, cls in classes.items():
        a = make_adapter(f"my-{kind}", provider_config(kind), None)
        assert type(a) is cls and a.name == f"my-{kind}"
        run(a.aclose())

    async def go():
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: json_reply(OPENAI_OK)))
        a = make_adapter("openai", provider_config("openai"), None, client=client)
        await a.aclose()
        result = await a.complete(request(), model_config("openai"))  # the client still works
        await client.aclose()
        return result

    assert run(go()).text == "Hello!"


def test_connection_pool_size_from_config():
    a = make_adapter("openai", provider_config("openai", max_connections=7, http_client="httpx"), None)
    pool = a._client._transport._pool
    assert pool._max_connections == 7
    run(a.aclose())


def test_aiohttp_pool_size_from_config():
    from api_model_management.providers._aiohttp import AiohttpTransport

    a = make_adapter("openai", provider_config("openai", max_connections=7), None)
    transport = a._client._transport
    assert isinstance(transport, AiohttpTransport) and transport._max_connections == 7
    run(a.aclose())


# ---------------------------------------------------------------------------------------------
# exposure (issue 10, item 11): a provider that echoes a key in its error code


KEY_SHAPED_CODES = [KEY, "a1b2c3d4e5f6g7h8i9j0k1l2", "AKIAIOSFODNN7EXAMPLE"]


@pytest.mark.parametrize("code", KEY_SHAPED_CODES)
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_key_shaped_error_code_never_reaches_a_message_or_a_log(kind, code, caplog):
    body = {"error": {"type": code, "code": code, "message": f"bad key {code}"}}
    if kind == "anthropic":
        body = {"type": "error", "error": {"type": code, "message": f"bad key {code}"}}
    with caplog.at_level(logging.DEBUG, logger="api_model_management"):
        with pytest.raises(errors.ProviderError) as info:
            complete(kind, lambda r: json_reply(body, status=400))
        logging.getLogger("api_model_management.test").info("failed: %s %r", info.value, info.value.fields)
    text = str(info.value) + repr(info.value.fields) + caplog.text
    assert code not in text


def test_making_an_adapter_registers_its_key_for_redaction(caplog):
    from api_model_management.config._logging import contains_secret

    secret = "zz-private-7f3a9c1e"  # not key-shaped by any pattern: only registration finds it
    assert not contains_secret(f"x {secret} y")
    make_adapter("openai", provider_config("openai"), SecretStr(secret))
    assert contains_secret(f"x {secret} y")
    with caplog.at_level(logging.INFO, logger="api_model_management"):
        logging.getLogger("api_model_management.providers").info("echo %s", secret)
    assert secret not in caplog.text
