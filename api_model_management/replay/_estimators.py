"""Off-policy estimates of what a target policy would have achieved on the logged decisions.

For decision ``i`` the logging policy chose candidate ``a_i`` with probability ``p_i`` (the logged
propensity) and observed value ``v_i``; the target policy gives candidate ``a`` probability
``π_i(a)``; the importance weight is ``w_i = π_i(a_i) / p_i``. With ``N`` decisions:

- **IPS** ``Σ w_i v_i / N`` — unbiased when every action the target may take had ``p > 0``;
- **SNIPS** ``Σ w_i v_i / Σ w_i`` — self-normalised, within the range of the logged values
  (None when every weight is 0);
- **DM** ``Σ_i Σ_a π_i(a) q(a) / N`` — ``q`` is the outcome model: the mean logged value of model
  ``a`` on the decision's agent type, shrunk with ``AGENT_PSEUDO`` pseudo-observations (the
  selector's ``CELL_PSEUDO``: per-task differences are real but thin) towards a two-way prior:
  the model's mean over all agent types, moved by the agent type's own effect as seen on every
  model (``_AGENT_EFFECT``: added for quality, reward and failure rate, which hard tasks lower
  for every model alike; multiplied for cost and latency, which a long task scales for every
  model alike), itself shrunk to none with ``AGENT_PSEUDO``. A model rarely chosen for an agent
  type then leans on how that agent type went for the others, not on the model's mean over
  easier or cheaper ones: on a routellm log (a strong model chosen for 449 of 3,000 decisions),
  the per-subject quality gap it estimates ranks the real gaps with Spearman 0.51 against 0.41
  for the model's mean alone, and a per-subject choice made from it at 40% of always-strong's
  cost is 1 point more accurate on held-out prompts. The overall mean stands for a model never
  chosen. Cost is modelled per request instead (``_predicted_cost``): each candidate's logged cost
  sub-score is the log-price of the request's expected USD at that model's prices (its exact
  inverse, ``selection.expected_cost_usd``), so the outcome model is that expected cost times the
  ratio of real to expected cost, per model and agent type, shrunk the same two-way (towards the
  model's ratio moved by the agent type's ratio on every model). A mean per model and agent type
  ignores that a long prompt costs more: a policy that sends a subject's long prompts to the cheap
  model and its short ones to the dear model was costed like one that sends any of them, from the
  few logged requests the dear model answered there, and among hundreds of candidates the tuner
  picked those whose cost that noise underestimated;
- **DR** ``DM + Σ w_i (v_i − q(a_i)) / N`` — doubly robust: unbiased if either the propensities or
  the outcome model are right.

Zero support: when the logging policy was deterministic (``p_i = 1``) and the target picks another
model, nothing was logged for the target's choice. Such decisions (``n_unsupported``) contribute
weight 0 to IPS/SNIPS (biased towards 0 / towards the supported decisions); DM and DR still
estimate them through the outcome model.

Every metric (``reward``, ``quality``, ``cost_usd``, ``latency_ms``, ``failure_rate``) gets all four
estimates, the logged mean, and standard errors for IPS, SNIPS (delta method) and DR; a confidence
interval is the normal approximation ``estimate ± z·se`` (DM has no standard error, so no interval).
Estimates are statistics, so cost is a float here (the logged costs themselves stay ``Decimal``).

A target policy is any choice of one candidate per decision (plus exploration ε): weights replayed
greedily (:class:`TargetPolicy`) or a reference such as "always the strongest model"
(``replay_choices``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import sqrt
from statistics import NormalDist

from ..errors import InvalidInput
from ..selection._core import expected_cost_usd
from ..selection._quality import CELL_PSEUDO
from ._decisions import LoggedDecision
from ._errors import NoDecisions
from ._policy import CandidateRow, TargetPolicy, best_row, candidate_rows, probabilities

#: Pseudo-observations of a model's overall mean in the outcome model of one agent type.
AGENT_PSEUDO = CELL_PSEUDO

METRICS = ("reward", "quality", "cost_usd", "latency_ms", "failure_rate")
ESTIMATORS = ("ips", "snips", "dm", "dr")
_DETERMINISTIC = 1.0 - 1e-9
_SE_OF = {"ips": "ips_se", "snips": "snips_se", "dr": "dr_se"}
#: Replay reports kept per prepared log (see ``PreparedLog.replay_choices``).
_MAX_REPORTS = 4096


@dataclass(frozen=True)
class Objective:
    """The reward of one request: ``quality − cost_per_usd · cost_usd − latency_per_s · latency_s``.

    Quality is in [0, 1] and 0 for a failed request (its cost and latency still count).
    ``cost_per_usd`` is how much quality (on that 0..1 scale) one USD is worth: at the default 10 a
    request must gain 0.1 quality for every cent it costs more. ``latency_per_s`` is the quality one
    second of latency is worth (default 0.01). ``amm tune`` prints the rate at which always the
    cheapest and always the strongest model break even, which shows the scale on a given log."""

    cost_per_usd: float = 10.0
    latency_per_s: float = 0.01

    def reward(self, quality: float, cost_usd: float, latency_ms: float) -> float:
        """The reward of one outcome."""
        return quality - self.cost_per_usd * cost_usd - self.latency_per_s * latency_ms / 1000.0


@dataclass(frozen=True)
class Estimate:
    """One metric under the target policy, by each estimator, beside its logged mean."""

    logged: float
    ips: float
    snips: float | None
    dm: float
    dr: float
    ips_se: float
    snips_se: float | None
    dr_se: float
    #: with a pairing (``PreparedLog.pair_with``): the standard deviation over requests of the
    #: outcome model's value under the policy minus the reference's scaled value, what the
    #: mean of a batch of ``n`` requests moves by (``paired_sd / √n``); None without one
    paired_sd: float | None = None
    #: with a pairing: the standard error of DR's estimate of (the policy's mean − ``share`` ×
    #: the reference's), both estimated on this log. The constraint's limit is the reference's
    #: estimate, as noisy as the policy's and correlated with it, so this, not ``dr_se``, is how
    #: far DR's side of the constraint strays from the truth (None without a pairing)
    paired_se: float | None = None

    def get(self, estimator: str) -> float | None:
        """The estimate of ``estimator`` (one of ``ESTIMATORS``)."""
        return getattr(self, estimator)

    def se(self, estimator: str) -> float | None:
        """The standard error of ``estimator``'s estimate (None for DM, or SNIPS without weight)."""
        name = _SE_OF.get(estimator)
        return getattr(self, name) if name else None

    def interval(self, estimator: str, confidence: float) -> Interval:
        """``estimator``'s estimate with its two-sided normal-approximation ``confidence`` interval
        (``low``/``high`` None when there is no standard error)."""
        value, se = self.get(estimator), self.se(estimator)
        if value is None or se is None:
            return Interval(value, se, None, None, confidence)
        half = z_score(confidence) * se
        return Interval(value, se, value - half, value + half, confidence)


@dataclass(frozen=True)
class Interval:
    """An estimate, its standard error and its ``confidence`` interval ``[low, high]``."""

    estimate: float | None
    se: float | None
    low: float | None
    high: float | None
    confidence: float

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        return asdict(self)


def z_score(confidence: float) -> float:
    """The normal quantile of a two-sided ``confidence`` interval (1.645 at 0.9)."""
    if not 0.0 < confidence < 1.0:
        raise InvalidInput(f"confidence {confidence!r}: use a level in (0, 1) such as 0.9",
                           field="confidence")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True)
class ReplayReport:
    """A replay: the metrics' estimates and how well the log supports the target policy."""

    n_decisions: int
    n_agree: int
    n_unsupported: int
    n_quality_observed: int
    effective_sample_size: float
    epsilon: float
    objective: Objective
    metrics: dict[str, Estimate]

    def value(self, estimator: str = "dr") -> float | None:
        """The estimated mean reward (the tuning objective) by ``estimator``."""
        return self.metrics["reward"].get(estimator)

    def estimable(self, estimator: str) -> bool:
        """Whether ``estimator`` can estimate this policy on the log: IPS and SNIPS cannot where
        the target picks a model the log never could have (``n_unsupported``), and SNIPS not
        without any importance weight; DM and DR always can (through the outcome model)."""
        if estimator in ("dm", "dr"):
            return True
        first = next(iter(self.metrics.values()), None)
        return self.n_unsupported == 0 and (first is None or first.get(estimator) is not None)

    def intervals(self, estimator: str, confidence: float) -> dict[str, Interval]:
        """Every metric's ``estimator`` estimate with its ``confidence`` interval."""
        return {m: e.interval(estimator, confidence) for m, e in self.metrics.items()}

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Pairing:
    """A metric paired with a reference policy scaled by a share (``PreparedLog.pair_with``):
    per decision, the scaled reference's outcome-model value and its DR term."""

    metric: str
    reference: list[float]
    reference_dr: list[float]

    def subset(self, indices: Sequence[int]) -> Pairing:
        """The pairing of the decisions at ``indices``."""
        return Pairing(self.metric, [self.reference[i] for i in indices],
                       [self.reference_dr[i] for i in indices])


class PreparedLog:
    """Decisions with their per-metric values and outcome model, computed once for many replays."""

    def __init__(self, decisions: Sequence[LoggedDecision], objective: Objective | None = None
                 ) -> None:
        if not decisions:
            raise NoDecisions("no logged decisions to replay")
        self.decisions = list(decisions)
        self.objective = objective or Objective()
        self.chosen = [d.chosen_index for d in self.decisions]
        self.n_quality_observed = sum(
            1 for d in self.decisions if d.outcome.success and d.outcome.quality is not None)
        #: decisions logged without exploration among several candidates (propensity 1)
        self.n_unexplored = sum(1 for d in self.decisions
                                if d.propensity >= _DETERMINISTIC and len(d.candidates) > 1)
        self.values = _values(self.decisions, self.objective)
        self.model_means = {m: _model_means(self.decisions, v) for m, v in self.values.items()}
        self.predicted = {m: _predicted(self.decisions, v, self.model_means[m],
                                        _AGENT_EFFECT.get(m, "add"))
                          for m, v in self.values.items()}
        self.predicted["cost_usd"] = _predicted_cost(self.decisions, self.values["cost_usd"],
                                                     self.predicted["cost_usd"])
        #: the metric paired with a scaled reference, see pair_with
        self.pairing: Pairing | None = None
        self._reports: dict[tuple, ReplayReport] = {}
        #: each decision's candidates as the greedy choice reads them, for ``_rows_of``
        self._rows: list[tuple[CandidateRow, ...]] = []
        self._rows_of: list[LoggedDecision] | None = None

    def pair_with(self, metric: str, picks: Sequence[int], share: float) -> None:
        """Pair ``metric`` with a reference policy that picks candidate ``picks[i]`` of decision
        ``i``, scaled by ``share``: every later estimate of ``metric`` carries ``paired_sd``, the
        spread over requests of (the policy's value − ``share`` × the reference's), both by the
        outcome model. A batch of ``n`` requests keeps ``Σ policy ≤ share × Σ reference`` when the
        mean of those paired terms stays ≤ 0, so ``paired_sd / √n`` is how far a batch's share
        strays from the mean's (``Goal.batch``). The outcome model's values leave out each
        request's own noise around them; for cost, which the model predicts per request from
        the prompt's expected USD, that part is small (on a routellm log it moved the batch term
        from 1.59 to 1.65 points of always-strong's cost).

        Each later estimate also carries ``paired_se``: the standard error of DR's estimate of
        the same difference. A constraint's limit is the reference's estimate on this log, so
        what decides whether the policy meets it is that difference, not the policy's estimate
        alone; on a routellm log with 15% of traffic on the strong model, the paired se was 1.38
        points of always-strong's cost against 0.79 for the policy's alone."""
        if len(picks) != len(self.decisions):
            raise InvalidInput("one pick per decision", field="picks")
        predicted = self.predicted[metric]
        values = self.values[metric]
        reference = [share * predicted[i][p] for i, p in enumerate(picks)]
        # the reference's own DR terms (it never explores): its outcome model, corrected where
        # the log chose what it picks
        reference_dr = [r + (share * (v - predicted[i][c]) / d.propensity if c == p else 0.0)
                        for i, (d, c, p, v, r) in enumerate(zip(
                            self.decisions, self.chosen, picks, values, reference, strict=True))]
        self.pairing = Pairing(metric, reference, reference_dr)
        self._reports.clear()

    def subset(self, indices: Sequence[int]) -> PreparedLog:
        """The decisions at ``indices`` with this log's values and outcome model (not refitted):
        a policy's estimate on the whole log is the size-weighted mean of its estimates on
        disjoint subsets that cover it, so per-agent-type choices add up exactly."""
        if not indices:
            raise NoDecisions("no logged decisions to replay")
        part = object.__new__(PreparedLog)
        part.decisions = [self.decisions[i] for i in indices]
        part.objective = self.objective
        part.chosen = [self.chosen[i] for i in indices]
        part.n_quality_observed = sum(
            1 for d in part.decisions if d.outcome.success and d.outcome.quality is not None)
        part.n_unexplored = sum(1 for d in part.decisions
                                if d.propensity >= _DETERMINISTIC and len(d.candidates) > 1)
        part.values = {m: [v[i] for i in indices] for m, v in self.values.items()}
        part.model_means = self.model_means
        part.predicted = {m: [p[i] for i in indices] for m, p in self.predicted.items()}
        part.pairing = None if self.pairing is None else self.pairing.subset(indices)
        part._reports = {}
        part._rows, part._rows_of = [], None
        return part

    def drift_views(self) -> list[PreparedLog]:
        """This log once per reliability snapshot the decisions carry (``LoggedDecision.drift``):
        the same decisions, values and outcome model, each candidate's performance as under that
        snapshot; views identical to this log or to an earlier view are left out (a snapshot
        taken where the reliability parts had not moved adds nothing but replay time)."""
        n = min((len(d.drift) for d in self.decisions), default=0)
        views = []
        seen = {tuple(tuple(c.performance for c in d.candidates) for d in self.decisions)}
        for k in range(n):
            performance = tuple(d.drift[k] for d in self.decisions)
            if performance in seen:
                continue
            seen.add(performance)
            moved = [dataclasses.replace(d, candidates=tuple(
                c.model_copy(update={"performance": p})
                for c, p in zip(d.candidates, d.drift[k], strict=True)))
                for d in self.decisions]
            view = self.subset(range(len(self.decisions)))
            view.decisions = moved
            views.append(view)
        return views

    def replay(self, policy: TargetPolicy, metrics: Sequence[str] = METRICS) -> ReplayReport:
        """Estimate ``metrics`` under ``policy``."""
        weights_cache: dict = {}
        picks = []
        if self._rows_of is not self.decisions:  # a drift view swaps them
            self._rows = [candidate_rows(d) for d in self.decisions]
            self._rows_of = self.decisions
        for d, rows in zip(self.decisions, self._rows, strict=True):
            key = (d.agent_type, d.priority)
            w = weights_cache.get(key)
            if w is None:
                w = weights_cache[key] = policy.weights_for(d.agent_type, d.priority)
            picks.append(best_row(rows, w))
        return self.replay_choices(picks, policy.epsilon, metrics)

    def replay_choices(self, picks: Sequence[int], epsilon: float = 0.0,
                       metrics: Sequence[str] = METRICS) -> ReplayReport:
        """Estimate ``metrics`` under the policy that picks candidate ``picks[i]`` of decision
        ``i`` (exploring with ``epsilon`` as the Selector does).

        Reports are kept per (picks, epsilon, metrics): a weight search replays hundreds of
        candidates of which most pick the same models, and the estimates depend on nothing else
        (the report is immutable, so the same object is returned)."""
        if len(picks) != len(self.decisions):
            raise InvalidInput("one pick per decision", field="picks")
        key = (tuple(picks), epsilon, tuple(metrics))
        known = self._reports.get(key)
        if known is not None:
            return known
        probs, n_agree, n_unsupported = [], 0, 0
        for d, chosen, g in zip(self.decisions, self.chosen, picks, strict=True):
            n_agree += g == chosen
            n_unsupported += g != chosen and d.propensity >= _DETERMINISTIC
            probs.append(probabilities(g, len(d.candidates), epsilon))
        iw = [p[c] / d.propensity for p, c, d in zip(probs, self.chosen, self.decisions,
                                                     strict=True)]
        sum_w, sum_w2 = sum(iw), sum(x * x for x in iw)
        ess = sum_w * sum_w / sum_w2 if sum_w2 > 0 else 0.0
        estimates = {m: self._estimate(m, probs, iw) for m in metrics}
        report = ReplayReport(
            n_decisions=len(self.decisions), n_agree=n_agree, n_unsupported=n_unsupported,
            n_quality_observed=self.n_quality_observed, effective_sample_size=ess,
            epsilon=epsilon, objective=self.objective, metrics=estimates,
        )
        if len(self._reports) >= _MAX_REPORTS:
            self._reports.clear()
        self._reports[key] = report
        return report

    def _estimate(self, metric: str, probs: list[list[float]], iw: list[float]) -> Estimate:
        values, predicted = self.values[metric], self.predicted[metric]
        n = len(values)
        ips_terms, dr_terms, dm_terms = [], [], []
        for chosen, p, w, v, q in zip(self.chosen, probs, iw, values, predicted, strict=True):
            dm_i = sum(pa * qa for pa, qa in zip(p, q, strict=True))
            dm_terms.append(dm_i)
            ips_terms.append(w * v)
            dr_terms.append(dm_i + w * (v - q[chosen]))
        sum_w = sum(iw)
        snips = sum(ips_terms) / sum_w if sum_w > 0 else None
        snips_se = None
        if snips is not None:
            spread = sum(w * w * (v - snips) ** 2 for w, v in zip(iw, values, strict=True))
            snips_se = sqrt(spread) / sum_w
        paired_sd = paired_se = None
        if self.pairing is not None and self.pairing.metric == metric:
            paired_sd = _sd([d - r for d, r in zip(dm_terms, self.pairing.reference,
                                                   strict=True)])
            paired_se = _se([d - r for d, r in zip(dr_terms, self.pairing.reference_dr,
                                                   strict=True)])
        return Estimate(
            logged=sum(values) / n, ips=sum(ips_terms) / n, snips=snips, dm=sum(dm_terms) / n,
            dr=sum(dr_terms) / n, ips_se=_se(ips_terms), snips_se=snips_se, dr_se=_se(dr_terms),
            paired_sd=paired_sd, paired_se=paired_se,
        )


def replay(decisions: Sequence[LoggedDecision], policy: TargetPolicy,
           objective: Objective | None = None) -> ReplayReport:
    """Estimate quality, cost, latency, failure rate and reward of ``policy`` on ``decisions``.

    Raises :class:`NoDecisions` when ``decisions`` is empty."""
    return PreparedLog(decisions, objective).replay(policy)


def _values(decisions: Sequence[LoggedDecision], objective: Objective) -> dict[str, list[float]]:
    quality = _imputed_quality(decisions)
    cost = [float(d.outcome.cost_usd) for d in decisions]
    latency = [d.outcome.latency_ms for d in decisions]
    return {
        "reward": [objective.reward(q, c, t) for q, c, t in zip(quality, cost, latency,
                                                                strict=True)],
        "quality": quality,
        "cost_usd": cost,
        "latency_ms": latency,
        "failure_rate": [0.0 if d.outcome.success else 1.0 for d in decisions],
    }


def _imputed_quality(decisions: Sequence[LoggedDecision]) -> list[float]:
    """Quality per decision; an unscored success gets its model's mean scored quality (else the
    mean over all scored successes, else 0)."""
    by_model: dict[str, list[float]] = {}
    for d in decisions:
        if d.outcome.success and d.outcome.quality is not None:
            by_model.setdefault(d.chosen, []).append(d.outcome.quality)
    every = [q for qs in by_model.values() for q in qs]
    fallback = sum(every) / len(every) if every else 0.0
    means = {m: sum(qs) / len(qs) for m, qs in by_model.items()}
    return [d.outcome.quality if d.outcome.quality is not None else means.get(d.chosen, fallback)
            for d in decisions]


def _model_means(decisions: Sequence[LoggedDecision], values: list[float]) -> dict[str, float]:
    """The mean value of each model over the decisions that chose it."""
    sums: dict[str, list[float]] = {}
    for d, v in zip(decisions, values, strict=True):
        acc = sums.setdefault(d.chosen, [0.0, 0.0])
        acc[0] += v
        acc[1] += 1.0
    return {m: s / n for m, (s, n) in sums.items()}


#: How an agent type's effect combines with a model's mean, per metric (see the module docstring).
_AGENT_EFFECT = {"quality": "add", "reward": "add", "failure_rate": "add",
                 "cost_usd": "scale", "latency_ms": "scale"}


def _predicted(decisions: Sequence[LoggedDecision], values: list[float],
               means: dict[str, float], effect: str = "add") -> list[list[float]]:
    """The outcome model's value of each candidate of each decision (see the module docstring):
    the model's mean on the decision's agent type shrunk towards the model's overall mean moved
    by the agent type's effect (``effect``: ``"add"`` or ``"scale"``)."""
    overall = sum(values) / len(values)
    cells: dict[tuple[str | None, str], list[float]] = {}
    for d, v in zip(decisions, values, strict=True):
        acc = cells.setdefault((d.agent_type, d.chosen), [0.0, 0.0])
        acc[0] += v
        acc[1] += 1.0
    # the agent type's effect, pooled over the models chosen for it, shrunk to none
    pooled: dict[str | None, list[float]] = {}
    for (agent, model), (total, n) in cells.items():
        acc = pooled.setdefault(agent, [0.0, 0.0, 0.0])
        acc[0] += total
        acc[1] += means.get(model, overall) * n
        acc[2] += n
    agent_effect: dict[str | None, float] = {}
    for agent, (total, expected, n) in pooled.items():
        if effect == "scale":
            k = AGENT_PSEUDO * (expected / n if n else overall)
            agent_effect[agent] = (total + k) / (expected + k) if expected + k > 0 else 1.0
        else:
            agent_effect[agent] = (total - expected) / (n + AGENT_PSEUDO)
    fitted: dict[tuple[str | None, str], float] = {}
    out = []
    for d in decisions:
        row = []
        for c in d.candidates:
            key = (d.agent_type, c.model_id)
            q = fitted.get(key)
            if q is None:
                base = means.get(c.model_id, overall)
                moved = agent_effect.get(d.agent_type, 1.0 if effect == "scale" else 0.0)
                prior = base * moved if effect == "scale" else base + moved
                total, n = cells.get(key, (0.0, 0.0))
                q = fitted[key] = (AGENT_PSEUDO * prior + total) / (AGENT_PSEUDO + n)
            row.append(q)
        out.append(row)
    return out


def _predicted_cost(decisions: Sequence[LoggedDecision], values: list[float],
                    fallback: list[list[float]]) -> list[list[float]]:
    """The cost outcome model (see the module docstring): each candidate's expected cost
    (``expected_cost_usd`` of its cost sub-score) times the ratio of real to expected cost of its
    model on the decision's agent type, shrunk with ``AGENT_PSEUDO`` requests towards the model's
    ratio times the agent type's (on every model, itself shrunk to 1 with ``AGENT_PSEUDO``
    requests). A model with no logged expected cost keeps ``fallback`` (the per-cell means)."""
    expected = [[expected_cost_usd(c.cost) for c in d.candidates] for d in decisions]
    cells: dict[tuple[str | None, str], list[float]] = {}
    models: dict[str, list[float]] = {}
    for d, v, e in zip(decisions, values, expected, strict=True):
        spent = e[d.chosen_index]
        for acc in (cells.setdefault((d.agent_type, d.chosen), [0.0, 0.0, 0.0]),
                    models.setdefault(d.chosen, [0.0, 0.0, 0.0])):
            acc[0] += v
            acc[1] += spent
            acc[2] += 1.0
    ratio = {m: real / exp for m, (real, exp, _) in models.items() if exp > 0}
    pooled: dict[str | None, list[float]] = {}
    for (agent, model), (real, exp, n) in cells.items():
        if model in ratio:
            acc = pooled.setdefault(agent, [0.0, 0.0, 0.0])
            acc[0] += real
            acc[1] += ratio[model] * exp
            acc[2] += n
    agent_ratio = {}
    for agent, (real, modelled, n) in pooled.items():
        k = AGENT_PSEUDO * modelled / n
        agent_ratio[agent] = (real + k) / (modelled + k) if modelled + k > 0 else 1.0
    fitted: dict[tuple[str | None, str], float] = {}
    out = []
    for d, e, old in zip(decisions, expected, fallback, strict=True):
        row = []
        for c, spend, mean in zip(d.candidates, e, old, strict=True):
            if c.model_id not in ratio:
                row.append(mean)
                continue
            key = (d.agent_type, c.model_id)
            r = fitted.get(key)
            if r is None:
                prior = ratio[c.model_id] * agent_ratio.get(d.agent_type, 1.0)
                real, exp, n = cells.get(key, (0.0, 0.0, 0.0))
                k = AGENT_PSEUDO * (exp / n if n else 1.0)
                r = fitted[key] = (real + k * prior) / (exp + k) if exp + k > 0 else prior
            row.append(r * spend)
        out.append(row)
    return out


def _sd(terms: list[float]) -> float:
    """The sample standard deviation of ``terms`` (0 for fewer than two)."""
    n = len(terms)
    if n < 2:
        return 0.0
    mean = sum(terms) / n
    return sqrt(sum((t - mean) ** 2 for t in terms) / (n - 1))


def _se(terms: list[float]) -> float:
    """The standard error of the mean of ``terms``."""
    return _sd(terms) / sqrt(len(terms)) if len(terms) >= 2 else 0.0
