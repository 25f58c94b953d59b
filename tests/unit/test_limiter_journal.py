"""A RateLimiter remembers its window across a restart (issue 10, item 4): its decisions are
journaled before they are answered and replayed by the next incarnation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api_model_management._clock import ManualClock
from api_model_management.config import RateLimitSettings
from api_model_management.ratelimit import LimiterJournal, RateLimiterCore

pytestmark = pytest.mark.unit

SETTINGS = RateLimitSettings(lease_ttl_s=5.0, window_s=60.0)


class DomainClock(ManualClock):
    """A ManualClock on a named monotonic clock (another host or boot)."""

    def __init__(self, domain: str, monotonic_start: float, start=None) -> None:
        super().__init__(start=start, monotonic_start=monotonic_start)
        self.domain = domain


def limiter(journal: LimiterJournal, clock, rpm: int = 10, tpm: int = 100_000) -> RateLimiterCore:
    return RateLimiterCore.replay(journal.load(), "m", rpm, tpm, settings=SETTINGS, clock=clock)


def act(core: RateLimiterCore, journal: LimiterJournal, call):
    """One decision as the shell makes it: decide, journal, then answer."""
    answer = call(core)
    journal.append(core.drain_records())
    return answer


def test_leases_granted_before_a_restart_count_until_they_expire(tmp_path):
    clock = ManualClock()
    journal = LimiterJournal(tmp_path / "m.jsonl", clock)
    first = limiter(journal, clock)
    lease = act(first, journal, lambda c: c.lease("router-a", 6, 1000))
    assert lease.requests == 6
    act(first, journal, lambda c: c.lease("router-b", 4, 1000))
    # the limiter dies; its successor reads the journal
    clock.advance(1.0)
    second = limiter(LimiterJournal(tmp_path / "m.jsonl", clock), clock)
    refused = second.lease("router-c", 1, 10)
    assert refused.requests == 0 and refused.retry_after_s > 0
    assert second.status().requests_used == 10
    clock.advance(SETTINGS.lease_ttl_s + SETTINGS.window_s)
    assert second.lease("router-c", 1, 10).requests == 1  # slid out of the window


def test_a_returned_lease_counts_only_its_used_part_after_a_restart(tmp_path):
    clock = ManualClock()
    journal = LimiterJournal(tmp_path / "m.jsonl", clock)
    core = limiter(journal, clock)
    lease = act(core, journal, lambda c: c.lease("router-a", 10, 1000))
    act(core, journal, lambda c: c.return_lease(lease.lease_id, 3, 300))
    restarted = limiter(LimiterJournal(tmp_path / "m.jsonl", clock), clock)
    assert restarted.status().requests_used == 3
    assert restarted.lease("router-b", 10, 1000).requests == 7


def test_a_torn_last_line_is_skipped(tmp_path):
    clock = ManualClock()
    journal = LimiterJournal(tmp_path / "m.jsonl", clock)
    core = limiter(journal, clock)
    act(core, journal, lambda c: c.lease("router-a", 4, 100))
    with open(tmp_path / "m.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"type": "Granted", "at": 10')  # a crash mid-write: never answered
    restarted = limiter(LimiterJournal(tmp_path / "m.jsonl", clock), clock)
    assert restarted.status().requests_used == 4


def test_a_journal_from_another_clock_is_shifted_to_this_one(tmp_path):
    wall = ManualClock().now()
    old = DomainClock("boot-1", monotonic_start=5000.0, start=wall)
    journal = LimiterJournal(tmp_path / "m.jsonl", old)
    act(limiter(journal, old), journal, lambda c: c.lease("router-a", 10, 1000))
    # 20 s later in wall time, on another host whose monotonic clock reads 100
    new = DomainClock("boot-2", monotonic_start=100.0, start=wall + timedelta(seconds=20))
    restarted = limiter(LimiterJournal(tmp_path / "m.jsonl", new), new)
    assert restarted.lease("router-b", 1, 10).requests == 0  # still inside the window
    new.advance(SETTINGS.lease_ttl_s + SETTINGS.window_s - 20 + 0.001)
    assert restarted.lease("router-b", 1, 10).requests == 1


def test_compaction_keeps_the_state(tmp_path):
    clock = ManualClock()
    journal = LimiterJournal(tmp_path / "m.jsonl", clock, max_lines=5)
    core = limiter(journal, clock, rpm=100)
    for i in range(8):
        act(core, journal, lambda c, i=i: c.lease(f"router-{i}", 2, 100))
        if journal.needs_compaction():
            journal.rewrite(core.snapshot())
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) <= 6
    restarted = limiter(LimiterJournal(tmp_path / "m.jsonl", clock), clock, rpm=100)
    assert restarted.status().requests_used == core.status().requests_used == 16


def test_no_journal_means_an_empty_window(tmp_path):
    clock = ManualClock()
    core = limiter(LimiterJournal(tmp_path / "absent.jsonl", clock), clock)
    assert core.status().requests_used == 0


def test_a_torn_line_is_skipped_and_never_swallows_the_next_record(tmp_path):
    """Both journals (the limiter's and the CostLedger's holds) share one file format: a crash in
    the middle of a write leaves a torn last line, which the next incarnation ends before it
    appends, so the record after it is read whole."""
    from decimal import Decimal

    from api_model_management.budget import HoldJournal
    from api_model_management.budget._ledger import Reservation
    from api_model_management.budget._limits import SpendKey

    clock = ManualClock()
    path = tmp_path / "holds.jsonl"
    hold = Reservation(reservation_id="s-1", kind="slice", key=SpendKey("p", "m", "a"),
                       amount_usd=Decimal("0.25"), created_at=clock.monotonic(),
                       drop_at=clock.monotonic() + 60, holder="router-0")
    first = HoldJournal(path, clock)
    first.append([("+", hold)])
    first.close()
    with path.open("a") as fh:
        fh.write('["+",{"reservation_id":"s-torn"')  # the crash: no end of line
    second = HoldJournal(path, clock)
    assert [h.reservation_id for h in second.load()] == ["s-1"]
    second.append([("+", Reservation(**{**hold.__dict__, "reservation_id": "s-2"})),
                   ("-", "s-1")])
    second.close()
    assert [h.reservation_id for h in HoldJournal(path, clock).load()] == ["s-2"]
    # the limiter's journal, the same way
    journal = LimiterJournal(tmp_path / "m.jsonl", clock)
    core = limiter(journal, clock)
    act(core, journal, lambda c: c.lease("router-a", 2, 100))
    journal.close()
    with journal.path.open("a") as fh:
        fh.write('{"type":"Granted","at":')
    again = LimiterJournal(journal.path, clock)
    core = limiter(again, clock)
    act(core, again, lambda c: c.lease("router-b", 2, 100))
    assert len(LimiterJournal(journal.path, clock).load()) == 2
