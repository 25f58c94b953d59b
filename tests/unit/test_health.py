"""HealthCore: the breaker's rules one by one, events, subscribers, replay, bad input."""

from __future__ import annotations

import math
import pickle
import random
from datetime import timedelta

import pytest

from api_model_management import config, events
from api_model_management._clock import ManualClock
from api_model_management.config._load import demo_config
from api_model_management.errors import InvalidInput
from api_model_management.health._core import HealthCore, HealthSnapshot, OutcomeRecord

pytestmark = pytest.mark.unit

SETTINGS = config.HealthSettings(
    interval_s=30, failure_threshold=3, degraded_threshold=1, failure_rate_threshold=0.5,
    degraded_rate_threshold=0.2, window_s=60, min_calls_in_window=4, probe_failure_threshold=3,
    open_s=15, half_open_max_calls=3, recovery_probes=2,
)


def make(settings: config.HealthSettings = SETTINGS, models=("m1", "m2")):
    clock = ManualClock()
    return HealthCore("openai", settings, clock=clock, models=list(models)), clock


def transitions(core: HealthCore) -> list[tuple[str, str, str | None]]:
    return [
        (e.from_state, e.to_state, e.model_id)
        for e in core.drain_events()
        if isinstance(e, events.HealthChanged)
    ]


def test_starts_unknown_allows_traffic_and_wants_a_probe():
    core, _ = make()
    snap = core.snapshot()
    assert snap.state == "unknown" and snap.since is None
    assert core.allows_traffic()
    assert core.due_for_probe()
    assert core.drain_events() == []


def test_success_makes_healthy():
    core, _ = make()
    core.record_outcome(True)
    assert core.state == "healthy"
    assert transitions(core) == [("unknown", "healthy", None)]


def test_with_few_calls_a_failure_degrades_and_a_success_restores():
    core, _ = make()
    core.record_outcome(True)
    core.record_outcome(False, "timeout")
    assert core.state == "degraded" and core.allows_traffic()
    core.record_outcome(True)
    snap = core.snapshot()
    assert snap.state == "healthy" and snap.window_calls == 3  # below min_calls_in_window (4)
    assert transitions(core) == [
        ("unknown", "healthy", None), ("healthy", "degraded", None), ("degraded", "healthy", None)
    ]


def test_with_enough_calls_the_window_rate_decides_healthy_or_degraded():
    core, _ = make()
    for ok in (True, True, True, False):  # 1 of 4 failed: 0.25 >= degraded_rate_threshold 0.2
        core.record_outcome(ok, None if ok else "timeout")
    assert core.state == "degraded"
    core.record_outcome(True)  # a success, but 1 of 5 still failed: rates, not the last call, decide
    assert core.snapshot().state == "degraded"
    core.record_outcome(True)  # 1 of 6 = 0.17
    snap = core.snapshot()
    assert snap.state == "healthy" and snap.reason == "failure rate 0.17 over 6 calls"


def test_a_run_of_failures_opens_only_when_the_window_rate_agrees():
    core, _ = make()
    for _ in range(7):
        core.record_outcome(True)
    for _ in range(3):  # 3 of 10 failed: 0.30 >= 0.2, and a run of failure_threshold (3)
        core.record_outcome(False, "server_error")
    snap = core.snapshot()
    assert snap.state == "unhealthy"
    assert snap.reason == "3 consecutive failures (failure rate 0.30 over 10 calls)"

    busy, _ = make()
    for _ in range(20):
        busy.record_outcome(True)
    for _ in range(3):  # the same run among 20 successes: 3 of 23 = 0.13 < 0.2, a blip
        busy.record_outcome(False, "server_error")
    assert busy.snapshot().state == "healthy"


def test_failed_probes_in_a_row_open_when_the_window_agrees():
    settings = SETTINGS.model_copy(update={"min_calls_in_window": 10, "failure_threshold": 5})
    core, _ = make(settings)  # a provider that only the checker calls
    core.record_probe(True, 10.0)
    core.record_probe(False, 10.0, error_kind="connection")
    core.record_probe(False, 10.0, error_kind="connection")
    core.record_outcome(True)  # the provider answers a call: the probe run starts again
    core.record_probe(False, 10.0, error_kind="connection")
    core.record_probe(False, 10.0, error_kind="connection")
    assert core.state == "degraded" and core.snapshot().consecutive_probe_failures == 2
    core.record_probe(False, 10.0, error_kind="connection")
    snap = core.snapshot()
    assert snap.state == "unhealthy"
    assert snap.reason == "3 consecutive failed probes (failure rate 0.71 over 7 calls)"

    busy, _ = make(settings)  # calls succeed, only the probe endpoint fails: 3 of 33, a blip
    for _ in range(30):
        busy.record_outcome(True)
    for _ in range(3):
        busy.record_probe(False, 10.0, error_kind="connection")
    assert busy.snapshot().state == "healthy"


def test_degraded_threshold_above_one_waits():
    settings = SETTINGS.model_copy(update={"degraded_threshold": 2, "failure_threshold": 4})
    core, _ = make(settings)
    core.record_outcome(True)
    core.record_outcome(False, "timeout")
    assert core.state == "healthy"
    core.record_outcome(False, "timeout")
    assert core.state == "degraded"


def test_failure_rate_over_window_opens_the_breaker():
    core, _ = make()
    # alternate: never 3 consecutive failures, but 2 of 4 calls failed (rate 0.5, min 4 calls)
    core.record_outcome(True)
    core.record_outcome(False, "timeout")
    core.record_outcome(True)
    assert core.state == "healthy"
    core.record_outcome(False, "timeout")
    snap = core.snapshot()
    assert snap.state == "unhealthy"
    assert "failure rate 0.50 over 4 calls" in snap.reason


def test_old_calls_leave_the_window():
    core, clock = make()
    core.record_outcome(True)
    core.record_outcome(False, "timeout")
    core.record_outcome(True)
    clock.advance(61)
    assert core.snapshot().window_calls == 0
    core.record_outcome(False, "timeout")
    assert core.state == "degraded"  # only 1 call in the window now


def test_the_window_excludes_calls_exactly_window_s_old():
    settings = SETTINGS.model_copy(update={"min_calls_in_window": 2, "failure_threshold": 3})
    core, clock = make(settings)
    core.record_outcome(True)
    core.record_outcome(True)
    clock.advance(60)  # the first two calls are now exactly window_s old: out
    core.record_outcome(False, "timeout")
    snap = core.snapshot()
    assert snap.state == "degraded" and snap.window_calls == 1
    core.record_outcome(False, "timeout")  # 2 of 2 in the window failed
    assert core.state == "unhealthy"


def test_half_open_after_open_s_with_exact_since():
    core, clock = make()
    for _ in range(3):
        core.record_outcome(False, "timeout")
    opened_at = core.snapshot().since
    clock.advance(14.9)
    assert core.state == "unhealthy" and not core.allows_traffic()
    clock.advance(30)  # looked at late: since is still opened_at + open_s
    snap = core.snapshot()
    assert snap.state == "half_open" and not core.allows_traffic()  # trials are probes only
    assert snap.since == opened_at + timedelta(seconds=15)


def test_half_open_closes_when_recovery_probes_trials_succeeded():
    core, clock = make()
    core.record_outcome(False, "auth")
    clock.advance(15)
    assert core.state == "half_open" and core.due_for_probe() and core.probe_delay_s() == 0.0
    core.record_probe(True, 0.0)
    core.record_outcome(True)  # a router's outcome is not a trial
    snap = core.snapshot()
    assert snap.state == "half_open" and (snap.trial_calls, snap.trial_successes) == (1, 1)
    core.record_probe(True, 0.0)
    snap = core.snapshot()
    assert snap.state == "healthy" and snap.reason == "2 of 2 trial(s) succeeded"
    assert snap.window_calls == 0  # closed with an empty window
    assert transitions(core)[-2:] == [("unhealthy", "half_open", None), ("half_open", "healthy", None)]


def test_half_open_reopens_once_the_trials_can_no_longer_recover():
    core, clock = make()  # 3 trials, 2 successes needed: the second miss re-opens
    core.record_outcome(False, "auth")
    clock.advance(15)
    core.record_probe(True, 0.0)
    core.record_probe(False, 0.0, http_status=503, error_kind="overloaded")
    assert core.state == "half_open"  # one failed trial of three: recovery still possible
    core.record_probe(False, 0.0, http_status=503, error_kind="overloaded")
    snap = core.snapshot()
    assert snap.state == "unhealthy" and snap.reason == "2 of 3 trial(s) failed"
    clock.advance(14)
    assert core.state == "unhealthy"  # the timer restarted at the failure
    clock.advance(1)
    assert core.state == "half_open" and core.snapshot().trial_calls == 0


def test_trials_are_bounded_and_unanswered_ones_count_as_misses():
    core, clock = make()
    core.record_outcome(False, "auth")
    clock.advance(15)
    probes = 0
    while core.state == "half_open":
        assert core.due_for_probe()
        core.record_probe(False, 0.0, http_status=429, error_kind="rate_limited")  # neutral
        probes += 1
    assert probes == 2 <= SETTINGS.half_open_max_calls and core.state == "unhealthy"
    assert not core.due_for_probe()
    assert core.probe_delay_s() == pytest.approx(15.0)  # next: the half-open moment


def test_an_auth_failure_in_a_trial_reopens_at_once():
    core, clock = make()
    core.record_outcome(False, "quota")
    clock.advance(15)
    core.record_probe(False, 0.0, http_status=401, error_kind="auth")
    snap = core.snapshot()
    assert snap.state == "unhealthy" and snap.reason == "trial failed (auth)"


def test_late_outcomes_while_half_open_decide_nothing():
    """Outcomes arrive in batches, late: those reaching a half-open breaker belong to calls
    started before it opened (routers send a half-open provider no traffic)."""
    core, clock = make()
    for _ in range(3):
        core.record_outcome(False, "timeout")
    assert core.state == "unhealthy"
    clock.advance(15)
    for i in range(300):  # a batch of in-flight calls, most of them failed
        core.record_outcome(i % 3 == 0, None if i % 3 == 0 else "timeout")
    snap = core.snapshot()
    assert snap.state == "half_open" and snap.trial_calls == 0 and snap.window_calls == 0
    core.record_probe(True, 0.0)
    core.record_probe(True, 0.0)
    assert core.state == "healthy"


def test_a_probe_started_before_the_half_open_moment_is_not_a_trial():
    core, clock = make()
    core.record_outcome(False, "auth")
    clock.advance(15.5)
    core.record_probe(False, 1000.0, error_kind="timeout")  # started at 14.5 s: still open then
    snap = core.snapshot()
    assert snap.state == "half_open" and snap.trial_calls == 0
    assert core.due_for_probe()
    core.record_probe(True, 500.0)  # started at exactly 15.0 s: a trial
    assert core.snapshot().trial_calls == 1


def test_success_while_open_changes_nothing():
    core, clock = make()
    core.record_outcome(False, "quota")
    clock.advance(5)
    core.record_outcome(True)
    core.record_probe(True, 10.0)
    assert core.state == "unhealthy"


def test_auth_failure_is_unhealthy_at_once_from_a_probe_too():
    core, _ = make()
    core.record_probe(True, 10.0)
    core.record_probe(False, 20.0, http_status=401, error_kind="auth")
    snap = core.snapshot()
    assert snap.state == "unhealthy" and snap.reason == "auth failure"


@pytest.mark.parametrize(
    "kind", ["invalid_request", "content_policy", "context_window", "rate_limited"]
)
def test_request_faults_and_rate_limits_are_neutral(kind):
    core, _ = make()
    core.record_outcome(True)
    for _ in range(10):
        core.record_outcome(False, kind)
    snap = core.snapshot()
    assert snap.state == "healthy" and snap.consecutive_failures == 0 and snap.window_calls == 1


def test_unknown_error_kinds_count_as_failures():
    core, _ = make()
    core.record_outcome(False, None)
    core.record_outcome(False, "something_new")
    assert core.snapshot().consecutive_failures == 2


def test_model_not_found_marks_the_model_unavailable_and_a_success_restores_it():
    core, _ = make()
    core.record_outcome(True)
    core.record_outcome(False, "model_not_found", model_id="m2")
    snap = core.snapshot()
    assert snap.state == "healthy" and snap.unavailable_models == ("m2",)
    core.record_outcome(True, model_id="m2")
    assert core.snapshot().unavailable_models == ()
    assert transitions(core) == [
        ("unknown", "healthy", None), ("healthy", "unhealthy", "m2"), ("unhealthy", "healthy", "m2")
    ]


def test_probe_listing_marks_missing_models_and_restores_listed_ones():
    core, _ = make()
    core.record_probe(True, 10.0, available_models=["m1", "other"])
    assert core.snapshot().unavailable_models == ("m2",)
    core.record_probe(True, 10.0)  # no listing: unchanged
    assert core.snapshot().unavailable_models == ("m2",)
    core.record_probe(True, 10.0, available_models=["m1", "m2"])
    assert core.snapshot().unavailable_models == ()


def test_every_probe_emits_health_checked_with_missing_models():
    core, _ = make()
    core.record_probe(True, 10.0, http_status=200, available_models=["m1"])
    core.record_probe(False, 30.0, http_status=500, error_kind="server_error")
    checked = [e for e in core.drain_events() if isinstance(e, events.HealthChecked)]
    assert [(e.ok, e.http_status, e.error_kind, e.missing_models) for e in checked] == [
        (True, 200, None, ("m2",)), (False, 500, "server_error", ("m2",))
    ]
    assert all(e.provider == "openai" for e in checked)
    assert core.drain_events() == []


def test_due_for_probe_follows_the_interval_and_half_open():
    core, clock = make()
    core.record_probe(True, 10.0)
    assert not core.due_for_probe()
    clock.advance(29.9)
    assert not core.due_for_probe()
    clock.advance(0.1)
    assert core.due_for_probe()
    core.record_probe(False, 10.0, error_kind="auth")
    clock.advance(15)  # half-open, probed 15 s ago (before entering half-open): due now
    assert core.due_for_probe()


def test_subscribers_hear_each_change_once():
    core, clock = make()
    heard: list[HealthSnapshot] = []
    core.subscribe(heard.append)
    core.record_outcome(True)
    core.record_outcome(True)  # no change
    core.record_outcome(False, "auth")
    clock.advance(15)
    core.tick()
    core.tick()
    core.record_outcome(False, "model_not_found", model_id="m1")
    assert [(s.state, s.unavailable_models) for s in heard] == [
        ("healthy", ()), ("unhealthy", ()), ("half_open", ()), ("half_open", ("m1",))
    ]


def drive(core: HealthCore, clock: ManualClock, log: list[events.Event]) -> None:
    """A scripted history; outcomes also written as the router's log events."""

    def outcome(ok, kind=None, model_id=None):
        core.record_outcome(ok, kind, model_id)
        at = clock.now()
        if ok:
            log.append(events.RequestCompleted(occurred_at=at, provider="openai",
                                               model_id=model_id, latency_ms=5.0))
        else:
            log.append(events.AttemptFailed(occurred_at=at, provider="openai", model_id=model_id,
                                            attempt=1, error_kind=kind or "failure",
                                            transient=True))

    outcome(True, model_id="m1")
    core.record_probe(True, 10.0, available_models=["m1"])
    clock.advance(2)
    outcome(False, "timeout", "m1")
    outcome(False, "timeout", "m1")
    clock.advance(3)
    outcome(False, "server_error", "m1")
    clock.advance(20)
    core.record_probe(True, 11.0)  # half-open: the first of two trials
    outcome(True, model_id="m1")  # not a trial
    core.record_probe(True, 11.0)  # closes
    outcome(False, "model_not_found", "m2")
    clock.advance(7)
    outcome(False, "rate_limited", "m1")
    log.extend(e for e in core.drain_events() if isinstance(e, events.HealthChecked))
    log.sort(key=lambda e: e.occurred_at)


def test_replay_from_the_journal_reproduces_the_state():
    core, clock = make()
    drive(core, clock, [])
    clock.advance(3)
    replayed = HealthCore.replay("openai", SETTINGS, core.journal, clock=clock,
                                 models=["m1", "m2"])
    assert replayed.snapshot() == core.snapshot()
    assert replayed.drain_events() == []
    assert replayed.journal == core.journal


def test_replay_from_log_events_reproduces_the_state():
    core, clock = make()
    log: list[events.Event] = []
    drive(core, clock, log)
    other = events.AttemptFailed(provider="anthropic", model_id="x", attempt=1,
                                 error_kind="auth", transient=False, occurred_at=clock.now())
    replayed = HealthCore.replay("openai", SETTINGS, [*log, other], clock=clock,
                                 models=["m1", "m2"])
    assert replayed.snapshot() == core.snapshot()
    assert replayed.snapshot().state == "healthy"


def test_snapshot_and_records_are_picklable():
    core, _ = make()
    core.record_outcome(False, "model_not_found", model_id="m1")
    snap = core.snapshot()
    assert pickle.loads(pickle.dumps(snap)) == snap
    assert pickle.loads(pickle.dumps(core.journal)) == core.journal
    assert isinstance(core.journal[0], OutcomeRecord)


@pytest.mark.parametrize("latency_ms", [-1.0, math.nan, math.inf])
def test_bad_probe_latency_is_refused_and_changes_nothing(latency_ms):
    core, _ = make()
    with pytest.raises(InvalidInput):
        core.record_probe(True, latency_ms)
    assert core.journal == () and core.snapshot().state == "unknown"


def test_bad_construction_and_replay_input():
    with pytest.raises(InvalidInput):
        HealthCore("", SETTINGS, clock=ManualClock())
    with pytest.raises(InvalidInput):
        HealthCore.replay("openai", SETTINGS, [object()], clock=ManualClock())


@pytest.mark.parametrize("error_rate", [0.10, 0.13])
@pytest.mark.parametrize("settings_from", ["defaults", "demo registry"])
def test_a_ten_percent_error_stream_at_high_concurrency_degrades_but_never_opens(
    error_rate, settings_from
):
    """The ``flaky`` profile's load, replayed: 300 calls in flight, their outcomes arriving in
    batches of 300 (in completion order: shuffled) for one and a half windows, plus the
    checker's probes. Runs of three failures and more occur every few hundred calls (the old
    breaker opened on them); the rate never comes near the threshold."""
    settings = (config.HealthSettings() if settings_from == "defaults"
                else demo_config().settings.health_check)
    core, clock = make(settings)
    rng = random.Random(9)
    batches, tick_s = 60, 1.5 * settings.window_s / 60
    longest_run = run = 0
    states = set()
    for _ in range(batches):
        batch = [rng.random() >= error_rate for _ in range(300)]
        rng.shuffle(batch)
        for ok in batch:
            states.add(core.record_outcome(ok, None if ok else "server_error").state)
            run = 0 if ok else run + 1
            longest_run = max(longest_run, run)
        if core.due_for_probe():
            core.record_probe(True, 5.0)
        clock.advance(tick_s)
    assert longest_run >= 3
    assert "unhealthy" not in states and "half_open" not in states
    snap = core.snapshot()
    assert snap.state == "degraded" and snap.window_calls >= settings.min_calls_in_window
