"""DegradationCore: each alert kind raised once when its condition starts, never repeated while
it lasts, cleared once it has been gone for ``clear_after_s``, raised again on a new episode; the
numbers in the event; too little data decides nothing; bad input; the latency histogram."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from api_model_management._clock import ManualClock
from api_model_management.alerts import (
    ERROR_RATE,
    GROWTH,
    LATENCY_DEGRADED,
    QUALITY_DEGRADED,
    DegradationCore,
    LatencyHistogram,
    bucket_of,
    upper_bound_ms,
)
from api_model_management.config import AlertSettings
from api_model_management.errors import InvalidInput
from api_model_management.events import PerformanceAlert

pytestmark = pytest.mark.unit

SETTINGS = AlertSettings(
    slice_s=10, window_s=60, baseline_s=600, min_calls=10, baseline_min_calls=30,
    min_evaluations=5, latency_factor=2.0, latency_min_increase_ms=50, error_rate_threshold=0.25,
    quality_drop=0.15, clear_after_s=120,
)
M = "gpt-4o-mini"


def make(settings: AlertSettings = SETTINGS) -> tuple[DegradationCore, ManualClock]:
    clock = ManualClock()
    return DegradationCore(settings, clock=clock, router_id="r-1"), clock


def run(core: DegradationCore, clock: ManualClock, seconds: float, *, latency_ms: float = 100.0,
        fail_every: int = 0, quality: float | None = 0.85, error_kind: str = "server_error",
        per_slice: int = 6, model: str = M) -> list[tuple[float, PerformanceAlert]]:
    """``per_slice`` calls every ``slice_s`` for ``seconds``: every ``fail_every``-th fails; the
    others take ``latency_ms`` and score ``quality``. Returns (seconds since start, alert)."""
    step = core.settings.slice_s / per_slice
    out = []
    for i in range(round(seconds / step)):
        if fail_every and i % fail_every == 0:
            alerts = core.record(model, "openai", False, error_kind=error_kind)
        else:
            alerts = core.record(model, "openai", True, latency_ms, quality)
        out.extend((clock.monotonic() - 1000.0, a) for a in alerts)
        clock.advance(step)
    return out


def kinds(timed: list[tuple[float, PerformanceAlert]]) -> list[tuple[str, bool]]:
    return [(a.kind, a.cleared) for _, a in timed]


# -- latency ----------------------------------------------------------------------------------------


def test_a_latency_spike_raises_once_clears_once_and_raises_again():
    core, clock = make()
    assert run(core, clock, 600, latency_ms=100) == []  # the baseline: no alert
    spike = run(core, clock, 600, latency_ms=400)  # ten minutes of it: still one alert
    assert kinds(spike) == [(LATENCY_DEGRADED, False)]
    at, alert = spike[0]
    assert 600 < at <= 600 + 70  # within a window and a slice of the start
    assert alert.metric == "p95_latency_ms" and alert.model_id == M and alert.provider == "openai"
    assert 400 <= alert.value <= 400 * GROWTH  # the window's p95, to within a bucket
    assert 200 <= alert.threshold <= 200 * GROWTH  # 2 x the baseline's p95
    assert alert.request_id is None and alert.agent_type is None  # about the model, not a request
    assert "p95 latency" in alert.message and "router r-1" in alert.message
    assert core.active() == [alert]

    recovered = run(core, clock, 600, latency_ms=100)
    assert kinds(recovered) == [(LATENCY_DEGRADED, True)]
    at, cleared = recovered[0]
    # the window still holds the spike for up to 60 s, then 120 s without it (judged at slice
    # boundaries: up to two slices later)
    assert 1200 + 120 <= at <= 1200 + 60 + 120 + 20
    assert cleared.value <= 100 * GROWTH and cleared.message.startswith("cleared")
    assert core.active() == []

    again = run(core, clock, 120, latency_ms=400)
    assert kinds(again) == [(LATENCY_DEGRADED, False)]


def test_a_small_absolute_rise_is_not_a_degradation():
    core, clock = make()
    run(core, clock, 600, latency_ms=10)
    assert run(core, clock, 120, latency_ms=45) == []  # 4.5x, but only 35 ms above (< 50)
    core, clock = make()
    run(core, clock, 600, latency_ms=10)
    assert kinds(run(core, clock, 120, latency_ms=70)) == [(LATENCY_DEGRADED, False)]


def test_a_lasting_degradation_does_not_become_the_baseline():
    """While raised the baseline is frozen: an hour of slowness (six baselines long) stays one
    raised alert, neither cleared nor repeated."""
    core, clock = make()
    run(core, clock, 600, latency_ms=100)
    assert kinds(run(core, clock, 3600, latency_ms=400)) == [(LATENCY_DEGRADED, False)]
    assert [a.kind for a in core.active()] == [LATENCY_DEGRADED]


def test_without_a_baseline_latency_is_not_judged():
    core, clock = make()
    assert run(core, clock, 300, latency_ms=5000) == []  # slow from the start: nothing to compare


def test_flapping_around_the_threshold_raises_once():
    """Slow and normal minutes alternating: the condition keeps coming back before
    ``clear_after_s`` of absence, so there is one alert, not one per minute."""
    core, clock = make()
    run(core, clock, 600, latency_ms=100)
    timed = []
    for _ in range(10):
        timed += run(core, clock, 60, latency_ms=400)
        timed += run(core, clock, 60, latency_ms=100)
    assert kinds(timed) == [(LATENCY_DEGRADED, False)]


# -- error rate -------------------------------------------------------------------------------------


def test_an_error_burst_raises_once_and_clears():
    core, clock = make()
    assert run(core, clock, 300) == []
    burst = run(core, clock, 300, fail_every=2)  # half the calls fail
    assert kinds(burst) == [(ERROR_RATE, False)]
    alert = burst[0][1]
    assert alert.metric == "error_rate" and alert.threshold == 0.25
    assert 0.25 <= alert.value <= 0.5
    assert "mostly server_error" in alert.message and "calls failed" in alert.message
    recovered = run(core, clock, 300)
    assert kinds(recovered) == [(ERROR_RATE, True)]
    assert recovered[0][1].value == 0.0
    assert kinds(run(core, clock, 120, fail_every=1)) == [(ERROR_RATE, False)]


def test_request_faults_and_429s_do_not_count_as_errors():
    core, clock = make()
    for kind in ("rate_limited", "invalid_request", "context_window", "budget_exceeded"):
        assert run(core, clock, 120, fail_every=1, error_kind=kind) == []
    assert core.active() == []


def test_a_few_calls_decide_nothing():
    core, clock = make()
    assert run(core, clock, 600, fail_every=1, per_slice=1) == []  # 6 calls per window < 10


# -- quality ----------------------------------------------------------------------------------------


def test_falling_quality_raises_once_clears_and_raises_again():
    core, clock = make()
    run(core, clock, 600, quality=0.85)
    assert run(core, clock, 30, quality=0.8) == []  # a drop of 0.05: within the allowance
    bad = run(core, clock, 300, quality=0.3)
    assert kinds(bad) == [(QUALITY_DEGRADED, False)]
    alert = bad[0][1]
    assert alert.metric == "mean_quality" and alert.value < alert.threshold
    assert 0.6 <= alert.threshold <= 0.7  # the baseline mean (about 0.85) minus 0.15
    assert kinds(run(core, clock, 600, quality=0.85)) == [(QUALITY_DEGRADED, True)]
    assert kinds(run(core, clock, 120, quality=0.2)) == [(QUALITY_DEGRADED, False)]


def test_unscored_calls_leave_quality_unjudged():
    core, clock = make()
    run(core, clock, 600, quality=0.85)
    assert run(core, clock, 300, quality=None) == []


# -- hysteresis across kinds and models -------------------------------------------------------------


def test_models_and_kinds_are_judged_separately():
    core, clock = make()
    for _ in range(60):  # ten minutes: both models normal
        run(core, clock, 5, model="a", per_slice=12)
        core.record("b", "anthropic", True, 100.0, 0.85)
    both = []
    for _ in range(30):  # "a" slow and failing; "b" fine
        both += run(core, clock, 5, model="a", latency_ms=400, fail_every=2, per_slice=12)
        core.record("b", "anthropic", True, 100.0, 0.85)
    assert sorted(kinds(both)) == [(ERROR_RATE, False), (LATENCY_DEGRADED, False)]
    assert {a.model_id for a in core.active()} == {"a"}


def test_too_little_data_neither_raises_nor_clears():
    """A raised alert stays raised while the model gets too few calls to judge (no evidence it
    recovered), and clears once enough good calls arrive for ``clear_after_s``."""
    core, clock = make()
    run(core, clock, 300)
    run(core, clock, 120, fail_every=1)
    assert [a.kind for a in core.active()] == [ERROR_RATE]
    assert run(core, clock, 1200, per_slice=1) == []  # 6 calls a minute: not judged
    assert [a.kind for a in core.active()] == [ERROR_RATE]
    assert kinds(run(core, clock, 300)) == [(ERROR_RATE, True)]


def test_clear_after_zero_clears_at_the_first_good_judgement():
    core, clock = make(SETTINGS.model_copy(update={"clear_after_s": 0.0}))
    run(core, clock, 300)
    run(core, clock, 120, fail_every=1)
    timed = run(core, clock, 120)
    assert kinds(timed) == [(ERROR_RATE, True)]
    assert timed[0][0] <= 420 + 70  # as soon as the window has no failures left


# -- evaluate, disabled, bad input ------------------------------------------------------------------


def test_evaluate_judges_without_a_new_call():
    core, clock = make()
    run(core, clock, 300)
    for _ in range(30):
        assert core.record(M, "openai", False, error_kind="timeout") == ()
    assert core.evaluate() == []  # the slice has not ended
    clock.advance(10)
    (alert,) = core.evaluate()
    assert (alert.kind, alert.cleared, alert.model_id) == (ERROR_RATE, False, M)
    assert core.evaluate() == []  # the same slice again: nothing new


def test_disabled_records_nothing():
    core, clock = make(SETTINGS.model_copy(update={"enabled": False}))
    run(core, clock, 300)
    assert run(core, clock, 300, fail_every=1) == [] and core.active() == []
    assert core.record("", None, True, -1.0) == ()  # not even checked: nothing is folded


@pytest.mark.parametrize("call", [
    lambda c: c.record(M, "openai", True, -1.0),
    lambda c: c.record(M, "openai", True, math.nan),
    lambda c: c.record(M, "openai", True, math.inf),
    lambda c: c.record(M, "openai", True, 10.0, 1.5),
    lambda c: c.record(M, "openai", True, 10.0, math.nan),
    lambda c: c.record("", "openai", True, 10.0),
])
def test_bad_input_is_a_typed_error_and_changes_nothing(call):
    core, clock = make()
    with pytest.raises(InvalidInput) as info:
        call(core)
    assert "\n" not in str(info.value)
    clock.advance(600)
    assert core.evaluate() == [] and core.active() == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"slice_s": 30, "window_s": 10}, "window_s must be at least slice_s"),
    ({"window_s": 120, "baseline_s": 60}, "baseline_s must be at least window_s"),
    ({"latency_factor": 1.0}, "greater than 1"),
    ({"error_rate_threshold": 1.5}, "less than or equal to 1"),
    ({"slice_s": math.inf}, "finite"),
])
def test_settings_are_validated(fields, message):
    with pytest.raises(ValidationError, match=message):
        AlertSettings(**fields)


def test_the_settings_are_part_of_the_configuration():
    from api_model_management.config import config_from_dict, demo_config

    data = demo_config().model_dump(mode="python")
    data["settings"]["alerts"] = {"error_rate_threshold": 0.5, "clear_after_s": 60}
    config = config_from_dict(data)
    assert config.settings.alerts.error_rate_threshold == 0.5
    assert config.settings.alerts.clear_after_s == 60
    assert config.settings.alerts.window_s == 60.0  # defaults for the rest


# -- the event ----------------------------------------------------------------------------------------


def test_cleared_is_false_when_null_as_in_files_written_before_it():
    row = PerformanceAlert(kind=ERROR_RATE, metric="error_rate", value=0.5, threshold=0.25).to_row()
    row["cleared"] = None
    assert PerformanceAlert.from_row(row).cleared is False
    assert PerformanceAlert.from_row({**row, "cleared": True}).cleared is True


# -- the histogram ------------------------------------------------------------------------------------


def test_histogram_quantiles_are_within_one_bucket_of_the_sample():
    rng = random.Random(5)
    sample = [rng.lognormvariate(5, 1) for _ in range(2000)]
    hist = LatencyHistogram()
    for x in sample:
        hist.add(x)
    ordered = sorted(sample)
    for q in (0.5, 0.95, 0.99, 1.0):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert exact <= hist.quantile(q) <= exact * GROWTH * (1 + 1e-9)
    assert LatencyHistogram().quantile(0.95) is None


def test_histograms_add_and_subtract():
    a, b = LatencyHistogram(), LatencyHistogram()
    for x in (1.0, 2.0, 300.0):
        a.add(x)
    for x in (2.0, 5000.0):
        b.add(x)
    a.merge(b, 1)
    assert a.total == 5 and a.quantile(1.0) == upper_bound_ms(bucket_of(5000.0))
    a.merge(b, -1)
    assert a.total == 3 and a.quantile(1.0) == upper_bound_ms(bucket_of(300.0))
    assert sum(a.counts.values()) == 3 and 0 not in a.counts.values()


def test_buckets_bound_their_latencies():
    for x in (0.0, 0.005, 0.01, 0.0101, 1.0, 99.9, 100.0, 12345.6, 6e5):
        b = bucket_of(x)
        assert x <= upper_bound_ms(b) * (1 + 1e-9)
        assert b == 0 or upper_bound_ms(b - 1) < x
