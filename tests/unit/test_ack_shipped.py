"""``settings.events.ack="shipped"`` through the request path (an in-process router on fake
providers, a local log): ``complete()`` returns, and a stream gives its final chunk, only once the
request's events are in the Parquet log, with no EventSink; when the log cannot take them the
caller gets ``EventsNotShipped`` (with the answer), and the events, cost included, are still in
the spool; a failed request raises its own error."""

from __future__ import annotations

import asyncio

import pytest

from api_model_management import ModelRequest
from api_model_management.errors import EventsNotShipped, InvalidRequest
from api_model_management.events import EventLog, RequestCompleted, RequestFailed
from api_model_management.events import _shipper as shipper_module
from api_model_management.events._ingest import SpoolIngestor, read_all_events
from api_model_management.routing import build_local_router

from _fakes import config_with, fake_adapters

pytestmark = pytest.mark.unit

MINI = "gpt-4.1-mini"


def router_at(tmp_path, ack: str = "shipped", **events):
    config = config_with(events={"ack": ack, "fsync": "never", **events})
    adapters = fake_adapters(config)
    return build_local_router(config, adapters=adapters, data_dir=tmp_path), adapters


def req(**fields) -> ModelRequest:
    return ModelRequest(prompt="Explain what a hash map is.", agent_type="research",
                        model_id=MINI, **fields)


def in_log(tmp_path, event_type: str) -> list[str]:
    return [e.request_id for e in EventLog(tmp_path).read(event_type)]


def test_complete_returns_once_its_events_are_in_the_log(tmp_path):
    router, _ = router_at(tmp_path)
    response = asyncio.run(router.complete(req()))
    assert in_log(tmp_path, "RequestCompleted") == [response.request_id]  # no sink ran
    assert in_log(tmp_path, "ModelSelected") == [response.request_id]
    second = asyncio.run(router.complete(req()))
    assert sorted(in_log(tmp_path, "RequestCompleted")) == sorted(
        [response.request_id, second.request_id])
    assert not list((tmp_path / "spool").glob("*/*.ship"))  # shipped and gone


def test_with_the_default_ack_the_events_wait_in_the_spool(tmp_path):
    router, _ = router_at(tmp_path, ack="local")
    assert router.acks is None
    response = asyncio.run(router.complete(req()))
    assert in_log(tmp_path, "RequestCompleted") == []
    assert [e.request_id for e in read_all_events(tmp_path, ["RequestCompleted"])] == [
        response.request_id]


def test_a_stream_gives_its_final_chunk_once_its_events_are_in_the_log(tmp_path):
    router, _ = router_at(tmp_path)

    async def consume() -> tuple[list[str], bool]:
        deltas: list[str] = []
        async for chunk in router.stream(req()):
            if chunk.done:
                return deltas, bool(in_log(tmp_path, "RequestCompleted"))
            deltas.append(chunk.delta)
        raise AssertionError("no final chunk")

    deltas, shipped_before_final = asyncio.run(consume())
    assert deltas and shipped_before_final


def test_a_log_that_cannot_be_written_raises_events_not_shipped_with_the_answer(tmp_path,
                                                                               monkeypatch):
    router, _ = router_at(tmp_path)

    def unreachable(*args, **kwargs):
        raise OSError("the store cannot be reached")

    monkeypatch.setattr(shipper_module, "publish", unreachable)
    with pytest.raises(EventsNotShipped) as caught:
        asyncio.run(router.complete(req()))
    error = caught.value
    assert error.response is not None and error.response.request_id == error.request_id
    assert error.response.cost_usd > 0 and router.counters["not_shipped"] == 1
    assert in_log(tmp_path, "RequestCompleted") == []
    # the call was made and paid: its events, cost included, are in the spool
    [done] = [e for e in read_all_events(tmp_path, ["RequestCompleted"])]
    assert isinstance(done, RequestCompleted) and done.cost_usd == error.response.cost_usd
    # once the log takes writes again, the next request ships both
    monkeypatch.undo()
    later = asyncio.run(router.complete(req()))
    assert sorted(in_log(tmp_path, "RequestCompleted")) == sorted(
        [error.request_id, later.request_id])


def test_a_failed_request_raises_its_own_error_after_its_events_are_shipped(tmp_path):
    router, adapters = router_at(tmp_path)
    adapters["openai"].script(MINI, InvalidRequest("bad", http_status=400))
    with pytest.raises(InvalidRequest):
        asyncio.run(router.complete(req()))
    [failed] = EventLog(tmp_path).read("RequestFailed")
    assert isinstance(failed, RequestFailed) and failed.error_kind == "invalid_request"


def test_a_failed_request_whose_events_are_not_shipped_still_raises_its_own_error(tmp_path,
                                                                                 monkeypatch):
    router, adapters = router_at(tmp_path)
    adapters["openai"].script(MINI, InvalidRequest("bad", http_status=400))
    monkeypatch.setattr(shipper_module, "publish",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("unreachable")))
    with pytest.raises(InvalidRequest):
        asyncio.run(router.complete(req()))
    assert router.counters["not_shipped"] == 1
    assert [e.error_kind for e in read_all_events(tmp_path, ["RequestFailed"])] == [
        "invalid_request"]


def test_the_sink_doubles_nothing_a_router_shipped(tmp_path):
    router, _ = router_at(tmp_path)
    ids = [asyncio.run(router.complete(req())).request_id for _ in range(3)]
    router.events.close()  # the router is gone: what is left is the sink's
    SpoolIngestor(tmp_path).ingest()
    assert sorted(in_log(tmp_path, "RequestCompleted")) == sorted(ids)


def test_a_stream_whose_log_is_unreachable_raises_with_its_last_chunk(tmp_path, monkeypatch):
    router, _ = router_at(tmp_path)
    monkeypatch.setattr(shipper_module, "publish",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("unreachable")))

    async def consume() -> list[str]:
        deltas: list[str] = []
        async for chunk in router.stream(req()):
            assert not chunk.done  # the last chunk waits for the log: it rides on the error
            deltas.append(chunk.delta)
        return deltas

    with pytest.raises(EventsNotShipped) as caught:
        asyncio.run(consume())
    final = caught.value.final
    assert final is not None and final.done and final.cost_usd > 0
    [done] = read_all_events(tmp_path, ["RequestCompleted"])  # in the spool, cost included
    assert isinstance(done, RequestCompleted) and done.cost_usd == final.cost_usd
