"""SelectorCore over random fleets, health, rate limits and requests: it never picks a disabled,
unhealthy, unavailable, rate-limited or incapable model while an eligible one exists; its score is
monotone in cost and availability; its propensities are the policy's; and a selector fed from
replayed health and stats selects exactly as one fed live."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management import ModelRequest, config, events
from api_model_management._clock import ManualClock
from api_model_management.errors import NoEligibleModel
from api_model_management.health._core import HealthCore
from api_model_management.selection._core import SelectorCore
from api_model_management.selection._stats import StatsCore

pytestmark = pytest.mark.property

PROVIDERS = ("p0", "p1", "p2", "p3")
CAPS = ("text-generation", "code-generation", "analysis", "vision")
STATES = ("healthy", "degraded", "unhealthy", "half_open", "unknown")
TRAFFIC_ORDER = ("degraded", "unknown", "healthy")  # increasing availability
PRICES = [Decimal(p) for p in ("0", "0.0001", "0.0005", "0.001", "0.003", "0.01", "0.03", "0.06")]
PROP_SETTINGS = settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


# strategies built once (building them inside a composite on every draw is slow)
_CAP_SETS = st.sets(st.sampled_from(CAPS[1:])).map(lambda caps: {CAPS[0], *caps})
_PROVIDER = st.sampled_from(PROVIDERS)
_PRICE = st.sampled_from(PRICES)
_CONTEXT = st.sampled_from([2048, 8192, 32_000, 128_000])
_LATENCY = st.integers(100, 5000)
_QUALITY = st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 1.0])
_LIMITS = config.RateLimits(requests_per_minute=60, tokens_per_minute=10_000)


@st.composite
def fleets(draw, min_models: int = 2) -> config.RegistryConfig:
    n = draw(st.integers(min_models, 10))
    models = []
    for i in range(n):
        models.append(config.ModelConfig(
            id=f"m{i}", provider=draw(_PROVIDER), name=f"m{i}",
            capabilities=sorted(draw(_CAP_SETS)),
            cost_per_1k_input_tokens=draw(_PRICE),
            cost_per_1k_output_tokens=draw(_PRICE),
            rate_limits=_LIMITS,
            context_window=draw(_CONTEXT),
            average_response_time_ms=draw(_LATENCY),
            quality_prior=draw(_QUALITY),
            enabled=draw(st.booleans()) if i else True,
        ))
    return config.RegistryConfig(models=models)


_PROMPT_CHARS = st.integers(1, 20_000)
_MAX_TOKENS = st.integers(1, 4096)
_REQUIRED = st.sets(st.sampled_from(CAPS[1:]), max_size=1).map(lambda caps: {CAPS[0], *caps})
_PRIORITY = st.sampled_from(["low", "normal", "medium", "high", "critical"])


@st.composite
def requests(draw) -> ModelRequest:
    return ModelRequest(
        prompt="x" * draw(_PROMPT_CHARS),
        max_tokens=draw(_MAX_TOKENS),
        required_capabilities=tuple(sorted(draw(_REQUIRED))),
        priority=draw(_PRIORITY),
    )


_STATE = st.sampled_from(STATES + ("healthy", "unknown"))


@st.composite
def worlds(draw):
    cfg = draw(fleets())
    ids = [m.id for m in cfg.models]
    health = {p: draw(_STATE) for p in PROVIDERS}
    unavailable = draw(st.sets(st.sampled_from(ids), max_size=2))
    limited = draw(st.dictionaries(st.sampled_from(ids), st.integers(-5, 5), max_size=3))
    return cfg, health, unavailable, limited


def build(cfg, health, unavailable, limited, *, epsilon=0.0, seed=0):
    if epsilon:
        sel_settings = config.SelectionSettings(exploration_epsilon=epsilon)
        cfg = cfg.model_copy(update={"settings": config.Settings(selection=sel_settings)})
    clock = ManualClock()
    sel = SelectorCore(cfg, clock=clock, rng=random.Random(seed))
    for provider, state in health.items():
        missing = [m.id for m in cfg.models if m.provider == provider and m.id in unavailable]
        sel.update_health(provider, state, missing)
    for model_id, offset in limited.items():
        sel.update_rate_limited(model_id, clock.monotonic() + offset)
    return sel


def reference_eligible(cfg, health, unavailable, limited, request) -> set[str]:
    needed = request.estimated_input_tokens() + request.max_tokens
    return {
        m.id for m in cfg.models
        if m.enabled and set(request.required_capabilities) <= set(m.capabilities)
        and needed <= m.context_window and health[m.provider] not in ("unhealthy", "half_open")
        and m.id not in unavailable and limited.get(m.id, -1) <= 0
    }


def scores(sel: SelectorCore, request: ModelRequest) -> dict[str, float]:
    sel.clear_assignment_cache()
    return {c.model_id: c.score for c in sel.select(request).candidates}


@PROP_SETTINGS
@given(world=worlds(), request=requests(), epsilon=st.sampled_from([0.0, 0.3, 1.0]),
       seed=st.integers(0, 1000))
def test_never_picks_an_ineligible_model_while_an_eligible_one_exists(world, request, epsilon,
                                                                      seed):
    cfg, health, unavailable, limited = world
    eligible = reference_eligible(cfg, health, unavailable, limited, request)
    sel = build(cfg, health, unavailable, limited, epsilon=epsilon, seed=seed)
    if not eligible:
        with pytest.raises(NoEligibleModel) as info:
            sel.select(request)
        assert set(info.value.filtered) == {m.id for m in cfg.models}
        return
    for _ in range(3):
        s = sel.select(request)
        assert s.model_id in eligible
        assert {c.model_id for c in s.candidates} == eligible
        assert set(s.filtered) == {m.id for m in cfg.models} - eligible
        assert len(s.candidates) == len(eligible)


@PROP_SETTINGS
@given(world=worlds(), request=requests(), data=st.data())
def test_a_cheaper_model_never_scores_lower(world, request, data):
    cfg, health, unavailable, limited = world
    eligible = sorted(reference_eligible(cfg, health, unavailable, limited, request))
    if not eligible:
        return
    target = data.draw(st.sampled_from(eligible))
    cheaper_in = data.draw(st.sampled_from([Decimal("0"), Decimal("0.5"), Decimal("0.99")]))
    cheaper_out = data.draw(st.sampled_from([Decimal("0"), Decimal("0.5"), Decimal("1")]))
    models = [
        m.model_copy(update={
            "cost_per_1k_input_tokens": m.cost_per_1k_input_tokens * cheaper_in,
            "cost_per_1k_output_tokens": m.cost_per_1k_output_tokens * cheaper_out,
        }) if m.id == target else m
        for m in cfg.models
    ]
    cheaper_cfg = cfg.model_copy(update={"models": models})
    before = scores(build(cfg, health, unavailable, limited), request)[target]
    after = scores(build(cheaper_cfg, health, unavailable, limited), request)[target]
    assert after >= before - 1e-12


@PROP_SETTINGS
@given(world=worlds(), request=requests(), data=st.data())
def test_more_availability_never_lowers_the_score(world, request, data):
    cfg, health, unavailable, limited = world
    health = {p: ("healthy" if s == "unhealthy" else s) for p, s in health.items()}
    eligible = sorted(reference_eligible(cfg, health, unavailable, limited, request))
    if not eligible:
        return
    target = data.draw(st.sampled_from(eligible))
    provider = cfg.model(target).provider
    low, high = sorted(data.draw(st.lists(st.sampled_from(TRAFFIC_ORDER), min_size=2,
                                          max_size=2)), key=TRAFFIC_ORDER.index)
    h_low, h_high = sorted(data.draw(st.lists(st.floats(0, 1), min_size=2, max_size=2)))
    worse = build(cfg, {**health, provider: low}, unavailable, limited)
    worse.update_headroom(target, h_low)
    better = build(cfg, {**health, provider: high}, unavailable, limited)
    better.update_headroom(target, h_high)
    assert scores(better, request)[target] >= scores(worse, request)[target] - 1e-12


@PROP_SETTINGS
@given(world=worlds(), request=requests(), epsilon=st.floats(0.01, 1.0),
       seed=st.integers(0, 10_000))
def test_propensity_is_the_policy_probability(world, request, epsilon, seed):
    cfg, health, unavailable, limited = world
    if not reference_eligible(cfg, health, unavailable, limited, request):
        return
    greedy = build(cfg, health, unavailable, limited).select(request)
    s = build(cfg, health, unavailable, limited, epsilon=epsilon, seed=seed).select(request)
    n = len(greedy.candidates)
    expected = epsilon / n + ((1 - epsilon) if s.model_id == greedy.model_id else 0.0)
    assert s.propensity == pytest.approx(expected)
    assert 0 < s.propensity <= 1
    assert s.candidates[0].model_id == s.model_id


@PROP_SETTINGS
@given(world=worlds(), request=requests())
def test_the_assignment_cache_returns_what_a_fresh_ranking_would(world, request):
    cfg, health, unavailable, limited = world
    sel = build(cfg, health, unavailable, limited)
    try:
        first = sel.select(request)
    except NoEligibleModel:
        return
    cached = sel.select(request)
    sel.clear_assignment_cache()
    fresh = sel.select(request)
    assert cached.candidates == fresh.candidates == first.candidates


OUTCOME = st.tuples(
    st.integers(0, 9),  # model index (mod fleet size)
    st.booleans(),
    st.sampled_from(["timeout", "server_error", "auth", "model_not_found", "invalid_request"]),
    st.floats(1, 10_000),
    st.none() | st.floats(0, 1),
    st.integers(0, 20),  # seconds before this outcome
)


@PROP_SETTINGS
@given(cfg=fleets(), outcomes=st.lists(OUTCOME, max_size=40), request=requests())
def test_selector_fed_from_replayed_events_selects_as_when_fed_live(cfg, outcomes, request):
    health_settings = config.HealthSettings()
    clock = ManualClock()
    models = {p: [m.id for m in cfg.models if m.provider == p] for p in PROVIDERS}
    live_health = {p: HealthCore(p, health_settings, clock=clock, models=models[p])
                   for p in PROVIDERS}
    live_stats = StatsCore()
    log: list[events.Event] = []
    for i, (index, ok, kind, latency_ms, quality, wait_s) in enumerate(outcomes):
        clock.advance(wait_s)
        m = cfg.models[index % len(cfg.models)]
        rid, at = f"r{i}", clock.now()
        live_health[m.provider].record_outcome(ok, None if ok else kind, m.id)
        live_stats.record(m.id, ok, latency_ms if ok else None, error_kind=None if ok else kind)
        if ok:
            log.append(events.RequestCompleted(request_id=rid, occurred_at=at, model_id=m.id,
                                               provider=m.provider, latency_ms=latency_ms))
        else:
            log.append(events.AttemptFailed(request_id=rid, occurred_at=at, model_id=m.id,
                                            provider=m.provider, attempt=1, error_kind=kind,
                                            transient=kind in ("timeout", "server_error")))
        if ok and quality is not None:
            live_stats.record_quality(m.id, quality)
            log.append(events.ResponseEvaluated(request_id=rid, occurred_at=at, model_id=m.id,
                                                completeness=quality, relevance=quality,
                                                coherence=quality, quality_score=quality,
                                                low_quality=False))
    replayed_health = {p: HealthCore.replay(p, health_settings, log, clock=clock,
                                            models=models[p]) for p in PROVIDERS}
    replayed_stats = StatsCore.from_events(log)
    assert replayed_stats.snapshot() == live_stats.snapshot()

    def fed(health_cores, stats):
        sel = SelectorCore(cfg, clock=clock)
        for p, core in health_cores.items():
            sel.update_health(p, core.snapshot())
        sel.update_stats(stats.snapshot())
        try:
            return sel.select(request).candidates
        except NoEligibleModel as exc:
            return exc.filtered

    for p in PROVIDERS:
        assert replayed_health[p].snapshot() == live_health[p].snapshot()
    assert fed(replayed_health, replayed_stats) == fed(live_health, live_stats)


_VALUE = st.sampled_from([1e-5, 1e-4, 3e-3, 0.1, 10.0]) | st.floats(1e-6, 100.0)
_PART = st.integers(0, 10)


@PROP_SETTINGS
@given(world=worlds(), request=requests(), parts=st.tuples(_PART, _PART, _PART, _PART),
       value=st.none() | _VALUE)
def test_replay_scores_the_logged_candidates_as_the_selector_did(world, request, parts, value):
    """Replay equality with value_usd: from the logged sub-scores alone, replay's greedy choice
    under the serving weights is the Selector's (up to float rounding in an exact tie)."""
    from api_model_management.replay import LoggedDecision, Outcome
    from api_model_management.replay._policy import greedy_index
    from api_model_management.selection._core import adjust_for_priority

    if not any(parts):
        parts = (1, 0, 0, 0)
    total = sum(parts)
    weights = config.SelectionWeights(
        capability=parts[0] / total, cost=parts[1] / total, performance=parts[2] / total,
        availability=parts[3] / total, value_usd=value)
    sel = build(*world)
    sel.set_weights(weights, "w")
    try:
        s = sel.select(request)
    except NoEligibleModel:
        return
    decision = LoggedDecision(
        request_id="r", agent_type=None, priority=s.priority, candidates=tuple(s.candidates),
        chosen=s.model_id, propensity=1.0, weights_version="w", explored=False,
        outcome=Outcome(success=True, cost_usd=Decimal(0), latency_ms=0.0, quality=None))
    picked = s.candidates[greedy_index(decision, adjust_for_priority(weights, s.priority))]
    by_id = {c.model_id: c.score for c in s.candidates}
    assert by_id[picked.model_id] == pytest.approx(by_id[s.model_id], rel=1e-9, abs=1e-12)
