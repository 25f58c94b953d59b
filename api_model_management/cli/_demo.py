"""``amm demo``: the main job on embedded defaults.

Local Ray, the emulator with a fault profile (one provider with an outage window, one model
rate-limited, latencies replayed from real traces), a concurrent mixed workload from several agent
types with a progress bar, the event log written, and a report.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._request import ModelRequest, SelectionConstraints
from ..errors import AMMError, error_kind_of

if TYPE_CHECKING:
    from ..budget import BudgetStatus

AGENT_TYPES = ("research", "coder", "reviewer", "planner")

_TOPICS = (
    "async/await in Python", "consistent hashing", "the CAP theorem", "B-tree indexes",
    "vector clocks", "TCP congestion control", "garbage collection in the JVM",
    "the actor model", "event sourcing", "columnar storage in Parquet", "rate limiting",
    "exponential backoff with jitter", "Bloom filters", "Raft consensus", "LRU caches",
)
_TEMPLATES = {
    "research": "Explain how {t} works and list 3 key trade-offs.",
    "coder": "Write a short Python function that demonstrates {t}, with a docstring.",
    "reviewer": "Review this design decision: we rely on {t}. What are the risks and how would you test it?",
    "planner": "Plan the steps to introduce {t} into an existing service, in order, with one risk per step.",
}


def demo_registry() -> dict:
    return json.loads(resources.files("api_model_management").joinpath("_data/demo_registry.json").read_text())


def demo_profile() -> dict:
    """Faults of the demo: Ollama (the cheapest, so the most chosen) has an outage from 3 s to
    12 s into the workload and drops 1% of connections; gpt-4o-mini is rate-limited by the
    provider below our own configured RPM; Anthropic and Gemini latencies are replayed from real
    llmperf traces (scaled down), with their recorded failures; a few 5xx and 529 everywhere."""
    profile = json.loads(resources.files("api_model_management").joinpath("_data/demo_profile.json").read_text())
    if not _shared_data_available():
        for spec in profile["providers"].values():  # no traces beside the checkout: lognormal
            if spec.get("latency", {}).get("kind") == "trace":
                spec["latency"] = {"kind": "lognormal", "median_s": 0.05, "sigma": 0.5}
    return profile


def _shared_data_available() -> bool:
    from ..emulator._data import shared_data_dir

    return shared_data_dir() is not None


def build_workload(n: int, seed: int = 7) -> list[tuple[ModelRequest, bool]]:
    """``n`` requests (and whether each is streamed): mixed agent types, priorities and
    constraints; about a fifth repeat an earlier deterministic prompt (cache hits)."""
    rng = random.Random(seed)
    out: list[tuple[ModelRequest, bool]] = []
    deterministic: list[ModelRequest] = []
    for i in range(n):
        if deterministic and rng.random() < 0.2:
            base = rng.choice(deterministic)
            out.append((base.model_copy(update={"request_id": None, "task_id": f"task-{i:05d}"}), False))
            continue
        agent = AGENT_TYPES[i % len(AGENT_TYPES)]
        topic = rng.choice(_TOPICS)
        temperature = 0.0 if rng.random() < 0.35 else 0.7
        priority = rng.choices(("low", "normal", "high"), weights=(2, 6, 2))[0]
        constraints = SelectionConstraints()
        caps = ["text-generation"]
        if agent == "coder":
            caps.append("code-generation")
        if agent == "reviewer" and rng.random() < 0.5:  # reviews want a strong model
            constraints = SelectionConstraints(min_quality=0.85, max_cost_per_request="0.05")
        elif agent == "research" and rng.random() < 0.3:
            constraints = SelectionConstraints(excluded_providers=("ollama",))
        pinned = "gpt-4o-mini" if rng.random() < 0.08 else None  # a rate-limited model
        request = ModelRequest(
            prompt=_TEMPLATES[agent].format(t=topic), parameters={"temperature": temperature},
            task_id=f"task-{i:05d}", agent_type=agent, max_tokens=rng.choice((128, 256, 384)),
            required_capabilities=tuple(caps), priority=priority, constraints=constraints,
            model_id=pinned,
        )
        if temperature == 0.0:
            deterministic.append(request)
        out.append((request, rng.random() < 0.1))
    return out


async def _run_one(mm, request: ModelRequest, streamed: bool) -> tuple[bool, str]:
    try:
        if streamed:
            async for chunk in mm.stream(request):
                if chunk.done:
                    break
        else:
            await mm.complete(request)
        return True, ""
    except AMMError as exc:
        return False, error_kind_of(exc)


async def run_workload(mm, workload, *, concurrency: int, console: Console) -> dict:
    sem = asyncio.Semaphore(concurrency)
    outcomes: dict[str, int] = {"ok": 0}
    progress = Progress(
        TextColumn("[bold]requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console, transient=False,
    )

    async def one(request, streamed, task_id):
        async with sem:
            ok, kind = await _run_one(mm, request, streamed)
        key = "ok" if ok else kind
        outcomes[key] = outcomes.get(key, 0) + 1
        failed = sum(v for k, v in outcomes.items() if k != "ok")
        progress.update(task_id, advance=1, status=f"ok {outcomes['ok']}  failed {failed}")

    with progress:
        task_id = progress.add_task("run", total=len(workload), status="")
        await asyncio.gather(*(one(r, s, task_id) for r, s in workload))
    return outcomes


def held_usd(budget: Sequence[BudgetStatus]) -> Decimal | None:
    """What the CostLedger holds in all, from ``budget_status()`` rows (None without rows).

    A hold counts in the row of every limit that covers it (the global limit and its agent
    type's, each window), so the rows must not be summed: the global row covers every hold;
    without a global limit the largest row is the least that is held."""
    if not budget:
        return None
    rows = [b for b in budget if b.scope == "global"] or budget
    return max(b.reserved_usd for b in rows)


def run_demo(requests: int = 600, data_dir: Path | None = None, concurrency: int = 32,
             console: Console | None = None) -> int:
    from ..config._load import config_from_dict, with_provider_base_urls
    from ..emulator import parse_profile
    from ..emulator.testing import EmulatorServer
    from ..projections import open_projections, render_report
    from ..runtime._system import ModelManagement

    console = console or Console()
    data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="amm-demo-"))
    t0 = time.monotonic()
    registry = demo_registry()
    registry.setdefault("settings", {})["data_dir"] = str(data_dir)
    config = config_from_dict(registry, source="embedded demo registry")
    env = {p.api_key_env: f"demo-key-{name}" for name, p in config.providers.items() if p.api_key_env}
    console.print(f"[bold]amm demo[/]: {len(config.models)} models on {len(config.providers)} providers, "
                  f"{requests} requests, event log in {data_dir}")
    with EmulatorServer() as emulator:
        config = with_provider_base_urls(config, {name: emulator.url_for(p.type) for name, p in config.providers.items()})
        mm = ModelManagement.start(config, env=env)
        try:
            console.print(f"system started in {mm.startup_s:.1f} s ({len(mm.handles.all())} actors); "
                          f"emulator on {emulator.base_url}")
            emulator.set_profile(parse_profile(demo_profile()))  # outage windows count from now
            console.print("faults: Ollama outage 3-12 s into the run, gpt-4o-mini rate-limited by the "
                          "provider, real latency traces (llmperf), 5xx/529/dropped connections")
            workload = build_workload(requests)
            t_run = time.monotonic()
            outcomes = asyncio.run(run_workload(mm, workload, concurrency=concurrency, console=console))
            run_s = time.monotonic() - t_run
            mm.flush()
            budget = mm.budget_status()
        finally:
            mm.shutdown()
    projections = open_projections(str(data_dir))
    report = projections.report(budgets=config.settings.budgets)
    render_report(report, console)
    console.print(f"\n{requests} requests in {run_s:.1f} s ({requests / run_s:.0f}/s); outcomes: {outcomes}; "
                  f"total {time.monotonic() - t0:.1f} s")
    held = held_usd(budget)
    if held is not None:
        console.print(f"budget held after the run (reservations, router slices, spend not yet "
                      f"read from the log): {held} USD")
    console.print("\n[bold]Query further[/]:")
    console.print(f"  amm query \"select model_id, count(*), sum(cost_usd) from request_completed group by 1 order by 3 desc\" --data-dir {data_dir}")
    console.print(f"  amm report --data-dir {data_dir}")
    console.print(f"  duckdb -c \"select * from read_parquet('{data_dir}/events/*/*/*.parquet', hive_partitioning=true, union_by_name=true) limit 5\"")
    return 0
