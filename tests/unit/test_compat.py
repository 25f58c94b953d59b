"""The original system's component names (``compat``): every public method called, the defects a
type checker found (each a regression test), components given to one another acting as one
system, and a typed ``InvalidInput`` for every wrong argument type."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from api_model_management import (
    CacheManager,
    CostTracker,
    FailoverManager,
    HealthChecker,
    InvalidInput,
    ModelRegistry,
    ModelRequest,
    ModelResponse,
    ModelSelector,
    PerformanceMonitor,
    RateLimiter,
)
from api_model_management._clock import ManualClock
from api_model_management.config import demo_config, override
from api_model_management.events import EventLog, RequestCompleted, ResponseEvaluated

from _fakes import GOOD_PROMPT

pytestmark = pytest.mark.unit

KEYS = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000", "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0000",
        "AMM_DEMO_GOOGLE_KEY": "google-test-0000"}
ROOT = Path(__file__).resolve().parents[2]


def request(**kw) -> ModelRequest:
    return ModelRequest(prompt=GOOD_PROMPT, agent_type="research", **kw)


# ---------------------------------------------------------------------------------------------
# regressions: defects a type checker found


def test_health_checker_is_available_for_a_provider_with_a_key():
    """``allows_traffic`` is a property: calling it raised ``TypeError: 'bool' object is not
    callable`` for every provider with a key."""
    checker = HealthChecker(demo_config(), env=KEYS, clock=ManualClock())
    assert checker.is_available("gpt-4.1-mini") is True  # unknown counts as healthy
    for _ in range(5):
        checker.cores["openai"].record_probe(False, 10.0, http_status=503, error_kind="server_error")
    assert checker.provider_state("openai") == "unhealthy"
    assert checker.is_available("gpt-4.1-mini") is False
    status = checker.get_status()
    assert status["openai"]["state"] == "unhealthy" and status["openai"]["reason"]


def test_select_model_skips_a_rate_limited_model():
    """Reading ``RateLimitStatus.cooling_until`` (which does not exist) raised AttributeError as
    soon as any model was rate-limited."""
    config = demo_config()
    clock = ManualClock()
    limiter = RateLimiter(config, clock=clock)
    selector = ModelSelector(config, rate_limiter=limiter, clock=clock)
    pinned = request(model_id="gpt-4.1-mini")
    assert asyncio.run(selector.select_model(pinned)).model_id == "gpt-4.1-mini"
    rpm = config.model("gpt-4.1-mini").rate_limits.requests_per_minute
    for _ in range(rpm):
        assert limiter.check_rate_limit("gpt-4.1-mini", 1).granted
    assert limiter.is_rate_limited("gpt-4.1-mini")
    selection = asyncio.run(selector.select_model(request()))
    assert selection.model_id != "gpt-4.1-mini"
    assert "gpt-4.1-mini" not in selection.fallback_models


def test_selector_scores_headroom_from_the_rate_limiter():
    """``update_headroom`` was only ever called by tests: the availability factor stayed 1.0."""
    config = demo_config()
    clock = ManualClock()
    limiter = RateLimiter(config, clock=clock)
    selector = ModelSelector(config, rate_limiter=limiter, clock=clock)

    def availability() -> float:
        selection = asyncio.run(selector.select_model(request(model_id="gpt-4.1-mini")))
        return selection.candidates[0].availability

    before = availability()
    rpm = config.model("gpt-4.1-mini").rate_limits.requests_per_minute
    for _ in range(int(rpm * 0.8)):
        limiter.check_rate_limit("gpt-4.1-mini", 1)
    assert availability() < before


def test_selector_uses_the_performance_monitor(tmp_path):
    """The selector looked for a ``model_stats()`` that existed nowhere, so the monitor it was
    given changed nothing. Two models alike but for logged quality: the better one wins."""
    config = override(demo_config(), settings={"selection": {"assignment_cache_ttl_s": 0}})
    log = EventLog(tmp_path)
    now = datetime.now(UTC) - timedelta(minutes=5)
    events = []
    for model_id, quality in (("gpt-4.1-mini", 0.2), ("gpt-4o-mini", 0.99)):
        for i in range(40):
            common = {"request_id": f"{model_id}-{i}", "agent_type": "research", "model_id": model_id,
                      "provider": "openai", "occurred_at": now}
            events.append(RequestCompleted(**common, attempts=1, latency_ms=300.0, input_tokens=10,
                                           output_tokens=10, cost_usd=Decimal("0.0001"),
                                           finish_reason="stop"))
            events.append(ResponseEvaluated(**common, completeness=quality, relevance=quality,
                                            coherence=quality, quality_score=quality,
                                            low_quality=quality < 0.5))
    log.append(events)
    monitor = PerformanceMonitor(tmp_path)
    stats = monitor.model_stats()
    assert stats["gpt-4o-mini"].quality == pytest.approx(0.99)
    allowed = {"allowed_models": ("gpt-4.1-mini", "gpt-4o-mini")}
    without = ModelSelector(config)
    with_monitor = ModelSelector(config, performance_monitor=monitor)
    plain = asyncio.run(without.select_model(request(constraints=allowed)))
    informed = asyncio.run(with_monitor.select_model(request(constraints=allowed)))
    perf = {c.model_id: c.performance for c in informed.candidates}
    assert perf["gpt-4o-mini"] > perf["gpt-4.1-mini"]
    assert {c.model_id: c.performance for c in plain.candidates} != perf
    monitor.close()


# ---------------------------------------------------------------------------------------------
# every public method, called


def test_registry_methods():
    registry = ModelRegistry(ROOT / "config" / "demo_registry.json")
    assert registry.load_config() is registry.config
    assert registry.reload().models == registry.config.models
    assert registry.get_model("gpt-4.1-mini").provider == "openai"
    assert registry.get_model("nope") is None
    assert {m.provider for m in registry.list_models(provider="anthropic")} == {"anthropic"}
    assert all("code-generation" in m.capabilities for m in registry.list_models(capability="code-generation"))
    assert set(registry.providers) == {"openai", "anthropic", "google", "ollama"}
    assert registry.settings is registry.config.settings
    assert ModelRegistry.from_config(registry.config).config is registry.config
    assert "models" in repr(registry)


def test_health_checker_without_keys_never_probes():
    checker = HealthChecker(demo_config(), env={}, clock=ManualClock())

    async def scenario() -> None:
        await checker.start()  # no key anywhere but ollama (which the demo points at a port)
        await checker.stop()

    checker._adapters.clear()  # noqa: SLF001 - keep the unit test off the network
    checker.unavailable_reasons.update({p: "no key" for p in checker.cores})
    asyncio.run(scenario())
    assert checker.provider_state("openai") == "unhealthy"
    assert checker.is_available("gpt-4.1-mini") is False


def test_rate_limiter_methods():
    limiter = RateLimiter(demo_config(), clock=ManualClock())
    admission = limiter.check_rate_limit("gpt-4.1-mini", 100)
    assert admission.granted and not limiter.is_rate_limited("gpt-4.1-mini")
    limiter.record_usage("gpt-4.1-mini", admission.reservation_id, 80)
    status = limiter.status("gpt-4.1-mini")
    assert status.requests_used == 1 and status.tokens_used == 80


def test_cache_manager_methods():
    cache = CacheManager(demo_config(), clock=ManualClock())
    req = request(parameters={"temperature": 0})
    response = ModelResponse(request_id="r", model_id="gpt-4.1-mini", provider="openai",
                             text="fine", finish_reason="stop")
    assert cache.get(req) is None
    assert cache.set(req, response, 0.01) is True
    assert cache.get(req) == response
    assert cache.get_stats().saved_cost_usd == Decimal("0.01")
    cache.clear()
    assert cache.get(req) is None


def test_cost_tracker_methods(tmp_path):
    config = override(demo_config(), settings={"budgets": {"limits": [
        {"scope": "agent_type", "key": "research", "limit_usd": "1"}]}})
    tracker = CostTracker(config, data_dir=tmp_path, clock=ManualClock(start=datetime.now(UTC)))
    alerts = tracker.record_cost("gpt-4.1-mini", "research", "0.6")
    assert [a.threshold for a in alerts] == [0.5]
    assert tracker.get_total_cost() == Decimal("0.6") == tracker.get_total_cost("month")
    (row,) = tracker.get_budget_status()
    assert row.spent_usd == Decimal("0.6")


def test_failover_manager_methods(tmp_path):
    from _fakes import FakeAdapter, fake_adapters

    config = demo_config()
    manager = FailoverManager(config, env=KEYS, data_dir=tmp_path)
    manager.router.adapters = fake_adapters(config)  # keep the unit test off the network
    response = asyncio.run(manager.execute(request(model_id="gpt-4.1-mini")))
    assert response.model_id == "gpt-4.1-mini" and response.cost_usd > 0
    asyncio.run(manager.aclose())
    assert all(isinstance(a, FakeAdapter) and a.closed for a in manager.router.adapters.values())


# ---------------------------------------------------------------------------------------------
# bad input: a typed InvalidInput, never an AttributeError or a KeyError


BAD_CALLS = {
    "ModelSelector.select_model(str)": lambda c: asyncio.run(ModelSelector(c).select_model("a string")),
    "ModelSelector.select_model(agent_type=1)": lambda c: asyncio.run(
        ModelSelector(c).select_model(request(), agent_type=1)),
    "ModelSelector(None)": lambda c: ModelSelector(None),
    "HealthChecker.is_available(1)": lambda c: HealthChecker(c, env={}).is_available(1),
    "HealthChecker.is_available(unknown)": lambda c: HealthChecker(c, env={}).is_available("nope"),
    "HealthChecker.provider_state(unknown)": lambda c: HealthChecker(c, env={}).provider_state("nope"),
    "RateLimiter.check_rate_limit(unknown)": lambda c: RateLimiter(c).check_rate_limit("nope"),
    "RateLimiter.check_rate_limit(tokens=-1)": lambda c: RateLimiter(c).check_rate_limit("gpt-4.1-mini", -1),
    "RateLimiter.check_rate_limit(tokens='5')": lambda c: RateLimiter(c).check_rate_limit("gpt-4.1-mini", "5"),
    "RateLimiter.record_usage(None)": lambda c: RateLimiter(c).record_usage("gpt-4.1-mini", None, 1),
    "RateLimiter.status(1)": lambda c: RateLimiter(c).status(1),
    "CacheManager.get(str)": lambda c: CacheManager(c).get("a string"),
    "CacheManager.set(response=str)": lambda c: CacheManager(c).set(request(), "text"),
    "CacheManager.set(cost=-1)": lambda c: CacheManager(c).set(request(), ModelResponse(
        request_id="r", model_id="m", provider="p", text="t", finish_reason="stop"), -1),
    "CostTracker.record_cost(unknown model)": lambda c: CostTracker(c).record_cost("nope", "a", "1"),
    "CostTracker.record_cost(cost=abc)": lambda c: CostTracker(c).record_cost("gpt-4.1-mini", "a", "abc"),
    "CostTracker.record_cost(agent_type=None)": lambda c: CostTracker(c).record_cost("gpt-4.1-mini", None, "1"),
    "CostTracker.get_total_cost(week)": lambda c: CostTracker(c).get_total_cost("week"),
    "FailoverManager.execute(dict)": lambda c: asyncio.run(FailoverManager(c, env=KEYS).execute({"prompt": "x"})),
    "ModelRegistry.get_model(1)": lambda c: ModelRegistry.from_config(c).get_model(1),
    "ModelRegistry.list_models(provider=1)": lambda c: ModelRegistry.from_config(c).list_models(provider=1),
    "PerformanceMonitor.get_performance_summary(window_hours=-5)": lambda c: PerformanceMonitor(
        "unused-dir").get_performance_summary(window_hours=-5),
    "PerformanceMonitor.get_model_metrics(window_hours='x')": lambda c: PerformanceMonitor(
        "unused-dir").get_model_metrics("gpt-4.1-mini", window_hours="x"),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_arguments_raise_invalid_input(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput):
        call(demo_config())
