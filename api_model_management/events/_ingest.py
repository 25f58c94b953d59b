"""Moving spooled events into the Parquet log (the EventSink's work), and reading everything back.

A segment is ingested in three steps: read it, write its events under file names derived from the
segment (``file_stem``), delete it. A crash between any two steps is repaired by running again: the
same files are written again (whole, by rename), so nothing is lost and nothing is duplicated.
Compaction runs in the same process after ingestion, so it never merges a file whose segment still
exists.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from ..config import EventSettings
from ._log import EventLog
from ._spool import ingestible_segments, pending_events, read_segment
from ._types import Event

log = logging.getLogger(__name__)


class SpoolIngestor:
    def __init__(self, data_dir: str | Path, settings: EventSettings | None = None) -> None:
        settings = settings or EventSettings()
        self.data_dir = data_dir
        self.settings = settings
        self.log = EventLog(data_dir, fsync=settings.fsync, fsync_interval_ms=settings.fsync_interval_ms)
        self.ingested_events = 0
        self._lock = threading.Lock()

    def ingest(self) -> int:
        """Ingest every closed segment and every segment whose writer died; returns events written."""
        with self._lock:
            return self._ingest()

    def _ingest(self) -> int:
        written = 0
        for segment in ingestible_segments(self.data_dir):
            try:
                events = read_segment(segment)
            except FileNotFoundError:
                continue
            if events:
                self.log.append(events, file_stem=segment.stem)
                written += len(events)
            if self.settings.fsync != "never":
                self.log.sync()
            try:
                os.unlink(segment.path)
            except FileNotFoundError:
                pass
        self.ingested_events += written
        return written

    def compact(self) -> dict[str, int]:
        from ._compact import compact

        with self._lock:
            self._ingest()
            stats = compact(self.log, min_files=self.settings.compact_min_files)
            return dataclasses.asdict(stats)


def read_all_events(data_dir: str | Path, event_types: Iterable[str] | None = None) -> list[Event]:
    """Every event in the Parquet log plus those still in the spool, each once (by event_id)."""
    wanted = set(event_types) if event_types is not None else None
    seen: set[str] = set()
    out: list[Event] = []
    root = Path(str(data_dir))
    sources: list[list[Event]] = []
    if (root / "events").exists() or "://" in str(data_dir):
        log_ = EventLog(data_dir)
        if wanted is None:
            sources.append(log_.read())
        else:
            for event_type in sorted(wanted):
                sources.append(log_.read(event_type))
    sources.append(pending_events(data_dir))
    for events in sources:
        for event in events:
            if wanted is not None and event.event_type not in wanted:
                continue
            if event.event_id not in seen:
                seen.add(event.event_id)
                out.append(event)
    return out
