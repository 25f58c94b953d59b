"""Moving spooled events into the Parquet log (the EventSink's work), and reading everything back.

A segment is ingested in three steps: read it, write its events under file names derived from the
segment (``file_stem``), delete it. A crash between any two steps is repaired by running again: the
same files are written again (whole, by rename), so nothing is lost and nothing is duplicated.
Compaction runs in the same process after ingestion, so it never merges a file whose segment still
exists.

Events a writer could not spool (its disk full: ``_resilient.py``) may be handed here directly
(:meth:`SpoolIngestor.accept`); they are written first at each ingestion, and kept in this
process's memory (at most ``HANDED_MAX_EVENTS``) while the log's disk cannot take them either.
Writers are finalized (their lost calls recorded) only once nothing handed waits, so a call whose
terminal event is on its way is never also recorded as lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ..config import EventSettings
from ._arrow import segment_tables
from ._local import spool_root
from ._log import EventLog
from ._spool import decode_events, finished_writers, ingestible_segments, pending_events
from ._storage import local_path
from ._types import Event, RequestFailed

log = logging.getLogger(__name__)

#: The most handed events (:meth:`SpoolIngestor.accept`) kept in memory while they cannot be
#: written; beyond it a hand-off is refused and its writer keeps the events.
HANDED_MAX_EVENTS = 200_000


class SpoolIngestor:
    def __init__(self, data_dir: str | Path, settings: EventSettings | None = None, *,
                 fast_decode: bool = True) -> None:
        settings = settings or EventSettings()
        #: Decode canonical segments straight to Arrow (``_arrow.py``); False: always through
        #: the event models (the path it is checked against, and benchmarked beside).
        self.fast_decode = fast_decode
        self.data_dir = data_dir
        self.settings = settings
        #: This machine's spool (local even when the log is remote).
        self.spool_dir = spool_root(data_dir, settings.spool_dir)
        self.log = EventLog(data_dir, fsync=settings.fsync, fsync_interval_ms=settings.fsync_interval_ms)
        self.ingested_events = 0
        self._lock = threading.Lock()
        self._handed: deque[list[Event]] = deque()
        self._handed_events = 0

    @property
    def handed_events(self) -> int:
        """Events handed here that are not in the log yet (only in this process's memory)."""
        return self._handed_events

    def accept(self, events: Sequence[Event]) -> bool:
        """Take events a writer could not spool, to write at the next ingestion (first); False,
        taking nothing, when ``HANDED_MAX_EVENTS`` would be passed."""
        with self._lock:
            if self._handed_events + len(events) > HANDED_MAX_EVENTS:
                log.error("refused a hand-off of %d event(s): %d already wait in memory",
                          len(events), self._handed_events)
                return False
            if events:
                self._handed.append(list(events))
                self._handed_events += len(events)
            return True

    def ingest(self) -> int:
        """Write the handed events, ingest every closed segment and every segment whose writer
        died, then finalize the writers that are gone (their lost calls recorded); returns
        events written. ``OSError`` (a full disk) leaves what was not written where it was."""
        with self._lock:
            written = self._write_handed()
            written += self._ingest()
            return written + self._finalize()

    def write_handed(self) -> int:
        """Write the handed events now; returns events written."""
        with self._lock:
            return self._write_handed()

    def _write_handed(self) -> int:
        written = 0
        while self._handed:
            batch = self._handed[0]
            # named after the batch: a batch handed twice (its first answer lost) is one file
            self.log.append(batch, file_stem=f"{batch[0].event_id}-handed")
            if self.settings.fsync != "never":
                self.log.sync()
            self._handed.popleft()
            self._handed_events -= len(batch)
            written += len(batch)
        self.ingested_events += written
        return written

    def writer_ids(self) -> list[str]:
        """The writers with a directory in this spool (alive, or gone with something left to
        ingest or finalize): a writer not listed here is gone and fully in the log."""
        try:
            return sorted(p.name for p in self.spool_dir.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def _finalize(self) -> int:
        """For each writer that is gone with all its segments ingested: record as lost every
        request whose calls it announced (``AttemptStarted``) and that has no terminal event,
        then remove its directory. Safe to repeat after a crash (the files are named after the
        writer; a second pass finds the requests already terminated)."""
        written = 0
        for writer_dir in finished_writers(self.data_dir, self.spool_dir):
            lost = lost_requests(self.log, writer_dir.name)
            if lost:
                self.log.append(lost, file_stem=f"lost-{writer_dir.name}")
                if self.settings.fsync != "never":
                    self.log.sync()
                written += len(lost)
                log.warning("writer %s is gone with %d call(s) in flight: recorded as lost, "
                            "charged at their worst case", writer_dir.name, len(lost))
            shutil.rmtree(writer_dir, ignore_errors=True)
        self.ingested_events += written
        return written

    def _ingest(self) -> int:
        written = 0
        for segment in ingestible_segments(self.data_dir, self.spool_dir):
            try:
                data = segment.path.read_bytes()
            except FileNotFoundError:
                continue
            written += self._append_segment(data, segment.stem)
            if self.settings.fsync != "never":
                self.log.sync()
            try:
                os.unlink(segment.path)
            except FileNotFoundError:
                pass
        self.ingested_events += written
        return written

    def _append_segment(self, data: bytes, stem: str) -> int:
        """A segment's events into the log (files named after ``stem``); returns their number.
        Straight to Arrow when every line is canonical (``_arrow.py``), otherwise (a torn or
        corrupt line: skipped and logged) through the event models."""
        tables = segment_tables(data) if self.fast_decode else None
        if tables is not None:
            self.log.append_tables(tables, file_stem=stem)
            return sum(table.num_rows for table in tables.values())
        events = decode_events(data)
        if events:
            self.log.append(events, file_stem=stem)
        return len(events)

    def compact(self) -> dict[str, int]:
        from ._compact import compact

        with self._lock:
            self._ingest()
            stats = compact(self.log, min_files=self.settings.compact_min_files)
            return dataclasses.asdict(stats)


def read_all_events(data_dir: str | Path, event_types: Iterable[str] | None = None, *,
                    spool_dir: str | Path | None = None) -> list[Event]:
    """Every event in the Parquet log plus those still in this machine's spool (``spool_dir``,
    by default the log's), each once (by event_id). An unreadable log file is quarantined (its
    alert appended to the log) and the rest read."""
    wanted = set(event_types) if event_types is not None else None
    seen: set[str] = set()
    out: list[Event] = []
    local = local_path(data_dir)
    sources: list[list[Event]] = []
    if local is None or (local / "events").exists():
        log_ = EventLog(data_dir)
        if wanted is None:
            sources.append(log_.read())
        else:
            for event_type in sorted(wanted):
                sources.append(log_.read(event_type))
    sources.append(pending_events(data_dir, spool_dir))
    for events in sources:
        for event in events:
            if wanted is not None and event.event_type not in wanted:
                continue
            if event.event_id not in seen:
                seen.add(event.event_id)
                out.append(event)
    return out


_STARTED_MS = re.compile(r"-(\d{13})$")


def lost_requests(log_: EventLog, writer_id: str, now: datetime | None = None) -> list[RequestFailed]:
    """``RequestFailed(error_kind="lost")`` for each request whose calls ``writer_id`` announced
    and that has no terminal event in the log, charged the sum of its calls' worst cases (any of
    them may have been billed)."""
    now = now or datetime.now(UTC)
    started = _STARTED_MS.search(writer_id)
    first = (datetime.fromtimestamp(int(started.group(1)) / 1000, UTC) if started
             else now - timedelta(days=1)) - timedelta(days=1)
    dates = {d for _, d in log_.partitions("AttemptStarted") if d >= first.date().isoformat()}
    intents: dict[str, list[dict[str, object]]] = defaultdict(list)
    for date in sorted(dates):
        for file in log_.partition_files("AttemptStarted", date):
            table = log_.read_file(file)  # None: unreadable, quarantined
            for row in table.to_pylist() if table is not None else []:
                if row["router_id"] == writer_id and row["request_id"]:
                    intents[row["request_id"]].append(row)
    if not intents:
        return []
    ended: set[str] = set()
    for event_type in ("RequestCompleted", "RequestFailed"):
        for etype, date in log_.partitions(event_type):
            if date < first.date().isoformat():
                continue
            for file in log_.partition_files(etype, date):
                ids = log_.read_file(file, columns=["request_id"])
                if ids is not None:
                    ended.update(r for r in ids.column("request_id").to_pylist() if r in intents)
    lost = []
    for request_id, rows in sorted(intents.items()):
        if request_id in ended:
            continue
        rows.sort(key=lambda r: int(str(r["attempt"])))
        last = rows[-1]
        cost = sum((Decimal(str(r["reserved_usd"])) for r in rows), Decimal(0))
        lost.append(RequestFailed(
            request_id=request_id, task_id=last["task_id"], agent_type=last["agent_type"],
            model_id=last["model_id"], provider=last["provider"], attempts=len(rows),
            error_kind="lost", models_tried=tuple(str(r["model_id"]) for r in rows),
            cost_usd=cost, occurred_at=last["occurred_at"],  # the window of the call
        ))
    return lost
