"""RateLimiter core and router-side LeaseHolder: every method, every bad input (no Ray)."""

from __future__ import annotations

import math
import pickle

import pytest

from api_model_management._clock import ManualClock
from api_model_management._request import RateLimitState
from api_model_management.config import RateLimitSettings
from api_model_management.errors import InvalidInput
from api_model_management.events import RateLimitHit
from api_model_management.ratelimit import LeaseHolder
from api_model_management.ratelimit._core import (
    Admission,
    Lease,
    RateLimiterCore,
    Restored,
)

pytestmark = pytest.mark.unit

SETTINGS = RateLimitSettings(lease_requests=2, lease_tokens=100, lease_ttl_s=5.0)


def make(rpm: int = 3, tpm: int = 300, **kwargs) -> tuple[RateLimiterCore, ManualClock]:
    clock = ManualClock()
    kwargs.setdefault("settings", SETTINGS)
    return RateLimiterCore("m1", rpm, tpm, clock=clock, provider="p1", **kwargs), clock


def kinds(core: RateLimiterCore) -> list[tuple[str, str]]:
    return [(e.kind, e.limit_type) for e in core.drain_events() if isinstance(e, RateLimitHit)]


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rpm", "tpm"), [(0, 10), (10, 0), (-1, 10), (10, -5), (True, 10), (1.5, 10), (10, "7")]
)
def test_limits_must_be_positive_integers(rpm, tpm):
    with pytest.raises(InvalidInput):
        RateLimiterCore("m", rpm, tpm, clock=ManualClock())


def test_zero_window_and_empty_model_refused():
    zero = RateLimitSettings.model_construct(**{**SETTINGS.model_dump(), "window_s": 0.0})
    with pytest.raises(InvalidInput):
        RateLimiterCore("m", 1, 1, settings=zero, clock=ManualClock())
    with pytest.raises(InvalidInput):
        RateLimiterCore("", 1, 1, clock=ManualClock())


# -- reserve / commit / release ------------------------------------------------------------------


def test_reserve_grants_up_to_rpm_then_says_when_to_retry():
    core, clock = make(rpm=3)
    granted = [core.reserve(10) for _ in range(3)]
    assert all(a.granted and a.reservation_id for a in granted)
    clock.advance(12.5)
    refused = core.reserve(10)
    assert refused == Admission(False, None, pytest.approx(47.5), "rpm")
    clock.advance(refused.retry_after_s)
    assert core.reserve(10).granted


def test_tpm_refusal_retry_is_exact_time_enough_tokens_slide_out():
    core, clock = make(rpm=100, tpm=100)
    core.reserve(40)  # t=0
    clock.advance(10)
    core.reserve(40)  # t=10
    clock.advance(5)
    refused = core.reserve(50)  # needs the first 40 gone (t=60) -> 45 s from t=15
    assert (refused.granted, refused.reason) == (False, "tpm")
    assert refused.retry_after_s == pytest.approx(45.0)
    clock.advance(44.9)
    assert not core.reserve(50).granted
    clock.advance(0.1)
    assert core.reserve(50).granted


def test_window_boundary_is_half_open():
    core, clock = make(rpm=1)
    assert core.reserve(1).granted
    clock.advance(59.999)
    assert not core.reserve(1).granted
    clock.advance(0.001)
    assert core.reserve(1).granted


def test_more_tokens_than_tpm_never_fits():
    core, _ = make(tpm=100)
    admission = core.reserve(101)
    assert (admission.granted, admission.reason) == (False, "never_fits")
    assert math.isinf(admission.retry_after_s)


@pytest.mark.parametrize("tokens", [-1, 1.5, float("nan"), True, None, "3"])
def test_reserve_bad_tokens_leave_state_untouched(tokens):
    core, _ = make()
    core.reserve(5)
    before = core.snapshot()
    with pytest.raises(InvalidInput):
        core.reserve(tokens)
    assert core.snapshot() == before


def test_commit_replaces_estimate_and_zero_still_counts_a_request():
    core, _ = make(rpm=5, tpm=300)
    first = core.reserve(200).reservation_id
    second = core.reserve(50).reservation_id
    core.commit(first, 20)
    core.commit(second, 0)  # sent and failed: RPM counts it, TPM does not
    status = core.status()
    assert (status.requests_used, status.tokens_used, status.pending_reservations) == (2, 20, 0)


def test_commit_above_estimate_records_the_truth_and_blocks():
    core, _ = make(rpm=5, tpm=100)
    rid = core.reserve(10).reservation_id
    core.commit(rid, 150)
    assert core.status().tokens_used == 150
    assert core.reserve(0).reason == "tpm"


def test_release_returns_capacity_at_once():
    core, _ = make(rpm=1)
    rid = core.reserve(10).reservation_id
    assert not core.reserve(10).granted
    core.release(rid)
    assert core.reserve(10).granted


@pytest.mark.parametrize("op", ["commit", "release"])
def test_unknown_or_settled_reservation_refused(op):
    core, _ = make()
    rid = core.reserve(1).reservation_id
    core.commit(rid, 1)
    before = core.snapshot()
    call = (lambda r: core.commit(r, 1)) if op == "commit" else core.release
    for bad in (rid, "nope", None, 42):
        with pytest.raises(InvalidInput):
            call(bad)
    assert core.snapshot() == before


@pytest.mark.parametrize("actual", [-1, float("nan"), 2.0])
def test_commit_bad_tokens(actual):
    core, _ = make()
    rid = core.reserve(1).reservation_id
    before = core.snapshot()
    with pytest.raises(InvalidInput):
        core.commit(rid, actual)
    assert core.snapshot() == before


def test_commit_after_the_window_slid_is_accepted_then_orphans_expire():
    core, clock = make(reservation_ttl_s=120.0)
    late = core.reserve(10).reservation_id
    orphan = core.reserve(10).reservation_id
    clock.advance(90)  # slid out of the window but still pending
    assert core.status().requests_used == 0
    core.commit(late, 5)
    clock.advance(31)  # past the orphan TTL
    with pytest.raises(InvalidInput):
        core.release(orphan)
    assert core.snapshot().entries == ()


# -- leases --------------------------------------------------------------------------------------


def test_lease_grants_what_fits_and_counts_until_expiry_plus_window():
    core, clock = make(rpm=3, tpm=300)
    core.reserve(250)
    lease = core.lease("router-1", requests=5, tokens=100)
    assert (lease.requests, lease.tokens) == (2, 50)
    assert lease.expires_at_monotonic == clock.monotonic() + SETTINGS.lease_ttl_s
    assert core.status().leased_requests == 2
    clock.advance(60)  # the reservation slid out; the lease (never returned) has not
    status = core.status()
    assert (status.requests_used, status.tokens_used, status.leased_requests) == (2, 50, 0)
    clock.advance(5)
    assert core.status().requests_used == 0


def test_lease_defaults_come_from_settings():
    core, _ = make(rpm=10, tpm=1000)
    lease = core.lease("r")
    assert (lease.requests, lease.tokens) == (SETTINGS.lease_requests, SETTINGS.lease_tokens)


def test_zero_lease_says_when_to_ask_again():
    core, clock = make(rpm=1)
    core.reserve(1)
    clock.advance(20)
    lease = core.lease("r", requests=1, tokens=1)
    assert lease.lease_id is None and (lease.requests, lease.tokens) == (0, 0)
    assert lease.retry_after_s == pytest.approx(40.0)
    assert ("exceeded", "rpm") in kinds(core)
    assert core.lease("r", requests=0, tokens=5).lease_id is None


def test_return_lease_frees_the_unused_part_and_keeps_the_used_part_counted():
    core, clock = make(rpm=4, tpm=400)
    lease = core.lease("r", requests=4, tokens=400)
    assert not core.reserve(1).granted
    clock.advance(2)
    core.return_lease(lease.lease_id, 1, 30)
    status = core.status()
    assert (status.requests_used, status.tokens_used, status.leased_requests) == (1, 30, 0)
    clock.advance(59.5)
    assert core.status().requests_used == 1  # used part counted until return time + window
    clock.advance(0.5)
    assert core.status().requests_used == 0


def test_late_return_after_expiry_shrinks_to_the_used_part():
    core, clock = make(rpm=4, tpm=400)
    lease = core.lease("r", requests=4, tokens=400)
    clock.advance(30)
    core.return_lease(lease.lease_id, 2, 10)
    assert (core.status().requests_used, core.status().tokens_used) == (2, 10)
    clock.advance(35)  # expiry (t=5) + window
    assert core.status().requests_used == 0


@pytest.mark.parametrize(
    ("lease_id", "used_requests", "used_tokens"),
    [("nope", 0, 0), (None, 0, 0), ("LEASE", 3, 0), ("LEASE", -1, 0), ("LEASE", 0, -1),
     ("LEASE", 0.5, 0)],
)
def test_return_lease_bad_input(lease_id, used_requests, used_tokens):
    core, _ = make(rpm=4, tpm=400)
    lease = core.lease("r", requests=2, tokens=100)
    before = core.snapshot()
    with pytest.raises(InvalidInput):
        core.return_lease(lease.lease_id if lease_id == "LEASE" else lease_id,
                          used_requests, used_tokens)
    assert core.snapshot() == before


def test_lease_cannot_be_returned_twice_or_as_a_reservation():
    core, _ = make(rpm=4, tpm=400)
    lease = core.lease("r", requests=2, tokens=100)
    core.return_lease(lease.lease_id, 0, 0)
    with pytest.raises(InvalidInput):
        core.return_lease(lease.lease_id, 0, 0)
    with pytest.raises(InvalidInput):
        core.commit(lease.lease_id, 0)


@pytest.mark.parametrize(("holder", "requests"), [("", 1), (None, 1), ("r", -1), ("r", 1.0)])
def test_lease_bad_input(holder, requests):
    core, _ = make()
    with pytest.raises(InvalidInput):
        core.lease(holder, requests=requests, tokens=1)


# -- LeaseHolder -----------------------------------------------------------------------------------


def test_lease_holder_consumes_locally_until_exhausted():
    clock = ManualClock()
    holder = LeaseHolder(Lease("l1", "m", 2, 100, clock.monotonic() + 5), clock)
    assert holder.try_take(60)
    assert not holder.try_take(50)  # tokens exhausted, nothing taken
    assert holder.try_take(40)
    assert not holder.try_take(0)  # requests exhausted
    assert holder.usage() == (2, 100)


def test_lease_holder_adjust_and_untake():
    clock = ManualClock()
    holder = LeaseHolder(Lease("l1", "m", 3, 100, clock.monotonic() + 5), clock)
    holder.try_take(80)
    holder.adjust(80, 30)
    assert holder.remaining() == (2, 70)
    holder.try_take(20)
    holder.untake(20)
    assert holder.usage() == (1, 30)
    with pytest.raises(InvalidInput):
        holder.adjust(31, 0)
    with pytest.raises(InvalidInput):
        holder.untake(31)
    with pytest.raises(InvalidInput):
        holder.try_take(-1)


def test_lease_holder_stops_at_expiry_minus_margin():
    clock = ManualClock()
    holder = LeaseHolder(Lease("l1", "m", 5, 100, clock.monotonic() + 5), clock,
                         safety_margin_s=1.0)
    clock.advance(3.9)
    assert holder.try_take(1)
    clock.advance(0.1)
    assert holder.expired() and not holder.try_take(1)
    assert LeaseHolder(Lease(None, "m", 0, 0, clock.monotonic() + 9), clock).expired()



class _HostClock(ManualClock):
    """A manual clock that says which host's monotonic clock it is."""

    def __init__(self, domain: str, monotonic_start: float) -> None:
        super().__init__(monotonic_start=monotonic_start)
        self.domain = domain


def test_a_lease_from_another_host_counts_its_ttl_from_receipt():
    granter, holder_clock = _HostClock("host-a", 50_000.0), _HostClock("host-b", 7.0)
    core = RateLimiterCore("m", 100, 10_000, settings=RateLimitSettings(lease_ttl_s=10.0), clock=granter)
    lease = core.lease("router-1", 5, 500)
    assert lease.clock_domain == "host-a" and lease.ttl_s == 10.0
    holder = LeaseHolder(lease, holder_clock, safety_margin_s=0.5)  # 50,010 means nothing on host b
    assert holder.try_take(1)
    holder_clock.advance(9.4)
    assert holder.try_take(1)
    holder_clock.advance(0.1)
    assert holder.expired()
    same_host = LeaseHolder(lease, _HostClock("host-a", 50_009.6), safety_margin_s=0.5)
    assert same_host.expired()  # the same clock: the granter's deadline itself

# -- cool-down and provider feedback ---------------------------------------------------------------


def test_cool_down_refuses_reservations_and_leases_until_it_ends():
    core, clock = make(rpm=10)
    core.cool_down(7.5)
    assert kinds(core) == [("provider_429", "rpm")]
    refused = core.reserve(1)
    assert (refused.reason, refused.retry_after_s) == ("cooling_down", 7.5)
    assert core.lease("r").lease_id is None
    assert core.is_limited()
    assert core.status().cooling_until_monotonic == clock.monotonic() + 7.5
    assert core.status().cooling_for_s == 7.5
    core.cool_down(2.0)  # a shorter cool-down does not shorten the current one
    clock.advance(3.0)
    assert core.status().cooling_for_s == 4.5
    clock.advance(4.5)
    assert core.reserve(1).granted and not core.is_limited()
    assert core.status().cooling_until_monotonic is None
    assert core.status().cooling_for_s is None


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), "3", None])
def test_cool_down_bad_input(seconds):
    core, _ = make()
    before = core.snapshot()
    with pytest.raises(InvalidInput):
        core.cool_down(seconds)
    assert core.snapshot() == before and core.drain_events() == []


def test_observe_tightens_when_the_provider_has_less_left():
    core, clock = make(rpm=10, tpm=1000)
    core.reserve(100)
    core.observe(RateLimitState(remaining_requests=4, reset_requests_s=20.0,
                                remaining_tokens=950, reset_tokens_s=30.0))
    status = core.status()
    assert (status.requests_used, status.tokens_used) == (6, 100)  # tokens: we had less left
    clock.advance(20)
    assert core.status().requests_used == 1


def test_observe_remaining_zero_cools_until_reset_and_retry_after_cools():
    core, clock = make(rpm=10)
    core.observe(RateLimitState(remaining_requests=0, reset_requests_s=12.0))
    assert core.reserve(1).reason == "cooling_down"
    clock.advance(12)
    assert core.reserve(1).granted
    core.observe(RateLimitState(retry_after_s=3.0))
    assert core.reserve(1).retry_after_s == 3.0
    assert ("provider_429", "rpm") in kinds(core)


def test_observe_ignores_a_looser_provider_view():
    core, _ = make(rpm=10)
    core.reserve(1)
    before = core.snapshot()
    core.observe(RateLimitState(remaining_requests=9, remaining_tokens=299))
    assert core.snapshot() == before


@pytest.mark.parametrize(
    "state",
    [RateLimitState(remaining_requests=-1), RateLimitState(reset_tokens_s=float("nan")),
     RateLimitState(retry_after_s=-2.0), {"remaining_requests": 1}],
)
def test_observe_bad_input(state):
    core, _ = make()
    before = core.snapshot()
    with pytest.raises(InvalidInput):
        core.observe(state)
    assert core.snapshot() == before


# -- signals, status, replay -----------------------------------------------------------------------


def test_approaching_is_emitted_once_per_crossing():
    core, clock = make(rpm=5, tpm=10_000)  # 80% of 5 = 4 requests
    for _ in range(3):
        core.reserve(1)
    assert kinds(core) == []
    core.reserve(1)
    core.reserve(1)
    assert kinds(core) == [("approaching", "rpm")]
    clock.advance(60)
    core.reserve(1)  # below the threshold again: re-armed
    assert kinds(core) == []
    for _ in range(3):
        core.reserve(1)
    events = [e for e in core.drain_events() if e.kind == "approaching"]
    assert len(events) == 1 and (events[0].used, events[0].limit) == (4, 5)
    assert events[0].model_id == "m1" and events[0].provider == "p1"


def test_refusal_emits_exceeded_with_retry_after():
    core, _ = make(rpm=100, tpm=10)
    core.reserve(10)
    core.drain_events()
    core.reserve(5)
    (event,) = core.drain_events()
    assert (event.kind, event.limit_type, event.used, event.limit) == ("exceeded", "tpm", 10, 10)
    assert event.retry_after_s == pytest.approx(60.0)


def test_status_reports_window_usage():
    core, _ = make(rpm=10, tpm=1000)
    core.reserve(100)
    core.lease("r", requests=2, tokens=200)
    status = core.status()
    assert (status.requests_used, status.tokens_used) == (3, 300)
    assert (status.leased_requests, status.leased_tokens, status.pending_reservations) == (2, 200, 1)
    assert (status.requests_limit, status.tokens_limit, status.window_s) == (10, 1000, 60.0)
    assert not status.approaching_rpm and not core.is_limited()


def test_replay_of_history_rebuilds_an_equal_snapshot():
    core, clock = make(rpm=5, tpm=500)
    a = core.reserve(50).reservation_id
    lease = core.lease("r", requests=2, tokens=100)
    clock.advance(3)
    core.commit(a, 20)
    b = core.reserve(10).reservation_id
    core.release(b)
    core.return_lease(lease.lease_id, 1, 40)
    core.observe(RateLimitState(remaining_requests=1, reset_requests_s=10.0))
    core.cool_down(4.0)
    clock.advance(30)
    replayed = RateLimiterCore.replay(core.history(), "m1", 5, 500, settings=SETTINGS,
                                      clock=clock, provider="p1")
    assert replayed.snapshot() == core.snapshot()
    assert replayed.drain_events() == []
    assert pickle.loads(pickle.dumps(core.history())) == core.history()


def test_history_compacts_into_a_checkpoint_that_still_replays():
    core, clock = make(rpm=1000, tpm=100_000, max_history=5)
    for _ in range(12):
        core.commit(core.reserve(10).reservation_id, 5)
        clock.advance(1)
    history = core.history()
    assert isinstance(history[0], Restored) and len(history) <= 6
    replayed = RateLimiterCore.replay(history, "m1", 1000, 100_000, settings=SETTINGS,
                                      clock=clock, provider="p1")
    assert replayed.snapshot() == core.snapshot()
    assert replayed.status() == core.status()


def test_a_core_nobody_journals_keeps_no_records_and_counts_the_same():
    """The standalone gateway's and the facades' cores are not journaled: their records must not
    pile up (one per decision for the life of the process), and admission is unchanged."""
    kept = RateLimiterCore("m", 3, 10_000, clock=ManualClock())
    unkept = RateLimiterCore("m", 3, 10_000, clock=ManualClock(), journaled=False)
    for core in (kept, unkept):
        granted = [core.reserve(10).granted for _ in range(4)]
        assert granted == [True, True, True, False]
    assert len(kept.drain_records()) >= 3
    assert unkept.drain_records() == []
    assert kept.headroom() == unkept.headroom()
