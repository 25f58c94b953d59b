"""``amm replay`` and ``amm tune``: rich tables or JSON; exit code 2 with one line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigError, InvalidInput
from ..replay._decisions import load_decisions
from ..replay._estimators import METRICS, Objective, ReplayReport, replay
from ..replay._policy import TargetPolicy
from ..replay._tune import TuneResult, tune
from ..replay._weights_file import read_weights_file, write_weights_file

_FORMATS = ("table", "json")


def replay_command(weights_file: Path, data_dir: Path, fmt: str = "table", *,
                   epsilon: float = 0.0, cost_per_usd: float = 10.0,
                   latency_per_s: float = 0.01, console: Console | None = None) -> int:
    """Estimate what the weights in ``weights_file`` would have achieved on the log in
    ``data_dir``; 0 on success, 2 (one line on stderr) on bad input."""
    out = console or Console()
    try:
        _check_format(fmt)
        loaded = read_weights_file(weights_file)
        decisions = load_decisions(data_dir)
        policy = TargetPolicy(loaded.weights, loaded.agent_weights, epsilon)
        report = replay(decisions, policy, Objective(cost_per_usd, latency_per_s))
    except (InvalidInput, ConfigError, OSError, pa.ArrowException) as exc:
        return _fail(exc)
    if fmt == "json":
        out.print_json(json.dumps({"weights_version": loaded.weights_version,
                                   **report.to_dict()}, default=str))
    else:
        render_replay(report, out, title=f"Replay of weights {loaded.weights_version}")
    return 0


def tune_command(out: Path, data_dir: Path, fmt: str = "table", *, version: str | None = None,
                 estimator: str = "dr", grid_step: float = 0.1, samples: int = 100,
                 seed: int = 0, epsilon: float = 0.0, per_agent_type: bool = False,
                 baseline_file: Path | None = None, cost_per_usd: float = 10.0,
                 latency_per_s: float = 0.01, console: Console | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> int:
    """Search weights on the log in ``data_dir`` and write them to ``out``; 0 on success, 2 (one
    line on stderr) on bad input. ``baseline_file``: a weights file to compare against."""
    console = console or Console()
    objective = Objective(cost_per_usd, latency_per_s)
    try:
        _check_format(fmt)
        baseline = None
        if baseline_file is not None:
            base = read_weights_file(baseline_file)
            baseline = TargetPolicy(base.weights, base.agent_weights, epsilon)
        decisions = load_decisions(data_dir)
        result = tune(decisions, objective, estimator=estimator, grid_step=grid_step,
                      n_random=samples, seed=seed, epsilon=epsilon,
                      per_agent_type=per_agent_type, baseline=baseline)
        version = version or f"tuned-{clock.now():%Y%m%dT%H%M%SZ}"
        provenance = {"data_dir": str(data_dir), "decisions": len(decisions), "seed": seed,
                      "grid_step": grid_step, "samples": samples, "epsilon": epsilon,
                      "objective": {"cost_per_usd": cost_per_usd, "latency_per_s": latency_per_s},
                      "created_at": clock.now().isoformat()}
        write_weights_file(out, result.weights, version, result.agent_weights,
                           estimated=result.estimated(), provenance=provenance)
    except (InvalidInput, ConfigError, OSError, pa.ArrowException) as exc:
        return _fail(exc)
    if fmt == "json":
        console.print_json(json.dumps(_tune_json(result, version, out), default=str))
    else:
        _render_tune(result, version, out, console)
    return 0


def render_replay(report: ReplayReport, out: Console, title: str = "Replay") -> None:
    """The report as a table: one row per metric, one column per estimator."""
    table = Table(title=title)
    for name in ("metric", "logged", "IPS", "SNIPS", "DM", "DR"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for metric in METRICS:
        e = report.metrics[metric]
        table.add_row(metric, _num(e.logged), _num(e.ips, e.ips_se), _num(e.snips, e.snips_se),
                      _num(e.dm), _num(e.dr, e.dr_se))
    out.print(table)
    o = report.objective
    out.print(f"{report.n_decisions} decisions; target agrees on {report.n_agree}, "
              f"{report.n_unsupported} without logged support; effective sample size "
              f"{report.effective_sample_size:.1f}; quality observed on "
              f"{report.n_quality_observed}; reward = quality - {o.cost_per_usd:g}/USD "
              f"- {o.latency_per_s:g}/s (target epsilon {report.epsilon:g})", highlight=False)


def _render_tune(result: TuneResult, version: str, out_path: Path, console: Console) -> None:
    w = result.weights
    console.print(f"best weights ({result.estimator}, {result.evaluated} candidates): capability "
                  f"{w.capability:.3f}, cost {w.cost:.3f}, performance {w.performance:.3f}, "
                  f"availability {w.availability:.3f}; estimated reward {result.value:.4f}",
                  highlight=False)
    for agent, aw in result.agent_weights.items():
        console.print(f"  {agent}: capability {aw.capability:.3f}, cost {aw.cost:.3f}, "
                      f"performance {aw.performance:.3f}, availability {aw.availability:.3f}",
                      highlight=False)
    if result.baseline is not None:
        console.print(f"baseline estimated reward {_num(result.baseline.value(result.estimator))}",
                      highlight=False)
    render_replay(result.report, console, title=f"Replay of weights {version}")
    console.print(f"wrote {out_path} (weights_version {version})", highlight=False)


def _tune_json(result: TuneResult, version: str, out_path: Path) -> dict:
    return {"out": str(out_path), "weights_version": version,
            "weights": result.weights.model_dump(),
            "agent_weights": {k: v.model_dump() for k, v in result.agent_weights.items()},
            "estimated": result.estimated()}


def _num(value: float | None, se: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.4g}"
    return f"{text} ± {se:.2g}" if se is not None else text


def _check_format(fmt: str) -> None:
    if fmt not in _FORMATS:
        raise InvalidInput(f"--format {fmt!r}: use table or json", field="format")


def _fail(exc: Exception) -> int:
    errors = Console(stderr=True)
    lines = str(exc).splitlines() or [exc.__class__.__name__]
    errors.print(f"[red]error:[/] {lines[0]}", highlight=False, soft_wrap=True)
    return 2
