"""Live outcome statistics per model: the Selector's view of observed performance.

Exponentially weighted moving averages (EWMA, weight ``alpha`` on the newest observation, the first
observation taken as is) of latency (successful calls only: a timeout's latency says nothing about
speed), success rate and quality, plus plain counts. A pure class: the shell folds outcomes into it
and pushes :meth:`StatsCore.snapshot` to the Selector.

From the event log (:meth:`StatsCore.from_events`):
- ``RequestCompleted`` (not a cache hit) → a success with its ``latency_ms``;
- ``AttemptFailed`` → a failure, unless the request itself was at fault (``REQUEST_FAULT_KINDS``);
- ``RequestFailed`` → a failure only when no ``AttemptFailed`` of the same request and model was
  folded (the attempt already counted);
- ``ResponseEvaluated`` → a quality observation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from math import isfinite

from .. import events
from ..errors import InvalidInput

#: Failures caused by the request (not the model): neutral for the model's success rate.
REQUEST_FAULT_KINDS: frozenset[str] = frozenset({
    "invalid_request", "content_policy", "context_window", "invalid_input",
    "budget_exceeded", "rate_limit_exceeded", "no_eligible_model", "concurrency_limit",
})
_RECENT_ATTEMPTS = 10_000


@dataclass(frozen=True, slots=True)
class ModelStatsSnapshot:
    """Observed performance of one model. Averages are None until observed."""

    model_id: str
    count: int
    successes: int
    failures: int
    latency_ms: float | None
    success_rate: float | None
    quality: float | None
    quality_count: int


class ModelStats:
    """Running statistics of one model."""

    __slots__ = ("model_id", "alpha", "successes", "failures", "latency_ms", "success_rate",
                 "quality", "quality_count")

    def __init__(self, model_id: str, alpha: float) -> None:
        self.model_id = model_id
        self.alpha = alpha
        self.successes = 0
        self.failures = 0
        self.latency_ms: float | None = None
        self.success_rate: float | None = None
        self.quality: float | None = None
        self.quality_count = 0

    def record(self, ok: bool, latency_ms: float | None) -> None:
        if ok:
            self.successes += 1
            if latency_ms is not None:
                self.latency_ms = self._ewma(self.latency_ms, latency_ms)
        else:
            self.failures += 1
        self.success_rate = self._ewma(self.success_rate, 1.0 if ok else 0.0)

    def record_quality(self, quality: float) -> None:
        self.quality_count += 1
        self.quality = self._ewma(self.quality, quality)

    def _ewma(self, current: float | None, value: float) -> float:
        return value if current is None else current + self.alpha * (value - current)

    def snapshot(self) -> ModelStatsSnapshot:
        return ModelStatsSnapshot(
            model_id=self.model_id,
            count=self.successes + self.failures,
            successes=self.successes,
            failures=self.failures,
            latency_ms=self.latency_ms,
            success_rate=self.success_rate,
            quality=self.quality,
            quality_count=self.quality_count,
        )


class StatsCore:
    """Statistics of every model seen, folded from outcomes."""

    def __init__(self, *, alpha: float = 0.1) -> None:
        if not (0 < alpha <= 1):
            raise InvalidInput("alpha must be in (0, 1]")
        self.alpha = alpha
        self._models: dict[str, ModelStats] = {}
        self._attempted: OrderedDict[tuple[str | None, str], None] = OrderedDict()

    def _stats(self, model_id: str) -> ModelStats:
        if not model_id:
            raise InvalidInput("model_id is required")
        stats = self._models.get(model_id)
        if stats is None:
            stats = self._models[model_id] = ModelStats(model_id, self.alpha)
        return stats

    def record(
        self,
        model_id: str,
        ok: bool,
        latency_ms: float | None = None,
        quality: float | None = None,
        *,
        error_kind: str | None = None,
    ) -> None:
        """Fold one call outcome (and optionally its quality score in [0, 1]). A failure whose
        ``error_kind`` is a request fault (``REQUEST_FAULT_KINDS``) is not the model's: ignored."""
        if not ok and error_kind in REQUEST_FAULT_KINDS:
            return
        if latency_ms is not None and (not isfinite(latency_ms) or latency_ms < 0):
            raise InvalidInput("latency_ms must be a finite number >= 0", model_id=model_id)
        _check_quality(quality, model_id)
        stats = self._stats(model_id)
        stats.record(bool(ok), latency_ms)
        if quality is not None:
            stats.record_quality(quality)

    def record_quality(self, model_id: str, quality: float) -> None:
        """Fold one quality score in [0, 1]."""
        _check_quality(quality, model_id)
        self._stats(model_id).record_quality(quality)

    def apply(self, event: events.Event) -> None:
        """Fold one log event (other types and events without a model are ignored)."""
        model_id = event.model_id
        if model_id is None:
            return
        if isinstance(event, events.RequestCompleted):
            if not event.cache_hit:
                self.record(model_id, True, event.latency_ms)
        elif isinstance(event, events.AttemptFailed):
            self._remember_attempt(event.request_id, model_id)
            self.record(model_id, False, event.latency_ms, error_kind=event.error_kind)
        elif isinstance(event, events.RequestFailed):
            if (event.request_id, model_id) not in self._attempted:
                self.record(model_id, False, error_kind=event.error_kind)
        elif isinstance(event, events.ResponseEvaluated):
            self.record_quality(model_id, event.quality_score)

    def _remember_attempt(self, request_id: str | None, model_id: str) -> None:
        self._attempted[(request_id, model_id)] = None
        if len(self._attempted) > _RECENT_ATTEMPTS:
            self._attempted.popitem(last=False)

    @classmethod
    def from_events(cls, history: Iterable[events.Event], *, alpha: float = 0.1) -> StatsCore:
        """Statistics folded from log events, oldest first."""
        core = cls(alpha=alpha)
        for event in history:
            core.apply(event)
        return core

    def snapshot(self) -> dict[str, ModelStatsSnapshot]:
        """Per-model statistics, picklable (pushed to the Selector)."""
        return {model_id: stats.snapshot() for model_id, stats in self._models.items()}


def _check_quality(quality: float | None, model_id: str) -> None:
    if quality is not None and not (isfinite(quality) and 0 <= quality <= 1):
        raise InvalidInput("quality must be in [0, 1]", model_id=model_id)
