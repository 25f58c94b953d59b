"""The ``amm`` command line (typer + rich).

Every command prints a clear one-line error and exits 2 on bad input, never a traceback. Heavy
imports (ray, duckdb, uvicorn) happen inside the commands so that ``amm --help`` is instant.
Before any command runs, the package logger is set up at ``API_MODEL_LOG_LEVEL`` (INFO when it is
unset; a command given a registry then applies that registry's ``settings.log_level`` unless the
variable is set). ``amm --version`` prints the package's version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(
    name="amm",
    help="API Model Management: select, fail over, evaluate, cache and account for LLM calls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate the configuration and export its JSON Schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")
gateway_key_app = typer.Typer(help="Virtual keys of the HTTP gateway (amm serve).", no_args_is_help=True)
app.add_typer(gateway_key_app, name="gateway-key")

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where the event log lives.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit (2 = bad input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"api-model-management {__version__}")
        raise typer.Exit(0)


@app.callback()
def _before_every_command(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the package version and exit.")] = False,
) -> None:
    # the package logger at API_MODEL_LOG_LEVEL (INFO when unset), for every command
    from ..config._logging import configure_logging
    from ..errors import ConfigError
    from ._errors import error_line

    try:
        configure_logging()
    except ConfigError as exc:
        fail(error_line(exc))


# ---------------------------------------------------------------------------------------------
# config  (owner: configuration)


@config_app.command("validate")
def config_validate(path: Annotated[Path, typer.Argument(help="The registry JSON file.")]) -> None:
    """Validate a registry file: a short summary and exit 0, or every error with its JSON path."""
    from ._config import validate_command

    raise typer.Exit(validate_command(path))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the registry file."""
    from ._config import schema_command

    raise typer.Exit(schema_command())


# ---------------------------------------------------------------------------------------------
# event log  (owner: event log)


@app.command("query")
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL; one view per event type, e.g. request_completed.")],
    data_dir: DataDir = Path("data"),
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Run SQL over the event log."""
    from ._query import query_command

    raise typer.Exit(query_command(sql, data_dir, fmt))


@app.command("compact")
def compact(data_dir: DataDir = Path("data")) -> None:
    """Merge small Parquet files per partition, atomically."""
    from ._query import compact_command

    raise typer.Exit(compact_command(data_dir))


# ---------------------------------------------------------------------------------------------
# emulator  (owner: emulator)


@app.command("emulator")
def emulator(
    host: Annotated[str, typer.Option(help="Loopback address only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port.")] = 8765,
    profile: Annotated[Path | None, typer.Option(help="Fault profile (JSON).")] = None,
) -> None:
    """Serve the OpenAI, Anthropic, Gemini and Ollama wire protocols locally, with faults."""
    from ..emulator._cli import emulator_command

    raise typer.Exit(emulator_command(host, port, profile))


# ---------------------------------------------------------------------------------------------
# the main job and reports  (owner: lead)


@app.command("demo")
def demo(
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, max=100_000, help="Requests to run.")] = 600,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Event log directory (default: a new temp dir).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight.")] = 32,
) -> None:
    """Run the whole system on embedded defaults: local Ray, the emulator with faults, a mixed
    workload from several agent types, then a report."""
    from ._demo import run_demo

    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            probe = data_dir / ".amm-write-check"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            fail(f"--data-dir {data_dir} is not a writable directory ({exc.strerror or type(exc).__name__})")
    raise typer.Exit(run_demo(requests=requests, data_dir=data_dir, concurrency=concurrency))


@app.command("serve")
def serve(
    config: Annotated[Path | None, typer.Option(help="The registry (with settings.gateway.keys).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 4000,
    workers: Annotated[int, typer.Option(min=1, max=64, help=(
        "Worker processes, each with its own router holding 1/N of every limit (standalone)."))] = 1,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Event log directory (default: the registry's).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help=(
        "The emulator and the demo registry, one virtual key from AMM_DEMO_GATEWAY_KEY (generated and printed when unset)."))] = False,
    ray: Annotated[bool, typer.Option("--ray", help=(
        "Serve from the router embedded in a ModelManagement (local Ray, or --address) instead of the standalone one."))] = False,
    address: Annotated[str | None, typer.Option(help="With --ray or --ray-serve: the Ray cluster to join.")] = None,
    ray_serve: Annotated[bool, typer.Option("--ray-serve", help=(
        "Deploy the gateway on Ray Serve (local Ray, or --address): Serve's proxy on --host/--port, "
        "replicas each holding a router (settings.gateway.serve: autoscaling, CPUs). Needs the serve extra."))] = False,
    replicas: Annotated[int | None, typer.Option(min=1, max=256, help=(
        "With --ray-serve: exactly N replicas (default: autoscaling per settings.gateway.serve)."))] = None,
) -> None:
    """An OpenAI- and Anthropic-compatible HTTP gateway with virtual keys: POST /v1/chat/completions,
    POST /v1/messages, GET /v1/models, POST /v1/feedback, GET /health, GET /metrics. SIGINT or
    SIGTERM stops it gracefully (requests in flight finish, events are flushed, exit 0)."""
    from ._serve import serve_command

    raise typer.Exit(serve_command(config, host=host, port=port, workers=workers, data_dir=data_dir,
                                   demo=demo, ray=ray, address=address, ray_serve=ray_serve,
                                   replicas=replicas))


@gateway_key_app.command("new")
def gateway_key_new(name: Annotated[str, typer.Argument(help="The key's name (in logs and metrics).")]) -> None:
    """Print a new virtual key once, and its SHA-256 to put in settings.gateway.keys."""
    from ._serve import new_key_command

    raise typer.Exit(new_key_command(name))


@app.command("report")
def report(
    data_dir: DataDir = Path("data"),
    since: Annotated[str | None, typer.Option(help="24h, 7d or an ISO time such as 2026-11-26T00:00Z")] = None,
    agent_type: Annotated[str | None, typer.Option("--agent-type")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    config: Annotated[Path | None, typer.Option(help="Registry, for budget limits.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help=(
        "Also write the charts (latency, cost per day, success and failover, budget burn, cache) "
        "into this folder, one file each."))] = None,
    html: Annotated[Path | None, typer.Option("--html", help=(
        "Also write the charts into one self-contained HTML file."))] = None,
    plot_format: Annotated[str, typer.Option("--plot-format", help="png or svg")] = "png",
) -> None:
    """Cost, latency, success, quality, cache and budget report from the event log; with --plot
    or --html, charts of it as well."""
    from ._query import data_dir_text, remote_log_missing
    from ._report import report_command

    if "://" not in data_dir_text(data_dir) and not (data_dir / "events").is_dir():
        fail(f"no event log under {data_dir} (expected {data_dir}/events/); try `amm demo --data-dir {data_dir}`")
    if (code := remote_log_missing(data_dir_text(data_dir))) is not None:
        raise typer.Exit(code)
    raise typer.Exit(report_command(data_dir, since, agent_type, fmt, config, plot_dir=plot,
                                    html_path=html, plot_format=plot_format))


@app.command("status")
def status(
    address: Annotated[str | None, typer.Option(help=(
        "A running system's Ray cluster (host:port, ray://host:port or auto): its live state. "
        "Without it, the state the log shows."))] = None,
    data_dir: DataDir = Path("data"),
    system: Annotated[str | None, typer.Option(help=(
        "Which system on the cluster (its actors' name prefix, ModelManagement.name_prefix); "
        "needed only when several run."))] = None,
    config: Annotated[Path | None, typer.Option(help="Registry, for budget limits (log mode).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Providers and their health, models rate-limited or cooling down, budgets with headroom,
    requests in flight and recent alerts: live from a running system (--address), else from the
    event log."""
    from ._status import status_command

    raise typer.Exit(status_command(data_dir, address, system, config, fmt))


_COST = typer.Option("--cost-per-usd", min=0.0, help=(
    "How much quality (0..1 scale) one USD is worth: reward = quality - this x cost_usd - latency term. "
    "At 10 a request must gain 0.1 quality per cent it costs more; `amm tune` prints the rate at which "
    "always-cheapest and always-strongest break even on your log."))
_LATENCY = typer.Option("--latency-per-s", min=0.0, help="Quality (0..1 scale) one second of latency is worth.")
_EPSILON = typer.Option(min=0.0, max=1.0, help="Exploration of the target policy (as the Selector's).")
_CONFIDENCE = typer.Option(min=0.5, max=0.999, help="Level of the confidence intervals (normal approximation).")
_REPLAY_CONFIG = typer.Option("--config", help=(
    "The registry the log ran with: replay re-scores each decision with the quality learnt from the whole log, "
    "shrunk towards its models' quality_prior (without it, 0.5 for every model)."))


@app.command("replay")
def replay(
    weights: Annotated[Path, typer.Option("--weights", help="A weights file (as written by `amm tune`).")],
    data_dir: DataDir = Path("data"),
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    epsilon: Annotated[float, _EPSILON] = 0.0,
    cost_per_usd: Annotated[float, _COST] = 10.0,
    latency_per_s: Annotated[float, _LATENCY] = 0.01,
    confidence: Annotated[float, _CONFIDENCE] = 0.9,
    config: Annotated[Path | None, _REPLAY_CONFIG] = None,
) -> None:
    """Estimate offline what these weights would have achieved on the logged requests (IPS,
    self-normalised IPS, direct method, doubly robust): quality, cost, latency, failures."""
    from ._replay import replay_command

    raise typer.Exit(replay_command(weights, data_dir, fmt, epsilon=epsilon, cost_per_usd=cost_per_usd,
                                    latency_per_s=latency_per_s, confidence=confidence, config=config))


@app.command("tune")
def tune(
    out: Annotated[Path, typer.Option("--out", help="Where to write the weights file.")],
    data_dir: DataDir = Path("data"),
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    version: Annotated[str | None, typer.Option(help="Weights version (default: tuned-<UTC time>).")] = None,
    estimator: Annotated[str, typer.Option(help="dr, snips, ips or dm")] = "dr",
    grid_step: Annotated[float, typer.Option(help="Grid step on the weight simplex.")] = 0.1,
    samples: Annotated[int, typer.Option(min=0, help="Random weight vectors tried besides the grid.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the random search.")] = 0,
    per_agent_type: Annotated[bool, typer.Option("--per-agent-type", help="Also tune weights per agent type.")] = False,
    baseline: Annotated[Path | None, typer.Option(help="A weights file to compare against.")] = None,
    epsilon: Annotated[float, _EPSILON] = 0.0,
    cost_per_usd: Annotated[float, _COST] = 10.0,
    latency_per_s: Annotated[float, _LATENCY] = 0.01,
    objective: Annotated[str | None, typer.Option(help=(
        "reward (default), max-quality (with --max-cost-share) or min-cost (with --min-quality-share); "
        "inferred from the share given."))] = None,
    max_cost_share: Annotated[float | None, typer.Option(min=0.0, help=(
        "max-quality: the best quality whose estimated cost per request stays at most this share of always "
        "choosing the highest-quality model (upper confidence bound), e.g. 0.5."))] = None,
    min_quality_share: Annotated[float | None, typer.Option(min=0.0, help=(
        "min-cost: the cheapest weights whose estimated quality stays at least this share of always choosing "
        "the highest-quality model (lower confidence bound), e.g. 0.95."))] = None,
    confidence: Annotated[float, _CONFIDENCE] = 0.9,
    min_decisions: Annotated[int, typer.Option(min=1, help=(
        "Fewest decisions to tune on, overall and per agent type (an agent type with fewer keeps the global "
        "weights)."))] = 50,
    batch: Annotated[int | None, typer.Option(min=1, help=(
        "With a share: the constraint holds for a batch of this many requests, not only on average (a "
        "batch's share strays from the mean by the per-request spread over the square root of its size)."))] = None,
    cross_fit: Annotated[int, typer.Option(min=0, help=(
        "With a share: tune this many times on random halves of the log and estimate each choice on the other "
        "half; the constraint is tightened by the optimism found (0: off)."))] = 0,
    config: Annotated[Path | None, _REPLAY_CONFIG] = None,
) -> None:
    """Search selection weights on the logged requests (the highest estimated reward, or the best
    quality / lowest cost under a constraint relative to always-strongest) and write them as a
    weights file (apply with `ModelManagement.load_weights(path)`). Prints every estimate with its
    confidence interval beside always-strongest and always-cheapest; exits 2 with one line when the log
    cannot answer (too few decisions, no exploration for ips/snips, constraint unmet)."""
    from ._replay import tune_command

    raise typer.Exit(tune_command(
        out, data_dir, fmt, version=version, estimator=estimator, grid_step=grid_step, samples=samples,
        seed=seed, epsilon=epsilon, per_agent_type=per_agent_type, baseline_file=baseline,
        cost_per_usd=cost_per_usd, latency_per_s=latency_per_s, objective=objective,
        max_cost_share=max_cost_share, min_quality_share=min_quality_share, confidence=confidence,
        min_decisions=min_decisions, batch=batch, cross_fit=cross_fit, config=config,
    ))


# ---------------------------------------------------------------------------------------------
# evaluation  (owner: evaluation)


@app.command("calibrate")
def calibrate(
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Fit to the judge/user/ground-truth feedback in this event log "
        "(its answers need settings.store_prompts) [default: data].")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Fit to a JSONL of question, answer, score (a 1-10 rating or 0-1).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the model "
                                      "(use it with quality.calibration_path).")] = Path("quality_calibration.json"),
    name: Annotated[str | None, typer.Option(help="The model's name (default: calibrated-<UTC time>).")] = None,
    ridge: Annotated[float, typer.Option(min=0.0, help="Ridge penalty on the standardized features.")] = 10.0,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds, by question.")] = 10,
    sources: Annotated[str, typer.Option(help="Feedback sources read from the log.")] = "judge,user,ground_truth",
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Fit the evaluator's quality calibration to labelled answers and write it as a JSON model;
    reports its Spearman agreement on questions it was not fitted on."""
    from ._calibrate import calibrate_command

    raise typer.Exit(calibrate_command(data_dir, labels, out, name=name, ridge=ridge, folds=folds,
                                       sources=sources, fmt=fmt))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
