"""The actors on real Ray: started from config as the design card says, wired by push, probing
the emulator; and many concurrent callers from several Ray workers against one ledger and one
limiter stay exact."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from api_model_management.budget import SpendKey
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.errors import BudgetExceeded, NoEligibleModel

pytestmark = pytest.mark.integration

KEYS = {"AMM_DEMO_OPENAI_KEY": "k-openai", "AMM_DEMO_ANTHROPIC_KEY": "k-anthropic",
        "AMM_DEMO_GOOGLE_KEY": "k-google"}


def _until(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_actors_started_from_config_probe_the_emulator_and_push_health(ray_session, fresh_emulator, tmp_path):
    import ray

    from api_model_management.config._secrets import load_secrets
    from api_model_management.runtime._actors import start_actors

    config = demo_config()
    config = with_provider_base_urls(config, {n: fresh_emulator.url_for(p.type) for n, p in config.providers.items()})
    config = override(config, settings={"data_dir": str(tmp_path), "routers": {"replicas": 2},
                                        "health_check": {"interval_s": 0.2, "failure_threshold": 2,
                                                         "degraded_threshold": 1}})
    secrets = load_secrets(config, env=KEYS)
    handles = start_actors(config, {n: secrets.key_for(n) for n in config.providers})
    try:
        assert set(handles.health) == set(config.providers)  # one HealthChecker per provider
        assert handles.limiters.live() == {}  # RateLimiters start on first use (issue 15)
        assert all(m.id in handles.limiters for m in config.models)
        _until(lambda: all(ray.get(h.snapshot.remote())["state"] == "healthy" for h in handles.health.values()),
               what="every provider probed healthy")
        # an Ollama outage: the checker's probes fail, and the routers hear of it by push
        fresh_emulator.set_profile(Profile.model_validate({"providers": {"ollama": {"outages": [
            {"start_s": 0, "end_s": 600}]}}}))

        def routers_avoid_ollama() -> bool:
            from api_model_management import ModelRequest

            request = ModelRequest(prompt="hello there", agent_type="research",
                                   constraints={"allowed_providers": ("ollama",)})
            for router in handles.routers:
                try:
                    ray.get(router.select.remote(request))
                    return False
                except NoEligibleModel:  # Ray's wrapper of the remote error is also a NoEligibleModel
                    continue
            return True

        _until(routers_avoid_ollama, what="routers to learn that Ollama is unhealthy")
        assert ray.get(handles.health["ollama"].snapshot.remote())["state"] == "unhealthy"
    finally:
        for handle in handles.all():
            ray.kill(handle)


def test_500_concurrent_reservations_from_ray_workers_stay_exact(ray_session, tmp_path):
    import ray

    from api_model_management.runtime._actors import CostLedgerActor, RateLimiterActor

    limit = Decimal("1.00")
    config = override(demo_config(), settings={
        "data_dir": str(tmp_path),
        "budgets": {"enforcement": "strict", "limits": [{"scope": "global", "key": "*", "window": "day",
                                                        "limit_usd": str(limit)}]},
    })
    model = config.model("gpt-4o-mini")  # 30 requests per minute
    ledger = CostLedgerActor.remote(config)
    limiter = RateLimiterActor.remote(config, model.id)
    key = SpendKey(model.provider, model.id, "research")

    @ray.remote(num_cpus=0)
    def worker(ledger, limiter, n: int, amount: Decimal, actual: Decimal):
        granted_budget, refused_budget, granted_rate = 0, 0, 0
        for _ in range(n):
            try:
                rid = ray.get(ledger.reserve.remote(key, amount))
            except BudgetExceeded:
                refused_budget += 1
            else:
                ray.get(ledger.settle.remote(rid, actual))
                granted_budget += 1
            admission = ray.get(limiter.reserve.remote(100))
            if admission.granted:
                ray.get(limiter.commit.remote(admission.reservation_id, 90))
                granted_rate += 1
        return granted_budget, refused_budget, granted_rate

    amount, actual = Decimal("0.0030"), Decimal("0.0025")
    results = ray.get([worker.remote(ledger, limiter, 50, amount, actual) for _ in range(10)])  # 500 calls
    granted = sum(r[0] for r in results)
    refused = sum(r[1] for r in results)
    rate_granted = sum(r[2] for r in results)
    assert granted + refused == 500
    status = {(s.scope, s.window): s for s in ray.get(ledger.status.remote())}
    spent = status[("global", "day")].spent_usd
    assert spent == actual * granted  # exact decimal: nothing lost, nothing counted twice
    assert spent <= limit and status[("global", "day")].reserved_usd == 0
    assert limit - spent < amount  # refused only when the worst case no longer fitted
    assert rate_granted == model.rate_limits.requests_per_minute  # exactly RPM in the window
    for handle in (ledger, limiter):
        ray.kill(handle)
