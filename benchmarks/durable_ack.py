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

    python benchmarks/durable_ack.py --requests 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from _common import machine_line
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    batches = [request_events(i) for i in range(args.requests)]
    print(machine_line())
    rows = []
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


if __name__ == "__main__":
    main()
