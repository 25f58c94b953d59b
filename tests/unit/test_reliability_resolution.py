"""The reliability part of the performance sub-score reads success rate and latency at their
measurement resolution: differences below it do not move choices, larger ones do."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_model_management import ModelRequest, config
from api_model_management._clock import ManualClock
from api_model_management.selection import (
    LATENCY_REF_MS,
    RELIABILITY_RESOLUTION,
    SelectorCore,
    reliability_part,
)
from api_model_management.selection._stats import ModelStatsSnapshot

pytestmark = pytest.mark.unit


def _model(mid: str) -> config.ModelConfig:
    return config.ModelConfig(
        id=mid, provider="openai", name=mid, capabilities=["text-generation"],
        cost_per_1k_input_tokens=Decimal("0.001"), cost_per_1k_output_tokens=Decimal("0.002"),
        rate_limits=config.RateLimits(requests_per_minute=60, tokens_per_minute=100_000),
        context_window=128_000, average_response_time_ms=500.0, quality_prior=0.7,
    )


def _selector() -> SelectorCore:
    cfg = config.RegistryConfig(models=[_model("a"), _model("b")], settings=config.Settings())
    return SelectorCore(cfg, clock=ManualClock())


def _stats(mid: str, latency_ms: float, success_rate: float = 1.0, n: int = 1000):
    return ModelStatsSnapshot(mid, n, n, 0, latency_ms, success_rate, None, 0)


def test_the_formula_at_its_resolution():
    success_step, latency_step = RELIABILITY_RESOLUTION
    assert (success_step, latency_step) == (0.01, 100.0)
    assert reliability_part(1.0, 0.0) == pytest.approx(0.6)
    assert reliability_part(0.95, 1000.0) == pytest.approx(0.3 * 0.95 + 0.15)
    # under the resolution: the same part
    assert reliability_part(0.996, 15.0) == reliability_part(1.0, 25.0) == reliability_part(1.0, 0.0)
    assert reliability_part(0.9, 1_020.0) == reliability_part(0.9, 1_090.0)
    assert reliability_part(1.0, 99.0) == reliability_part(1.0, 0.0) > reliability_part(1.0, 100.0)
    # a step of either is seen
    assert reliability_part(0.98, 20.0) < reliability_part(1.0, 20.0)
    assert reliability_part(1.0, 1_200.0) < reliability_part(1.0, 1_000.0)
    assert LATENCY_REF_MS == 1000.0


@given(st.floats(0.0, 1.0), st.floats(0.0, 60_000.0), st.floats(0.0, 1.0), st.floats(0.0, 60_000.0))
def test_never_rewards_a_worse_model_and_stays_in_its_range(s1, l1, s2, l2):
    r1 = reliability_part(s1, l1)
    assert 0.0 <= r1 <= 0.6 + 1e-12
    if s1 >= s2 and l1 <= l2:  # at least as reliable and at least as fast
        assert r1 >= reliability_part(s2, l2)


def test_latency_noise_of_a_few_ms_leaves_two_equal_models_tied_and_the_order_fixed():
    sel = _selector()
    request = ModelRequest(prompt="What is 2 + 2?")
    chosen = []
    for la, lb in [(15.0, 25.0), (25.0, 15.0), (12.0, 41.0), (94.0, 9.0)]:
        sel.update_stats({"a": _stats("a", la), "b": _stats("b", lb)})
        sel.clear_assignment_cache()
        s = sel.select(request)
        perf = {c.model_id: c.performance for c in s.candidates}
        assert perf["a"] == perf["b"]
        chosen.append(s.model_id)
    assert chosen == ["a"] * 4  # the tie goes to config order, whatever the noise


def test_a_real_latency_difference_still_decides():
    sel = _selector()
    sel.update_stats({"a": _stats("a", 2_400.0), "b": _stats("b", 600.0)})
    s = sel.select(ModelRequest(prompt="What is 2 + 2?"))
    perf = {c.model_id: c.performance for c in s.candidates}
    assert perf["b"] > perf["a"] and s.model_id == "b"
    sel.update_stats({"a": _stats("a", 600.0), "b": _stats("b", 600.0, success_rate=0.9)})
    sel.clear_assignment_cache()
    assert sel.select(ModelRequest(prompt="What is 2 + 2?")).model_id == "a"


def test_a_system_seeded_with_fewer_outcomes_scores_reliability_as_the_log_ended():
    """A system started on a log folds the newest 100 outcomes per model, so its estimate leans
    more towards the 500 ms prior than the log's own end state did (52 against 35 ms here): the
    same reliability part, so the same choices."""
    sel = _selector()
    sel.update_stats({"a": _stats("a", 30.0, n=430), "b": _stats("b", 20.0, n=2_500)})
    at_log_end = {c.model_id: c.performance for c in sel.select(ModelRequest(prompt="x")).candidates}
    sel.update_stats({"a": _stats("a", 30.0, n=100), "b": _stats("b", 20.0, n=100)})
    sel.clear_assignment_cache()
    seeded = {c.model_id: c.performance for c in sel.select(ModelRequest(prompt="x")).candidates}
    assert seeded == at_log_end
