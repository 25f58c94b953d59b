"""HealthChecker core: one provider's health as a circuit breaker fed by probes and call outcomes.

A pure class (no Ray, no I/O): the Ray shell calls the provider's probe endpoint when
:meth:`HealthCore.probe_delay_s` says so, feeds the result to :meth:`HealthCore.record_probe`,
feeds call outcomes (batched by the routers) to :meth:`HealthCore.record_outcome` and ships
:meth:`HealthCore.drain_events` to the event sink.

States and rules (thresholds from :class:`config.HealthSettings`)::

    unknown ──▶ healthy ◀──window rate < degraded_rate_threshold──▶ degraded
                   │                                                   │
                   └──────────────────────┬────────────────────────────┘
                                          ▼ window rate ≥ failure_rate_threshold, an overwhelming
                                      unhealthy   run of failures, or an auth/quota failure (at once)
                                        │   ▲
                         open_s elapsed ▼   │ trials can no longer reach recovery_probes successes
                                      half_open ── recovery_probes trials succeeded ──▶ healthy

Health follows the failure *rate*, not runs: a provider failing 10-13 % of calls at random produces
a run of three failures every 500-1000 calls, so at 300 calls in flight a breaker that opens on such
runs opens every provider within seconds. While closed (``unknown``, ``healthy``, ``degraded``), every
non-neutral call outcome or probe enters a sliding window of ``window_s``; once it holds
``min_calls_in_window`` calls, its failure rate decides:

- rate ≥ ``failure_rate_threshold`` (0.5): ``unhealthy``, the breaker opens;
- rate ≥ ``degraded_rate_threshold`` (0.05): ``degraded`` — it still takes traffic, ranked lower.
  0.05 is half the error rate of the ``flaky`` profile, so a provider failing 10 % of calls is
  clearly degraded, while one with a normal background of about 1 % stays healthy;
- below: ``healthy``.

With fewer calls than that the window is too small to judge a rate: a success makes the provider
healthy and ``degraded_threshold`` consecutive failures degraded. A run of failures opens the
breaker only when it is overwhelming: ``failure_threshold`` (20) consecutive failures while the
window's rate is at least ``degraded_rate_threshold``. At a 13 % error rate a run of 20 has a chance
of about 1e-18; the rate condition keeps a burst of timeouts among thousands of recent successes
(one batch of in-flight calls) from opening a busy provider, yet lets a provider that really died
open long before its window reaches 50 %. Probes are sparse (one per ``interval_s``) and hit a
cheap endpoint that does not fail at random under load, so ``probe_failure_threshold`` (3) failed
probes in a row, with no success between them, count as such a run too (under the same rate
condition): a provider that only the checker calls still opens in a few intervals. An auth or
quota failure opens the breaker at once (the account, not the moment, is at fault); no other
failure opens it while the window's rate is below ``degraded_rate_threshold``. Failures caused by
the request itself (bad request, content policy, context window) or by rate limiting are neutral:
they say nothing about the provider's health. The window is emptied when the breaker opens and
when it closes.

Half-open admits a bounded number of trials, and they are the checker's own probes: routers send
no traffic to a ``half_open`` provider (it is not in :data:`TRAFFIC_STATES`, so the selector filters
it exactly as an unhealthy one), and the checker probes it back to back, at most
``half_open_max_calls`` times. It closes (``healthy``) as soon as ``recovery_probes`` trials
succeeded and re-opens as soon as that can no longer happen (more than ``half_open_max_calls −
recovery_probes`` trials failed or had no answer; an auth/quota trial failure re-opens at once).
This is the simplest version that is correct with batched, late outcomes: the routers' outcomes
arriving while open or half-open belong to calls started before the breaker opened (or before the
routers heard of it), so they are journaled and counted in the consecutive counters but decide
nothing; and a probe is a trial only if it *started* at or after the half-open moment (its
completion time minus its latency), so a probe under way when the breaker turned half-open is not
one. No router has to share or count a trial budget. While ``unhealthy`` (before ``open_s`` has
passed) nothing changes the state: the breaker waits the full ``open_s``.

A ``model_not_found`` outcome, or a probe whose model listing lacks a model, marks that model
unavailable (a ``HealthChanged`` event with ``model_id`` set); a success for that model, or a later
listing that includes it, makes it available again.

The ``unhealthy → half_open`` move is a function of time: it is taken lazily whenever the core is
asked anything, with ``since`` set to the exact moment ``open_s`` elapsed, so the state at a given
time does not depend on when somebody looked.

Replay: every input is journaled as a :class:`ProbeRecord` or :class:`OutcomeRecord`.
:meth:`HealthCore.replay` folds those records, or log events (``HealthChecked`` as probes;
``AttemptFailed`` and non-cached ``RequestCompleted`` of this provider as outcomes; ``HealthChanged``
is derived and skipped), and reproduces the live state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import isfinite

from .. import config, events
from .._clock import Clock
from ..errors import InvalidInput
from ..events._types import HealthState

#: States in which the selector may send traffic (``half_open`` takes only the checker's trial
#: probes).
TRAFFIC_STATES: frozenset[str] = frozenset({"healthy", "degraded", "unknown"})
#: Failures that make the provider unhealthy at once: the account, not the moment, is at fault.
IMMEDIATE_KINDS: frozenset[str] = frozenset({"auth", "quota"})
#: Failures that say nothing about the provider's health (the request or local admission is at
#: fault, or the provider is merely busy for us — the RateLimiter handles that).
NEUTRAL_KINDS: frozenset[str] = frozenset({
    "invalid_request",
    "content_policy",
    "context_window",
    "rate_limited",
    "model_not_found",
    "invalid_input",
    "invalid_output",  # the model's answer failed its schema: the provider answered
    "budget_exceeded",
    "rate_limit_exceeded",
    "no_eligible_model",
    "concurrency_limit",
    "component_unavailable",
})


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One active probe, as journaled. ``missing_models`` is the provider's unavailable set after
    the probe (unchanged when the probe listed no models)."""

    at: datetime
    at_monotonic: float
    ok: bool
    latency_ms: float
    http_status: int | None = None
    error_kind: str | None = None
    missing_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """One passive signal from a call outcome, as journaled."""

    at: datetime
    at_monotonic: float
    ok: bool
    error_kind: str | None = None
    model_id: str | None = None


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A provider's health at one moment (picklable; pushed to the Selector and routers)."""

    provider: str
    state: HealthState
    unavailable_models: tuple[str, ...]
    #: When the provider entered ``state`` (None while ``unknown``).
    since: datetime | None
    consecutive_failures: int
    consecutive_successes: int
    consecutive_probe_failures: int
    window_calls: int
    window_failures: int
    #: Trial probes recorded, and how many succeeded, since the provider turned half-open.
    trial_calls: int
    trial_successes: int
    last_probe_at: datetime | None
    last_probe_latency_ms: float | None
    reason: str

    @property
    def allows_traffic(self) -> bool:
        return self.state in TRAFFIC_STATES


def classify(ok: bool, error_kind: str | None) -> str:
    """``success``, ``failure``, ``immediate`` (unhealthy at once) or ``neutral``."""
    if ok:
        return "success"
    if error_kind in IMMEDIATE_KINDS:
        return "immediate"
    if error_kind in NEUTRAL_KINDS:
        return "neutral"
    return "failure"


class HealthCore:
    """The health of one provider. See the module docstring for the rules."""

    def __init__(
        self,
        provider: str,
        settings: config.HealthSettings,
        *,
        clock: Clock,
        models: Iterable[str] = (),
    ) -> None:
        if not provider:
            raise InvalidInput("a health core needs a provider name")
        self.provider = provider
        self.settings = settings
        self.models: tuple[str, ...] = tuple(models)
        self._clock: Clock | _FrozenClock = clock  # frozen at each record's time while replaying
        self._state: HealthState = "unknown"
        self._since: datetime | None = None
        self._reason = "no signal yet"
        self._opened_mono = 0.0
        self._consecutive_failures = 0
        self._consecutive_successes = 0
        self._consecutive_probe_failures = 0
        self._trial_calls = 0
        self._trial_successes = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._window_failures = 0
        self._unavailable: frozenset[str] = frozenset()
        self._last_probe_mono: float | None = None
        self._last_probe_at: datetime | None = None
        self._last_probe_latency_ms: float | None = None
        self._events: list[events.Event] = []
        self._journal: list[ProbeRecord | OutcomeRecord] = []
        self._subscribers: list[Callable[[HealthSnapshot], None]] = []
        self._replaying = False

    # -- inputs ------------------------------------------------------------------------------
    def record_probe(
        self,
        ok: bool,
        latency_ms: float,
        http_status: int | None = None,
        error_kind: str | None = None,
        available_models: Sequence[str] | None = None,
    ) -> HealthSnapshot:
        """Record one active probe. ``available_models``: the models the provider listed (None when
        the probe does not list models); configured models not in it become unavailable."""
        if not isinstance(latency_ms, int | float) or not isfinite(latency_ms) or latency_ms < 0:
            raise InvalidInput("latency_ms must be a finite number >= 0", provider=self.provider)
        if available_models is None:
            missing = tuple(sorted(self._unavailable))
        else:
            known = set(self.models) | self._unavailable
            missing = tuple(sorted(known - set(available_models)))
        record = ProbeRecord(
            at=self._clock.now(),
            at_monotonic=self._clock.monotonic(),
            ok=bool(ok),
            latency_ms=float(latency_ms),
            http_status=http_status,
            error_kind=None if ok else (error_kind or "probe_failed"),
            missing_models=missing,
        )
        self._apply(record)
        return self.snapshot()

    def record_outcome(
        self, ok: bool, error_kind: str | None = None, model_id: str | None = None
    ) -> HealthSnapshot:
        """Record the outcome of one call to this provider (a passive health signal)."""
        record = OutcomeRecord(
            at=self._clock.now(),
            at_monotonic=self._clock.monotonic(),
            ok=bool(ok),
            error_kind=None if ok else error_kind,
            model_id=model_id,
        )
        self._apply(record)
        return self.snapshot()

    def tick(self) -> HealthSnapshot:
        """Take any time-driven transition now (the shell calls this on its timer)."""
        self._advance(self._clock.monotonic())
        return self.snapshot()

    def subscribe(self, callback: Callable[[HealthSnapshot], None]) -> None:
        """Call ``callback(snapshot)`` after every change of state or of unavailable models."""
        self._subscribers.append(callback)

    # -- queries -----------------------------------------------------------------------------
    @property
    def state(self) -> HealthState:
        self._advance(self._clock.monotonic())
        return self._state

    def allows_traffic(self) -> bool:
        """True when the selector may route to this provider (unhealthy is the only closed state)."""
        return self.state in TRAFFIC_STATES

    def due_for_probe(self) -> bool:
        """True when a probe is due (see :meth:`probe_delay_s`)."""
        return self.probe_delay_s() == 0.0

    def probe_delay_s(self) -> float:
        """Seconds until the next probe is due: at once when never probed or half-open (the trials
        run back to back until they decide), else ``interval_s`` after the last probe, or the
        half-open moment if an open breaker reaches it sooner."""
        now = self._clock.monotonic()
        self._advance(now)
        if self._last_probe_mono is None or self._state == "half_open":
            return 0.0
        delay = self._last_probe_mono + self.settings.interval_s - now
        if self._state == "unhealthy":
            delay = min(delay, self._half_open_mono() - now)
        return max(0.0, delay)

    def snapshot(self) -> HealthSnapshot:
        now = self._clock.monotonic()
        self._advance(now)
        self._prune(now)
        return HealthSnapshot(
            provider=self.provider,
            state=self._state,
            unavailable_models=tuple(sorted(self._unavailable)),
            since=self._since,
            consecutive_failures=self._consecutive_failures,
            consecutive_successes=self._consecutive_successes,
            consecutive_probe_failures=self._consecutive_probe_failures,
            window_calls=len(self._window),
            window_failures=self._window_failures,
            trial_calls=self._trial_calls,
            trial_successes=self._trial_successes,
            last_probe_at=self._last_probe_at,
            last_probe_latency_ms=self._last_probe_latency_ms,
            reason=self._reason,
        )

    def drain_events(self) -> list[events.Event]:
        """The events produced since the last drain (HealthChanged, HealthChecked), oldest first."""
        out, self._events = self._events, []
        return out

    @property
    def journal(self) -> tuple[ProbeRecord | OutcomeRecord, ...]:
        """Every input so far, in order: the source of :meth:`replay`."""
        return tuple(self._journal)

    # -- replay ------------------------------------------------------------------------------
    @classmethod
    def replay(
        cls,
        provider: str,
        settings: config.HealthSettings,
        history: Iterable[ProbeRecord | OutcomeRecord | events.Event],
        *,
        clock: Clock,
        models: Iterable[str] = (),
    ) -> HealthCore:
        """A core rebuilt by folding ``history`` (journal records and/or log events of this
        provider). Log events are placed on ``clock``'s monotonic scale by their ``occurred_at``."""
        records = [r for r in (_to_record(item, provider, clock) for item in history) if r]
        core = cls(provider, settings, clock=clock, models=models)
        core._replaying = True
        for record in records:
            core._clock = _FrozenClock(record.at, record.at_monotonic)
            core._apply(record)
        core._clock = clock
        core._replaying = False
        core._events.clear()
        return core

    # -- the fold ----------------------------------------------------------------------------
    def _apply(self, record: ProbeRecord | OutcomeRecord) -> None:
        now = record.at_monotonic
        self._advance(now)
        before = (self._state, self._unavailable)
        self._journal.append(record)
        kind = classify(record.ok, record.error_kind)
        error_kind = record.error_kind or "failure"
        if isinstance(record, ProbeRecord):
            self._last_probe_mono = now
            self._last_probe_at = record.at
            self._last_probe_latency_ms = record.latency_ms
            self._set_unavailable(frozenset(record.missing_models), "probe listing", record.at)
            self._emit_checked(record)
            self._consecutive_probe_failures += int(kind in ("failure", "immediate"))
        else:
            self._apply_model_signal(record)
        self._count(kind)
        if self._state == "half_open":
            if isinstance(record, ProbeRecord) and self._is_trial(record):
                self._on_trial(now, record.at, kind, error_kind)
        elif self._state != "unhealthy" and kind != "neutral":
            self._judge(now, record.at, kind, error_kind)
        if (self._state, self._unavailable) != before:
            self._notify()

    def _apply_model_signal(self, record: OutcomeRecord) -> None:
        if record.model_id is None:
            return
        if record.ok and record.model_id in self._unavailable:
            self._set_unavailable(self._unavailable - {record.model_id}, "call succeeded", record.at)
        elif not record.ok and record.error_kind == "model_not_found":
            self._set_unavailable(self._unavailable | {record.model_id}, "model_not_found", record.at)

    def _count(self, kind: str) -> None:
        """The consecutive counters, in every state (neutral signals leave them alone); any
        success, a call's or a probe's, ends a run of failed probes."""
        if kind == "success":
            self._consecutive_failures, self._consecutive_successes = 0, self._consecutive_successes + 1
            self._consecutive_probe_failures = 0
        elif kind != "neutral":
            self._consecutive_failures, self._consecutive_successes = self._consecutive_failures + 1, 0

    def _judge(self, now: float, at: datetime, kind: str, error_kind: str) -> None:
        """A closed breaker (unknown, healthy, degraded) after one non-neutral signal."""
        s = self.settings
        self._window.append((now, kind == "success"))
        self._window_failures += 0 if kind == "success" else 1
        self._prune(now)
        calls, run, probes = len(self._window), self._consecutive_failures, self._consecutive_probe_failures
        rate = self._window_failures / calls
        over = f"failure rate {rate:.2f} over {calls} calls"
        judged = calls >= s.min_calls_in_window
        if kind == "immediate":
            self._open(now, at, f"{error_kind} failure")
        elif judged and rate >= s.failure_rate_threshold:
            self._open(now, at, over)
        elif rate >= s.degraded_rate_threshold and run >= s.failure_threshold:
            self._open(now, at, f"{run} consecutive failures ({over})")
        elif rate >= s.degraded_rate_threshold and probes >= s.probe_failure_threshold:
            self._open(now, at, f"{probes} consecutive failed probes ({over})")
        elif judged:
            self._move("degraded" if rate >= s.degraded_rate_threshold else "healthy", over, at)
        elif kind == "success":
            self._move("healthy", "call or probe succeeded", at)
        elif run >= s.degraded_threshold:
            self._move("degraded", f"{run} consecutive failure(s)", at)

    def _is_trial(self, record: ProbeRecord) -> bool:
        """A probe that started (completion minus latency) at or after the half-open moment."""
        return record.at_monotonic - record.latency_ms / 1000.0 >= self._half_open_mono()

    def _on_trial(self, now: float, at: datetime, kind: str, error_kind: str) -> None:
        s = self.settings
        self._trial_calls += 1
        self._trial_successes += int(kind == "success")
        misses = self._trial_calls - self._trial_successes
        if kind == "immediate":
            self._open(now, at, f"trial failed ({error_kind})")
        elif self._trial_successes >= s.recovery_probes:
            self._clear_window()
            self._move("healthy", f"{self._trial_successes} of {self._trial_calls} trial(s) succeeded", at)
        elif misses > s.half_open_max_calls - s.recovery_probes:
            self._open(now, at, f"{misses} of {self._trial_calls} trial(s) failed")

    def _open(self, now: float, at: datetime, reason: str) -> None:
        self._opened_mono = now
        self._clear_window()
        self._move("unhealthy", reason, at)

    def _clear_window(self) -> None:
        self._window.clear()
        self._window_failures = 0

    def _half_open_mono(self) -> float:
        return self._opened_mono + self.settings.open_s

    def _advance(self, now: float) -> None:
        """Take the time-driven move ``unhealthy → half_open`` once ``open_s`` has passed."""
        if self._state == "unhealthy" and now >= self._half_open_mono():
            assert self._since is not None  # set when the breaker opened
            at = self._since + timedelta(seconds=self.settings.open_s)
            self._consecutive_successes = 0
            self._trial_calls = self._trial_successes = 0
            self._move("half_open", f"open for {self.settings.open_s:g} s", at)
            if not self._replaying:
                self._notify()

    def _prune(self, now: float) -> None:
        cutoff = now - self.settings.window_s
        window = self._window
        while window and window[0][0] <= cutoff:
            _, ok = window.popleft()
            self._window_failures -= 0 if ok else 1

    def _move(self, to_state: HealthState, reason: str, at: datetime) -> None:
        if to_state == self._state:
            return
        self._events.append(
            events.HealthChanged(
                occurred_at=at,
                provider=self.provider,
                from_state=self._state,
                to_state=to_state,
                reason=reason,
            )
        )
        self._state, self._since, self._reason = to_state, at, reason

    def _set_unavailable(self, models: frozenset[str], reason: str, at: datetime) -> None:
        for model_id in sorted(models - self._unavailable):
            self._events.append(events.HealthChanged(
                occurred_at=at, provider=self.provider, model_id=model_id,
                from_state="healthy", to_state="unhealthy", reason=f"model unavailable: {reason}",
            ))
        for model_id in sorted(self._unavailable - models):
            self._events.append(events.HealthChanged(
                occurred_at=at, provider=self.provider, model_id=model_id,
                from_state="unhealthy", to_state="healthy", reason=f"model available: {reason}",
            ))
        self._unavailable = models

    def _emit_checked(self, record: ProbeRecord) -> None:
        self._events.append(
            events.HealthChecked(
                occurred_at=record.at,
                provider=self.provider,
                ok=record.ok,
                latency_ms=record.latency_ms,
                http_status=record.http_status,
                error_kind=record.error_kind,
                missing_models=record.missing_models,
            )
        )

    def _notify(self) -> None:
        if self._replaying or not self._subscribers:
            return
        snap = self.snapshot()
        for callback in self._subscribers:
            callback(snap)


# -- replay helpers ------------------------------------------------------------------------------


class _FrozenClock:
    """A clock stopped at one record's time, used while folding."""

    def __init__(self, at: datetime, mono: float) -> None:
        self._at, self._mono = at, mono

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._mono


def _mono_of(at: datetime, clock: Clock) -> float:
    return clock.monotonic() - (clock.now() - at).total_seconds()


def _to_record(
    item: ProbeRecord | OutcomeRecord | events.Event, provider: str, clock: Clock
) -> ProbeRecord | OutcomeRecord | None:
    if isinstance(item, ProbeRecord | OutcomeRecord):
        return item
    if not isinstance(item, events.Event):
        raise InvalidInput(f"cannot replay a {type(item).__name__}")
    if item.provider != provider:
        return None
    at, mono = item.occurred_at, _mono_of(item.occurred_at, clock)
    if isinstance(item, events.HealthChecked):
        return ProbeRecord(at, mono, item.ok, item.latency_ms, item.http_status, item.error_kind,
                           tuple(item.missing_models))
    if isinstance(item, events.AttemptFailed):
        return OutcomeRecord(at, mono, False, item.error_kind, item.model_id)
    if isinstance(item, events.RequestCompleted) and not item.cache_hit:
        return OutcomeRecord(at, mono, True, None, item.model_id)
    return None
