"""DegradationCore under random traffic and clock moves: per model and kind its alerts alternate
raise, clear, raise (never two raises in a row: no storm), a clear comes at least
``clear_after_s`` after its raise, ``active()`` is exactly the raised and not cleared; the error
rate it judges on (kept as running sums) equals the rate recomputed from every call, and its
alerts are exactly those of a reference written from the documented rule. The latency histogram's
quantiles are within one bucket of the sample's."""

from __future__ import annotations

import math

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from api_model_management._clock import ManualClock
from api_model_management.alerts import (
    ERROR_RATE,
    GROWTH,
    NEUTRAL_KINDS,
    DegradationCore,
    LatencyHistogram,
)
from api_model_management.config import AlertSettings
from api_model_management.events import PerformanceAlert

pytestmark = pytest.mark.property

SETTINGS = AlertSettings(slice_s=1, window_s=3, baseline_s=10, min_calls=3, baseline_min_calls=5,
                         min_evaluations=3, latency_factor=2, latency_min_increase_ms=10,
                         error_rate_threshold=0.4, quality_drop=0.2, clear_after_s=2)
WINDOW = 3  # slices
MODELS = ("a", "b")

phases = st.lists(st.tuples(
    st.integers(1, 30),                                      # calls
    st.sampled_from(MODELS),
    st.sampled_from([0.1, 0.25, 0.5, 1.5, 6.0]),             # clock move before each call
    st.sampled_from([0, 1, 2, 3]),                           # every n-th call fails (0: none)
    st.sampled_from([20.0, 25.0, 80.0, 500.0]),              # latency of a success
    st.sampled_from([None, 0.1, 0.5, 0.9]),                  # quality of a success
    st.sampled_from(["server_error", "timeout", "rate_limited", "invalid_request"]),
), max_size=25)


def expand(script):
    """(clock move, model, ok, latency, quality, error kind) per call."""
    return [(move, model, not (fail_every and i % fail_every == 0), latency, quality, kind)
            for n, model, move, fail_every, latency, quality, kind in script for i in range(n)]


def reference_error_alerts(history: list[tuple[float, str, bool, str]]) -> list[tuple[float, str, bool]]:
    """The error-rate alerts the documented rule gives for (time, model, ok, error kind) calls."""
    out = []
    calls: dict[str, list[tuple[int, bool]]] = {m: [] for m in MODELS}
    current: dict[str, int] = {}
    raised: dict[str, bool] = dict.fromkeys(MODELS, False)
    absent_since: dict[str, float | None] = dict.fromkeys(MODELS)
    for now, model, ok, kind in history:
        if not ok and kind in NEUTRAL_KINDS:
            continue
        index = math.floor(now / SETTINGS.slice_s)
        if model in current and index > current[model]:
            window = [c for i, c in calls[model] if index - WINDOW <= i < index]
            if len(window) >= SETTINGS.min_calls:
                rate = window.count(False) / len(window)
                if rate >= SETTINGS.error_rate_threshold:
                    absent_since[model] = None
                    if not raised[model]:
                        raised[model] = True
                        out.append((now, model, False))
                elif raised[model]:
                    since = absent_since[model]
                    if since is None:
                        since = absent_since[model] = now
                    if now - since >= SETTINGS.clear_after_s:
                        raised[model], absent_since[model] = False, None
                        out.append((now, model, True))
        current.setdefault(model, index)
        current[model] = max(current[model], index)
        calls[model].append((index, ok))
    return out


@settings(max_examples=150, deadline=None)
@given(phases)
def test_alerts_alternate_clear_late_enough_and_follow_the_rule(script):
    clock = ManualClock()
    core = DegradationCore(SETTINGS, clock=clock)
    seen: list[tuple[float, PerformanceAlert]] = []
    history = []
    for move, model, ok, latency, quality, kind in expand(script):
        clock.advance(move)
        now = clock.monotonic()
        history.append((now, model, ok, kind))
        if ok:
            alerts = core.record(model, "p", True, latency, quality)
        else:
            alerts = core.record(model, "p", False, error_kind=kind)
        seen.extend((now, a) for a in alerts)

    last: dict[tuple[str | None, str], tuple[float, PerformanceAlert]] = {}
    for now, alert in seen:
        key = (alert.model_id, alert.kind)
        before = last.get(key)
        if alert.cleared:
            assert before is not None and not before[1].cleared  # a clear follows a raise
            assert now - before[0] >= SETTINGS.clear_after_s
        else:
            assert before is None or before[1].cleared  # never two raises in a row
        last[key] = (now, alert)
    raised = {key: a for key, (_, a) in last.items() if not a.cleared}
    assert {(a.model_id, a.kind) for a in core.active()} == set(raised)

    for name in sorted({f"{a.kind} {'cleared' if a.cleared else 'raised'}" for _, a in seen}):
        event(name)
    errors = [(now, a.model_id, a.cleared) for now, a in seen if a.kind == ERROR_RATE]
    assert errors == reference_error_alerts(history)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300),
       st.floats(0.01, 1.0))
def test_histogram_quantiles_are_within_one_bucket(sample, q):
    hist = LatencyHistogram()
    for x in sample:
        hist.add(x)
    exact = sorted(sample)[max(1, math.ceil(q * len(sample) - 1e-9)) - 1]
    got = hist.quantile(q)
    assert got is not None
    assert exact <= got * (1 + 1e-9)
    assert got <= max(exact, 0.01) * GROWTH * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e5, allow_nan=False), max_size=50),
       st.lists(st.floats(0, 1e5, allow_nan=False), max_size=50))
def test_histograms_subtract_what_they_added(first, second):
    a, b = LatencyHistogram(), LatencyHistogram()
    for x in first:
        a.add(x)
    for x in second:
        b.add(x)
    before = dict(a.counts)
    a.merge(b, 1)
    assert a.total == len(first) + len(second)
    a.merge(b, -1)
    assert a.counts == before and a.total == len(first)
