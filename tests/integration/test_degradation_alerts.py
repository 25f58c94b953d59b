"""Degradation alerts from real faults: a RouterCore on the local cores (no Ray) with the real
OpenAI adapter over loopback HTTP to the emulator, whose fault profile is switched mid-test: a
latency spike, an error burst, degraded answers. Each raises its alert once, keeps quiet while the
fault lasts, and clears once the fault has been gone ``clear_after_s``.

The router's clock is a ManualClock moved one slice per batch of concurrent requests (so windows
and baselines do not depend on the machine's speed); latencies are the adapter's real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from api_model_management import ModelRequest
from api_model_management._clock import ManualClock
from api_model_management.alerts import ERROR_RATE, LATENCY_DEGRADED, QUALITY_DEGRADED
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.errors import AllCandidatesFailed, ProviderError
from api_model_management.events import PerformanceAlert, RequestCompleted, RequestFailed
from api_model_management.routing import ListEvents, LocalRouter, build_local_router

pytestmark = pytest.mark.integration

MODEL = "gpt-4.1-mini"
KEY = "sk-test-alerts-0123456789"
PROMPT = "Explain how a hash map handles collisions, and compare chaining with open addressing."
PER_SLICE = 4
ALERTS = {"slice_s": 1.0, "window_s": 5.0, "baseline_s": 30.0, "min_calls": 8,
          "baseline_min_calls": 20, "min_evaluations": 8, "latency_factor": 3.0,
          "latency_min_increase_ms": 250.0, "error_rate_threshold": 0.3, "quality_drop": 0.2,
          "clear_after_s": 4.0}  # fmt: skip


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


def make_router(emulator: EmulatorServer, clock: ManualClock, events: ListEvents) -> LocalRouter:
    config = demo_config()
    config = with_provider_base_urls(
        config, {n: emulator.url_for(p.type) for n, p in config.providers.items()})
    config = override(config, settings={"alerts": ALERTS})
    keys = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
    return build_local_router(config, env=keys, clock=clock, events=events)


def faulty(**spec: Any) -> Profile:
    return Profile.model_validate({"seed": 3, "models": {MODEL: spec}})


async def slices(router: LocalRouter, clock: ManualClock, count: int) -> None:
    """``count`` slices, each ``PER_SLICE`` concurrent pinned requests, then one slice of time."""
    for _ in range(count):
        requests = [ModelRequest(prompt=PROMPT, model_id=MODEL, max_tokens=120, cacheable=False)
                    for _ in range(PER_SLICE)]
        results = await asyncio.gather(*(router.complete(r) for r in requests),
                                       return_exceptions=True)
        for result in results:  # a failed call is a provider error, nothing else
            if isinstance(result, BaseException):
                assert isinstance(result, AllCandidatesFailed | ProviderError), result
        clock.advance(ALERTS["slice_s"])


def alerts(events: ListEvents, kind: str) -> list[tuple[str, bool]]:
    """The alerts of ``kind``: a busy machine's stalls are real latency too, so the error and
    quality scenarios look only at their own alert."""
    return [(e.kind, e.cleared) for e in events.events
            if isinstance(e, PerformanceAlert) and e.kind == kind]


def scenario(emulator: EmulatorServer, fault: Profile, kind: str) -> tuple[ListEvents, list[list[tuple[str, bool]]]]:
    """Normal for 15 slices (a baseline), the fault for 12, normal again for 30; the alerts seen
    by the end of each phase."""
    clock, events = ManualClock(), ListEvents()
    router = make_router(emulator, clock, events)
    seen = []

    async def go() -> None:
        try:
            await slices(router, clock, 15)
            seen.append(alerts(events, kind))
            emulator.set_profile(fault)
            await slices(router, clock, 12)
            seen.append(alerts(events, kind))
            emulator.set_profile(Profile())
            # clearing needs a whole window of normal real latencies plus clear_after_s (9
            # slices); room for a few slow calls on a loaded machine (p95 of 20 is the slowest)
            await slices(router, clock, 30)
            seen.append(alerts(events, kind))
        finally:
            for adapter in router.adapters.values():
                await adapter.aclose()

    asyncio.run(go())
    return events, seen


def the_alerts(events: ListEvents, kind: str) -> list[PerformanceAlert]:
    return [e for e in events.events if isinstance(e, PerformanceAlert) and e.kind == kind]


def test_a_latency_spike_raises_once_and_clears(emulator):
    events, seen = scenario(emulator, faulty(latency={"kind": "fixed", "latency_s": 0.4}), LATENCY_DEGRADED)
    assert seen == [[], [(LATENCY_DEGRADED, False)],
                    [(LATENCY_DEGRADED, False), (LATENCY_DEGRADED, True)]]
    raised, cleared = the_alerts(events, LATENCY_DEGRADED)
    assert raised.model_id == MODEL and raised.provider == "openai"
    assert raised.metric == "p95_latency_ms" and raised.value >= 400 >= raised.threshold
    assert cleared.value < cleared.threshold
    assert "p95 latency" in raised.message and "router local" in raised.message
    assert len([e for e in events.events if isinstance(e, RequestCompleted)]) == (15 + 12 + 30) * PER_SLICE


def test_an_error_burst_raises_once_and_clears(emulator):
    events, seen = scenario(emulator, faulty(error_rates={"500": 0.7}), ERROR_RATE)
    assert seen == [[], [(ERROR_RATE, False)], [(ERROR_RATE, False), (ERROR_RATE, True)]]
    raised, cleared = the_alerts(events, ERROR_RATE)
    assert raised.metric == "error_rate" and raised.threshold == 0.3 and raised.value >= 0.3
    assert "mostly server_error" in raised.message
    assert cleared.value < 0.3
    assert any(isinstance(e, RequestFailed) for e in events.events)


def test_degraded_answers_raise_once_and_clear(emulator):
    events, seen = scenario(emulator, faulty(degraded_rate=1.0), QUALITY_DEGRADED)
    assert seen == [[], [(QUALITY_DEGRADED, False)],
                    [(QUALITY_DEGRADED, False), (QUALITY_DEGRADED, True)]]
    raised, cleared = the_alerts(events, QUALITY_DEGRADED)
    # raised as soon as the window's mean fell far enough: part of it may still be good answers
    assert raised.metric == "mean_quality" and raised.value <= raised.threshold
    assert raised.threshold >= 0.5  # the baseline (good answers, about 0.85) minus 0.2
    scores = [e.quality_score for e in events.events if type(e).__name__ == "ResponseEvaluated"]
    assert min(scores) < 0.1  # the degraded answers themselves
    assert cleared.value > cleared.threshold
    for alert in (raised, cleared):  # numbers, never the prompt or the answer
        assert "hash map" not in alert.model_dump_json() and "Good question" not in alert.message
