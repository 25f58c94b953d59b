"""HealthCore under random probes, outcomes, outcome batches and clock moves: it follows its
rules (checked against a small reference model written from them), only takes legal transitions,
never opens on the rate below the degraded threshold, always opens on 100 % failures over enough
calls, and replaying its journal or its log events reproduces its state."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

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
CLOSED = ("unknown", "healthy", "degraded")
NEUTRAL = ("rate_limited", "invalid_request", "model_not_found")
IMMEDIATE = ("auth", "quota")
KINDS = st.sampled_from(
    [None, "timeout", "server_error", "auth", "quota", "rate_limited", "invalid_request",
     "model_not_found"]
)
MODELS = ("m1", "m2", "m3")
LATENCIES = st.sampled_from([0.0, 10.0, 1500.0])


@st.composite
def health_settings(draw) -> config.HealthSettings:
    failure_threshold = draw(st.integers(1, 6))
    half_open_max_calls = draw(st.integers(1, 4))
    return config.HealthSettings(
        interval_s=draw(st.integers(1, 30)),
        failure_threshold=failure_threshold,
        degraded_threshold=draw(st.integers(1, failure_threshold)),
        probe_failure_threshold=draw(st.integers(1, 4)),
        failure_rate_threshold=draw(st.sampled_from([0.25, 0.5, 0.75, 1.0])),
        degraded_rate_threshold=draw(st.sampled_from([0.05, 0.1, 0.2])),
        window_s=draw(st.integers(5, 60)),
        min_calls_in_window=draw(st.integers(1, 8)),
        open_s=draw(st.integers(1, 20)),
        half_open_max_calls=half_open_max_calls,
        recovery_probes=draw(st.integers(1, half_open_max_calls)),
    )


def kind_of(ok: bool, error_kind: str | None) -> str:
    if ok:
        return "success"
    return "neutral" if error_kind in NEUTRAL else "immediate" if error_kind in IMMEDIATE else "failure"


class Reference:
    """The rules, restated plainly: the calls since the breaker last opened or closed, filtered
    by time on demand."""

    def __init__(self, s: config.HealthSettings) -> None:
        self.s = s
        self.state = "unknown"
        self.opened = 0.0
        self.failures = self.successes = self.probe_failures = 0
        self.trials = self.trial_successes = 0
        self.calls: list[tuple[float, bool]] = []

    def advance(self, now: float) -> None:
        if self.state == "unhealthy" and now >= self.opened + self.s.open_s:
            self.state, self.successes, self.trials, self.trial_successes = "half_open", 0, 0, 0

    def probe(self, now: float, ok: bool, error_kind: str | None, latency_ms: float) -> None:
        self.advance(now)
        kind = kind_of(ok, error_kind)
        self.probe_failures += kind in ("failure", "immediate")
        self.count(kind)
        if self.state == "half_open":
            if now - latency_ms / 1000 >= self.opened + self.s.open_s:  # started since half-open
                self.trial(now, kind)
        elif self.state != "unhealthy":
            self.closed(now, kind)

    def outcome(self, now: float, ok: bool, error_kind: str | None) -> None:
        self.advance(now)
        kind = kind_of(ok, error_kind)
        self.count(kind)
        if self.state in CLOSED:
            self.closed(now, kind)

    def count(self, kind: str) -> None:
        if kind == "success":
            self.failures, self.successes, self.probe_failures = 0, self.successes + 1, 0
        elif kind != "neutral":
            self.failures, self.successes = self.failures + 1, 0

    def closed(self, now: float, kind: str) -> None:
        if kind == "neutral":
            return
        s = self.s
        self.calls.append((now, kind == "success"))
        recent = [ok for t, ok in self.calls if t > now - s.window_s]
        rate = recent.count(False) / len(recent)
        judged = len(recent) >= s.min_calls_in_window
        run = self.failures >= s.failure_threshold or self.probe_failures >= s.probe_failure_threshold
        if (kind == "immediate" or (judged and rate >= s.failure_rate_threshold)
                or (run and rate >= s.degraded_rate_threshold)):
            self.open(now)
        elif judged:
            self.state = "degraded" if rate >= s.degraded_rate_threshold else "healthy"
        elif kind == "success":
            self.state = "healthy"
        elif self.failures >= s.degraded_threshold:
            self.state = "degraded"

    def trial(self, now: float, kind: str) -> None:
        self.trials += 1
        self.trial_successes += kind == "success"
        if kind == "immediate":
            self.open(now)
        elif self.trial_successes >= self.s.recovery_probes:
            self.state, self.calls = "healthy", []
        elif self.trials - self.trial_successes > self.s.half_open_max_calls - self.s.recovery_probes:
            self.open(now)

    def open(self, now: float) -> None:
        self.state, self.opened, self.calls = "unhealthy", now, []


class HealthMachine(RuleBasedStateMachine):
    @initialize(s=health_settings())
    def setup(self, s: config.HealthSettings) -> None:
        self.s = s
        self.clock = ManualClock()
        self.core = HealthCore("p", s, clock=self.clock, models=MODELS)
        self.ref = Reference(s)
        self.log: list[events.Event] = []
        self.state = "unknown"
        self.closed_calls: list[tuple[float, bool]] = []

    @rule(ok=st.booleans(), kind=KINDS, listed=st.none() | st.sets(st.sampled_from(MODELS)),
          latency_ms=LATENCIES, times=st.sampled_from([1, 1, 1, 3]))
    def probe(self, ok, kind, listed, latency_ms, times):
        for _ in range(times):
            now, before = self.clock.monotonic(), self.core.state
            self.core.record_probe(ok, latency_ms, error_kind=kind,
                                   available_models=None if listed is None else sorted(listed))
            error_kind = None if ok else (kind or "probe_failed")
            self.ref.probe(now, ok, error_kind, latency_ms)
            self.check_rates(now, before, kind_of(ok, error_kind))
        self.collect()

    @rule(ok=st.booleans(), kind=KINDS, model_id=st.none() | st.sampled_from(MODELS))
    def outcome(self, ok, kind, model_id):
        self.one_outcome(ok, kind, model_id)
        self.collect()

    @rule(oks=st.lists(st.booleans(), min_size=1, max_size=30)
          | st.tuples(st.integers(0, 40), st.integers(0, 4)).map(lambda n: [True] * n[0] + [False] * n[1]),
          kind=st.sampled_from([None, "timeout", "server_error"]))
    def batch(self, oks, kind):
        """A router's batch: many outcomes at one moment (mixed, or a block of successes then a
        run of failures)."""
        for ok in oks:
            self.one_outcome(ok, kind, "m1")
        self.collect()

    def one_outcome(self, ok, kind, model_id) -> None:
        now, before = self.clock.monotonic(), self.core.state
        self.core.record_outcome(ok, kind, model_id)
        self.ref.outcome(now, ok, None if ok else kind)
        self.check_rates(now, before, kind_of(ok, None if ok else kind))
        at = self.clock.now()
        if ok:
            self.log.append(events.RequestCompleted(occurred_at=at, provider="p",
                                                    model_id=model_id, latency_ms=1.0))
        else:
            self.log.append(events.AttemptFailed(occurred_at=at, provider="p", model_id=model_id,
                                                 attempt=1, error_kind=kind or "failure",
                                                 transient=True))

    def check_rates(self, now: float, before: str, kind: str) -> None:
        """The rate rules, stated on the calls a closed breaker saw since it last closed (kept
        here, apart from the core and the reference)."""
        s = self.s
        if before in CLOSED and kind != "neutral":
            self.closed_calls.append((now, kind == "success"))
        after = self.core.state
        recent = [ok for t, ok in self.closed_calls if t > now - s.window_s]
        if before in CLOSED and kind not in ("neutral", "immediate") and recent:
            rate = recent.count(False) / len(recent)
            if rate < s.degraded_rate_threshold:
                assert after != "unhealthy", "opened below the degraded rate"
            if len(recent) >= s.min_calls_in_window and rate == 1.0:
                assert after == "unhealthy", "100 % failures over enough calls did not open"
        if after not in CLOSED:
            self.closed_calls = []

    @rule(seconds=st.integers(0, 25))
    def advance(self, seconds):
        self.clock.advance(seconds)
        self.core.tick()
        self.collect()

    @precondition(lambda self: self.ref.state == "unhealthy")
    @rule(extra_s=st.sampled_from([0, 1]))
    def to_half_open(self, extra_s):
        """To the half-open moment or just after it (where a slow probe started before it)."""
        self.advance(self.ref.opened + self.s.open_s + extra_s - self.clock.monotonic())

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
        assert self.core.allows_traffic() == (snap.state in CLOSED)  # half-open: probes only
        if snap.state == "half_open":
            assert snap.trial_successes < self.s.recovery_probes
            misses = snap.trial_calls - snap.trial_successes
            assert misses <= self.s.half_open_max_calls - self.s.recovery_probes
            assert snap.trial_calls < self.s.half_open_max_calls  # bounded trials
            assert snap.window_calls == 0
        if snap.state == "unhealthy":
            assert snap.window_calls == 0
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
