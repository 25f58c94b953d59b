"""Replay and tuning (design §7): decisions from the log, off-policy estimates checked against a
world built from real per-prompt correctness (RouteLLM) and real latency/failure traces (llmperf),
the weights file, and the CLI commands."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from api_model_management.cli._replay import replay_command, tune_command
from api_model_management.config import SelectionWeights
from api_model_management.errors import AMMError, InvalidInput
from api_model_management.events import (
    CandidateScore,
    EventLog,
    FeedbackRecorded,
    ModelSelected,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from api_model_management.replay import (
    CHEAPEST,
    STRONGEST,
    BadWeightsFile,
    ConstraintUnmet,
    Goal,
    NoDecisions,
    NoSupport,
    Objective,
    TargetPolicy,
    TooFewDecisions,
    decisions_from_events,
    load_decisions,
    read_weights_file,
    replay,
    tune,
    write_weights_file,
)
from api_model_management.selection._core import adjust_for_priority
from tests.conftest import shared_data_or_skip

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
# published list prices, USD per million tokens (../shared/data/README.md)
PRICE_PER_M = {MIXTRAL: (Decimal("0.60"), Decimal("0.60")), GPT4: (Decimal("10"), Decimal("30"))}
# real latency/failure traces standing in for each model: a flaky fast-ish one, a reliable one
TRACE = {MIXTRAL: "bedrock_70b", GPT4: "perplexity_70b"}
LOGGING = SelectionWeights()  # the configured defaults: 0.30 / 0.25 / 0.25 / 0.20
TARGET = SelectionWeights(capability=0.6, cost=0.0, performance=0.3, availability=0.1)
PRIORITIES = ("low", "normal", "normal", "high", "critical")


# ------------------------------------------------------------------------------------------------
# a logging policy written the way the Selector ranks and explores (independent of the package)

def log_choice(subs: list[tuple[str, float, float, float, float]], weights: SelectionWeights,
               priority: str, epsilon: float, rng: random.Random):
    """Rank like the Selector (score desc, cheaper first, config order), explore like ``_choose``;
    returns (candidates in logged order, chosen model, propensity, explored)."""
    w = adjust_for_priority(weights, priority)
    scored = []
    for order, (model, cap, cost, perf, avail) in enumerate(subs):
        score = (w.capability * cap + w.cost * cost + w.performance * perf
                 + w.availability * avail)
        if w.value_usd:  # the amount the log-price sub-score stands for (1e-6 .. 1 USD)
            score -= ((1 + 1e-6) ** (1 - cost) * (2e-6) ** cost - 1e-6) / w.value_usd
        scored.append((score, cost, order, CandidateScore(
            model_id=model, score=score, capability=cap, cost=cost, performance=perf,
            availability=avail)))
    ranked = [c for *_, c in sorted(scored, key=lambda t: (-t[0], -t[1], t[2]))]
    n, index, explored = len(ranked), 0, False
    if epsilon > 0 and rng.random() < epsilon:
        index, explored = rng.randrange(n), True
        propensity = epsilon / n + (1.0 - epsilon if index == 0 else 0.0)
    else:
        propensity = 1.0 - epsilon + epsilon / n if epsilon > 0 else 1.0
    ranked = [ranked[index]] + ranked[:index] + ranked[index + 1:]
    return tuple(ranked), ranked[0].model_id, propensity, explored


# ------------------------------------------------------------------------------------------------
# the RouteLLM world

@dataclass(frozen=True)
class Result:
    success: bool
    quality: float
    cost_usd: Decimal
    latency_ms: float


@dataclass(frozen=True)
class Context:
    request_id: str
    priority: str
    subs: list
    results: dict[str, Result]


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _traces(data: Path) -> dict[str, list[dict]]:
    return {m: json.loads((data / "llmperf" / f"{t}.json").read_text()) for m, t in TRACE.items()}


def _result(model: str, correct: str, in_tokens: int, out_tokens: int, trace: dict) -> Result:
    if trace.get("error_code") is not None:
        return Result(False, 0.0, Decimal(0), float(trace.get("end_to_end_latency_s") or 0) * 1000)
    in_price, out_price = PRICE_PER_M[model]
    cost = (in_price * in_tokens + out_price * out_tokens) / Decimal(1_000_000)
    return Result(True, 1.0 if correct == "True" else 0.0, cost,
                  float(trace["end_to_end_latency_s"]) * 1000)


def _subs(rng: random.Random) -> list:
    """Sub-scores as the Selector computes them for two models: capability (versatility),
    log-scaled cost (cheapest 1, dearest 0), performance from drifting live stats, availability
    from rate-limit headroom rounded down to tenths."""
    out = []
    for model, cap, cost, quality_prior, latency_prior_ms in (
        (MIXTRAL, 0.8 + 0.2 * 2 / 3, 1.0, 0.68, 3000.0), (GPT4, 1.0, 0.0, 0.80, 6000.0),
    ):
        quality = min(1.0, max(0.0, quality_prior + rng.gauss(0, 0.05)))
        latency = latency_prior_ms * rng.uniform(0.5, 1.5)
        perf = 0.4 * quality + 0.3 * rng.uniform(0.8, 1.0) + 0.3 / (1.0 + latency / 1000.0)
        avail = 0.5 + 0.5 * int(rng.random() * 10) / 10
        out.append((model, cap, cost, perf, avail))
    return out


def routellm_world(seed: int = 7) -> list[Context]:
    """One context per prompt of GSM8K and ten MMLU subjects: each model's real correctness, its
    cost at list price (tokens ≈ characters / 4; MMLU answers ≈ 5 tokens), a latency (or failure)
    from its llmperf trace; random priority, and drifting sub-scores."""
    data = shared_data_or_skip()
    rng = random.Random(seed)
    traces = _traces(data)
    rows = [(r, (len(r[f"{MIXTRAL}_response"]) // 4, len(r[f"{GPT4}_response"]) // 4))
            for r in _read_csv(data / "routellm" / "gsm8k" / "gsm8k_responses.csv")]
    for path in sorted((data / "routellm" / "mmlu").glob("mmlu_*.csv"))[:10]:
        rows.extend((r, (5, 5)) for r in _read_csv(path))
    world = []
    for i, (row, out_tokens) in enumerate(rows):
        in_tokens = len(row["prompt"]) // 4
        results = {m: _result(m, row[m], in_tokens, out_tokens[k],
                              traces[m][rng.randrange(len(traces[m]))])
                   for k, m in enumerate((MIXTRAL, GPT4))}
        world.append(Context(f"req-{i}", rng.choice(PRIORITIES), _subs(rng), results))
    return world


def log_world(world: list[Context], weights: SelectionWeights, epsilon: float, seed: int):
    """The events a Selector with ``weights`` and ``epsilon`` would have left in this world."""
    rng = random.Random(seed)
    events = []
    for k, ctx in enumerate(world):
        at = T0 + timedelta(milliseconds=k)
        cands, chosen, propensity, explored = log_choice(ctx.subs, weights, ctx.priority,
                                                          epsilon, rng)
        events.append(ModelSelected(
            occurred_at=at, request_id=ctx.request_id, agent_type="qa", model_id=chosen,
            candidates=cands, propensity=propensity, priority=ctx.priority, explored=explored))
        r = ctx.results[chosen]
        later = at + timedelta(microseconds=500)
        if r.success:
            events.append(RequestCompleted(occurred_at=later, request_id=ctx.request_id,
                                           model_id=chosen, latency_ms=r.latency_ms,
                                           cost_usd=r.cost_usd))
            events.append(FeedbackRecorded(occurred_at=later, request_id=ctx.request_id,
                                           score=r.quality, source="ground_truth"))
        else:
            events.append(RequestFailed(occurred_at=later, request_id=ctx.request_id,
                                        model_id=chosen, attempts=1, error_kind="server_error",
                                        latency_ms=r.latency_ms))
    return events


def true_values(world: list[Context], weights: SelectionWeights, objective: Objective) -> dict:
    """What the greedy policy with ``weights`` actually achieves in the world."""
    rng = random.Random(0)  # unused at epsilon 0
    picked = [ctx.results[log_choice(ctx.subs, weights, ctx.priority, 0.0, rng)[1]]
              for ctx in world]
    n = len(picked)
    return {
        "reward": sum(objective.reward(r.quality, float(r.cost_usd), r.latency_ms)
                      for r in picked) / n,
        "quality": sum(r.quality for r in picked) / n,
        "cost_usd": sum(float(r.cost_usd) for r in picked) / n,
        "latency_ms": sum(r.latency_ms for r in picked) / n,
        "failure_rate": sum(not r.success for r in picked) / n,
    }


@pytest.fixture(scope="module")
def world():
    return routellm_world()


@pytest.fixture(scope="module")
def logged(world):
    return decisions_from_events(log_world(world, LOGGING, epsilon=0.3, seed=11))


def test_estimates_match_the_true_value_of_another_policy(world, logged):
    objective = Objective()
    truth = true_values(world, TARGET, objective)
    report = replay(logged, TargetPolicy(TARGET), objective)
    assert report.n_decisions == len(world) > 1000
    assert report.n_unsupported == 0  # epsilon 0.3 gives every model support
    assert 0 < report.n_agree < report.n_decisions
    assert 0 < report.effective_sample_size < report.n_decisions
    for metric in ("reward", "quality", "failure_rate", "cost_usd", "latency_ms"):
        e = report.metrics[metric]
        # unbiased estimators: within 4 standard errors (seeded, so not flaky); the standard error
        # itself follows from the sample size and the importance weights
        assert abs(e.ips - truth[metric]) <= 4 * e.ips_se, metric
        assert abs(e.snips - truth[metric]) <= 4 * e.snips_se, metric
        assert abs(e.dr - truth[metric]) <= 4 * e.dr_se, metric
    reward = report.metrics["reward"]
    # the estimates are informative: tighter than the gap between the two policies
    assert reward.dr_se < 0.03 and reward.ips_se < 0.05
    assert abs(reward.logged - truth["reward"]) > 4 * reward.dr_se
    quality = report.metrics["quality"]
    assert abs(quality.logged - truth["quality"]) > 4 * quality.dr_se


def test_tuned_weights_do_better_than_the_logging_policy_in_the_world(world, logged):
    objective = Objective(cost_per_usd=10.0, latency_per_s=0.01)
    result = tune(logged, objective, grid_step=0.25, n_random=10, seed=3,
                  baseline=TargetPolicy(LOGGING))
    tuned = true_values(world, result.weights, objective)["reward"]
    logging_greedy = true_values(world, LOGGING, objective)["reward"]
    target = true_values(world, TARGET, objective)["reward"]
    assert tuned > logging_greedy
    assert tuned >= target - 2 * result.report.metrics["reward"].dr_se
    assert result.baseline is not None and result.value > result.baseline.value("dr")


def test_a_steep_cost_penalty_tunes_towards_the_cheap_model(world, logged):
    result = tune(logged, Objective(cost_per_usd=1000.0, latency_per_s=0.0), grid_step=0.25,
                  n_random=0)
    picks = [log_choice(ctx.subs, result.weights, ctx.priority, 0.0, random.Random(0))[1]
             for ctx in world]
    assert picks.count(MIXTRAL) > 0.9 * len(picks)


# ------------------------------------------------------------------------------------------------
# decisions from a real event log

def _selected(rid: str, at: datetime, chosen: str, propensity: float = 1.0, **kw) -> ModelSelected:
    cands = tuple(CandidateScore(model_id=m, score=0.5, capability=0.8, cost=c, performance=0.6,
                                 availability=1.0)
                  for m, c in ((chosen, 0.2), ("other" if chosen != "other" else "m-a", 0.9)))
    return ModelSelected(occurred_at=at, request_id=rid, agent_type="qa", model_id=chosen,
                         candidates=cands, propensity=propensity, **kw)


def test_load_decisions_from_the_parquet_log(tmp_path):
    t = T0
    events = [
        _selected("r1", t, "m-a", 0.9, priority="high"),
        _selected("r1", t + timedelta(seconds=1), "other"),  # a failover: not the decision
        RequestCompleted(occurred_at=t + timedelta(seconds=2), request_id="r1", model_id="other",
                         latency_ms=120.0, cost_usd=Decimal("0.001234")),
        ResponseEvaluated(occurred_at=t + timedelta(seconds=3), request_id="r1", completeness=1,
                          relevance=1, coherence=1, quality_score=0.9, low_quality=False),
        FeedbackRecorded(occurred_at=t + timedelta(seconds=4), request_id="r1", score=0.2,
                         source="judge"),
        FeedbackRecorded(occurred_at=t + timedelta(seconds=5), request_id="r1", score=0.6,
                         source="user"),
        FeedbackRecorded(occurred_at=t + timedelta(seconds=6), request_id="r1", score=0.4,
                         source="user"),
        _selected("r2", t, "m-b"),
        RequestFailed(occurred_at=t + timedelta(seconds=1), request_id="r2", attempts=3,
                      error_kind="timeout", latency_ms=900.0, cost_usd=Decimal("0.5")),
        _selected("r3", t, "m-c"),
        RequestCompleted(occurred_at=t + timedelta(seconds=1), request_id="r3", model_id="m-c",
                         latency_ms=50.0),
        ResponseEvaluated(occurred_at=t + timedelta(seconds=2), request_id="r3", completeness=1,
                          relevance=1, coherence=1, quality_score=0.7, low_quality=False),
        _selected("r4", t, "m-d"),  # still in flight: no outcome, left out
        _selected("r5", t, "m-e"),
        RequestCompleted(occurred_at=t + timedelta(seconds=1), request_id="r5", model_id="m-e",
                         latency_ms=10.0),
    ]
    EventLog(tmp_path, fsync="never").append(events)
    by_id = {d.request_id: d for d in load_decisions(tmp_path)}
    assert sorted(by_id) == ["r1", "r2", "r3", "r5"]
    r1 = by_id["r1"]
    assert (r1.chosen, r1.propensity, r1.priority, r1.agent_type) == ("m-a", 0.9, "high", "qa")
    assert r1.chosen_index == 0 and len(r1.candidates) == 2
    assert r1.outcome.success and r1.outcome.cost_usd == Decimal("0.001234")
    assert r1.outcome.latency_ms == 120.0
    assert r1.outcome.quality == pytest.approx(0.5)  # user feedback beats judge and evaluator
    assert not by_id["r2"].outcome.success and by_id["r2"].outcome.quality == 0.0
    assert by_id["r2"].outcome.cost_usd == Decimal("0.5")
    assert by_id["r3"].outcome.quality == 0.7
    assert by_id["r5"].outcome.quality is None


def test_no_log_or_no_decisions_is_refused(tmp_path):
    with pytest.raises(NoDecisions, match="no event log"):
        load_decisions(tmp_path / "missing")
    EventLog(tmp_path, fsync="never").append([_selected("r1", T0, "m-a")])  # no outcome
    with pytest.raises(NoDecisions, match="no logged decision"):
        load_decisions(tmp_path)
    with pytest.raises(NoDecisions):
        replay([], TargetPolicy(LOGGING))
    with pytest.raises(NoDecisions):
        tune([])
    assert issubclass(NoDecisions, InvalidInput) and issubclass(NoDecisions, AMMError)


def test_bad_propensity_or_chosen_model_is_left_out():
    ok = _selected("r1", T0, "m-a", 0.5)
    zero = _selected("r2", T0, "m-a", 0.5).model_copy(update={"propensity": 0.0})
    stranger = _selected("r3", T0, "m-a").model_copy(update={"model_id": "nobody"})
    done = [RequestCompleted(occurred_at=T0, request_id=r, latency_ms=1.0) for r in ("r1", "r2",
                                                                                   "r3")]
    assert [d.request_id for d in decisions_from_events([ok, zero, stranger, *done])] == ["r1"]


# ------------------------------------------------------------------------------------------------
# zero support

def test_zero_support_gives_ips_no_weight_but_dm_and_dr_still_estimate():
    # logged deterministically (propensity 1): "cheap" always; the target wants "strong"
    events = []
    for i in range(10):
        cands = (CandidateScore(model_id="cheap", score=0.6, capability=0.5, cost=1.0,
                                performance=0.5, availability=1.0),
                 CandidateScore(model_id="strong", score=0.5, capability=1.0, cost=0.0,
                                performance=0.9, availability=1.0))
        events.append(ModelSelected(occurred_at=T0, request_id=f"r{i}", model_id="cheap",
                                    candidates=cands, propensity=1.0))
        events.append(RequestCompleted(occurred_at=T0, request_id=f"r{i}", latency_ms=100.0))
        events.append(FeedbackRecorded(occurred_at=T0, request_id=f"r{i}", score=0.5,
                                       source="ground_truth"))
    decisions = decisions_from_events(events)
    quality_first = SelectionWeights(capability=1.0, cost=0.0, performance=0.0, availability=0.0)
    report = replay(decisions, TargetPolicy(quality_first), Objective(0.0, 0.0))
    assert (report.n_agree, report.n_unsupported) == (0, 10)
    assert report.effective_sample_size == 0.0
    reward = report.metrics["reward"]
    assert reward.ips == 0.0 and reward.snips is None and reward.snips_se is None
    # the outcome model has never seen "strong": it falls back to the overall mean
    assert reward.dm == pytest.approx(0.5) and reward.dr == pytest.approx(0.5)
    # with target exploration the logged model keeps some weight
    explore = replay(decisions, TargetPolicy(quality_first, epsilon=0.5), Objective(0.0, 0.0))
    # π(cheap) = 0.5 / 2, propensity 1: weight 0.25 on a reward of 0.5
    assert explore.metrics["reward"].ips == pytest.approx(0.125)
    assert explore.metrics["reward"].snips == pytest.approx(0.5)


def test_cost_is_modelled_per_request_from_its_expected_cost():
    """The cost outcome model is each candidate's expected cost (the inverse of its log-price
    sub-score) times the real-to-expected ratio of its model and agent type. On a log where each
    model bills a fixed share of the expected cost and prompts vary in length, a policy that
    sends the short prompts to the dear model is costed exactly by DM and DR, where the mean per
    model and agent type is off by more than half."""
    from math import log

    from api_model_management.replay._estimators import PreparedLog, _predicted
    from api_model_management.selection._core import (
        _LOG_COST_CEILING,
        _LOG_COST_SPAN,
        COST_FLOOR_USD,
    )

    def score(usd: float) -> float:  # the Selector's cost sub-score of an expected cost
        return (_LOG_COST_CEILING - log(usd + COST_FLOOR_USD)) / _LOG_COST_SPAN

    billed = {"dear": 0.25, "cheap": 0.5}  # real / expected: answers shorter than max_tokens
    rng = random.Random(3)
    decisions, truth, shorts = [], [], []
    for i in range(400):
        tokens = rng.choice([100, 400, 1600])  # prompt length
        shorts.append(tokens == 100)
        usd = {"dear": tokens * 3e-5, "cheap": tokens * 1e-6}
        cands = tuple(CandidateScore(model_id=m, score=0.5, capability=1.0, cost=score(usd[m]),
                                     performance=0.5, availability=1.0) for m in usd)
        chosen = "dear" if rng.random() < 0.2 else "cheap"  # logged at random: 20% dear
        cost = Decimal(str(round(usd[chosen] * billed[chosen], 12)))
        decisions.extend(decisions_from_events([
                ModelSelected(occurred_at=T0, request_id=f"r{i}", agent_type="qa",
                              model_id=chosen, candidates=cands,
                              propensity=0.2 if chosen == "dear" else 0.8),
                RequestCompleted(occurred_at=T0, request_id=f"r{i}", model_id=chosen,
                                 latency_ms=1.0, cost_usd=cost)]))
        truth.append(usd["dear" if tokens == 100 else "cheap"]
                     * billed["dear" if tokens == 100 else "cheap"])
    prepared = PreparedLog(decisions)
    short_to_dear = [next(k for k, c in enumerate(d.candidates)
                          if c.model_id == ("dear" if short else "cheap"))
                     for d, short in zip(decisions, shorts, strict=True)]
    report = prepared.replay_choices(short_to_dear, metrics=("cost_usd",))
    cost = report.metrics["cost_usd"]
    mean = sum(truth) / len(truth)
    assert cost.dm == pytest.approx(mean, rel=1e-6) and cost.dr == pytest.approx(mean, rel=1e-6)
    # the mean per model and agent type: a short prompt sent to the dear model costs its mean
    per_cell = _predicted(prepared.decisions, prepared.values["cost_usd"],
                          prepared.model_means["cost_usd"], "scale")
    dm_cell = sum(q[k] for q, k in zip(per_cell, short_to_dear, strict=True)) / len(truth)
    assert abs(dm_cell - mean) > 0.5 * mean


def test_per_agent_weights_and_priority_are_applied():
    cands = (CandidateScore(model_id="cheap", score=0, capability=0.0, cost=1.0, performance=0.0,
                            availability=0.0),
             CandidateScore(model_id="strong", score=0, capability=0.0, cost=0.0,
                            performance=1.0, availability=0.0))
    events = []
    for i, (agent, priority) in enumerate((("a", "normal"), ("b", "normal"), ("b", "critical"))):
        events.append(ModelSelected(occurred_at=T0, request_id=f"r{i}", agent_type=agent,
                                    model_id="cheap", candidates=cands, priority=priority,
                                    propensity=0.5))
        events.append(RequestCompleted(occurred_at=T0, request_id=f"r{i}", latency_ms=1.0))
    decisions = decisions_from_events(events)
    base = SelectionWeights(capability=0.0, cost=0.6, performance=0.4, availability=0.0)
    to_perf = SelectionWeights(capability=0.0, cost=0.4, performance=0.6, availability=0.0)
    policy = TargetPolicy(base, {"a": to_perf})
    # a: override prefers performance; b normal: base prefers cost; b critical: 80 % of cost moves
    by_id = {d.request_id: policy.greedy_index(d) for d in decisions}
    assert by_id == {"r0": 1, "r1": 0, "r2": 1}
    assert replay(decisions, policy).n_agree == 1


# ------------------------------------------------------------------------------------------------
# the weights file

def test_weights_file_round_trip(tmp_path):
    agent = {"coder": SelectionWeights(capability=0.7, cost=0.1, performance=0.1,
                                       availability=0.1),
             "qa": SelectionWeights(capability=0, cost=0, performance=1, availability=0,
                                    value_usd=0.003)}
    path = write_weights_file(tmp_path / "w.json", TARGET, "tuned-1", agent,
                              estimated={"value": 0.5}, provenance={"seed": 3})
    loaded = read_weights_file(path)
    assert (loaded.weights, loaded.weights_version, loaded.agent_weights) == (TARGET, "tuned-1",
                                                                              agent)
    assert loaded.estimated == {"value": 0.5} and loaded.provenance == {"seed": 3}
    assert sorted(json.loads(path.read_text())) == ["agent_weights", "estimated", "provenance",
                                                    "weights", "weights_version"]
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]  # no temp file left behind


@pytest.mark.parametrize(("body", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"weights_version": "v"}', "weights must be an object"),
    ('{"weights": {"capability": 0.5, "cost": 0.5, "performance": 0.5, "availability": 0},'
     ' "weights_version": "v"}', "sum to 1"),
    ('{"weights": {"capability": 1.5, "cost": -0.5, "performance": 0, "availability": 0},'
     ' "weights_version": "v"}', "weights.capability"),
    ('{"weights": {"capability": 1, "cost": 0, "performance": 0, "availability": 0, "x": 0},'
     ' "weights_version": "v"}', "weights.x"),
    ('{"weights": {"capability": 1, "cost": 0, "performance": 0, "availability": 0}}',
     "weights_version must be a non-empty string"),
    ('{"weights": {"capability": 1, "cost": 0, "performance": 0, "availability": 0},'
     ' "weights_version": "v", "agent_weights": {"a": {"cost": 2}}}', "agent_weights.a"),
    ('{"weights": {}, "weights_version": "v", "wieghts": {}}', "unknown keys wieghts"),
    ('{"weights": {"capability": 1, "cost": 0, "performance": 0, "availability": 0,'
     ' "value_usd": 0}, "weights_version": "v"}', "weights.value_usd"),
])
def test_bad_weights_files_are_refused_with_the_reason(tmp_path, body, reason):
    path = tmp_path / "w.json"
    path.write_text(body)
    with pytest.raises(BadWeightsFile, match=reason):
        read_weights_file(path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(BadWeightsFile, match="not found"):
        read_weights_file(tmp_path / "nope.json")


# ------------------------------------------------------------------------------------------------
# the CLI commands

def _small_log(tmp_path: Path, noisy: bool = False) -> Path:
    """60 decisions between "cheap" and "strong", logged with epsilon 0.5; ``noisy``: both cost
    something and their quality varies (so every estimate has a spread)."""
    rng = random.Random(5)
    events = []
    for i in range(60):
        subs = [("cheap", 0.8, 1.0, rng.uniform(0.4, 0.6), 1.0),
                ("strong", 1.0, 0.0, rng.uniform(0.6, 0.9), 1.0)]
        cands, chosen, propensity, explored = log_choice(subs, LOGGING, "normal", 0.5, rng)
        rid = f"r{i}"
        strong = chosen == "strong"
        cost = Decimal("0.01") if strong else Decimal("0.001") if noisy else Decimal(0)
        score = 0.9 if strong else 0.4
        if noisy:
            score = float(rng.random() < score)
        events.append(ModelSelected(occurred_at=T0, request_id=rid, agent_type="qa",
                                    model_id=chosen, candidates=cands, propensity=propensity,
                                    explored=explored))
        events.append(RequestCompleted(occurred_at=T0, request_id=rid, latency_ms=100.0,
                                       cost_usd=cost))
        events.append(FeedbackRecorded(occurred_at=T0, request_id=rid, source="user",
                                       score=score))
    data = tmp_path / "data"
    EventLog(data, fsync="never").append(events)
    return data


def _console() -> Console:
    return Console(record=True, width=200, force_terminal=False)


def test_replay_and_tune_commands(tmp_path, capsys):
    data = _small_log(tmp_path)
    out = tmp_path / "tuned.json"
    console = _console()
    assert tune_command(out, data, "table", version="v-test", grid_step=0.5, samples=5,
                        console=console) == 0
    assert "wrote" in console.export_text()
    tuned = read_weights_file(out)
    assert tuned.weights_version == "v-test" and tuned.provenance["decisions"] == 60
    assert tuned.estimated["estimator"] == "dr"

    console = _console()
    assert replay_command(out, data, "table", console=console) == 0
    text = console.export_text()
    assert "Replay of weights v-test" in text and "60 decisions" in text and "failure_rate" in text

    console = _console()
    assert replay_command(out, data, "json", console=console) == 0
    body = json.loads(console.export_text())
    assert body["n_decisions"] == 60 and body["weights_version"] == "v-test"
    assert body["metrics"]["reward"]["dr"] == pytest.approx(tuned.estimated["value"])
    assert body["confidence"] == 0.9
    assert body["intervals"]["dr"]["quality"] == tuned.estimated["intervals"]["quality"]
    assert body["intervals"]["dm"]["quality"]["low"] is None
    assert capsys.readouterr().err == ""


def test_commands_fail_with_one_line_on_bad_input(tmp_path, capsys):
    data = _small_log(tmp_path)
    good = write_weights_file(tmp_path / "w.json", LOGGING, "v1")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        lambda: replay_command(good, tmp_path / "no-such-dir", "table", console=_console()),
        lambda: replay_command(bad, data, "table", console=_console()),
        lambda: replay_command(tmp_path / "absent.json", data, "table", console=_console()),
        lambda: replay_command(good, empty, "table", console=_console()),
        lambda: replay_command(good, data, "yaml", console=_console()),
        lambda: tune_command(tmp_path / "t.json", empty, "table", console=_console()),
        lambda: tune_command(tmp_path / "t.json", data, "table", grid_step=0.3,
                             console=_console()),
        lambda: tune_command(tmp_path / "t.json", data, "table", estimator="best",
                             console=_console()),
        lambda: tune_command(tmp_path / "t.json", data, "table", baseline_file=bad,
                             console=_console()),
    ]
    for case in cases:
        assert case() == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert not (tmp_path / "t.json").exists()


def test_amm_tune_and_replay_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from api_model_management.cli import app

    data = _small_log(tmp_path)
    out = tmp_path / "new" / "dir" / "w.json"  # the folder is created
    runner = CliRunner()
    tuned = runner.invoke(app, ["tune", "--out", str(out), "--data-dir", str(data), "--version", "cli-1",
                                "--grid-step", "0.5", "--samples", "3", "--cost-per-usd", "5"])
    assert tuned.exit_code == 0, tuned.output
    assert read_weights_file(out).weights_version == "cli-1"
    replayed = runner.invoke(app, ["replay", "--weights", str(out), "--data-dir", str(data), "--format", "json"])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output)["n_decisions"] == 60
    missing = runner.invoke(app, ["replay", "--weights", str(tmp_path / "absent.json"), "--data-dir", str(data)])
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_tuning_without_any_support_is_refused_clearly_but_dr_still_tunes():
    from api_model_management.replay import LoggedDecision, Outcome

    # the log chose m1 for sure-ish (0.5) but every greedy weight vector picks m0 (ties by id):
    # SNIPS has no weight anywhere
    tie = (CandidateScore(model_id="m1", score=0.0, capability=0.0, cost=0.0, performance=0.0, availability=0.0),
           CandidateScore(model_id="m0", score=0.0, capability=0.0, cost=0.0, performance=0.0, availability=0.0))
    decisions = [LoggedDecision(request_id="r0", agent_type=None, priority="low", candidates=tie, chosen="m1",
                                propensity=0.5, weights_version="v", explored=False,
                                outcome=Outcome(success=True, cost_usd=Decimal(0), latency_ms=0.0, quality=0.0))]
    with pytest.raises(InvalidInput, match="supports none"):
        tune(decisions, estimator="snips", grid_step=0.5, n_random=0, min_decisions=1)
    assert tune(decisions, estimator="dr", grid_step=0.5, n_random=0, min_decisions=1).value is not None


# ------------------------------------------------------------------------------------------------
# constrained tuning, references, intervals and refusals (issue 11)

def _truth_of_always(world: list[Context], model: str) -> dict:
    n = len(world)
    return {"quality": sum(c.results[model].quality for c in world) / n,
            "cost_usd": sum(float(c.results[model].cost_usd) for c in world) / n}


def test_references_are_the_strongest_and_the_cheapest_model(world, logged):
    result = tune(logged, grid_step=0.5, n_random=0)
    strong, cheap = result.references[STRONGEST], result.references[CHEAPEST]
    assert (strong.model, cheap.model) == (GPT4, MIXTRAL)
    # both are off-policy estimates that land near what always sending there achieves
    for ref, model in ((strong, GPT4), (cheap, MIXTRAL)):
        truth = _truth_of_always(world, model)
        for metric in ("quality", "cost_usd"):
            e = ref.report.metrics[metric]
            assert abs(e.dr - truth[metric]) <= 4 * e.dr_se, (model, metric)
    relative = result.estimated()["relative"]
    q_s, c_s = (strong.report.metrics[m].dr for m in ("quality", "cost_usd"))
    q_c, c_c = (cheap.report.metrics[m].dr for m in ("quality", "cost_usd"))
    assert relative["break_even_cost_per_usd"] == pytest.approx((q_s - q_c) / (c_s - c_c))
    assert relative["cost_share_of_strongest"] == pytest.approx(
        result.report.metrics["cost_usd"].dr / c_s)
    # on this log a USD buys ~200 quality points between the two: the scale of --cost-per-usd
    assert 100 < relative["break_even_cost_per_usd"] < 400


def test_intervals_are_normal_approximations_at_the_stated_level(logged):
    report = replay(logged, TargetPolicy(TARGET))
    e = report.metrics["quality"]
    ci = e.interval("dr", 0.9)
    assert (ci.estimate, ci.se, ci.confidence) == (e.dr, e.dr_se, 0.9)
    assert ci.low == pytest.approx(e.dr - 1.6449 * e.dr_se, rel=1e-4)
    assert ci.high == pytest.approx(e.dr + 1.6449 * e.dr_se, rel=1e-4)
    wider = e.interval("dr", 0.99)
    assert wider.low < ci.low and wider.high > ci.high
    assert e.interval("snips", 0.9).se == e.snips_se and e.interval("ips", 0.9).se == e.ips_se
    dm = e.interval("dm", 0.9)
    assert dm.estimate == e.dm and dm.se is dm.low is dm.high is None  # DM has no standard error
    with pytest.raises(InvalidInput, match="confidence"):
        e.interval("dr", 1.0)


def test_estimated_holds_every_metric_with_its_interval(logged):
    result = tune(logged, grid_step=0.5, n_random=0, goal=Goal(confidence=0.8))
    est = result.estimated()
    assert est["confidence"] == 0.8 and est["goal"] == {"kind": "reward", "share": None,
                                                        "confidence": 0.8, "batch": None}
    for name in ("intervals", *(f"references.{r}" for r in (STRONGEST, CHEAPEST))):
        intervals = est[name] if "." not in name else est["references"][name.split(".")[1]][
            "intervals"]
        for metric in ("quality", "cost_usd", "latency_ms", "reward"):
            i = intervals[metric]
            assert i["low"] <= i["estimate"] <= i["high"] and i["confidence"] == 0.8, (name, metric)
    assert est["intervals"]["reward"]["estimate"] == est["value"] == result.value
    assert "constraint" not in est  # reward mode


@pytest.mark.parametrize("share", [0.5, 0.25])
def test_max_quality_keeps_the_cost_bound_within_its_share(world, logged, share):
    result = tune(logged, grid_step=0.25, n_random=10, seed=3,
                  goal=Goal("max-quality", share, confidence=0.9))
    cost = result.report.metrics["cost_usd"]
    strong_cost = result.references[STRONGEST].report.metrics["cost_usd"].dr
    assert result.limit == pytest.approx(share * strong_cost)
    assert cost.interval("dr", 0.9).high <= result.limit
    check = result.estimated()["constraint"]
    assert check["met"] and check["bound"] == "upper" and check["metric"] == "cost_usd"
    # and in the world itself: the tuned weights cost at most that share of always-GPT-4
    truth = true_values(world, result.weights, Objective())
    assert truth["cost_usd"] <= share * _truth_of_always(world, GPT4)["cost_usd"]
    # a looser limit buys at least as much estimated quality
    looser = tune(logged, grid_step=0.25, n_random=10, seed=3, goal=Goal("max-quality", 1.0))
    assert looser.report.metrics["quality"].dr >= result.report.metrics["quality"].dr


def test_min_cost_keeps_the_quality_bound_at_its_share(world, logged):
    result = tune(logged, grid_step=0.25, n_random=10, seed=3, goal=Goal("min-cost", 0.8))
    quality = result.report.metrics["quality"]
    assert quality.interval("dr", 0.9).low >= result.limit
    assert result.limit == pytest.approx(
        0.8 * result.references[STRONGEST].report.metrics["quality"].dr)
    truth = true_values(world, result.weights, Objective())
    assert truth["quality"] >= 0.8 * _truth_of_always(world, GPT4)["quality"]
    # cheaper than the reward-optimal weights, which pay for quality beyond the limit
    reward_opt = tune(logged, grid_step=0.25, n_random=10, seed=3)
    assert result.report.metrics["cost_usd"].dr < reward_opt.report.metrics["cost_usd"].dr


@pytest.mark.parametrize(("goal", "reach"), [
    (Goal("max-quality", 0.01), "the cheapest reachable: upper bound"),
    (Goal("min-cost", 0.95), "the best reachable: lower bound"),
])
def test_an_unreachable_constraint_is_refused_with_the_nearest_point(logged, goal, reach):
    with pytest.raises(ConstraintUnmet, match=reach) as info:
        tune(logged, grid_step=0.25, n_random=0, goal=goal)
    exc = info.value
    assert isinstance(exc, InvalidInput) and exc.limit is not None
    if goal.kind == "max-quality":
        assert exc.best_bound > exc.limit
    else:
        assert exc.best_bound < exc.limit
    assert "with weights capability" in str(exc)


def test_goal_settings_are_validated(logged):
    for bad in (lambda: Goal("best"), lambda: Goal("max-quality"), lambda: Goal("min-cost", 0.0),
                lambda: Goal("reward", 0.5), lambda: Goal(confidence=1.5)):
        with pytest.raises(InvalidInput):
            bad()
    with pytest.raises(InvalidInput, match="dm has no standard error"):
        tune(logged, estimator="dm", goal=Goal("max-quality", 0.5))
    with pytest.raises(InvalidInput, match="min_decisions"):
        tune(logged, min_decisions=0)


def test_without_exploration_ips_refuses_and_dr_says_what_it_extrapolates(world):
    unexplored = decisions_from_events(log_world(world, LOGGING, epsilon=0.0, seed=11))
    assert all(d.propensity == 1.0 for d in unexplored)
    for estimator in ("ips", "snips"):
        with pytest.raises(NoSupport, match="without exploration.*only dm or dr"):
            tune(unexplored, estimator=estimator, grid_step=0.25, n_random=0)
        with pytest.raises(NoSupport, match="always-strongest"):
            tune(unexplored, estimator=estimator, grid_step=0.25, n_random=0,
                 goal=Goal("max-quality", 0.5))
    result = tune(unexplored, grid_step=0.25, n_random=0)
    assert result.report.n_unsupported > 0  # counted, and said by the CLI
    assert not result.references[STRONGEST].report.estimable("ips")


def test_too_few_decisions_are_refused_overall_and_kept_global_per_agent_type(logged):
    with pytest.raises(TooFewDecisions, match=f"only {len(logged)} logged decisions"):
        tune(logged, grid_step=0.5, n_random=0, min_decisions=len(logged) + 1)
    # two agent types: "qa" (every decision but 30) and "coder" (30)
    relabelled = [replace(d, agent_type="coder") if i < 30 else d for i, d in enumerate(logged)]
    result = tune(relabelled, grid_step=0.5, n_random=0, per_agent_type=True, min_decisions=50)
    assert list(result.agent_weights) == ["qa"]
    assert result.kept_global == {"coder": "30 decisions, fewer than min_decisions 50"}
    assert result.estimated()["agent_types"] == {
        "qa": "tuned", "coder": "kept the global weights: 30 decisions, fewer than min_decisions 50"}
    lower = tune(relabelled, grid_step=0.5, n_random=0, per_agent_type=True, min_decisions=30)
    assert sorted(lower.agent_weights) == ["coder", "qa"] and lower.kept_global == {}
    # under a constraint the agent types' weights are chosen together and judged on the whole
    # log: the combination meets the constraint and costs no more than the global weights alone
    # (min-cost); when none does better, both keep the global weights and say so
    goal = Goal("min-cost", 0.8)
    alone = tune(relabelled, grid_step=0.5, n_random=0, min_decisions=20, goal=goal)
    together = tune(relabelled, grid_step=0.5, n_random=0, per_agent_type=True, min_decisions=20,
                    goal=goal)
    assert together.estimated()["constraint"]["met"]
    assert together.report.metrics["cost_usd"].dr <= alone.report.metrics["cost_usd"].dr + 1e-12
    if together.agent_weights:
        assert sorted(together.agent_weights) == ["coder", "qa"] and together.kept_global == {}
    else:
        assert sorted(together.kept_global) == ["coder", "qa"]
        assert all("better than the global weights" in why
                   for why in together.kept_global.values())


@pytest.mark.parametrize("goal", [Goal("min-cost", 0.8), Goal("max-quality", 0.5)])
def test_per_agent_weights_under_a_constraint_meet_it_together_and_beat_the_global(
        world, logged, goal):
    # two agent types that need different models: "hard" prompts only the strong model gets
    # right (or where the weak one failed), "easy" ones the rest
    kind = {ctx.request_id: "hard" if ctx.results[GPT4].quality > ctx.results[MIXTRAL].quality
            else "easy" for ctx in world}
    relabelled = [replace(d, agent_type=kind[d.request_id]) for d in logged]
    alone = tune(relabelled, grid_step=0.25, n_random=0, goal=goal)
    together = tune(relabelled, grid_step=0.25, n_random=0, goal=goal, per_agent_type=True)
    assert sorted(together.agent_weights) == ["easy", "hard"] and together.kept_global == {}
    assert together.estimated()["constraint"]["met"]
    # in the world itself (not only estimated): what each policy achieves when served greedily
    def served(result):
        picked = []
        for ctx in world:
            w = result.agent_weights.get(kind[ctx.request_id], result.weights)
            chosen = log_choice(ctx.subs, w, ctx.priority, 0.0, random.Random(0))[1]
            picked.append(ctx.results[chosen])
        return (sum(r.quality for r in picked) / len(picked),
                sum(float(r.cost_usd) for r in picked) / len(picked))
    (q_alone, c_alone), (q_together, c_together) = served(alone), served(together)
    strongest = sum(ctx.results[GPT4].quality for ctx in world) / len(world)
    strongest_cost = sum(float(ctx.results[GPT4].cost_usd) for ctx in world) / len(world)
    if goal.kind == "min-cost":
        assert q_together >= 0.8 * strongest * 0.97 and c_together < c_alone
    else:
        assert c_together <= 0.5 * strongest_cost * 1.05 and q_together > q_alone + 0.05


def test_tune_command_prints_the_scale_and_the_constraint(tmp_path, capsys):
    data = _small_log(tmp_path, noisy=True)
    out = tmp_path / "w.json"
    console = _console()
    assert tune_command(out, data, "table", version="v-c", grid_step=0.5, samples=5,
                        max_cost_share=0.8, min_decisions=60, console=console) == 0
    text = console.export_text()
    assert "objective: best quality with cost at most 0.8 x always-strongest's" in text
    assert "Estimated per request (DR, 90% intervals)" in text
    assert f"{STRONGEST}\n" in text or STRONGEST in text
    assert "of its quality at" in text and "quality at" in text and "per USD" in text
    assert "constraint met: cost_usd upper bound" in text
    written = read_weights_file(out)
    assert written.provenance["min_decisions"] == 60
    assert written.provenance["goal"] == {"kind": "max-quality", "share": 0.8, "confidence": 0.9,
                                          "batch": None}
    assert written.estimated["constraint"]["met"] is True
    se = written.estimated["constraint"]["se"]
    assert f"(standard error {se:.4g}, of policy - share x always-strongest)" in " ".join(
        text.split())
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_decisions": 61}, "only 60 logged decisions, fewer than min_decisions 61"),
    ({"max_cost_share": 0.001}, "no candidate weights keep the cost's 90% upper bound"),
    ({"min_quality_share": 1.5}, "no candidate weights keep the quality"),
    ({"objective": "max-quality"}, "needs --max-cost-share"),
    ({"max_cost_share": 0.5, "min_quality_share": 0.5}, "not both"),
    ({"objective": "min-cost", "max_cost_share": 0.5}, "does not apply to --objective min-cost"),
    ({"objective": "reward", "min_quality_share": 0.5}, "not reward"),
    ({"max_cost_share": 0.5, "estimator": "dm"}, "dm has no standard error"),
])
def test_tune_command_refusals_are_one_line(tmp_path, capsys, kwargs, message):
    data = _small_log(tmp_path, noisy=True)
    out = tmp_path / "w.json"
    assert tune_command(out, data, "table", grid_step=0.5, samples=0, console=_console(),
                        **kwargs) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_amm_tune_constrained_modes_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from api_model_management.cli import app

    data = _small_log(tmp_path, noisy=True)
    runner = CliRunner()
    base = ["tune", "--data-dir", str(data), "--grid-step", "0.5", "--samples", "3"]
    out = tmp_path / "q.json"
    quality = runner.invoke(app, [*base, "--out", str(out), "--objective", "min-cost",
                                  "--min-quality-share", "0.6", "--min-decisions", "10",
                                  "--format", "json"])
    assert quality.exit_code == 0, quality.output
    body = json.loads(quality.output)
    assert body["estimated"]["goal"]["kind"] == "min-cost"
    assert body["estimated"]["constraint"]["met"]
    assert read_weights_file(out).provenance["min_decisions"] == 10
    cost = runner.invoke(app, [*base, "--out", str(tmp_path / "c.json"), "--max-cost-share", "0.7",
                               "--confidence", "0.8"])
    assert cost.exit_code == 0, cost.output
    assert "80% intervals" in cost.output and "constraint met" in cost.output
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "r.json"), "--max-cost-share",
                                  "0.0001"])
    assert refused.exit_code == 2 and "cheapest reachable" in refused.output
    assert not (tmp_path / "r.json").exists()
    few = runner.invoke(app, [*base, "--out", str(tmp_path / "f.json"), "--min-decisions", "500"])
    assert few.exit_code == 2 and "nothing can be tuned" in few.output


# ------------------------------------------------------------------------------------------------
# bad --out and bad weights (issue 12, item 9)


@pytest.mark.parametrize("where", ["under a file", "in /sys"])
def test_tune_into_an_unwritable_place_names_it_before_tuning(tmp_path, capsys, where):
    data = _small_log(tmp_path)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "w.json" if where == "under a file" else Path("/sys/amm-weights.json")
    if where == "in /sys" and not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    assert tune_command(out, data, "table", grid_step=0.5, samples=0, console=_console()) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: ") and err.count("\n") == 1, err
    assert ".tmp" not in err and "amm-write-check" not in err
    assert ("a-file is a file, not a folder" in err if where == "under a file"
            else "cannot create a file in /sys" in err)


def test_tune_into_a_missing_folder_creates_it_and_says_so(tmp_path, capsys):
    data = _small_log(tmp_path)
    out = tmp_path / "new" / "dir" / "w.json"
    assert tune_command(out, data, "json", grid_step=0.5, samples=0, console=_console()) == 0
    assert read_weights_file(out).provenance["decisions"] == 60
    assert capsys.readouterr().err == f"note: created the folder {out.parent} for --out\n"
    refused = tmp_path / "other" / "w.json"  # a refusal creates nothing
    assert tune_command(refused, data, "table", grid_step=0.5, samples=0, min_decisions=61,
                        console=_console()) == 2
    assert not refused.parent.exists()


def test_tune_into_a_folder_is_refused(tmp_path, capsys):
    data = _small_log(tmp_path)
    assert tune_command(tmp_path, data, "table", console=_console()) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path} is a folder: give the weights file's name\n"


def test_writing_a_weights_file_that_cannot_be_written_names_the_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "w.json"
    with pytest.raises(BadWeightsFile) as info:
        write_weights_file(target, TARGET, "v1")
    assert str(info.value) == f"cannot write the weights file {target}: File exists"  # mkdir's
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "w.json").mkdir()  # os.replace onto a folder fails after the temporary file
    with pytest.raises(BadWeightsFile, match=f"cannot write the weights file {blocked / 'w.json'}"):
        write_weights_file(blocked / "w.json", TARGET, "v1")
    assert sorted(p.name for p in blocked.iterdir()) == ["w.json"]  # no temporary file left


def test_every_problem_of_a_weights_file_is_named(tmp_path, capsys):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({
        "weights": {"capability": 1.5, "cost": -0.5, "performance": "x", "availability": 0},
        "agent_weights": {"coder": {"capability": 0.5, "cost": 0.6, "performance": 0,
                                    "availability": 0}},
        "wieghts": {}, "provenance": [],
    }))
    with pytest.raises(BadWeightsFile) as info:
        read_weights_file(path)
    problems = info.value.problems
    assert problems[0] == "unknown keys wieghts"
    assert problems[1] == "weights_version must be a non-empty string"
    assert [p.split(":")[0] for p in problems[2:]] == [
        "weights.capability", "weights.cost", "weights.performance", "agent_weights.coder",
        "provenance must be an object"]
    assert "sum to 1" in problems[5]
    assert str(info.value) == f"weights file {path}: 7 problems: " + "; ".join(problems)
    assert replay_command(path, _small_log(tmp_path), "table", console=_console()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(p in err for p in problems), err


def test_decisions_are_rescored_with_the_quality_learnt_from_the_whole_log():
    """A decision logged before outcomes were learnt is replayed with what the log teaches: its
    candidates' performance moves by 0.4 x (learnt now - learnt then); logged as is on request."""
    at = T0
    events = []
    cands = (CandidateScore(model_id="strong", score=0.5, capability=1.0, cost=0.2,
                            performance=0.60, availability=1.0),
             CandidateScore(model_id="weak", score=0.5, capability=1.0, cost=0.9,
                            performance=0.60, availability=1.0))
    # the first decision saw no difference (both at the 0.5 prior)...
    events.append(ModelSelected(occurred_at=at, request_id="r0", agent_type="qa",
                                model_id="weak", candidates=cands, propensity=0.5,
                                candidate_quality=(0.5, 0.5)))
    events.append(RequestCompleted(occurred_at=at + timedelta(milliseconds=1), request_id="r0",
                                   model_id="weak", latency_ms=5.0, cost_usd=Decimal("0.001")))
    # ...then outcomes: strong always right, weak always wrong
    for i in range(1, 200):
        t = at + timedelta(seconds=i)
        for model, right in (("strong", 1.0), ("weak", 0.0)):
            rid = f"{model}-{i}"
            events.append(FeedbackRecorded(occurred_at=t, request_id=rid, model_id=model,
                                           agent_type="qa", score=right, source="ground_truth"))
    # the last decision logs each model's reliability part (performance - 0.4 x quality) now
    late = at + timedelta(seconds=300)
    now = (cands[0].model_copy(update={"performance": 0.75}),
           cands[1].model_copy(update={"performance": 0.55}))
    events.append(ModelSelected(occurred_at=late, request_id="r1", agent_type="qa",
                                model_id="strong", candidates=now, propensity=0.5,
                                candidate_quality=(0.5, 0.5)))
    final = {d.request_id: d for d in decisions_from_events(events)}["r0"]
    from api_model_management.selection import QualityFold
    fold = QualityFold({})
    for e in events:
        fold.apply(e)
    assert [c.performance for c in final.candidates] == pytest.approx(
        [0.4 * fold.quality("strong", "qa") + 0.55, 0.4 * fold.quality("weak", "qa") + 0.35])
    logged = {d.request_id: d for d in decisions_from_events(
        events, learnt_quality="logged")}["r0"]
    by_id = {c.model_id: c.performance for c in final.candidates}
    assert [c.performance for c in logged.candidates] == [0.60, 0.60]
    assert by_id["strong"] > 0.60 + 0.4 * 0.4 and by_id["weak"] < 0.60 - 0.4 * 0.4
    assert by_id["weak"] >= 0.0
    # a policy on performance alone now picks the strong model for this decision
    perf_only = SelectionWeights(capability=0, cost=0, performance=1, availability=0)
    report = replay([final], TargetPolicy(perf_only))
    assert report.n_agree == 0  # it chose weak; the re-scored policy would not
    with pytest.raises(InvalidInput, match="learnt_quality"):
        decisions_from_events(events, learnt_quality="later")


def test_decisions_carry_the_reliability_snapshots_and_views_replay_them():
    """Each re-scored decision also carries its candidates' performance under the reliability
    parts the log held at DRIFT_QUANTILES of its selections, all in the log's second half (where
    a system seeded from the log starts and moves); a drift view replays them, and a policy that
    picks the strong model only at the last snapshot does not in an earlier one. The log's first
    half (here: a start on the priors, where the two models tie) is in no view."""
    from api_model_management.replay._decisions import DRIFT_QUANTILES
    from api_model_management.replay._estimators import PreparedLog

    assert DRIFT_QUANTILES and all(0.5 <= q < 1.0 for q in DRIFT_QUANTILES)
    events = []
    n = 20

    def strong_part(i: int) -> float:
        # the priors' tie for the first half, then the strong model's reliability part rises
        # from below the weak one's (0.45) to above it: 0.40, 0.41, ... 0.50
        return 0.45 if i < n // 2 - 1 else 0.40 + 0.01 * (i - n // 2 + 1)

    for i in range(n):
        at = T0 + timedelta(seconds=i)
        cands = (CandidateScore(model_id="strong", score=0.5, capability=1.0, cost=0.2,
                                performance=0.2 + strong_part(i), availability=1.0),
                 CandidateScore(model_id="weak", score=0.5, capability=1.0, cost=0.9,
                                performance=0.2 + 0.45, availability=1.0))
        events.append(ModelSelected(occurred_at=at, request_id=f"r{i}", agent_type="qa",
                                    model_id="weak", candidates=cands, propensity=0.5,
                                    candidate_quality=(0.5, 0.5)))
        events.append(RequestCompleted(occurred_at=at + timedelta(milliseconds=1),
                                       request_id=f"r{i}", model_id="weak", latency_ms=5.0,
                                       cost_usd=Decimal("0.001")))
    decisions = decisions_from_events(events)
    assert all(len(d.drift) == len(DRIFT_QUANTILES) for d in decisions)
    first = decisions[0]
    learnt = {c.model_id: c.performance - (strong_part(n - 1) if c.model_id == "strong"
                                           else 0.45) for c in first.candidates}
    # the snapshots: the reliability parts after selection int(n * q), i.e. of decision k - 1
    for snap, q in zip(first.drift, DRIFT_QUANTILES, strict=True):
        k = max(1, int(n * q))
        assert snap == pytest.approx((learnt["strong"] + strong_part(k - 1),
                                      learnt["weak"] + 0.45))
    views = PreparedLog(decisions).drift_views()
    assert len(views) == len(DRIFT_QUANTILES)
    perf_only = SelectionWeights(capability=0, cost=0, performance=1, availability=0)
    # at the last state strong (0.50) beats weak (0.45); in a view it does where its part
    # there is above 0.45; never does a view hold the first half's tie
    assert PreparedLog(decisions).replay(TargetPolicy(perf_only)).n_agree == 0
    for view, q in zip(views, DRIFT_QUANTILES, strict=True):
        above = strong_part(max(1, int(n * q)) - 1) > 0.45 + 1e-9
        assert view.replay(TargetPolicy(perf_only)).n_agree == (0 if above else len(decisions))
        strong = [c.performance for d in view.decisions for c in d.candidates
                  if c.model_id == "strong"]
        assert strong[0] != pytest.approx(learnt["strong"] + 0.45)
    # decisions kept as logged carry no snapshots, so there is no view
    logged = decisions_from_events(events, learnt_quality="logged")
    assert all(d.drift == () for d in logged) and PreparedLog(logged).drift_views() == []


def _three_agent_types():
    """Weights w0..w4, three agent types' tables of (weights, quality, cost), and a judge of a
    choice: feasible when the summed cost is at most 10, ranked by summed quality."""
    from api_model_management.replay._goal import Verdict

    w = [SelectionWeights(capability=0, cost=1 - k / 4, performance=k / 4, availability=0)
         for k in range(5)]
    tables = {
        "a": [(w[0], 0.50, 1.0), (w[1], 0.60, 3.0), (w[2], 0.80, 9.0), (w[3], 0.55, 9.0)],
        "b": [(w[0], 0.40, 1.0), (w[1], 0.58, 4.0)],
        "c": [(w[0], 0.30, 1.0), (w[4], 0.31, 2.0)],
    }

    def judged(choice: dict) -> Verdict:
        rows = [next(r for r in tables[a] if r[0] == choice.get(a, w[0])) for a in tables]
        quality, cost = sum(r[1] for r in rows), sum(r[2] for r in rows)
        return Verdict(cost <= 10.0, (quality, -cost), cost)

    return w, tables, judged


def test_climbing_the_frontiers_spends_what_the_price_grid_steps_over():
    """From a feasible choice, agent types move up their quality-cost frontiers one vertex at a
    time, the steepest first, while the combination stays feasible and ranks better: here the
    limit of 10 admits a's middle option, b's and c's, which no single price of quality picks
    together (a price low enough for c's also takes a's dearest), and a move that breaks the
    limit stops only that agent type."""
    from api_model_management.replay._tune import _climb

    w, tables, judged = _three_agent_types()
    start = {"a": w[0], "b": w[0], "c": w[0]}
    best, rank = _climb(tables, start, judged(start).rank, judged)
    # slopes: a 0.05 then 0.033 per unit, b 0.06, c 0.01: b (total cost 6), a to w1 (8), a to
    # w2 (14: over the limit, a stops), c (9); the dominated row (w3) is never taken
    assert best == {"a": w[1], "b": w[1], "c": w[4]}
    assert rank == pytest.approx((0.60 + 0.58 + 0.31, -9.0))


def test_a_sweep_choice_below_the_global_weights_may_climb_past_them():
    """The per-agent-type search refines the sweep's best feasible choice even when it ranks
    below the global weights, and keeps the global weights only if the refined choice still does
    not beat them."""
    from api_model_management.replay._goal import Verdict
    from api_model_management.replay._tune import _combine

    w, tables, judged = _three_agent_types()
    # the sweep's best feasible choice is a and b at w1 (quality 1.48, cost 8); the climb adds c
    # (1.49, cost 9). Global weights at 1.485 beat the sweep but not the climb
    assert _combine(tables, judged, (1.485, -9.5)) == {"a": w[1], "b": w[1], "c": w[4]}
    # global weights at 1.495 beat both: they are kept
    assert _combine(tables, judged, (1.495, -9.5)) == {}
    # nothing feasible at all: the global weights are kept
    assert _combine(tables, lambda choice: Verdict(False, (0.0,), None), (0.0,)) == {}


def test_the_gap_between_two_prices_is_filled_by_quality_per_unit_of_cost():
    """Agent types that switch between two adjacent prices are ordered by the quality the dearer
    weights gain per unit of extra cost (a free gain first); unchanged ones are left out."""
    from api_model_management.replay._tune import _by_gain_per_cost

    cheap = SelectionWeights(capability=0, cost=1, performance=0, availability=0)
    dear = SelectionWeights(capability=0, cost=0, performance=1, availability=0)
    tables = {  # (weights, quality, cost) per agent type
        "a": [(cheap, 0.60, 1.0), (dear, 0.70, 3.0)],   # +0.10 for 2.0: 0.05 per unit
        "b": [(cheap, 0.50, 1.0), (dear, 0.80, 2.0)],   # +0.30 for 1.0: 0.30 per unit
        "c": [(cheap, 0.40, 1.0), (dear, 0.45, 1.0)],   # a gain at no extra cost
        "d": [(cheap, 0.40, 1.0), (dear, 0.90, 9.0)],   # the same weights at both prices
    }
    cheaper = {"a": cheap, "b": cheap, "c": cheap, "d": dear}
    dearer = {"a": dear, "b": dear, "c": dear, "d": dear}
    assert _by_gain_per_cost(tables, cheaper, dearer) == ["c", "b", "a"]


# ------------------------------------------------------------------------------------------------
# a constraint on a batch of requests, not only on the mean (issue 11)


def test_batch_goal_settings_are_validated():
    for bad in (lambda: Goal("max-quality", 0.5, batch=0), lambda: Goal("reward", batch=10),
                lambda: Goal("min-cost", 0.9, batch=True), lambda: Goal("max-quality", 0.5, batch=2.5)):
        with pytest.raises(InvalidInput, match="batch"):
            bad()
    assert "on a batch of 1500 requests" in Goal("max-quality", 0.5, batch=1500).describe()


def test_a_batch_bound_widens_by_the_paired_spread_and_tightens_what_is_tuned(logged):
    mean_only = tune(logged, grid_step=0.25, n_random=10, seed=3, goal=Goal("max-quality", 0.5))
    # the mean's bound reads the paired standard error too (the limit is an estimate)
    mean_cost = mean_only.report.metrics["cost_usd"]
    assert mean_cost.paired_se is not None and mean_cost.paired_se != mean_cost.dr_se
    z = 1.6448536269514722
    assert mean_only.goal.bound(mean_only.report, "dr") == pytest.approx(
        mean_cost.dr + z * mean_cost.paired_se)
    batched = tune(logged, grid_step=0.25, n_random=10, seed=3,
                   goal=Goal("max-quality", 0.5, batch=200))
    cost = batched.report.metrics["cost_usd"]
    assert cost.paired_sd is not None and cost.paired_sd > 0 and cost.paired_se is not None
    # the bound is the estimate plus z · √(paired se² + paired_sd² / batch), and it meets the limit
    bound = batched.goal.bound(batched.report, "dr")
    assert bound == pytest.approx(cost.dr + z * (cost.paired_se ** 2 + cost.paired_sd ** 2 / 200)
                                  ** 0.5)
    assert bound > cost.dr + z * cost.paired_se and bound <= batched.limit
    check = batched.estimated()["constraint"]
    assert check["met"] and check["batch"] == 200 and check["bound_value"] == pytest.approx(bound)
    assert check["se"] == cost.paired_se and check["se_of"] == "policy - share x always-strongest"
    # a batch is a stricter question than the mean: never a dearer policy
    assert cost.dr <= mean_only.report.metrics["cost_usd"].dr + 1e-12
    # the larger the batch, the nearer its bound to the mean's
    wide = Goal("max-quality", 0.5, batch=20).bound(batched.report, "dr")
    narrow = Goal("max-quality", 0.5, batch=20_000).bound(batched.report, "dr")
    assert wide > bound > narrow > cost.dr + z * cost.paired_se


def test_the_paired_spread_is_of_policy_minus_share_times_the_reference(logged):
    from api_model_management.replay._estimators import PreparedLog
    from api_model_management.replay._reference import references

    prepared = PreparedLog(logged)
    strongest = references(prepared)[STRONGEST]
    prepared.pair_with("cost_usd", strongest.picks, 0.5)
    same = prepared.replay_choices(list(strongest.picks), metrics=("cost_usd",))
    predicted = prepared.predicted["cost_usd"]
    own = [predicted[i][p] for i, p in enumerate(strongest.picks)]
    mean = sum(own) / len(own)
    sd = (sum((0.5 * x - 0.5 * mean) ** 2 for x in own) / (len(own) - 1)) ** 0.5
    # always-strongest against half of itself: the spread is half its own cost's
    assert same.metrics["cost_usd"].paired_sd == pytest.approx(sd)
    with pytest.raises(InvalidInput, match="one pick per decision"):
        prepared.pair_with("cost_usd", strongest.picks[:-1], 0.5)
    # its DR standard error: of the policy's DR terms minus half the reference's, by hand
    chosen = [d.chosen_index for d in logged]
    cost = prepared.values["cost_usd"]

    def dr_terms(picks):
        return [predicted[i][p] + ((cost[i] - predicted[i][c]) / d.propensity if c == p else 0.0)
                for i, (d, c, p) in enumerate(zip(logged, chosen, picks, strict=True))]

    weak = list(references(prepared)[CHEAPEST].picks)
    other = prepared.replay_choices(weak, metrics=("cost_usd",)).metrics["cost_usd"]
    diff = [a - 0.5 * b for a, b in zip(dr_terms(weak), dr_terms(strongest.picks), strict=True)]
    mean_diff = sum(diff) / len(diff)
    se = (sum((x - mean_diff) ** 2 for x in diff) / (len(diff) - 1) / len(diff)) ** 0.5
    assert other.paired_se == pytest.approx(se)
    assert other.dr == pytest.approx(sum(dr_terms(weak)) / len(weak))
    # paired with itself scaled by 1, always-strongest's difference is exactly zero
    prepared.pair_with("cost_usd", strongest.picks, 1.0)
    itself = prepared.replay_choices(list(strongest.picks), metrics=("cost_usd",))
    assert itself.metrics["cost_usd"].paired_se == pytest.approx(0.0, abs=1e-15)
    assert itself.metrics["cost_usd"].dr_se > 0
    without = PreparedLog(logged).replay_choices(list(strongest.picks), metrics=("cost_usd",))
    with pytest.raises(InvalidInput, match="paired with always-strongest"):
        Goal("max-quality", 0.5, batch=10).bound(without, "dr")


def test_the_limit_is_an_estimate_too_so_the_strongest_meets_a_share_of_itself(logged):
    from api_model_management.replay._estimators import PreparedLog
    from api_model_management.replay._reference import references

    # quality at least 0.999 x always-strongest's: always-strongest meets it whatever the log's
    # noise, because its estimate and the limit are the same estimate
    goal = Goal("min-cost", 0.999, confidence=0.99)
    prepared = PreparedLog(logged)
    strongest = references(prepared)[STRONGEST]
    limit = goal.limit(strongest.report, "dr")
    prepared.pair_with("quality", strongest.picks, 0.999)
    itself = prepared.replay_choices(list(strongest.picks), metrics=goal.metrics)
    quality = itself.metrics["quality"]
    assert quality.paired_se is not None and quality.paired_se < quality.dr_se
    assert goal.judge(itself, "dr", limit).feasible
    assert goal.check(itself, "dr", limit)["se_of"] == "policy - share x always-strongest"
    # the policy's own standard error alone refuses it (the limit taken as exact)
    unpaired = PreparedLog(logged).replay_choices(list(strongest.picks), metrics=goal.metrics)
    assert not goal.judge(unpaired, "dr", limit).feasible
    assert goal.check(unpaired, "dr", limit)["se_of"] == "policy"
    assert goal.se(itself, "dr") == quality.paired_se
    assert goal.se(unpaired, "dr") == unpaired.metrics["quality"].dr_se
    assert goal.se(unpaired, "ips") == unpaired.metrics["quality"].ips_se
    assert Goal().se(unpaired, "dr") is None  # reward mode checks no bound
    # a subset of the log keeps the pairing of its decisions
    part = prepared.subset([0, 2])
    assert part.pairing is not None and part.pairing.metric == "quality"
    assert part.pairing.reference == [prepared.pairing.reference[i] for i in (0, 2)]
    assert part.pairing.reference_dr == [prepared.pairing.reference_dr[i] for i in (0, 2)]


def test_amm_tune_batch_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from api_model_management.cli import app

    data = _small_log(tmp_path, noisy=True)
    out = tmp_path / "b.json"
    done = CliRunner().invoke(app, ["tune", "--data-dir", str(data), "--grid-step", "0.5",
                                    "--samples", "3", "--out", str(out), "--max-cost-share", "0.9",
                                    "--batch", "50", "--min-decisions", "10", "--format", "json"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert body["estimated"]["constraint"]["batch"] == 50
    assert read_weights_file(out).provenance["goal"]["batch"] == 50
    refused = CliRunner().invoke(app, ["tune", "--data-dir", str(data), "--out",
                                       str(tmp_path / "r.json"), "--batch", "0"])
    assert refused.exit_code == 2


# ------------------------------------------------------------------------------------------------
# cross-fitting: the tuner's optimism about its own constraint (issue 11)


def test_cross_fit_settings_are_validated(logged):
    with pytest.raises(InvalidInput, match="cross_fit"):
        tune(logged, grid_step=0.5, n_random=0, goal=Goal("max-quality", 0.5), cross_fit=-1)
    with pytest.raises(InvalidInput, match="max-quality or min-cost"):
        tune(logged, grid_step=0.5, n_random=0, cross_fit=1)


def test_halves_split_every_agent_type_evenly_and_keep_log_order(world, logged):
    from collections import Counter

    from api_model_management.replay._tune import _halves

    kind = {ctx.request_id: "hard" if ctx.results[GPT4].quality > ctx.results[MIXTRAL].quality
            else "easy" for ctx in world}
    relabelled = [replace(d, agent_type=kind[d.request_id]) for d in logged]
    first, second = _halves(relabelled, random.Random("x"))
    assert len(first) + len(second) == len(relabelled)
    assert {d.request_id for d in first}.isdisjoint(d.request_id for d in second)
    a, b = Counter(d.agent_type for d in first), Counter(d.agent_type for d in second)
    assert set(a) == set(b) == {"easy", "hard"}
    assert all(abs(a[k] - b[k]) <= 1 for k in a)
    assert abs(len(first) - len(second)) <= 1  # odd agent types give their extra in turn
    order = {d.request_id: i for i, d in enumerate(relabelled)}
    assert [order[d.request_id] for d in first] == sorted(order[d.request_id] for d in first)
    again = _halves(relabelled, random.Random("x"))
    assert [d.request_id for d in again[0]] == [d.request_id for d in first]
    other = _halves(relabelled, random.Random("y"))
    assert [d.request_id for d in other[0]] != [d.request_id for d in first]


def test_cross_fit_optimism_is_the_halves_mean_over_root_two_and_only_tightens():
    from math import sqrt

    from api_model_management.replay._tune import CrossFit

    dearer = CrossFit("max-quality", 0.5, 1, ((0.45, 0.49), (0.46, 0.48)), other=((1, 1),) * 2)
    assert dearer.optimism_half == pytest.approx(0.03)
    assert dearer.optimism == pytest.approx(0.03 / sqrt(2))
    assert dearer.share_applied == pytest.approx(0.5 - 0.03 / sqrt(2))
    cheaper = CrossFit("max-quality", 0.5, 1, ((0.45, 0.43), (0.46, 0.44)), other=((1, 1),) * 2)
    assert cheaper.optimism_half == pytest.approx(-0.02)
    assert cheaper.optimism == 0.0 and cheaper.share_applied == 0.5  # never loosened
    worse = CrossFit("min-cost", 0.9, 1, ((0.95, 0.91),), other=((0.4, 0.5),))
    assert worse.optimism == pytest.approx(0.04 / sqrt(2))
    assert worse.share_applied == pytest.approx(0.9 + 0.04 / sqrt(2))  # quality: raised
    assert worse.to_dict()["folds"] == [{"inside": 0.95, "outside": 0.91, "cost_usd_inside": 0.4,
                                         "cost_usd_outside": 0.5}]
    none = CrossFit("max-quality", 0.5, 1, (), refused=("no support",))
    assert none.optimism_half is None and none.optimism == 0.0 and none.share_applied == 0.5


def test_cross_fit_folds_are_the_halves_tuned_alone_and_the_limit_moves_by_the_optimism(
        world, logged):
    from api_model_management.replay._estimators import PreparedLog
    from api_model_management.replay._reference import references
    from api_model_management.replay._tune import _halves

    kind = {ctx.request_id: "hard" if ctx.results[GPT4].quality > ctx.results[MIXTRAL].quality
            else "easy" for ctx in world}
    relabelled = [replace(d, agent_type=kind[d.request_id]) for d in logged]
    goal = Goal("max-quality", 0.5)
    settings = dict(grid_step=0.5, n_random=0, per_agent_type=True, min_decisions=40)
    result = tune(relabelled, goal=goal, cross_fit=1, **settings)
    cf = result.cross_fit
    assert cf is not None and cf.repeats == 1 and len(cf.folds) + len(cf.refused) == 2
    assert cf.folds, cf.refused

    def share(decisions, policy):
        prepared = PreparedLog(decisions)
        own = prepared.replay(policy).metrics["cost_usd"].dr
        return own / references(prepared)[STRONGEST].report.metrics["cost_usd"].dr

    # fold 0, by hand: the whole tuning on the first half (its own outcome model, half the
    # minimum per agent type), its choice estimated on that half and on the other
    first, second = _halves(relabelled, random.Random("cross-fit:0:0"))
    half = tune(first, goal=goal, **{**settings, "min_decisions": 20})
    policy = TargetPolicy(half.weights, half.agent_weights)
    assert cf.folds[0] == pytest.approx((share(first, policy), share(second, policy)))
    # the whole log's limit is always-strongest's cost times the share applied
    strongest = result.references[STRONGEST].report.metrics["cost_usd"].dr
    assert result.limit == pytest.approx(cf.share_applied * strongest)
    assert cf.share_applied == pytest.approx(0.5 - cf.optimism) and cf.optimism >= 0
    estimated = result.estimated()
    assert estimated["cross_fit"]["folds"][0]["inside"] == pytest.approx(cf.folds[0][0])
    assert estimated["constraint"]["share"] == 0.5
    assert estimated["constraint"]["share_applied"] == pytest.approx(cf.share_applied)
    assert estimated["constraint"]["met"]
    plain = tune(relabelled, goal=goal, **settings)
    assert plain.cross_fit is None and "cross_fit" not in plain.estimated()
    if cf.optimism > 0:  # a tighter limit never tunes a dearer policy
        assert (result.report.metrics["cost_usd"].dr
                <= plain.report.metrics["cost_usd"].dr + 1e-12)


def test_amm_tune_cross_fit_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from api_model_management.cli import app

    data = _small_log(tmp_path, noisy=True)
    out = tmp_path / "c.json"
    args = ["tune", "--data-dir", str(data), "--grid-step", "0.5", "--samples", "3",
            "--min-decisions", "10"]
    done = CliRunner().invoke(app, [*args, "--out", str(out), "--max-cost-share", "0.9",
                                    "--cross-fit", "1", "--format", "json"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert body["estimated"]["cross_fit"]["repeats"] == 1
    assert read_weights_file(out).provenance["cross_fit"] == 1
    table = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "t.json"),
                                     "--max-cost-share", "0.9", "--cross-fit", "1"])
    text = " ".join(table.output.split())
    assert table.exit_code == 0 and "asked 0.9" in text
    assert "cross-fit (" in text and "on that half and" in text and "quality" in text
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r.json"),
                                       "--cross-fit", "1"])
    assert refused.exit_code == 2 and "cross_fit" in refused.output


def test_a_replay_reads_the_candidates_of_the_decisions_it_holds_now(logged):
    from api_model_management.replay._estimators import PreparedLog

    prepared = PreparedLog(logged)
    policy = TargetPolicy(SelectionWeights(capability=0.0, cost=0.0, performance=1.0,
                                           availability=0.0))
    before = prepared.replay(policy, metrics=("cost_usd",))
    # the same decisions with the candidates' performance reversed (as a drift view swaps them)
    flipped = [replace(d, candidates=tuple(
        c.model_copy(update={"performance": 1.0 - c.performance}) for c in d.candidates))
        for d in logged]
    view = prepared.subset(range(len(logged)))
    view.replay(policy, metrics=("cost_usd",))
    view.decisions = flipped
    after = view.replay(policy, metrics=("cost_usd",))
    fresh = PreparedLog(flipped).replay(policy, metrics=("cost_usd",))
    assert after.n_agree == fresh.n_agree != before.n_agree


def test_tune_and_replay_rescore_with_the_quality_priors_of_the_registry_the_log_ran_with(
        tmp_path, capsys):
    """The learnt quality a decision is re-scored with is shrunk towards each model's prior; with
    ``--config`` those are the registry's (what the serving Selector uses), without it 0.5, and
    the weights file says which."""
    from importlib import resources

    registry = json.loads(resources.files("api_model_management").joinpath(
        "_data/demo_registry.json").read_text())
    a, b = registry["models"][0]["id"], registry["models"][1]["id"]
    registry["models"][0]["quality_prior"], registry["models"][1]["quality_prior"] = 0.95, 0.2
    config = tmp_path / "registry.json"
    config.write_text(json.dumps(registry))
    rng = random.Random(3)
    events = []
    for i in range(60):
        cands = (CandidateScore(model_id=a, score=0.5, capability=1.0, cost=0.3,
                                performance=0.6, availability=1.0),
                 CandidateScore(model_id=b, score=0.5, capability=1.0, cost=0.8,
                                performance=0.6, availability=1.0))
        chosen = rng.choice((a, b))
        at = T0 + timedelta(seconds=i)
        events.append(ModelSelected(occurred_at=at, request_id=f"r{i}", agent_type="qa",
                                    model_id=chosen, candidates=cands, propensity=0.5,
                                    candidate_quality=(0.5, 0.5)))
        events.append(RequestCompleted(occurred_at=at, request_id=f"r{i}", model_id=chosen,
                                       latency_ms=5.0, cost_usd=Decimal("0.001")))
        if i < 4:  # few outcomes: the priors weigh
            events.append(FeedbackRecorded(occurred_at=at, request_id=f"r{i}", model_id=chosen,
                                           agent_type="qa", score=0.5, source="ground_truth"))
    data = tmp_path / "data"
    EventLog(data, fsync="never").append(events)
    # the registry's priors move the re-scored performance apart (0.5 each leaves them tied)
    with_priors = load_decisions(data, priors={a: 0.95, b: 0.2})[0].candidates
    without = load_decisions(data)[0].candidates
    assert with_priors[0].performance - with_priors[1].performance > 0.05
    assert without[0].performance == pytest.approx(without[1].performance)
    from api_model_management.cli._replay import quality_priors

    assert quality_priors(None) is None
    assert quality_priors(config)[a] == 0.95 and quality_priors(config)[b] == 0.2
    out = tmp_path / "w.json"
    assert tune_command(out, data, "json", grid_step=0.5, samples=0, min_decisions=10,
                        config=config, console=_console()) == 0
    priors = read_weights_file(out).provenance["quality_priors"]
    assert priors[a] == 0.95 and priors[b] == 0.2
    assert replay_command(out, data, "json", config=config, console=_console()) == 0
    table = _console()
    assert tune_command(out, data, "table", grid_step=0.5, samples=0, min_decisions=10,
                        console=table) == 0
    assert read_weights_file(out).provenance["quality_priors"] == "0.5 for every model (no --config)"
    assert "pass --config" in table.export_text()
    # a registry that cannot be read is one line, as any bad input
    capsys.readouterr()
    assert tune_command(out, data, "table", config=tmp_path / "missing.json",
                        console=_console()) == 2
    assert replay_command(out, data, "table", config=tmp_path / "missing.json",
                          console=_console()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "missing.json" in err
