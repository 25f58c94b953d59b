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


# ---------------------------------------------------------------------------------------------
# issue 12.6: components given to one another act as one system


def _clock() -> ManualClock:
    return ManualClock(start=datetime.now(UTC))


def _manager(tmp_path, config=None, **components) -> FailoverManager:
    """A FailoverManager on fake adapters (no network), writing to ``tmp_path``."""
    from _fakes import fake_adapters

    config = config or demo_config()
    manager = FailoverManager(config, env=KEYS, data_dir=tmp_path, **components)
    manager.router.adapters = fake_adapters(config)
    return manager


def _spooled(tmp_path, event_type: str) -> list:
    from api_model_management.events._spool import pending_events

    return [e for e in pending_events(tmp_path) if e.event_type == event_type]


def test_health_checker_keeps_its_events_until_a_spool_takes_them():
    """``drain_events()`` output was discarded: every HealthChanged was lost."""
    from api_model_management.routing import ListEvents

    checker = HealthChecker(demo_config(), env=KEYS, clock=ManualClock())
    assert checker.record_outcome("gpt-4.1-mini", False, "server_error") == "degraded"
    kept = checker.drain_events()
    assert [(e.event_type, e.provider, e.to_state) for e in kept] == [("HealthChanged", "openai", "degraded")]
    assert checker.drain_events() == []

    checker.record_outcome("gpt-4.1-mini", True)  # healthy again: kept
    spool = ListEvents()
    checker.attach_events(spool)
    assert [e.to_state for e in spool.events] == ["healthy"]  # the kept ones first
    checker.record_outcome("claude-haiku-4-5", False, "timeout")
    assert [(e.provider, e.to_state) for e in spool.events[1:]] == [("anthropic", "degraded")]
    assert checker.drain_events() == []
    checker.detach_events(spool)
    checker.record_outcome("claude-haiku-4-5", True)
    assert len(spool.events) == 2 and len(checker.drain_events()) == 1


def test_health_checker_drops_the_oldest_events_beyond_its_bound(monkeypatch):
    import api_model_management.compat as compat

    monkeypatch.setattr(compat, "HEALTH_EVENTS_KEPT", 2)
    checker = HealthChecker(demo_config(), env=KEYS, clock=ManualClock())
    for ok in (False, True, False):
        checker.record_outcome("gpt-4.1-mini", ok, None if ok else "server_error")
    assert [e.to_state for e in checker.drain_events()] == ["healthy", "degraded"]
    assert checker.events_dropped == 1


def test_health_checker_probes_publish_their_events():
    from api_model_management.providers import ProbeResult

    from _fakes import FakeAdapter

    checker = HealthChecker(demo_config(), env=KEYS, clock=ManualClock())
    checker._adapters = {"openai": FakeAdapter("openai", probe_result=ProbeResult(  # noqa: SLF001
        ok=False, latency_ms=3.0, http_status=503, error_kind="server_error"))}
    asyncio.run(checker.check_all())
    types = [(e.event_type, e.provider) for e in checker.drain_events()]
    assert ("HealthChecked", "openai") in types and ("HealthChanged", "openai") in types


def test_bad_outcomes_reported_to_the_health_checker_raise_invalid_input():
    checker = HealthChecker(demo_config(), env=KEYS, clock=ManualClock())
    for call in (lambda: checker.record_outcome("nope", True),
                 lambda: checker.record_outcome("gpt-4.1-mini", "yes"),
                 lambda: checker.record_outcome("gpt-4.1-mini", False, 5)):
        with pytest.raises(InvalidInput):
            call()


def test_failover_manager_uses_the_components_it_is_given(tmp_path):
    config = demo_config()
    clock = _clock()
    checker = HealthChecker(config, env=KEYS, clock=clock)
    limiter = RateLimiter(config, clock=clock)
    tracker = CostTracker(config, clock=clock)
    cache = CacheManager(config, clock=clock)
    manager = _manager(tmp_path, config, health_checker=checker, rate_limiter=limiter,
                       cost_tracker=tracker, cache_manager=cache, clock=clock)
    req = request(model_id="gpt-4.1-mini", parameters={"temperature": 0})

    response = asyncio.run(manager.execute(req))

    assert limiter.status("gpt-4.1-mini").requests_used == 1  # the user's window
    assert tracker.get_total_cost() == response.cost_usd > 0  # the user's ledger, unlimited too
    assert cache.get(req) is not None  # the user's cache
    assert checker.cores["openai"].snapshot().window_calls == 1  # the outcome, told at once
    assert manager.model_selector.health_checker is checker
    assert manager.model_selector.rate_limiter is limiter
    asyncio.run(manager.aclose())


def test_failover_manager_routes_by_the_health_checker_and_writes_its_events(tmp_path):
    from api_model_management.errors import ProviderServerError

    config = demo_config()
    checker = HealthChecker(config, env=KEYS, clock=_clock())
    manager = _manager(tmp_path, config, health_checker=checker)
    first = asyncio.run(manager.execute(request()))
    for _ in range(5):
        checker.cores[first.provider].record_probe(False, 10.0, http_status=503,
                                                   error_kind="server_error")
    assert checker.provider_state(first.provider) == "unhealthy"

    second = asyncio.run(manager.execute(request()))
    assert second.provider != first.provider  # the checker's state, pushed before selecting

    adapter = manager.router.adapters[second.provider]
    adapter.script(second.model_id, ProviderServerError("503", http_status=503))
    third = asyncio.run(manager.execute(request(model_id=None)))
    assert third.text
    states = [(e.provider, e.to_state) for e in _spooled(tmp_path, "HealthChanged")]
    assert (first.provider, "unhealthy") in states  # written once a spool took them
    assert (second.provider, "degraded") in states  # the failed call, a passive signal
    asyncio.run(manager.aclose())


def test_failover_manager_skips_a_model_the_users_rate_limiter_refuses(tmp_path):
    config = demo_config()
    limiter = RateLimiter(config, clock=_clock())
    manager = _manager(tmp_path, config, rate_limiter=limiter)
    chosen = asyncio.run(manager.execute(request())).model_id
    limiter.cores[chosen].cool_down(30.0)
    assert asyncio.run(manager.execute(request())).model_id != chosen
    asyncio.run(manager.aclose())


def test_failover_manager_takes_the_selectors_components(tmp_path):
    config = demo_config()
    checker = HealthChecker(config, env=KEYS, clock=_clock())
    limiter = RateLimiter(config)
    selector = ModelSelector(registry=config, health_checker=checker, rate_limiter=limiter)
    manager = FailoverManager(model_selector=selector, max_retries=2, env=KEYS, data_dir=tmp_path)

    assert manager.model_selector is selector and manager.router.selector is selector.core
    assert manager.health_checker is checker and manager.rate_limiter is limiter
    assert manager.config.settings.failover.max_attempts == 3  # the first try and two retries
    assert manager.config.models == config.models
    asyncio.run(manager.aclose())


def test_failover_manager_refuses_components_that_cannot_act_as_one(tmp_path):
    config = demo_config()
    other = override(config, models=[m.model_dump() | {"fallbacks": []} for m in config.models[:3]])
    selector = ModelSelector(config, health_checker=HealthChecker(config, env=KEYS))
    refusals = {
        "no registry": lambda: FailoverManager(env=KEYS, data_dir=tmp_path),
        "another checker": lambda: FailoverManager(config, model_selector=selector, env=KEYS,
                                                   health_checker=HealthChecker(config, env=KEYS)),
        "another registry": lambda: FailoverManager(config, rate_limiter=RateLimiter(other),
                                                    env=KEYS),
        "not a tracker": lambda: FailoverManager(config, cost_tracker="tracker", env=KEYS),
        "not a cache": lambda: FailoverManager(config, cache_manager=object(), env=KEYS),
        "not a selector": lambda: FailoverManager(model_selector=config, env=KEYS),
        "bad retries": lambda: FailoverManager(config, max_retries=-1, env=KEYS),
    }
    for name, call in refusals.items():
        with pytest.raises(InvalidInput) as caught:
            call()
        assert "\n" not in str(caught.value), name


def test_feedback_to_the_failover_manager_is_recorded_once_and_learnt(tmp_path):
    manager = _manager(tmp_path)
    response = asyncio.run(manager.execute(request(task_id="t-1")))
    core = manager.model_selector.core
    before = core.quality_for(response.model_id, "research")

    assert asyncio.run(manager.feedback(response.request_id, 0.0)) is True
    assert asyncio.run(manager.feedback(response.request_id, 1.0)) is False  # once per source
    assert asyncio.run(manager.feedback(response.request_id, 1.0, source="ground_truth")) is True

    (first, _) = _spooled(tmp_path, "FeedbackRecorded")
    assert (first.request_id, first.model_id, first.agent_type, first.task_id, first.score) == (
        response.request_id, response.model_id, "research", "t-1", 0.0)
    assert core.quality_for(response.model_id, "research") != before
    for bad in (lambda: manager.feedback("no-such-request", 0.5),
                lambda: manager.feedback(response.request_id, 1.5),
                lambda: manager.feedback(response.request_id, 0.5, source="boss")):
        with pytest.raises(InvalidInput):
            asyncio.run(bad())
    asyncio.run(manager.aclose())


def test_a_new_failover_manager_learns_the_quality_the_log_holds(tmp_path):
    first = _manager(tmp_path)
    response = asyncio.run(first.execute(request()))
    asyncio.run(first.feedback(response.request_id, 0.0))
    learnt = first.model_selector.core.quality_for(response.model_id, "research")
    asyncio.run(first.aclose())

    second = _manager(tmp_path)
    assert second.model_selector.core.quality_for(response.model_id, "research") == learnt
    assert asyncio.run(second.feedback(response.request_id, 0.3)) is False  # already recorded
    asyncio.run(second.aclose())


def test_find_request_names_the_latest_answer_of_a_task(tmp_path):
    manager = _manager(tmp_path)
    a = asyncio.run(manager.execute(request(task_id="t", model_id="gpt-4.1-mini")))
    b = asyncio.run(manager.execute(request(task_id="t", model_id="gpt-4o-mini")))
    assert manager.find_request("t") == b.request_id
    assert manager.find_request("t", "gpt-4.1-mini") == a.request_id
    assert manager.find_request("t", agent_type="judge") is None
    assert manager.find_request("other") is None
    with pytest.raises(InvalidInput):
        manager.find_request("t", "nope")
    asyncio.run(manager.aclose())


def test_a_failover_reported_by_the_caller_reaches_the_log_and_the_live_state(tmp_path):
    config = demo_config()
    checker = HealthChecker(config, env=KEYS, clock=_clock())
    limiter = RateLimiter(config, clock=_clock())
    manager = _manager(tmp_path, config, health_checker=checker, rate_limiter=limiter)

    manager.record_failover("gpt-4.1-mini", "gpt-4o-mini", "rate_limited", task_id="t",
                            agent_type="research", retry_after_s=20)
    assert limiter.is_rate_limited("gpt-4.1-mini")
    assert checker.cores["openai"].snapshot().window_calls == 0  # a rate limit is not ill health

    manager.record_failover("claude-haiku-4-5", "gpt-4o-mini", "timeout")
    assert checker.provider_state("anthropic") == "degraded"
    manager.record_failover("gemini-2.5-flash", "gpt-4o-mini", "low_quality")
    assert checker.cores["google"].snapshot().window_calls == 0

    triggered = _spooled(tmp_path, "FailoverTriggered")
    assert [(e.from_model_id, e.to_model_id, e.reason) for e in triggered] == [
        ("gpt-4.1-mini", "gpt-4o-mini", "rate_limited"), ("claude-haiku-4-5", "gpt-4o-mini", "timeout"),
        ("gemini-2.5-flash", "gpt-4o-mini", "low_quality")]
    assert (triggered[0].task_id, triggered[0].agent_type, triggered[0].provider) == ("t", "research", "openai")
    for bad in (lambda: manager.record_failover("nope", "gpt-4o-mini", "timeout"),
                lambda: manager.record_failover("gpt-4.1-mini", "gpt-4o-mini", ""),
                lambda: manager.record_failover("gpt-4.1-mini", "gpt-4o-mini", "x", retry_after_s=-1)):
        with pytest.raises(InvalidInput):
            bad()
    asyncio.run(manager.aclose())


def test_flush_moves_the_managers_events_into_the_log(tmp_path):
    manager = _manager(tmp_path)
    response = asyncio.run(manager.execute(request()))
    assert EventLog(tmp_path).read("RequestCompleted") == []  # only in the spool so far

    written = manager.flush()

    (completed,) = EventLog(tmp_path).read("RequestCompleted")
    assert completed.request_id == response.request_id and written >= 2
    assert manager.flush() == 0  # nothing new
    asyncio.run(manager.aclose())


def test_selector_reads_the_monitor_at_most_once_per_ttl(tmp_path):
    class CountingMonitor(PerformanceMonitor):
        reads = 0

        def model_stats(self, window_hours: float = 24):
            CountingMonitor.reads += 1
            return super().model_stats(window_hours)

    clock = ManualClock()
    config = override(demo_config(), settings={"selection": {"assignment_cache_ttl_s": 5}})
    selector = ModelSelector(config, performance_monitor=CountingMonitor(tmp_path), clock=clock)
    for _ in range(3):
        asyncio.run(selector.select_model(request()))
    assert CountingMonitor.reads == 1
    clock.advance(5)
    asyncio.run(selector.select_model(request()))
    assert CountingMonitor.reads == 2


def test_selector_takes_an_agent_type_member_as_its_value():
    from api_model_management import AgentType

    cost_only = {"capability": 0, "cost": 1, "performance": 0, "availability": 0}
    config = override(demo_config(), settings={"selection": {"agent_weights": {
        "solution_architect": cost_only}}})
    selector = ModelSelector(config)
    selection = asyncio.run(selector.select_model(request(), AgentType.SA))
    assert "×1.00" in selection.selection_reason  # the agent type's own weights were used
    plain = asyncio.run(selector.select_model(request(), "research"))
    assert "×1.00" not in plain.selection_reason
    tracker = CostTracker(demo_config(), clock=_clock())
    tracker.record_cost("gpt-4.1-mini", AgentType.SA, "0.5")
    assert tracker.core.spend("agent_type", "solution_architect", "day") == Decimal("0.5")


def test_selector_refuses_components_of_the_wrong_type():
    for kwargs in ({"health_checker": "checker"}, {"rate_limiter": 1}, {"performance_monitor": "db"}):
        with pytest.raises(InvalidInput):
            ModelSelector(demo_config(), **kwargs)


def test_selector_sync_pushes_the_components_state():
    config = demo_config()
    clock = ManualClock()
    checker = HealthChecker(config, env=KEYS, clock=clock)
    limiter = RateLimiter(config, clock=clock)
    selector = ModelSelector(config, checker, limiter, clock=clock)
    for _ in range(5):
        checker.cores["google"].record_probe(False, 10.0, http_status=503, error_kind="server_error")
    limiter.cores["gpt-4o-mini"].cool_down(30.0)

    selector.sync_health("anthropic")  # another provider: google's state not pushed yet
    assert "gemini-2.5-flash" not in selector.core.select(request()).filtered
    selector.sync()
    filtered = selector.core.select(request()).filtered
    assert filtered["gemini-2.5-flash"] == "provider google unhealthy"
    assert filtered["gpt-4o-mini"].startswith("rate-limited for")
    selector.clear_assignment_cache()
    assert selector.core.select(request()).filtered == filtered
