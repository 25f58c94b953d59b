"""Following the event log: the events of files not read before, as they appear.

The log's files are immutable, and a merged file (compaction) names the files it replaces; so a
follower keeps the names it has read, and on each poll reads only new files. A merged file whose
replaced files were all read is taken as read without reading it; one that replaces a file never
read (the follower was behind compaction) is read whole, and those of its events that came from
files already read are delivered again: folds that follow the log must be idempotent per event
(as ``selection.QualityFold`` is per request and model) or tolerate it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from ._log import EventLog, LogFile, is_merged_name
from ._types import Event


class LogFollower:
    """New events of ``event_types`` on each :meth:`poll` (all of them on the first)."""

    def __init__(self, log: EventLog, event_types: Sequence[str], *,
                 recent_days: int = 1) -> None:
        self.log = log
        self.event_types = tuple(event_types)
        self.recent_days = recent_days
        self.seen: set[str] = set()
        self._started = False

    def poll(self, *, all_partitions: bool = False) -> list[Event]:
        """Events of files not read before, in file order. The first poll reads every partition;
        later ones the last ``recent_days`` days (UTC) unless ``all_partitions``."""
        scan_all = all_partitions or not self._started
        self._started = True
        cutoff = (datetime.now(UTC) - timedelta(days=self.recent_days)).date().isoformat()
        events: list[Event] = []
        for event_type in self.event_types:
            for etype, date in self.log.partitions(event_type):
                if scan_all or date >= cutoff:
                    events.extend(self._poll_partition(etype, date))
        return events

    def _poll_partition(self, event_type: str, date: str) -> Iterable[Event]:
        try:
            live = self.log.partition_files(event_type, date)
        except FileNotFoundError:
            return []
        out: list[Event] = []
        for file in live:
            if file.name in self.seen:
                continue
            if self._merged_from_seen(file):
                self.seen.add(file.name)
                continue
            try:
                events = self.log.read_events(file)
            except FileNotFoundError:  # compacted meanwhile: the merged file comes next poll
                continue
            self.seen.add(file.name)
            if events:
                out.extend(events)
        return out

    def _merged_from_seen(self, file: LogFile) -> bool:
        if not is_merged_name(file.name):
            return False
        try:
            claimed = self.log.claims(file)
        except FileNotFoundError:
            return False
        if not claimed or any(name not in self.seen for name in claimed):
            return False
        self.seen.difference_update(claimed)
        return True
