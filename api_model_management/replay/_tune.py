"""Searching selection weights that maximise the estimated objective on the logged decisions.

Candidates are a regular grid on the weight simplex (every vector of multiples of ``grid_step``
summing to 1) plus ``n_random`` points drawn uniformly from the simplex (a seeded
``random.Random``). Each is replayed as a target policy; the best estimate of the mean reward by
``estimator`` wins (ties: the first found, grid before random). With ``per_agent_type`` the search
is repeated on the decisions of each agent type that has at least ``min_agent_decisions`` of them,
giving ``agent_weights`` overrides. ``min_ess`` skips candidates whose effective sample size is
too small for the estimate to be trusted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

from ..config import SelectionWeights
from ..errors import InvalidInput
from ._decisions import LoggedDecision
from ._errors import NoDecisions
from ._estimators import ESTIMATORS, Objective, PreparedLog, ReplayReport
from ._policy import TargetPolicy


@dataclass(frozen=True)
class TuneResult:
    """The best weights found, their replay, and (if given) the baseline's replay."""

    weights: SelectionWeights
    value: float
    estimator: str
    report: ReplayReport
    evaluated: int
    agent_weights: dict[str, SelectionWeights] = field(default_factory=dict)
    baseline: ReplayReport | None = None

    def estimated(self) -> dict:
        """What goes under ``estimated`` in a weights file."""
        out = {"estimator": self.estimator, "value": self.value,
               "candidates_evaluated": self.evaluated, "replay": self.report.to_dict()}
        if self.baseline is not None:
            out["baseline_value"] = self.baseline.value(self.estimator)
        return out


def simplex_grid(step: float) -> list[SelectionWeights]:
    """Every weight vector whose components are multiples of ``step`` (``1/step`` an integer)."""
    m = round(1.0 / step) if step > 0 else 0
    if m < 1 or abs(m * step - 1.0) > 1e-9:
        raise InvalidInput(f"grid_step {step!r}: use 1/k for a whole k", field="grid_step")
    return [_weights((a / m, b / m, c / m, (m - a - b - c) / m))
            for a, b, c in product(range(m + 1), repeat=3) if a + b + c <= m]


def random_simplex(n: int, rng: random.Random) -> list[SelectionWeights]:
    """``n`` weight vectors drawn uniformly from the simplex (normalised exponentials)."""
    out = []
    for _ in range(n):
        draws = [rng.expovariate(1.0) for _ in range(4)]
        total = sum(draws)
        out.append(_weights(tuple(x / total for x in draws)))
    return out


def tune(
    decisions: Sequence[LoggedDecision],
    objective: Objective | None = None,
    *,
    estimator: str = "dr",
    grid_step: float = 0.1,
    n_random: int = 100,
    seed: int = 0,
    epsilon: float = 0.0,
    per_agent_type: bool = False,
    min_agent_decisions: int = 50,
    min_ess: float = 0.0,
    baseline: TargetPolicy | None = None,
) -> TuneResult:
    """Search the weights maximising the ``estimator``'s estimate of the mean reward.

    Raises :class:`NoDecisions` on an empty log and ``InvalidInput`` on bad search settings or
    when no candidate reaches ``min_ess``."""
    if estimator not in ESTIMATORS:
        raise InvalidInput(f"estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}",
                           field="estimator")
    if not decisions:
        raise NoDecisions("no logged decisions to tune on")
    if n_random < 0:
        raise InvalidInput("n_random must be >= 0", field="n_random")
    candidates = simplex_grid(grid_step) + random_simplex(n_random, random.Random(seed))
    prepared = PreparedLog(decisions, objective)
    best = _search(prepared, candidates, estimator, epsilon, min_ess)
    agent_weights = {}
    if per_agent_type:
        agent_weights = _per_agent(decisions, prepared.objective, candidates, estimator, epsilon,
                                   min_ess, min_agent_decisions)
    policy = TargetPolicy(best, agent_weights, epsilon)
    report = prepared.replay(policy)
    return TuneResult(
        weights=best, value=report.value(estimator) or 0.0, estimator=estimator, report=report,
        evaluated=len(candidates) * (1 + len(agent_weights)), agent_weights=agent_weights,
        baseline=prepared.replay(baseline) if baseline is not None else None,
    )


def _search(prepared: PreparedLog, candidates: list[SelectionWeights], estimator: str,
            epsilon: float, min_ess: float) -> SelectionWeights:
    best, best_value, supported = None, None, False
    for w in candidates:
        report = prepared.replay(TargetPolicy(w, {}, epsilon), metrics=("reward",))
        value = report.value(estimator)
        if value is None:
            continue
        supported = True
        if report.effective_sample_size < min_ess:
            continue
        if best_value is None or value > best_value:
            best, best_value = w, value
    if not supported:
        raise InvalidInput(
            f"the log supports none of the candidate weights under {estimator} (every importance "
            "weight is 0): use dr or dm, or log with exploration (selection.exploration_epsilon)",
            field="estimator")
    if best is None:
        raise InvalidInput(f"no candidate weights reach an effective sample size of {min_ess}",
                           field="min_ess")
    return best


def _per_agent(decisions: Sequence[LoggedDecision], objective: Objective,
               candidates: list[SelectionWeights], estimator: str, epsilon: float,
               min_ess: float, min_decisions: int) -> dict[str, SelectionWeights]:
    groups: dict[str, list[LoggedDecision]] = {}
    for d in decisions:
        if d.agent_type:
            groups.setdefault(d.agent_type, []).append(d)
    return {
        agent: _search(PreparedLog(group, objective), candidates, estimator, epsilon, min_ess)
        for agent, group in sorted(groups.items()) if len(group) >= min_decisions
    }


def _weights(parts: tuple[float, ...]) -> SelectionWeights:
    cap, cost, perf, avail = parts
    return SelectionWeights(capability=cap, cost=cost, performance=perf, availability=avail)
