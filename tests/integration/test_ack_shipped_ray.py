"""``settings.events.ack="shipped"`` on the Ray runtime (the session's Ray, the emulator on
loopback): the embedded router and a Router actor each ship their own spool, so a request they
answered, streamed or not, is in the Parquet log when the call returns, before any flush or sink
pass; the routers' counters say how many upload rounds served them."""

from __future__ import annotations

import asyncio

import pytest

from api_model_management import ModelRequest
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.events._log import EventLog

pytestmark = pytest.mark.integration

KEY = "sk-test-shipped-ray-0123456789"
KEYS = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}


@pytest.fixture(scope="module")
def shipped_system(ray_session, emulator, tmp_path_factory):
    from api_model_management.runtime._system import ModelManagement

    data_dir = tmp_path_factory.mktemp("shipped-log")
    config = with_provider_base_urls(
        demo_config(), {n: emulator.url_for(p.type) for n, p in demo_config().providers.items()})
    config = override(config, settings={"data_dir": str(data_dir), "routers": {"replicas": 1},
                                        "events": {"ack": "shipped"}})
    mm = ModelManagement.start(config, env=KEYS, name_prefix="ack-shipped")
    yield mm, str(data_dir)
    mm.shutdown()


def request(i: int) -> ModelRequest:
    return ModelRequest(prompt=f"Explain consistent hashing, part {i}.", agent_type="research",
                        cacheable=False, max_tokens=64)


def completed(data_dir: str) -> set[str]:
    return {e.request_id for e in EventLog(data_dir).read("RequestCompleted")}


def test_the_embedded_router_answers_once_the_log_has_the_request(shipped_system):
    mm, data_dir = shipped_system

    async def both():
        answered = await mm.complete(request(1))
        seen = completed(data_dir)
        final = None
        async for chunk in mm.stream(request(2)):
            if chunk.done:
                final = chunk
        return answered, seen, final

    answered, seen, final = asyncio.run(both())
    assert answered.request_id in seen  # no flush, no sink pass in between
    assert final is not None
    assert len(completed(data_dir)) == 2  # the stream's too, once its last chunk came


def test_a_router_actor_answers_once_the_log_has_the_request(shipped_system):
    import ray

    mm, data_dir = shipped_system
    [router] = mm.handles.routers
    answered = ray.get(router.complete.remote(request(3)))
    assert answered.request_id in completed(data_dir)
    counters = ray.get(router.counters.remote())
    assert counters["shipper_rounds"] >= 1 and counters["shipper_waits_failed"] == 0
    assert mm.counters()["not_shipped"] == 0
