"""The target policy of a replay: what the Selector would pick with other weights.

Over a decision's logged candidates (the eligible models), each candidate's score is the weighted
sum of its four logged sub-scores with ``adjust_for_priority(weights, priority)`` — the Selector's
own adjustment — where ``weights`` is ``agent_weights[agent_type]`` if given, else ``weights``. The
greedy choice is the best score (ties: the higher cost sub-score, i.e. the cheaper model, then
the smaller ``model_id``: the Selector breaks exact ties by configuration order, which the event
does not record, and the logged order cannot be used because an explored choice is moved first).
With ``value_usd`` in the weights the score also loses the candidate's expected cost over
``value_usd``, the expected cost read back from the logged log-price sub-score (its exact inverse,
``selection.expected_cost_usd``), as the Selector computes it. With ``epsilon`` ε > 0 the policy explores as the Selector does: the greedy model
has probability ``1 − ε + ε/n``, every other ``ε/n``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import SelectionWeights
from ..errors import InvalidInput
from ..selection._core import adjust_for_priority, expected_cost_usd
from ._decisions import LoggedDecision


@dataclass(frozen=True)
class TargetPolicy:
    """Weights (and per-agent-type overrides) to replay, with an optional exploration rate."""

    weights: SelectionWeights
    agent_weights: Mapping[str, SelectionWeights] = field(default_factory=dict)
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise InvalidInput("epsilon must be in [0, 1]", field="epsilon")

    def weights_for(self, agent_type: str | None, priority: str) -> SelectionWeights:
        """The weights the Selector would use for this agent type and priority."""
        base = self.agent_weights.get(agent_type, self.weights) if agent_type else self.weights
        return adjust_for_priority(base, priority)

    def greedy_index(self, decision: LoggedDecision) -> int:
        """Index (into ``decision.candidates``) of the model this policy's greedy choice picks."""
        w = self.weights_for(decision.agent_type, decision.priority)
        return greedy_index(decision, w)

    def probabilities(self, decision: LoggedDecision) -> list[float]:
        """This policy's probability of each candidate of ``decision`` (sums to 1)."""
        return probabilities(self.greedy_index(decision), len(decision.candidates), self.epsilon)


#: A candidate as the greedy choice reads it: its four sub-scores, its expected USD and its id.
CandidateRow = tuple[float, float, float, float, float, str]


def candidate_rows(decision: LoggedDecision) -> tuple[CandidateRow, ...]:
    """``decision``'s candidates as :data:`CandidateRow` (computed once per decision by a
    replay that scores it for hundreds of weights)."""
    return tuple((c.capability, c.cost, c.performance, c.availability,
                  expected_cost_usd(c.cost), c.model_id) for c in decision.candidates)


def greedy_index(decision: LoggedDecision, w: SelectionWeights) -> int:
    """The best-scoring candidate under (already priority-adjusted) weights ``w``."""
    return best_row(candidate_rows(decision), w)


def best_row(rows: tuple[CandidateRow, ...], w: SelectionWeights) -> int:
    """:func:`greedy_index` on a decision's :func:`candidate_rows`."""
    best, best_key, best_id = 0, None, ""
    per_usd = 1.0 / w.value_usd if w.value_usd else 0.0
    wcap, wcost, wperf, wavail = w.capability, w.cost, w.performance, w.availability
    for i, (cap, cost, perf, avail, usd, model_id) in enumerate(rows):
        score = wcap * cap + wcost * cost + wperf * perf + wavail * avail
        if per_usd:
            score -= per_usd * usd
        key = (score, cost)
        if best_key is None or key > best_key or (key == best_key and model_id < best_id):
            best, best_key, best_id = i, key, model_id
    return best


def probabilities(greedy: int, n: int, epsilon: float) -> list[float]:
    """Epsilon-greedy probabilities over ``n`` candidates."""
    share = epsilon / n
    probs = [share] * n
    probs[greedy] += 1.0 - epsilon
    return probs
