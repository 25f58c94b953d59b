"""Sustained append throughput of the Parquet event log, and bytes per event on disk.

Appends realistic ``RequestCompleted`` events (every field filled) to a fresh temporary directory at
several batch sizes, each for a bounded number of events or seconds, whichever comes first, and
prints a markdown table. Event construction is excluded (events are built beforehand); the time
covers grouping, Arrow conversion, Parquet encoding, the write, fsync (per policy) and the rename.
"events per CPU-second" divides by this process's CPU time: on a machine shared with other work it
shows what the append path costs, where wall-clock throughput shows what the share allowed.

    python benchmarks/event_log.py
    python benchmarks/event_log.py --batch-sizes 1,100,10000 --seconds 5 --compression snappy
    python benchmarks/event_log.py --s3 --batch-sizes 1000,10000,50000   # to S3 (moto, loopback)

With ``--s3`` the log is ``s3://`` on an S3-compatible server on loopback (moto, its own process;
see ``_s3.py``): each append is one upload per file, no fsync, no rename.

``--ingest`` measures a node's EventSink instead: the events are first written to a spool as a
router writes them (``SpoolWriter``, ``--spool-batch`` events per write, a segment closed every
``--segment-events``; not timed), then one ``SpoolIngestor.ingest()`` (what the sink's loop calls)
reads, decodes and appends every segment to the log (one append, so one file per event type and
date, per segment) and deletes it: timed, for the local disk and, with ``--s3``, for ``s3://``
side by side in the same run (rows alternate). The CPU of this process and of moto is reported.
``--path both`` (default) runs each row twice, decoding segments through the event models
(``pydantic``, the old path) and straight to Arrow (``fast``, the sink's default: ``_arrow.py``).

    python benchmarks/event_log.py --ingest --s3 --segment-events 1000,4000,16000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from _s3 import loopback_s3

from api_model_management.events import RequestCompleted
from api_model_management.events._log import EventLog

MODELS = [("openai", "gpt-4o-mini", "0.00000015", "0.0000006"),
          ("anthropic", "claude-3-5-haiku", "0.0000008", "0.000004"),
          ("gemini", "gemini-2.0-flash", "0.0000001", "0.0000004"),
          ("ollama", "llama3.1:8b", "0", "0")]
AGENTS = ["planner", "coder", "reviewer", "summarizer", "researcher"]
FINISH = ["stop", "stop", "stop", "length", "tool_calls"]


def realistic_events(n: int, seed: int = 7) -> list[RequestCompleted]:
    """``n`` plausible completions over one busy hour, all fields filled."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    events = []
    for i in range(n):
        provider, model, price_in, price_out = rng.choice(MODELS)
        input_tokens = rng.randint(50, 8000)
        output_tokens = rng.randint(10, 2000)
        cached = rng.randint(0, input_tokens // 2) if rng.random() < 0.3 else 0
        cost = Decimal(price_in) * (input_tokens - cached) + Decimal(price_out) * output_tokens
        cache_hit = rng.random() < 0.1
        latency = rng.lognormvariate(6.5, 0.6)
        prompt_chars = input_tokens * 4
        events.append(RequestCompleted(
            occurred_at=start + timedelta(microseconds=i * 3_600_000_000 // max(n, 1)),
            request_id=f"req-{i:09d}", task_id=f"task-{i // 4:08d}",
            agent_type=rng.choice(AGENTS), model_id=model, provider=provider,
            attempts=1 if rng.random() < 0.95 else 2, latency_ms=round(latency, 3),
            time_to_first_token_ms=round(latency * rng.uniform(0.1, 0.4), 3),
            input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached,
            reasoning_tokens=rng.randint(0, 500) if rng.random() < 0.2 else 0,
            cost_usd=Decimal(0) if cache_hit else cost, finish_reason=rng.choice(FINISH),
            cache_hit=cache_hit, saved_cost_usd=cost if cache_hit else Decimal(0),
            streamed=rng.random() < 0.5, provider_request_id=f"chatcmpl-{rng.getrandbits(96):024x}",
            prompt_hash=hashlib.sha256(f"prompt {i}".encode()).hexdigest(),
            prompt_chars=prompt_chars, response_chars=output_tokens * 4,
        ))
    return events


def run_one(batch_size: int, events: list[RequestCompleted], seconds: float, fsync: str,
            compression: str, s3_uri: str | None = None) -> dict:
    if s3_uri is not None:
        return _run_s3(batch_size, events, seconds, compression, f"{s3_uri}/b{batch_size}")
    with tempfile.TemporaryDirectory(prefix="amm-bench-") as data_dir:
        log = EventLog(data_dir, fsync=fsync, compression=compression)
        written = 0
        cpu_start = time.process_time()
        start = time.perf_counter()
        while written < len(events) and time.perf_counter() - start < seconds:
            log.append(events[written:written + batch_size])
            written += min(batch_size, len(events) - written)
        log.sync()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        files = list(Path(data_dir, "events").rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
    return {"batch": batch_size, "events": written, "seconds": elapsed, "rate": written / elapsed,
            "cpu_rate": written / max(cpu, 1e-9),
            "files": len(files), "bytes_per_event": size / max(written, 1)}


def _run_s3(batch_size: int, events: list[RequestCompleted], seconds: float, compression: str,
            uri: str) -> dict:
    log = EventLog(uri, compression=compression)
    written = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    while written < len(events) and time.perf_counter() - start < seconds:
        log.append(events[written:written + batch_size])
        written += min(batch_size, len(events) - written)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    objects = log.storage.list_tree(log.storage.root)
    files = [size for name, size, _ in objects if name.endswith(".parquet")]
    return {"batch": batch_size, "events": written, "seconds": elapsed, "rate": written / elapsed,
            "cpu_rate": written / max(cpu, 1e-9), "files": len(files),
            "bytes_per_event": sum(files) / max(written, 1)}


def run_ingest(events: list[RequestCompleted], segment_events: int, spool_batch: int,
               data_dir: str, spool_dir: str, fsync: str, path: str = "fast") -> dict:
    """Spool ``events`` as one router would (not timed), then time one ingestion of every
    segment into ``data_dir`` (a local path or an ``s3://`` URI). ``path``: ``fast`` decodes
    segments straight to Arrow (the sink's default), ``pydantic`` through the event models."""
    from api_model_management.config import EventSettings
    from api_model_management.events._ingest import SpoolIngestor
    from api_model_management.events._spool import SpoolWriter, encode_events

    writer = SpoolWriter(data_dir, f"bench-{os.getpid()}", fsync="never", spool_dir=spool_dir,
                         segment_max_bytes=1 << 40, segment_max_age_s=1e9)
    segments = 0
    for start in range(0, len(events), segment_events):
        chunk = events[start:start + segment_events]
        writer.write_bytes(b"".join(encode_events(chunk[i:i + spool_batch])
                                    for i in range(0, len(chunk), spool_batch)))
        writer.rotate()
        segments += 1
    ingestor = SpoolIngestor(data_dir, EventSettings(fsync=fsync, spool_dir=spool_dir),
                             fast_decode=path == "fast")
    moto = _children_cpu()
    cpu_start = time.process_time()
    start = time.perf_counter()
    written = ingestor.ingest()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    moto = _children_cpu() - moto
    writer.close()
    return {"segment_events": segment_events, "segments": segments, "events": written,
            "seconds": elapsed, "rate": written / elapsed, "cpu_rate": written / max(cpu, 1e-9),
            "other_cpu_s": moto, "cpu_s": cpu}


def _children_cpu() -> float:
    """CPU seconds of this process's children (moto's server, when it runs)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def _ingest_table(args: argparse.Namespace) -> None:
    from _common import machine_line

    sizes = [int(s) for s in args.segment_events.split(",")]
    events = realistic_events(args.max_events)
    print(f"{machine_line()}\nEventSink ingestion of spooled RequestCompleted events "
          f"({args.max_events:,} per row, {args.spool_batch} per spool write, local fsync="
          f"{args.fsync}); the S3 rows' 'other CPU' is moto's\n")
    paths = ["pydantic", "fast"] if args.path == "both" else [args.path]
    print("| segment (events) | log | decoding | segments | events/s (wall) |"
          " events per CPU-second | other CPU s |")
    print("|---:|---|---|---:|---:|---:|---:|")
    with contextlib.ExitStack() as stack:
        s3_uri = stack.enter_context(loopback_s3()) if args.s3 else None
        for repeat in range(args.repeat):
            for size in sizes:
                targets = [("local", None)] + ([("s3", s3_uri)] if s3_uri else [])
                for name, uri in targets:
                    for path in paths:
                        with tempfile.TemporaryDirectory(prefix="amm-bench-ingest-") as tmp:
                            data_dir = (f"{uri}/ingest-{size}-{path}-{repeat}" if uri
                                        else str(Path(tmp, "log")))
                            r = run_ingest(events, size, args.spool_batch, data_dir,
                                           str(Path(tmp, "spool")), args.fsync, path)
                        print(f"| {size:,} | {name} | {path} | {r['segments']:,} | "
                              f"{r['rate']:,.0f} | {r['cpu_rate']:,.0f} | "
                              f"{r['other_cpu_s']:.2f} |", flush=True)
    print(f"\n{machine_line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="1,100,10000",
                        help="comma-separated events per append (default: 1,100,10000)")
    parser.add_argument("--max-events", type=int, default=200_000,
                        help="at most this many events per batch size (default: 200000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="at most this long per batch size (default: 5)")
    parser.add_argument("--fsync", choices=["always", "interval", "never"], default="interval",
                        help="the log's fsync policy (default: interval, 200 ms)")
    parser.add_argument("--compression", default="zstd",
                        help="Parquet codec: zstd, snappy, lz4, gzip or none (default: zstd)")
    parser.add_argument("--s3", action="store_true",
                        help="write to s3:// on a loopback S3-compatible server (moto) instead")
    parser.add_argument("--ingest", action="store_true",
                        help="time a node's EventSink ingesting spooled segments (local and, "
                             "with --s3, s3:// side by side)")
    parser.add_argument("--segment-events", default="1000,4000,16000",
                        help="--ingest: events per spool segment (default: 1000,4000,16000)")
    parser.add_argument("--path", choices=["fast", "pydantic", "both"], default="both",
                        help="--ingest: decode segments straight to Arrow (fast, the sink's "
                             "default), through the event models (pydantic), or both side by "
                             "side (default)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="--ingest: run the whole table this many times (default: 1)")
    parser.add_argument("--spool-batch", type=int, default=4,
                        help="--ingest: events per spool write (default: 4, about one request)")
    args = parser.parse_args()
    if args.ingest:
        _ingest_table(args)
        return
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    events = realistic_events(args.max_events)
    where = "s3:// (moto on loopback)" if args.s3 else f"local disk, fsync={args.fsync}"
    print(f"{where} compression={args.compression} "
          f"(at most {args.max_events} events or {args.seconds:g} s per row)\n")
    with contextlib.ExitStack() as stack:
        s3_uri = stack.enter_context(loopback_s3()) if args.s3 else None
        _table(sizes, events, args, s3_uri)


def _table(sizes: list[int], events: list[RequestCompleted], args: argparse.Namespace,
           s3_uri: str | None) -> None:
    print("| batch size | events | seconds | events/s (wall) | events per CPU-second | files |"
          " bytes/event |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        r = run_one(size, events, args.seconds, args.fsync, args.compression, s3_uri)
        print(f"| {r['batch']:,} | {r['events']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | "
              f"{r['cpu_rate']:,.0f} | {r['files']:,} | {r['bytes_per_event']:.1f} |")


if __name__ == "__main__":
    main()
