"""When a RateLimiter may retire (issue 15): the idle policy on the injected clock, the core's
``outstanding``, and the window a journal brings back after a retire (no Ray)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_model_management._clock import ManualClock
from api_model_management.config import RateLimitSettings
from api_model_management.errors import InvalidInput
from api_model_management.ratelimit import IdleRetirement, RateLimiterCore
from api_model_management.ratelimit._idle import MAX_CHECK_S

pytestmark = pytest.mark.unit

SETTINGS = RateLimitSettings(lease_requests=2, lease_tokens=100, lease_ttl_s=5.0, window_s=60.0)


def core(clock: ManualClock, rpm: int = 6) -> RateLimiterCore:
    return RateLimiterCore("m1", rpm, 10_000, clock=clock, settings=SETTINGS, provider="p1")


# -- the idle policy -------------------------------------------------------------------------------


def test_due_only_after_idle_s_without_a_decision_and_with_nothing_outstanding():
    clock = ManualClock()
    idle = IdleRetirement(10.0, clock)
    assert idle.enabled and not idle.due(outstanding=False)
    clock.advance(9.9)
    assert not idle.due(outstanding=False)
    clock.advance(0.1)
    assert idle.idle_for() == pytest.approx(10.0)
    assert idle.due(outstanding=False)
    assert not idle.due(outstanding=True)
    idle.touch()  # a decision: the idle time starts again
    assert idle.idle_for() == 0.0 and not idle.due(outstanding=False)


@pytest.mark.parametrize("never", [None, 0, 0.0])
def test_none_or_zero_never_retires(never):
    clock = ManualClock()
    idle = IdleRetirement(never, clock)
    clock.advance(1e9)
    assert not idle.enabled
    assert not idle.due(outstanding=False)
    assert idle.check_in_s() is None


@pytest.mark.parametrize("bad", [-1.0, "600", float("nan")])
def test_a_bad_idle_time_is_refused(bad):
    with pytest.raises(InvalidInput):
        IdleRetirement(bad, ManualClock())


def test_check_in_waits_for_the_rest_of_the_idle_time_capped():
    clock = ManualClock()
    idle = IdleRetirement(600.0, clock)
    assert idle.check_in_s() == MAX_CHECK_S
    clock.advance(590.0)
    assert idle.check_in_s() == pytest.approx(10.0)
    clock.advance(20.0)  # idle, but something outstanding kept it: look again soon
    assert idle.check_in_s() == pytest.approx(1.0)
    small = IdleRetirement(0.4, clock)
    clock.advance(1.0)
    assert small.check_in_s() == pytest.approx(0.1)


@given(st.floats(0.01, 1e5), st.lists(st.floats(0.0, 1e4), max_size=20))
def test_never_due_sooner_than_idle_s_after_the_last_touch(idle_s, steps):
    clock = ManualClock()
    idle = IdleRetirement(idle_s, clock)
    last = clock.monotonic()
    for i, step in enumerate(steps):
        clock.advance(step)
        if idle.due(outstanding=False):
            assert clock.monotonic() - last >= idle_s
        if i % 2:
            idle.touch()
            last = clock.monotonic()
        wait = idle.check_in_s()
        assert wait is not None and 0 < wait <= MAX_CHECK_S


# -- what is outstanding ---------------------------------------------------------------------------


def test_a_lease_is_outstanding_until_returned_or_expired():
    clock = ManualClock()
    c = core(clock)
    assert not c.outstanding()
    lease = c.lease("router-a", 2, 100)
    assert c.outstanding()
    c.return_lease(lease.lease_id, 1, 10)
    assert not c.outstanding()
    c.lease("router-b", 2, 100)
    clock.advance(SETTINGS.lease_ttl_s)
    assert not c.outstanding()  # expired: counted in full, nothing left to hand out


def test_a_pending_reservation_and_a_cool_down_are_outstanding():
    clock = ManualClock()
    c = core(clock)
    admission = c.reserve(10)
    assert c.outstanding()
    c.commit(admission.reservation_id, 12)
    assert not c.outstanding()
    c.cool_down(3.0)
    assert c.outstanding()
    clock.advance(3.0)
    assert not c.outstanding()


def test_the_window_replayed_after_a_retire_still_counts_what_was_admitted():
    """What a limiter started again after retiring sees: the fold of its journal's records."""
    clock = ManualClock()
    c = core(clock, rpm=6)
    lease = c.lease("router-a", 4, 400)
    c.return_lease(lease.lease_id, 3, 30)
    records = c.drain_records()
    clock.advance(10.0)  # idle; it retires with nothing outstanding
    assert not c.outstanding()
    back = RateLimiterCore.replay(records, "m1", 6, 10_000, settings=SETTINGS, clock=clock)
    assert back.status().requests_used == 3
    assert back.lease("router-b", 6, 600).requests == 3  # only what the window has left
    clock.advance(SETTINGS.window_s)
    assert back.status().requests_used == 3  # the first 3 slid out; the new lease counts


def test_settled_after_a_decision_and_a_quiet_moment_or_at_the_latest():
    """When a started limiter finds its subscribers: once it has answered a decision and had
    none for ``quiet_s`` (not before its first one), or ``latest_s`` after its start."""
    clock = ManualClock()
    idle = IdleRetirement(600.0, clock)
    clock.advance(1.0)
    assert not idle.settled(0.25, 2.0)  # quiet since the start, but nothing decided yet
    idle.touch()
    clock.advance(0.125)
    assert not idle.settled(0.25, 2.0)
    idle.touch()  # another decision: the quiet moment starts again
    clock.advance(0.125)
    assert not idle.settled(0.25, 2.0)
    clock.advance(0.125)
    assert idle.settled(0.25, 2.0)
    never_decided = IdleRetirement(None, clock)  # retirement off: it settles all the same
    clock.advance(1.875)
    assert not never_decided.settled(0.25, 2.0)
    clock.advance(0.125)
    assert never_decided.settled(0.25, 2.0)  # no decision within 2 s of the start
