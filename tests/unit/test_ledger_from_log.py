"""The CostLedger learns settled spend from the log (issue 10, items 1 and 7): file by file,
exact through compaction and restarts; slice spend reported by routers is held until the log
delivers it; a dead router's slice is kept until its spool is in the log."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from api_model_management._clock import ManualClock
from api_model_management.budget import CostLedgerCore, SpendKey
from api_model_management.budget._fold import LogSpend
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.errors import BudgetExceeded
from api_model_management.events import EventLog, RequestCompleted, RequestFailed
from api_model_management.events._compact import compact

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KEY = SpendKey("openai", "gpt-a", "research")
LIMIT = BudgetSettings(limits=[BudgetLimit(scope="agent_type", key="research", limit_usd=D(1))])


def done(rid: str, cost: str, at: datetime = START, **kw) -> RequestCompleted:
    return RequestCompleted(request_id=rid, occurred_at=at, latency_ms=1.0, cost_usd=D(cost),
                            provider="openai", model_id="gpt-a", agent_type="research", **kw)


def ledger(clock: ManualClock, **kw) -> CostLedgerCore:
    return CostLedgerCore(LIMIT, clock=clock, **kw)


def spent(core: CostLedgerCore) -> D:
    return core.spend("agent_type", "research", "day")


# -- LogSpend ------------------------------------------------------------------------------------


def test_poll_reads_each_file_once_and_compaction_changes_nothing(tmp_path):
    clock = ManualClock(start=START)
    log = EventLog(tmp_path, fsync="never")
    tail = LogSpend(log, clock)
    core = ledger(clock)
    for i in range(4):  # four files, as four spool segments would make
        log.append([done(f"r{i}", "0.01"), RequestFailed(request_id=f"f{i}", attempts=1,
                    error_kind="lost", occurred_at=START, cost_usd=D("0.002"),
                    provider="openai", model_id="gpt-a", agent_type="research")])
    delta = tail.poll()
    core.apply_log(delta)
    assert spent(core) == D("0.048") and delta.files_read == 8
    assert sorted(delta.request_ids) == sorted([f"r{i}" for i in range(4)] + [f"f{i}" for i in range(4)])
    compact(log, min_files=2)
    after = tail.poll()
    core.apply_log(after)
    assert after.files_read == 0 and not after.added and not after.removed
    assert spent(core) == D("0.048")
    log.append([done("r9", "0.5")])
    core.apply_log(tail.poll())
    assert spent(core) == D("0.548")


def test_a_restarted_ledger_reads_only_files_new_since_its_cache(tmp_path):
    clock = ManualClock(start=START)
    log = EventLog(tmp_path, fsync="never")
    log.append([done("r1", "0.2")])
    log.append([done("r2", "0.3")])
    first = LogSpend(log, clock, cache_path=tmp_path / "state" / "files.json")
    CostLedgerCore(LIMIT, clock=clock).apply_log(first.poll(all_partitions=True))
    assert first.save()
    log.append([done("r3", "0.1")])  # written while the ledger was down
    second = LogSpend(log, clock, cache_path=tmp_path / "state" / "files.json")
    restarted = ledger(clock)
    delta = second.start()
    restarted.apply_log(delta)
    assert delta.files_read == 1  # only the new file was read
    assert spent(restarted) == D("0.6")
    assert sorted(delta.request_ids) == ["r1", "r2", "r3"]


def test_an_unreadable_cache_means_reading_the_log_again(tmp_path):
    clock = ManualClock(start=START)
    log = EventLog(tmp_path, fsync="never")
    log.append([done("r1", "0.2")])
    (tmp_path / "cache.json").write_text("{not json")
    tail = LogSpend(log, clock, cache_path=tmp_path / "cache.json")
    assert tail.poll(all_partitions=True).files_read == 1


# -- slices, pending charges and the log ---------------------------------------------------------


def test_slice_spend_is_held_until_the_log_delivers_it(tmp_path):
    clock = ManualClock(start=START)
    core = ledger(clock)
    piece = core.grant_slice(KEY, D("0.5"), "router-1", minimum_usd=D("0.5"))
    core.return_slice(piece.slice_id, D("0.3"), charges=[("r1", D("0.1")), ("r2", D("0.2"))])
    assert spent(core) == 0 and core.pending_usd() == D("0.3")  # held, not yet settled
    with pytest.raises(BudgetExceeded):
        core.reserve(KEY, D("0.71"))
    log = EventLog(tmp_path, fsync="never")
    log.append([done("r1", "0.1"), done("r2", "0.2")])
    core.apply_log(LogSpend(log, clock).poll())
    assert spent(core) == D("0.3") and core.pending_usd() == 0


def test_a_slice_returned_after_the_log_delivered_its_requests_counts_them_once(tmp_path):
    clock = ManualClock(start=START)
    core = ledger(clock)
    piece = core.grant_slice(KEY, D("0.5"), "router-1", minimum_usd=D("0.5"))
    log = EventLog(tmp_path, fsync="never")
    log.append([done("r1", "0.1")])
    core.apply_log(LogSpend(log, clock).poll())
    core.return_slice(piece.slice_id, D("0.1"), charges=[("r1", D("0.1"))])
    assert spent(core) == D("0.1") and core.pending_usd() == 0 and core.reserved_usd() == 0


def test_a_dead_routers_slice_is_kept_until_its_spool_is_in_the_log(tmp_path):
    clock = ManualClock(start=START)
    gone: set[str] = set()
    core = ledger(clock, holder_gone=lambda holder: holder in gone)
    piece = core.grant_slice(KEY, D("0.5"), "router-1", minimum_usd=D("0.5"))
    clock.advance(30 + LIMIT.reservation_ttl_s + 5)  # past its drop time: the router died
    core.expire()
    assert core.reserved_usd() == D("0.5")  # still held: its spend may be on its way
    log = EventLog(tmp_path, fsync="never")
    log.append([done("r1", "0.4", at=clock.now())])  # the sink ingested the dead spool
    core.apply_log(LogSpend(log, clock).poll())
    gone.add("router-1")
    clock.advance(1.5)
    core.expire()
    assert core.reserved_usd() == 0 and spent(core) == D("0.4")
    assert piece.slice_id is not None


def test_without_holder_tracking_an_expired_slice_is_dropped_at_its_time():
    clock = ManualClock(start=START)
    core = ledger(clock)
    core.grant_slice(KEY, D("0.5"), "router-1", minimum_usd=D("0.5"))
    clock.advance(30 + LIMIT.reservation_ttl_s + 1)
    core.expire()
    assert core.reserved_usd() == 0


def test_logged_request_ids_are_forgotten_after_a_while(tmp_path):
    clock = ManualClock(start=START)
    core = ledger(clock)
    log = EventLog(tmp_path, fsync="never")
    log.append([done("r1", "0.1")])
    core.apply_log(LogSpend(log, clock).poll())
    clock.advance(3600)
    core.expire()
    piece = core.grant_slice(KEY, D("0.2"), "router-1", minimum_usd=D("0.2"))
    # an hour later the id is unknown: a (wrong) late return would be held as pending
    core.return_slice(piece.slice_id, D("0.1"), charges=[("r1", D("0.1"))])
    assert core.pending_usd() == D("0.1")
