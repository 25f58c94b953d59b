"""Statistics seeded from a real Parquet log (``selection.seed_stats``) are the fold
(``StatsCore.from_events``) of its tail: per model, the newest ``per_model`` outcomes, successes,
quality scores and attempts failed by the request, over the dates walked back from the newest until every model has enough (at
most ``max_days``), in log order. The tail is computed here from the events themselves, by
``StatsCore``'s rule of what counts, so the Arrow restatement of that rule, the reading of files
and dates, and the order are held to it; with bounds beyond the log the seed is the fold of the
whole log."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management.events import (
    AttemptFailed,
    Event,
    EventLog,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from api_model_management.selection import StatsCore, recent_outcomes, seed_stats
from api_model_management.selection._stats import REQUEST_FAULT_KINDS

pytestmark = pytest.mark.property

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = ("m-a", "m-b", "m-c")
T0 = datetime(2026, 11, 20, tzinfo=UTC)
KINDS = ("done", "cached", "failed", "fault", "request_failed", "request_fault", "scored")

_ENTRY = st.tuples(
    st.sampled_from(MODELS),
    st.sampled_from(KINDS),
    st.integers(0, 9),  # days before T0
    st.integers(0, 3),  # second of the day (ties in time are common)
    st.floats(1, 5_000),  # latency or quality seed
    st.uuids().map(str),  # event id (orders ties)
    st.integers(0, 4),  # request (a failed attempt and a failed request may share one)
)


def make(entry: tuple) -> Event:
    model, kind, days, second, value, event_id, request = entry
    common = {"event_id": event_id, "model_id": model, "request_id": f"{model}-{request}",
              "occurred_at": T0 - timedelta(days=days) + timedelta(seconds=second)}
    if kind in ("done", "cached"):
        return RequestCompleted(provider="p", latency_ms=value, cache_hit=kind == "cached",
                                **common)
    if kind in ("failed", "fault"):
        return AttemptFailed(provider="p", attempt=1, transient=True, latency_ms=value,
                             error_kind="timeout" if kind == "failed" else "invalid_request",
                             **common)
    if kind in ("request_failed", "request_fault"):
        return RequestFailed(attempts=1, error_kind="timeout" if kind == "request_failed"
                             else "budget_exceeded", **common)
    quality = value / 5_000
    return ResponseEvaluated(completeness=quality, relevance=quality, coherence=quality,
                             quality_score=quality, low_quality=False, **common)


def kinds_of(event: Event) -> tuple[str, ...]:
    """What ``StatsCore.apply`` counts an event as."""
    if isinstance(event, RequestCompleted):
        return () if event.cache_hit else ("outcome", "success")
    if isinstance(event, AttemptFailed | RequestFailed):
        if event.error_kind not in REQUEST_FAULT_KINDS:
            return ("outcome",)
        return ("attempt",) if isinstance(event, AttemptFailed) else ()
    if isinstance(event, ResponseEvaluated):
        return ("quality",)
    return ()


def log_order(event: Event) -> tuple[datetime, str]:
    return (event.occurred_at, event.event_id)


def expected_tail(history: Sequence[Event], models: Sequence[str], per_model: int,
                  max_days: int) -> list[Event]:
    def day(e: Event) -> date:
        return e.occurred_at.date()

    days = sorted({day(e) for e in history}, reverse=True)
    read: list[Event] = []
    for d in days:
        if d < days[0] - timedelta(days=max_days - 1):
            break
        read += [e for e in history if day(e) == d]
        if all(sum("outcome" in kinds_of(e) for e in read if e.model_id == m) >= per_model
               for m in models):
            break
    kept: dict[str, Event] = {}
    for model in models:
        for kind in ("outcome", "success", "quality", "attempt"):
            mine = sorted((e for e in read if e.model_id == model and kind in kinds_of(e)),
                          key=log_order)
            kept.update((e.event_id, e) for e in mine[-per_model:])
    return sorted(kept.values(), key=log_order)


def written(root: str, history: Sequence[Event], batch: int) -> EventLog:
    log = EventLog(root)
    for start in range(0, len(history), batch):
        log.append(history[start:start + batch])
    return log


@SETTINGS
@given(entries=st.lists(_ENTRY, max_size=60, unique_by=lambda e: e[5]),
       models=st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True),
       per_model=st.integers(1, 6), max_days=st.integers(1, 8), batch=st.integers(1, 25))
def test_seeded_from_the_log_is_from_events_over_its_tail(entries, models, per_model, max_days,
                                                          batch):
    history = [make(e) for e in entries]
    with tempfile.TemporaryDirectory() as root:
        log = written(root, history, batch)
        tail = expected_tail(history, models, per_model, max_days)
        assert recent_outcomes(log, models, per_model=per_model, max_days=max_days) == tail
        seeded = seed_stats(root, models, per_model=per_model, max_days=max_days)
    assert seeded.snapshot() == StatsCore.from_events(tail).snapshot()


@SETTINGS
@given(entries=st.lists(_ENTRY, max_size=60, unique_by=lambda e: e[5]), batch=st.integers(1, 25))
def test_with_bounds_beyond_the_log_the_seed_is_the_fold_of_the_whole_log(entries, batch):
    history = [make(e) for e in entries]
    with tempfile.TemporaryDirectory() as root:
        written(root, history, batch)
        seeded = seed_stats(root, MODELS, per_model=len(history) + 1, max_days=10)
    assert seeded.snapshot() == StatsCore.from_events(sorted(history, key=log_order)).snapshot()
