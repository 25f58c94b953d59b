"""``PerformanceMonitor``: the original system's name for performance metrics, over the log.

The original kept metrics in SQLite (``PerformanceMonitor(Path("data/performance.db"))``); here
the event log is the store, so a file path means "the data directory holding it" and the metrics
are projections over the last ``window_hours``.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import InvalidInput
from ..selection import ModelStatsSnapshot
from ._api import Projections
from ._report import Report


class PerformanceMonitor:
    """Metrics per model and summaries per agent type over a recent window (thin facade)."""

    def __init__(self, path_or_data_dir: str | Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        path = Path(path_or_data_dir)
        self.data_dir = path.parent if path.suffix or path.is_file() else path
        self._projections = Projections(self.data_dir, clock=clock)

    def close(self) -> None:
        self._projections.close()

    def _report(self, agent_type: str | None, window_hours: float) -> Report:
        _check_window(window_hours)
        if agent_type is not None and not isinstance(agent_type, str):
            raise InvalidInput("agent_type must be a string", field="agent_type")
        self._projections.refresh()
        since = self._projections.now() - timedelta(hours=window_hours)
        return self._projections.report(since=since, agent_type=agent_type)

    def model_stats(self, window_hours: float = 24) -> dict[str, ModelStatsSnapshot]:
        """Observed performance per model over the window, in the form the selector scores
        (``SelectorCore.update_stats``): attempts, success rate, latency, quality."""
        report = self._report(None, window_hours)
        latency = {r.model_id: r.avg_latency_ms for r in report.latency_by_model if r.model_id}
        quality = {r.model_id: r for r in report.quality_by_model if r.model_id}
        out = {}
        for row in report.success_by_model:
            q = quality.get(row.model_id)
            out[row.model_id] = ModelStatsSnapshot(
                model_id=row.model_id, count=row.attempts, successes=row.successes,
                failures=row.failures, latency_ms=latency.get(row.model_id),
                success_rate=row.success_rate, quality=q.avg_quality if q else None,
                quality_count=q.evaluations if q else 0,
            )
        return out

    def get_model_metrics(self, model_id: str, window_hours: float = 24) -> dict[str, Any]:
        """Requests, success rate, latency percentiles, cost and quality of one model."""
        return _model_metrics(self._report(None, window_hours), model_id, window_hours)

    def get_performance_summary(self, agent_type: str | None = None,
                                window_hours: float = 24) -> dict[str, Any]:
        """Totals over the window (``total_requests``, ``total_cost``, ``average_success_rate``,
        ...) and ``models``: the metrics of every model seen."""
        report = self._report(agent_type, window_hours)
        models = sorted({r.model_id for r in report.cost_by_model if r.model_id}
                        | {r.model_id for r in report.success_by_model})
        return {
            "agent_type": agent_type,
            "window_hours": window_hours,
            "total_requests": report.requests,
            "successful_requests": report.completed,
            "failed_requests": report.failed,
            "average_success_rate": report.success_rate,
            "total_cost": report.total_cost_usd,
            "average_cost_per_request": _per(report.total_cost_usd, report.requests),
            "average_latency_ms": _weighted_latency(report),
            "average_quality": report.average_quality,
            "failovers": report.failovers,
            "cache_hits": report.cache_hits,
            "cache_hit_rate": report.cache_hit_rate,
            "saved_cost": report.saved_cost_usd,
            "models": {m: _model_metrics(report, m, window_hours) for m in models},
        }


def _model_metrics(report: Report, model_id: str, window_hours: float) -> dict[str, Any]:
    cost = [r for r in report.cost_by_model if r.model_id == model_id]
    latency = next((r for r in report.latency_by_model if r.model_id == model_id), None)
    success = next((r for r in report.success_by_model if r.model_id == model_id), None)
    quality = next((r for r in report.quality_by_model if r.model_id == model_id), None)
    requests = sum(r.requests for r in cost)
    total_cost = sum((r.cost_usd for r in cost), Decimal(0))
    return {
        "model_id": model_id,
        "window_hours": window_hours,
        "total_requests": requests,
        "failed_requests": sum(r.failed_requests for r in cost),
        "attempts": success.attempts if success else 0,
        "success_rate": success.success_rate if success else None,
        "failovers": success.failovers if success else 0,
        "average_latency_ms": latency.avg_latency_ms if latency else None,
        "p50_latency_ms": latency.p50_latency_ms if latency else None,
        "p95_latency_ms": latency.p95_latency_ms if latency else None,
        "p99_latency_ms": latency.p99_latency_ms if latency else None,
        "total_cost": total_cost,
        "average_cost": _per(total_cost, requests),
        "input_tokens": sum(r.input_tokens for r in cost),
        "output_tokens": sum(r.output_tokens for r in cost),
        "average_quality": quality.avg_quality if quality else None,
        "low_quality_share": quality.low_quality_share if quality else None,
    }


def _check_window(window_hours: object) -> None:
    if isinstance(window_hours, bool) or not isinstance(window_hours, int | float) or not (
        0 < window_hours < float("inf")
    ):
        raise InvalidInput("window_hours must be a positive number of hours", field="window_hours")


def _per(total: Decimal, count: int) -> Decimal | None:
    return (total / count).quantize(Decimal("1e-12")) if count else None


def _weighted_latency(report: Report) -> float | None:
    rows = report.latency_by_model
    calls = sum(r.requests for r in rows)
    return sum(r.avg_latency_ms * r.requests for r in rows) / calls if calls else None
