"""The four adapters against the emulator over real loopback HTTP: success, streaming, each error
class (``x-emulator-fault: status=<code>`` and bad keys), timeouts, dropped connections, mid-stream
errors, malformed bodies and probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from pydantic import SecretStr

from api_model_management import errors
from api_model_management._request import ModelRequest, StreamChunk
from api_model_management.config import ModelConfig, ProviderConfig
from api_model_management.emulator import Profile
from api_model_management.providers import ProviderAdapter, cost_usd, make_adapter

pytestmark = pytest.mark.integration

KINDS = ("openai", "anthropic", "google", "ollama")
WIRE = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
        "ollama": "llama3.2"}  # fmt: skip
KEY = "sk-test-integration-0123456789"
PROMPT = "Explain the constraints briefly, please"
FAULT = "x-emulator-fault"


def model_config(kind: str) -> ModelConfig:
    return ModelConfig(
        id=f"{kind}-model",
        provider=kind,
        name=kind,
        capabilities=["text-generation"],
        cost_per_1k_input_tokens=Decimal("0.001"),
        cost_per_1k_output_tokens=Decimal("0.002"),
        rate_limits={"requests_per_minute": 600, "tokens_per_minute": 1_000_000},
        context_window=8192,
        average_response_time_ms=100,
        provider_model=WIRE[kind],
    )


def make(emulator, kind: str, key: str | None = KEY, **timeouts) -> ProviderAdapter:
    config = ProviderConfig(
        type=kind,
        base_url=emulator.url_for(kind),
        max_connections=16,
        timeouts=timeouts or {"connect_s": 2.0, "read_s": 10.0, "total_s": 15.0},
    )
    return make_adapter(kind, config, SecretStr(key) if key is not None else None)  # fmt: skip


def request(max_tokens: int = 40) -> ModelRequest:
    return ModelRequest(prompt=PROMPT, system="Be terse.", max_tokens=max_tokens,
                        parameters={"temperature": 0.0})  # fmt: skip


def with_adapter(emulator, kind: str, use: Callable[[ProviderAdapter], Awaitable], **kw):
    async def go():
        adapter = make(emulator, kind, **kw)
        try:
            return await use(adapter)
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def complete(emulator, kind: str, fault: str | None = None, timeout_s: float | None = None, **kw):
    headers = {FAULT: fault} if fault else None
    return with_adapter(emulator, kind, lambda a: a.complete(
        request(), model_config(kind), headers=headers, timeout_s=timeout_s), **kw)  # fmt: skip


def stream(emulator, kind: str, fault: str | None = None, timeout_s: float | None = None,
           **kw) -> list[StreamChunk]:  # fmt: skip
    headers = {FAULT: fault} if fault else None

    async def use(a):
        return [c async for c in a.stream(request(), model_config(kind), headers=headers,
                                          timeout_s=timeout_s)]  # fmt: skip

    return with_adapter(emulator, kind, use, **kw)


def failure(call: Callable[[], object]) -> BaseException:
    with pytest.raises((errors.ProviderError, errors.StreamInterrupted)) as info:
        call()
    return info.value


# =============================================================================================
# success


@pytest.mark.parametrize("kind", KINDS)
def test_complete(emulator, kind):
    result = complete(emulator, kind)
    assert result.text.strip()
    assert result.finish_reason in ("stop", "length")
    assert result.input_tokens > 0 and 0 < result.output_tokens <= 40
    assert result.latency_ms > 0 and result.time_to_first_token_ms is None
    if kind != "ollama":
        assert result.provider_request_id
    if kind in ("openai", "anthropic"):
        assert result.rate_limit is not None and result.rate_limit.limit_requests > 0
        assert result.rate_limit.reset_requests_s is not None
    assert cost_usd(model_config(kind), result.input_tokens, result.output_tokens) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_stream(emulator, kind):
    chunks = stream(emulator, kind)
    *deltas, final = chunks
    assert final.done and final.result is not None and not any(c.done for c in deltas)
    assert len(deltas) >= 2 and all(c.delta for c in deltas)
    result = final.result
    assert result.text == "".join(c.delta for c in deltas)
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert result.finish_reason in ("stop", "length")
    assert 0 < result.time_to_first_token_ms <= result.latency_ms
    if kind != "ollama":
        assert result.provider_request_id


@pytest.mark.parametrize("kind", KINDS)
def test_probe(emulator, kind):
    result = with_adapter(emulator, kind, lambda a: a.probe())
    assert result.ok and result.http_status == 200 and result.error_kind is None
    assert any(name.startswith(WIRE[kind]) for name in result.models)


def test_one_pool_serves_concurrent_calls(emulator):
    async def use(adapter):
        calls = [adapter.complete(request(8), model_config("openai")) for _ in range(40)]
        return await asyncio.gather(*calls)

    results = with_adapter(emulator, "openai", use)
    assert len(results) == 40 and all(r.text for r in results)


# =============================================================================================
# error statuses

STATUS_CASES = [
    (400, {"openai": errors.InvalidRequest, "anthropic": errors.InvalidRequest,
           "google": errors.InvalidRequest, "ollama": errors.InvalidRequest}),
    (401, {"openai": errors.AuthenticationError, "anthropic": errors.AuthenticationError,
           "google": errors.AuthenticationError, "ollama": errors.AuthenticationError}),
    (403, {"openai": errors.AuthenticationError, "anthropic": errors.AuthenticationError,
           "google": errors.AuthenticationError, "ollama": errors.AuthenticationError}),
    (404, {"openai": errors.ModelNotFound, "anthropic": errors.ModelNotFound,
           "google": errors.ModelNotFound, "ollama": errors.ModelNotFound}),
    (429, {"openai": errors.RateLimited, "anthropic": errors.RateLimited,
           "google": errors.RateLimited, "ollama": errors.RateLimited}),
    (500, {"openai": errors.ProviderServerError, "anthropic": errors.ProviderServerError,
           "google": errors.ProviderServerError, "ollama": errors.ProviderServerError}),
    (503, {"openai": errors.ProviderOverloaded, "anthropic": errors.ProviderServerError,
           "google": errors.ProviderOverloaded, "ollama": errors.ProviderOverloaded}),
    (529, {"anthropic": errors.ProviderOverloaded}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "status", "cls"),
    [(kind, status, cls) for status, table in STATUS_CASES for kind, cls in table.items()],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_error_status(emulator, kind, status, cls, streamed):
    call = stream if streamed else complete
    err = failure(lambda: call(emulator, kind, f"status={status}"))
    assert type(err) is cls
    assert (err.provider, err.model_id, err.http_status) == (kind, f"{kind}-model", status)
    if status == 429 and kind != "ollama":  # Ollama sends no retry hint
        assert err.retry_after_s == 1.0


@pytest.mark.parametrize("kind", ["openai", "anthropic", "google"])
@pytest.mark.parametrize("key", ["invalid", None])
def test_bad_or_missing_key(emulator, kind, key, caplog):
    caplog.set_level(logging.DEBUG, logger="api_model_management")
    err = failure(lambda: complete(emulator, kind, key=key))
    assert isinstance(err, errors.AuthenticationError) and not err.transient
    assert err.http_status in (400, 401, 403)
    probe = with_adapter(emulator, kind, lambda a: a.probe(), key=key)
    assert not probe.ok and probe.error_kind == "auth"
    for text in [str(err), repr(err.fields), *(r.getMessage() for r in caplog.records)]:
        assert PROMPT not in text and (key is None or f"Bearer {key}" not in text)


def test_rejected_key_never_appears_in_errors_or_logs(fresh_emulator, caplog):
    secret = "sk-live-SECRET-abcdef0123456789"
    fresh_emulator.set_profile(Profile(valid_keys=["sk-the-only-good-key"]))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="api_model_management")  # whatever an entry point set
    for kind in ("openai", "anthropic", "google"):
        err = failure(lambda kind=kind: complete(fresh_emulator, kind, key=secret))
        assert isinstance(err, errors.AuthenticationError)
        assert secret not in str(err) and secret not in repr(err.fields)
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_unknown_model_is_model_not_found(fresh_emulator):
    fresh_emulator.set_profile(Profile(strict_models=True))

    async def use(adapter):
        unknown = model_config("anthropic").model_copy(update={"provider_model": "claude-nope-1"})
        return await adapter.complete(request(), unknown)

    err = failure(lambda: with_adapter(fresh_emulator, "anthropic", use))
    assert isinstance(err, errors.ModelNotFound) and err.http_status == 404


# =============================================================================================
# transport faults


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True])
def test_read_timeout(emulator, kind, streamed):
    call = stream if streamed else complete
    err = failure(lambda: call(emulator, kind, "timeout", connect_s=2.0, read_s=0.2, total_s=10.0))
    assert type(err) is errors.ProviderTimeout and err.transient
    assert "read" in str(err) and err.raw_type == "ReadTimeout"


@pytest.mark.parametrize("kind", KINDS)
def test_total_timeout(emulator, kind):
    err = failure(lambda: complete(emulator, kind, "timeout", timeout_s=0.2))
    assert type(err) is errors.ProviderTimeout
    assert err.raw_type in ("TimeoutError", "ReadTimeout")  # read is capped at the total too


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True])
def test_dropped_connection(emulator, kind, streamed):
    call = stream if streamed else complete
    err = failure(lambda: call(emulator, kind, "drop"))
    assert type(err) is errors.ProviderConnectionError and err.transient


def test_refused_connection():
    config = ProviderConfig(type="openai", base_url="http://127.0.0.1:9/v1",
                            timeouts={"connect_s": 1.0, "read_s": 1.0, "total_s": 2.0})  # fmt: skip

    async def go():
        adapter = make_adapter("openai", config, SecretStr(KEY))
        try:
            probe = await adapter.probe()
            with pytest.raises(errors.ProviderConnectionError):
                await adapter.complete(request(), model_config("openai"))
            return probe
        finally:
            await adapter.aclose()

    probe = asyncio.run(go())
    assert not probe.ok and probe.error_kind == "connection" and probe.http_status is None


@pytest.mark.parametrize("kind", KINDS)
def test_midstream_error_keeps_partial_text(emulator, kind):
    err = failure(lambda: stream(emulator, kind, "midstream-error"))
    assert isinstance(err, errors.StreamInterrupted)
    assert err.partial_text.strip() and err.partial_text not in str(err)
    assert err.provider == kind and err.model_id == f"{kind}-model"
    assert err.cause_kind in ("server_error", "overloaded", "connection")


@pytest.mark.parametrize("kind", KINDS)
def test_body_cut_in_a_plain_reply(emulator, kind):
    err = failure(lambda: complete(emulator, kind, "midstream-error"))
    assert type(err) in (errors.ProviderConnectionError, errors.MalformedResponse)
    assert err.transient


@pytest.mark.parametrize("kind", KINDS)
def test_malformed(emulator, kind):
    err = failure(lambda: complete(emulator, kind, "malformed"))
    assert type(err) is errors.MalformedResponse and err.http_status == 200
    streamed = failure(lambda: stream(emulator, kind, "malformed"))
    assert isinstance(streamed, errors.StreamInterrupted)
    assert streamed.cause_kind == "malformed_response" and streamed.partial_text


@pytest.mark.parametrize(
    ("fault", "error_kind"),
    [("status=503", "overloaded"), ("status=429", "rate_limited"), ("drop", "connection")],
)
@pytest.mark.parametrize("kind", KINDS)
def test_probe_failures(emulator, kind, fault, error_kind):
    expected = "server_error" if (kind, fault) == ("anthropic", "status=503") else error_kind
    result = with_adapter(emulator, kind, lambda a: a.probe(headers={FAULT: fault}))
    assert not result.ok and result.error_kind == expected and result.models is None


# =============================================================================================
# the size of a reply (max_response_bytes) and absurd usage

SMALL_LIMIT = 64 * 1024


def limited_adapter(emulator, kind: str) -> ProviderAdapter:
    config = ProviderConfig(type=kind, base_url=emulator.url_for(kind), max_connections=4,
                            timeouts={"connect_s": 2.0, "read_s": 10.0, "total_s": 15.0},
                            max_response_bytes=SMALL_LIMIT)  # fmt: skip
    return make_adapter(kind, config, SecretStr(KEY))


@pytest.mark.parametrize("kind", KINDS)
def test_an_oversized_reply_is_refused_and_the_pool_stays_usable(emulator, kind):
    oversized = {FAULT: "oversized=4000000"}  # 4 MB of text, refused after 64 KiB

    async def go():
        adapter = limited_adapter(emulator, kind)
        try:
            with pytest.raises(errors.ResponseTooLarge) as plain:
                await adapter.complete(request(), model_config(kind), headers=oversized)
            with pytest.raises(errors.StreamInterrupted) as streamed:
                async for _ in adapter.stream(request(), model_config(kind), headers=oversized):
                    pass
            after = await adapter.complete(request(), model_config(kind))  # a clean connection
            return plain.value, streamed.value, after
        finally:
            await adapter.aclose()

    plain, streamed, after = asyncio.run(go())
    assert plain.transient and plain.failover and plain.limit_bytes == SMALL_LIMIT
    assert f"max_response_bytes={SMALL_LIMIT}" in str(plain) and "xxxx" not in str(plain)
    # the stream delivered text before it passed the limit: interrupted, never more than the limit
    assert streamed.cause_kind == "response_too_large"
    assert 0 < len(streamed.partial_text.encode()) <= SMALL_LIMIT
    assert after.text and after.finish_reason in ("stop", "length")


@pytest.mark.parametrize("kind", KINDS)
def test_absurd_reported_usage_is_settled_within_the_bound(emulator, kind):
    from api_model_management.budget import settle_usage, usage_bound, worst_case_cost_usd

    result = complete(emulator, kind, "inflated-usage")
    assert result.output_tokens >= 5_000_000  # passed through as reported
    model, req = model_config(kind), request()
    bound = usage_bound(model, req.input_token_bound(), req.max_tokens)
    settled = settle_usage(model, bound, result.input_tokens, result.output_tokens,
                           result.cached_tokens)  # fmt: skip
    assert settled.cost_usd <= worst_case_cost_usd(model, req.input_token_bound(), req.max_tokens)
    assert [o.metric for o in settled.overruns] == ["output_tokens"]
    normal = complete(emulator, kind)  # the emulator's real usage is within the bound
    assert settle_usage(model, bound, normal.input_tokens, normal.output_tokens).overruns == ()


def test_the_router_fails_over_from_an_oversized_reply(fresh_emulator, tmp_path):
    from api_model_management import SelectionConstraints
    from api_model_management.config._load import demo_config, override, with_provider_base_urls
    from api_model_management.events import PerformanceAlert, RequestCompleted
    from api_model_management.routing import ListEvents, build_local_router

    fresh_emulator.set_profile(Profile.model_validate(
        {"models": {"gpt-4.1-mini": {"oversized_rate": 1.0, "oversized_bytes": 4_000_000}}}))
    config = demo_config()
    config = with_provider_base_urls(
        config, {n: fresh_emulator.url_for(p.type) for n, p in config.providers.items()})
    config = override(config, providers={n: {"max_response_bytes": SMALL_LIMIT}
                                         for n in config.providers})  # fmt: skip
    keys = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
    events = ListEvents()
    router = build_local_router(config, env=keys, data_dir=tmp_path, events=events)
    allowed = SelectionConstraints(allowed_models=("gpt-4.1-mini", "claude-haiku-4-5"))

    async def go():
        try:
            return await router.complete(ModelRequest(prompt=PROMPT, constraints=allowed,
                                                      max_tokens=60))  # fmt: skip
        finally:
            for adapter in router.adapters.values():
                await adapter.aclose()

    response = asyncio.run(go())
    assert response.model_id == "claude-haiku-4-5" and response.attempts == 2
    failed = [e for e in events.events if type(e).__name__ == "AttemptFailed"]
    assert [(e.model_id, e.error_kind) for e in failed] == [("gpt-4.1-mini", "response_too_large")]
    done = [e for e in events.events if isinstance(e, RequestCompleted)]
    assert len(done) == 1 and done[0].cost_usd == response.cost_usd
    assert not [e for e in events.events if isinstance(e, PerformanceAlert)]
