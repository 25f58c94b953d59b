"""Searching selection weights that best meet a goal on the logged decisions.

Candidates are a regular grid on the weight simplex (every vector of multiples of ``grid_step``
summing to 1) plus ``n_random`` points drawn uniformly from the simplex (a seeded
``random.Random``), plus value candidates (:func:`value_candidates`): a few performance-led
vectors with ``value_usd`` on a log grid, which trade quality against each request's expected
USD rather than against its price ratio. Each is replayed as a target policy and judged by the :class:`Goal`: the
highest estimated reward (``reward``), or the best quality / lowest cost whose confidence bound
meets a limit relative to always-strongest (``max-quality`` / ``min-cost``, see ``_goal``). Ties:
the first found, grid before random.

Refusals, each an ``InvalidInput`` with the reason:

- fewer than ``min_decisions`` decisions in the log (:class:`TooFewDecisions`): nothing is tuned;
- no candidate the estimator can estimate (:class:`NoSupport`): IPS/SNIPS cannot estimate weights
  that pick, on a decision logged without exploration (propensity 1), another model than the log;
  DM and DR can (through the outcome model);
- no candidate with an effective sample size of ``min_ess``;
- no candidate meeting the constraint (:class:`ConstraintUnmet`, naming the nearest point).

With ``per_agent_type`` the search is repeated on the decisions of each agent type (with the
whole log's outcome model, so that per-agent-type estimates add up to the whole log's); one with
fewer than ``min_decisions`` decisions, or refused for one of the reasons above, keeps the global
weights, and ``kept_global`` says why. In reward mode each agent type takes its best candidate.
Under a constraint the constraint is the whole log's (the operator's "at most X of
always-strongest's cost" is about the bill, not about each agent type's share of it): for a
price of quality λ (quality per USD, on a log grid from 0 to 1e10) each agent type takes the
candidate with the best ``quality − λ · cost`` (the Lagrangian of the constrained problem), the
combined policy is replayed on the whole log and judged by the goal; the best feasible combination
is refined as below and wins if it then ranks above the global weights alone, which every agent
type keeps otherwise (``_combine``; the refinement starts from the sweep's best feasible
combination even when that ranks below the global weights, which it may then climb past). Between
two adjacent prices many agent types can switch at once, from well inside the constraint to
outside it (on one log: 40% of always-strongest's cost, then 72%); the gap is filled one agent
type at a time, most quality per unit of extra cost first, keeping each switch that stays
feasible and ranks better (a greedy knapsack). The grid of prices still steps over choices: an
agent type's table holds options between its choices at two adjacent prices, and a switch at one
price can be as large as a fifth of the bill (on one routellm log the best combination found
that way cost 39% of always-strongest's under a limit of 50%). So from the best combination each
agent type then climbs its own quality-cost frontier (``frontier``: the choices its Lagrangian
makes at every price) one vertex at a time, the most quality per unit of extra cost first,
keeping each move that stays feasible and ranks better (``_climb``); on that log the climb ended
at 45% (its dearest drift view's bound at the limit).

What ranks and what checks, under a constraint: feasibility is the chosen estimator's confidence
bound (DR by default: unbiased for cost whatever the outcome model; the cost outcome model is per
request, the expected cost of its prompt at each model's prices times a fitted ratio, so DR's
correction, and with it the interval, is small); the rank, and the
per-agent-type tables' quality, are the outcome model's quality (DM: per model and agent type,
shrunk to the model's mean). Ranking hundreds of candidates (and, per agent type, a few dozen
decisions each) by DR's quality picks the luckiest noise: on one routellm log the chosen policy's
DR quality was 103% of always-strongest's and it served about 5 points below that estimate; the
policy ranked by DM on the same log served within half a point of its DM quality. DR's quality
is still what is reported.

Drift, under a constraint: each candidate is also replayed on the log's drift views (the same
decisions with the reliability parts of earlier snapshots, ``LoggedDecision.drift``), and must
meet the constraint in every one of them (the worst view's bound); its rank is the mean over the
views. A policy whose choices hinge on a reliability part that moves between serves would
otherwise be tuned to the one snapshot the log ends with: the same weights on the same log sent
837 of 1,500 held-out requests to the strong model in one serve and 989 in the next. The views
sample the live states of the log's second half (``DRIFT_QUANTILES``), which is where a served
system, seeded from the log's newest outcomes, starts and moves; so a candidate that sends an
agent type one way or the other depending on reliability differences of a few thousandths (two
models of near-equal quality gain per USD: a near-tie) pays in the constraint for its dearest
view and is ranked by its mean quality, and loses to a candidate that decides the same in every
view. (Served, a near-tie flips as a block: a routellm agent type with uniform prompts, GSM8K,
went 2% to the strong model at the log's last state and 89% when served.)

Cross-fitting (``cross_fit`` = R > 0, under a constraint): the tuner checks the constraint on the
same log it chooses on, so among hundreds of candidates (and, per agent type, a few dozen
decisions each) it favours the choices whose cost the log's noise under-counts (or whose
quality it over-counts), and the served share strays from the estimate the wrong way. That
optimism is measured: R times, the log is split at random into two halves (each agent type
evenly, ``_halves``), the whole tuning (global and per agent type, with the half's own outcome
model and half of ``min_decisions``) runs on each half, and its choice's constrained metric, as
a share of always-strongest's, is estimated on that half (inside) and on the other half
(outside), where the estimate is independent of the choice. The mean of outside − inside (cost;
inside − outside for quality) is the optimism of a choice made on half the log; a choice's
optimism is noise it picked up, which shrinks as 1/√n, so the whole log's is taken as that over
√2. The share asked is then tightened by it (never loosened: a negative optimism counts as 0)
before the whole log is tuned; ``CrossFit`` records the folds, the refusals and the share
applied, and the weights file's ``estimated.cross_fit`` carries them. It costs R × about one
more tuning (two halves of half the size).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from math import sqrt

from ..config import SelectionWeights
from ..errors import InvalidInput
from ._decisions import LoggedDecision
from ._errors import ConstraintUnmet, NoDecisions, NoSupport, TooFewDecisions
from ._estimators import ESTIMATORS, Objective, PreparedLog, ReplayReport
from ._goal import Goal, Verdict
from ._policy import TargetPolicy
from ._reference import STRONGEST, Reference, compare, references


@dataclass(frozen=True)
class TuneResult:
    """The best weights found, their replay, the references, and (if given) the baseline's
    replay. ``value`` is the estimated mean reward whatever the goal."""

    weights: SelectionWeights
    value: float
    estimator: str
    report: ReplayReport
    evaluated: int
    agent_weights: dict[str, SelectionWeights] = field(default_factory=dict)
    baseline: ReplayReport | None = None
    goal: Goal = field(default_factory=Goal)
    references: dict[str, Reference] = field(default_factory=dict)
    limit: float | None = None
    kept_global: dict[str, str] = field(default_factory=dict)
    min_decisions: int = 50
    #: under a constraint, the chosen policy over the log's reliability snapshots (the
    #: constrained metric at its worst snapshot, the ranked ones averaged); None without drift
    drift: ReplayReport | None = None
    drift_snapshots: int = 0
    #: under a constraint with ``cross_fit``: the tuner's own optimism, measured out of fold,
    #: and how far it moved the limit (None without cross-fitting)
    cross_fit: CrossFit | None = None

    def estimated(self) -> dict:
        """What goes under ``estimated`` in a weights file: the estimates with their intervals,
        the references, the shares relative to them, and the constraint."""
        est, level = self.estimator, self.goal.confidence
        out: dict = {"estimator": est, "value": self.value,
                     "candidates_evaluated": self.evaluated, "replay": self.report.to_dict(),
                     "goal": self.goal.to_dict(), "confidence": level,
                     "intervals": _intervals(self.report, est, level)}
        if self.baseline is not None:
            out["baseline_value"] = self.baseline.value(est)
            out["baseline_intervals"] = _intervals(self.baseline, est, level)
        if self.references:
            out["references"] = {
                name: {"model": ref.model, "estimable": ref.report.estimable(est),
                       "intervals": _intervals(ref.report, est, level)}
                for name, ref in self.references.items()}
            out["relative"] = compare(self.report, self.references, est)
        if self.goal.constrained:
            out["constraint"] = self.goal.check(self.report, est, self.limit)
            out["ranked_by"] = {"quality": RANK_QUALITY_BY, "constraint_bound": est}
            out["drift"] = {"snapshots": self.drift_snapshots,
                            "constraint": (self.goal.check(self.drift, est, self.limit)
                                           if self.drift is not None else None)}
            if self.cross_fit is not None:
                out["cross_fit"] = self.cross_fit.to_dict()
                out["constraint"]["share_applied"] = self.cross_fit.share_applied
        out["agent_types"] = {**{a: "tuned" for a in self.agent_weights},
                              **{a: f"kept the global weights: {why}"
                                 for a, why in self.kept_global.items()}}
        return out


#: Under a constraint, candidates are ranked by this estimator's quality (the outcome model:
#: DM), and checked for feasibility on the chosen estimator's bound (see the module docstring).
RANK_QUALITY_BY = "dm"
#: The prices of quality (quality per USD) the constrained per-agent-type search tries.
QUALITY_PRICES = (0.0, *(10.0 ** (k / 8) for k in range(-24, 81)))
#: The value candidates' ``value_usd``: 1e-5 .. 1e3 USD per point of suitability, 4 per decade.
VALUE_GRID = tuple(10.0 ** (k / 4) for k in range(-20, 13))
_VALUE_BASES = ((0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.7, 0.3), (0.0, 0.2, 0.5, 0.3))


def value_candidates() -> list[SelectionWeights]:
    """Performance-led weights (performance alone; with availability; with some log-price) with
    ``value_usd`` on ``VALUE_GRID``: each picks, per request, the model whose quality gain is worth
    its extra expected USD at that value."""
    return [_weights(parts, value) for parts in _VALUE_BASES for value in VALUE_GRID]


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


@dataclass(frozen=True)
class _Search:
    candidates: list[SelectionWeights]
    estimator: str
    epsilon: float
    min_ess: float
    goal: Goal


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
    min_decisions: int = 50,
    min_ess: float = 0.0,
    baseline: TargetPolicy | None = None,
    goal: Goal | None = None,
    cross_fit: int = 0,
) -> TuneResult:
    """Search the weights that best meet ``goal`` (default: the highest ``estimator`` estimate
    of the mean reward) on ``decisions``.

    Raises :class:`NoDecisions` on an empty log, and ``InvalidInput`` on bad search settings or
    a refusal (see the module docstring)."""
    goal = goal or Goal()
    search = _settings(estimator, n_random, min_decisions, goal, grid_step, seed, epsilon, min_ess)
    if cross_fit < 0 or (cross_fit and not goal.constrained):
        raise InvalidInput("cross_fit: a whole number of repeats >= 0, for max-quality or min-cost "
                           "(it measures how optimistic the constraint's estimate is)",
                           field="cross_fit")
    if not decisions:
        raise NoDecisions("no logged decisions to tune on")
    if len(decisions) < min_decisions:
        raise TooFewDecisions(
            f"only {len(decisions)} logged decisions, fewer than min_decisions {min_decisions}: "
            "nothing can be tuned (log more, or lower --min-decisions)", field="min_decisions")
    checked = None
    if cross_fit:
        checked = _cross_fit(decisions, objective, search, per_agent_type, min_decisions,
                             cross_fit, seed)
        search = dataclasses.replace(search, goal=dataclasses.replace(
            goal, share=checked.share_applied))
    prepared = PreparedLog(decisions, objective)
    try:
        fit = _fit(prepared, search, per_agent_type, min_decisions)
    except ConstraintUnmet as exc:
        if checked is None or not checked.optimism:
            raise
        raise ConstraintUnmet(f"{exc.message}; the share asked was {goal.share:g}, moved by "
                              f"{checked.optimism:.3g}, the tuner's optimism measured by "
                              "cross-fitting (see --cross-fit)", field="objective",
                              best_bound=exc.fields.get("best_bound"),
                              limit=exc.fields.get("limit")) from None
    policy = TargetPolicy(fit.best, fit.agent_weights, epsilon)
    report = prepared.replay(policy)
    drift = _replay(fit.views, policy, search) if len(fit.views) > 1 else None
    return TuneResult(
        weights=fit.best, value=report.value(estimator) or 0.0, estimator=estimator,
        report=report, evaluated=len(search.candidates) * fit.searched,
        agent_weights=fit.agent_weights,
        baseline=prepared.replay(baseline) if baseline is not None else None, goal=goal,
        references=fit.refs, limit=fit.limit, kept_global=fit.kept, min_decisions=min_decisions,
        drift=drift, drift_snapshots=len(fit.views) - 1, cross_fit=checked,
    )


@dataclass
class _Fit:
    """One log's tuning: its views, the global and per-agent-type weights, the references, the
    constraint's limit, the agent types that kept the global weights (and why), and how many
    logs were searched."""

    views: list[PreparedLog]
    best: SelectionWeights
    refs: dict[str, Reference]
    limit: float | None
    agent_weights: dict[str, SelectionWeights]
    kept: dict[str, str]
    searched: int


def _fit(prepared: PreparedLog, search: _Search, per_agent_type: bool, min_decisions: int
         ) -> _Fit:
    views = [prepared, *prepared.drift_views()] if search.goal.constrained else [prepared]
    best, refs, limit = _tune_log(views, search)
    agent_weights: dict[str, SelectionWeights] = {}
    kept: dict[str, str] = {}
    searched = 1
    if per_agent_type:
        groups, kept = _groups(prepared, min_decisions)
        if search.goal.constrained:
            agent_weights, more, searched = _per_agent_constrained(views, groups, search,
                                                                   best, limit)
        else:
            agent_weights, more, searched = _per_agent(prepared, groups, search)
        kept.update(more)
    return _Fit(views, best, refs, limit, agent_weights, kept, searched)


@dataclass(frozen=True)
class CrossFit:
    """How optimistic the tuner is about the constraint of the policy it chooses, measured by
    cross-fitting (see the module docstring). ``folds``: per half the choice was made on, the
    constrained metric's share of always-strongest's as estimated on that half (inside) and on
    the other half (outside), each with its own outcome model."""

    kind: str
    share: float
    repeats: int
    folds: tuple[tuple[float, float], ...]
    #: why a half could not be tuned or estimated (it then adds no fold)
    refused: tuple[str, ...] = ()
    #: the other metric (quality under max-quality, cost under min-cost) the same way, per fold
    #: (reported, not applied: it is what the choice is ranked by, not what it must meet)
    other: tuple[tuple[float | None, float | None], ...] = ()

    @property
    def optimism_half(self) -> float | None:
        """The mean optimism of a choice made on half the log (None without a fold): how much
        dearer (max-quality) or worse (min-cost) it was outside than inside, as a share of
        always-strongest's."""
        if not self.folds:
            return None
        sign = 1.0 if self.kind == "max-quality" else -1.0
        return sum(sign * (out - ins) for ins, out in self.folds) / len(self.folds)

    @property
    def optimism(self) -> float:
        """The optimism applied to the whole log's choice: the half log's over √2 (a choice's
        optimism is noise it picked, and noise shrinks as 1/√n), and never below 0 (the
        constraint is only ever tightened)."""
        half = self.optimism_half
        return max(0.0, half) / sqrt(2.0) if half is not None else 0.0

    @property
    def share_applied(self) -> float:
        """The share the whole log's constraint is checked at: the one asked, less (max-quality)
        or plus (min-cost) the optimism."""
        return self.share - self.optimism if self.kind == "max-quality" else self.share + self.optimism

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        other = "quality" if self.kind == "max-quality" else "cost_usd"
        return {"repeats": self.repeats,
                "folds": [{"inside": i, "outside": o, f"{other}_inside": oi,
                           f"{other}_outside": oo}
                          for (i, o), (oi, oo) in zip(self.folds, self.other, strict=True)],
                "refused": list(self.refused), "optimism_half": self.optimism_half,
                "optimism": self.optimism, "share": self.share,
                "share_applied": self.share_applied}


def _cross_fit(decisions: Sequence[LoggedDecision], objective: Objective | None,
               search: _Search, per_agent_type: bool, min_decisions: int, repeats: int,
               seed: int) -> CrossFit:
    """``repeats`` random splits of the log in two halves (by agent type); the whole tuning is
    run on each half and its choice estimated on both."""
    goal = search.goal
    folds: list[tuple[float, float]] = []
    others: list[tuple[float | None, float | None]] = []
    refused: list[str] = []
    metric = goal.constrained_metric or "cost_usd"
    other_metric = "quality" if metric == "cost_usd" else "cost_usd"
    for r in range(repeats):
        halves = _halves(decisions, random.Random(f"cross-fit:{seed}:{r}"))
        for inside, outside in (halves, halves[::-1]):
            try:
                fit = _fit(PreparedLog(inside, objective), search, per_agent_type,
                           -(-min_decisions // 2))
            except InvalidInput as exc:
                refused.append(str(exc))
                continue
            policy = TargetPolicy(fit.best, fit.agent_weights, search.epsilon)
            other = PreparedLog(outside, objective)
            views = [other, *other.drift_views()]
            refs = references(other)
            _pair(views, refs, search)
            shares = (_share_of_strongest(fit.views, fit.refs, policy, search, metric),
                      _share_of_strongest(views, refs, policy, search, metric))
            if shares[0] is None or shares[1] is None:
                refused.append(f"{search.estimator} cannot estimate always-strongest's "
                               f"{goal.constrained_metric} on a half")
                continue
            folds.append((shares[0], shares[1]))
            others.append((_share_of_strongest(fit.views, fit.refs, policy, search, other_metric),
                           _share_of_strongest(views, refs, policy, search, other_metric)))
    return CrossFit(goal.kind, goal.share or 0.0, repeats, tuple(folds), tuple(refused),
                    tuple(others))


def _halves(decisions: Sequence[LoggedDecision], rng: random.Random
            ) -> tuple[list[LoggedDecision], list[LoggedDecision]]:
    """The decisions in two halves, each agent type split evenly (an odd one's extra decision
    going to the halves in turn), in log order within each half."""
    by_agent: dict[str | None, list[int]] = {}
    for i, d in enumerate(decisions):
        by_agent.setdefault(d.agent_type, []).append(i)
    first: set[int] = set()
    extra_first = True
    for agent in sorted(by_agent, key=lambda a: a or ""):
        idx = by_agent[agent]
        rng.shuffle(idx)
        cut = len(idx) // 2 + (len(idx) % 2 if extra_first else 0)
        extra_first ^= len(idx) % 2 == 1
        first.update(idx[:cut])
    return ([d for i, d in enumerate(decisions) if i in first],
            [d for i, d in enumerate(decisions) if i not in first])


def _share_of_strongest(views: list[PreparedLog], refs: dict[str, Reference],
                        policy: TargetPolicy, search: _Search, metric: str) -> float | None:
    """``policy``'s ``metric`` as a share of always-strongest's, as ``_replay`` reports it (the
    constrained metric at its worst view, as the constraint checks it), by the search's
    estimator; None when either has no estimate."""
    value = _replay(views, policy, search).metrics[metric].get(search.estimator)
    strongest = refs[STRONGEST].report.metrics[metric].get(search.estimator)
    return None if value is None or not strongest else value / strongest


def _settings(estimator: str, n_random: int, min_decisions: int, goal: Goal, grid_step: float,
              seed: int, epsilon: float, min_ess: float) -> _Search:
    if estimator not in ESTIMATORS:
        raise InvalidInput(f"estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}",
                           field="estimator")
    if n_random < 0:
        raise InvalidInput("n_random must be >= 0", field="n_random")
    if min_decisions < 1:
        raise InvalidInput("min_decisions must be >= 1", field="min_decisions")
    if goal.constrained and estimator == "dm":
        raise InvalidInput(f"objective {goal.kind} checks a confidence bound and dm has no "
                           "standard error: use dr, snips or ips", field="estimator")
    candidates = (simplex_grid(grid_step) + random_simplex(n_random, random.Random(seed))
                  + value_candidates())
    return _Search(candidates, estimator, epsilon, min_ess, goal)


def _tune_log(views: list[PreparedLog], search: _Search
              ) -> tuple[SelectionWeights, dict[str, Reference], float | None]:
    """The best weights on one log (``views[0]``, and its drift views), its references and the
    constraint's limit."""
    prepared = views[0]
    refs = references(prepared)
    limit = None
    if search.goal.constrained:
        strongest = refs[STRONGEST].report
        if not strongest.estimable(search.estimator):
            why = (f"on {strongest.n_unsupported} decisions logged without exploration it picks "
                   "another model" if strongest.n_unsupported else "no importance weight on it")
            raise NoSupport(
                f"{search.estimator} cannot estimate always-strongest on this log ({why}): use "
                "dr, or log with selection.exploration_epsilon", field="estimator")
        limit = search.goal.limit(strongest, search.estimator)
        _pair(views, refs, search)
    return _search(views, search, limit), refs, limit


def _pair(views: list[PreparedLog], refs: dict[str, Reference], search: _Search) -> None:
    """Pair the constrained metric of ``views`` with always-strongest's under a constraint
    (``PreparedLog.pair_with``): the bound then reads the paired standard error and, with a
    batch, the paired spread."""
    goal = search.goal
    if goal.constrained and goal.share is not None:
        metric = goal.constrained_metric or "cost_usd"
        for view in views:  # the same decisions: always-strongest picks the same in each
            view.pair_with(metric, refs[STRONGEST].picks, goal.share)


def _replay(views: list[PreparedLog], policy: TargetPolicy, search: _Search) -> ReplayReport:
    """``policy`` on a log and its drift views, as one report: the first view's, with the
    constrained metric of the view where its checked bound is worst, and the ranked metrics'
    estimates (DM quality; the estimator's cost under min-cost) averaged over the views."""
    goal, estimator = search.goal, search.estimator
    reports = [v.replay(policy, metrics=goal.metrics) for v in views]
    base = reports[0]
    metric = goal.constrained_metric
    if len(reports) == 1 or metric is None:
        return base
    worst_first = goal.kind == "max-quality"
    bounds = [(goal.bound(r, estimator), i) for i, r in enumerate(reports)]
    known = [(b, i) for b, i in bounds if b is not None]
    worst = reports[(max(known) if worst_first else min(known))[1]] if known else base
    metrics = dict(base.metrics)
    metrics[metric] = worst.metrics[metric]
    metrics["quality"] = dataclasses.replace(
        metrics["quality"], dm=sum(r.metrics["quality"].dm for r in reports) / len(reports))
    if metric != "cost_usd":
        mean = [r.metrics["cost_usd"].get(estimator) for r in reports]
        if all(v is not None for v in mean):
            metrics["cost_usd"] = dataclasses.replace(
                metrics["cost_usd"], **{estimator: sum(mean) / len(mean)})  # type: ignore[arg-type]
    return dataclasses.replace(base, metrics=metrics)


def _search(views: list[PreparedLog], search: _Search, limit: float | None) -> SelectionWeights:
    goal, estimator = search.goal, search.estimator
    prepared = views[0]
    best, best_rank = None, None
    nearest: tuple[SelectionWeights, ReplayReport, float | None] | None = None
    estimable = unsupported = 0
    for w in search.candidates:
        report = _replay(views, TargetPolicy(w, {}, search.epsilon), search)
        if not report.estimable(estimator):
            unsupported += report.n_unsupported > 0
            continue
        estimable += 1
        if report.effective_sample_size < search.min_ess:
            continue
        verdict = goal.judge(report, estimator, limit, quality_by=RANK_QUALITY_BY)
        if not verdict.feasible:
            if nearest is None or goal.closer(verdict.bound, nearest[2]):
                nearest = (w, report, verdict.bound)
            continue
        if best_rank is None or verdict.rank > best_rank:
            best, best_rank = w, verdict.rank
    if not estimable:
        raise _no_support(prepared, estimator, unsupported > 0)
    if best is not None:
        return best
    if nearest is None:
        raise InvalidInput(f"no candidate weights reach an effective sample size of "
                           f"{search.min_ess}", field="min_ess")
    raise _unmet(goal, estimator, limit, *nearest)


def _no_support(prepared: PreparedLog, estimator: str, unexplored: bool) -> NoSupport:
    if unexplored:
        return NoSupport(
            f"{prepared.n_unexplored} of {len(prepared.decisions)} decisions were logged without exploration "
            f"(propensity 1) and every candidate weights choose another model on some of them: "
            f"{estimator} cannot estimate that, only dm or dr can (or log with "
            "selection.exploration_epsilon > 0)", field="estimator")
    return NoSupport(
        f"the log supports none of the candidate weights under {estimator} (every importance "
        "weight is 0): use dr or dm, or log with exploration (selection.exploration_epsilon)",
        field="estimator")


def _unmet(goal: Goal, estimator: str, limit: float | None, w: SelectionWeights,
           report: ReplayReport, bound: float | None) -> ConstraintUnmet:
    quality = report.metrics["quality"].get(estimator)
    cost = report.metrics["cost_usd"].get(estimator)
    share = goal.share or 0.0
    level = f"{goal.confidence:.0%}"
    reached = f"{bound / (limit / share):.3g}" if bound is not None and limit else "n/a"
    if goal.kind == "max-quality":
        what = (f"no candidate weights keep the cost's {level} upper bound within {share:g} x "
                f"always-strongest's ({_fmt(limit)} USD per request); the cheapest reachable: "
                f"upper bound {_fmt(bound)} USD ({reached} x always-strongest's), estimated "
                f"cost {_fmt(cost)} USD and quality {_fmt(quality)}")
    else:
        what = (f"no candidate weights keep the quality's {level} lower bound at {share:g} x "
                f"always-strongest's ({_fmt(limit)}) or more; the best reachable: lower bound "
                f"{_fmt(bound)} ({reached} x always-strongest's), estimated quality "
                f"{_fmt(quality)} at cost {_fmt(cost)} USD")
    return ConstraintUnmet(f"{what}, with weights {_describe(w)}", field="objective",
                           best_bound=bound, limit=limit)


def _groups(prepared: PreparedLog, min_decisions: int
            ) -> tuple[dict[str, list[int]], dict[str, str]]:
    """The decisions (indices) of each agent type with at least ``min_decisions`` of them, and
    the agent types with fewer (and why they keep the global weights)."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(prepared.decisions):
        if d.agent_type:
            groups.setdefault(d.agent_type, []).append(i)
    kept = {agent: f"{len(idx)} decisions, fewer than min_decisions {min_decisions}"
            for agent, idx in groups.items() if len(idx) < min_decisions}
    return ({a: idx for a, idx in sorted(groups.items()) if a not in kept}, kept)


def _per_agent(prepared: PreparedLog, groups: dict[str, list[int]], search: _Search
               ) -> tuple[dict[str, SelectionWeights], dict[str, str], int]:
    """Reward mode: each agent type's best weights, the agent types refused (and why), and how
    many logs were searched (the global one included)."""
    tuned: dict[str, SelectionWeights] = {}
    kept: dict[str, str] = {}
    for agent, idx in groups.items():
        try:
            tuned[agent] = _search([prepared.subset(idx)], search, None)
        except InvalidInput as exc:  # a refusal on this agent type's decisions
            kept[agent] = str(exc)
    return tuned, kept, 1 + len(groups)


def _per_agent_constrained(views: list[PreparedLog], groups: dict[str, list[int]],
                           search: _Search, base: SelectionWeights, limit: float | None
                           ) -> tuple[dict[str, SelectionWeights], dict[str, str], int]:
    """Under a constraint: the per-agent-type weights whose combination best meets the goal on
    the whole log (see the module docstring), the agent types left out (and why), and how many
    logs were searched."""
    goal, estimator = search.goal, search.estimator
    tables: dict[str, list[tuple[SelectionWeights, float, float]]] = {}
    kept: dict[str, str] = {}
    for agent, idx in groups.items():
        parts = [v.subset(idx) for v in views]
        rows = []
        for w in search.candidates:
            report = _replay(parts, TargetPolicy(w, {}, search.epsilon), search)
            if report.estimable(estimator) and report.effective_sample_size >= search.min_ess:
                rows.append((w, report.metrics["quality"].get(RANK_QUALITY_BY) or 0.0,
                             report.metrics["cost_usd"].get(estimator) or 0.0))
        if rows:
            tables[agent] = rows
        else:
            kept[agent] = f"no candidate weights {estimator} can estimate on its decisions"
    report = _replay(views, TargetPolicy(base, {}, search.epsilon), search)
    global_rank = goal.judge(report, estimator, limit, quality_by=RANK_QUALITY_BY).rank

    def judged(choice: dict[str, SelectionWeights]) -> Verdict:
        report = _replay(views, TargetPolicy(base, choice, search.epsilon), search)
        return goal.judge(report, estimator, limit, quality_by=RANK_QUALITY_BY)

    best = _combine(tables, judged, global_rank)
    if not best:
        kept.update({agent: "no per-agent-type weights meet the constraint together with the "
                     "others better than the global weights" for agent in tables})
    return best, kept, 1 + len(groups)


_Row = tuple[SelectionWeights, float, float]  # weights, quality, cost


def _combine(tables: dict[str, list[_Row]],
             judged: Callable[[dict[str, SelectionWeights]], Verdict],
             global_rank: tuple[float, ...]) -> dict[str, SelectionWeights]:
    """The per-agent-type choice (weights per agent type, from ``tables``) that best meets the
    goal as ``judged`` on the whole log, or ``{}`` when none ranks above ``global_rank`` (the
    global weights'). A price sweep of the Lagrangian, the gap between two prices filled, then a
    climb up the frontiers, from the sweep's best feasible choice: a choice just below the
    global weights may climb past them."""
    best: dict[str, SelectionWeights] = {}
    best_rank: tuple[float, ...] = ()
    swept: list[tuple[dict[str, SelectionWeights], bool]] = []
    for price in QUALITY_PRICES:
        choice = {agent: max(rows, key=lambda r: (r[1] - price * r[2], -r[2]))[0]
                  for agent, rows in tables.items()}
        verdict = judged(choice)
        swept.append((choice, verdict.feasible))
        if verdict.feasible and (not best or verdict.rank > best_rank):
            best, best_rank = choice, verdict.rank
    # between two prices many agent types may switch at once (a jump from well inside the
    # constraint to outside it): fill the gap one agent type at a time, the best quality per
    # unit of cost first, keeping each switch that stays feasible and ranks better
    for (dearer, dearer_ok), (cheaper, cheaper_ok) in zip(swept, swept[1:], strict=False):
        if dearer_ok or not cheaper_ok or cheaper != best:
            continue
        current = dict(cheaper)
        for agent in _by_gain_per_cost(tables, cheaper, dearer):
            trial = {**current, agent: dearer[agent]}
            verdict = judged(trial)
            if verdict.feasible and verdict.rank > best_rank:
                current, best, best_rank = trial, trial, verdict.rank
    # the price grid steps over choices an agent type has between two of its prices (a tenth of
    # always-strongest's cost left unspent on one routellm log): climb every agent type's
    # quality-cost frontier from the best choice, one vertex at a time, steepest first
    if best:
        best, best_rank = _climb(tables, best, best_rank, judged)
    return best if best and best_rank > global_rank else {}


def frontier(rows: Sequence[_Row]) -> list[_Row]:
    """The rows on the upper convex frontier of quality against cost: from the cheapest (ties:
    the better), each next one dearer and better, with the quality gained per unit of extra cost
    falling (the choices the Lagrangian ``quality − λ · cost`` makes as λ falls from ∞ to 0)."""
    hull: list[_Row] = []
    for row in sorted(rows, key=lambda r: (r[2], -r[1])):
        if hull and row[1] <= hull[-1][1]:
            continue  # dearer and no better
        while len(hull) >= 2 and _slope(hull[-2], hull[-1]) <= _slope(hull[-1], row):
            hull.pop()
        hull.append(row)
    return hull


def _slope(a: _Row, b: _Row) -> float:
    extra = b[2] - a[2]
    return (b[1] - a[1]) / extra if extra > 0 else float("inf")


def _climb(tables: dict[str, list[_Row]], start: dict[str, SelectionWeights],
           start_rank: tuple[float, ...],
           judged: Callable[[dict[str, SelectionWeights]], Verdict]
           ) -> tuple[dict[str, SelectionWeights], tuple[float, ...]]:
    """From ``start``, move agent types up their ``frontier`` one vertex at a time, the most
    quality per unit of extra cost first; a move is kept when the combination stays feasible and
    ranks better, and an agent type whose next move is not stops climbing (a greedy knapsack on
    the Lagrangian's own path)."""
    hulls = {agent: frontier(rows) for agent, rows in tables.items()}
    current, rank = dict(start), start_rank
    at: dict[str, _Row] = {}
    for agent, rows in tables.items():
        w = current.get(agent)
        at[agent] = next((r for r in rows if r[0] == w), hulls[agent][0])

    def step(agent: str) -> tuple[float, str, _Row] | None:
        here = at[agent]
        up = next((v for v in hulls[agent] if v[2] > here[2] and v[1] > here[1]), None)
        return None if up is None else (-_slope(here, up), agent, up)

    queue = [s for s in (step(agent) for agent in sorted(tables)) if s is not None]
    heapq.heapify(queue)
    while queue:
        _, agent, up = heapq.heappop(queue)
        trial = {**current, agent: up[0]}
        verdict = judged(trial)
        if not (verdict.feasible and verdict.rank > rank):
            continue
        current, rank, at[agent] = trial, verdict.rank, up
        nxt = step(agent)
        if nxt is not None:
            heapq.heappush(queue, nxt)
    return current, rank


def _by_gain_per_cost(tables: dict[str, list[tuple[SelectionWeights, float, float]]],
                      cheaper: dict[str, SelectionWeights], dearer: dict[str, SelectionWeights]
                      ) -> list[str]:
    """The agent types whose weights differ between two choices, by the quality the dearer one
    gains per unit of extra cost (most first; a gain at no extra cost first of all)."""
    def row(agent: str, w: SelectionWeights) -> tuple[float, float]:
        return next((q, c) for cand, q, c in tables[agent] if cand == w)

    ratios = []
    for agent in tables:
        if cheaper[agent] == dearer[agent]:
            continue
        (q0, c0), (q1, c1) = row(agent, cheaper[agent]), row(agent, dearer[agent])
        extra = c1 - c0
        ratios.append(((q1 - q0) / extra if extra > 0 else float("inf"), agent))
    return [agent for _, agent in sorted(ratios, key=lambda r: (-r[0], r[1]))]


def _intervals(report: ReplayReport, estimator: str, confidence: float) -> dict:
    return {m: i.to_dict() for m, i in report.intervals(estimator, confidence).items()}


def _describe(w: SelectionWeights) -> str:
    text = (f"capability {w.capability:.3f}, cost {w.cost:.3f}, performance {w.performance:.3f}, "
            f"availability {w.availability:.3f}")
    return text + (f", value {w.value_usd:.4g} USD per point" if w.value_usd else "")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _weights(parts: tuple[float, ...], value_usd: float | None = None) -> SelectionWeights:
    cap, cost, perf, avail = parts
    return SelectionWeights(capability=cap, cost=cost, performance=perf, availability=avail,
                            value_usd=value_usd)
