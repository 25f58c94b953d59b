"""What a request to a model whose RateLimiter is not running pays, and where it goes (issue 15).

    python benchmarks/cold_limiter.py [--runs 3] [--cold 5] [--before TREE]

Each run is a fresh Python process that starts Ray and the system on the demo registry (pointed
at one emulator, its own process, started once), sends one request to warm the router up, then:

- ``request``: for ``--cold`` models, two requests pinned to the model, through
  ``ModelManagement.complete`` (the embedded router): the first one starts the model's limiter
  (``cold``), the second does not (``warm``);
- ``breakdown``: for ``--cold`` other models, the same steps by hand from the driver, timed apart:
  the directory's create call (the name lookup, get-if-exists), the start of the limiter's worker
  process (from /proc, after the create call), the first call answered (``ready``: the process
  is up, Ray's worker and our modules imported, the constructor run), the first lease after it
  and a warm one; and the CPU seconds the limiter's process had used when it answered (what it
  cost to start it, less sensitive to the other processes on a loaded machine than the wall
  times) and 3 s later (what it cost in all, work done after its first answer included).

``--before TREE``: another checkout of the package (``git worktree add /tmp/before COMMIT``),
put first on ``PYTHONPATH`` of its runs (and so of their Ray workers); runs of the two
alternate (before, after, after, before, ...) so that both see the same machine. Prints the
medians and writes ``benchmarks/results/cold_limiter.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    add_child_options,
    fmt,
    machine_line,
    markdown_table,
    start_emulator,
    write_json,
)

KEY = "sk-bench-0123456789abcdef"
KEYS = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
CHECKOUT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# one run (a fresh process; PYTHONPATH decides which package it runs)


def _started_wall(pid: int) -> float:
    """When process ``pid`` started, on this machine's wall clock (to ~10 ms: clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _package_of_actor(actor: object) -> str:
    """Where the checkout an actor's worker process imported the package from (run in it)."""
    module = sys.modules[type(actor).__module__]
    return str(Path(str(module.__file__)).parents[2])


def child(port: int, cold: int, out: Path) -> None:
    import asyncio

    import ray

    import api_model_management
    from api_model_management import ModelManagement
    from api_model_management._request import ModelRequest
    from api_model_management.config import demo_config, override, with_emulator_port

    def request(model_id: str | None, i: int) -> ModelRequest:
        return ModelRequest(prompt=f"Say hello {i}", agent_type="research", model_id=model_id,
                            max_tokens=32, parameters={"temperature": 0.7})

    with tempfile.TemporaryDirectory(prefix="amm-cold-") as data_dir:
        config = override(with_emulator_port(demo_config(), port), settings={"data_dir": data_dir})
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        mm = ModelManagement.start(config, env=KEYS)
        try:
            first = asyncio.run(mm.complete(request(None, 0))).model_id
            ids = [m.id for m in config.models if m.enabled and m.id != first]
            if len(ids) < 2 * cold:
                raise SystemExit(f"--cold {cold}: the demo registry has {len(ids)} other models")
            e2e = []
            for i, model_id in enumerate(ids[:cold]):
                times = []
                for k in range(2):
                    t0 = time.perf_counter()
                    response = asyncio.run(mm.complete(request(model_id, 10 * i + k)))
                    times.append((time.perf_counter() - t0) * 1000)
                    assert response.model_id == model_id, (response.model_id, model_id)
                e2e.append({"model": model_id, "cold_ms": times[0], "warm_ms": times[1]})
            steps, pids = [], []
            for model_id in ids[cold:2 * cold]:
                t0 = time.time()
                handle = mm.handles.limiters.get(model_id)
                t1 = time.time()
                pid = ray.get(handle.pid.remote())
                t2 = time.time()
                cpu_ready = _cpu_s(pid)
                lease = ray.get(handle.lease.remote("bench", 1, 100))
                t3 = time.time()
                ray.get(handle.return_lease.remote(lease.lease_id, 0, 0))
                t4 = time.time()
                lease = ray.get(handle.lease.remote("bench", 1, 100))
                t5 = time.time()
                ray.get(handle.return_lease.remote(lease.lease_id, 0, 0))
                pids.append(pid)
                steps.append({"model": model_id, "create_call_ms": (t1 - t0) * 1000,
                              "process_started_ms": (_started_wall(pid) - t0) * 1000,
                              "ready_ms": (t2 - t0) * 1000, "first_lease_ms": (t3 - t2) * 1000,
                              "warm_lease_ms": (t5 - t4) * 1000, "cpu_at_ready_s": cpu_ready})
            worker_package = ray.get(mm.handles.limiters.get(first).__ray_call__.remote(
                _package_of_actor))
            time.sleep(3.0)
            for step, pid in zip(steps, pids, strict=True):
                step["cpu_after_3s"] = _cpu_s(pid)
            result = {"package": str(Path(api_model_management.__file__).parent.parent),
                      "worker_package": worker_package,
                      "first_model": first, "request": e2e, "breakdown": steps}
        finally:
            mm.shutdown()
            ray.shutdown()
    out.write_text(json.dumps(result), encoding="utf-8")


def run_once(port: int, cold: int, tree: Path | None, scratch: Path, index: int,
             timeout_s: float) -> dict:
    out = scratch / f"run-{index}.json"
    env = dict(os.environ)
    root = tree if tree is not None else CHECKOUT
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, __file__, "--child", "--port", str(port), "--cold",
                           str(cold), "--out", str(out)], env=env, cwd=scratch,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=timeout_s)
    if done.returncode != 0:
        raise SystemExit(f"run {index} ({root}) failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    for where in ("package", "worker_package"):
        if Path(result[where]).resolve() != root.resolve():
            raise SystemExit(f"run {index}: {where} from {result[where]}, not {root}")
    return result


# --------------------------------------------------------------------------------------------
# report


def _median(runs: list[dict], part: str, key: str) -> float:
    return statistics.median(row[key] for run in runs for row in run[part])


def summary_rows(variants: dict[str, list[dict]]) -> list[tuple]:
    rows = []
    for name, runs in variants.items():
        rows.append((name, len(runs),
                     fmt(_median(runs, "request", "cold_ms"), 0),
                     fmt(_median(runs, "request", "warm_ms"), 1),
                     fmt(_median(runs, "breakdown", "create_call_ms"), 1),
                     fmt(_median(runs, "breakdown", "process_started_ms"), 0),
                     fmt(_median(runs, "breakdown", "ready_ms"), 0),
                     fmt(_median(runs, "breakdown", "first_lease_ms"), 1),
                     fmt(_median(runs, "breakdown", "warm_lease_ms"), 1),
                     fmt(_median(runs, "breakdown", "cpu_at_ready_s"), 2),
                     fmt(_median(runs, "breakdown", "cpu_after_3s"), 2)))
    return rows


HEADERS = ["package", "runs", "first request, cold ms", "second, warm ms", "create call ms",
           "process started ms", "ready ms", "first lease ms", "warm lease ms",
           "limiter CPU s at ready", "limiter CPU s 3 s later"]


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per package")
    parser.add_argument("--cold", type=int, default=5,
                        help="cold models per run for each of the two measurements")
    parser.add_argument("--before", type=Path, metavar="TREE", default=None,
                        help="another checkout to measure side by side (runs alternate)")
    add_child_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.port, args.cold, args.out)
        return
    trees: dict[str, Path | None] = {"this checkout": None}
    if args.before is not None:
        if not (args.before / "api_model_management").is_dir():
            raise SystemExit(f"--before {args.before}: no api_model_management package there")
        trees = {f"before ({args.before})": args.before.resolve(), "this checkout": None}
    load_before = machine_line()
    variants: dict[str, list[dict]] = {name: [] for name in trees}
    with start_emulator() as emulator, tempfile.TemporaryDirectory(prefix="amm-cold-runs-") as s:
        index = 0
        for r in range(args.runs):
            order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                variants[name].append(run_once(emulator.port, args.cold, tree, Path(s), index,
                                               args.timeout_s))
                index += 1
    load_after = machine_line()
    print(f"# A cold RateLimiter's first request: demo registry, {args.runs} fresh processes "
          f"per package, {args.cold} cold models each way per run\n")
    print(f"Machine: {load_before} before; {load_after} after.\n")
    print("Medians over every cold model of every run (times from the create call; "
          "`process started`: the limiter's worker process, after the create call):\n")
    print(markdown_table(HEADERS, summary_rows(variants)) + "\n")
    path = write_json("cold_limiter", {"args": {k: str(v) for k, v in vars(args).items()},
                                       "machine_before": load_before, "machine_after": load_after,
                                       "variants": variants})
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
