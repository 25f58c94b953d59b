"""Start-up time and memory of the whole system (design §10: ≤ 20 s, memory of all processes stated).

    python benchmarks/startup.py [--runs 3] [--replicas 2] [--num-cpus N] [--models N] [--touch 10]

Each run is a fresh Python process (nothing cached in memory, no Ray running) that times, with the
demo registry (4 providers, 12 models) pointed at one emulator (its own process, started once):

- ``import``: importing ray and the package;
- ``ray.init``: a local Ray (GCS, raylet, helper processes), as ``ModelManagement.start`` does it;
- ``ModelManagement.start``: with Ray running, every actor (one HealthChecker per provider,
  Selector, CostLedger, Cache, EventSink, the routers) started, wired and answering; RateLimiters
  are started on first use (issue 15), so none is started here;
- ``first request``: one ``complete()`` right after start (connections, leases and budget slices
  are still cold; the served model's RateLimiter is started by it);
- ``--touch K``: then K requests, each pinned to another model (the first one's included), each
  twice: the first pays the start of that model's RateLimiter (``cold``), the second does not
  (``warm``); then the live RateLimiter actors and their processes are counted.

``--models N``: a synthetic registry of N models, the demo registry's models replicated (ids
``<id>~k``, the same wire names, all served by the emulator), as the issue's ×4 measurement did.

then the memory (RSS and PSS) of every process of the run. Prints the median of the runs and writes
``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    add_child_options,
    cpu_seconds,
    fmt,
    machine_line,
    markdown_table,
    memory_summary,
    memory_table,
    process_memory,
    process_role,
    start_emulator,
    write_json,
)

KEY = "sk-bench-0123456789abcdef"
KEYS = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
TARGET_S = 20.0
#: Issue 15's targets for a large registry (``--models``): ModelManagement.start and the PSS of
#: every process after start; with ``--touch K``, at most K RateLimiter processes.
REGISTRY_START_S = 15.0
REGISTRY_PSS_MB = 2048.0
PHASES = ("import_s", "ray_init_s", "start_s", "first_request_s")


# --------------------------------------------------------------------------------------------
# one run (in a fresh process)


def replicated(config, n: int):
    """``config`` with its models replicated to ``n`` (ids ``<id>~k``, same wire names)."""
    from api_model_management.config import override

    models = [m.model_dump() for m in config.models]
    out: list[dict] = []
    k = 0
    while len(out) < n:
        out += [m if k == 0 else {**m, "id": f"{m['id']}~{k}", "fallbacks": [],
                                  "provider_model": m.get("provider_model") or m["id"]}
                for m in models]
        k += 1
    return override(config, models=out[:n])


def limiter_processes() -> int:
    """Processes of this run that are RateLimiter actors (Ray titles them by their class)."""
    import psutil

    return sum(1 for proc in psutil.Process().children(recursive=True)
               if process_role(proc) == "ray::LimiterShell")


def touch(mm, first_model: str, k: int) -> dict:
    """``k`` models used (the first request's and k-1 others, spread over the registry), two
    requests each; the live RateLimiters counted after."""
    import asyncio

    from api_model_management._request import ModelRequest

    ids = [m.id for m in mm.config.models if m.enabled]
    step = max(1, len(ids) // k)
    chosen = [first_model] + [i for i in ids[::step] if i != first_model][: k - 1]
    cold: list[float] = []
    warm: list[float] = []
    for i, model_id in enumerate(chosen):
        for times in (cold, warm):
            request = ModelRequest(prompt=f"Say hello {i} {len(times)}", agent_type="research",
                                   model_id=model_id, max_tokens=32, parameters={"temperature": 0.7})
            t0 = time.perf_counter()
            response = asyncio.run(mm.complete(request))
            times.append(time.perf_counter() - t0)
            assert response.model_id == model_id, (response.model_id, model_id)
    live = mm.handles.limiters.live()
    return {"models_touched": len(set(chosen)), "live_limiters": len(live),
            "limiter_processes": limiter_processes(),
            "cold_request_ms": statistics.median(cold[1:] or cold) * 1000,
            "warm_request_ms": statistics.median(warm) * 1000}


def child(port: int, replicas: int | None, num_cpus: int | None, out: Path,
          models: int | None = None, touch_k: int = 0) -> None:
    """Time the phases of one start-up and write them, with the memory, to ``out`` as JSON."""
    t0 = time.perf_counter()
    import asyncio

    import ray

    from api_model_management import ModelManagement
    from api_model_management._request import ModelRequest
    from api_model_management.config import demo_config, override, with_emulator_port

    timings = {"import_s": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory(prefix="amm-startup-") as data_dir:
        settings: dict = {"data_dir": data_dir}
        if replicas is not None:
            settings["routers"] = {"replicas": replicas}
        config = override(with_emulator_port(demo_config(), port), settings=settings)
        if models is not None:
            config = replicated(config, models)
        t0 = time.perf_counter()
        # "local": a fresh Ray, never one that another process on this machine left running
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        timings["ray_init_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mm = ModelManagement.start(config, env=KEYS)
        timings["start_s"] = time.perf_counter() - t0
        try:
            request = ModelRequest(prompt="Say hello", agent_type="research", max_tokens=32,
                                   parameters={"temperature": 0.7})
            t0 = time.perf_counter()
            response = asyncio.run(mm.complete(request))
            timings["first_request_s"] = time.perf_counter() - t0
            processes = process_memory()
            cpu_by_role = startup_cpu()
            limiters_after_first = limiter_processes()
            touched = touch(mm, response.model_id, touch_k) if touch_k else None
            result = {
                **timings,
                "actors": len(mm.handles.all()),
                "providers": len(config.providers),
                "models": len(config.models),
                "routers": len(mm.handles.routers),
                "first_model": response.model_id,
                "limiter_processes_after_first": limiters_after_first,
                "touch": touched,
                "memory": memory_summary(processes),
                "memory_processes": processes,
                "cpu_s_by_role": cpu_by_role,
            }
        finally:
            mm.shutdown()
            ray.shutdown()
    out.write_text(json.dumps(result), encoding="utf-8")


def startup_cpu() -> dict[str, dict]:
    """CPU seconds each role's processes have used since they started (this process included):
    what starting them cost, on a machine where every process competes for 2 cores."""
    import psutil

    out: dict[str, dict] = {}
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            role, used = process_role(proc), cpu_seconds(proc.pid)
        except psutil.NoSuchProcess:
            continue
        entry = out.setdefault(role, {"count": 0, "cpu_s": 0.0})
        entry["count"] += 1
        entry["cpu_s"] += used
    return out


def cpu_table(cpu_by_role: dict[str, dict]) -> str:
    rows = [(role, v["count"], fmt(v["cpu_s"]), fmt(v["cpu_s"] / v["count"]))
            for role, v in sorted(cpu_by_role.items(), key=lambda kv: -kv[1]["cpu_s"])]
    total = sum(v["cpu_s"] for v in cpu_by_role.values())
    rows.append(("**total**", sum(v["count"] for v in cpu_by_role.values()), fmt(total), ""))
    return markdown_table(["process (role)", "count", "CPU s", "CPU s each"], rows)


def run_once(port: int, args, scratch: Path, index: int) -> dict:
    out = scratch / f"run-{index}.json"
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--out", str(out)]
    if args.replicas is not None:
        cmd += ["--replicas", str(args.replicas)]
    if args.num_cpus is not None:
        cmd += ["--num-cpus", str(args.num_cpus)]
    if args.models is not None:
        cmd += ["--models", str(args.models)]
    cmd += ["--touch", str(args.touch)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=args.timeout_s)
    result = json.loads(out.read_text(encoding="utf-8"))
    result["process_s"] = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------------------------
# report


def runs_table(runs: list[dict]) -> str:
    rows: list[tuple] = []
    for i, r in enumerate(runs, 1):
        total = r["ray_init_s"] + r["start_s"]
        rows.append((i, fmt(r["import_s"]), fmt(r["ray_init_s"]), fmt(r["start_s"]), fmt(total),
                     fmt(r["first_request_s"] * 1000, 0), r["actors"], fmt(r["memory"]["rss_mb"], 0),
                     fmt(r["memory"]["pss_mb"], 0)))
    med = {k: statistics.median(r[k] for r in runs) for k in PHASES}
    med_total = statistics.median(r["ray_init_s"] + r["start_s"] for r in runs)
    rows.append(("**median**", fmt(med["import_s"]), fmt(med["ray_init_s"]), fmt(med["start_s"]),
                 f"**{fmt(med_total)}**", fmt(med["first_request_s"] * 1000, 0), "", "", ""))
    return markdown_table(["run", "import s", "ray.init s", "ModelManagement.start s",
                           "ray.init + start s", "first request ms", "actors", "RSS MB", "PSS MB"], rows)


def registry_verdicts(runs: list[dict], touch_k: int) -> list[str]:
    """Issue 15's targets for a large registry, from the runs (start: the median; memory and
    limiter processes: the worst run)."""
    start = statistics.median(r["start_s"] for r in runs)
    pss = max(r["memory"]["pss_mb"] for r in runs)
    models = runs[-1]["models"]
    lines = [f"- ModelManagement.start with {models} models, median {start:.1f} s (issue 15: "
             f"≤ {REGISTRY_START_S:.0f} s): {'met' if start <= REGISTRY_START_S else 'MISSED'}",
             f"- PSS of every process after start, worst run {pss:,.0f} MB (issue 15: "
             f"≤ {REGISTRY_PSS_MB:,.0f} MB): {'met' if pss <= REGISTRY_PSS_MB else 'MISSED'}"]
    if touch_k and all(r.get("touch") for r in runs):
        most = max(r["touch"]["limiter_processes"] for r in runs)
        touched = min(r["touch"]["models_touched"] for r in runs)
        lines.append(f"- RateLimiter processes after touching {touched} models, worst run {most} "
                     f"(issue 15: ≤ {touched}): {'met' if most <= touched else 'MISSED'}")
    return lines


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=None, help="Router replicas (default: the demo's)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs Ray may schedule (default: all)")
    parser.add_argument("--models", type=int, default=None,
                        help="a synthetic registry of N models (the demo's, replicated)")
    parser.add_argument("--touch", type=int, default=0,
                        help="then use K models (two requests each) and count live RateLimiters")
    add_child_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.port, args.replicas, args.num_cpus, args.out, args.models, args.touch)
        return
    load_before = machine_line()
    runs = []
    with start_emulator() as emulator, tempfile.TemporaryDirectory(prefix="amm-startup-runs-") as scratch:
        for i in range(args.runs):
            runs.append(run_once(emulator.port, args, Path(scratch), i))
        emulator_rss = sum(p["rss_mb"] for p in process_memory(emulator.pid))
    load_after = machine_line()
    last = runs[-1]
    median_total = statistics.median(r["ray_init_s"] + r["start_s"] for r in runs)
    print(f"# Start-up: demo registry ({last['providers']} providers, {last['models']} models), "
          f"{last['actors']} actors ({last['routers']} routers), {args.runs} fresh processes\n")
    print(f"Machine: {load_before} before; {load_after} after.\n")
    print(runs_table(runs) + "\n")
    print(f"Memory of every process after start (last run; the emulator, {emulator_rss:.0f} MB RSS, "
          f"not included):\n")
    print(memory_table(last["memory"]) + "\n")
    print("CPU used by every process from its start to the end of the first request (last run):\n")
    print(cpu_table(last["cpu_s_by_role"]) + "\n")
    if last.get("touch"):
        rows = [(i, r["touch"]["models_touched"], r["touch"]["live_limiters"],
                 r["touch"]["limiter_processes"], fmt(r["touch"]["cold_request_ms"], 0),
                 fmt(r["touch"]["warm_request_ms"], 0)) for i, r in enumerate(runs, 1)]
        print(f"Touching {args.touch} models (RateLimiter processes after the first request: "
              f"{last['limiter_processes_after_first']}):\n")
        print(markdown_table(["run", "models touched", "live RateLimiters",
                              "RateLimiter processes", "first request to a model ms (cold)",
                              "second ms (warm)"], rows) + "\n")
    verdict = "met" if median_total <= TARGET_S else "MISSED"
    print(f"- ray.init + ModelManagement.start, median {median_total:.1f} s (target ≤ {TARGET_S:.0f} s): {verdict}")
    if args.models is not None:
        for line in registry_verdicts(runs, args.touch):
            print(line)
    path = write_json("startup", {"runs": runs, "median_total_s": median_total, "args": vars(args),
                                  "machine_before": load_before, "machine_after": load_after,
                                  "emulator_rss_mb": emulator_rss})
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
