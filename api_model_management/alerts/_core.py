"""Performance degradation alerts: per model, latency, error rate and quality, with hysteresis.

A pure class on an injected clock (no Ray, no I/O). The router folds every call outcome into it
(:meth:`DegradationCore.record`) and writes the ``PerformanceAlert`` events it returns. Settings
are :class:`config.AlertSettings`.

Time is cut into slices of ``slice_s`` (slice ``floor(monotonic / slice_s)``). Each model keeps
the counts of its current slice; when a call arrives in a later slice, the current one closes
and the model is judged on the closed slices:

- the *window*: the last ``window_s`` of closed slices;
- the *baseline*: the ``baseline_s`` of slices before the window (latency and quality each have
  their own, see below).

Conditions (thresholds from the settings):

- ``latency_degraded`` (metric ``p95_latency_ms``): the window's p95 latency of successful calls
  is at least ``max(latency_factor x baseline p95, baseline p95 + latency_min_increase_ms)``;
- ``error_rate`` (metric ``error_rate``): the window's share of failed calls is at least
  ``error_rate_threshold``. Failures the request or local admission caused, and the provider's
  429s (the RateLimiter's concern, alerted as ``rate_limit``), are not counted
  (:data:`NEUTRAL_KINDS`);
- ``quality_degraded`` (metric ``mean_quality``): the window's mean quality score is at least
  ``quality_drop`` below the baseline's mean.

A condition is judged only with enough data (``min_calls`` calls, or successful calls for latency,
``min_evaluations`` scores; a baseline of ``baseline_min_calls``); otherwise nothing changes.

Hysteresis: an alert is raised once when its condition starts (one event, ``cleared`` false) and
cleared once when the condition has been judged absent at every judgement for ``clear_after_s``
(one event, ``cleared`` true). While a latency or quality alert is raised, its baseline is
frozen: the slices leaving the window are not added to it and its old slices do not expire, so
a lasting degradation does not become the new normal. After a clear the baseline moves on again
(and, after a long incident, refills from the slices that follow).

Per call the work is a dict lookup, a few additions and one logarithm (the latency's bucket, see
:mod:`._histogram`); judging happens once per slice per model with traffic and merges per-slice
counts, never sorting calls. Each router replica judges the calls it made, so ``N`` replicas
that all see a model degrade raise up to ``N`` alerts; the message names the router.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import isfinite

from .._clock import SYSTEM_CLOCK, Clock
from ..config import AlertSettings
from ..errors import InvalidInput
from ..events import PerformanceAlert
from ..selection._stats import REQUEST_FAULT_KINDS
from ._histogram import LatencyHistogram

log = logging.getLogger(__name__)

LATENCY_DEGRADED = "latency_degraded"
ERROR_RATE = "error_rate"
QUALITY_DEGRADED = "quality_degraded"
#: The alert kinds this core raises, in the order a model is judged.
KINDS: tuple[str, ...] = (LATENCY_DEGRADED, ERROR_RATE, QUALITY_DEGRADED)
#: Failures that do not count against a model's error rate: the request's own faults (the rule
#: of the selector's statistics) and the provider's 429s.
NEUTRAL_KINDS: frozenset[str] = REQUEST_FAULT_KINDS | {"rate_limited"}
_NONE: tuple[PerformanceAlert, ...] = ()


class _Counts:
    """Calls, failures (by error kind), latencies of successes and quality scores of a span."""

    __slots__ = ("calls", "failures", "error_kinds", "latency", "quality_sum", "quality_n")

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.error_kinds: Counter[str] = Counter()
        self.latency = LatencyHistogram()
        self.quality_sum = 0.0
        self.quality_n = 0

    def merge(self, other: _Counts, sign: int) -> None:
        """Add (``sign`` 1) or remove (``sign`` -1) ``other``'s counts."""
        self.calls += sign * other.calls
        self.failures += sign * other.failures
        if other.error_kinds:
            if sign > 0:
                self.error_kinds.update(other.error_kinds)
            else:
                self.error_kinds.subtract(other.error_kinds)
                self.error_kinds = +self.error_kinds  # drop the zeros
        self.latency.merge(other.latency, sign)
        self.quality_n += sign * other.quality_n
        self.quality_sum = self.quality_sum + sign * other.quality_sum if self.quality_n else 0.0

    def mean_quality(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None


class _Slice(_Counts):
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class _Span:
    """A run of closed slices and their summed counts (a window or a baseline)."""

    __slots__ = ("slices", "totals")

    def __init__(self) -> None:
        self.slices: deque[_Slice] = deque()
        self.totals = _Counts()

    def push(self, piece: _Slice) -> None:
        self.slices.append(piece)
        self.totals.merge(piece, 1)

    def drop_before(self, index: int) -> list[_Slice]:
        """Remove and return the slices older than slice ``index``."""
        gone = []
        while self.slices and self.slices[0].index < index:
            piece = self.slices.popleft()
            self.totals.merge(piece, -1)
            gone.append(piece)
        return gone


@dataclass(slots=True)
class _Condition:
    """One alert kind of one model: raised or not, and since when it has been judged absent."""

    raised: PerformanceAlert | None = None
    absent_since: float | None = None


@dataclass(frozen=True, slots=True)
class _Judgement:
    """A judged condition: whether it holds, the numbers that decided, and what they mean."""

    holds: bool
    value: float
    threshold: float
    detail: str


@dataclass(slots=True)
class _Model:
    provider: str | None
    current: _Slice
    window: _Span = field(default_factory=_Span)
    latency_baseline: _Span = field(default_factory=_Span)
    quality_baseline: _Span = field(default_factory=_Span)
    conditions: dict[str, _Condition] = field(
        default_factory=lambda: {kind: _Condition() for kind in KINDS})


class DegradationCore:
    """Degradation alerts of the models one router calls (see the module docstring)."""

    def __init__(self, settings: AlertSettings | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 router_id: str = "local") -> None:
        self.settings = settings or AlertSettings()
        self.router_id = router_id
        self._clock = clock
        self._slice_s = self.settings.slice_s
        self._window_slices = max(1, round(self.settings.window_s / self.settings.slice_s))
        self._baseline_slices = max(1, round(self.settings.baseline_s / self.settings.slice_s))
        self._models: dict[str, _Model] = {}

    # -- folding calls ---------------------------------------------------------------------------

    def record(self, model_id: str, provider: str | None, ok: bool, latency_ms: float | None = None,
               quality: float | None = None, *,
               error_kind: str | None = None) -> Sequence[PerformanceAlert]:
        """Fold one call of ``model_id``: a success with its latency (ms) and quality score (in
        [0, 1], if scored), or a failure with its ``error_kind`` (a neutral kind is ignored).
        Returns the alerts raised or cleared by judging the slice this call closed (usually none)."""
        if not self.settings.enabled or (not ok and error_kind in NEUTRAL_KINDS):
            return _NONE
        if not model_id:
            raise InvalidInput("model_id is required")
        if latency_ms is not None and not (isfinite(latency_ms) and latency_ms >= 0):
            raise InvalidInput("latency_ms must be a finite number >= 0", model_id=model_id)
        if quality is not None and not (isfinite(quality) and 0 <= quality <= 1):
            raise InvalidInput("quality must be in [0, 1]", model_id=model_id)
        now = self._clock.monotonic()
        index = int(now // self._slice_s)
        model = self._models.get(model_id)
        if model is None:
            model = self._models[model_id] = _Model(provider, _Slice(index))
        alerts = self._roll(model_id, model, index, now) if index > model.current.index else _NONE
        piece = model.current
        piece.calls += 1
        if ok:
            if latency_ms is not None:
                piece.latency.add(latency_ms)
        else:
            piece.failures += 1
            piece.error_kinds[error_kind or "unknown"] += 1
        if quality is not None:
            piece.quality_sum += quality
            piece.quality_n += 1
        return alerts

    def evaluate(self) -> list[PerformanceAlert]:
        """Close every model's slice that has ended by now and judge those models (for a caller
        with a timer: without one, a model is judged when its own next call arrives)."""
        now = self._clock.monotonic()
        index = int(now // self._slice_s)
        alerts: list[PerformanceAlert] = []
        for model_id, model in self._models.items():
            if index > model.current.index:
                alerts.extend(self._roll(model_id, model, index, now))
        return alerts

    def active(self) -> list[PerformanceAlert]:
        """The alerts raised and not cleared, by model and kind."""
        return [condition.raised
                for _, model in sorted(self._models.items())
                for condition in model.conditions.values() if condition.raised is not None]

    # -- judging ---------------------------------------------------------------------------------

    def _roll(self, model_id: str, model: _Model, index: int, now: float) -> Sequence[PerformanceAlert]:
        """Close the current slice, move slices from the window to the baselines, judge."""
        closed = model.current
        model.current = _Slice(index)
        if closed.calls:
            model.window.push(closed)
        window_start = index - self._window_slices
        conditions = model.conditions
        latency_frozen = conditions[LATENCY_DEGRADED].raised is not None
        quality_frozen = conditions[QUALITY_DEGRADED].raised is not None
        for piece in model.window.drop_before(window_start):
            if not latency_frozen:
                model.latency_baseline.push(piece)
            if not quality_frozen:
                model.quality_baseline.push(piece)
        baseline_start = window_start - self._baseline_slices
        if not latency_frozen:
            model.latency_baseline.drop_before(baseline_start)
        if not quality_frozen:
            model.quality_baseline.drop_before(baseline_start)
        alerts: list[PerformanceAlert] = []
        for kind, judgement in ((LATENCY_DEGRADED, self._latency(model)),
                                (ERROR_RATE, self._errors(model)),
                                (QUALITY_DEGRADED, self._quality(model))):
            if judgement is not None:
                alert = self._step(model_id, model, kind, judgement, now)
                if alert is not None:
                    alerts.append(alert)
        return alerts or _NONE

    def _latency(self, model: _Model) -> _Judgement | None:
        s = self.settings
        window, baseline = model.window.totals.latency, model.latency_baseline.totals.latency
        if window.total < s.min_calls or baseline.total < s.baseline_min_calls:
            return None
        p95, base = window.quantile(0.95), baseline.quantile(0.95)
        assert p95 is not None and base is not None
        threshold = max(s.latency_factor * base, base + s.latency_min_increase_ms)
        return _Judgement(
            p95 >= threshold, p95, threshold,
            f"p95 latency {p95:.0f} ms over the last {s.window_s:g} s ({window.total} calls), "
            f"baseline {base:.0f} ms ({baseline.total} calls), threshold {threshold:.0f} ms")

    def _errors(self, model: _Model) -> _Judgement | None:
        s = self.settings
        window = model.window.totals
        if window.calls < s.min_calls:
            return None
        rate = window.failures / window.calls
        mostly = window.error_kinds.most_common(1)
        cause = f"; mostly {mostly[0][0]}" if mostly else ""
        return _Judgement(
            rate >= s.error_rate_threshold, rate, s.error_rate_threshold,
            f"{window.failures} of {window.calls} calls failed over the last {s.window_s:g} s "
            f"({rate:.0%}{cause}), threshold {s.error_rate_threshold:.0%}")

    def _quality(self, model: _Model) -> _Judgement | None:
        s = self.settings
        window, baseline = model.window.totals, model.quality_baseline.totals
        mean, base = window.mean_quality(), baseline.mean_quality()
        if window.quality_n < s.min_evaluations or baseline.quality_n < s.baseline_min_calls:
            return None
        assert mean is not None and base is not None
        threshold = base - s.quality_drop
        return _Judgement(
            mean <= threshold, mean, threshold,
            f"mean quality {mean:.2f} over the last {s.window_s:g} s ({window.quality_n} answers), "
            f"baseline {base:.2f} ({baseline.quality_n} answers), threshold {threshold:.2f}")

    def _step(self, model_id: str, model: _Model, kind: str, judgement: _Judgement,
              now: float) -> PerformanceAlert | None:
        """Hysteresis: raise when the condition starts, clear when it has been absent for
        ``clear_after_s``; otherwise nothing."""
        condition = model.conditions[kind]
        if judgement.holds:
            condition.absent_since = None
            if condition.raised is not None:
                return None
            alert = self._alert(model_id, model, kind, judgement, cleared=False)
            condition.raised = alert
            log.warning("performance alert %s on %s: %s", kind, model_id, alert.message)
            return alert
        if condition.raised is None:
            return None
        if condition.absent_since is None:
            condition.absent_since = now
        if now - condition.absent_since < self.settings.clear_after_s:
            return None
        condition.raised = condition.absent_since = None
        alert = self._alert(model_id, model, kind, judgement, cleared=True)
        log.info("performance alert %s on %s cleared: %s", kind, model_id, alert.message)
        return alert

    def _alert(self, model_id: str, model: _Model, kind: str, judgement: _Judgement, *,
               cleared: bool) -> PerformanceAlert:
        if cleared:
            text = (f"cleared, absent for {self.settings.clear_after_s:g} s: "
                    f"{judgement.detail}")
        else:
            text = judgement.detail
        return PerformanceAlert(
            occurred_at=self._clock.now(), model_id=model_id, provider=model.provider, kind=kind,
            metric=_METRICS[kind], value=judgement.value, threshold=judgement.threshold,
            message=f"{text} (router {self.router_id})", cleared=cleared,
        )


_METRICS = {LATENCY_DEGRADED: "p95_latency_ms", ERROR_RATE: "error_rate",
            QUALITY_DEGRADED: "mean_quality"}
