"""Logged decisions: one per request with a ``ModelSelected``, joined with its outcome.

The decision is the request's first ``ModelSelected`` (the initial choice; later ones are
failovers). Its outcome is the request's first terminal event (``RequestCompleted`` or
``RequestFailed``) — so a failover chain counts as the outcome of the first choice, which is the
action the selection weights control. Quality prefers ``FeedbackRecorded`` (ground truth, then user,
then judge; the mean within that source), else ``ResponseEvaluated.quality_score``, else None.
Requests without a terminal event (still in flight, or lost) and decisions whose propensity is
not in (0, 1] or whose chosen model is not among the candidates are left out.

Learnt state (``learnt_quality="final"``, the default): a candidate's performance sub-score is
``0.4 ×`` the quality the selector had learnt for it (``ModelSelected.candidate_quality``) plus its
reliability part (success rate and latency, from live statistics) at the moment it decided. A
decision made early in a log, before outcomes were learnt, or in a moment of noisy statistics,
would be replayed with what was known then, while a policy loaded now meets what is known now (and
a policy tuned on that noise would split an agent type's requests at random in replay and send
them all one way when served). So each logged performance sub-score is replaced by the one the
selector would compute at the end of the log: ``0.4 ×`` the quality learnt from the whole log (the
Selector's fold, ``selection.QualityFold``, with ``priors`` per model, else 0.5) plus the model's
reliability part in the last decision that logged it, clipped to [0, 1]. The request's own parts
(capability, cost) and availability stay as logged. Decisions logged without
``candidate_quality`` (older logs, or performance from live statistics alone) are kept as logged;
``learnt_quality="logged"`` keeps every decision as logged.

Drift: the reliability part a served policy meets is not the last logged one. It moves with live
latency and success rates (between two serves of the same weights on the same log, here, by 0.003
for every agent type: enough to move a tenth of the requests of a tuned two-model policy across its
thresholds). So each re-scored decision also carries ``drift``: its candidates' performance with
the reliability parts the log held at ``DRIFT_QUANTILES`` of its decisions (with the learnt
quality of the end), which the tuner replays as well (see ``_tune``). They sample the live state a
served policy meets: a system started on a log seeds its statistics from the log's newest
outcomes (``selection.seed_stats``), so it starts at the log's last state and moves from there as
the log's recent states did; the snapshots are taken over the log's second half, five of them,
so that a policy whose choices flip within that range is seen to flip. (The state of a system
started on an empty log, the priors' reliability, is no longer among them: no served system starts
there, and with two models of equal priors it is an exact tie of reliability that a seeded serve
never meets, which the tuner then had to keep within the constraint as well, so a policy could
be held well below the cap at the states it would serve in.)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from math import isfinite
from pathlib import Path

from ..errors import InvalidInput
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
from ..selection._core import QUALITY_IN_PERFORMANCE
from ..selection._quality import QualityFold
from ._errors import NoDecisions

log = logging.getLogger(__name__)

EVENT_TYPES = ("ModelSelected", "RequestCompleted", "RequestFailed", "ResponseEvaluated",
               "FeedbackRecorded")
_FEEDBACK_ORDER = ("ground_truth", "user", "judge")
LEARNT_QUALITY = ("final", "logged")
#: Where in the log (share of its selections) the reliability snapshots for ``drift`` are taken:
#: five through its second half (the live states a seeded system meets; see the module docstring).
DRIFT_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9)


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
    #: the candidates' performance sub-scores under earlier reliability snapshots (one tuple per
    #: snapshot, in candidate order; see the module docstring); empty when not re-scored
    drift: tuple[tuple[float, ...], ...] = ()

    @property
    def chosen_index(self) -> int:
        """Position of the chosen model among ``candidates``."""
        return next(i for i, c in enumerate(self.candidates) if c.model_id == self.chosen)


def load_decisions(data_dir: str | Path, *, learnt_quality: str = "final",
                   priors: Mapping[str, float] | None = None) -> list[LoggedDecision]:
    """The logged decisions of the event log under ``data_dir`` (see the module docstring).

    Raises :class:`NoDecisions` when the directory holds no event log or no complete decision."""
    root = Path(str(data_dir))
    if "://" not in str(data_dir) and not root.is_dir():
        raise NoDecisions(f"no event log at {data_dir}", data_dir=str(data_dir))
    decisions = decisions_from_events(read_all_events(data_dir, EVENT_TYPES),
                                      learnt_quality=learnt_quality, priors=priors)
    if not decisions:
        raise NoDecisions(f"no logged decision with an outcome in {data_dir}",
                          data_dir=str(data_dir))
    return decisions


def decisions_from_events(events: Iterable[Event], *, learnt_quality: str = "final",
                          priors: Mapping[str, float] | None = None) -> list[LoggedDecision]:
    """Join events into decisions (may return an empty list), in order of their first selection;
    performance re-scored with the quality learnt from all ``events`` unless ``learnt_quality``
    is ``"logged"`` (see the module docstring).

    Events are taken in time order (ties in the order given), so "first" is by ``occurred_at``."""
    if learnt_quality not in LEARNT_QUALITY:
        raise InvalidInput(f"learnt_quality {learnt_quality!r}: use one of "
                           f"{', '.join(LEARNT_QUALITY)}", field="learnt_quality")
    fold = QualityFold(dict(priors or {})) if learnt_quality == "final" else None
    reliability: dict[str, float] = {}  # model -> its reliability part in the last decision
    ordered = sorted(events, key=lambda e: e.occurred_at)  # stable: input order on ties
    n_scored = sum(1 for e in ordered if isinstance(e, ModelSelected) and e.candidate_quality)
    marks = {max(1, int(n_scored * q)) for q in DRIFT_QUANTILES} if n_scored > 1 else set()
    snapshots: list[dict[str, float]] = []
    seen = 0
    selected: dict[str, ModelSelected] = {}
    terminal: dict[str, RequestCompleted | RequestFailed] = {}
    evaluated: dict[str, ResponseEvaluated] = {}
    feedback: dict[str, list[FeedbackRecorded]] = {}
    for event in ordered:
        rid = event.request_id
        if rid is None:
            continue
        if isinstance(event, ModelSelected):
            selected.setdefault(rid, event)
            if fold is not None and event.candidate_quality:
                for c, q in zip(event.candidates, event.candidate_quality, strict=False):
                    reliability[c.model_id] = c.performance - QUALITY_IN_PERFORMANCE * q
                seen += 1
                if seen in marks:
                    snapshots.append(dict(reliability))
        elif isinstance(event, RequestCompleted | RequestFailed):
            terminal.setdefault(rid, event)
        elif isinstance(event, ResponseEvaluated):
            evaluated.setdefault(rid, event)
            if fold is not None:
                fold.apply(event)
        elif isinstance(event, FeedbackRecorded):
            feedback.setdefault(rid, []).append(event)
            if fold is not None:
                fold.apply(event)
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
        decision = _decision(sel, end, quality)
        if fold is not None and sel.candidate_quality is not None:
            decision = _rescored(decision, sel.candidate_quality, fold, reliability, snapshots)
        out.append(decision)
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


def _rescored(decision: LoggedDecision, then: tuple[float, ...], fold: QualityFold,
              reliability: Mapping[str, float],
              snapshots: Sequence[Mapping[str, float]] = ()) -> LoggedDecision:
    """``decision`` with each candidate's performance as the selector would score it at the end
    of the log, and under each earlier reliability snapshot (``drift``; see the module
    docstring)."""
    if len(then) != len(decision.candidates):
        return decision
    agent = decision.agent_type or "default"
    learnt = [QUALITY_IN_PERFORMANCE * fold.quality(c.model_id, agent) for c in decision.candidates]
    own = [c.performance - QUALITY_IN_PERFORMANCE * q
           for c, q in zip(decision.candidates, then, strict=True)]

    def scored(parts: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(min(1.0, max(0.0, q + parts.get(c.model_id, r)))
                     for c, q, r in zip(decision.candidates, learnt, own, strict=True))

    final = scored(reliability)
    moved = [c.model_copy(update={"performance": p})
             for c, p in zip(decision.candidates, final, strict=True)]
    drift = tuple(scored(snap) for snap in snapshots)
    return dataclasses.replace(decision, candidates=tuple(moved), drift=drift)


def _quality(feedback: list[FeedbackRecorded], evaluated: ResponseEvaluated | None) -> float | None:
    for source in _FEEDBACK_ORDER:
        scores = [f.score for f in feedback if f.source == source]
        if scores:
            return sum(scores) / len(scores)
    return evaluated.quality_score if evaluated is not None else None
