"""How many lease and slice grants per second one RateLimiter and one CostLedger actor serve.

    python benchmarks/control_plane.py [--seconds 4] [--repeats 3] [--callers 1,2,4]
                                       [--concurrency 8] [--num-cpus 2]

The actors are the runtime's own (``runtime._actors.RateLimiterActor`` for one model,
``CostLedgerActor``), started on a local Ray of their own with a configuration whose limits never
bind (RPM 10^9 and TPM 10^12 on the model, a global and a per-agent-type budget of $10^9), so every
call is a grant. Callers are Ray actors (``--callers`` of them, ``--concurrency`` asyncio tasks
each, ``num_cpus=0``) that repeat what a router does when a lease or slice runs out:

- limiter cycle: ``await lease(holder, 4, 8000)`` then ``return_lease(id, 4, 4000)`` sent without
  waiting (a router hands its old lease back fire-and-forget and awaits the new one);
- ledger cycle: ``await grant_slice(key, 8 x $0.01, holder, $0.01)`` then ``return_slice(id, 0,
  key, ())`` sent without waiting: the per-slice work. What each *request* settled under a slice
  adds at the ledger (a pending charge held on return, dropped when the log delivers the request)
  is measured separately without Ray (``charge`` rows).

Reported: cycles (grants) per second, median of ``--repeats`` windows of ``--seconds`` after a
warm-up; p50/p99 latency of the awaited grant; the actor's CPU (share of one core, and µs per
grant). The same calls on the cores alone (``RateLimiterCore``, ``CostLedgerCore``) and on the
shells without Ray (the core plus its journal and spool, as the actor runs them) separate the
core's cost from the shell's and from Ray's hop. From the default grant sizes in the code it
derives the request rate one limiter (per model) and the one ledger sustain. Prints markdown
tables and writes ``benchmarks/results/control_plane.json`` (read by ``capacity_sim.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    cpu_seconds,
    fmt,
    machine_line,
    markdown_table,
    percentile,
    quantiles,
    write_json,
)

MODEL = "gpt-4o-mini"
AGENT = "bench"
#: A call's worst case as the router reserves it (the slice asks ``SLICE_CALLS`` of them).
CALL_WORST_USD = Decimal("0.01")
TOKENS_PER_REQUEST = 1000  # estimate per request (input + max output): the lease's token side
QUANTILE_POINTS = 101


def bench_config(data_dir: Path):
    """The demo registry with limits that never bind on ``MODEL`` and budgets that never bind."""
    from api_model_management.config import demo_config, override

    config = demo_config()
    models = [m.model_dump() for m in config.models]
    for m in models:
        if m["id"] == MODEL:
            m["rate_limits"] = {"requests_per_minute": 10**9, "tokens_per_minute": 10**12}
    limits = [{"scope": "global", "key": "*", "window": "day", "limit_usd": "1000000000"},
              {"scope": "agent_type", "key": AGENT, "window": "day", "limit_usd": "1000000000"}]
    return override(config, models=models, settings={"data_dir": str(data_dir),
                                                     "budgets": {"limits": limits}})


def defaults() -> dict:
    """The grant sizes the code ships with (read from it, not restated)."""
    from api_model_management.budget import _admission as budget_admission
    from api_model_management.budget import _ledger
    from api_model_management.config import BudgetSettings
    from api_model_management.config._schema import RateLimitSettings
    from api_model_management.ratelimit import _admission as rate_admission

    rate = RateLimitSettings()
    return {
        "lease_requests": rate.lease_requests, "lease_tokens": rate.lease_tokens,
        "lease_ttl_s": rate.lease_ttl_s, "lease_growth_max": rate_admission.MAX_LEASE_GROWTH,
        "lease_fast_refill_s": rate_admission.FAST_REFILL_S,
        "lease_safety_margin_s": rate_admission.SAFETY_MARGIN_S,
        "slice_calls": budget_admission.SLICE_CALLS,
        "slice_calls_max": budget_admission.MAX_SLICE_CALLS,
        "slice_fast_refill_s": budget_admission.FAST_REFILL_S,
        "slice_ttl_s": BudgetSettings().slice_ttl_s,
        "slice_share_of_headroom": float(_ledger.SLICE_SHARE),
        "tokens_per_request": TOKENS_PER_REQUEST,
    }


def _spend_key(config):
    from api_model_management.budget import SpendKey

    return SpendKey(config.model(MODEL).provider, MODEL, AGENT)


# --------------------------------------------------------------------------------------------
# without Ray: the cores, and the shells (core + journal + spool)


def _time_cycles(cycle, n: int) -> dict:
    for _ in range(min(200, n)):  # warm-up
        cycle()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        cycle()
        samples.append(time.perf_counter() - t0)
    us = [s * 1e6 for s in samples]
    return {"n": n, "mean_us": sum(us) / n, "p50_us": percentile(us, 50),
            "p99_us": percentile(us, 99), "quantiles_us": quantiles(us, QUANTILE_POINTS)}


def direct(config, n: int, lease: tuple[int, int], slice_usd: Decimal, charges: int) -> dict:
    """µs per grant cycle on the cores and on the shells, in this process."""
    from api_model_management.budget import CostLedgerCore
    from api_model_management.budget._fold import SpendDelta
    from api_model_management.ratelimit import RateLimiterCore
    from api_model_management.runtime._shells import CostLedgerShell, RateLimiterShell

    requests, tokens = lease
    key = _spend_key(config)
    out: dict[str, dict] = {}

    core = RateLimiterCore(MODEL, 10**9, 10**12, settings=config.settings.rate_limit)

    def core_lease() -> None:
        got = core.lease("bench", requests, tokens, 0)
        core.return_lease(got.lease_id, requests, tokens // 2)
        core.drain_records()
        core.drain_events()

    out["limiter core"] = _time_cycles(core_lease, n)
    shell = RateLimiterShell(config, MODEL)

    def shell_lease() -> None:
        got = shell.lease("bench", requests, tokens, 0)
        shell.return_lease(got.lease_id, requests, tokens // 2)

    out["limiter shell"] = _time_cycles(shell_lease, n)

    ledger = CostLedgerCore(config.settings.budgets, registry=config, follows_log=True)

    def core_slice() -> None:
        got = ledger.grant_slice(key, slice_usd, "bench", minimum_usd=CALL_WORST_USD)
        ledger.return_slice(got.slice_id, Decimal(0), key, charges=())
        ledger.drain_hold_changes()
        ledger.drain_events()

    out["ledger core"] = _time_cycles(core_slice, n)
    lshell = CostLedgerShell(config)
    try:
        def shell_slice() -> None:
            got = lshell.grant_slice(key, slice_usd, "bench", CALL_WORST_USD)
            lshell.return_slice(got.slice_id, Decimal(0), key, ())

        out["ledger shell"] = _time_cycles(shell_slice, n)
        seq = iter(range(10**9))

        def shell_slice_charged() -> None:
            """The same with ``charges`` requests settled under the slice: each is held as a
            pending charge on return and dropped when the log delivers its request (what the
            shell's poll does after reading the log; the log read itself is not timed)."""
            got = lshell.grant_slice(key, slice_usd, "bench", CALL_WORST_USD)
            ids = [f"req-{next(seq)}" for _ in range(charges)]
            lshell.return_slice(got.slice_id, CALL_WORST_USD * charges, key,
                                tuple((i, CALL_WORST_USD) for i in ids))
            with lshell._lock:
                lshell.core.apply_log(SpendDelta(request_ids=ids))
                lshell._after()

        out["ledger shell, with charges"] = _time_cycles(shell_slice_charged, n)
    finally:
        lshell._stop.set()
    return out


# --------------------------------------------------------------------------------------------
# with Ray


def _caller_class():
    import ray

    @ray.remote(num_cpus=0)
    class Caller:
        """Repeats grant cycles against one actor from ``concurrency`` asyncio tasks."""

        async def run(self, target, kind: str, args: tuple, concurrency: int, start_at: float,
                      stop_at: float, end_at: float, name: str) -> dict:
            latencies: list[float] = []
            counted = 0

            async def one(i: int) -> None:
                nonlocal counted
                holder = f"{name}-{i}"
                while time.monotonic() < end_at:
                    t0 = time.monotonic()
                    if kind == "lease":
                        requests, tokens = args
                        got = await target.lease.remote(holder, requests, tokens, 0)
                        t1 = time.monotonic()
                        target.return_lease.remote(got.lease_id, requests, tokens // 2)
                    elif kind == "slice":
                        key, amount, minimum = args
                        got = await target.grant_slice.remote(key, amount, holder, minimum)
                        t1 = time.monotonic()
                        target.return_slice.remote(got.slice_id, Decimal(0), key, ())
                    else:  # "ping": the bare hop
                        await target.ping.remote()
                        t1 = time.monotonic()
                    if start_at <= t1 < stop_at:
                        counted += 1
                        latencies.append(t1 - t0)

            await asyncio.gather(*(one(i) for i in range(concurrency)))
            return {"counted": counted, "latencies": latencies}

    return Caller


def ray_run(ray, callers, target, pid: int, kind: str, args: tuple, concurrency: int,
            seconds: float, warmup_s: float) -> dict:
    now = time.monotonic()
    start_at = now + 0.5 + warmup_s
    stop_at = start_at + seconds
    refs = [c.run.remote(target, kind, args, concurrency, start_at, stop_at, stop_at + 0.2,
                         f"c{i}") for i, c in enumerate(callers)]
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu0 = cpu_seconds(pid)
    time.sleep(max(0.0, stop_at - time.monotonic()))
    cpu1 = cpu_seconds(pid)
    results = ray.get(refs)
    counted = sum(r["counted"] for r in results)
    lat_ms = [x * 1000 for r in results for x in r["latencies"]]
    return {"per_s": counted / seconds, "p50_ms": percentile(lat_ms, 50),
            "p99_ms": percentile(lat_ms, 99), "actor_cpu_share": (cpu1 - cpu0) / seconds,
            "actor_cpu_us_per_grant": (cpu1 - cpu0) / max(counted, 1) * 1e6,
            "latency_quantiles_ms": quantiles(lat_ms, QUANTILE_POINTS)}


def with_ray(config, args, lease: tuple[int, int], slice_usd: Decimal) -> dict:
    import ray

    from api_model_management.runtime._actors import CostLedgerActor, RateLimiterActor

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    try:
        limiter = RateLimiterActor.options(name=f"bench:ratelimit:{MODEL}").remote(config, MODEL)
        ledger = CostLedgerActor.options(name="bench:ledger").remote(config)
        pids = {"limiter": ray.get(limiter.pid.remote(), timeout=120),
                "ledger": ray.get(ledger.pid.remote(), timeout=120)}
        caller_class = _caller_class()
        max_callers = max(args.callers)
        callers = [caller_class.remote() for _ in range(max_callers)]
        ray.get([c.run.remote(None, "none", (), 0, 0, 0, 0, "w") for c in callers], timeout=120)
        key = _spend_key(config)
        targets = {"limiter": (limiter, "lease", lease),
                   "ledger": (ledger, "slice", (key, slice_usd, CALL_WORST_USD))}
        out: dict = {"pids": pids, "runs": {}}
        for name, (target, kind, call_args) in targets.items():
            # unloaded: one caller, one task (the hop + service), and the bare hop (ping)
            for probe, probe_kind in (("ping", "ping"), ("c1", kind)):
                reps = [ray_run(ray, callers[:1], target, pids[name], probe_kind, call_args, 1,
                                args.seconds, args.warmup) for _ in range(args.repeats)]
                out["runs"][f"{name} {probe}"] = _median_run(reps, callers=1, concurrency=1)
            for k in args.callers:
                reps = [ray_run(ray, callers[:k], target, pids[name], kind, call_args,
                                args.concurrency, args.seconds, args.warmup)
                        for _ in range(args.repeats)]
                out["runs"][f"{name} k{k}"] = _median_run(reps, callers=k,
                                                          concurrency=args.concurrency)
                print(f"  {name} {k} caller(s) x {args.concurrency}: "
                      f"{fmt(out['runs'][f'{name} k{k}']['per_s'])}/s", flush=True)
        return out
    finally:
        ray.shutdown()


def _median_run(reps: list[dict], *, callers: int, concurrency: int) -> dict:
    """The repeat with the median rate (its latencies and CPU), and every repeat's rate."""
    ordered = sorted(reps, key=lambda r: r["per_s"])
    mid = dict(ordered[len(ordered) // 2])
    mid["repeats_per_s"] = [r["per_s"] for r in reps]
    mid["callers"], mid["concurrency"] = callers, concurrency
    return mid


# --------------------------------------------------------------------------------------------
# output


def implied_rates(d: dict, limiter_per_s: float, ledger_per_s: float,
                  charge_us: float) -> list[dict]:
    """Requests/s one limiter and the ledger sustain at their measured saturation, for the grant
    sizes a router asks: the base size (a router refilling slower than once a second) and the
    largest its growth reaches (a busy router: one refill within ``fast_refill_s`` of the last
    doubles the next, up to the cap)."""
    per_lease = min(d["lease_requests"], d["lease_tokens"] // d["tokens_per_request"])
    per_lease_max = per_lease * d["lease_growth_max"]
    rows = [
        {"owner": "RateLimiter (one per model)", "grant": "base lease", "requests_per_grant": per_lease,
         "grants_per_s": limiter_per_s, "requests_per_s": limiter_per_s * per_lease},
        {"owner": "RateLimiter (one per model)", "grant": f"lease x{d['lease_growth_max']} (busy router)",
         "requests_per_grant": per_lease_max, "grants_per_s": limiter_per_s,
         "requests_per_s": limiter_per_s * per_lease_max},
    ]
    for label, calls in (("base slice", d["slice_calls"]),
                         (f"slice x{d['slice_calls_max'] // d['slice_calls']} (busy router)",
                          d["slice_calls_max"])):
        per_request_s = 1 / ledger_per_s / calls + charge_us / 1e6
        rows.append({"owner": "CostLedger (one)", "grant": label, "requests_per_grant": calls,
                     "grants_per_s": ledger_per_s, "requests_per_s": calls * ledger_per_s,
                     "requests_per_s_with_charges": 1 / per_request_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per window (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="windows per level (median)")
    parser.add_argument("--callers", default="1,2,4", help="caller actors per level (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks per caller (default 8)")
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray's CPU count")
    parser.add_argument("--direct-cycles", type=int, default=5000,
                        help="cycles per row without Ray (default 5000)")
    parser.add_argument("--skip-ray", action="store_true", help="only the cores and shells")
    args = parser.parse_args()
    args.callers = [int(k) for k in args.callers.split(",")]
    d = defaults()
    lease = (d["lease_requests"], d["lease_tokens"])
    slice_usd = CALL_WORST_USD * d["slice_calls"]
    print(machine_line())
    print(f"defaults: lease {lease[0]} requests / {lease[1]} tokens (x{d['lease_growth_max']} when "
          f"busy), ttl {d['lease_ttl_s']:g} s; slice {d['slice_calls']} worst-case calls "
          f"(up to {d['slice_calls_max']}), ttl {d['slice_ttl_s']:g} s\n")
    result: dict = {"machine_before": machine_line(), "defaults": d, "args": vars(args),
                    "pid": os.getpid()}
    with tempfile.TemporaryDirectory(prefix="amm-cp-direct-") as data_dir:
        result["direct"] = direct(bench_config(Path(data_dir)), args.direct_cycles, lease,
                                  slice_usd, d["slice_calls"])
    rows = [(name, fmt(r["mean_us"], 1), fmt(r["p50_us"], 1), fmt(r["p99_us"], 1),
             fmt(1e6 / r["mean_us"])) for name, r in result["direct"].items()]
    print("Without Ray (one grant + return cycle, this process):\n")
    print(markdown_table(["", "mean µs", "p50 µs", "p99 µs", "cycles/s"], rows))
    charged = result["direct"]["ledger shell, with charges"]["mean_us"]
    charge_us = (charged - result["direct"]["ledger shell"]["mean_us"]) / d["slice_calls"]
    result["charge_us_per_request"] = charge_us
    print(f"\nper request settled under a slice (pending charge held, then dropped when logged): "
          f"{charge_us:.1f} µs at the ledger\n")
    if args.skip_ray:
        write_json("control_plane", result)
        return
    with tempfile.TemporaryDirectory(prefix="amm-cp-ray-") as data_dir:
        result["ray"] = with_ray(bench_config(Path(data_dir)), args, lease, slice_usd)
    runs = result["ray"]["runs"]
    table = []
    for name, r in runs.items():
        table.append((name, r["callers"], r["concurrency"], fmt(r["per_s"]),
                      " / ".join(fmt(x) for x in r["repeats_per_s"]), fmt(r["p50_ms"]),
                      fmt(r["p99_ms"]), f"{r['actor_cpu_share']:.0%}",
                      fmt(r["actor_cpu_us_per_grant"], 0)))
    print("\nThrough Ray (grant awaited, return sent without waiting):\n")
    print(markdown_table(["actor, load", "callers", "tasks each", "grants/s (median)", "repeats",
                          "p50 ms", "p99 ms", "actor CPU", "actor CPU µs/grant"], table))
    best = {owner: max((r for n, r in runs.items() if n.startswith(owner) and "k" in n.split()[-1]),
                       key=lambda r: r["per_s"]) for owner in ("limiter", "ledger")}
    result["saturation"] = {o: r["per_s"] for o, r in best.items()}
    result["implied"] = implied_rates(d, best["limiter"]["per_s"], best["ledger"]["per_s"],
                                      charge_us)
    print("\nThe request rate that implies (assumption: every request is admitted from a grant "
          f"and uses its worst case; {TOKENS_PER_REQUEST} tokens estimated per request):\n")
    print(markdown_table(
        ["owner", "grant", "requests per grant", "grants/s", "requests/s",
         "requests/s with per-request charges"],
        [(r["owner"], r["grant"], r["requests_per_grant"], fmt(r["grants_per_s"]),
          fmt(r["requests_per_s"]), fmt(r.get("requests_per_s_with_charges")))
         for r in result["implied"]], "llrrrr"))
    result["machine_after"] = machine_line()
    print(f"\n{result['machine_after']}")
    print(f"wrote {write_json('control_plane', result)}")


if __name__ == "__main__":
    main()
