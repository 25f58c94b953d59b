"""What it costs to make a request's events survive the loss of its node before ``complete()``
returns: the latency added per request by each way of making them durable.

A request leaves about four events (ModelSelected, AttemptStarted, RequestCompleted,
ResponseEvaluated). Today a router writes them to its node's spool (one ``os.write``; an fsync at
most every 200 ms) and returns: they survive the router's process, not the node's disk. To survive
the node, they must be off the node before the answer: shipped to the shared log. Measured here,
per request (p50 and p99 over ``--requests``):

- ``spool``: the spool write as today (``fsync="interval"``);
- ``spool+fsync``: the spool write with ``fsync="always"`` (survives power loss, not a lost disk);
- ``ship segment``: the spool's bytes uploaded as one object to the object store (S3 on loopback,
  moto in its own process): what shipping each closed segment before acknowledging costs when every
  request closes its own segment;
- ``log append``: the events written as Parquet straight into the shared log on S3 (one file per
  event type).

Then the option itself, ``settings.events.ack="shipped"`` (``events._shipper``: the router ships
its own spool segments to the log, one upload round at a time, and answers a request once the
round holding its events is done), through a real in-process router (``build_local_router``)
calling the emulator (its own process, zero latency) over loopback HTTP: the latency of a request
with ``ack="local"`` and with ``ack="shipped"``, side by side, at ``--concurrency`` requests in
flight (1, 8, 32), with the log on the local disk and on S3 (moto), runs of the two interleaved.
``requests per upload round`` is how many requests one round served (group commit amortises the
upload under load).

    python benchmarks/durable_ack.py --requests 200 --router-requests 200 --reps 3 --concurrency 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from _common import machine_line, start_emulator
from _s3 import loopback_s3

from api_model_management.events import (
    AttemptStarted,
    CandidateScore,
    Event,
    ModelSelected,
    RequestCompleted,
    ResponseEvaluated,
)
from api_model_management.events._log import EventLog
from api_model_management.events._spool import SpoolWriter, encode_events
from api_model_management.events._storage import Storage


def request_events(i: int) -> list[Event]:
    now = datetime.now(UTC)
    rid = f"req-{i:08d}"
    cands = tuple(CandidateScore(model_id=m, score=0.6, capability=1.0, cost=0.5, performance=0.7,
                                 availability=1.0) for m in ("gpt-4o-mini", "claude-haiku-4-5"))
    common = {"occurred_at": now, "request_id": rid, "agent_type": "coder", "model_id": "gpt-4o-mini",
              "provider": "openai"}
    return [
        ModelSelected(**common, candidates=cands, propensity=1.0),
        AttemptStarted(**common, attempt=1, router_id="router-0", reserved_usd=Decimal("0.002")),
        RequestCompleted(**common, latency_ms=812.5, input_tokens=420, output_tokens=180,
                         cost_usd=Decimal("0.000171"), finish_reason="stop"),
        ResponseEvaluated(**common, completeness=0.9, relevance=0.8, coherence=0.9,
                          quality_score=0.86, low_quality=False),
    ]


def timed(n: int, step: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        step(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"| {name} | {statistics.median(ordered):.3f} | {p99:.3f} |"


MODEL = "gpt-4o-mini"
PROMPT = "Summarise the main causes of the French Revolution in a few sentences"
KEY = "sk-bench-durable-0123456789"
KEYS = {"AMM_DEMO_OPENAI_KEY": KEY, "AMM_DEMO_ANTHROPIC_KEY": KEY, "AMM_DEMO_GOOGLE_KEY": KEY}
#: Limits on the benchmark model so large that the router never cools it down.
EMULATOR_PROFILE = {"models": {MODEL: {"rate_limits": {"requests_per_minute": 1_000_000_000,
                                                         "tokens_per_minute": 1_000_000_000_000}}}}


def router_config(port: int, data_dir: str, spool_dir: str, ack: str):
    from api_model_management.config import demo_config, override, with_emulator_port

    config = with_emulator_port(demo_config(), port)
    models = [m.model_dump() for m in config.models]
    for m in models:
        if m["id"] == MODEL:
            m["rate_limits"] = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000}
    return override(config, models=models, settings={
        "data_dir": data_dir, "events": {"ack": ack, "spool_dir": spool_dir},
        "cache": {"enabled": False}})


async def through_router(config, requests: int, concurrency: int) -> tuple[list[float], dict]:
    """Per-request latency (ms) of ``requests`` requests, ``concurrency`` in flight, after a
    warm-up; and the shipper's counters (empty with ``ack="local"``)."""
    from api_model_management import ModelRequest
    from api_model_management.routing import build_local_router

    router = build_local_router(config, env=KEYS)

    def request() -> ModelRequest:
        return ModelRequest(prompt=PROMPT, agent_type="bench", model_id=MODEL, max_tokens=64,
                            cacheable=False)

    async def drive(n: int, samples: list[float]) -> None:
        left = [n]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                started = time.perf_counter()
                await router.complete(request())
                samples.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await drive(max(10, concurrency), [])  # warm-up: connections, first files
    counters_before = dict(router.acks.counters) if router.acks is not None else {}
    samples: list[float] = []
    await drive(requests, samples)
    counters = ({k: v - counters_before.get(k, 0) for k, v in router.acks.counters.items()}
                if router.acks is not None else {})
    for adapter in router.adapters.values():
        await adapter.aclose()
    if router.acks is not None:
        await router.acks.aclose()  # type: ignore[attr-defined]
    router.events.close()  # type: ignore[attr-defined]
    return samples, counters


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def router_rows(args, emulator_port: int, store: str, uri: str, spool_root: str) -> list[str]:
    """For each concurrency, ``--reps`` runs of each ack, interleaved (local, shipped, local,
    ...) so that a burst of load on this shared machine hits both alike; the p50 is the median of
    the runs' p50s, the p99 that of all samples."""
    rows = []
    for concurrency in args.concurrency:
        p50s: dict[str, list[float]] = {"local": [], "shipped": []}
        pooled: dict[str, list[float]] = {"local": [], "shipped": []}
        served: list[float] = []
        for _ in range(args.reps):
            for ack in ("local", "shipped"):
                run = f"{store.split()[0]}-{ack}-c{concurrency}-{uuid.uuid4().hex[:6]}"
                config = router_config(emulator_port, f"{uri}/{run}", f"{spool_root}/{run}", ack)
                samples, counters = asyncio.run(
                    through_router(config, args.router_requests, concurrency))
                p50s[ack].append(statistics.median(samples))
                pooled[ack].extend(samples)
                if counters.get("rounds"):
                    served.append(args.router_requests / counters["rounds"])
        local, shipped = statistics.median(p50s["local"]), statistics.median(p50s["shipped"])
        rows.append(f"| {store} | {concurrency} | {local:.2f} | {p99(pooled['local']):.2f} "
                    f"| {shipped:.2f} | {p99(pooled['shipped']):.2f} | {shipped - local:+.2f} "
                    f"| {statistics.median(served):.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--router-requests", type=int, default=200,
                        help="requests per (store, ack, concurrency) through the router")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 8, 32])
    parser.add_argument("--reps", type=int, default=3, help="interleaved runs of each ack")
    parser.add_argument("--skip-micro", action="store_true", help="only the router runs")
    args = parser.parse_args()
    batches = [request_events(i) for i in range(args.requests)]
    print(machine_line())
    rows = []
    if not args.skip_micro:
        with tempfile.TemporaryDirectory() as local:
            for name, fsync in (("spool", "interval"), ("spool+fsync", "always")):
                writer = SpoolWriter(local, f"bench-{fsync}", fsync=fsync)
                rows.append(row(name, timed(args.requests, lambda i, w=writer: w.write(batches[i]))))
                writer.close()
        with loopback_s3() as uri:
            storage = Storage(uri)
            rows.append(row("ship segment (S3, one object)", timed(args.requests, lambda i: storage.write_new(
                storage.join("shipped", f"seg-{i:08d}.wal"), encode_events(batches[i]), fsync=False))))
            log = EventLog(uri)
            rows.append(row("log append (S3, Parquet)", timed(args.requests, lambda i: log.append(batches[i]))))
        print(f"\n{args.requests} requests, 4 events each\n")
        print("| made durable by | added p50 (ms) | added p99 (ms) |")
        print("|---|---:|---:|")
        print("\n".join(rows))

    profile = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(EMULATOR_PROFILE, profile)
    profile.close()
    router = []
    with start_emulator(Path(profile.name)) as emulator, tempfile.TemporaryDirectory() as tmp:
        router += router_rows(args, emulator.port, "local disk", f"{tmp}/logs", f"{tmp}/spools")
        with loopback_s3() as uri:
            router += router_rows(args, emulator.port, "S3 (moto)", uri, f"{tmp}/spools")
    os.unlink(profile.name)
    print(f"\nthrough the router against the emulator, {args.reps} x {args.router_requests} "
          f"requests per ack and row; {machine_line()}\n")
    print("| log | in flight | local p50 (ms) | local p99 | shipped p50 (ms) | shipped p99 "
          "| added p50 (ms) | requests per upload round |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(router))


if __name__ == "__main__":
    main()
