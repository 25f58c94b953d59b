"""Benchmark: projections over N synthetic RequestCompleted events (design §10: ≤ 2 s each).

Generates the rows vectorised (numpy + pyarrow, no per-event Python objects) with the event type's
own Arrow schema, writes them as a few Parquet files in the log's Hive layout under a temporary
directory, then times through the projections API (median of ``--runs``):

- cost by model by day (``cost_by_model_day``),
- p50/p95/p99 latency by model (``latency_by_model``).

    python benchmarks/projections.py               # 10 million rows
    python benchmarks/projections.py --rows 1000000 --keep /tmp/amm-bench
    python benchmarks/projections.py --rows 1000000 --s3   # the same, read from s3:// (moto)

With ``--s3`` the files are uploaded to an S3-compatible server on loopback (moto, its own
process; ``_s3.py``) and read through the log's pyarrow datasets registered in DuckDB (no DuckDB
extension); the time to open the views (list the store, check each footer) is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from _s3 import loopback_s3

from api_model_management.events import RequestCompleted
from api_model_management.events._storage import open_filesystem
from api_model_management.projections import Projections

MODELS = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet", "anthropic"),
          ("claude-haiku", "anthropic"), ("gemini-pro", "google"), ("gemini-flash", "google"),
          ("llama3", "ollama"), ("qwen2", "ollama")]
AGENTS = ["research", "coding", "review", "planning"]
DAYS = 10
START = datetime(2026, 1, 1, tzinfo=UTC)
US_PER_DAY = 86_400_000_000


def _strings(values: list[str], index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values, pa.string()), pa.array(index))


def synthetic_batch(rng: np.random.Generator, start: int, rows: int, day: int) -> pa.Table:
    """``rows`` RequestCompleted rows on day ``day`` (event ids ``start`` .. ``start + rows``)."""
    schema = RequestCompleted.arrow_schema()
    model = rng.integers(0, len(MODELS), rows)
    ids = pc.binary_join_element_wise(
        "evt-", pc.cast(pa.array(np.arange(start, start + rows)), pa.string()), "")
    base_us = int(START.timestamp() * 1_000_000) + day * US_PER_DAY
    occurred = np.sort(rng.integers(0, US_PER_DAY, rows)) + base_us
    latency = rng.lognormal(mean=6.5 + 0.1 * model, sigma=0.6)
    input_tokens = rng.integers(20, 4000, rows)
    output_tokens = rng.integers(1, 1000, rows)
    cost_units = input_tokens * 2_500 + output_tokens * 10_000  # 1e-12 USD units
    cache_hit = rng.random(rows) < 0.1
    zeros = pa.array(np.zeros(rows, dtype=np.int64))
    columns = {
        "event_id": ids,
        "event_type": pa.array(np.full(rows, "RequestCompleted", dtype=object), pa.string()),
        "schema_version": pa.array(np.ones(rows, dtype=np.int16)),
        "occurred_at": pa.array(occurred, pa.timestamp("us", tz="UTC")),
        "request_id": ids,
        "task_id": pa.nulls(rows, pa.string()),
        "agent_type": _strings(AGENTS, rng.integers(0, len(AGENTS), rows)),
        "model_id": _strings([m for m, _ in MODELS], model),
        "provider": _strings([p for _, p in MODELS], model),
        "attempts": pa.array(np.ones(rows, dtype=np.int32)),
        "latency_ms": pa.array(latency),
        "time_to_first_token_ms": pa.array(latency * 0.3),
        "input_tokens": pa.array(input_tokens),
        "output_tokens": pa.array(output_tokens),
        "cached_tokens": zeros,
        "reasoning_tokens": zeros,
        "cost_usd": _money(np.where(cache_hit, 0, cost_units)),
        "finish_reason": _strings(["stop", "length"], (rng.random(rows) < 0.03).astype(np.int64)),
        "cache_hit": pa.array(cache_hit),
        "saved_cost_usd": _money(np.where(cache_hit, cost_units, 0)),
        "streamed": pa.array(np.zeros(rows, dtype=bool)),
        "provider_request_id": pa.nulls(rows, pa.string()),
        "prompt_hash": pa.nulls(rows, pa.string()),
        "prompt_chars": pa.array(input_tokens * 4),
        "response_chars": pa.array(output_tokens * 4),
        "prompt_text": pa.nulls(rows, pa.string()),
        "response_text": pa.nulls(rows, pa.string()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _money(units: np.ndarray) -> pa.Array:
    """Integer 1e-12 USD units → decimal128(38, 12), exactly: same unscaled integers, new scale."""
    unscaled = pa.array(units.astype(np.int64)).cast(pa.decimal128(38, 0))
    return pa.Array.from_buffers(pa.decimal128(38, 12), len(unscaled), unscaled.buffers())


def generate(data_dir: Path, rows: int, seed: int = 7) -> float:
    """Write ``rows`` events, one file per day (of ``DAYS``); returns seconds taken."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    per_day = -(-rows // DAYS)
    written = 0
    for day in range(DAYS):
        n = min(per_day, rows - written)
        if n <= 0:
            break
        date = (START.date().toordinal() + day)
        folder = (data_dir / "events" / "event_type=RequestCompleted" /
                  f"date={datetime.fromordinal(date).date().isoformat()}")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(synthetic_batch(rng, written, n, day), folder / "bench.parquet",
                       row_group_size=1_000_000)
        written += n
    return time.perf_counter() - started


def time_runs(fn, runs: int) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep the files")
    parser.add_argument("--s3", action="store_true",
                        help="upload to s3:// on a loopback S3-compatible server and read it there")
    args = parser.parse_args()
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="amm-bench-"))
    try:
        if not (data_dir / "events").exists():
            seconds = generate(data_dir, args.rows)
            print(f"generated {args.rows:,} RequestCompleted rows in {seconds:.1f} s")
        size_mb = sum(p.stat().st_size for p in data_dir.rglob("*.parquet")) / 1e6
        with contextlib.ExitStack() as stack:
            source: str | Path = data_dir
            if args.s3:
                source = stack.enter_context(loopback_s3())
                started = time.perf_counter()
                fs, root = open_filesystem(source)
                pafs.copy_files(str(data_dir / "events"), f"{root}/events",
                                source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
                print(f"uploaded to {source} in {time.perf_counter() - started:.1f} s")
            _time_projections(source, size_mb, args)
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def _time_projections(source: str | Path, size_mb: float, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    projections = Projections(source)
    print(f"views opened in {time.perf_counter() - started:.3f} s")
    threads = projections.connection.execute("SELECT current_setting('threads')").fetchall()[0]
    print(f"data: {size_mb:.0f} MB Parquet; DuckDB threads: {threads[0]}; cpus: {os.cpu_count()}")
    rows = []
    for name in ("cost_by_model_day", "latency_by_model"):
        median_s, table = time_runs(lambda n=name: projections.table(n), args.runs)
        rows.append((name, median_s, table.num_rows))
    print(f"\n| projection | rows in | result rows | median of {args.runs} (s) | target (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, median_s, result_rows in rows:
        print(f"| {name} | {args.rows:,} | {result_rows} | {median_s:.3f} | 2.0 |")
    projections.close()


if __name__ == "__main__":
    main()
