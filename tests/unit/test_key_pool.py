"""Key pools (issue 12, item 5): several API keys per provider, each with its own limits.

The pool alone on a ManualClock; the configuration (``api_key_envs``), the secrets and the
limits a RateLimiter holds a model to; then the real adapters and a RouterCore against the
emulator in process (``httpx.ASGITransport``, per-key limits in its profile), on one ManualClock.
No Ray, no sockets.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management._clock import ManualClock
from api_model_management.cli import app
from api_model_management.config import (
    ApiKey,
    ModelConfig,
    RateLimits,
    RegistryConfig,
    config_from_dict,
    demo_config,
    load_secrets,
)
from api_model_management.emulator import Engine, create_app, parse_profile
from api_model_management.errors import (
    AllCandidatesFailed,
    AuthenticationError,
    ConfigError,
    InvalidInput,
    RateLimited,
)
from api_model_management.events import AttemptFailed, FailoverTriggered, RequestCompleted
from api_model_management.health._core import HealthCore
from api_model_management.providers import KeyPool, ProviderAdapter, make_adapter
from api_model_management.providers._keys import COOL_DOWN_DEFAULT_S, SET_ASIDE_S, keys_of
from api_model_management.ratelimit import RateLimitState
from api_model_management.routing import ListEvents, build_local_router

from _fakes import of_type

pytestmark = pytest.mark.unit

T = TypeVar("T")
KEY_A = "sk-pool-key-aaaaaaaa-1111"
KEY_B = "sk-pool-key-bbbbbbbb-2222"
KEY_C = "sk-pool-key-cccccccc-3333"
#: One demo model per provider (its name in the demo registry).
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "ollama": "llama3.2"}  # fmt: skip
WITH_KEYS = ["openai", "anthropic", "google"]
#: Limits no test reaches (a key the emulator's statistics then count).
ROOMY = {"requests_per_minute": 10_000}


def pool(*names: str, clock: ManualClock | None = None) -> KeyPool:
    return KeyPool("openai", [ApiKey(n, SecretStr(f"value-of-{n}")) for n in names],
                   clock=clock or ManualClock())


def picks(keys: KeyPool, scope: str, n: int) -> list[int | None]:
    return [keys.pick(scope) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# the pool


def test_calls_go_round_robin_over_the_keys() -> None:
    keys = pool("A", "B", "C")
    assert picks(keys, "m", 7) == [0, 1, 2, 0, 1, 2, 0]
    assert [k.calls for k in keys.snapshot()] == [3, 2, 2]
    assert len(keys) == 3 and keys.names == ("A", "B", "C")


def test_a_429_cools_only_that_key_and_only_for_that_model() -> None:
    clock = ManualClock()
    keys = pool("A", "B", "C", clock=clock)
    keys.cool_down(0, "m", 5.0)
    assert picks(keys, "m", 4) == [1, 2, 1, 2]
    assert keys.pick("other") == 0  # the same key still serves another model
    assert keys.retry_after_s("m") == 0.0  # the provider is not rate-limited for m
    clock.advance(5.0)
    assert 0 in picks(keys, "m", 3)
    state = keys.snapshot()[0]
    assert state.rate_limited == 1 and state.cooling_s == {}


def test_every_key_cooling_means_rate_limited_until_the_first_frees() -> None:
    clock = ManualClock()
    keys = pool("A", "B", clock=clock)
    keys.cool_down(0, "m", 30.0)
    keys.cool_down(1, "m", 12.0)
    assert keys.pick("m") is None
    assert keys.retry_after_s("m") == pytest.approx(12.0)
    assert keys.snapshot()[1].cooling_s == {"m": pytest.approx(12.0)}
    clock.advance(12.0)
    assert picks(keys, "m", 2) == [1, 1]
    assert keys.retry_after_s("m") == 0.0


def test_a_429_without_a_hint_cools_for_the_default() -> None:
    clock = ManualClock()
    keys = pool("A", clock=clock)
    keys.cool_down(0, "m", None)
    assert keys.pick("m") is None and keys.retry_after_s("m") == pytest.approx(COOL_DOWN_DEFAULT_S)
    keys.cool_down(0, "m", 0.0)  # a zero hint is no hint; the longer cool-down stands
    assert keys.retry_after_s("m") == pytest.approx(COOL_DOWN_DEFAULT_S)


def test_a_refused_key_is_set_aside_but_never_the_last_in_rotation() -> None:
    clock = ManualClock()
    keys = pool("A", "B", clock=clock)
    assert keys.set_aside(0) is True
    assert picks(keys, "m", 3) == [1, 1, 1]
    assert keys.set_aside(1) is False  # the last key in rotation: its errors go up as they are
    assert keys.pick("m") == 1
    assert [k.refused for k in keys.snapshot()] == [1, 1]
    assert keys.snapshot()[0].set_aside_s == pytest.approx(SET_ASIDE_S)
    clock.advance(SET_ASIDE_S)
    assert sorted(picks(keys, "m", 2)) == [0, 1]  # back in rotation by itself


def test_with_one_key_the_reported_limits_pass_through_unchanged() -> None:
    keys = pool("A")
    state = RateLimitState(remaining_requests=0, reset_requests_s=20.0, remaining_tokens=5)
    assert keys.observe(0, "m", state) is state
    assert keys.pick("m") == 0  # the RateLimiter, not the pool, acts on it
    assert keys.observe(0, "m", None) is None


def test_with_several_keys_a_used_up_key_rests_and_the_model_hears_only_when_all_do() -> None:
    clock = ManualClock()
    keys = pool("A", "B", clock=clock)
    some_left = RateLimitState(remaining_requests=3, reset_requests_s=20.0)
    assert keys.observe(0, "m", some_left) is None  # one key's counts are not the model's
    assert picks(keys, "m", 2) == [0, 1]
    used_up = RateLimitState(remaining_requests=0, reset_requests_s=20.0, remaining_tokens=9)
    assert keys.observe(0, "m", used_up) is None  # B is free
    assert picks(keys, "m", 2) == [1, 1]
    clock.advance(5.0)
    tokens_gone = RateLimitState(remaining_tokens=0, reset_tokens_s=40.0)
    whole = keys.observe(1, "m", tokens_gone)
    assert whole is not None and whole.remaining_requests == 0
    assert whole.reset_requests_s == pytest.approx(15.0)  # when A frees
    assert keys.pick("m") is None and keys.retry_after_s("m") == pytest.approx(15.0)


def test_names_never_values_in_repr_and_snapshot() -> None:
    keys = pool("OPENAI_API_KEY", "OPENAI_API_KEY_2")
    keys.cool_down(1, "m", 3.0)
    keys.set_aside(0)
    shown = " ".join([repr(keys), str(keys.snapshot()), repr(ApiKey("X", SecretStr(KEY_A))),
                      str(ApiKey("X", SecretStr(KEY_A)))])
    assert "OPENAI_API_KEY_2" in shown and "value-of" not in shown and KEY_A not in shown
    assert keys.secret(1).get_secret_value() == "value-of-OPENAI_API_KEY_2"
    assert keys.name(1) == "OPENAI_API_KEY_2"


def test_keys_of_names_keys_given_directly_by_their_place() -> None:
    assert keys_of(None) == ()
    (only,) = keys_of(SecretStr(KEY_A))
    assert only.name == "#1" and only.secret.get_secret_value() == KEY_A
    named = ApiKey("MY_KEY", SecretStr(KEY_B))
    assert [k.name for k in keys_of([SecretStr(KEY_A), named])] == ["#1", "MY_KEY"]
    with pytest.raises(InvalidInput, match="key #2 is a str"):
        keys_of([SecretStr(KEY_A), KEY_B])  # type: ignore[list-item]


def test_an_empty_pool_picks_nothing_and_waits_for_nothing() -> None:
    keys = KeyPool("ollama")
    assert len(keys) == 0 and keys.pick("m") is None and keys.retry_after_s("m") == 0.0
    assert keys.snapshot() == []


# ---------------------------------------------------------------------------------------------
# configuration and secrets


def pooled(*names: str, single: str | None = "AMM_DEMO_OPENAI_KEY", **provider: Any) -> dict:
    """The demo registry as data, its openai provider with ``api_key_envs`` = ``names``."""
    data = demo_config().model_dump(mode="python")
    data["providers"]["openai"].update(api_key_env=single, api_key_envs=list(names), **provider)
    return data


def test_api_key_envs_follow_api_key_env_each_name_once() -> None:
    config = config_from_dict(pooled("K2", "AMM_DEMO_OPENAI_KEY", "K3"))
    assert config.providers["openai"].key_envs == ("AMM_DEMO_OPENAI_KEY", "K2", "K3")
    assert config_from_dict(pooled("K2", single=None)).providers["openai"].key_envs == ("K2",)
    assert config.providers["anthropic"].key_envs == ("AMM_DEMO_ANTHROPIC_KEY",)
    assert config.providers["ollama"].key_envs == ()


@pytest.mark.parametrize(("names", "message"), [
    ([], "api_key_envs is empty"),
    (["GOOD", KEY_A], "api_key_envs[1] must be the NAME of an environment variable"),
    (["GOOD", "", "X"], "api_key_envs[1] must be the NAME"),
    (["K2", "K3", "K2"], "api_key_envs[2] repeats api_key_envs[0]"),
])
def test_bad_api_key_envs_are_named_by_index_never_by_value(names: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(pooled(*names))
    (issue,) = info.value.issues
    assert issue.path == "providers.openai.api_key_envs" and message in issue.message
    assert KEY_A not in f"{info.value} {info.value.issues!r}"


def test_a_key_pasted_into_api_key_envs_is_not_echoed_by_direct_validation() -> None:
    from pydantic import ValidationError

    from api_model_management.config import ProviderConfig

    with pytest.raises(ValidationError) as info:
        ProviderConfig(type="openai", base_url="https://x", api_key_envs=[KEY_A])
    assert KEY_A not in str(info.value)
    with pytest.raises(ValidationError) as whole:
        RegistryConfig.model_validate(pooled(KEY_A))
    assert KEY_A not in str(whole.value) and "api_key_envs[0]" in str(whole.value)


def test_every_key_set_is_read_and_named_by_its_variable() -> None:
    config = config_from_dict(pooled("K2", "K3"))
    secrets = load_secrets(config, env={"AMM_DEMO_OPENAI_KEY": KEY_A, "K2": KEY_B, "K3": KEY_C})
    keys = secrets.keys_for("openai")
    assert [k.name for k in keys] == ["AMM_DEMO_OPENAI_KEY", "K2", "K3"]
    assert [k.secret.get_secret_value() for k in keys] == [KEY_A, KEY_B, KEY_C]
    assert secrets.key_for("openai").get_secret_value() == KEY_A  # the first, as before
    available, reason = secrets.availability("openai")
    assert available and reason.startswith("3 of 3 keys: key from AMM_DEMO_OPENAI_KEY (environment)")
    assert "openai=set (3 keys)" in repr(secrets)
    clone = pickle.loads(pickle.dumps(secrets))
    assert [k.secret.get_secret_value() for k in clone.keys_for("openai")] == [KEY_A, KEY_B, KEY_C]
    assert KEY_B not in repr(secrets) + repr(clone) + repr(keys)


def test_a_missing_or_repeated_key_is_said_and_the_others_are_used() -> None:
    config = config_from_dict(pooled("K2", "K3"))
    secrets = load_secrets(config, env={"AMM_DEMO_OPENAI_KEY": KEY_A, "K3": KEY_A})
    assert [k.name for k in secrets.keys_for("openai")] == ["AMM_DEMO_OPENAI_KEY"]
    available, reason = secrets.availability("openai")
    assert available and reason == (
        "1 of 3 keys: key from AMM_DEMO_OPENAI_KEY (environment); K2 is not set (environment or"
        " .env); K3 holds the same key as AMM_DEMO_OPENAI_KEY")
    none = load_secrets(config, env={})
    assert none.keys_for("openai") == () and not none.availability("openai").available


def test_a_models_admitted_limits_count_once_per_key() -> None:
    one = demo_config()
    two = config_from_dict(pooled("K2"))
    mini = one.model("gpt-4o-mini")
    assert one.admitted_rate_limits(mini) == mini.rate_limits == RateLimits(
        requests_per_minute=30, tokens_per_minute=20_000)
    assert two.admitted_rate_limits(mini) == RateLimits(requests_per_minute=60, tokens_per_minute=40_000)
    assert two.admitted_rate_limits(two.model("claude-haiku-4-5")) == two.model("claude-haiku-4-5").rate_limits
    orphan = mini.model_copy(update={"provider": "nowhere"})
    assert two.admitted_rate_limits(orphan) == mini.rate_limits
    router = build_local_router(two, events=ListEvents(), adapters={})
    assert (router.limiters["gpt-4o-mini"].rpm, router.limiters["gpt-4o-mini"].tpm) == (60, 40_000)


def test_config_validate_says_how_many_keys_without_values(tmp_path, monkeypatch) -> None:
    import json

    path = tmp_path / "registry.json"
    path.write_text(json.dumps(pooled("OPENAI_POOL_2", "OPENAI_POOL_3"), default=str))
    monkeypatch.setenv("AMM_DEMO_OPENAI_KEY", KEY_A)
    monkeypatch.setenv("OPENAI_POOL_2", KEY_B)
    monkeypatch.delenv("OPENAI_POOL_3", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "openai: available (2 of 3 keys: key from AMM_DEMO_OPENAI_KEY (environment); key from " \
           "OPENAI_POOL_2 (environment); OPENAI_POOL_3 is not set" in " ".join(result.stdout.split())
    assert KEY_A not in result.output and KEY_B not in result.output


# ---------------------------------------------------------------------------------------------
# the emulator's per-key limits


def test_the_emulator_holds_each_key_to_its_own_window_and_the_model_to_its_own() -> None:
    clock = ManualClock()
    engine = Engine(parse_profile({"models": {"m": {"rate_limits": {"requests_per_minute": 3}}},
                                   "key_rate_limits": {"a": {"requests_per_minute": 1}}}), clock)
    assert engine.plan("openai", "m", 10, key="a").kind == "ok"
    assert engine.rate_info("openai", "m", "a").remaining_requests == 0  # a's own window
    assert engine.rate_info("openai", "m").remaining_requests == 2  # the model's
    clock.advance(10.0)
    limited = engine.plan("openai", "m", 10, key="a")
    assert (limited.kind, limited.status) == ("error", 429)
    assert limited.retry_after_s == pytest.approx(50.0)
    assert engine.plan("openai", "other", 10, key="a").kind == "ok"  # a's window is per model
    assert [engine.plan("openai", "m", 10, key="b").kind for _ in range(2)] == ["ok", "ok"]
    assert engine.plan("openai", "m", 10, key="b").status == 429  # the model's 3 a minute
    for key, outcome in (("a", "200"), ("a", "429"), ("b", "200")):
        engine.record("openai", "m", outcome, key)
    assert engine.stats()["keys"] == {"a": {"200": 1, "429": 1}}  # b is not named by the profile
    engine.reset()
    assert engine.stats()["keys"] == {} and engine.plan("openai", "m", 10, key="a").kind == "ok"


# ---------------------------------------------------------------------------------------------
# adapters against the emulator, in process


def run_on(engine: Engine, scenario: Callable[[Callable[..., ProviderAdapter]], Awaitable[T]],
           clock: ManualClock) -> T:
    """Run ``scenario(adapter_for)``: ``adapter_for(provider, *keys)`` is the real adapter of a
    demo provider with those keys, talking to ``engine``'s app in process on ``clock``."""
    config = demo_config()
    transport = httpx.ASGITransport(app=create_app(engine))
    opened: list[ProviderAdapter] = []

    def adapter_for(provider: str, *keys: str) -> ProviderAdapter:
        named = [ApiKey(f"KEY_{chr(65 + i)}", SecretStr(k)) for i, k in enumerate(keys)]
        adapter = make_adapter(provider, config.providers[provider], named, transport=transport,
                               clock=clock)
        opened.append(adapter)
        return adapter

    async def go() -> T:
        try:
            return await scenario(adapter_for)
        finally:
            for adapter in opened:
                await adapter.aclose()

    return asyncio.run(go())


def emulator(clock: ManualClock, **profile: Any) -> Engine:
    return Engine(parse_profile(profile), clock)


def model(provider: str) -> ModelConfig:
    return demo_config().model(MODELS[provider])


def request(text: str = "Name the capital of France.") -> ModelRequest:
    return ModelRequest(prompt=text, max_tokens=64)


def key_outcomes(engine: Engine) -> dict[str, dict[str, int]]:
    stats = engine.stats()["keys"]
    assert isinstance(stats, dict)
    return stats


@pytest.mark.parametrize("provider", [*WITH_KEYS, "ollama"])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_keys_own_429_is_retried_on_another_key(provider: str, streamed: bool) -> None:
    """Key A takes one request a minute, key B any number: every call succeeds. A's used-up
    headers (OpenAI, Anthropic) or its 429 with a retry hint (Gemini) rest it for the minute;
    Ollama's 429 has no hint, so A rests a second each time and its 429s recur, each ridden on B."""
    clock = ManualClock()
    engine = emulator(clock, key_rate_limits={KEY_A: {"requests_per_minute": 1}, KEY_B: ROOMY})

    async def call(adapter: ProviderAdapter) -> str:
        if not streamed:
            return (await adapter.complete(request(), model(provider))).text
        chunks = [c async for c in adapter.stream(request(), model(provider))]
        assert chunks[-1].done and chunks[-1].result is not None
        return chunks[-1].result.text

    async def scenario(adapter_for: Callable[..., ProviderAdapter]) -> KeyPool:
        adapter = adapter_for(provider, KEY_A, KEY_B)
        for _ in range(5):
            assert await call(adapter)
            clock.advance(1.0)
        return adapter.keys

    keys = run_on(engine, scenario, clock)
    seen = key_outcomes(engine)
    assert seen[KEY_A]["200"] == 1 and seen[KEY_B]["200"] == 4
    assert seen[KEY_A].get("429", 0) == keys.snapshot()[0].rate_limited
    if provider != "ollama":
        assert keys.snapshot()[0].rate_limited <= 1
        assert list(keys.snapshot()[0].cooling_s) == [model(provider).id]  # A rests for this model
    assert keys.pick("other-model") == 0  # ... and only for it


@pytest.mark.parametrize("provider", WITH_KEYS)
def test_every_key_cooling_is_rate_limited_until_the_first_key_frees(provider: str) -> None:
    clock = ManualClock()
    one_a_minute = {"requests_per_minute": 1}
    engine = emulator(clock, key_rate_limits={KEY_A: one_a_minute, KEY_B: one_a_minute})

    async def scenario(adapter_for: Callable[..., ProviderAdapter]) -> tuple[RateLimited, int]:
        adapter = adapter_for(provider, KEY_A, KEY_B)
        await adapter.complete(request(), model(provider))  # t=0 on A
        clock.advance(10.0)
        await adapter.complete(request(), model(provider))  # t=10 on B
        with pytest.raises(RateLimited) as info:
            await adapter.complete(request(), model(provider))
        sent = engine.stats()["total"]
        with pytest.raises(RateLimited):  # known now: refused without a call
            await adapter.complete(request(), model(provider))
        assert engine.stats()["total"] == sent
        clock.advance(info.value.retry_after_s)
        await adapter.complete(request(), model(provider))  # A is free again
        return info.value, int(sent)  # type: ignore[arg-type]

    error, sent = run_on(engine, scenario, clock)
    assert error.provider == provider and error.model_id == MODELS[provider]
    assert error.retry_after_s == pytest.approx(50.0, abs=1.0)  # A's window frees first
    seen = key_outcomes(engine)
    assert seen[KEY_A]["200"] == 2 and seen[KEY_B]["200"] == 1
    # without rate headers (Gemini) each key met one 429; with them, none was wasted
    assert sent == (4 if provider == "google" else 2)


@pytest.mark.parametrize("provider", WITH_KEYS)
def test_a_refused_key_leaves_the_rotation_and_the_call_succeeds_on_another(provider: str, caplog) -> None:
    clock = ManualClock()
    engine = emulator(clock, valid_keys=[KEY_B, KEY_C])
    caplog.set_level(logging.INFO, logger="api_model_management")

    async def scenario(adapter_for: Callable[..., ProviderAdapter]) -> KeyPool:
        adapter = adapter_for(provider, KEY_A, KEY_B, KEY_C)
        for _ in range(4):
            await adapter.complete(request(), model(provider))
        clock.advance(SET_ASIDE_S)
        await adapter.complete(request(), model(provider))  # A is tried again, and refused again
        return adapter.keys

    keys = run_on(engine, scenario, clock)
    assert [k.refused for k in keys.snapshot()] == [2, 0, 0]
    assert engine.stats()["providers"][{"google": "gemini"}.get(provider, provider)].get("200") == 5
    assert "key KEY_A refused (auth)" in caplog.text
    assert KEY_A not in caplog.text and KEY_B not in caplog.text


@pytest.mark.parametrize("provider", WITH_KEYS)
def test_when_every_key_is_refused_the_providers_error_goes_up(provider: str) -> None:
    clock = ManualClock()
    engine = emulator(clock, valid_keys=[KEY_C])

    async def scenario(adapter_for: Callable[..., ProviderAdapter]) -> KeyPool:
        adapter = adapter_for(provider, KEY_A, KEY_B)
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                await adapter.complete(request(), model(provider))
        probe = await adapter.probe()
        assert not probe.ok and probe.error_kind == "auth"
        return adapter.keys

    keys = run_on(engine, scenario, clock)
    assert keys.snapshot()[0].set_aside_s > 0 and keys.snapshot()[1].set_aside_s == 0


def test_an_adapters_repr_counts_keys_and_shows_none() -> None:
    adapter = make_adapter("openai", demo_config().providers["openai"],
                           [ApiKey("K1", SecretStr(KEY_A)), ApiKey("K2", SecretStr(KEY_B))])
    assert repr(adapter).endswith("keys=2)") and KEY_A not in repr(adapter)
    assert repr(adapter.keys) == "KeyPool(provider='openai', keys=['K1', 'K2'])"
    asyncio.run(adapter.aclose())


# ---------------------------------------------------------------------------------------------
# the router: a key's 429 is neither a failover nor a health signal


class HealthOutcomes:
    """Outcomes into one HealthCore per provider, as the HealthChecker actors get them."""

    def __init__(self, config: RegistryConfig, clock: ManualClock) -> None:
        self.cores = {name: HealthCore(name, config.settings.health_check, clock=clock)
                      for name in config.providers}

    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        self.cores[provider].record_outcome(ok, error_kind, model_id)


def route(provider: str, keys: list[str], requests: int, caplog) -> tuple[Any, ListEvents, HealthOutcomes, Engine]:
    """``requests`` requests allowed only ``provider``'s demo model, through a RouterCore whose
    ``provider`` adapter holds ``keys``; the emulator lets key A make one request a minute.
    Returns (responses or the error, events, health, emulator)."""
    clock = ManualClock()
    engine = emulator(clock, key_rate_limits={KEY_A: {"requests_per_minute": 1}, KEY_B: ROOMY})
    config = demo_config()
    health = HealthOutcomes(config, clock)
    caplog.set_level(logging.DEBUG, logger="api_model_management")

    async def scenario(adapter_for: Callable[..., ProviderAdapter]) -> Any:
        adapters = {name: adapter_for(name, KEY_C) for name in config.providers}
        adapters[provider] = adapter_for(provider, *keys)
        events = ListEvents()
        router = build_local_router(config, adapters=adapters, events=events, clock=clock)
        router.outcomes = health
        only = SelectionConstraints(allowed_models=(MODELS[provider],))
        answers: list[Any] = []
        for i in range(requests):
            try:
                answers.append(await router.complete(
                    ModelRequest(prompt=f"Name the capital of France ({i}).", constraints=only)))
            except AllCandidatesFailed as exc:
                answers.append(exc)
            clock.advance(1.0)
        return answers, events

    answers, events = run_on(engine, scenario, clock)
    return answers, events, health, engine


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_the_router_rides_a_keys_429_on_another_key_without_failover_or_health_change(provider: str, caplog) -> None:
    answers, events, health, engine = route(provider, [KEY_A, KEY_B], 6, caplog)
    assert all(a.model_id == MODELS[provider] for a in answers)
    assert len(of_type(events.events, RequestCompleted)) == 6
    assert of_type(events.events, AttemptFailed, FailoverTriggered) == []
    snapshot = health.cores[provider].snapshot()
    assert snapshot.state == "healthy" and snapshot.window_failures == 0
    seen = key_outcomes(engine)
    assert seen[KEY_A]["200"] == 1 and seen[KEY_B]["200"] == 5
    dumped = " ".join(e.model_dump_json() for e in events.events) + caplog.text
    assert KEY_A not in dumped and KEY_B not in dumped


def test_with_the_one_limited_key_the_same_load_fails(caplog) -> None:
    """The contrast: key A alone meets its limit, and the request (one model allowed) fails."""
    answers, events, health, engine = route("google", [KEY_A], 3, caplog)
    assert answers[0].model_id == MODELS["google"]
    assert all(isinstance(a, AllCandidatesFailed) for a in answers[1:])
    assert [e.error_kind for e in of_type(events.events, AttemptFailed)][:1] == ["rate_limited"]
    assert health.cores["google"].snapshot().window_failures == 0  # rate limits are neutral
