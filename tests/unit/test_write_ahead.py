"""Write ahead (issue 10, item 8): every provider call is announced in the spool before it is
made, so that a router's crash leaves every call it may have made in the log, charged at its
worst case; the EventSink finalizes a writer that is gone."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from api_model_management._clock import ManualClock
from api_model_management.budget import CostLedgerCore, LogSpend
from api_model_management.config import BudgetLimit, BudgetSettings, EventSettings
from api_model_management.events import (
    AttemptStarted,
    EventLog,
    RequestCompleted,
    RequestFailed,
)
from api_model_management.events._ingest import SpoolIngestor
from api_model_management.events._spool import SpoolWriter

from _fakes import FakeAdapter, config_with, fake_adapters, make_router

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def intent(rid: str, attempt: int, writer: str, reserved: str) -> AttemptStarted:
    return AttemptStarted(request_id=rid, attempt=attempt, router_id=writer, occurred_at=AT,
                          reserved_usd=D(reserved), agent_type="research", model_id="gpt-a",
                          provider="openai")


def crash(writer: SpoolWriter) -> None:
    """What a kill -9 leaves: the open segment as it is, the writer's lock released."""
    assert writer._fd is not None and writer._alive_fd is not None
    os.close(writer._fd)
    os.close(writer._alive_fd)
    writer._fd = writer._alive_fd = None


def test_a_crashed_writers_calls_in_flight_are_recorded_as_lost(tmp_path):
    writer_id = "router-0-1773144000000"
    writer = SpoolWriter(tmp_path, writer_id, fsync="never")
    writer.write_intent(intent("done", 1, writer_id, "0.02"))
    writer.write([RequestCompleted(request_id="done", occurred_at=AT, latency_ms=5.0,
                                   cost_usd=D("0.001"), agent_type="research",
                                   model_id="gpt-a", provider="openai")])
    writer.write_intent(intent("in-flight", 1, writer_id, "0.02"))
    writer.write_intent(intent("in-flight", 2, writer_id, "0.03"))  # failed over, then died
    crash(writer)
    sink = SpoolIngestor(tmp_path, EventSettings(fsync="never"))
    sink.ingest()
    events = EventLog(tmp_path).read()
    (lost,) = [e for e in events if isinstance(e, RequestFailed)]
    assert lost.request_id == "in-flight" and lost.error_kind == "lost"
    assert lost.cost_usd == D("0.05") and lost.attempts == 2
    assert not (tmp_path / "spool" / writer_id).exists()  # finalized
    # the ledger learns the lost call's worst case from the log
    ledger = CostLedgerCore(BudgetSettings(limits=[BudgetLimit(limit_usd=D(1))]),
                            clock=ManualClock(start=AT))
    ledger.apply_log(LogSpend(EventLog(tmp_path), ManualClock(start=AT)).poll())
    assert ledger.spend("global", "*", "day") == D("0.051")
    sink.ingest()  # a second pass changes nothing
    assert len([e for e in EventLog(tmp_path).read() if isinstance(e, RequestFailed)]) == 1


def test_a_live_writer_is_never_finalized(tmp_path):
    writer = SpoolWriter(tmp_path, "router-1-1773144000000", fsync="never")
    writer.write_intent(intent("r1", 1, writer.writer_id, "0.01"))
    writer.rotate()  # its segment is ingested, but the writer lives on
    SpoolIngestor(tmp_path, EventSettings(fsync="never")).ingest()
    assert (tmp_path / "spool" / writer.writer_id).exists()
    assert [e for e in EventLog(tmp_path).read() if isinstance(e, RequestFailed)] == []
    writer.write([RequestCompleted(request_id="r1", occurred_at=AT, latency_ms=5.0)])
    writer.close()  # a clean end: nothing in flight, the directory goes
    SpoolIngestor(tmp_path, EventSettings(fsync="never")).ingest()
    assert not (tmp_path / "spool" / writer.writer_id).exists()
    assert [e for e in EventLog(tmp_path).read() if isinstance(e, RequestFailed)] == []


def test_the_router_announces_each_call_before_making_it():
    config = config_with(budgets={"limits": [{"scope": "global", "limit_usd": "5"}]})
    seen_at_call: list[int] = []
    adapters = fake_adapters(config)

    class Announcing(FakeAdapter):
        async def complete(self, request, model, *, timeout_s=None):
            seen_at_call.append(len(events.intents))
            return await super().complete(request, model, timeout_s=timeout_s)

    adapters["openai"] = Announcing("openai")
    router, _, _, events = make_router(config, adapters=adapters)
    from api_model_management.errors import ProviderTimeout

    adapters["openai"].script("gpt-4.1-mini", ProviderTimeout("slow"))
    from api_model_management import ModelRequest

    response = asyncio.run(router.complete(ModelRequest(
        prompt="Explain what a hash map is.", agent_type="research", model_id=None,
        constraints={"allowed_models": ("gpt-4.1-mini", "gpt-4o-mini")})))
    assert response.attempts >= 1
    intents = events.intents
    assert [i.attempt for i in intents] == list(range(1, len(intents) + 1))
    assert seen_at_call[0] == 1  # announced before the first call was made
    assert all(i.request_id == response.request_id and i.reserved_usd > 0 for i in intents)
    assert all(i.router_id == "local" for i in intents)


def test_write_ahead_can_be_turned_off():
    from api_model_management import ModelRequest

    router, _, _, events = make_router(config_with(events={"write_ahead_attempts": False}))
    asyncio.run(router.complete(ModelRequest(prompt="Explain what a hash map is.")))
    assert events.intents == []
