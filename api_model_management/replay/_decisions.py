"""Logged decisions: one per request with a ``ModelSelected``, joined with its outcome.

The decision is the request's first ``ModelSelected`` (the initial choice; later ones are
failovers). Its outcome is the request's first terminal event (``RequestCompleted`` or
``RequestFailed``) — so a failover chain counts as the outcome of the first choice, which is the
action the selection weights control. Quality prefers ``FeedbackRecorded`` (ground truth, then user,
then judge; the mean within that source), else ``ResponseEvaluated.quality_score``, else None.
Requests without a terminal event (still in flight, or lost) and decisions whose propensity is
not in (0, 1] or whose chosen model is not among the candidates are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from math import isfinite
from pathlib import Path

from ..events import (
    CandidateScore,
    Event,
    FeedbackRecorded,
    ModelSelected,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from ..events._ingest import read_all_events
from ._errors import NoDecisions

log = logging.getLogger(__name__)

EVENT_TYPES = ("ModelSelected", "RequestCompleted", "RequestFailed", "ResponseEvaluated",
               "FeedbackRecorded")
_FEEDBACK_ORDER = ("ground_truth", "user", "judge")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a request: success, exact cost, latency and quality (None if unscored)."""

    success: bool
    cost_usd: Decimal
    latency_ms: float
    quality: float | None


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One logged selection: the eligible candidates with sub-scores, the chosen model, the
    logging policy's probability of that choice, and the request's outcome."""

    request_id: str
    agent_type: str | None
    priority: str
    candidates: tuple[CandidateScore, ...]
    chosen: str
    propensity: float
    weights_version: str
    explored: bool
    outcome: Outcome

    @property
    def chosen_index(self) -> int:
        """Position of the chosen model among ``candidates``."""
        return next(i for i, c in enumerate(self.candidates) if c.model_id == self.chosen)


def load_decisions(data_dir: str | Path) -> list[LoggedDecision]:
    """The logged decisions of the event log under ``data_dir`` (see the module docstring).

    Raises :class:`NoDecisions` when the directory holds no event log or no complete decision."""
    root = Path(str(data_dir))
    if "://" not in str(data_dir) and not root.is_dir():
        raise NoDecisions(f"no event log at {data_dir}", data_dir=str(data_dir))
    decisions = decisions_from_events(read_all_events(data_dir, EVENT_TYPES))
    if not decisions:
        raise NoDecisions(f"no logged decision with an outcome in {data_dir}",
                          data_dir=str(data_dir))
    return decisions


def decisions_from_events(events: Iterable[Event]) -> list[LoggedDecision]:
    """Join events into decisions (may return an empty list), in order of their first selection.

    Events are taken in time order (ties in the order given), so "first" is by ``occurred_at``."""
    selected: dict[str, ModelSelected] = {}
    terminal: dict[str, RequestCompleted | RequestFailed] = {}
    evaluated: dict[str, ResponseEvaluated] = {}
    feedback: dict[str, list[FeedbackRecorded]] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):  # stable: input order on ties
        rid = event.request_id
        if rid is None:
            continue
        if isinstance(event, ModelSelected):
            selected.setdefault(rid, event)
        elif isinstance(event, RequestCompleted | RequestFailed):
            terminal.setdefault(rid, event)
        elif isinstance(event, ResponseEvaluated):
            evaluated.setdefault(rid, event)
        elif isinstance(event, FeedbackRecorded):
            feedback.setdefault(rid, []).append(event)
    out: list[LoggedDecision] = []
    dropped = 0
    for rid, sel in selected.items():
        end = terminal.get(rid)
        if end is None:
            continue
        if not _valid(sel):
            dropped += 1
            continue
        quality = _quality(feedback.get(rid, []), evaluated.get(rid))
        out.append(_decision(sel, end, quality))
    if dropped:
        log.warning("replay: left out %d decisions with a bad propensity or chosen model", dropped)
    return out


def _valid(sel: ModelSelected) -> bool:
    p = sel.propensity
    return (isfinite(p) and 0.0 < p <= 1.0 and sel.model_id is not None
            and any(c.model_id == sel.model_id for c in sel.candidates))


def _decision(sel: ModelSelected, end: RequestCompleted | RequestFailed,
              quality: float | None) -> LoggedDecision:
    success = isinstance(end, RequestCompleted)
    outcome = Outcome(success=success, cost_usd=end.cost_usd, latency_ms=end.latency_ms,
                      quality=quality if success else 0.0)
    return LoggedDecision(
        request_id=sel.request_id or "", agent_type=sel.agent_type, priority=sel.priority,
        candidates=tuple(sel.candidates), chosen=sel.model_id or "", propensity=sel.propensity,
        weights_version=sel.weights_version, explored=sel.explored, outcome=outcome,
    )


def _quality(feedback: list[FeedbackRecorded], evaluated: ResponseEvaluated | None) -> float | None:
    for source in _FEEDBACK_ORDER:
        scores = [f.score for f in feedback if f.source == source]
        if scores:
            return sum(scores) / len(scores)
    return evaluated.quality_score if evaluated is not None else None
