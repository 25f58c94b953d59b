"""No cold start for reliability (issue 11): a system started on a log in which model A failed
and model B succeeded scores B's reliability above A's from the first request, in the Selector
actor, the embedded router, a Router actor and that Router actor restarted by Ray, although the
priors rank A's above B's. Read from what decided: each ``ModelSelected``'s performance sub-score
less its learnt quality part."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from api_model_management import ModelRequest
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.events import AttemptFailed, EventLog, ModelSelected, RequestCompleted
from api_model_management.events._ingest import read_all_events

pytestmark = pytest.mark.integration

KEYS = {"AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdef",
        "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdef",
        "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdef"}
FAILING, STEADY = "gpt-4.1-mini", "gpt-4o-mini"
QUALITY_PART = 0.4  # the learnt quality's weight in the performance sub-score


def _config(data_dir, emulator):
    config = demo_config()
    models = []
    for m in config.models:
        if m.id in (FAILING, STEADY):  # the priors favour the one that failed
            prior_ms = 500.0 if m.id == FAILING else 2500.0
            models.append({**m.model_dump(), "fallbacks": [], "average_response_time_ms": prior_ms})
    config = override(config, models=models, settings={
        "data_dir": str(data_dir), "routers": {"replicas": 1},
        "cache": {"enabled": False}})
    return with_provider_base_urls(
        config, {n: emulator.url_for(p.type) for n, p in config.providers.items()})


def _write_history(data_dir) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    history = []
    for i in range(40):
        at = start + timedelta(seconds=i)
        history.append(AttemptFailed(request_id=f"old-a-{i}", model_id=FAILING, provider="openai",
                                     attempt=1, error_kind="timeout", transient=True,
                                     latency_ms=30_000.0, occurred_at=at))
        history.append(RequestCompleted(request_id=f"old-b-{i}", model_id=STEADY,
                                        provider="openai", latency_ms=300.0, occurred_at=at))
    EventLog(data_dir).append(history)


def _reliability(config, candidates, quality) -> dict[str, float]:
    """Each candidate's performance less its quality part: the learnt quality it was scored with,
    or (none pushed yet: ``candidate_quality`` is None) its prior, as no quality was logged."""
    if quality is None:
        quality = [config.model(c.model_id).quality_prior for c in candidates]
    return {c.model_id: c.performance - QUALITY_PART * q
            for c, q in zip(candidates, quality, strict=True)}


def _request(i: int) -> ModelRequest:
    return ModelRequest(prompt=f"explain hash maps, take {i}", agent_type="research",
                        max_tokens=64, cacheable=False,
                        constraints={"allowed_models": [FAILING, STEADY]})


def _until(call, timeout_s: float = 60.0):
    """The first answer of ``call`` once the actor answers again (Ray restarts it)."""
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except (ActorUnavailableError, RayActorError, GetTimeoutError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_system_started_on_a_log_scores_reliability_from_it_from_the_first_request(
        ray_session, fresh_emulator, tmp_path):
    import ray

    from api_model_management.runtime._system import ModelManagement

    config = _config(tmp_path, fresh_emulator)
    _write_history(tmp_path)
    mm = ModelManagement.start(config, env=KEYS)
    try:
        dry = asyncio.run(mm.select(_request(0)))  # the Selector actor
        selector = _reliability(config, dry.candidates, dry.candidate_quality)

        first = asyncio.run(mm.complete(_request(1)))  # the embedded router
        router = mm.handles.routers[0]
        second = ray.get(router.complete.remote(_request(2)))  # a Router actor
        pid = ray.get(router.pid.remote())
        ray.kill(router, no_restart=False)

        def restarted():
            assert ray.get(router.pid.remote(), timeout=5) != pid
            return ray.get(router.complete.remote(_request(3)), timeout=30)

        third = _until(restarted)  # the same Router actor, restarted by Ray
        mm.flush()
        chosen = {}
        for e in read_all_events(tmp_path, ("ModelSelected",)):
            if isinstance(e, ModelSelected):
                chosen.setdefault(e.request_id, e)
    finally:
        mm.shutdown()
    scored = [selector]
    for response in (first, second, third):
        event = chosen[response.request_id]
        scored.append(_reliability(config, event.candidates, event.candidate_quality))
    for reliability in scored:
        assert reliability[STEADY] > reliability[FAILING] + 0.05
    prior = {m: 0.3 * 0.95 + 0.3 / (1 + config.model(m).average_response_time_ms / 1000)
             for m in (FAILING, STEADY)}
    assert prior[FAILING] > prior[STEADY]  # what a cold start would have ranked
