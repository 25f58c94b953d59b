"""Router overhead and throughput against a direct call and LiteLLM's Router (design §10).

    python benchmarks/router_overhead.py [--requests 2000] [--concurrency 1,32,128]
                                         [--replicas 2] [--skip-litellm] [--skip-local]

One run, one emulator (its own process, fault-free, zero latency: what is measured is overhead),
one pinned model (``gpt-4o-mini``, OpenAI protocol, limits too large to bind), temperature 0.7 (so
the cache is bypassed) and a budget limit on the agent type (so the CostLedger path runs). Clients:

- ``direct``: ``httpx.AsyncClient`` POST to ``/v1/chat/completions`` with the same body and
  headers our OpenAI adapter sends, JSON decoded: the floor;
- ``amm``: ``await mm.complete(request)``: the embedded router (a router replica in this
  process, on its own event-loop thread) selects, admits from a rate-limit lease and a budget
  slice granted by the RateLimiter and CostLedger actors, calls, evaluates, settles and spools the
  events; no actor round trip per request;
- ``amm actor``: ``await mm.handles.routers[i].complete.remote(request)`` (round robin): what a Ray
  pipeline holding the handles gets, one actor hop per request;
- ``amm local``: the same RouterCore on local cores (``build_local_router``, no Ray, no thread):
  the path's own cost, so ``amm`` minus ``amm local`` is the thread handoff;
- ``litellm``: LiteLLM's ``Router`` with one deployment pointing at the emulator,
  ``await router.acompletion(...)``.

Measured: p50/p99 latency at concurrency 1 with the clients interleaved in rounds (each round
calls every client once, in a shuffled order, so they share the noise), the ADDED latency over
``direct`` (per-client percentile minus direct's), requests/s at each ``--concurrency``, the CPU
each request cost the system's processes and the emulator, and the memory of every process.
Prints markdown tables and writes ``benchmarks/results/router_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM: no fetch from the internet

import httpx  # noqa: E402
import orjson  # noqa: E402
from _common import (  # noqa: E402
    RESULTS_DIR,
    cpu_seconds,
    fmt,
    machine_line,
    markdown_table,
    memory_summary,
    memory_table,
    process_memory,
    process_role,
    start_emulator,
    summarize,
    write_json,
)

from api_model_management._request import ModelRequest  # noqa: E402

MODEL = "gpt-4o-mini"
AGENT = "bench"
MAX_TOKENS = 128
TEMPERATURE = 0.7
PROMPT = "Summarise the main causes of the French Revolution in a few sentences"
KEY = "sk-bench-0123456789abcdef"
KEYS = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
#: No faults, zero latency, and limits on the benchmark model so large that the rate-limit headers
#: never report the remaining capacity running out (the emulator's nominal 10,000 RPM would: the
#: router then rightly cools the model down).
EMULATOR_PROFILE = {"models": {MODEL: {"rate_limits": {"requests_per_minute": 1_000_000_000,
                                                         "tokens_per_minute": 1_000_000_000_000}}}}
WARMUP_SEQUENTIAL = 100
WARMUP_CONCURRENT = 300


# --------------------------------------------------------------------------------------------
# configuration


def bench_config(emulator_port: int, data_dir: Path, replicas: int):
    """The demo registry, every provider on the emulator, the benchmark model's limits too large
    to bind, and a budget on the benchmark's agent type (the ledger path runs)."""
    from api_model_management.config import demo_config, override, with_emulator_port

    config = with_emulator_port(demo_config(), emulator_port)
    models = [m.model_dump() for m in config.models]
    for m in models:
        if m["id"] == MODEL:
            m["rate_limits"] = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000}
    limits = [{"scope": "global", "key": "*", "window": "day", "limit_usd": "10000"},
              {"scope": "agent_type", "key": AGENT, "window": "day", "limit_usd": "5000"}]
    return override(config, models=models, settings={
        "data_dir": str(data_dir), "routers": {"replicas": replicas},
        "budgets": {"limits": limits},
    })


def amm_request() -> ModelRequest:
    return ModelRequest(prompt=PROMPT, agent_type=AGENT, model_id=MODEL, max_tokens=MAX_TOKENS,
                        parameters={"temperature": TEMPERATURE})


# --------------------------------------------------------------------------------------------
# clients: each has ``call()`` (one request, raises on failure), ``errors`` (what counts as a
# failed request) and ``aclose()``


@dataclass
class Client:
    name: str
    call: Callable[[], Awaitable[None]]
    errors: tuple[type[BaseException], ...]
    aclose: Callable[[], Awaitable[None]]
    failures: dict[str, int] = field(default_factory=dict)
    target: object = None  # the object under test, for the span breakdown
    probe: bool = False  # latency rounds only (a part of a request, not a whole one)


def direct_client(base_url: str, max_connections: int) -> Client:
    http = httpx.AsyncClient(
        base_url=base_url, timeout=60,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
    headers = {"accept": "application/json", "authorization": f"Bearer {KEY}",
               "content-type": "application/json"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
            "max_completion_tokens": MAX_TOKENS, "temperature": TEMPERATURE, "stream": False}

    async def call() -> None:
        response = await http.post("/v1/chat/completions", content=orjson.dumps(body), headers=headers)
        if response.status_code != 200:
            raise httpx.HTTPStatusError(str(response.status_code), request=response.request,
                                        response=response)
        orjson.loads(response.content)["choices"][0]["message"]["content"]

    return Client("direct httpx", call, (httpx.HTTPError,), http.aclose)


def aiohttp_client(base_url: str, max_connections: int) -> Client:
    """The same call with aiohttp (installed with ray[default]): a cheaper HTTP client, shown as a
    reference for how much of every column is the client library."""
    import aiohttp

    session: aiohttp.ClientSession | None = None
    headers = {"accept": "application/json", "authorization": f"Bearer {KEY}",
               "content-type": "application/json"}
    payload = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
                            "max_completion_tokens": MAX_TOKENS, "temperature": TEMPERATURE,
                            "stream": False})

    async def call() -> None:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(limit=max_connections))
        async with session.post("/v1/chat/completions", data=payload, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
        orjson.loads(body)["choices"][0]["message"]["content"]

    async def aclose() -> None:
        if session is not None:
            await session.close()

    return Client("direct aiohttp (reference)", call, (aiohttp.ClientError,), aclose)


AMM = "amm mm.complete() (embedded router)"
AMM_ACTOR = "amm via a Router actor handle"


def amm_client(mm) -> Client:
    from api_model_management.errors import AMMError

    async def call() -> None:
        check(await mm.complete(amm_request()))

    async def aclose() -> None:
        return None

    return Client(AMM, call, (AMMError,), aclose)


def actor_client(mm) -> Client:
    from api_model_management.errors import AMMError

    routers = itertools.cycle(mm.handles.routers)

    async def call() -> None:
        check(await next(routers).complete.remote(amm_request()))

    async def aclose() -> None:
        return None

    return Client(AMM_ACTOR, call, (AMMError,), aclose)


def check(response) -> None:
    if response.model_id != MODEL or response.cache_hit:
        raise AssertionError(f"unexpected response: {response.model_id}, cache_hit={response.cache_hit}")


def local_client(config) -> Client:
    from api_model_management.errors import AMMError
    from api_model_management.routing import build_local_router

    router = build_local_router(config, env=KEYS)

    async def call() -> None:
        check(await router.complete(amm_request()))

    async def aclose() -> None:
        for adapter in router.adapters.values():
            await adapter.aclose()
        router.events.close()

    return Client("amm local (no Ray)", call, (AMMError,), aclose, target=router)


class _Echo:
    """A bare async actor: the Ray hop with nothing behind it."""

    async def echo(self, value):
        return value


async def ray_probes(mm) -> list[Client]:
    """The Ray hop alone: an empty call to a router, and calls to a bare echo actor carrying a
    ModelRequest in and a ModelResponse out, as pydantic objects (pickled) and as JSON bytes."""
    import ray
    from ray.exceptions import RayError

    from api_model_management._request import ModelResponse

    router = mm.handles.routers[0]
    echo = ray.remote(num_cpus=0.01)(_Echo).remote()
    request = amm_request()
    response = await mm.complete(request)
    request_json = orjson.dumps(request.model_dump(mode="json"))
    response_json = orjson.dumps(response.model_dump(mode="json"))

    async def ping() -> None:
        await router.ping.remote()

    async def pydantic_round_trip() -> None:
        await echo.echo.remote(request)
        await echo.echo.remote(response)

    async def bytes_round_trip() -> None:
        ModelRequest.model_validate_json(await echo.echo.remote(request_json))
        ModelResponse.model_validate_json(await echo.echo.remote(response_json))

    async def aclose() -> None:
        ray.kill(echo)

    return [Client("probe: Ray call to a router, no payload", ping, (RayError,), aclose, probe=True),
            Client("probe: 2 echo calls, ModelRequest + ModelResponse (pickled)", pydantic_round_trip,
                   (RayError,), aclose, probe=True),
            Client("probe: 2 echo calls, same as JSON bytes (+ validate)", bytes_round_trip,
                   (RayError,), aclose, probe=True)]


def litellm_client(base_url: str) -> Client:
    import litellm
    import openai

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = litellm.Router(model_list=[{
        "model_name": MODEL,
        "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{base_url}/v1", "api_key": KEY},
    }])
    messages = [{"role": "user", "content": PROMPT}]

    async def call() -> None:
        response = await router.acompletion(model=MODEL, messages=messages, temperature=TEMPERATURE,
                                            max_tokens=MAX_TOKENS)
        response.choices[0].message.content  # noqa: B018 - the caller reads the answer

    async def aclose() -> None:
        return None

    return Client(f"litellm {litellm_version()} Router", call, (openai.OpenAIError,), aclose)


def litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


# --------------------------------------------------------------------------------------------
# measurement


async def timed(client: Client) -> float | None:
    """Seconds one call took, or None (and the failure counted) when it failed."""
    started = time.perf_counter()
    try:
        await client.call()
    except client.errors as exc:
        client.failures[type(exc).__name__] = client.failures.get(type(exc).__name__, 0) + 1
        return None
    return time.perf_counter() - started


async def load(client: Client, requests: int, concurrency: int) -> tuple[list[float], float]:
    """``requests`` calls from ``concurrency`` workers; the successful latencies and wall time."""
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            seconds = await timed(client)
            if seconds is not None:
                latencies.append(seconds)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def interleaved(clients: list[Client], rounds: int, seed: int = 1) -> dict[str, list[float]]:
    """Concurrency 1: each round calls every client once, in a shuffled order."""
    rng = random.Random(seed)
    out: dict[str, list[float]] = {c.name: [] for c in clients}
    order = list(clients)
    for _ in range(rounds):
        rng.shuffle(order)
        for client in order:
            seconds = await timed(client)
            if seconds is not None:
                out[client.name].append(seconds)
    return out


class CpuMeter:
    """CPU seconds used between :meth:`start` and :meth:`stop` by each process of the system
    (this one and its descendants), grouped by role; the emulator is its own role."""

    def __init__(self, emulator_pid: int) -> None:
        self.emulator_pid = emulator_pid

    def _sample(self) -> dict[int, tuple[str, float]]:
        import psutil

        out = {}
        for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                role = "emulator" if proc.pid == self.emulator_pid else process_role(proc)
                out[proc.pid] = (role, cpu_seconds(proc.pid))
            except psutil.NoSuchProcess:
                continue
        return out

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds by role."""
        by_role: dict[str, float] = {}
        for pid, (role, seconds) in self._sample().items():
            used = seconds - self._before.get(pid, (role, 0.0))[1]
            by_role[role] = by_role.get(role, 0.0) + used
        return by_role


# --------------------------------------------------------------------------------------------
# where the in-process path spends its time: timers wrapped around the RouterCore's steps


class Spans:
    """Wall time per named step, summed over calls (wrappers installed on one RouterCore)."""

    def __init__(self) -> None:
        self.total_s: dict[str, float] = {}

    def _add(self, name: str, seconds: float) -> None:
        self.total_s[name] = self.total_s.get(name, 0.0) + seconds

    def wrap_sync(self, obj, attr: str, name: str) -> None:
        inner = getattr(obj, attr)

        def timed_call(*a, **kw):
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self._add(name, time.perf_counter() - t0)

        setattr(obj, attr, timed_call)

    def wrap_async(self, obj, attr: str, name: str) -> None:
        inner = getattr(obj, attr)

        async def timed_call(*a, **kw):
            t0 = time.perf_counter()
            try:
                return await inner(*a, **kw)
            finally:
                self._add(name, time.perf_counter() - t0)

        setattr(obj, attr, timed_call)


SPAN_ORDER = [
    ("complete", "whole RouterCore.complete"),
    ("selection", "selection (SelectorCore.select + ModelSelected event)"),
    ("admit", "admission (rate-limit window ∥ budget reservation)"),
    ("adapter", "provider adapter call (httpx + JSON + parse)"),
    ("succeed", "evaluation + ResponseEvaluated + ModelResponse"),
    ("evaluate", "  of which ResponseEvaluator.evaluate"),
    ("finish", "RequestCompleted event, cache check, judge check"),
    ("spool", "events: encode + os.write to the spool"),
]


async def span_breakdown(local: Client, direct: Client, calls: int) -> dict:
    """Mean µs per request of each step of the in-process path, sequentially, against the mean
    of a direct call measured alternately."""
    router = local.target
    spans = Spans()
    spans.wrap_async(router, "complete", "complete")
    spans.wrap_sync(router, "_selection", "selection")
    spans.wrap_async(router, "_admit", "admit")
    spans.wrap_async(router.adapters["openai"], "complete", "adapter")
    spans.wrap_sync(router, "_succeed", "succeed")
    spans.wrap_sync(router.evaluator, "evaluate", "evaluate")
    spans.wrap_sync(router, "_finish", "finish")
    spans.wrap_sync(router.events, "write", "spool")
    direct_s = 0.0
    for _ in range(calls):
        t0 = time.perf_counter()
        await direct.call()
        direct_s += time.perf_counter() - t0
        await timed(local)
    out = {name: spans.total_s.get(name, 0.0) / calls * 1e6 for name, _ in SPAN_ORDER}
    named = sum(out[n] for n in ("selection", "admit", "adapter", "succeed", "finish", "spool"))
    out["other"] = out["complete"] - named
    out["direct_call"] = direct_s / calls * 1e6
    out["adapter_over_direct"] = out["adapter"] - out["direct_call"]
    out["calls"] = calls
    return out


def span_table(spans: dict) -> str:
    rows = [(label, fmt(spans[name], 0)) for name, label in SPAN_ORDER]
    rows += [("other (request state, counters, tasks)", fmt(spans["other"], 0)),
             ("direct httpx call, same body (for comparison)", fmt(spans["direct_call"], 0)),
             ("**adapter minus direct call**", fmt(spans["adapter_over_direct"], 0)),
             ("**path without the provider call** (whole − adapter)",
              fmt(spans["complete"] - spans["adapter"], 0))]
    return (f"In-process path (no Ray), mean µs per request over {spans['calls']} sequential calls:\n\n"
            + markdown_table(["step", "µs"], rows))


# --------------------------------------------------------------------------------------------
# profiling (--py-spy): sampled stacks of the driver and one Router actor under load


async def load_for(client: Client, seconds: float, concurrency: int) -> int:
    """Calls from ``concurrency`` workers until ``seconds`` have passed; returns calls made."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await timed(client)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
         "--format", "raw", "--nonblocking", "--gil", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _frame_name(frame: str) -> str:
    """``function (path/file.py:123)`` → ``function (file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name


def top_frames(collapsed: Path, limit: int = 25) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";")]
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + n

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [(name, 100 * n / max(1, total)) for name, n in ranked]

    return {"samples": total, "self": top(self_counts), "inclusive": top(incl_counts)}


async def profile_amm(mm, client: Client, seconds: float, concurrency: int) -> dict:
    """py-spy on the driver and on router 0 while ``client`` runs at ``concurrency``."""
    router_pid = await mm.handles.routers[0].pid.remote()
    outputs = {"driver": RESULTS_DIR / "pyspy_driver.txt", "router": RESULTS_DIR / "pyspy_router.txt"}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    spies = [start_py_spy(os.getpid(), seconds, outputs["driver"]),
             start_py_spy(router_pid, seconds, outputs["router"])]
    calls = await load_for(client, seconds + 1, concurrency)
    for spy in spies:
        await asyncio.to_thread(spy.wait, 30)
    report = {"calls": calls, "seconds": seconds, "concurrency": concurrency}
    for name, path in outputs.items():
        report[name] = top_frames(path) if path.exists() else {"error": "py-spy wrote nothing"}
    return report


def profile_tables(report: dict) -> str:
    parts = [f"py-spy, {report['seconds']:.0f} s at concurrency {report['concurrency']} "
             f"({report['calls']} calls); share of samples taken while a thread held the GIL (Python work):\n"]
    for name in ("driver", "router"):
        data = report[name]
        if "error" in data:
            parts.append(f"{name}: {data['error']}\n")
            continue
        rows = [(f"`{frame}`", f"{share:.1f}%") for frame, share in data["inclusive"]]
        parts.append(f"**{name}** ({data['samples']} samples), inclusive:\n\n"
                     + markdown_table(["function", "share"], rows) + "\n")
        rows = [(f"`{frame}`", f"{share:.1f}%") for frame, share in data["self"][:15]]
        parts.append(f"**{name}**, self:\n\n" + markdown_table(["function", "share"], rows) + "\n")
    return "\n".join(parts)


async def warm_up(client: Client) -> None:
    for _ in range(WARMUP_SEQUENTIAL):
        await timed(client)
    await load(client, WARMUP_CONCURRENT, 32)


async def throughput_run(client: Client, concurrency: int, requests: int, meter: CpuMeter) -> dict:
    await load(client, min(WARMUP_CONCURRENT, requests), concurrency)
    meter.start()
    values, elapsed = await load(client, requests, concurrency)
    cpu_by_role = meter.stop()
    row = summarize(values, elapsed)
    done = max(1, len(values))
    row["cpu_ms_per_request"] = {role: s / done * 1000 for role, s in sorted(cpu_by_role.items())}
    row["system_cpu_ms_per_request"] = sum(s for r, s in cpu_by_role.items() if r != "emulator") / done * 1000
    row["emulator_cpu_ms_per_request"] = cpu_by_role.get("emulator", 0.0) / done * 1000
    return row


async def idle_cpu(meter: CpuMeter, seconds: float) -> dict[str, float]:
    """CPU ms per second used by each role while no request is sent (background work)."""
    meter.start()
    await asyncio.sleep(seconds)
    return {role: used / seconds * 1000 for role, used in sorted(meter.stop().items())}


async def run(args, clients: list[Client], emulator, mm) -> dict:
    for client in clients:
        await warm_up(client)
    idle = await idle_cpu(CpuMeter(emulator.pid), args.idle_seconds) if args.idle_seconds else {}
    latency = await interleaved(clients, args.requests)
    clients = [c for c in clients if not c.probe]
    results: dict = {"latency_c1": {name: summarize(values) for name, values in latency.items()},
                     "idle_cpu_ms_per_s": idle}
    meter = CpuMeter(emulator.pid)
    throughput: dict = {}
    for concurrency in args.concurrency:
        for repeat in range(args.repeats):
            for client in clients if repeat % 2 == 0 else clients[::-1]:
                row = await throughput_run(client, concurrency, args.requests, meter)
                best = throughput.setdefault(client.name, {}).get(concurrency)
                if best is None or row["rps"] > best["rps"]:
                    throughput[client.name][concurrency] = row
    results["throughput"] = throughput
    results["failures"] = {c.name: c.failures for c in clients}
    local = next((c for c in clients if c.target is not None), None)
    if local is not None:
        results["spans_us"] = await span_breakdown(local, clients[0], min(args.requests, 1000))
    if args.py_spy:
        ours = next(c for c in clients if c.name == AMM)
        results["profile"] = await profile_amm(mm, ours, args.py_spy, args.py_spy_concurrency)
    return results


# --------------------------------------------------------------------------------------------
# report


def latency_table(results: dict) -> str:
    lat = results["latency_c1"]
    base = lat["direct httpx"]
    rows = []
    for name, r in lat.items():
        whole = not name.startswith(("direct", "probe:"))
        added50 = r["p50_ms"] - base["p50_ms"] if whole else None
        added99 = r["p99_ms"] - base["p99_ms"] if whole else None
        rows.append((name, r["requests"], fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(added50), fmt(added99)))
    return markdown_table(["client (concurrency 1, interleaved)", "requests", "p50 ms", "p99 ms",
                           "added p50 ms", "added p99 ms"], rows)


def throughput_table(results: dict, levels: list[int]) -> str:
    rows = []
    for name, per_level in results["throughput"].items():
        cells = []
        for level in levels:
            r = per_level[level]
            cells += [fmt(r["rps"], 0), fmt(r["p50_ms"]), fmt(r["system_cpu_ms_per_request"])]
        rows.append((name, *cells))
    headers = ["client"]
    for level in levels:
        headers += [f"req/s @{level}", f"p50 ms @{level}", f"CPU ms/req @{level}"]
    return markdown_table(headers, rows)


def cpu_table(results: dict, levels: list[int]) -> str:
    """CPU ms per request by process role, for each client at the highest level."""
    level = max(levels)
    per_client = {name: per_level[level]["cpu_ms_per_request"] for name, per_level in results["throughput"].items()}
    roles = sorted({r for cpu in per_client.values() for r in cpu},
                   key=lambda r: -max(cpu.get(r, 0.0) for cpu in per_client.values()))
    rows = [(role, *(fmt(per_client[name].get(role, 0.0)) for name in per_client)) for role in roles
            if max(per_client[name].get(role, 0.0) for name in per_client) >= 0.01]
    return (f"CPU ms per request by process at concurrency {level}:\n\n"
            + markdown_table(["process (role)", *per_client], rows))


def idle_table(idle: dict[str, float]) -> str:
    rows = [(role, fmt(ms, 1)) for role, ms in sorted(idle.items(), key=lambda kv: -kv[1]) if ms >= 0.5]
    rows.append(("**total, emulator excluded**", fmt(sum(v for r, v in idle.items() if r != "emulator"), 1)))
    return ("Background CPU with no traffic (after warm-up), CPU ms per second:\n\n"
            + markdown_table(["process (role)", "CPU ms/s"], rows))


def verdict(results: dict) -> list[str]:
    lines = []
    lat = results["latency_c1"]
    ours = lat.get(AMM)
    if ours is not None:
        added = ours["p50_ms"] - lat["direct httpx"]["p50_ms"]
        lines.append(f"- p50 added latency {added:.2f} ms (target ≤ 2 ms): {'met' if added <= 2 else 'MISSED'}")
    thr = results["throughput"]
    lite = next((n for n in thr if n.startswith("litellm")), None)
    if lite and AMM in thr and 32 in thr[lite]:
        ratio = thr[AMM][32]["rps"] / thr[lite][32]["rps"]
        lines.append(f"- requests/s at 32: {ratio:.2f}× LiteLLM's (target ≥ 2×): {'met' if ratio >= 2 else 'MISSED'}")
    return lines


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000,
                        help="calls per client: interleaved rounds at concurrency 1, and per throughput level")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32, 128],
                        help="comma-separated throughput levels (default 1,32,128)")
    parser.add_argument("--replicas", type=int, default=2, help="Router actor replicas")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs Ray may schedule (default: all)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="throughput runs per client and level, in alternating client order; the best counts")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-probes", action="store_true",
                        help="skip the bare Ray actor calls in the latency rounds")
    parser.add_argument("--skip-aiohttp", action="store_true", help="skip the direct aiohttp reference")
    parser.add_argument("--skip-local", action="store_true", help="skip the in-process RouterCore column")
    parser.add_argument("--skip-actor", action="store_true", help="skip the Router actor handle column")
    parser.add_argument("--py-spy", type=float, default=0, metavar="SECONDS",
                        help="after the runs, sample the driver and router 0 with py-spy (GIL holders) for "
                             "SECONDS at --py-spy-concurrency")
    parser.add_argument("--py-spy-concurrency", type=int, default=32)
    parser.add_argument("--idle-seconds", type=float, default=5,
                        help="measure the background CPU of every process over this idle period (0: skip)")
    parser.add_argument("--keep-data", action="store_true", help="keep the event log's temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from api_model_management import ModelManagement

    load_before = machine_line()
    data_dir = Path(tempfile.mkdtemp(prefix="amm-bench-"))
    profile = data_dir / "emulator-profile.json"
    profile.write_text(orjson.dumps(EMULATOR_PROFILE).decode(), encoding="utf-8")
    emulator = start_emulator(profile)
    mm = None
    try:
        config = bench_config(emulator.port, data_dir / "ray", args.replicas)
        started = time.perf_counter()
        mm = ModelManagement.start(config, env=KEYS, num_cpus=args.num_cpus)
        startup_s = time.perf_counter() - started
        local_config = config.model_copy(update={"settings": config.settings.model_copy(
            update={"data_dir": str(data_dir / "local")})})

        async def session() -> tuple[dict, dict]:
            clients = [direct_client(emulator.url, max(args.concurrency))]
            if not args.skip_aiohttp:
                clients.append(aiohttp_client(emulator.url, max(args.concurrency)))
            clients.append(amm_client(mm))
            if not args.skip_actor:
                clients.append(actor_client(mm))
            if not args.skip_probes:
                clients.extend(await ray_probes(mm))
            if not args.skip_local:
                clients.append(local_client(local_config))
            if not args.skip_litellm:
                clients.append(litellm_client(emulator.url))
            try:
                results = await run(args, clients, emulator, mm)
                processes = process_memory(exclude=[emulator.pid])
                results["memory_processes"] = processes
                return results, memory_summary(processes)
            finally:
                for client in clients:
                    await client.aclose()

        results, memory = asyncio.run(session())
        emulator_memory = process_memory(emulator.pid)
        counters = mm.counters()
    finally:
        if mm is not None:
            mm.shutdown()
        emulator.stop()
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)

    load_after = machine_line()
    levels = args.concurrency
    print(f"# Router overhead: {MODEL} on the emulator (own process, fault-free, zero latency), "
          f"{args.replicas} router replica(s), {args.requests} requests per client and level\n")
    print(f"Machine: {load_before} before; {load_after} after. System start-up {startup_s:.1f} s.\n")
    print(latency_table(results) + "\n")
    print(throughput_table(results, levels) + "\n")
    print("CPU ms/req: CPU time of the driver and Ray's processes (emulator excluded) per request.\n")
    print(cpu_table(results, levels) + "\n")
    if results.get("idle_cpu_ms_per_s"):
        print(idle_table(results["idle_cpu_ms_per_s"]) + "\n")
    if "spans_us" in results:
        print(span_table(results["spans_us"]) + "\n")
    print("Memory at steady state (driver + Ray processes, after the runs):\n")
    print(memory_table(memory) + "\n")
    emu_rss = sum(p["rss_mb"] for p in emulator_memory)
    print(f"Emulator process: {emu_rss:.0f} MB RSS.\n")
    for line in verdict(results):
        print(line)
    if "profile" in results:
        print("\n" + profile_tables(results["profile"]))
    failures = {name: f for name, f in results["failures"].items() if f}
    if failures:
        print(f"\nFailed requests (excluded from latencies): {failures}")
    results.update({
        "machine_before": load_before, "machine_after": load_after, "startup_s": startup_s,
        "args": vars(args), "model": MODEL, "memory": memory, "emulator_memory": emulator_memory,
        "router_counters": counters,
    })
    path = write_json("router_overhead", results)
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
