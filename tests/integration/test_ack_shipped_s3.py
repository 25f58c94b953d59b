"""``settings.events.ack="shipped"`` over the wire: a router calling the emulator on loopback HTTP,
its log on S3 (moto on 127.0.0.1). A request it returns is in the S3 log the moment ``complete()``
returns, with no EventSink running; requests in flight together share uploads; an object store
that cannot be reached gives ``EventsNotShipped`` within the bounded time, and the events stay in
the node's spool."""

from __future__ import annotations

import asyncio
import socket

import pytest
import test_s3_log

from api_model_management import ModelRequest
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.errors import EventsNotShipped
from api_model_management.events._log import EventLog
from api_model_management.events._spool import pending_events
from api_model_management.routing import build_local_router

pytestmark = pytest.mark.integration

# the S3 fixtures of test_s3_log (moto on loopback, AWS_* set, a fresh prefix per test)
s3_endpoint = test_s3_log.s3_endpoint
s3_env = test_s3_log.s3_env
uri = test_s3_log.uri

KEY = "sk-test-shipped-0123456789"
KEYS = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
PROMPT = "Explain how a hash map handles collisions, and compare chaining with open addressing."


def shipped_router(emulator: EmulatorServer, data_dir: str, spool_dir: str, **events):
    config = demo_config()
    config = with_provider_base_urls(
        config, {n: emulator.url_for(p.type) for n, p in config.providers.items()})
    config = override(config, settings={"data_dir": data_dir, "events": {
        "ack": "shipped", "spool_dir": spool_dir, **events}})
    return build_local_router(config, env=KEYS)


def request() -> ModelRequest:
    return ModelRequest(prompt=PROMPT, agent_type="research", cacheable=False)


def test_a_returned_request_is_in_the_s3_log_without_a_sink(emulator, uri, tmp_path):
    spool = str(tmp_path / "spool")
    router = shipped_router(emulator, uri, spool)

    async def one_then_many():
        first = await router.complete(request())
        in_log = [e.request_id for e in EventLog(uri).read("RequestCompleted")]
        many = await asyncio.gather(*(router.complete(request()) for _ in range(8)))
        return first, in_log, many

    first, in_log_after_first, many = asyncio.run(one_then_many())
    assert in_log_after_first == [first.request_id]
    log = EventLog(uri)
    completed = [e.request_id for e in log.read("RequestCompleted")]
    assert sorted(completed) == sorted([first.request_id, *(r.request_id for r in many)])
    assert len(set(completed)) == len(completed)  # one terminal event each
    started = {e.request_id for e in log.read("AttemptStarted")}
    assert started == set(completed)
    assert pending_events(uri, spool) == []  # nothing left in the spool: shipped, not ingested
    assert router.acks is not None
    assert router.acks.counters["batches_shipped"] <= 9  # one upload per segment, never per event


def test_an_unreachable_store_gives_events_not_shipped_and_the_spool_keeps_them(emulator, s3_env,
                                                                               tmp_path,
                                                                               monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    spool = str(tmp_path / "spool")
    router = shipped_router(emulator, "s3://amm-test/unreachable", spool, ack_timeout_s=2.0)
    with pytest.raises(EventsNotShipped) as caught:
        asyncio.run(router.complete(request()))
    error = caught.value
    assert error.response is not None and error.response.request_id == error.request_id
    assert KEY not in str(error) and PROMPT not in str(error)
    kept = [e for e in pending_events("s3://amm-test/unreachable", spool)
            if e.event_type == "RequestCompleted"]
    assert [e.request_id for e in kept] == [error.request_id]
    assert kept[0].cost_usd == error.response.cost_usd  # the paid call is still accounted
