"""HealthCore under random probes, outcomes and clock moves: it follows its thresholds (checked
against a small reference model written from the rules), only takes legal transitions, and
replaying its journal or its log events reproduces its state."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from api_model_management import config, events
from api_model_management._clock import ManualClock
from api_model_management.health._core import HealthCore

pytestmark = pytest.mark.property

LEGAL = {
    "unknown": {"healthy", "degraded", "unhealthy"},
    "healthy": {"degraded", "unhealthy"},
    "degraded": {"healthy", "unhealthy"},
    "unhealthy": {"half_open"},
    "half_open": {"healthy", "unhealthy"},
}
KINDS = st.sampled_from(
    [None, "timeout", "server_error", "auth", "quota", "rate_limited", "invalid_request",
     "model_not_found"]
)
MODELS = ("m1", "m2", "m3")


@st.composite
def health_settings(draw) -> config.HealthSettings:
    failure_threshold = draw(st.integers(1, 4))
    return config.HealthSettings(
        interval_s=draw(st.integers(1, 30)),
        failure_threshold=failure_threshold,
        degraded_threshold=draw(st.integers(1, failure_threshold)),
        failure_rate_threshold=draw(st.sampled_from([0.25, 0.5, 0.75, 1.0])),
        window_s=draw(st.integers(5, 60)),
        min_calls_in_window=draw(st.integers(1, 6)),
        open_s=draw(st.integers(1, 20)),
        recovery_probes=draw(st.integers(1, 3)),
    )


class Reference:
    """The rules, restated plainly: full call history, filtered by time on demand."""

    def __init__(self, s: config.HealthSettings) -> None:
        self.s = s
        self.state = "unknown"
        self.opened = 0.0
        self.failures = 0
        self.successes = 0
        self.calls: list[tuple[float, bool]] = []

    def advance(self, now: float) -> None:
        if self.state == "unhealthy" and now - self.opened >= self.s.open_s:
            self.state, self.successes = "half_open", 0

    def signal(self, now: float, ok: bool, kind: str | None) -> None:
        self.advance(now)
        if not ok and kind in ("rate_limited", "invalid_request", "model_not_found"):
            return
        self.calls.append((now, ok))
        if ok:
            self.failures, self.successes = 0, self.successes + 1
            if self.state in ("unknown", "degraded"):
                self.state = "healthy"
            elif self.state == "half_open" and self.successes >= self.s.recovery_probes:
                self.state = "healthy"
            return
        self.failures, self.successes = self.failures + 1, 0
        if self.state == "unhealthy":
            return
        recent = [c for t, c in self.calls if t > now - self.s.window_s]
        rate_trip = (len(recent) >= self.s.min_calls_in_window
                     and recent.count(False) / len(recent) >= self.s.failure_rate_threshold)
        if (kind in ("auth", "quota") or self.state == "half_open"
                or self.failures >= self.s.failure_threshold or rate_trip):
            self.state, self.opened, self.calls = "unhealthy", now, []
        elif self.failures >= self.s.degraded_threshold:
            self.state = "degraded"


class HealthMachine(RuleBasedStateMachine):
    @initialize(s=health_settings())
    def setup(self, s: config.HealthSettings) -> None:
        self.s = s
        self.clock = ManualClock()
        self.core = HealthCore("p", s, clock=self.clock, models=MODELS)
        self.ref = Reference(s)
        self.log: list[events.Event] = []
        self.state = "unknown"

    @rule(ok=st.booleans(), kind=KINDS, listed=st.none() | st.sets(st.sampled_from(MODELS)))
    def probe(self, ok, kind, listed):
        self.core.record_probe(ok, 10.0, error_kind=kind,
                               available_models=None if listed is None else sorted(listed))
        self.ref.signal(self.clock.monotonic(), ok, None if ok else (kind or "probe_failed"))
        self.collect()

    @rule(ok=st.booleans(), kind=KINDS, model_id=st.none() | st.sampled_from(MODELS))
    def outcome(self, ok, kind, model_id):
        self.core.record_outcome(ok, kind, model_id)
        self.ref.signal(self.clock.monotonic(), ok, None if ok else kind)
        at = self.clock.now()
        if ok:
            self.log.append(events.RequestCompleted(occurred_at=at, provider="p",
                                                    model_id=model_id, latency_ms=1.0))
        else:
            self.log.append(events.AttemptFailed(occurred_at=at, provider="p", model_id=model_id,
                                                 attempt=1, error_kind=kind or "failure",
                                                 transient=True))
        self.collect()

    @rule(seconds=st.integers(0, 25))
    def advance(self, seconds):
        self.clock.advance(seconds)
        self.core.tick()
        self.collect()

    def collect(self) -> None:
        """Drain the core's events: transitions must be legal and chained; probes go to the log."""
        for event in self.core.drain_events():
            if isinstance(event, events.HealthChecked):
                self.log.append(event)
            elif event.model_id is None:
                assert event.from_state == self.state
                assert event.to_state in LEGAL[event.from_state]
                self.state = event.to_state

    @invariant()
    def follows_the_rules(self):
        snap = self.core.snapshot()
        self.ref.advance(self.clock.monotonic())
        assert snap.state == self.ref.state
        assert self.core.allows_traffic() == (snap.state != "unhealthy")
        if snap.state == "healthy":
            assert snap.consecutive_failures < self.s.degraded_threshold
        if snap.state == "degraded":
            assert self.s.degraded_threshold <= snap.consecutive_failures
            assert snap.consecutive_failures < self.s.failure_threshold
        if snap.state == "half_open":
            assert snap.consecutive_successes < self.s.recovery_probes
        assert set(snap.unavailable_models) <= set(MODELS)

    @invariant()
    def transitions_chain_to_the_state(self):
        self.collect()
        assert self.state == self.core.snapshot().state

    @invariant()
    def replay_reproduces_the_state(self):
        snap = self.core.snapshot()
        from_journal = HealthCore.replay("p", self.s, self.core.journal, clock=self.clock,
                                         models=MODELS)
        assert from_journal.snapshot() == snap
        ordered = sorted(self.log, key=lambda e: e.occurred_at)  # stable: same-time order kept
        from_log = HealthCore.replay("p", self.s, ordered, clock=self.clock, models=MODELS)
        assert from_log.snapshot() == snap


HealthMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHealthMachine = HealthMachine.TestCase
