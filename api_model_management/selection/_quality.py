"""What the system has learnt about answer quality, per (model, agent type): a fold over the log.

Each request contributes one observation of its answer's quality in [0, 1], from the best signal
it has: feedback from the pipeline or a human (``FeedbackRecorded``, source ``user`` or
``ground_truth``) over a judge model's rating (``FeedbackRecorded``, source ``judge``) over the
calibrated heuristic score (``ResponseEvaluated``). A better signal that arrives later replaces
the request's earlier one.

Signals are never mixed: a heuristic score (calibrated to a judge's 0-10 rating), a judge's
rating and an outcome (did the tests pass) are on different scales, and an agent type whose
pipeline reports outcomes should not have them diluted by the heuristic scores of requests it did
not report. So each agent type is scored on the best tier of signal it has had for any model
(outcome over judge over heuristic), and only that tier's observations count for it: models stay
comparable within an agent type, and the heuristic decides only where nothing better was seen.

The estimate for a cell (model, agent type) at the agent type's tier is a posterior mean shrunk
twice (empirical Bayes with pseudo-counts): the model's mean over all its agent types at that tier
is shrunk towards the model's configured ``quality_prior`` with ``MODEL_PSEUDO`` observations, and
the cell's mean towards that with ``CELL_PSEUDO`` observations::

    model  = (MODEL_PSEUDO · prior + Σ_model s) / (MODEL_PSEUDO + n_model)
    cell   = (CELL_PSEUDO · model  + Σ_cell s)  / (CELL_PSEUDO  + n_cell)

Why this estimator: a thin cell (a new agent type, a model rarely chosen) borrows strength from the
model's other traffic and then from its prior, so one lucky answer cannot flip a choice, while a
cell with hundreds of observations is its own mean; it is a plain fold (sums and counts per tier),
so rebuilding it from the log gives the same numbers as following the log live, and it costs O(1)
per event. Observations are bounded by ``recent_requests`` for replacement: feedback for an older
request is added without removing its heuristic score.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..events import Event, FeedbackRecorded, ResponseEvaluated

#: Pseudo-observations of the model's prior, and of the model's mean for one agent type.
MODEL_PSEUDO = 5.0
CELL_PSEUDO = 10.0
#: The prior of a model the fold was given none for.
DEFAULT_PRIOR = 0.5
#: How much better a signal is (a higher rank replaces a lower one for the same request).
SOURCE_RANK = {"heuristic": 1, "judge": 2, "user": 3, "ground_truth": 3}
_TIERS = 4  # ranks 1..3 index the per-tier sums

Cell = tuple[str, str]  # (model_id, agent_type)


@dataclass(frozen=True, slots=True)
class QualityEstimate:
    """The learnt quality of one (model, agent type): the estimate and how many observations."""

    model_id: str
    agent_type: str
    quality: float
    observations: int


class QualityFold:
    """Sums and counts per cell and per model, with the best observation of each recent request
    (so a better signal can replace it)."""

    def __init__(self, priors: Mapping[str, float], *, recent_requests: int = 200_000) -> None:
        self.priors = dict(priors)
        self.recent_requests = recent_requests
        #: cell -> [sum, count] per tier (index = SOURCE_RANK); model -> the same
        self._cells: dict[Cell, list[list[float]]] = {}
        self._models: dict[str, list[list[float]]] = {}
        #: agent type -> the best tier observed for it (any model); never decreases
        self._agent_tier: dict[str, int] = {}
        #: (request id, model id) -> (rank, score, agent type) of the observation held for it
        self._requests: OrderedDict[tuple[str, str], tuple[int, float, str]] = OrderedDict()
        #: request id -> (model id, agent type) of its last answer seen (recent requests)
        self._answers: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.version = 0  # bumps on every change (routers take snapshots)

    # -- folding -------------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Fold one event; True when an estimate changed."""
        if isinstance(event, ResponseEvaluated):
            return self._observe(event.request_id, event.model_id, event.agent_type,
                                 SOURCE_RANK["heuristic"], event.quality_score)
        if isinstance(event, FeedbackRecorded):
            return self._observe(event.request_id, event.model_id, event.agent_type,
                                 SOURCE_RANK.get(event.source, 1), event.score)
        return False

    def apply_all(self, events: Iterable[Event]) -> int:
        return sum(1 for e in events if self.apply(e))

    def _observe(self, request_id: str | None, model_id: str | None, agent_type: str | None,
                 rank: int, score: float) -> bool:
        """One observation of ``model_id``'s answer to ``request_id``; it replaces an earlier
        one of that answer from a signal no better than it."""
        if model_id is None or not 0.0 <= score <= 1.0:
            return False
        agent = agent_type or "default"
        if request_id is not None:
            self._answers[request_id] = (model_id, agent)
            self._answers.move_to_end(request_id)
            if len(self._answers) > self.recent_requests:
                self._answers.popitem(last=False)
            key = (request_id, model_id)
            held = self._requests.get(key)
            if held is not None:
                if held[0] > rank or (held[0] == rank and held[1] == score):
                    return False
                self._add(model_id, held[2], held[0], -held[1], -1)
            self._requests[key] = (rank, score, agent)
            self._requests.move_to_end(key)
            if len(self._requests) > self.recent_requests:
                self._requests.popitem(last=False)
        self._add(model_id, agent, rank, score, 1)
        if rank > self._agent_tier.get(agent, 0):
            self._agent_tier[agent] = rank
        self.version += 1
        return True

    def _add(self, model_id: str, agent: str, rank: int, score: float, count: int) -> None:
        for sums in (self._cells.setdefault((model_id, agent), _empty()),
                     self._models.setdefault(model_id, _empty())):
            sums[rank][0] += score
            sums[rank][1] += count

    def answer_of(self, request_id: str) -> tuple[str, str] | None:
        """(model id, agent type) of a recent request's answer, if the log showed it."""
        return self._answers.get(request_id)

    # -- estimates -----------------------------------------------------------------------------
    def tier(self, agent_type: str) -> int:
        """The signal tier ``agent_type`` is scored on (``SOURCE_RANK``; 0: nothing seen)."""
        return self._agent_tier.get(agent_type, 0)

    def model_quality(self, model_id: str, tier: int | None = None) -> float:
        """The model's mean at ``tier`` (default: its best tier), shrunk to its prior."""
        prior = self.priors.get(model_id, DEFAULT_PRIOR)
        sums = self._models.get(model_id)
        if sums is None:
            return prior
        if tier is None:
            tier = next((t for t in range(_TIERS - 1, 0, -1) if sums[t][1] > 0), 0)
        total, n = sums[tier] if tier else (0.0, 0.0)
        return (MODEL_PSEUDO * prior + total) / (MODEL_PSEUDO + n)

    def quality(self, model_id: str, agent_type: str) -> float:
        """The estimate for ``model_id`` answering ``agent_type`` requests, on the agent type's
        tier of signal."""
        tier = self.tier(agent_type)
        base = self.model_quality(model_id, tier)
        sums = self._cells.get((model_id, agent_type))
        total, n = sums[tier] if sums is not None and tier else (0.0, 0.0)
        return (CELL_PSEUDO * base + total) / (CELL_PSEUDO + n)

    def observations(self, model_id: str, agent_type: str) -> int:
        """How many observations the estimate of the cell rests on (at its tier)."""
        sums = self._cells.get((model_id, agent_type))
        tier = self.tier(agent_type)
        return int(sums[tier][1]) if sums is not None and tier else 0

    def estimates(self) -> dict[Cell, QualityEstimate]:
        """Every cell with observations (a snapshot to push to routers)."""
        return {cell: QualityEstimate(cell[0], cell[1], self.quality(*cell),
                                      self.observations(*cell))
                for cell in self._cells if self._seen(cell)}

    def snapshot(self) -> QualitySnapshot:
        """What routers need to score: per cell and per model (picklable, small)."""
        return QualitySnapshot(
            version=self.version,
            cells={cell: self.quality(*cell) for cell in self._cells if self._seen(cell)},
            models={m: self.model_quality(m) for m, sums in self._models.items()
                    if any(n > 0 for _, n in sums)},
        )

    def _seen(self, cell: Cell) -> bool:
        return any(n > 0 for _, n in self._cells[cell])


def _empty() -> list[list[float]]:
    return [[0.0, 0.0] for _ in range(_TIERS)]


@dataclass(frozen=True)
class QualitySnapshot:
    """Learnt quality as routers use it: per (model, agent type), else per model, else the
    model's prior."""

    version: int
    cells: dict[Cell, float]
    models: dict[str, float]

    def quality(self, model_id: str, agent_type: str, prior: float) -> float:
        hit = self.cells.get((model_id, agent_type))
        if hit is not None:
            return hit
        base = self.models.get(model_id)
        if base is None:
            return prior
        return base  # an agent type never seen: the model's mean (already shrunk to the prior)
