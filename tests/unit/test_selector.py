"""SelectorCore: each filter, the score and its parts, priorities, weights, exploration, the
assignment cache, failover; and StatsCore, the live statistics the selector reads."""

from __future__ import annotations

import math
import pickle
import random
from decimal import Decimal

import pytest

from api_model_management import ModelRequest, SelectionConstraints, config, events
from api_model_management._clock import ManualClock
from api_model_management.budget._pricing import worst_case_cost_usd
from api_model_management.errors import InvalidInput, NoEligibleModel
from api_model_management.selection._core import (
    SelectorCore,
    adjust_for_priority,
)
from api_model_management.selection._stats import ModelStatsSnapshot, StatsCore

pytestmark = pytest.mark.unit

TEXT = ["text-generation"]


def model(mid, provider, caps=TEXT, cin="0.001", cout="0.002", ctx=128_000, ms=800.0, **kw):
    return config.ModelConfig(
        id=mid, provider=provider, name=mid, capabilities=list(caps),
        cost_per_1k_input_tokens=Decimal(cin), cost_per_1k_output_tokens=Decimal(cout),
        rate_limits=config.RateLimits(requests_per_minute=60, tokens_per_minute=100_000),
        context_window=ctx, average_response_time_ms=ms, **kw,
    )


def registry(*models, selection: config.SelectionSettings | None = None):
    settings = config.Settings(selection=selection or config.SelectionSettings())
    return config.RegistryConfig(models=list(models), settings=settings)


FLEET = registry(
    model("cheap", "openai", cin="0.0001", cout="0.0002", ms=900, quality_prior=0.6),
    model("mid", "anthropic", TEXT + ["code-generation"], cin="0.003", cout="0.015", ms=700,
          quality_prior=0.85),
    model("big", "openai", TEXT + ["code-generation", "analysis", "vision"], cin="0.01",
          cout="0.03", ms=1500, quality_prior=0.95),
    model("local", "ollama", TEXT, cin="0", cout="0", ctx=4096, ms=2500, quality_prior=0.5),
    model("off", "google", TEXT, enabled=False),
)


def make(cfg=FLEET, rng=None):
    clock = ManualClock()
    return SelectorCore(cfg, clock=clock, rng=rng), clock


def req(**kw) -> ModelRequest:
    kw.setdefault("prompt", "Explain how async/await works in Python")
    return ModelRequest(**kw)


def test_selects_the_best_and_explains_why():
    sel, _ = make()
    s = sel.select(req())
    assert s.model_id == s.candidates[0].model_id
    assert s.suitability_score == max(c.score for c in s.candidates)
    assert s.propensity == 1.0 and not s.explored and s.weights_version == "default"
    assert s.filtered == {"off": "disabled"}
    assert "capability" in s.selection_reason and "off (disabled)" in s.selection_reason
    assert "4 of 5 models eligible" in s.selection_reason
    for c in s.candidates:
        for part in (c.capability, c.cost, c.performance, c.availability):
            assert 0.0 <= part <= 1.0
    assert [c.score for c in s.candidates] == sorted((c.score for c in s.candidates), reverse=True)


def test_score_is_the_weighted_sum_of_the_sub_scores():
    sel, _ = make()
    w = config.SelectionWeights()
    for c in sel.select(req()).candidates:
        expected = (w.capability * c.capability + w.cost * c.cost
                    + w.performance * c.performance + w.availability * c.availability)
        assert c.score == pytest.approx(expected)


def test_sub_scores_follow_their_definitions():
    sel, _ = make()
    by_id = {c.model_id: c for c in sel.select(req()).candidates}
    assert by_id["local"].cost == 1.0  # free: the top of the scale
    # the log-price on one fixed scale (1e-6 .. 1 USD): price ratios keep their meaning
    assert 0 < by_id["big"].cost < by_id["mid"].cost < by_id["cheap"].cost < 1
    from math import log

    from api_model_management.selection import COST_FLOOR_USD

    def cost_usd(model_id: str) -> float:
        m = sel.config.model(model_id)
        request = req()
        return (request.estimated_input_tokens() * float(m.cost_per_1k_input_tokens)
                + request.max_tokens * float(m.cost_per_1k_output_tokens)) / 1000
    ratio = (cost_usd("big") + COST_FLOOR_USD) / (cost_usd("mid") + COST_FLOOR_USD)
    span = log(1.0 + COST_FLOOR_USD) - log(2 * COST_FLOOR_USD)
    assert by_id["mid"].cost - by_id["big"].cost == pytest.approx(log(ratio) / span)
    assert by_id["big"].capability == 1.0  # 3 extra capabilities: full bonus
    assert by_id["cheap"].capability == pytest.approx(0.8)
    assert by_id["mid"].capability == pytest.approx(0.8 + 0.2 / 3)
    assert by_id["cheap"].availability == pytest.approx(0.9)  # unknown health
    # priors only: 0.4·quality + 0.3·0.95 + 0.3/(1 + latency/1000)
    assert by_id["mid"].performance == pytest.approx(0.4 * 0.85 + 0.3 * 0.95 + 0.3 / 1.7)


def test_capability_filter():
    sel, _ = make()
    s = sel.select(req(required_capabilities=("text-generation", "vision")))
    assert s.model_id == "big" and len(s.candidates) == 1
    assert s.filtered["mid"] == "missing capabilities: vision"
    assert s.filtered["cheap"] == "missing capabilities: vision"


def test_unhealthy_provider_and_unavailable_models_are_filtered():
    sel, _ = make()
    sel.update_health("openai", "unhealthy")
    sel.update_health("anthropic", "healthy", unavailable_models=["mid"])
    s = sel.select(req())
    assert s.model_id == "local"
    assert s.filtered["cheap"] == "provider openai unhealthy"
    assert s.filtered["mid"] == "model unavailable (reported missing)"


def test_health_snapshots_from_the_health_core_are_accepted():
    from api_model_management.health._core import HealthCore

    clock = ManualClock()
    health = HealthCore("anthropic", config.HealthSettings(), clock=clock, models=["mid"])
    health.record_outcome(False, "model_not_found", model_id="mid")
    sel = SelectorCore(FLEET, clock=clock)
    sel.update_health("anthropic", health.snapshot())
    assert sel.select(req()).filtered["mid"] == "model unavailable (reported missing)"
    health.record_outcome(False, "auth")
    sel.update_health("anthropic", health.snapshot())
    assert sel.select(req()).filtered["mid"] == "provider anthropic unhealthy"


@pytest.mark.parametrize(
    ("state", "factor"), [("healthy", 1.0), ("unknown", 0.9), ("degraded", 0.6)]
)
def test_traffic_states_stay_eligible_with_their_availability(state, factor):
    sel, _ = make()
    sel.update_health("anthropic", state)
    by_id = {c.model_id: c for c in sel.select(req()).candidates}
    assert by_id["mid"].availability == pytest.approx(factor)


@pytest.mark.parametrize("state", ["half_open", "unhealthy"])
def test_half_open_and_unhealthy_providers_take_no_traffic(state):
    """A half-open provider's trials are the health checker's own probes, never routed calls."""
    sel, _ = make()
    sel.update_health("anthropic", state)
    s = sel.select(req())
    assert s.filtered["mid"] == f"provider anthropic {state}"
    assert "mid" not in {c.model_id for c in s.candidates}


def test_headroom_scales_availability_in_tenths():
    sel, _ = make()
    sel.update_health("anthropic", "healthy")
    sel.update_headroom("mid", 0.26)
    by_id = {c.model_id: c for c in sel.select(req()).candidates}
    assert by_id["mid"].availability == pytest.approx(0.5 + 0.5 * 0.3)
    sel.update_headroom("mid", 0.97)  # under 5% used counts as all of it free
    by_id = {c.model_id: c for c in sel.select(req()).candidates}
    assert by_id["mid"].availability == pytest.approx(1.0)
    sel.update_headroom("mid", 0.94)
    by_id = {c.model_id: c for c in sel.select(req()).candidates}
    assert by_id["mid"].availability == pytest.approx(0.5 + 0.5 * 0.9)


def test_rate_limited_until_the_time_passes_even_through_the_cache():
    sel, clock = make()
    first = sel.select(req()).model_id
    sel.update_rate_limited(first, clock.monotonic() + 2.0)
    s = sel.select(req())
    assert s.model_id != first and s.filtered[first] == "rate-limited for 2.0 s"
    clock.advance(2.0)
    assert sel.select(req()).model_id == first
    sel.update_rate_limited(first, clock.monotonic() + 100)
    sel.update_rate_limited(first, None)
    assert sel.select(req()).model_id == first


def test_context_window_and_max_output_filters():
    sel, _ = make()
    long_prompt = "word " * 4000  # about 6.7k estimated tokens: too big for local's 4096
    s = sel.select(req(prompt=long_prompt))
    assert "context window 4096 <" in s.filtered["local"]
    cfg = registry(model("a", "openai", max_output_tokens=256), model("b", "openai"))
    sel2, _ = make(cfg)
    s2 = sel2.select(req(max_tokens=512))
    assert s2.model_id == "b" and s2.filtered["a"] == "max_tokens 512 > max output 256"


def test_provider_and_model_constraints():
    sel, _ = make()
    only_openai = sel.select(req(constraints=SelectionConstraints(allowed_providers=("openai",))))
    assert {c.model_id for c in only_openai.candidates} == {"cheap", "big"}
    assert only_openai.filtered["mid"] == "provider anthropic not allowed"
    no_openai = sel.select(req(constraints=SelectionConstraints(excluded_providers=("openai",))))
    assert {c.model_id for c in no_openai.candidates} == {"mid", "local"}
    allowed = sel.select(req(constraints=SelectionConstraints(allowed_models=("mid", "big"))))
    assert {c.model_id for c in allowed.candidates} == {"mid", "big"}
    excluded = sel.select(req(constraints=SelectionConstraints(excluded_models=("local",))))
    assert excluded.filtered["local"] == "model excluded"


def test_max_cost_uses_the_exact_worst_case():
    """The worst case on the input token bound: what admission reserves, not the estimate."""
    sel, _ = make()
    r = req(max_tokens=1000)
    bound = r.input_token_bound()
    assert bound > r.estimated_input_tokens()
    mid_worst = worst_case_cost_usd(FLEET.model("mid"), bound, 1000)
    assert mid_worst == (Decimal(bound) * Decimal("0.003") + 1000 * Decimal("0.015")) / 1000
    at_limit = req(max_tokens=1000, constraints=SelectionConstraints(max_cost_per_request=mid_worst))
    s = sel.select(at_limit)
    assert "mid" in {c.model_id for c in s.candidates}  # equal to the max passes
    assert s.filtered["big"].startswith("worst-case cost $")
    below = req(max_tokens=1000, constraints=SelectionConstraints(
        max_cost_per_request=mid_worst - Decimal("0.000001")))
    assert "mid" in sel.select(below).filtered


def test_latency_and_quality_constraints_use_priors_then_stats():
    sel, _ = make()
    fast = req(constraints=SelectionConstraints(max_latency_ms=1000))
    assert {c.model_id for c in sel.select(fast).candidates} == {"cheap", "mid"}
    good = req(constraints=SelectionConstraints(min_quality=0.8))
    assert {c.model_id for c in sel.select(good).candidates} == {"mid", "big"}
    # live stats: mid got slow (shrunk toward the prior with 5 pseudo-observations)
    sel.update_stats({"mid": ModelStatsSnapshot("mid", 95, 95, 0, 3000.0, 1.0, 0.85, 0)})
    sel.clear_assignment_cache()
    s = sel.select(fast)
    assert s.filtered["mid"].startswith("expected latency 2885 ms")


def test_pinned_model():
    sel, _ = make()
    s = sel.select(req(model_id="big"))
    assert s.model_id == "big" and len(s.candidates) == 1
    assert s.filtered["cheap"] == "not the pinned model"
    with pytest.raises(InvalidInput):
        sel.select(req(model_id="nope"))
    with pytest.raises(NoEligibleModel) as info:
        sel.select(req(model_id="off"))
    assert info.value.filtered["off"] == "disabled"


def test_no_eligible_model_lists_every_reason():
    sel, _ = make()
    with pytest.raises(NoEligibleModel) as info:
        sel.select(req(required_capabilities=("audio",)))
    assert set(info.value.filtered) == {"cheap", "mid", "big", "local", "off"}
    assert "Explain" not in str(info.value)  # no prompt text in errors
    assert pickle.loads(pickle.dumps(info.value)).filtered == info.value.filtered


def test_priority_adjustment_factors():
    w = config.SelectionWeights()
    assert adjust_for_priority(w, "normal") is w and adjust_for_priority(w, "medium") is w
    high = adjust_for_priority(w, "high")
    assert high.cost == pytest.approx(0.125)
    assert high.performance == pytest.approx(0.25 + 0.125 * 2 / 3)
    assert high.capability == pytest.approx(0.30 + 0.125 / 3)
    critical = adjust_for_priority(w, "critical")
    assert critical.cost == pytest.approx(0.05)
    low = adjust_for_priority(w, "low")
    assert low.performance == pytest.approx(0.15) and low.capability == pytest.approx(0.24)
    assert low.cost == pytest.approx(0.25 + 0.10 + 0.06)
    for adjusted in (high, critical, low):
        assert adjusted.availability == pytest.approx(0.20)
        assert sum(adjusted.model_dump(exclude={"value_usd"}).values()) == pytest.approx(1.0)


def test_priority_moves_the_choice_between_cheap_and_strong():
    cfg = registry(
        model("cheap", "openai", cin="0.0001", cout="0.0002", ms=3000, quality_prior=0.4),
        model("strong", "anthropic", cin="0.01", cout="0.03", ms=500, quality_prior=0.98),
    )
    sel, _ = make(cfg)
    assert sel.select(req(priority="low")).model_id == "cheap"
    assert sel.select(req(priority="critical")).model_id == "strong"
    assert sel.select(req(priority="critical")).priority == "critical"


def test_weights_and_agent_overrides():
    cost_only = config.SelectionWeights(capability=0, cost=1, performance=0, availability=0)
    cap_only = config.SelectionWeights(capability=1, cost=0, performance=0, availability=0)
    sel, _ = make()
    sel.set_weights(cost_only, "v2", agent_weights={"coder": cap_only})
    s = sel.select(req())
    assert s.model_id == "local" and s.weights_version == "v2"
    assert sel.select(req(agent_type="coder")).model_id == "big"
    with pytest.raises(InvalidInput):
        sel.set_weights({"cost": 1}, "v3")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        sel.set_weights(cost_only, "")


def test_agent_weights_from_config():
    cap_only = config.SelectionWeights(capability=1, cost=0, performance=0, availability=0)
    cfg = registry(*FLEET.models, selection=config.SelectionSettings(
        agent_weights={"coder": cap_only}, weights_version="cfg-1"))
    sel, _ = make(cfg)
    s = sel.select(req(agent_type="coder"))
    assert s.model_id == "big" and s.weights_version == "cfg-1"


def test_exploration_logs_the_policy_propensity():
    eps = 0.5
    greedy = make()[0].select(req()).model_id
    cfg = registry(*FLEET.models, selection=config.SelectionSettings(exploration_epsilon=eps))
    sel, _ = make(cfg, rng=random.Random(7))
    seen: dict[str, float] = {}
    explored = 0
    for _ in range(400):
        s = sel.select(req())
        n = len(s.candidates)
        assert n == 4 and {c.model_id for c in s.candidates} == {"cheap", "mid", "big", "local"}
        assert s.propensity == pytest.approx(eps / n + ((1 - eps) if s.model_id == greedy else 0))
        assert s.candidates[0].model_id == s.model_id
        seen[s.model_id] = s.propensity
        explored += s.explored
    assert len(seen) == 4  # every eligible model gets tried
    assert 140 < explored < 260  # about eps of the draws explore
    assert sum(seen.values()) == pytest.approx(1.0)  # the policy's probabilities


def test_failover_excludes_tried_models_and_can_need_a_larger_window():
    sel, _ = make()
    best = sel.select(req()).model_id
    s = sel.select_for_failover(req(), exclude={best})
    assert s.model_id != best and s.filtered[best] == "already tried"
    assert s.propensity == 1.0 and not s.explored
    larger = sel.select_for_failover(req(), exclude=set(), need_larger_context_than=4096)
    assert "local" in larger.filtered
    with pytest.raises(NoEligibleModel):
        sel.select_for_failover(req(), exclude={"cheap", "mid", "big", "local"})
    with pytest.raises(InvalidInput):
        sel.select_for_failover(req(), exclude=set(), need_larger_context_than=-1)


def test_configured_fallbacks_follow_the_chosen_model():
    cfg = registry(
        model("a", "openai", cin="0", cout="0", quality_prior=1.0, fallbacks=["c"]),
        model("b", "openai", cin="0.001", cout="0.001"),
        model("c", "openai", cin="0.1", cout="0.1", quality_prior=0.1),
    )
    sel, _ = make(cfg)
    s = sel.select(req())
    assert s.model_id == "a" and s.fallbacks == ["c", "b"]


def test_assignment_cache_hits_and_invalidation():
    sel, clock = make()
    first = sel.select(req())
    assert sel.select(req()) is first
    sel.update_health("anthropic", "healthy")
    assert sel.select(req()) is not first
    second = sel.select(req())
    sel.set_weights(config.SelectionWeights(), "v9")
    assert sel.select(req()).weights_version == "v9"
    third = sel.select(req())
    sel.update_stats({"cheap": ModelStatsSnapshot("cheap", 10, 0, 10, None, 0.0, None, 0)})
    assert sel.select(req()) is third  # stats are not a flush: the TTL bounds staleness
    clock.advance(5.0)
    fourth = sel.select(req())
    assert fourth is not third
    assert second is not third
    sel.set_config(FLEET)
    assert sel.select(req()) is not fourth


def test_zero_ttl_disables_the_assignment_cache():
    cfg = registry(*FLEET.models, selection=config.SelectionSettings(assignment_cache_ttl_s=0))
    sel, _ = make(cfg)
    assert sel.select(req()) is not sel.select(req())


def test_stats_lower_the_performance_of_a_failing_model():
    sel, _ = make()
    before = {c.model_id: c.performance for c in sel.select(req()).candidates}
    sel.update_stats({"cheap": ModelStatsSnapshot("cheap", 50, 5, 45, 900.0, 0.1, 0.3, 20)})
    sel.clear_assignment_cache()
    after = {c.model_id: c.performance for c in sel.select(req()).candidates}
    assert after["cheap"] < before["cheap"]
    assert after["mid"] == before["mid"]


def test_selection_event_and_pickle():
    sel, _ = make()
    s = sel.select(req(request_id="r1", task_id="t1", agent_type="research"))
    event = s.to_event(req(request_id="r1", task_id="t1", agent_type="research"))
    assert isinstance(event, events.ModelSelected)
    assert event.model_id == s.model_id and event.candidates == s.candidates
    assert event.provider == FLEET.model(s.model_id).provider
    assert event.request_id == "r1" and event.reason == s.selection_reason
    copy = pickle.loads(pickle.dumps(s))
    assert copy.candidates == s.candidates and copy.selection_reason == s.selection_reason
    assert copy.model_id == s.model_id and copy.filtered == s.filtered


def test_bad_input_is_refused():
    sel, _ = make()
    with pytest.raises(InvalidInput):
        sel.select("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        sel.update_health("openai", "sleepy")
    with pytest.raises(InvalidInput):
        sel.update_headroom("cheap", 1.5)
    with pytest.raises(InvalidInput):
        sel.update_headroom("cheap", math.nan)
    with pytest.raises(InvalidInput):
        sel.update_rate_limited("cheap", math.inf)


# -- StatsCore ------------------------------------------------------------------------------


def test_stats_ewma_and_counts():
    stats = StatsCore(alpha=0.5)
    stats.record("m", True, 100.0, quality=0.8)
    stats.record("m", True, 200.0)
    stats.record("m", False, 9000.0)  # failure latency ignored
    stats.record_quality("m", 0.4)
    snap = stats.snapshot()["m"]
    assert (snap.count, snap.successes, snap.failures) == (3, 2, 1)
    assert snap.latency_ms == 150.0
    assert snap.success_rate == 0.5  # 1 → 1 → 0.5
    assert snap.quality == pytest.approx(0.6) and snap.quality_count == 2


def test_stats_fold_from_events_matches_live_recording():
    log = [
        events.RequestCompleted(request_id="r1", model_id="a", latency_ms=120.0),
        events.ResponseEvaluated(request_id="r1", model_id="a", completeness=1, relevance=1,
                                 coherence=1, quality_score=0.9, low_quality=False),
        events.AttemptFailed(request_id="r2", model_id="a", attempt=1, error_kind="timeout",
                             transient=True, latency_ms=30_000.0),
        events.AttemptFailed(request_id="r2", model_id="b", attempt=2, error_kind="server_error",
                             transient=True),
        events.RequestFailed(request_id="r2", model_id="b", attempts=2, error_kind="server_error"),
        events.RequestFailed(request_id="r3", model_id="b", attempts=1, error_kind="timeout"),
        events.AttemptFailed(request_id="r4", model_id="b", attempt=1,
                             error_kind="invalid_request", transient=False),
        events.RequestCompleted(request_id="r5", model_id="a", latency_ms=1.0, cache_hit=True),
        events.RequestFailed(request_id="r6", attempts=0, error_kind="no_eligible_model"),
    ]
    live = StatsCore()
    live.record("a", True, 120.0)
    live.record_quality("a", 0.9)
    live.record("a", False, 30_000.0)
    live.record("b", False)  # r2's attempt (its RequestFailed is not counted again)
    live.record("b", False)  # r3: failed without an attempt event
    assert StatsCore.from_events(log).snapshot() == live.snapshot()


def test_stats_bad_input():
    stats = StatsCore()
    with pytest.raises(InvalidInput):
        stats.record("m", True, -1.0)
    with pytest.raises(InvalidInput):
        stats.record("m", True, 1.0, quality=1.5)
    with pytest.raises(InvalidInput):
        stats.record_quality("m", math.nan)
    with pytest.raises(InvalidInput):
        stats.record("", True, 1.0)
    with pytest.raises(InvalidInput):
        StatsCore(alpha=0)
    assert stats.snapshot() == {}


def test_live_state_carries_health_cool_downs_and_weights_to_a_polling_router():
    source, clock = make(rng=random.Random(1))
    source.update_health("openai", "degraded")
    source.update_health("anthropic", "healthy", ["mid"])
    source.update_rate_limited("local", clock.monotonic() + 30)
    new = config.SelectionWeights(capability=0.1, cost=0.6, performance=0.2, availability=0.1)
    source.set_weights(new, "tuned-1")
    state = pickle.loads(pickle.dumps(source.live_state()))  # it travels through Ray

    polled, _ = make(rng=random.Random(1))
    fresh = polled.apply_live_state(state)
    assert fresh == [("local", clock.monotonic() + 30)]
    assert polled.live_state() == state
    assert polled.weights_version == "tuned-1"
    for pinned in ("mid", "local"):  # "mid" reported unavailable, "local" cooling down
        with pytest.raises(NoEligibleModel):
            polled.select(req(model_id=pinned))
    assert polled.select(req()).candidates == source.select(req()).candidates
    assert polled.apply_live_state(state) == []  # nothing new the second time


def test_learnt_quality_per_agent_type_drives_the_choice():
    """Issue 11: quality is learnt per (model, agent type) from feedback; the same two models
    rank differently for two agent types when feedback says so."""
    from api_model_management.events import FeedbackRecorded
    from api_model_management.selection import QualityFold

    sel, _ = make()
    fold = QualityFold({m.id: m.quality_prior for m in sel.config.models})
    for i in range(200):  # "big" is right on law, "cheap" on cooking
        for model, agent, right in (("big", "law", 1.0), ("cheap", "law", 0.0),
                                    ("big", "cooking", 0.0), ("cheap", "cooking", 1.0)):
            fold.apply(FeedbackRecorded(request_id=f"{model}-{agent}-{i}", model_id=model,
                                        agent_type=agent, score=right, source="user"))
    sel.update_quality(fold.snapshot())
    allowed = {"allowed_models": ("big", "cheap")}
    perf = {a: {c.model_id: c.performance for c in sel.select(req(agent_type=a, constraints=allowed)).candidates}
            for a in ("law", "cooking")}
    assert perf["law"]["big"] > perf["law"]["cheap"]
    assert perf["cooking"]["cheap"] > perf["cooking"]["big"]
    assert sel.quality_for("big", "law") > 0.9 > 0.1 > sel.quality_for("cheap", "law")


def test_learnt_quality_never_mixes_signals_within_an_agent_type():
    """An agent type that reports outcomes is scored on them alone: the heuristic scores of its
    requests without feedback (another scale) do not dilute them; an agent type without any
    outcome is scored on the heuristic."""
    from api_model_management.events import FeedbackRecorded, ResponseEvaluated
    from api_model_management.selection import QualityFold

    def scored(request_id: str, model: str, agent: str, q: float) -> ResponseEvaluated:
        return ResponseEvaluated(request_id=request_id, model_id=model, agent_type=agent,
                                 completeness=q, relevance=q, coherence=q, quality_score=q,
                                 low_quality=False)

    fold = QualityFold({"big": 0.5, "cheap": 0.5})
    for i in range(100):  # outcomes: big right, cheap wrong
        for model, right in (("big", 1.0), ("cheap", 0.0)):
            fold.apply(FeedbackRecorded(request_id=f"{model}-{i}", model_id=model,
                                        agent_type="qa", score=right, source="ground_truth"))
    outcome_only = (fold.quality("big", "qa"), fold.quality("cheap", "qa"))
    for i in range(1000):  # later requests, never reported: the heuristic likes both alike
        for model in ("big", "cheap"):
            fold.apply(scored(f"h-{model}-{i}", model, "qa", 0.8))
            fold.apply(scored(f"c-{model}-{i}", model, "chat", 0.9 if model == "big" else 0.6))
    assert (fold.quality("big", "qa"), fold.quality("cheap", "qa")) == outcome_only
    assert fold.tier("qa") == 3 and fold.tier("chat") == 1 and fold.tier("other") == 0
    assert outcome_only[0] > 0.9 > 0.1 > outcome_only[1]
    assert fold.quality("big", "chat") > 0.85 > 0.65 > fold.quality("cheap", "chat")
    assert fold.observations("big", "qa") == 100 and fold.observations("big", "chat") == 1000
    snap = fold.snapshot()
    assert snap.quality("big", "qa", 0.5) == fold.quality("big", "qa")
    # a judge's rating replaces the heuristic for its request and moves "chat" to the judge tier
    fold.apply(FeedbackRecorded(request_id="c-cheap-0", model_id="cheap", agent_type="chat",
                                score=1.0, source="judge"))
    assert fold.tier("chat") == 2 and fold.observations("cheap", "chat") == 1
    assert fold.quality("cheap", "chat") > fold.quality("big", "chat")  # big has no judge yet


# ---- value_usd: amounts, not only price ratios

def test_value_usd_is_validated_and_not_part_of_the_weight_sum():
    w = config.SelectionWeights(capability=0, cost=0, performance=1, availability=0,
                                value_usd=0.01)
    assert w.value_usd == 0.01
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="value_usd"):
            config.SelectionWeights(value_usd=bad)
    with pytest.raises(ValueError, match="sum"):
        config.SelectionWeights(capability=0.5, cost=0, performance=0, availability=0,
                                value_usd=0.5)
    assert adjust_for_priority(w, "critical").value_usd == 0.01


def test_value_usd_sends_cheap_requests_to_the_dear_model_and_dear_ones_to_the_cheap():
    cfg = registry(
        model("cheap", "openai", cin="0.0006", cout="0.0006", ms=800, quality_prior=0.68),
        model("strong", "anthropic", cin="0.01", cout="0.03", ms=800, quality_prior=0.80),
    )
    sel, _ = make(cfg)
    # performance only, and one point of suitability worth $1: 0.4 x 0.12 quality = 0.048 points
    # are worth $0.048, more than the extra cost of a short answer, less than that of a long one
    sel.set_weights(config.SelectionWeights(capability=0, cost=0, performance=1, availability=0,
                                            value_usd=1.0), "value-1")
    short = sel.select(req(max_tokens=100))
    long = sel.select(req(max_tokens=4000))
    assert short.model_id == "strong" and long.model_id == "cheap"
    by_id = {c.model_id: c for c in long.candidates}
    m = cfg.model("strong")
    usd = (req(max_tokens=4000).estimated_input_tokens() * float(m.cost_per_1k_input_tokens)
           + 4000 * float(m.cost_per_1k_output_tokens)) / 1000
    assert by_id["strong"].score == pytest.approx(by_id["strong"].performance - usd)
    assert "value $1" in long.selection_reason and long.weights_version == "value-1"
    # without value_usd the performance alone picks the strong model for both
    sel.set_weights(config.SelectionWeights(capability=0, cost=0, performance=1, availability=0),
                    "perf")
    assert sel.select(req(max_tokens=4000)).model_id == "strong"


def test_expected_cost_usd_inverts_the_cost_sub_score():
    from api_model_management.selection._core import expected_cost_usd
    sel, _ = make()
    request = req(max_tokens=700)
    for c in sel.select(request).candidates:
        m = sel.config.model(c.model_id)
        usd = (request.estimated_input_tokens() * float(m.cost_per_1k_input_tokens)
               + request.max_tokens * float(m.cost_per_1k_output_tokens)) / 1000
        # exact on the scale; below its floor (the free local model) the floor
        assert expected_cost_usd(c.cost) == pytest.approx(max(usd, 1e-6), rel=1e-9)
    assert expected_cost_usd(1.0) == pytest.approx(1e-6) and expected_cost_usd(0.0) == pytest.approx(1.0)
