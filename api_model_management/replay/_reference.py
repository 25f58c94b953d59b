"""Reference policies that make a tuned policy's cost and quality readable.

- **always-strongest**: every request goes to its eligible candidate with the highest mean logged
  quality (a failure counts 0; a model the log never chose ranks last; ties: the cheaper, then the
  smaller model id);
- **always-cheapest**: every request goes to its cheapest candidate (the highest cost sub-score:
  the lowest expected price of that request; ties: the higher mean quality, then the smaller id).

Both are replayed off-policy like any target, with the same estimator. Constrained tuning states
its limit as a share of always-strongest's estimate; :func:`compare` puts a policy between the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import inf

from ..events import CandidateScore
from ._estimators import PreparedLog, ReplayReport

STRONGEST, CHEAPEST = "always-strongest", "always-cheapest"


@dataclass(frozen=True)
class Reference:
    """A reference policy's replay; ``model`` is the model it picks most often."""

    name: str
    model: str
    report: ReplayReport
    #: the candidate it picks on each decision of the log it was replayed on
    picks: tuple[int, ...] = ()


def references(prepared: PreparedLog) -> dict[str, Reference]:
    """Always-strongest and always-cheapest, replayed on ``prepared`` (every metric)."""
    quality = prepared.model_means["quality"]
    out = {}
    for name, key in ((STRONGEST, _strongest_key), (CHEAPEST, _cheapest_key)):
        picks = [_first(d.candidates, key, quality) for d in prepared.decisions]
        top = Counter(d.candidates[i].model_id for d, i in zip(prepared.decisions, picks,
                                                               strict=True))
        out[name] = Reference(name, top.most_common(1)[0][0], prepared.replay_choices(picks),
                              tuple(picks))
    return out


def compare(report: ReplayReport, refs: dict[str, Reference], estimator: str) -> dict:
    """``report`` relative to the references, by ``estimator``: its shares of always-strongest's
    quality and cost, what it gains and spends over always-cheapest, and the rate (quality per
    USD) at which always-cheapest and always-strongest break even — the ``cost_per_usd`` above
    which the reward prefers the cheap model."""
    q, c = _point(report, "quality", estimator), _point(report, "cost_usd", estimator)
    strong, cheap = refs[STRONGEST].report, refs[CHEAPEST].report
    qs, cs = _point(strong, "quality", estimator), _point(strong, "cost_usd", estimator)
    qc, cc = _point(cheap, "quality", estimator), _point(cheap, "cost_usd", estimator)
    return {
        "quality_share_of_strongest": _ratio(q, qs),
        "cost_share_of_strongest": _ratio(c, cs),
        "quality_gain_over_cheapest": _diff(q, qc),
        "extra_cost_over_cheapest_usd": _diff(c, cc),
        "break_even_cost_per_usd": _ratio(_diff(qs, qc), _diff(cs, cc)),
    }


_Key = Callable[[CandidateScore, dict[str, float]], tuple[float, float, str]]


def _first(candidates: Sequence[CandidateScore], key: _Key, quality: dict[str, float]) -> int:
    """Index of the candidate with the smallest ``key``."""
    return min(range(len(candidates)), key=lambda i: key(candidates[i], quality))


def _strongest_key(c: CandidateScore, quality: dict[str, float]) -> tuple[float, float, str]:
    return (-quality.get(c.model_id, -inf), -c.cost, c.model_id)


def _cheapest_key(c: CandidateScore, quality: dict[str, float]) -> tuple[float, float, str]:
    return (-c.cost, -quality.get(c.model_id, -inf), c.model_id)


def _point(report: ReplayReport, metric: str, estimator: str) -> float | None:
    return report.metrics[metric].get(estimator) if metric in report.metrics else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None
