"""Properties of the off-policy estimators and the weight search (design §7)."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from itertools import product
from math import isclose, prod

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from api_model_management.config import SelectionWeights
from api_model_management.errors import InvalidInput
from api_model_management.events import CandidateScore
from api_model_management.replay import (
    STRONGEST,
    ConstraintUnmet,
    Goal,
    LoggedDecision,
    NoSupport,
    Objective,
    Outcome,
    PreparedLog,
    TargetPolicy,
    random_simplex,
    references,
    replay,
    simplex_grid,
    tune,
)
from api_model_management.replay._estimators import METRICS
from api_model_management.replay._tune import RANK_QUALITY_BY, value_candidates
from api_model_management.selection._core import adjust_for_priority

pytestmark = pytest.mark.property

QUALITY_ONLY = Objective(cost_per_usd=0.0, latency_per_s=0.0)
SUB = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0, 1)
SUBS = st.tuples(SUB, SUB, SUB, SUB)
PRIORITY = st.sampled_from(["low", "normal", "high", "critical"])


@st.composite
def simplex(draw) -> SelectionWeights:
    raw = [draw(st.integers(0, 20)) for _ in range(4)]
    if sum(raw) == 0:
        raw[0] = 1
    total = sum(raw)
    return SelectionWeights(capability=raw[0] / total, cost=raw[1] / total,
                            performance=raw[2] / total, availability=raw[3] / total)


def _ranked(subs, weights: SelectionWeights, priority: str) -> list[CandidateScore]:
    """The Selector's ranking: score desc, cheaper (higher cost sub-score) first, config order."""
    w = adjust_for_priority(weights, priority)
    rows = []
    for order, (cap, cost, perf, avail) in enumerate(subs):
        score = (w.capability * cap + w.cost * cost + w.performance * perf
                 + w.availability * avail)
        rows.append((score, cost, order, CandidateScore(
            model_id=f"m{order}", score=score, capability=cap, cost=cost, performance=perf,
            availability=avail)))
    return [c for *_, c in sorted(rows, key=lambda t: (-t[0], -t[1], t[2]))]


def _decision(i: int, ranked: list[CandidateScore], index: int, propensity: float,
              priority: str, quality: float) -> LoggedDecision:
    cands = tuple([ranked[index]] + ranked[:index] + ranked[index + 1:])
    return LoggedDecision(
        request_id=f"r{i}", agent_type=None, priority=priority, candidates=cands,
        chosen=cands[0].model_id, propensity=propensity, weights_version="v", explored=False,
        outcome=Outcome(success=True, cost_usd=Decimal(0), latency_ms=0.0, quality=quality))


def _propensity(index: int, n: int, epsilon: float) -> float:
    return (1.0 - epsilon if index == 0 else 0.0) + epsilon / n


@st.composite
def logged_world(draw, min_epsilon: float = 0.0):
    """Decisions logged by an epsilon-greedy Selector with random weights, and that policy."""
    weights = draw(simplex())
    epsilon = draw(st.sampled_from([min_epsilon, 0.1, 0.3, 1.0]) | st.floats(min_epsilon, 1))
    rng = random.Random(draw(st.integers(0, 2**32)))
    decisions = []
    for i in range(draw(st.integers(1, 25))):
        subs = draw(st.lists(SUBS, min_size=1, max_size=4))
        priority = draw(PRIORITY)
        ranked = _ranked(subs, weights, priority)
        index = rng.randrange(len(ranked)) if rng.random() < epsilon else 0
        quality = draw(st.floats(0, 1))
        decisions.append(_decision(i, ranked, index, _propensity(index, len(ranked), epsilon),
                                   priority, quality))
    return decisions, TargetPolicy(weights, epsilon=epsilon)


@settings(max_examples=150, deadline=None)
@given(logged_world())
def test_target_equal_to_logging_policy_gives_the_logged_mean(world):
    decisions, logging_policy = world
    report = replay(decisions, logging_policy, QUALITY_ONLY)
    reward = report.metrics["reward"]
    mean = sum(d.outcome.quality for d in decisions) / len(decisions)
    assert report.n_unsupported == 0
    assert isclose(reward.snips, mean, rel_tol=1e-9, abs_tol=1e-12)
    assert isclose(reward.ips, mean, rel_tol=1e-9, abs_tol=1e-12)
    assert isclose(reward.logged, mean, rel_tol=1e-9, abs_tol=1e-12)
    assert isclose(report.effective_sample_size, len(decisions), rel_tol=1e-9)


@settings(max_examples=150, deadline=None)
@given(logged_world(), simplex(), st.floats(0, 1))
def test_snips_stays_within_the_logged_rewards_and_ess_within_n(world, target, epsilon):
    decisions, _ = world
    report = replay(decisions, TargetPolicy(target, epsilon=epsilon), QUALITY_ONLY)
    qualities = [d.outcome.quality for d in decisions]
    reward = report.metrics["reward"]
    assert 0.0 <= report.effective_sample_size <= len(decisions) * (1 + 1e-9)
    assert reward.ips >= 0.0 and reward.ips_se >= 0.0
    if reward.snips is not None:
        assert min(qualities) - 1e-9 <= reward.snips <= max(qualities) + 1e-9
    assert min(qualities) - 1e-9 <= reward.dm <= max(qualities) + 1e-9


@st.composite
def enumerable_world(draw):
    """Up to three contexts with up to three candidates, a fixed reward per (context, model)."""
    contexts = []
    for _ in range(draw(st.integers(1, 3))):
        subs = draw(st.lists(SUBS, min_size=1, max_size=3))
        rewards = [draw(st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1)) for _ in subs]
        contexts.append((subs, draw(PRIORITY), rewards))
    return contexts


@settings(max_examples=100, deadline=None)
@given(enumerable_world(), simplex(), st.floats(0.05, 1.0), simplex(), st.floats(0, 1))
def test_ips_is_unbiased_over_every_logged_outcome(contexts, logging_w, log_eps, target_w,
                                                   target_eps):
    """E[IPS] over all joint logging outcomes equals the target policy's true value."""
    target = TargetPolicy(target_w, epsilon=target_eps)
    ranked = [_ranked(subs, logging_w, priority) for subs, priority, _ in contexts]
    reward_of = [{f"m{k}": r for k, r in enumerate(rewards)} for _, _, rewards in contexts]
    expected_ips = 0.0
    for picks in product(*(range(len(r)) for r in ranked)):
        probs = [_propensity(i, len(r), log_eps) for i, r in zip(picks, ranked, strict=True)]
        decisions = [
            _decision(c, r, i, p, contexts[c][1], reward_of[c][r[i].model_id])
            for c, (r, i, p) in enumerate(zip(ranked, picks, probs, strict=True))
        ]
        expected_ips += prod(probs) * replay(decisions, target, QUALITY_ONLY).metrics["reward"].ips
    # the truth: apply the target policy to every context
    truth = 0.0
    for c, r in enumerate(ranked):
        d = _decision(c, r, 0, 1.0, contexts[c][1], 0.0)
        pi = target.probabilities(d)
        truth += sum(p * reward_of[c][cand.model_id] for p, cand in zip(pi, d.candidates,
                                                                        strict=True))
    truth /= len(contexts)
    assert isclose(expected_ips, truth, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(logged_world(), st.sampled_from([0.5, 1 / 3, 0.25]), st.integers(0, 5),
       st.integers(0, 1000), st.sampled_from(["ips", "snips", "dm", "dr"]))
def test_tuning_returns_weights_on_the_simplex_and_the_best_candidate(world, step, n_random,
                                                                      seed, estimator):
    decisions, _ = world
    prepared = PreparedLog(decisions, QUALITY_ONLY)
    searched = (simplex_grid(step) + random_simplex(n_random, random.Random(seed))
                + value_candidates())
    # IPS/SNIPS cannot estimate weights that leave the logged choice where the log did not explore
    # (or that leave every importance weight 0): with none estimable, a clear refusal
    if not any(prepared.replay(TargetPolicy(c), metrics=("reward",)).estimable(estimator)
               for c in searched):
        with pytest.raises(InvalidInput, match="supports none|without exploration"):
            tune(decisions, QUALITY_ONLY, estimator=estimator, grid_step=step, n_random=n_random, seed=seed,
                 min_decisions=1)
        return
    result = tune(decisions, QUALITY_ONLY, estimator=estimator, grid_step=step,
                  n_random=n_random, seed=seed, min_decisions=1)
    w = result.weights
    parts = (w.capability, w.cost, w.performance, w.availability)
    assert all(0.0 <= x <= 1.0 for x in parts) and isclose(sum(parts), 1.0, abs_tol=1e-9)
    SelectionWeights.model_validate(w.model_dump())
    assert result.report.value(estimator) == result.value
    # nothing on the grid scores better
    for corner in (SelectionWeights(capability=1, cost=0, performance=0, availability=0),
                   SelectionWeights(capability=0, cost=1, performance=0, availability=0)):
        other = prepared.replay(TargetPolicy(corner), metrics=("reward",))
        assert not other.estimable(estimator) or other.value(estimator) <= result.value + 1e-12


# ------------------------------------------------------------------------------------------------
# constrained tuning (issue 11)

@st.composite
def costed_world(draw):
    """Decisions logged with exploration (ε ≥ 0.1), each outcome with a quality and a cost that
    follows the chosen candidate's cost sub-score (a cheaper model costs less), plus noise."""
    weights = draw(simplex())
    epsilon = draw(st.sampled_from([0.1, 0.3, 1.0]) | st.floats(0.1, 1))
    rng = random.Random(draw(st.integers(0, 2**32)))
    decisions = []
    for i in range(draw(st.integers(2, 30))):
        subs = draw(st.lists(SUBS, min_size=1, max_size=4))
        priority = draw(PRIORITY)
        ranked = _ranked(subs, weights, priority)
        index = rng.randrange(len(ranked)) if rng.random() < epsilon else 0
        base = _decision(i, ranked, index, _propensity(index, len(ranked), epsilon), priority,
                         draw(st.floats(0, 1)))
        cost = Decimal(str(round((1.0 - base.candidates[0].cost) * 0.01 + rng.random() * 1e-3,
                                 6)))
        decisions.append(LoggedDecision(
            request_id=base.request_id, agent_type=None, priority=priority,
            candidates=base.candidates, chosen=base.chosen, propensity=base.propensity,
            weights_version="v", explored=False,
            outcome=Outcome(success=True, cost_usd=cost, latency_ms=0.0,
                            quality=base.outcome.quality)))
    return decisions


@settings(max_examples=60, deadline=None)
@given(costed_world(), st.sampled_from(["max-quality", "min-cost"]), st.floats(0.05, 1.2),
       st.sampled_from([0.5, 0.8, 0.9, 0.99]), st.sampled_from(["dr", "ips", "snips"]),
       st.integers(0, 3))
def test_the_constrained_optimum_meets_its_constraint_and_nothing_feasible_beats_it(
        decisions, kind, share, confidence, estimator, n_random):
    goal = Goal(kind, share, confidence)
    prepared = PreparedLog(decisions, QUALITY_ONLY)
    reference = references(prepared)[STRONGEST]
    strongest = reference.report
    limit = goal.limit(strongest, estimator)
    # as the tuner does: the bound reads the paired standard error (the limit is an estimate)
    prepared.pair_with(goal.constrained_metric or "cost_usd", reference.picks, share)
    verdicts = []
    for w in simplex_grid(0.5) + random_simplex(n_random, random.Random(1)):
        report = prepared.replay(TargetPolicy(w), metrics=goal.metrics)
        if report.estimable(estimator):
            verdicts.append(goal.judge(report, estimator, limit, quality_by=RANK_QUALITY_BY))
    try:
        result = tune(decisions, QUALITY_ONLY, estimator=estimator, grid_step=0.5,
                      n_random=n_random, seed=1, min_decisions=1, goal=goal)
    except ConstraintUnmet:
        event("constraint unmet")
        assert verdicts and not any(v.feasible for v in verdicts)
        return
    except NoSupport:
        event("no support")
        assert not verdicts or not strongest.estimable(estimator)
        return
    event("tuned")
    assert result.limit == limit
    # the constraint holds on the chosen weights' own confidence bound...
    check = goal.check(result.report, estimator, limit)
    assert check is not None and check["met"]
    bound = check["bound_value"]
    assert bound <= limit if kind == "max-quality" else bound >= limit
    # ...and no candidate that meets it does better (ranked by the outcome model's quality)
    mine = goal.judge(result.report, estimator, limit, quality_by=RANK_QUALITY_BY)
    assert all(v.rank <= mine.rank for v in verdicts if v.feasible)
    # every interval brackets its estimate
    for interval in result.report.intervals(estimator, confidence).values():
        if interval.low is not None:
            assert interval.low <= interval.estimate <= interval.high


@settings(max_examples=60, deadline=None)
@given(costed_world(), simplex())
def test_always_strongest_has_the_best_modelled_quality_of_any_weights(decisions, target):
    prepared = PreparedLog(decisions, QUALITY_ONLY)
    # a model the log never chose ranks last for always-strongest (no evidence) while the outcome
    # model gives it the overall mean: compare where every candidate has been chosen
    assume(all(c.model_id in prepared.model_means["quality"]
               for d in decisions for c in d.candidates))
    strongest = references(prepared)[STRONGEST].report.metrics["quality"].dm
    assert prepared.replay(TargetPolicy(target)).metrics["quality"].dm <= strongest + 1e-12


@settings(max_examples=60, deadline=None)
@given(costed_world(), simplex(), st.floats(0, 1), st.data())
def test_estimates_on_disjoint_subsets_add_up_to_the_whole_log(decisions, target, epsilon, data):
    """What per-agent-type tuning relies on: DM, IPS and DR are means over decisions, so the
    whole log's estimate is the size-weighted mean of the estimates on a partition of it."""
    prepared = PreparedLog(decisions, QUALITY_ONLY)
    labels = data.draw(st.lists(st.integers(0, 2), min_size=len(decisions),
                                max_size=len(decisions)))
    parts = [[i for i, k in enumerate(labels) if k == part] for part in range(3)]
    parts = [p for p in parts if p]
    policy = TargetPolicy(target, epsilon=epsilon)
    whole = prepared.replay(policy)
    pieces = [(len(p), prepared.subset(p).replay(policy)) for p in parts]
    for metric in ("quality", "cost_usd", "reward"):
        for estimator in ("dm", "ips", "dr"):
            total = whole.metrics[metric].get(estimator)
            if total is None:
                continue
            mean = sum(n * r.metrics[metric].get(estimator) for n, r in pieces) / len(decisions)
            assert mean == pytest.approx(total, rel=1e-9, abs=1e-12), (metric, estimator)


@settings(max_examples=30, deadline=None)
@given(costed_world(), st.sampled_from(["max-quality", "min-cost"]), st.floats(0.2, 1.0),
       st.data())
def test_per_agent_weights_under_a_constraint_meet_it_and_never_lose_to_the_global(
        decisions, kind, share, data):
    labels = data.draw(st.lists(st.sampled_from(["a", "b"]), min_size=len(decisions),
                                max_size=len(decisions)))
    labelled = [replace(d, agent_type=k) for d, k in zip(decisions, labels, strict=True)]
    goal = Goal(kind, share, 0.8)
    try:
        alone = tune(labelled, QUALITY_ONLY, grid_step=0.5, n_random=0, min_decisions=1, goal=goal)
    except (ConstraintUnmet, NoSupport):
        return
    together = tune(labelled, QUALITY_ONLY, grid_step=0.5, n_random=0, min_decisions=1,
                    goal=goal, per_agent_type=True)
    assert together.estimated()["constraint"]["met"]
    mine = goal.judge(together.report, "dr", together.limit, quality_by=RANK_QUALITY_BY)
    assert mine.feasible and mine.rank >= goal.judge(alone.report, "dr", alone.limit,
                                                     quality_by=RANK_QUALITY_BY).rank
    if not together.agent_weights:
        assert sorted(together.kept_global) == sorted(set(labels))


@settings(max_examples=80, deadline=None)
@given(costed_world(), st.data())
def test_drift_views_are_the_distinct_snapshots_other_than_the_log_itself(decisions, data):
    """A drift view per distinct reliability snapshot (in the order first taken), none equal to
    the log itself; a view differs from the log only in its candidates' performance, and replays
    with the log's values (the same decisions, outcomes and outcome model)."""
    n_snaps = data.draw(st.integers(0, 5))
    perf = st.sampled_from([0.0, 0.5, 1.0])
    snaps = []
    for _ in range(n_snaps):
        kind = data.draw(st.sampled_from(["new", "base", "repeat"]))
        if kind == "base":
            snaps.append(tuple(tuple(c.performance for c in d.candidates) for d in decisions))
        elif kind == "repeat" and snaps:
            snaps.append(snaps[data.draw(st.integers(0, len(snaps) - 1))])
        else:
            snaps.append(tuple(tuple(data.draw(perf) for _ in d.candidates) for d in decisions))
    drifted = [replace(d, drift=tuple(s[i] for s in snaps)) for i, d in enumerate(decisions)]
    prepared = PreparedLog(drifted, QUALITY_ONLY)
    views = prepared.drift_views()
    base = snaps and tuple(tuple(c.performance for c in d.candidates) for d in drifted)
    expected: list = []
    for s in snaps:
        if s != base and s not in expected:
            expected.append(s)
    got = [tuple(tuple(c.performance for c in d.candidates) for d in v.decisions) for v in views]
    assert got == expected
    for view in views:
        assert view.values == prepared.values and view.predicted == prepared.predicted
        for moved, d in zip(view.decisions, drifted, strict=True):
            assert [c.model_copy(update={"performance": 0.0}) for c in moved.candidates] == \
                [c.model_copy(update={"performance": 0.0}) for c in d.candidates]
            assert (moved.chosen, moved.outcome, moved.propensity) == \
                (d.chosen, d.outcome, d.propensity)


@settings(max_examples=80, deadline=None)
@given(costed_world(), st.lists(st.tuples(simplex(), st.sampled_from([0.0, 0.1, 1.0])),
                                min_size=1, max_size=6), st.data())
def test_a_prepared_log_replays_as_a_fresh_one_whatever_it_replayed_before(
        decisions, policies, data):
    """Replays are kept per (picks, epsilon, metrics): any sequence of replays on one prepared
    log, on a subset of it or on a drift view, gives what a freshly prepared log gives."""
    prepared = PreparedLog(decisions, QUALITY_ONLY)
    idx = sorted(set(data.draw(st.lists(st.integers(0, len(decisions) - 1), min_size=1))))
    part = prepared.subset(idx)
    for weights, epsilon in policies + policies[::-1]:
        policy = TargetPolicy(weights, epsilon=epsilon)
        metrics = data.draw(st.sampled_from([("quality", "cost_usd"), ("reward",), METRICS]))
        assert prepared.replay(policy, metrics) == \
            PreparedLog(decisions, QUALITY_ONLY).replay(policy, metrics)
        assert part.replay(policy, metrics) == \
            PreparedLog(decisions, QUALITY_ONLY).subset(idx).replay(policy, metrics)


ROW_VALUE = st.integers(0, 20).map(lambda k: k / 20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ROW_VALUE, ROW_VALUE), min_size=1, max_size=12),
       st.floats(0, 100))
def test_the_frontier_holds_every_lagrangian_choice(points, price):
    """``frontier``: rows of the table, cheaper to dearer, each better than the last, with the
    quality per unit of extra cost falling; for every price of quality λ the best
    ``quality − λ · cost`` of the table is reached on it (so climbing it passes every choice a
    price sweep can make)."""
    from api_model_management.replay._tune import _slope, frontier

    grid = value_candidates()
    rows = [(grid[i % len(grid)], q, c) for i, (q, c) in enumerate(points)]
    hull = frontier(rows)
    assert hull and all(r in rows for r in hull)
    assert all(a[2] < b[2] and a[1] < b[1] for a, b in zip(hull, hull[1:], strict=False))
    slopes = [_slope(a, b) for a, b in zip(hull, hull[1:], strict=False)]
    assert all(s > t for s, t in zip(slopes, slopes[1:], strict=False))
    cheapest = min(r[2] for r in rows)
    assert hull[0][2] == cheapest and hull[0][1] == max(r[1] for r in rows if r[2] == cheapest)
    best = max(q - price * c for _, q, c in rows)
    assert max(q - price * c for _, q, c in hull) == pytest.approx(best, abs=1e-12)
