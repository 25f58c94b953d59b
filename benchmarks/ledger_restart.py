"""How long the CostLedger takes to rebuild its settled spend after a restart (issue 10, item 7).

    python benchmarks/ledger_restart.py [--events 160000] [--files 400]

Writes a log of ``--events`` ``RequestCompleted`` events in ``--files`` files (as the EventSink
writes one file per spool segment), then times, side by side:

- ``read_all_events`` + ``CostLedgerCore.from_events``: how the ledger was rebuilt before (every
  event as a pydantic object, the Parquet log and then the spool);
- ``LogSpend.start()`` with no cache: the first start (columns of every file, aggregated);
- ``LogSpend.start()`` from its cache after 1% more files were written: a restart (only the new
  files are read);

and checks the three agree on the spend. No Ray.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from api_model_management._clock import ManualClock
from api_model_management.budget import CostLedgerCore, LogSpend
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.events import EventLog, RequestCompleted
from api_model_management.events._ingest import read_all_events

SETTINGS = BudgetSettings(limits=[BudgetLimit(limit_usd=Decimal(1_000_000))])


def write_log(root: Path, events: int, files: int, start: datetime) -> EventLog:
    log = EventLog(root, fsync="never")
    per_file = max(1, events // files)
    n = 0
    while n < events:
        batch = [RequestCompleted(
            request_id=f"r{n + i}", occurred_at=start + timedelta(seconds=(n + i) % 80000),
            latency_ms=100.0, cost_usd=Decimal("0.000123"), provider="openai",
            model_id=("gpt-a", "gpt-b", "gpt-c")[(n + i) % 3], agent_type=f"agent-{(n + i) % 7}",
        ) for i in range(min(per_file, events - n))]
        log.append(batch)
        n += len(batch)
    return log


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=160_000)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = ManualClock(start=start + timedelta(hours=23))
    root = Path(tempfile.mkdtemp(prefix="amm-ledger-"))
    t0 = time.perf_counter()
    log = write_log(root, args.events, args.files, start)
    print(f"wrote {args.events:,} events in {args.files} files in {time.perf_counter() - t0:.1f} s")

    def old() -> Decimal:
        events = read_all_events(root, ("RequestCompleted", "RequestFailed", "FeedbackRecorded"))
        ledger = CostLedgerCore.from_events(SETTINGS, events, clock=clock)
        return ledger.spend("global", "*", "day")

    def first() -> Decimal:
        ledger = CostLedgerCore(SETTINGS, clock=clock)
        ledger.apply_log(LogSpend(log, clock).start())
        return ledger.spend("global", "*", "day")

    cache = root / "state" / "ledger-files.json"
    warm = LogSpend(log, clock, cache_path=cache)
    warm.start()
    warm.save(force=True)
    log.append([RequestCompleted(request_id=f"late-{i}", occurred_at=start, latency_ms=1.0,
                                 cost_usd=Decimal("0.000123"), agent_type="agent-0")
                for i in range(args.events // 100)])

    def restart() -> Decimal:
        ledger = CostLedgerCore(SETTINGS, clock=clock)
        ledger.apply_log(LogSpend(log, clock, cache_path=cache).start())
        return ledger.spend("global", "*", "day")

    t_old, s_old = timed(old, args.repeats)
    t_first, s_first = timed(first, args.repeats)
    t_restart, s_restart = timed(restart, args.repeats)
    assert s_old == s_first == s_restart, (s_old, s_first, s_restart)
    print(f"\n| rebuild of the ledger ({args.events:,} + {args.events // 100:,} events) | median s |")
    print("|---|---:|")
    print(f"| before: read_all_events + from_events | {t_old:.2f} |")
    print(f"| LogSpend, no cache (first start) | {t_first:.2f} |")
    print(f"| LogSpend from its cache (a restart; 1% new) | {t_restart:.2f} |")
    print(f"\nspend agrees: {s_restart} USD")


if __name__ == "__main__":
    main()
