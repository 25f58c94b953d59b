"""Hypothesis state machine over the RateLimiter core and router-side LeaseHolders.

An independent model keeps every request actually sent (by reservation or through a lease) with
its timestamp and checks every 60-s window against RPM and TPM, under any interleaving of reserve,
commit, release, lease, local takes, return_lease, cool_down, observe and the passing of time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
)

from api_model_management._clock import ManualClock
from api_model_management._request import RateLimitState
from api_model_management.config import RateLimitSettings
from api_model_management.errors import InvalidInput
from api_model_management.events import RateLimitHit
from api_model_management.ratelimit import LeaseHolder
from api_model_management.ratelimit._core import RateLimiterCore

pytestmark = pytest.mark.property

RPM, TPM, WINDOW_S = 6, 300, 60.0
SETTINGS = RateLimitSettings(window_s=WINDOW_S, lease_ttl_s=5.0, approaching_threshold=0.8)
STEPS_S = st.sampled_from([0.0, 0.25, 1.0, 2.5, 4.99, 5.0, 10.0, 30.0, 58.5, 59.75, 60.0, 61.0])


@dataclass
class Use:
    """One request that reached (or may have reached) the provider."""

    at: float
    tokens: int


@dataclass
class Held:
    holder: LeaseHolder
    uses: list[Use] = field(default_factory=list)


class RateLimiterMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.core = RateLimiterCore("m", RPM, TPM, settings=SETTINGS, clock=self.clock)
        self.uses: list[Use] = []  # every request sent, never forgotten
        self.cooling_until = float("-inf")

    # -- direct admission ------------------------------------------------------------------
    @rule(target=reservations, tokens=st.integers(0, 120))
    def reserve(self, tokens):
        admission = self.core.reserve(tokens)
        if not admission.granted:
            assert admission.retry_after_s > 0
            return multiple()
        assert self.clock.monotonic() >= self.cooling_until
        use = Use(self.clock.monotonic(), tokens)
        self.uses.append(use)
        return (admission.reservation_id, use)

    @rule(tokens=st.integers(0, 60), count=st.integers(1, RPM))
    def fill(self, tokens, count):
        """Reserve and commit up to ``count`` requests, stopping at the first refusal."""
        for _ in range(count):
            admission = self.core.reserve(tokens)
            if not admission.granted:
                break
            assert self.clock.monotonic() >= self.cooling_until
            self.uses.append(Use(self.clock.monotonic(), tokens))
            self.core.commit(admission.reservation_id, tokens)

    @rule(held=leases)
    def drain_lease(self, held):
        """Use a lease until it is exhausted (one token per request)."""
        while held.holder.try_take(1):
            use = Use(self.clock.monotonic(), 1)
            held.uses.append(use)
            self.uses.append(use)

    @rule(held=consumes(reservations), data=st.data())
    def commit(self, held, data):
        rid, use = held
        actual = data.draw(st.integers(0, use.tokens), label="actual_tokens")
        self.core.commit(rid, actual)
        use.tokens = actual

    @rule(held=consumes(reservations))
    def release(self, held):
        rid, use = held
        self.core.release(rid)
        self.uses.remove(use)  # not sent

    # -- leases ------------------------------------------------------------------------------
    @rule(target=leases, requests=st.integers(1, 4), tokens=st.integers(10, 200))
    def lease(self, requests, tokens):
        lease = self.core.lease("router", requests, tokens)
        assert lease.requests <= requests and lease.tokens <= tokens
        if lease.lease_id is None:
            return multiple()
        assert self.clock.monotonic() >= self.cooling_until
        return Held(LeaseHolder(lease, self.clock))

    @rule(held=leases, data=st.data(), wait_s=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    def take(self, held, data, wait_s):
        """After ``wait_s``, admit one request locally against a lease."""
        self.clock.advance(wait_s)
        left = max(held.holder.remaining()[1], 0)
        tokens = data.draw(st.integers(0, left + 5), label="tokens")
        if held.holder.try_take(tokens):
            use = Use(self.clock.monotonic(), tokens)
            held.uses.append(use)
            self.uses.append(use)

    @rule(held=leases)
    def untake(self, held):
        if not held.uses:
            return
        use = held.uses.pop()
        held.holder.untake(use.tokens)
        self.uses.remove(use)

    @rule(held=consumes(leases))
    def return_lease(self, held):
        lease = held.holder.lease
        if self.clock.monotonic() >= lease.expires_at_monotonic + WINDOW_S:
            with pytest.raises(InvalidInput):  # forgotten once it slid out of the window
                self.core.return_lease(lease.lease_id, *held.holder.usage())
            return
        self.core.return_lease(lease.lease_id, *held.holder.usage())

    # -- provider feedback and time ----------------------------------------------------------
    @rule(retry_after_s=st.sampled_from([0.0, 0.5, 3.0, 20.0]))
    def cool_down(self, retry_after_s):
        self.core.cool_down(retry_after_s)
        self.cooling_until = max(self.cooling_until, self.clock.monotonic() + retry_after_s)

    @rule(
        remaining_requests=st.none() | st.integers(1, RPM + 2),
        remaining_tokens=st.none() | st.integers(1, TPM + 50),
        reset_s=st.none() | st.sampled_from([0.0, 1.0, 15.0]),
    )
    def observe(self, remaining_requests, remaining_tokens, reset_s):
        self.core.observe(RateLimitState(
            remaining_requests=remaining_requests, reset_requests_s=reset_s,
            remaining_tokens=remaining_tokens, reset_tokens_s=reset_s,
        ))
        for remaining in (remaining_requests, remaining_tokens):
            if remaining == 0 and reset_s is not None:
                self.cooling_until = max(self.cooling_until, self.clock.monotonic() + reset_s)

    @rule(seconds=STEPS_S)
    def advance(self, seconds):
        self.clock.advance(seconds)

    @rule(tokens=st.integers(0, 120))
    def retry_after_is_honest(self, tokens):
        """Refused for RPM/TPM: after ``retry_after_s`` (and no other grant) it is admitted."""
        admission = self.core.reserve(tokens)
        if not admission.granted and admission.reason in ("rpm", "tpm"):
            self.clock.advance(admission.retry_after_s)
            admission = self.core.reserve(tokens)
            assert admission.granted, admission
        if admission.granted:
            self.uses.append(Use(self.clock.monotonic(), tokens))
            self.core.release(admission.reservation_id)
            self.uses.pop()

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def no_window_exceeds_the_limits(self):
        uses = sorted(self.uses, key=lambda u: u.at)
        for i, first in enumerate(uses):
            in_window = [u for u in uses[i:] if u.at < first.at + WINDOW_S]
            assert len(in_window) <= RPM, f"{len(in_window)} requests in a window"
            assert sum(u.tokens for u in in_window) <= TPM

    @invariant()
    def core_keeps_counting_every_use_until_it_slides_out(self):
        """At now and at every later time T (with no further calls), the core's counted usage
        covers every request sent in (T - window_s, T]. Checked where the counted usage drops
        (at each entry's ``until``), the only places it can fall below what is needed."""
        now = self.clock.monotonic()
        counted = [e for e in self.core.snapshot().entries if e.counted and e.until > now]
        for t in [now, *(e.until for e in counted)]:
            still = [e for e in counted if e.until > t]
            recent = [u for u in self.uses if u.at + WINDOW_S > t]
            assert sum(e.requests for e in still) >= len(recent), t - now
            assert sum(e.tokens for e in still) >= sum(u.tokens for u in recent), t - now

    @invariant()
    def counted_usage_within_limits(self):
        status = self.core.status()
        assert 0 <= status.requests_used <= RPM and 0 <= status.tokens_used <= TPM

    @invariant()
    def replay_reproduces_the_state(self):
        replayed = RateLimiterCore.replay(self.core.history(), "m", RPM, TPM, settings=SETTINGS,
                                          clock=self.clock)
        assert replayed.snapshot() == self.core.snapshot()

    @invariant()
    def approaching_emitted_once_per_crossing(self):
        for event in self.core.drain_events():
            assert isinstance(event, RateLimitHit)
            if event.kind == "approaching":
                assert event.used >= SETTINGS.approaching_threshold * event.limit


RateLimiterMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRateLimiterMachine = RateLimiterMachine.TestCase


@settings(max_examples=100, deadline=None)
@given(
    limit_type=st.sampled_from(["rpm", "tpm"]),
    steps=st.lists(st.tuples(st.integers(0, 40), STEPS_S), min_size=1, max_size=30),
)
def test_approaching_emitted_once_per_crossing(limit_type, steps):
    """Approaching events for one limit type come one per crossing: the decision records of the
    flag alternate on/off, and there is exactly one event per switch on."""
    clock = ManualClock()
    rpm, tpm = (5, 10_000) if limit_type == "rpm" else (1000, 100)
    core = RateLimiterCore("m", rpm, tpm, settings=SETTINGS, clock=clock)
    for tokens, seconds in steps:
        core.reserve(tokens)
        clock.advance(seconds)
    flags = [r.on for r in core.history() if getattr(r, "limit_type", None) == limit_type]
    assert all(a != b for a, b in zip(flags, flags[1:], strict=False))
    assert not flags or flags[0]
    events = [e for e in core.drain_events() if e.kind == "approaching"
              and e.limit_type == limit_type]
    assert len(events) == sum(flags)
