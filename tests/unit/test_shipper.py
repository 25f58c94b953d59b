"""The group-commit shipper of ``ack="shipped"`` (``events._shipper``) on a fake source, and
its spool source on a real spool and a local log: a waiter is woken only once its batch is
uploaded, a failed upload wakes it with ``EventsNotShipped``, what is written during an upload
goes into the next one, nothing is uploaded twice; a shipped segment is in the log under the
names the EventSink would give it, so a sink that ingests it again (its router gone) doubles
nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from _ship_fakes import FakeSource

from api_model_management.errors import EventsNotShipped
from api_model_management.events import (
    AttemptStarted,
    EventLog,
    ModelSelected,
    RequestCompleted,
)
from api_model_management.events._ingest import SpoolIngestor, read_all_events
from api_model_management.events._shipper import GroupShipper, SpoolSegments, publish, spool_shipper
from api_model_management.events._spool import (
    SHIP,
    Segment,
    SpoolWriter,
    ingestible_segments,
    segment_number,
)

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def run(coro):
    return asyncio.run(coro)


# -- group commit on a fake source ---------------------------------------------------------------

def test_a_waiter_is_woken_only_once_its_batch_is_uploaded():
    async def scenario():
        source = FakeSource()
        shipper = GroupShipper(source, timeout_s=30)
        source.write(1, 2)
        waiter = asyncio.create_task(shipper.durable())
        while source.ship_calls == 0:
            await asyncio.sleep(0.001)
        assert not waiter.done() and shipper.waiting == 1  # the upload has not ended
        source.let(ok=True)
        await waiter
        assert source.uploads == [[1, 2]] and shipper.shipped_through == 1
        await shipper.durable()  # nothing new written: no round
        assert source.ship_calls == 1 and shipper.counters["rounds"] == 1

    run(scenario())


def test_a_failed_upload_wakes_its_waiters_with_an_error_and_is_tried_again():
    async def scenario():
        source = FakeSource()
        shipper = GroupShipper(source, timeout_s=30, where="s3://bucket/log")
        source.write(1)
        waiter = asyncio.create_task(shipper.durable())
        source.let(ok=False)
        with pytest.raises(EventsNotShipped) as caught:
            await waiter
        assert "s3://bucket/log" in str(caught.value) and caught.value.cause == "UploadFailed"
        assert source.uploads == [] and shipper.counters["rounds_failed"] == 1
        source.write(2)
        source.let(ok=True)
        source.let(ok=True)
        await shipper.durable()  # the failed batch first, then the new one
        assert source.uploads == [[1], [2]]
        assert shipper.counters["waits_failed"] == 1

    run(scenario())


def test_what_is_written_during_an_upload_goes_into_the_next_one():
    async def scenario():
        source = FakeSource()
        shipper = GroupShipper(source, timeout_s=30)
        source.write(1)
        first = asyncio.create_task(shipper.durable())
        while source.ship_calls == 0:
            await asyncio.sleep(0.001)
        source.write(2)
        source.write(3)  # two requests finishing while the first upload runs
        second = asyncio.create_task(shipper.durable())
        third = asyncio.create_task(shipper.durable())
        await asyncio.sleep(0)
        source.let(ok=True)
        await first
        assert not second.done() and not third.done()
        source.let(ok=True)
        await asyncio.gather(second, third)
        assert source.uploads == [[1], [2, 3]]  # one upload for both: group commit
        assert shipper.counters["rounds"] == 2

    run(scenario())


def test_a_waiter_waits_at_most_the_timeout():
    async def scenario():
        source = FakeSource()
        shipper = GroupShipper(source, timeout_s=0.05)
        source.write(1)
        with pytest.raises(EventsNotShipped) as caught:
            await shipper.durable()
        assert caught.value.cause == "timeout" and shipper.waiting == 0
        source.let(ok=True)
        await shipper.aclose()  # the upload in flight ends; nothing is left running
        assert source.uploads == [[1]]

    run(scenario())


def test_events_waiting_in_memory_are_never_reported_shipped():
    async def scenario():
        source = FakeSource(gated=False)
        shipper = GroupShipper(source, timeout_s=30)
        source.queued = 3
        with pytest.raises(EventsNotShipped) as caught:
            await shipper.durable()
        assert caught.value.cause == "spool_unavailable" and source.ship_calls == 0

    run(scenario())


def test_tick_ships_batches_closed_without_a_waiter_and_flush_ships_the_open_one():
    async def scenario():
        source = FakeSource(gated=False)
        shipper = GroupShipper(source, timeout_s=30)
        shipper.tick()  # nothing closed: nothing to do
        assert shipper.counters["rounds"] == 0
        source.write(1)
        source.seal()  # closed by age
        shipper.tick()
        await shipper.aclose()
        assert source.uploads == [[1]]
        source.write(2)
        await shipper.flush()
        assert source.uploads == [[1], [2]] and not source.sealed()

    run(scenario())


def test_flush_raises_when_the_upload_fails():
    async def scenario():
        source = FakeSource()
        shipper = GroupShipper(source, timeout_s=30)
        source.write(1)
        source.let(ok=False)
        with pytest.raises(EventsNotShipped):
            await shipper.flush()
        assert [s.number for s in source.sealed()] == [1]

    run(scenario())


# -- the spool source on a local log ---------------------------------------------------------------

def events_of(request_id: str) -> list:
    common = {"occurred_at": AT, "request_id": request_id, "agent_type": "coder",
              "model_id": "gpt-4o-mini", "provider": "openai"}
    return [
        ModelSelected(**common, candidates=(), propensity=1.0),
        AttemptStarted(**common, attempt=1, router_id="w-1", reserved_usd=Decimal("0.002")),
        RequestCompleted(**common, latency_ms=5.0, input_tokens=10, output_tokens=5,
                         cost_usd=Decimal("0.0001"), finish_reason="stop"),
    ]


def completed(data_dir) -> list[str]:
    return sorted(e.request_id for e in EventLog(data_dir).read("RequestCompleted"))


def test_a_shipped_request_is_in_the_log_once_durable_returns(tmp_path):
    writer = SpoolWriter(tmp_path, "w-1", fsync="never", ships=True)
    shipper = spool_shipper(writer, tmp_path, timeout_s=30)

    async def scenario():
        writer.write(events_of("r1"))
        await shipper.durable()
        assert completed(tmp_path) == ["r1"]  # no sink ran
        writer.write(events_of("r2"))
        writer.write(events_of("r3"))
        await shipper.durable()

    run(scenario())
    assert completed(tmp_path) == ["r1", "r2", "r3"]
    assert writer.sealed() == [] and not list(writer.dir.glob("*.wal"))
    # the node's sink, afterwards: nothing left to ingest, nothing doubled
    writer.close()
    sink = SpoolIngestor(tmp_path)
    sink.ingest()
    assert completed(tmp_path) == ["r1", "r2", "r3"]
    assert sorted(e.request_id for e in read_all_events(tmp_path, ["RequestCompleted"])) == [
        "r1", "r2", "r3"]


def test_the_sink_leaves_a_live_writers_segments_to_ship_and_takes_them_once_it_is_gone(tmp_path):
    writer = SpoolWriter(tmp_path, "w-1", fsync="never", ships=True)
    writer.write(events_of("r1"))
    writer.rotate()
    [sealed] = writer.sealed()
    assert sealed.suffix == SHIP and segment_number(sealed) == writer.position
    assert list(ingestible_segments(tmp_path)) == []  # alive: its shipper's
    assert [e.request_id for e in read_all_events(tmp_path, ["RequestCompleted"])] == ["r1"]
    # the router shipped the segment and died before deleting it: the sink writes the same files
    publish(EventLog(tmp_path, fsync="always"), events_of("r1"), Segment(sealed, "w-1", True).stem)
    writer.close()
    assert [s.path for s in ingestible_segments(tmp_path)] == [sealed]
    SpoolIngestor(tmp_path).ingest()
    assert completed(tmp_path) == ["r1"]  # once
    assert not sealed.exists()


def test_spool_segments_ship_what_the_writer_sealed_in_order(tmp_path):
    writer = SpoolWriter(tmp_path, "w-1", fsync="never", ships=True)
    source = SpoolSegments(writer, EventLog(tmp_path, fsync="always"), pending=lambda: 2)
    assert source.pending() == 2 and source.position() == 0
    writer.write(events_of("r1"))
    source.seal()
    writer.write(events_of("r2"))
    source.seal()
    batches = source.sealed()
    assert [b.number for b in batches] == [1, 2] == [segment_number(b.path) for b in batches]
    for batch in batches:
        source.ship(batch)
    source.ship(batches[0])  # again (already gone): nothing happens
    assert completed(tmp_path) == ["r1", "r2"] and source.sealed() == []
