"""What the HTTP gateway adds: the same request straight to the emulator, through ``amm serve``
(1 worker and 2; with ``--ray-serve`` also on a Ray system and on Ray Serve), through LiteLLM's
proxy and through Portkey's gateway, side by side in one run.

    python benchmarks/gateway_overhead.py [--rounds 400] [--requests 2000] [--concurrency 32,128]
                                          [--litellm-python PATH] [--portkey]
                                          [--ray-serve [--serve-replicas 1]] [--skip-two-workers]

One emulator (its own process, fault-free, zero latency: what is measured is overhead), one
model (``gpt-4o-mini``, OpenAI's protocol; pinned in every gateway, its limits too large to bind),
temperature 0.7 (no cache anywhere), ``max_tokens`` 64. Every target gets the same OpenAI
Chat Completions body over HTTP from one aiohttp client in this process:

- ``direct``: the emulator's ``/v1/chat/completions``: the floor;
- ``amm serve``: the standalone gateway (``--workers 1`` and ``--workers 2``) on the demo
  registry pointed at the emulator, with a virtual key, its budget and the registry's budgets
  (so the key's and the ledger's holds run), evaluation and events as in production;
- ``litellm proxy``: ``litellm --config`` with one deployment on the emulator and a master key,
  run with ``--litellm-python`` (a Python whose ``litellm.proxy.proxy_server`` imports: the
  proxy's extras are not in this project's venv), else skipped with the reason;
- ``portkey``: ``npx @portkey-ai/gateway`` with the emulator as a custom host (``--portkey``,
  needs Node and the npm registry), else skipped;
- ``--ray-serve``: ``amm serve --ray`` (the same app in one process, on the router embedded in a
  ``ModelManagement`` on its own local Ray) and ``amm serve --ray-serve --replicas N`` (that app
  in N Serve replicas, each with an embedded router on the system, behind Serve's HTTP proxy: one
  more process and an actor call per request). The second minus the first is what Serve's proxy
  adds; each starts its own local Ray (the serve extra is needed).

At concurrency 1 the targets are interleaved in rounds (each round calls every target once, in a
shuffled order, so they share the machine's noise); p50/p99 and the ADDED latency over ``direct``
(the target's percentile minus direct's) are reported. Then requests/s at each concurrency
(``--requests`` requests, ``--concurrency`` in flight). Prints markdown tables and writes
``benchmarks/results/gateway_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from _common import (  # noqa: E402
    fmt,
    free_port,
    machine_line,
    markdown_table,
    percentile,
    process_role,
    start_emulator,
    write_json,
)

from api_model_management.config import demo_config, with_emulator_port  # noqa: E402
from api_model_management.gateway import new_key  # noqa: E402

MODEL = "gpt-4o-mini"
PROMPT = "Explain in two sentences how a hash map handles collisions."
_ENTRY = "import sys; from api_model_management.cli import main; sys.argv[0] = 'amm'; main()"


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    body: dict[str, object]
    proc: subprocess.Popen | None = None
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    #: CPU ms per request of each process role of the target's process tree, under load
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _body(model: str = MODEL) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0.7, "max_tokens": 64}


def _wait_http(url: str, timeout_s: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({proc.returncode})")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def _drain(proc: subprocess.Popen, lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)


# -- the targets ----------------------------------------------------------------------------------
def amm_target(emulator_port: int, workers: int, folder: Path, mode: str = "standalone",
               replicas: int = 1, tree: Path | None = None) -> Target:
    """``amm serve`` with ``workers`` workers (``mode`` standalone), on a Ray system (``ray``,
    one process) or on Ray Serve (``ray-serve``, ``replicas`` replicas). ``tree``: another
    checkout of the package (e.g. ``git worktree add /tmp/before COMMIT``) put first on
    ``PYTHONPATH``, for a before/after row side by side in one run."""
    key, digest = new_key()
    label = {"standalone": str(workers), "ray": "ray", "ray-serve": f"serve-{replicas}"}[mode]
    label += "-before" if tree is not None else ""
    registry = with_emulator_port(demo_config(), emulator_port).model_dump(mode="json")
    for model in registry["models"]:
        if model["id"] == MODEL:
            model["rate_limits"] = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10**12}
    registry["settings"]["data_dir"] = str(folder / f"amm-{label}")
    for limit in registry["settings"]["budgets"]["limits"]:
        limit["limit_usd"] = "100000"
    registry["settings"]["gateway"] = {"keys": [{"name": "bench", "key_sha256": digest,
                                                 "agent_type": "coder", "budget_usd": "100000"}]}
    if mode != "standalone":
        registry["settings"]["routers"] = {"replicas": 1}  # requests run on the embedded router(s)
    path = folder / f"registry-{label}.json"
    path.write_text(json.dumps(registry))
    port = free_port()
    env = {**os.environ, "API_MODEL_LOG_LEVEL": "WARNING"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    for provider in demo_config().providers.values():
        if provider.api_key_env:
            env[provider.api_key_env] = "emulator-key"
    args = {"standalone": ["--workers", str(workers)], "ray": ["--ray"],
            "ray-serve": ["--ray-serve", "--replicas", str(replicas)]}[mode]
    proc = subprocess.Popen([sys.executable, "-c", _ENTRY, "serve", "--config", str(path),
                             "--port", str(port), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=folder)  # not the checkout: PYTHONPATH decides which package runs
    lines: list[str] = []
    threading.Thread(target=_drain, args=(proc, lines), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    if mode == "standalone":
        _wait_http(f"{base}/health", proc=proc)
    else:  # Ray and the system start first (Serve's proxy may answer before the app is there)
        _wait_line(lines, "listening on", proc, timeout_s=600)
    name = {"standalone": f"amm serve ({workers} worker{'s' * (workers > 1)})",
            "ray": "amm serve --ray",
            "ray-serve": f"amm serve --ray-serve ({replicas} replica{'s' * (replicas > 1)})"}[mode]
    return Target(name, f"{base}/v1/chat/completions", {"authorization": f"Bearer {key}"},
                  _body(), proc)


def _wait_line(lines: list[str], text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"amm serve did not start ({proc.poll()}):\n{''.join(lines)[-2000:]}")
        time.sleep(0.2)


def litellm_target(emulator_port: int, folder: Path, python: str | None) -> Target | str:
    python = python or sys.executable
    check = subprocess.run([python, "-c", "import litellm.proxy.proxy_server"], capture_output=True,
                           text=True, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    if check.returncode != 0:
        missing = re.findall(r"No module named '([^']+)'", check.stderr)
        return (f"skipped: LiteLLM's proxy does not import with {python} "
                f"({'missing ' + missing[-1] if missing else 'see --litellm-python'})")
    version = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True).stdout.strip()
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{emulator_port}/v1\n"
        "      api_key: emulator-key\n"
        "general_settings:\n"
        "  master_key: sk-bench-master\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n")
    port = free_port()
    litellm_bin = str(Path(python).parent / "litellm")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proc = subprocess.Popen([litellm_bin, "--config", str(config), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=_drain, args=(proc, []), daemon=True).start()
    _wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=180, proc=proc)
    return Target(f"litellm proxy {version}", f"http://127.0.0.1:{port}/v1/chat/completions",
                  {"authorization": "Bearer sk-bench-master"}, _body(), proc)


def portkey_target(emulator_port: int) -> Target | str:
    npx = shutil.which("npx")
    if npx is None:
        return "skipped: no Node (npx) on this machine"
    port = free_port()
    proc = subprocess.Popen([npx, "-y", "@portkey-ai/gateway", f"--port={port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PORT": str(port)})
    lines: list[str] = []
    threading.Thread(target=_drain, args=(proc, lines), daemon=True).start()
    try:
        _wait_http(f"http://127.0.0.1:{port}/", timeout_s=180, proc=proc)
    except RuntimeError as exc:
        proc.kill()
        return f"skipped: Portkey's gateway did not start ({exc}; {''.join(lines)[-200:]!r})"
    headers = {"authorization": "Bearer emulator-key", "x-portkey-provider": "openai",
               "x-portkey-custom-host": f"http://127.0.0.1:{emulator_port}/v1"}
    return Target("portkey gateway", f"http://127.0.0.1:{port}/v1/chat/completions", headers,
                  _body(), proc)


# -- measuring ------------------------------------------------------------------------------------
async def _call(session: aiohttp.ClientSession, target: Target) -> float | None:
    started = time.perf_counter()
    async with session.post(target.url, json=target.body, headers=target.headers) as response:
        payload = await response.read()
        if response.status != 200 or b'"choices"' not in payload:
            target.errors += 1
            return None
    return time.perf_counter() - started


async def latency_rounds(targets: list[Target], rounds: int, warmup: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session:
        for i in range(warmup + rounds):
            order = list(targets)
            random.shuffle(order)
            for target in order:
                took = await _call(session, target)
                if took is not None and i >= warmup:
                    target.latencies_s.append(took)


def _tree_cpu(pid: int, name: str) -> dict[str, float]:
    """CPU seconds (user + system) so far of ``pid`` (role ``name``) and every process under it,
    by role (Ray's workers are under the raylet that ``amm serve --ray[-serve]`` started)."""
    import psutil

    out: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            times = proc.cpu_times()
            role = name if proc.pid == pid else process_role(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[role] = out.get(role, 0.0) + times.user + times.system
    return out


async def throughput(target: Target, requests: int, concurrency: int) -> tuple[float, int]:
    errors_before = target.errors
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        for _ in range(min(concurrency, 64)):  # warm the connections
            await _call(session, target)

        async def worker() -> None:
            for _ in queue:
                await _call(session, target)

        before = _tree_cpu(target.proc.pid, target.name.split(" (")[0]) if target.proc is not None else {}
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        if target.proc is not None:  # the last level's figures are kept
            after = _tree_cpu(target.proc.pid, target.name.split(" (")[0])
            target.cpu_ms = {role: (after[role] - before.get(role, 0.0)) * 1000 / requests
                             for role in after}
    return requests / elapsed, target.errors - errors_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="32,128")
    parser.add_argument("--litellm-python", help="A Python whose litellm.proxy imports (its venv's bin/python).")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--portkey", action="store_true", help="Also run Portkey's gateway (npx).")
    parser.add_argument("--ray-serve", action="store_true",
                        help="Also amm serve --ray and amm serve --ray-serve (what Serve's proxy adds).")
    parser.add_argument("--serve-replicas", type=int, default=1, help="Replicas with --ray-serve.")
    parser.add_argument("--skip-two-workers", action="store_true", help="No amm serve --workers 2 row.")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="Also amm serve, 1 worker, from another checkout (git worktree add "
                             "TREE COMMIT), side by side with this one.")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c]

    print(machine_line())
    folder = Path(tempfile.mkdtemp(prefix="amm-gateway-bench-"))
    skipped: dict[str, str] = {}
    targets: list[Target] = []
    with start_emulator() as emulator:
        try:
            targets.append(Target("direct (emulator)", f"{emulator.url}/v1/chat/completions",
                                  {"authorization": "Bearer emulator-key"}, _body()))
            targets.append(amm_target(emulator.port, 1, folder))
            if args.before is not None:
                if not (args.before / "api_model_management").is_dir():
                    parser.error(f"--before {args.before}: no api_model_management package there")
                before = amm_target(emulator.port, 1, folder, tree=args.before.resolve())
                before.name += f" (before: {args.before.name})"
                targets.append(before)
            if not args.skip_two_workers:
                targets.append(amm_target(emulator.port, 2, folder))
            if args.ray_serve:
                targets.append(amm_target(emulator.port, 1, folder, "ray"))
                targets.append(amm_target(emulator.port, 1, folder, "ray-serve",
                                          args.serve_replicas))
            if not args.skip_litellm:
                found = litellm_target(emulator.port, folder, args.litellm_python)
                if isinstance(found, str):
                    skipped["litellm proxy"] = found
                else:
                    targets.append(found)
            if args.portkey:
                portkey = portkey_target(emulator.port)
                if isinstance(portkey, str):
                    skipped["portkey gateway"] = portkey
                else:
                    targets.append(portkey)
            print(f"targets: {', '.join(t.name for t in targets)}; "
                  + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
            asyncio.run(latency_rounds(targets, args.rounds, args.warmup))
            rates: dict[str, dict[int, tuple[float, int]]] = {t.name: {} for t in targets}
            for level in levels:
                for target in random.sample(targets, len(targets)):
                    rates[target.name][level] = asyncio.run(throughput(target, args.requests, level))
        finally:
            for target in targets:
                target.stop()
    shutil.rmtree(folder, ignore_errors=True)
    report(targets, rates, levels, skipped, args)
    return 0


def report(targets: list[Target], rates: dict[str, dict[int, tuple[float, int]]], levels: list[int],
           skipped: dict[str, str], args: argparse.Namespace) -> None:
    direct = targets[0]
    d50, d99 = percentile(direct.latencies_s, 50) * 1000, percentile(direct.latencies_s, 99) * 1000
    rows, out = [], {"machine": machine_line(), "rounds": args.rounds, "requests": args.requests,
                     "load_average": os.getloadavg(), "skipped": skipped, "targets": {}}
    for t in targets:
        p50, p99 = percentile(t.latencies_s, 50) * 1000, percentile(t.latencies_s, 99) * 1000
        added = (None, None) if t is direct else (p50 - d50, p99 - d99)
        rows.append([t.name, fmt(p50), fmt(p99), fmt(added[0]), fmt(added[1]),
                     *(fmt(rates[t.name][c][0], 0) for c in levels), t.errors])
        out["targets"][t.name] = {"p50_ms": p50, "p99_ms": p99, "added_p50_ms": added[0],
                                  "added_p99_ms": added[1], "errors": t.errors,
                                  "rps": {c: rates[t.name][c][0] for c in levels},
                                  "cpu_ms_per_request": t.cpu_ms}
    headers = ["target", "p50 ms @1", "p99 ms @1", "added p50", "added p99",
               *(f"req/s @{c}" for c in levels), "errors"]
    print(markdown_table(headers, rows))
    cpu_rows = []
    for t in targets:
        if t.cpu_ms:
            top = sorted(((ms, role) for role, ms in t.cpu_ms.items() if ms >= 0.05), reverse=True)
            cpu_rows.append([t.name, fmt(sum(t.cpu_ms.values())),
                             ", ".join(f"{role} {fmt(ms)}" for ms, role in top[:6])])
    if cpu_rows:
        print(f"CPU ms per request under load (@{levels[-1]}; the target's process tree):")
        print(markdown_table(["target", "CPU ms/req", "by process (ms/req)"], cpu_rows))
    for name, why in skipped.items():
        print(f"{name}: {why}")
    by_name = {t.name: t for t in targets}
    ray_only = by_name.get("amm serve --ray")
    on_serve = next((t for t in targets if t.name.startswith("amm serve --ray-serve")), None)
    if ray_only is not None and on_serve is not None and ray_only.latencies_s and on_serve.latencies_s:
        added = {q: (percentile(on_serve.latencies_s, q) - percentile(ray_only.latencies_s, q)) * 1000
                 for q in (50, 99)}
        out["serve_proxy_added_ms"] = added
        print(f"Ray Serve's proxy adds (--ray-serve minus --ray): p50 {fmt(added[50])} ms, "
              f"p99 {fmt(added[99])} ms at concurrency 1")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"results: {write_json('gateway_overhead', out)}")


if __name__ == "__main__":
    raise SystemExit(main())
