"""``amm status --address``: the live state of a running system, asked from another process.

The system runs in this test's Ray session (the session fixture) against the emulator, with an
Ollama outage and a model cooling down after a 429; ``amm status`` runs as its own process, joins
the cluster by address, finds the system by its actors' names and reads each actor. An address
where nothing answers gives one line and exit 2 within seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

import pytest

from api_model_management import ModelRequest
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}
COOLING_MODEL = "gpt-4o-mini"


def amm(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``amm ARGS`` in a process of its own (as the installed entry point runs it)."""
    entry = "import sys; from api_model_management.cli import main; sys.argv[0] = 'amm'; main()"
    return subprocess.run([sys.executable, "-c", entry, *args], capture_output=True, text=True,
                          timeout=timeout_s)


def _until(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_status_of_a_running_system_from_another_process(ray_session, fresh_emulator, tmp_path):
    import ray

    from api_model_management.runtime._system import ModelManagement

    config = demo_config()
    config = with_provider_base_urls(
        config, {n: fresh_emulator.url_for(p.type) for n, p in config.providers.items()})
    config = override(config, settings={
        "data_dir": str(tmp_path), "routers": {"replicas": 1, "embedded": False},
        "health_check": {"interval_s": 0.2}})
    fresh_emulator.set_profile(Profile.model_validate(
        {"providers": {"ollama": {"outages": [{"start_s": 0, "end_s": 600}]}}}))
    mm = ModelManagement.start(config, env=KEYS)
    try:
        import asyncio

        async def work() -> None:
            for i in range(3):
                await mm.complete(ModelRequest(prompt=f"Explain topic {i}", agent_type="research",
                                               constraints={"allowed_providers": ("openai",)}))

        asyncio.run(work())
        ray.get(mm.handles.limiters[COOLING_MODEL].cool_down.remote(300.0))  # as after a 429
        _until(lambda: ray.get(mm.handles.health["ollama"].snapshot.remote())["state"] == "unhealthy",
               what="the Ollama outage to be seen")
        mm.flush()
        address = ray_session.get_runtime_context().gcs_address

        result = amm("status", "--address", address, "--system", mm.name_prefix, "--format", "json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert (status["source"], status["system"], status["address"]) == ("live", mm.name_prefix, address)
        assert status["data_dir"] == str(tmp_path)
        providers = {p["provider"]: p for p in status["providers"]}
        assert set(providers) == set(config.providers)
        assert providers["ollama"]["state"] == "unhealthy"
        assert providers["openai"]["state"] == "healthy" and providers["openai"]["calls"] >= 3
        cooling = [m for m in status["models"] if m["model_id"] == COOLING_MODEL]
        assert [m["state"] for m in cooling] == ["cooling down"]
        left_s = (datetime.fromisoformat(cooling[0]["until"])
                  - datetime.fromisoformat(status["generated_at"])).total_seconds()
        assert 200 < left_s <= 300
        budgets = {(b["scope"], b["key"]): b for b in status["budgets"]}
        assert set(budgets) == {(limit.scope, limit.key) for limit in config.settings.budgets.limits}
        research = budgets[("agent_type", "research")]
        assert 0 < float(research["spent_usd"]) < float(research["limit_usd"])
        assert float(research["headroom_usd"]) <= float(research["limit_usd"]) - float(research["spent_usd"])
        routers = {r["where"]: r for r in status["in_flight"]}
        assert routers["Router 0"]["requests"] == 0
        assert "3 requests so far" in routers["Router 0"]["detail"]
        assert any(a["category"] == "health" and a["subject"] == "ollama" for a in status["alerts"])
        assert not any("not readable" in note or "did not answer" in note for note in status["notes"])
        assert "SECRET" not in result.stdout + result.stderr

        table = amm("status", "--address", address)
        assert table.returncode == 0, table.stderr
        assert f"System {mm.name_prefix}" in table.stdout and "cooling down" in table.stdout

        wrong = amm("status", "--address", address, "--system", "amm-nope")
        assert wrong.returncode == 2
        [line] = wrong.stderr.strip().splitlines()
        assert line.startswith(f"error: no system 'amm-nope' runs on the Ray cluster at {address} "
                               "(running: ") and mm.name_prefix in line
    finally:
        mm.shutdown()


def test_an_unreachable_address_is_one_line_and_exit_2_within_seconds():
    started = time.monotonic()
    result = amm("status", "--address", "127.0.0.1:1", timeout_s=60.0)
    elapsed_s = time.monotonic() - started
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    # Ray resolves a loopback address to this node's own address; the line names both
    assert line.startswith("error: cannot reach the Ray cluster at ") and "127.0.0.1:1" in line
    assert line.endswith("within 3 s")
    assert result.stdout == ""
    assert elapsed_s < 15  # python start-up and imports included; the connect gives up in 3 s
