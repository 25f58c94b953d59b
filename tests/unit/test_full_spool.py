"""A full spool disk (issue 10, item 5): a billed call never loses its events, new work is refused
with ``SpoolUnavailable`` while the spool cannot write, and everything resumes by itself, in
order, when it can. The disk is simulated at the ``os.write`` level (``ENOSPC`` after a short
write, as a full filesystem does); time is a ManualClock."""

from __future__ import annotations

import asyncio
import errno
import os
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management._clock import ManualClock
from api_model_management.config import EventSettings
from api_model_management.errors import SpoolUnavailable
from api_model_management.events import (
    AttemptStarted,
    EventLog,
    ModelSelected,
    RequestCompleted,
    RequestFailed,
)
from api_model_management.events._ingest import SpoolIngestor
from api_model_management.events._resilient import ResilientSpool
from api_model_management.events._spool import SpoolWriter, decode_events, encode_events
from api_model_management.routing import build_local_router

from _fakes import FakeAdapter, config_with, fake_adapters

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MINI = "gpt-4.1-mini"


class Disk:
    """``os.write`` on a disk that can be filled: while ``full``, a write of more than one byte
    writes half of it (a short write) and the next call raises ``ENOSPC``; ``fail_with`` picks
    another errno (``EDQUOT``, ``EIO``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.fail_with = errno.ENOSPC
        self.short_writes = 0
        self._real = os.write
        self._torn = False
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data) -> int:
        if not self.full:
            return self._real(fd, data)
        if self._torn or len(data) <= 1:
            self._torn = False
            raise OSError(self.fail_with, os.strerror(self.fail_with))
        self._torn = True
        self.short_writes += 1
        return self._real(fd, bytes(data[: len(data) // 2]))


def done(rid: str, cost: str = "0.001") -> RequestCompleted:
    return RequestCompleted(request_id=rid, occurred_at=AT, latency_ms=5.0, cost_usd=D(cost),
                            agent_type="research", model_id="gpt-a", provider="openai")


def spooled(data_dir: Path) -> list:
    """Every event in the spool's segments, in the order written."""
    out = []
    for path in sorted((data_dir / "spool").glob("*/*")):
        if path.suffix in (".open", ".wal"):
            out.extend(decode_events(path.read_bytes()))
    return out


def segment_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((data_dir / "spool").glob("*/*"))
                    if p.suffix in (".open", ".wal"))


# -- torn writes -------------------------------------------------------------------------------

def test_a_write_that_fails_half_way_leaves_no_torn_line(tmp_path, monkeypatch):
    disk = Disk(monkeypatch)
    writer = SpoolWriter(tmp_path, "w-1", fsync="never")
    writer.write([done("a")])
    disk.full = True
    with pytest.raises(OSError) as raised:
        writer.write([done("b"), done("c")])
    assert raised.value.errno == errno.ENOSPC and disk.short_writes == 1
    disk.full = False
    writer.write([done("d")])
    a, d = spooled(tmp_path)
    assert (a.request_id, d.request_id) == ("a", "d")
    assert segment_bytes(tmp_path) == encode_events([a, d])  # nothing of b or c is left


def test_when_the_cut_back_fails_the_next_batch_starts_a_new_segment(tmp_path, monkeypatch):
    disk = Disk(monkeypatch)

    def no_truncate(fd, length):
        raise OSError(errno.EIO, "I/O error")

    writer = SpoolWriter(tmp_path, "w-1", fsync="never")
    writer.write([done("a")])
    disk.full = True
    monkeypatch.setattr(os, "ftruncate", no_truncate)
    with pytest.raises(OSError):
        writer.write([done("b")])
    disk.full = False
    writer.write([done("c")])
    segments = sorted((tmp_path / "spool" / "w-1").glob("*.*[lnw]"))
    assert [p.suffix for p in segments] == [".wal", ".open"]  # the torn one closed
    assert [e.request_id for e in spooled(tmp_path)] == ["a", "c"]


@pytest.mark.parametrize("cut", [3, 12, 40])  # inside the type name, after the tab, in the JSON
def test_a_torn_record_glued_to_the_next_gives_the_next_back(cut):
    torn = encode_events([done("torn")])[:cut]
    data = encode_events([done("a")]) + torn + encode_events([done("b"), done("c")])
    assert [e.request_id for e in decode_events(data)] == ["a", "b", "c"]


def test_a_torn_last_line_is_skipped():
    data = encode_events([done("a")]) + encode_events([done("b")])[:-10]
    assert [e.request_id for e in decode_events(data)] == ["a"]


# -- the resilient spool -------------------------------------------------------------------------

def resilient(tmp_path: Path, clock: ManualClock, **kw) -> ResilientSpool:
    return ResilientSpool(SpoolWriter(tmp_path, "w-1", fsync="never"), clock=clock, **kw)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_events_are_kept_while_the_spool_fails_and_written_first_in_order(tmp_path, monkeypatch, code):
    disk, clock = Disk(monkeypatch), ManualClock()
    spool = resilient(tmp_path, clock)
    spool.write([done("a")])
    disk.full, disk.fail_with = True, code
    spool.write([done("b"), done("c")])  # never raises
    spool.write([done("d")])
    assert spool.queued_events == 3 and not spool.available
    with pytest.raises(SpoolUnavailable) as refused:
        spool.check()
    assert refused.value.cause == errno.errorcode[code]
    spool.tick()  # still full: nothing changes
    assert spool.queued_events == 3
    disk.full = False
    with pytest.raises(SpoolUnavailable):
        spool.check()  # a retry is not due yet from check (housekeeping retries at once)
    clock.advance(0.1)
    spool.check()  # written back: admission resumes
    spool.write([done("e")])
    assert [e.request_id for e in spooled(tmp_path)] == ["a", "b", "c", "d", "e"]
    assert spool.counters["rewritten_events"] == 3 and spool.counters["refused"] == 2


def test_an_intent_is_never_queued(tmp_path, monkeypatch):
    disk, clock = Disk(monkeypatch), ManualClock()
    spool = resilient(tmp_path, clock)
    disk.full = True
    intent = AttemptStarted(request_id="r", attempt=1, router_id="w-1", occurred_at=AT)
    with pytest.raises(SpoolUnavailable):
        spool.write_intent(intent)
    assert spool.queued_events == 0 and not spool.available
    disk.full = False
    spool.tick()  # nothing queued: an empty line probes the spool
    assert spool.available
    assert spooled(tmp_path) == []


def test_overdue_events_are_handed_off_and_handed_back_in_order(tmp_path, monkeypatch):
    disk, clock = Disk(monkeypatch), ManualClock()
    spool = resilient(tmp_path, clock, grace_s=5.0)
    disk.full = True
    spool.write([done("a"), done("b")])
    clock.advance(4.0)
    assert spool.take_overdue() == []
    spool.write([done("c")])
    clock.advance(1.0)
    assert [e.request_id for e in spool.take_overdue()] == ["a", "b"]  # c waited 1 s only
    assert spool.take_overdue() == []  # one hand-off at a time
    spool.hand_back()  # the sink did not take them
    assert [e.request_id for e in spool.take_overdue(everything=True)] == ["a", "b", "c"]
    spool.handed_off()
    assert spool.queued_events == 0 and spool.counters["handed_off_events"] == 3
    assert not spool.available  # the spool itself still cannot write
    disk.full = False
    spool.tick()
    assert spool.available and spooled(tmp_path) == []


def test_a_pending_hand_off_keeps_admission_closed(tmp_path, monkeypatch):
    disk, clock = Disk(monkeypatch), ManualClock()
    spool = resilient(tmp_path, clock, grace_s=0.0)
    disk.full = True
    spool.write([done("a")])
    assert spool.take_overdue()
    disk.full = False
    spool.tick()
    assert not spool.available  # the events are with the sink, not confirmed
    spool.hand_back()
    spool.tick()
    assert spool.available and [e.request_id for e in spooled(tmp_path)] == ["a"]


def test_the_memory_kept_is_bounded(tmp_path, monkeypatch):
    disk, clock = Disk(monkeypatch), ManualClock()
    size = len(encode_events([done("a")]))
    spool = resilient(tmp_path, clock, max_backlog_bytes=2 * size)
    disk.full = True
    spool.write([done("a"), done("b"), done("c")])
    assert spool.queued_events == 2 and spool.counters["dropped_events"] == 1


def test_written_back_in_batches_that_each_resume_where_the_last_stopped(tmp_path, monkeypatch):
    disk, clock = Disk(monkeypatch), ManualClock()
    size = len(encode_events([done("a")]))
    spool = resilient(tmp_path, clock, batch_bytes=2 * size)
    disk.full = True
    spool.write([done(str(i)) for i in range(5)])
    disk.full = False
    spool.tick()
    assert spool.available
    assert [e.request_id for e in spooled(tmp_path)] == ["0", "1", "2", "3", "4"]


# -- the request path --------------------------------------------------------------------------

class FillsTheDisk(FakeAdapter):
    """A provider whose answer arrives just as the disk fills up (the call is made and billed)."""

    disk: Disk | None = None

    async def complete(self, request, model, *, timeout_s=None):
        result = await super().complete(request, model, timeout_s=timeout_s)
        if self.disk is not None:
            self.disk.full = True
        return result


def router_on_spool(tmp_path: Path, adapters: dict, **settings):
    config = config_with(budgets={"limits": [{"scope": "global", "limit_usd": "5"}]}, **settings)
    clock = ManualClock()
    spool = resilient(tmp_path, clock)
    router = build_local_router(config, adapters=adapters, events=spool, clock=clock)
    return router, spool, clock


def req(**fields) -> ModelRequest:
    return ModelRequest(prompt="Explain what a hash map is.", agent_type="research",
                        constraints=SelectionConstraints(allowed_models=(MINI,)), **fields)


def test_a_billed_call_returns_while_its_events_wait_and_new_work_is_refused(tmp_path, monkeypatch):
    disk = Disk(monkeypatch)
    config = config_with()
    adapters = fake_adapters(config)
    adapters["openai"] = filler = FillsTheDisk("openai")
    filler.disk = disk
    router, spool, clock = router_on_spool(tmp_path, adapters)

    response = asyncio.run(router.complete(req()))  # billed: no OSError, the response is back
    assert response.cost_usd > 0
    assert [type(e).__name__ for e in spooled(tmp_path)] == ["AttemptStarted"]
    assert spool.queued_events >= 2 and not spool.available

    calls = len(filler.calls)
    with pytest.raises(SpoolUnavailable):
        asyncio.run(router.complete(req()))
    assert len(filler.calls) == calls  # refused before any provider call
    assert router.counters["refused_spool"] == 1

    filler.disk = None
    disk.full = False
    clock.advance(0.1)
    second = asyncio.run(router.complete(req()))
    events = spooled(tmp_path)
    first_done = [i for i, e in enumerate(events) if e.request_id == response.request_id
                  and isinstance(e, RequestCompleted)]
    second_start = [i for i, e in enumerate(events) if e.request_id == second.request_id
                    and isinstance(e, ModelSelected)]
    assert len(first_done) == 1 and first_done[0] < second_start[0]  # queued events first
    terminals = [e.request_id for e in events if isinstance(e, RequestCompleted | RequestFailed)]
    assert sorted(terminals) == sorted([response.request_id, second.request_id])


def test_an_intent_that_cannot_be_written_refuses_the_call_and_releases_admission(tmp_path, monkeypatch):
    disk = Disk(monkeypatch)
    config = config_with()
    adapters = fake_adapters(config)
    router, spool, clock = router_on_spool(tmp_path, adapters)
    disk.full = True  # the spool learns it at the intent: the first write of the request
    with pytest.raises(SpoolUnavailable):
        asyncio.run(router.complete(req()))
    assert adapters["openai"].calls == []  # no call without a durable intent
    assert router.limiters[MINI].status().requests_used == 0  # the rate ticket was released
    assert router.ledger.reserved_usd() == 0  # and the budget reservation
    disk.full = False
    clock.advance(0.1)
    asyncio.run(router.complete(req()))
    (failed,) = [e for e in spooled(tmp_path) if isinstance(e, RequestFailed)]
    assert failed.error_kind == "spool_unavailable" and failed.cost_usd == 0


def test_a_reroute_that_cannot_be_announced_returns_the_answer_kept(tmp_path, monkeypatch):
    from _fakes import ok

    disk = Disk(monkeypatch)
    adapters = fake_adapters(config_with())
    adapters["openai"] = filler = FillsTheDisk("openai")
    filler.disk = disk
    router, spool, clock = router_on_spool(tmp_path, adapters,
                                           quality={"reroute_on_low_quality": True})
    request = ModelRequest(prompt="Explain what a hash map is.", agent_type="research",
                           constraints=SelectionConstraints(allowed_models=(MINI, "gpt-4.1")))
    filler.script(MINI, ok("", output_tokens=0))  # a low-quality answer: re-routed to gpt-4.1
    response = asyncio.run(router.complete(request))
    assert response.model_id == MINI  # billed and returned although the re-route was refused
    disk.full = False
    spool.tick()
    events = [e for e in spooled(tmp_path) if e.request_id == response.request_id]
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("RequestCompleted") == 1 and kinds.count("AttemptStarted") == 1
    (refused,) = [e for e in events if type(e).__name__ == "AttemptFailed"]
    assert refused.error_kind == "spool_unavailable" and refused.model_id == "gpt-4.1"


# -- the sink's side ---------------------------------------------------------------------------

def test_the_sink_keeps_handed_events_until_the_log_can_take_them(tmp_path, monkeypatch):
    sink = SpoolIngestor(tmp_path, EventSettings(fsync="never"))
    assert sink.accept([done("a"), done("b")])
    real_append = sink.log.append

    def full(events, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink.log, "append", full)
    with pytest.raises(OSError):
        sink.ingest()
    assert sink.handed_events == 2
    monkeypatch.setattr(sink.log, "append", real_append)
    assert sink.ingest() == 2
    assert sink.handed_events == 0
    assert sorted(e.request_id for e in EventLog(tmp_path).read()) == ["a", "b"]


def test_a_batch_handed_twice_is_written_once(tmp_path):
    sink = SpoolIngestor(tmp_path, EventSettings(fsync="never"))
    batch = [done("a"), done("b")]
    sink.accept(batch)
    sink.ingest()
    sink.accept(batch)  # its first answer was lost: handed back and handed again
    sink.ingest()
    assert sorted(e.request_id for e in EventLog(tmp_path).read()) == ["a", "b"]


def test_the_sink_refuses_a_hand_off_beyond_its_limit(tmp_path, monkeypatch):
    from api_model_management.events import _ingest

    monkeypatch.setattr(_ingest, "HANDED_MAX_EVENTS", 2)
    sink = SpoolIngestor(tmp_path, EventSettings(fsync="never"))
    assert sink.accept([done("a"), done("b")])
    assert not sink.accept([done("c")])
    assert sink.handed_events == 2
