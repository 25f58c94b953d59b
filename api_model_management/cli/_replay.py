"""``amm replay`` and ``amm tune``: rich tables or JSON; exit code 2 with one line on bad input."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._clock import SYSTEM_CLOCK, Clock
from ..config import SelectionWeights, load_config
from ..errors import ConfigError, InvalidInput
from ..events._storage import display_uri
from ..replay._decisions import load_decisions
from ..replay._estimators import (
    ESTIMATORS,
    METRICS,
    Interval,
    Objective,
    ReplayReport,
    replay,
    z_score,
)
from ..replay._goal import Goal
from ..replay._policy import TargetPolicy
from ..replay._reference import CHEAPEST, STRONGEST, compare
from ..replay._tune import CrossFit, TuneResult, tune
from ..replay._weights_file import read_weights_file, write_weights_file
from ..selection._quality import DEFAULT_PRIOR
from ._errors import print_error
from ._query import data_dir_text

_FORMATS = ("table", "json")
_SUMMARY_METRICS = ("quality", "cost_usd", "latency_ms", "failure_rate", "reward")


_NO_PRIORS = f"{DEFAULT_PRIOR} for every model (no --config)"


def quality_priors(config: Path | None) -> dict[str, float] | None:
    """The ``quality_prior`` of each model of the registry at ``config`` (None without one).
    Replay re-scores each logged decision with the quality the Selector learns from the whole
    log, which it shrinks towards these priors, so they must be the ones the system serving the
    weights uses: on a routellm log replayed with 0.5 for a registry's 0.7, the strong model's
    performance sub-score was off by 0.0006, enough to flip the near-ties of a whole agent type
    (14 of 3,000 requests went to the strong model served and not in replay)."""
    if config is None:
        return None
    return {m.id: m.quality_prior for m in load_config(config).models}


def replay_command(weights_file: Path, data_dir: Path, fmt: str = "table", *,
                   epsilon: float = 0.0, cost_per_usd: float = 10.0,
                   latency_per_s: float = 0.01, confidence: float = 0.9,
                   config: Path | None = None, console: Console | None = None) -> int:
    """Estimate what the weights in ``weights_file`` would have achieved on the log in
    ``data_dir``; 0 on success, 2 (one line on stderr) on bad input. ``config``: the registry
    the log ran with (its models' ``quality_prior``, see :func:`quality_priors`)."""
    out = console or Console()
    try:
        _check_format(fmt)
        z_score(confidence)  # validates the level
        loaded = read_weights_file(weights_file)
        priors = quality_priors(config)
        decisions = load_decisions(data_dir_text(data_dir), priors=priors)
        policy = TargetPolicy(loaded.weights, loaded.agent_weights, epsilon)
        report = replay(decisions, policy, Objective(cost_per_usd, latency_per_s))
    except (InvalidInput, ConfigError, OSError, pa.ArrowException) as exc:
        return _fail(exc)
    if fmt == "json":
        intervals = {est: {m: i.to_dict() for m, i in report.intervals(est, confidence).items()}
                     for est in ESTIMATORS}
        out.print_json(json.dumps({"weights_version": loaded.weights_version,
                                   **report.to_dict(), "confidence": confidence,
                                   "intervals": intervals}, default=str))
    else:
        render_replay(report, out, title=f"Replay of weights {loaded.weights_version}",
                      confidence=confidence)
    return 0


def tune_command(out: Path, data_dir: Path, fmt: str = "table", *, version: str | None = None,
                 estimator: str = "dr", grid_step: float = 0.1, samples: int = 100,
                 seed: int = 0, epsilon: float = 0.0, per_agent_type: bool = False,
                 baseline_file: Path | None = None, cost_per_usd: float = 10.0,
                 latency_per_s: float = 0.01, objective: str | None = None,
                 max_cost_share: float | None = None, min_quality_share: float | None = None,
                 confidence: float = 0.9, min_decisions: int = 50, batch: int | None = None,
                 cross_fit: int = 0, config: Path | None = None, console: Console | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> int:
    """Search weights on the log in ``data_dir`` and write them to ``out``; 0 on success, 2 (one
    line on stderr) on bad input or a refusal. ``baseline_file``: a weights file to compare
    against. ``objective``: reward, max-quality (with ``max_cost_share``) or min-cost (with
    ``min_quality_share``); inferred from the share given when None. ``config``: the registry
    the log ran with (its models' ``quality_prior``, see :func:`quality_priors`)."""
    console = console or Console()
    reward = Objective(cost_per_usd, latency_per_s)
    try:
        _check_format(fmt)
        missing_folder = check_out(out)
        goal = _goal(objective, max_cost_share, min_quality_share, confidence, batch)
        baseline = None
        if baseline_file is not None:
            base = read_weights_file(baseline_file)
            baseline = TargetPolicy(base.weights, base.agent_weights, epsilon)
        priors = quality_priors(config)
        decisions = load_decisions(data_dir_text(data_dir), priors=priors)
        result = tune(decisions, reward, estimator=estimator, grid_step=grid_step,
                      n_random=samples, seed=seed, epsilon=epsilon,
                      per_agent_type=per_agent_type, min_decisions=min_decisions,
                      baseline=baseline, goal=goal, cross_fit=cross_fit)
        version = version or f"tuned-{clock.now():%Y%m%dT%H%M%SZ}"
        provenance = {"data_dir": display_uri(data_dir_text(data_dir)), "decisions": len(decisions), "seed": seed,
                      "grid_step": grid_step, "samples": samples, "epsilon": epsilon,
                      "objective": {"cost_per_usd": cost_per_usd, "latency_per_s": latency_per_s},
                      "goal": goal.to_dict(), "estimator": estimator,
                      "min_decisions": min_decisions, "per_agent_type": per_agent_type,
                      "cross_fit": cross_fit,
                      "quality_priors": priors if priors is not None else _NO_PRIORS,
                      "created_at": clock.now().isoformat()}
        if missing_folder is not None:
            _make_folder(missing_folder)
        write_weights_file(out, result.weights, version, result.agent_weights,
                           estimated=result.estimated(), provenance=provenance)
    except (InvalidInput, ConfigError, OSError, pa.ArrowException) as exc:
        return _fail(exc)
    if fmt == "json":
        console.print_json(json.dumps(_tune_json(result, version, out), default=str))
    else:
        _render_tune(result, version, out, console)
        if priors is None:
            console.print(f"learnt quality replayed with a prior of {_NO_PRIORS}: pass --config, "
                          "the registry the log ran with, to replay the priors it serves with")
    return 0


def check_out(out: Path) -> Path | None:
    """Refuse, before any work, a ``--out`` that cannot be written: a folder, a path through a
    file, a folder where a file cannot be created (tried: a probe file is made and removed).
    Returns the folder to create when ``out``'s folder does not exist yet (None when it does);
    nothing is created here."""
    if out.is_dir():
        raise InvalidInput(f"--out {out} is a folder: give the weights file's name", field="out")
    folder = out.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(f"--out {out}: {existing} is a file, not a folder", field="out")
    probe = existing / f".amm-write-check-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as exc:
        raise InvalidInput(f"--out {out}: cannot create a file in {existing} "
                           f"({exc.strerror or type(exc).__name__})", field="out") from None
    return None if existing == folder else folder


def _make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) for ``--out`` and say so on stderr."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"--out: cannot create the folder {folder} "
                           f"({exc.strerror or type(exc).__name__})", field="out") from None
    Console(stderr=True).print(f"note: created the folder {escape(str(folder))} for --out",
                               highlight=False, soft_wrap=True)


def render_replay(report: ReplayReport, out: Console, title: str = "Replay",
                  confidence: float = 0.9) -> None:
    """The report as a table: one row per metric, one column per estimator, each estimate with
    its ``confidence`` interval (DM has none)."""
    table = Table(title=f"{title} ({confidence:.0%} intervals)")
    for name in ("metric", "logged", "IPS", "SNIPS", "DM", "DR"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for metric in METRICS:
        e = report.metrics[metric]
        table.add_row(metric, _num(e.logged),
                      *(_ci(e.interval(est, confidence), bare=True) for est in ESTIMATORS))
    out.print(table)
    o = report.objective
    out.print(f"{report.n_decisions} decisions; target agrees on {report.n_agree}, "
              f"{report.n_unsupported} without logged support; effective sample size "
              f"{report.effective_sample_size:.1f}; quality observed on "
              f"{report.n_quality_observed}; reward = quality - {o.cost_per_usd:g}/USD "
              f"- {o.latency_per_s:g}/s (target epsilon {report.epsilon:g})", highlight=False)


def _render_tune(result: TuneResult, version: str, out_path: Path, console: Console) -> None:
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    w, est, goal = result.weights, result.estimator, result.goal
    say(f"objective: {goal.describe()}")
    say(f"best weights ({est}, {result.evaluated} candidates): {_weights(w)}; estimated reward "
        f"{result.value:.4f}")
    _render_agents(result, say)
    console.print(_estimates_table(result, version))
    for line in _scale_lines(result):
        say(line)
    if result.report.n_unsupported:
        say(f"warning: on {result.report.n_unsupported} decisions logged without exploration the "
            f"tuned weights pick another model than the log: only the outcome model (DM, and DR "
            f"through it) estimates those")
    render_replay(result.report, console, title=f"Replay of weights {version}",
                  confidence=goal.confidence)
    say(f"wrote {out_path} (weights_version {version})")


def _render_agents(result: TuneResult, say: Callable[[str], None]) -> None:
    for agent, aw in result.agent_weights.items():
        say(f"  agent type {agent}: {_weights(aw)}")
    for agent, why in result.kept_global.items():
        say(f"  agent type {agent} kept the global weights: {why}")


def _estimates_table(result: TuneResult, version: str) -> Table:
    """Each metric (rows) under the tuned weights, the references and the baseline (columns),
    with its interval."""
    est, level = result.estimator, result.goal.confidence
    table = Table(title=f"Estimated per request ({est.upper()}, {level:.0%} intervals)")
    table.add_column("metric")
    columns = [(f"tuned {version}", result.report)]
    columns += [(f"{name}\n({ref.model})", ref.report) for name, ref in result.references.items()]
    if result.baseline is not None:
        columns.append(("baseline", result.baseline))
    for name, report in columns:
        if not report.estimable(est):
            name += f"\nnot estimable by {est}"
        table.add_column(name, justify="right")
    for metric in _SUMMARY_METRICS:
        table.add_row(metric, *(_ci(report.metrics[metric].interval(est, level))
                                for _, report in columns))
    return table


def _scale_lines(result: TuneResult) -> list[str]:
    """What the tuned weights cost and gain relative to the references, the break-even rate of
    quality per USD, and the constraint."""
    if not result.references:
        return []
    rel = compare(result.report, result.references, result.estimator)
    lines = [
        f"tuned vs {STRONGEST}: {_pct(rel['quality_share_of_strongest'])} of its quality at "
        f"{_pct(rel['cost_share_of_strongest'])} of its cost; vs {CHEAPEST}: "
        f"{_signed(rel['quality_gain_over_cheapest'])} quality for "
        f"{_signed(rel['extra_cost_over_cheapest_usd'])} USD per request",
    ]
    rate = rel["break_even_cost_per_usd"]
    if rate is not None:
        lines.append(f"{CHEAPEST} -> {STRONGEST} buys quality at {rate:.3g} per USD: with "
                     f"--cost-per-usd above that the reward prefers {CHEAPEST}, below it "
                     f"{STRONGEST} (latency aside); reward here = quality - "
                     f"{result.report.objective.cost_per_usd:g} x cost_usd - "
                     f"{result.report.objective.latency_per_s:g} x latency_s")
    check = result.goal.check(result.report, result.estimator, result.limit)
    if check is not None:
        verdict = "met" if check["met"] else "NOT met by the combined per-agent-type policy"
        op = "<=" if check["bound"] == "upper" else ">="
        cf = result.cross_fit
        share = (f"{check['share']:g}" if cf is None else
                 f"{cf.share_applied:.4g} (asked {cf.share:g}, moved by the optimism "
                 f"{cf.optimism:.3g} that cross-fitting found in {len(cf.folds)} folds)")
        lines.append(f"constraint {verdict}: {check['metric']} {check['bound']} bound "
                     f"{_num(check['bound_value'])} {op} {share} x "
                     f"{STRONGEST}'s = {_num(check['limit'])} (standard error "
                     f"{_num(check['se'])}, of {check['se_of']})")
        if cf is not None and cf.folds:
            lines.append(_cross_fit_line(cf))
    return lines


def _cross_fit_line(cf: CrossFit) -> str:
    """The cross-fit's folds in one line: both metrics inside and outside, as shares of
    always-strongest's (the ranked metric is reported, not applied)."""
    def mean(values: list[float]) -> str:
        return f"{sum(values) / len(values):.1%}" if values else "n/a"

    name, other = ("cost", "quality") if cf.kind == "max-quality" else ("quality", "cost")
    inside = [o[0] for o in cf.other if o[0] is not None]
    outside = [o[1] for o in cf.other if o[1] is not None]
    return (f"cross-fit ({len(cf.folds)} folds): a choice made on half the log, as a share of "
            f"{STRONGEST}'s, had {name} {mean([f[0] for f in cf.folds])} on that half and "
            f"{mean([f[1] for f in cf.folds])} on the other; {other} "
            f"{mean(inside)} and {mean(outside)}")


def _tune_json(result: TuneResult, version: str, out_path: Path) -> dict:
    return {"out": str(out_path), "weights_version": version,
            "weights": result.weights.model_dump(),
            "agent_weights": {k: v.model_dump() for k, v in result.agent_weights.items()},
            "estimated": result.estimated()}


def _goal(objective: str | None, max_cost_share: float | None,
          min_quality_share: float | None, confidence: float, batch: int | None = None) -> Goal:
    """The goal from the flags: the objective is inferred from the share given when None."""
    if max_cost_share is not None and min_quality_share is not None:
        raise InvalidInput("give --max-cost-share (max-quality) or --min-quality-share "
                           "(min-cost), not both", field="objective")
    if objective is None:
        objective = ("max-quality" if max_cost_share is not None
                     else "min-cost" if min_quality_share is not None else "reward")
    wrong = {"max-quality": ("--min-quality-share", min_quality_share),
             "min-cost": ("--max-cost-share", max_cost_share)}.get(objective)
    if wrong is not None and wrong[1] is not None:
        raise InvalidInput(f"{wrong[0]} does not apply to --objective {objective}",
                           field="objective")
    share = max_cost_share if max_cost_share is not None else min_quality_share
    return Goal(objective, share, confidence, batch)


def _weights(w: SelectionWeights) -> str:
    text = (f"capability {w.capability:.3f}, cost {w.cost:.3f}, performance {w.performance:.3f}, "
            f"availability {w.availability:.3f}")
    return text + (f", value {w.value_usd:.4g} USD per point" if w.value_usd else "")


def _ci(interval: Interval, bare: bool = False) -> str:
    """``estimate [low, high]``; without a standard error the estimate alone (``bare``) or
    marked as having no interval."""
    if interval.estimate is None:
        return "n/a"
    if interval.low is None or interval.high is None:
        return _short(interval.estimate) + ("" if bare else " (no interval)")
    return f"{_short(interval.estimate)} [{_short(interval.low)}, {_short(interval.high)}]"


def _short(value: float) -> str:
    """Three significant digits, without an exponent from 1000 up (latencies)."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4g}"


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def _check_format(fmt: str) -> None:
    if fmt not in _FORMATS:
        raise InvalidInput(f"--format {fmt!r}: use table or json", field="format")


def _fail(exc: Exception) -> int:
    return print_error(exc)
