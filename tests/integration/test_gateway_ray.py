"""The gateway on a Ray system (``amm serve --ray``): the same ASGI app, its handlers on the
router embedded in a ``ModelManagement`` (the actors' leases, slices, health, learnt quality and
EventSink), in the session's Ray, the emulator behind it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_model_management.config import demo_config, override, with_emulator_port
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.events._ingest import read_all_events
from api_model_management.gateway import KeyLimits, KeyRing, key_hash, new_key
from api_model_management.gateway._app import Gateway

pytestmark = pytest.mark.integration

PROMPT = "Describe the water cycle: evaporation, condensation and precipitation"
KEY, _ = new_key()


def test_the_gateway_on_the_embedded_router_of_a_ray_system(
        ray_session: Any, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api_model_management.runtime._gateway import RayEngine

    config = override(with_emulator_port(demo_config(), emulator.port), settings={
        "data_dir": str(tmp_path / "data"), "routers": {"replicas": 1},
        "gateway": {"keys": [{"name": "dev", "key_sha256": key_hash(KEY), "agent_type": "coder"}]}})
    for provider in config.providers.values():
        if provider.api_key_env:
            monkeypatch.setenv(provider.api_key_env, "emulator-key")
    engine = RayEngine.launch(config)
    assert engine.mode == "ray" and engine.system.embedded is not None
    gateway = Gateway(config, engine, keys=KeyRing(config.settings.gateway.keys, {}),
                      limits=KeyLimits(config.settings.gateway.keys))
    auth = {"authorization": f"Bearer {KEY}"}
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": PROMPT}]}
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        await engine.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway.app),
                                     base_url="http://gateway", timeout=60) as client:
            seen["plain"] = await client.post("/v1/chat/completions", json=body, headers=auth)
            seen["stream"] = await client.post("/v1/messages", headers=auth, json={
                "model": "auto", "max_tokens": 300, "stream": True, "messages": body["messages"]})
            seen["feedback"] = await client.post("/v1/feedback", headers=auth, json={
                "request_id": seen["plain"].json()["id"], "score": 1.0, "source": "ground_truth"})
            seen["health"] = await client.get("/health")
            seen["metrics"] = (await client.get("/metrics")).text
        await engine.aclose()  # flushes every event into the log and stops the system

    asyncio.run(scenario())
    plain = seen["plain"]
    assert plain.status_code == 200 and plain.json()["model"] == plain.headers["x-amm-model"] == "gpt-4.1-mini"
    events = [line for line in seen["stream"].text.splitlines() if line.startswith("event: ")]
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
    assert seen["feedback"].json()["recorded"] is True
    health = seen["health"].json()
    assert health["mode"] == "ray" and set(health["providers"]) == set(config.providers)
    assert 'scope="global"' in seen["metrics"]  # the CostLedger actor's budgets
    logged = read_all_events(tmp_path / "data")
    completed = [e for e in logged if type(e).__name__ == "RequestCompleted"]
    assert plain.headers["x-amm-request-id"] in {e.request_id for e in completed}
    assert len(completed) == 2 and all(e.agent_type == "coder" for e in completed)
    assert [e.source for e in logged if type(e).__name__ == "FeedbackRecorded"] == ["ground_truth"]
    assert KEY not in json.dumps([e.model_dump(mode="json") for e in logged])
