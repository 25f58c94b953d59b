"""Emulator throughput and latency, with the emulator in its own process.

    python benchmarks/emulator.py [--requests 20000] [--concurrency 32] [--clients 1]

Starts ``python -m api_model_management.emulator`` (fault-free) on a free port, then measures:
- requests/s and p50/p99 latency of plain (non-streaming) OpenAI-format chat calls under
  concurrency, from ``--clients`` load processes each running an ``httpx.AsyncClient``;
- the latency of single direct httpx calls (concurrency 1): the floor under any router overhead.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import cpu_seconds, machine_line, markdown_table, start_emulator, summarize  # noqa: E402

from api_model_management.emulator._client import chat_request  # noqa: E402

PROMPT = "Summarise the main causes of the French Revolution in a few sentences"


async def _load(base_url: str, requests: int, concurrency: int) -> list[float]:
    path, headers, body = chat_request("openai", PROMPT)
    latencies: list[float] = []
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await client.post(path, headers=headers, json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _raw_load(base_url: str, requests: int, concurrency: int) -> list[float]:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: cheap enough not to be the limit."""
    host, port = base_url.removeprefix("http://").split(":")
    path, headers, body = chat_request("openai", PROMPT)
    payload = orjson.dumps(body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{head}"
               f"content-length: {len(payload)}\r\n\r\n").encode() + payload
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for _ in remaining:
                started = time.perf_counter()
                writer.write(request)
                status_and_headers = await reader.readuntil(b"\r\n\r\n")
                if not status_and_headers.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(status_and_headers[:40].decode())
                length = int(status_and_headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _load_process(args: tuple[str, str, int, int]) -> list[float]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    kind, *rest = args
    return asyncio.run((_raw_load if kind == "raw" else _load)(*rest))


def throughput(kind: str, base_url: str, pid: int, requests: int, concurrency: int,
               clients: int) -> dict[str, float]:
    per_client = requests // clients
    asyncio.run(_load(base_url, 300, concurrency))  # warm up the server
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    if clients == 1:
        latencies = _load_process((kind, base_url, per_client, concurrency))
    else:
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            parts = pool.map(_load_process, [(kind, base_url, per_client, concurrency // clients)] * clients)
        latencies = [x for part in parts for x in part]
    elapsed = time.perf_counter() - started
    summary = summarize(latencies, elapsed)
    summary["server_cpu_us"] = (cpu_seconds(pid) - cpu_before) / len(latencies) * 1e6
    return summary


def single_calls(base_url: str, requests: int) -> dict[str, float]:
    path, headers, body = chat_request("openai", PROMPT)
    latencies = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(50):
            client.post(path, headers=headers, json=body)
        started = time.perf_counter()
        for _ in range(requests):
            t0 = time.perf_counter()
            client.post(path, headers=headers, json=body).raise_for_status()
            latencies.append(time.perf_counter() - t0)
    return summarize(latencies, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clients", type=int, default=1, help="load-generating processes")
    parser.add_argument("--single", type=int, default=1000, help="sequential calls for the floor")
    args = parser.parse_args()
    rows = []
    with start_emulator() as emulator:
        for kind, label in (("raw", "raw asyncio HTTP/1.1 client"), ("httpx", "httpx.AsyncClient")):
            load = throughput(kind, emulator.url, emulator.pid, args.requests, args.concurrency, args.clients)
            rows.append((f"{label}, {args.clients} process(es), concurrency {args.concurrency}", load))
        rows.append(("direct httpx.Client call, concurrency 1", single_calls(emulator.url, args.single)))
    print(f"Emulator benchmark: {machine_line()} at the end; emulator in its own process, fault-free, "
          f"OpenAI non-streaming chat\n")
    table = []
    for label, r in rows:
        cpu = f"{r['server_cpu_us']:.0f}" if "server_cpu_us" in r else "-"
        table.append((label, f"{r['requests']:.0f}", f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", cpu))
    print(markdown_table(["scenario", "requests", "requests/s", "p50 ms", "p99 ms",
                          "emulator CPU µs/request"], table))


if __name__ == "__main__":
    main()
