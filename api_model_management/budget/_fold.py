"""Spend as the event log records it, followed file by file: how the CostLedger learns settled
spend in the Ray runtime, and how it is rebuilt after a restart without re-reading the log.

The log's files are immutable (written whole, never rewritten; compaction writes a merged file
that names the files it replaces). So spend can be kept *per file*: a :class:`FileSpend` is a
file's spend aggregated by (provider, model, agent type, minute), plus the request ids it
delivered. The ledger's settled spend is the sum over the live files; a poll (:meth:`LogSpend.poll`)
lists the partitions, summarises only files it has not seen, takes a merged file's summary from
the files it claims (no data read) and drops files that are no longer live, and returns the
difference as a :class:`SpendDelta`: exact through compaction, re-ingestion and restarts. A file
that cannot be read is quarantined by the log (``EventLog.quarantine``: moved aside, alerted) and
the others are followed as before.

The summaries are cached in a JSON file (``<data_dir>/state/ledger-files.json``), so a restarted
ledger reads only the files written since the cache was saved: restart time does not grow with the
log. Aggregating by minute keeps every day and month window exact (windows start at a local
midnight, a whole minute in UTC for every time zone in use).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._clock import Clock
from ..events._log import EventLog, LogFile, is_merged_name
from ._limits import SpendKey, spend_key_of

#: The event types that carry spend.
SPEND_TYPES = ("RequestCompleted", "RequestFailed", "FeedbackRecorded")
#: Terminal events: their request ids settle the router's pending charges.
_TERMINAL = ("RequestCompleted", "RequestFailed")
_COLUMNS = ["request_id", "occurred_at", "cost_usd", "provider", "model_id", "agent_type"]

#: (provider, model_id, agent_type, minute as epoch seconds) -> spend
Rows = dict[tuple[str | None, str | None, str | None, int], Decimal]


@dataclass
class FileSpend:
    """One log file's spend, aggregated; ``request_ids``: (id, epoch seconds) of its terminal
    events, kept while recent."""

    partition: tuple[str, str]
    rows: Rows = field(default_factory=dict)
    request_ids: list[tuple[str, float]] = field(default_factory=list)

    def merged(self, others: Iterable[FileSpend]) -> FileSpend:
        out = FileSpend(self.partition, dict(self.rows), list(self.request_ids))
        for other in others:
            for key, amount in other.rows.items():
                out.rows[key] = out.rows.get(key, Decimal(0)) + amount
            out.request_ids.extend(other.request_ids)
        return out


@dataclass
class SpendDelta:
    """What changed in the log since the last poll: spend added and removed (by key and minute)
    and the request ids newly delivered."""

    added: list[tuple[SpendKey, datetime, Decimal]] = field(default_factory=list)
    removed: list[tuple[SpendKey, datetime, Decimal]] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    files_read: int = 0

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.request_ids)


class LogSpend:
    """Follows the spend in an :class:`EventLog` (see the module docstring)."""

    def __init__(self, log: EventLog, clock: Clock, *, providers: Mapping[str, str] | None = None,
                 cache_path: str | Path | None = None, recent_s: float = 600.0) -> None:
        self.log = log
        self._clock = clock
        self._providers = dict(providers) if providers is not None else None
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.recent_s = recent_s
        self.files: dict[str, FileSpend] = {}
        self._dirty = False
        if self.cache_path is not None:
            self.files = _load_cache(self.cache_path)

    # -- polling -------------------------------------------------------------------------------
    def start(self) -> SpendDelta:
        """Everything: the cached files' spend, then a poll of every partition (what a ledger
        starts from). Request ids: those delivered within ``recent_s``."""
        delta = SpendDelta(request_ids=self.recent_request_ids())
        total: Rows = {}
        for spend in self.files.values():  # summed across files first: one entry per key/minute
            for bucket, amount in spend.rows.items():
                total[bucket] = total.get(bucket, Decimal(0)) + amount
        delta.added.extend(self._entries(FileSpend(("", ""), total)))
        polled = self.poll(all_partitions=True)
        delta.added.extend(polled.added)
        delta.removed.extend(polled.removed)
        delta.request_ids.extend(polled.request_ids)
        delta.files_read = polled.files_read
        return delta

    def poll(self, *, all_partitions: bool = False) -> SpendDelta:
        """Read what is new. Recent partitions (today and yesterday, UTC) every time; all of them
        with ``all_partitions`` (at start, and now and then: a late file in an old partition)."""
        delta = SpendDelta()
        cutoff = (self._clock.now() - timedelta(days=1)).date().isoformat()
        for event_type in SPEND_TYPES:
            for etype, date in self.log.partitions(event_type):
                if all_partitions or date >= cutoff:
                    self._poll_partition(etype, date, delta)
        if all_partitions:  # partitions that vanished altogether (deleted by an operator)
            live = {p for t in SPEND_TYPES for p in self.log.partitions(t)}
            for name in [n for n, f in self.files.items() if f.partition not in live]:
                self._drop(name, delta)
        return delta

    def _poll_partition(self, event_type: str, date: str, delta: SpendDelta) -> None:
        try:
            live = self.log.partition_files(event_type, date)
        except FileNotFoundError:  # compacted meanwhile: next poll
            return
        # merged files whose inputs are all known: their spend is those inputs' (no change)
        for file in live:
            if file.name not in self.files:
                merged = self._merged_from_known(file)
                if merged is not None:
                    self.files[file.name] = merged
                    self._dirty = True
        names = {f.name for f in live}
        for name in [n for n, f in self.files.items() if f.partition == (event_type, date)
                     and n not in names]:
            self._drop(name, delta)
        for file in live:
            if file.name not in self.files:
                self._add(file, delta)

    def _add(self, file: LogFile, delta: SpendDelta) -> None:
        try:
            spend = self._summarise(file)
        except FileNotFoundError:  # compacted between listing and reading: next poll
            return
        if spend is None:  # unreadable: quarantined, out of the log (the rest goes on)
            return
        delta.files_read += 1
        delta.request_ids.extend(r for r, _ in spend.request_ids)
        self.files[file.name] = spend
        self._dirty = True
        delta.added.extend(self._entries(spend))

    def _merged_from_known(self, file: LogFile) -> FileSpend | None:
        """A merged file's spend, from the files it claims when all are known (and live until
        now): those are dropped, so the net change is nothing."""
        if not is_merged_name(file.name):
            return None
        try:
            claimed = self.log.claims(file)
        except FileNotFoundError:
            return None
        if not claimed or any(name not in self.files for name in claimed):
            return None
        parts = [self.files.pop(name) for name in claimed]
        return FileSpend(parts[0].partition).merged(parts)

    def _drop(self, name: str, delta: SpendDelta) -> None:
        spend = self.files.pop(name)
        self._dirty = True
        delta.removed.extend(self._entries(spend))

    def _summarise(self, file: LogFile) -> FileSpend | None:
        """The file's spend; None if it is unreadable (the log quarantines it)."""
        columns = _COLUMNS + (["judge_model_id"] if file.event_type == "FeedbackRecorded" else [])
        table = self.log.read_file(file, columns=columns)
        if table is None:
            return None
        spend = FileSpend((file.event_type, file.date))
        horizon = (self._clock.now() - timedelta(seconds=self.recent_s)).timestamp()
        terminal = file.event_type in _TERMINAL
        for row in _rows(table):
            at = row["occurred_at"].timestamp()
            cost = row["cost_usd"]
            if terminal and row["request_id"] and at >= horizon:
                spend.request_ids.append((row["request_id"], at))
            if cost is None or cost <= 0:
                continue
            key = spend_key_of(row["model_id"], row["provider"], row["agent_type"],
                               row.get("judge_model_id"), self._providers)
            bucket = (key.provider, key.model_id, key.agent_type, int(at // 60) * 60)
            spend.rows[bucket] = spend.rows.get(bucket, Decimal(0)) + cost
        return spend

    @staticmethod
    def _entries(spend: FileSpend) -> list[tuple[SpendKey, datetime, Decimal]]:
        return [(SpendKey(p, m, a), datetime.fromtimestamp(minute, UTC), amount)
                for (p, m, a, minute), amount in spend.rows.items()]

    # -- what the ledger needs at start --------------------------------------------------------
    def recent_request_ids(self) -> list[str]:
        """Request ids the log delivered within ``recent_s`` (from every file known)."""
        horizon = (self._clock.now() - timedelta(seconds=self.recent_s)).timestamp()
        return [r for f in self.files.values() for r, at in f.request_ids if at >= horizon]

    def save(self, *, force: bool = False) -> bool:
        """Write the cache (atomically) when something changed; returns whether it wrote."""
        if self.cache_path is None or not (self._dirty or force):
            return False
        horizon = (self._clock.now() - timedelta(seconds=self.recent_s)).timestamp()
        for spend in self.files.values():  # ids older than the horizon are of no use any more
            spend.request_ids = [(r, at) for r, at in spend.request_ids if at >= horizon]
        _save_cache(self.cache_path, self.files)
        self._dirty = False
        return True


def _rows(table: pa.Table) -> Iterable[dict[str, Any]]:
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for i in range(table.num_rows):
        yield {name: values[i] for name, values in columns.items()}


# ---------------------------------------------------------------------------------------------
# the cache file


def _save_cache(path: Path, files: Mapping[str, FileSpend]) -> None:
    data = {name: {"partition": list(f.partition),
                   "rows": [[p, m, a, minute, str(v)] for (p, m, a, minute), v in f.rows.items()],
                   "request_ids": [[r, at] for r, at in f.request_ids]}
            for name, f in files.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "files": data}), "utf-8")
    os.replace(tmp, path)


def _load_cache(path: Path) -> dict[str, FileSpend]:
    """The cached summaries; an unreadable cache is ignored (the log is read again)."""
    try:
        raw = json.loads(path.read_text("utf-8"))
        files: dict[str, FileSpend] = {}
        for name, f in raw["files"].items():
            rows: Rows = defaultdict(Decimal)
            for p, m, a, minute, value in f["rows"]:
                rows[(p, m, a, int(minute))] += Decimal(value)
            files[name] = FileSpend((f["partition"][0], f["partition"][1]), dict(rows),
                                    [(r, float(at)) for r, at in f["request_ids"]])
        return files
    except (OSError, ValueError, KeyError, TypeError):
        return {}
