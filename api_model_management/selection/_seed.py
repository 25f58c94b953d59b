"""Live statistics at start: :class:`StatsCore` seeded from the newest outcomes in the event log.

A router (or the Selector) that starts with empty statistics scores every model's reliability
with the priors until its first push, although the log knows which models fail and which are slow.
The EWMA (``alpha`` 0.1) of an outcome ``k`` observations back carries weight ``(1 − alpha)^k``,
so the newest ``SEED_OUTCOMES_PER_MODEL`` = 100 outcomes decide all but ``0.9^100 < 3e-5`` of a
model's success rate; the fold over them is the fold over the whole log to that precision, at a
cost that does not grow with the log.

What is read (:func:`recent_outcomes`), for each model asked about:

- its newest ``per_model`` *outcomes*: ``RequestCompleted`` not served from the cache,
  ``AttemptFailed`` and ``RequestFailed`` not caused by the request (``REQUEST_FAULT_KINDS``),
  the events :meth:`StatsCore.apply` counts;
- its newest ``per_model`` successes (``RequestCompleted``, not a cache hit), so that latency (an
  EWMA over successes only) has as many observations for a model that mostly fails;
- its newest ``per_model`` quality scores (``ResponseEvaluated``);
- its newest ``per_model`` ``AttemptFailed`` caused by the request: neutral themselves, but the
  fold counts a ``RequestFailed`` only when no attempt of that request and model failed before;

walking the log's dates back from its newest, a whole date at a time, until every model has
``per_model`` outcomes, and over at most ``SEED_MAX_DAYS`` dates (a model that has not been called
for a week keeps the rest of its history unread). Within a date, files are read newest first
(by the newest ``occurred_at`` in their footer's statistics), and no further once every model
has ``per_model`` rows of each kind the rest could add, all newer than anything left. Files are
read one at a time and no more than ``per_model`` rows per model and kind are kept: memory is
bounded by the largest file; time by the files holding those newest rows (plus a footer per file
of the dates walked), not by the size of the log. The events kept are folded in log order
(``occurred_at``, then ``event_id``) by :meth:`StatsCore.from_events`.

Where the seed differs from a fold over the whole log: the counts (``count``, ``successes``,
``failures``) are those of the events read, so selection shrinks towards the prior with at most
5 / 105 of the weight; a ``RequestFailed`` whose ``AttemptFailed`` lies just before the outcomes
read counts as a failure (the fold counts a failed request once per model; here at most once more,
at the oldest end, where its weight is about ``0.9^100``).

Unreadable files are quarantined by the log's reader (``EventLog.read_file``) and left out; a log
that cannot be read at all (an I/O error, a log that keeps changing) gives empty statistics and a
WARNING: the statistics are an estimate, and start-up does not wait for them.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidInput
from ..events import Event
from ..events._log import ConcurrentModification, EventLog, LogFile, event_class
from ._stats import REQUEST_FAULT_KINDS, StatsCore

log = logging.getLogger(__name__)

#: Outcomes (and successes, and quality scores) read per model: older ones carry less than
#: ``0.9^100 < 3e-5`` of an EWMA with alpha 0.1.
SEED_OUTCOMES_PER_MODEL = 100
#: The most dates (UTC days, counted back from the log's newest) walked for them.
SEED_MAX_DAYS = 7
#: The event types read, and what each row counts as (see the module docstring).
SEED_EVENT_TYPES = ("RequestCompleted", "AttemptFailed", "RequestFailed", "ResponseEvaluated")
_READ_ATTEMPTS = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNKNOWN = 2**63  # the newest time of a file whose footer does not say: read first, never skipped

_Key = tuple[int, str]  # (occurred_at in µs, event_id): log order
#: What rows of each type can count as (``_kinds``).
_FEEDS = {"RequestCompleted": ("outcome", "success"), "AttemptFailed": ("outcome", "attempt"),
          "RequestFailed": ("outcome",), "ResponseEvaluated": ("quality",)}


@dataclass
class _Newest:
    """The newest ``size`` rows of one model and kind (a min-heap on log order)."""

    size: int
    heap: list[tuple[_Key, str, dict[str, Any]]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return len(self.heap) >= self.size

    def offer(self, key: _Key, event_type: str, row: dict[str, Any]) -> None:
        if key[1] in self.ids or (self.full and key <= self.heap[0][0]):
            return
        self.ids.add(key[1])
        item = (key, event_type, row)
        if self.full:
            dropped = heapq.heapreplace(self.heap, item)
            self.ids.discard(dropped[0][1])
        else:
            heapq.heappush(self.heap, item)


class _Tail:
    """The rows kept so far, per (model, kind)."""

    KINDS = ("outcome", "success", "quality", "attempt")

    def __init__(self, models: Collection[str], per_model: int) -> None:
        self.models = sorted(set(models))
        self.kept = {(m, k): _Newest(per_model) for m in self.models for k in self.KINDS}

    def complete(self) -> bool:
        return all(self.kept[(m, "outcome")].full for m in self.models)

    def older_than_kept(self, event_type: str, newest_us: int) -> bool:
        """Whether rows of ``event_type`` no newer than ``newest_us`` can no longer be kept:
        every model's rows of each kind they would count as are full of newer ones."""
        return all(newest.full and newest_us < newest.heap[0][0][0]
                   for m in self.models for kind in _FEEDS[event_type]
                   for newest in (self.kept[(m, kind)],))

    def take(self, event_type: str, table: pa.Table) -> None:
        for kind, rows in _kinds(event_type, table):
            self._take(kind, event_type, rows)

    def _take(self, kind: str, event_type: str, rows: pa.Table) -> None:
        """Offer each model's newest rows of ``rows`` (at most ``per_model`` of them)."""
        if rows.num_rows == 0:
            return
        order = pc.sort_indices(rows, sort_keys=[("occurred_at", "descending"),
                                                 ("event_id", "descending")])
        rows = rows.take(order)
        for model_id in self.models:
            newest = self.kept[(model_id, kind)]
            mine = rows.filter(pc.equal(rows.column("model_id"), model_id)).slice(0, newest.size)
            for row in mine.to_pylist():
                key = (_micros(row["occurred_at"]), row["event_id"])
                newest.offer(key, event_type, row)

    def events(self) -> list[Event]:
        """The rows kept, each once, as events in log order."""
        rows: dict[str, tuple[_Key, str, dict[str, Any]]] = {}
        for newest in self.kept.values():
            for item in newest.heap:
                rows[item[0][1]] = item
        ordered = sorted(rows.values(), key=lambda item: item[0])
        return [event_class(event_type).from_row(row) for _, event_type, row in ordered]


def _kinds(event_type: str, table: pa.Table) -> Iterable[tuple[str, pa.Table]]:
    """What the rows of one file count as (``StatsCore.apply``'s rule, on Arrow columns)."""
    if event_type == "ResponseEvaluated":
        yield "quality", table
        return
    if event_type == "RequestCompleted":
        served = table.filter(pc.invert(pc.fill_null(table.column("cache_hit"), False)))
        yield "outcome", served
        yield "success", served
        return
    faults = pa.array(sorted(REQUEST_FAULT_KINDS), pa.string())
    by_request = pc.is_in(table.column("error_kind"), faults)
    yield "outcome", table.filter(pc.invert(by_request))
    if event_type == "AttemptFailed":  # neutral, but its request's RequestFailed is too
        yield "attempt", table.filter(by_request)


def _micros(value: datetime) -> int:
    """``occurred_at`` of a row (a UTC datetime) in µs since the epoch, exactly."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def recent_outcomes(log_: EventLog, models: Collection[str], *,
                    per_model: int = SEED_OUTCOMES_PER_MODEL,
                    max_days: int = SEED_MAX_DAYS) -> list[Event]:
    """The events that seed the statistics of ``models`` (see the module docstring), in log
    order. Unreadable files are quarantined and left out."""
    if per_model < 1 or max_days < 1:
        raise InvalidInput("per_model and max_days must be >= 1", field="per_model")
    tail = _Tail(models, per_model)
    if not tail.models:
        return []
    by_date: dict[str, list[str]] = {}
    for event_type in SEED_EVENT_TYPES:
        for _, day in log_.partitions(event_type):
            by_date.setdefault(day, []).append(event_type)
    if not by_date:
        return []
    oldest = (date.fromisoformat(max(by_date)) - timedelta(days=max_days - 1)).isoformat()
    for day in sorted(by_date, reverse=True):
        if day < oldest:
            break
        for event_type in by_date[day]:
            _read_partition(log_, event_type, day, tail)
        if tail.complete():
            break
    return tail.events()


def _read_partition(log_: EventLog, event_type: str, day: str, tail: _Tail) -> None:
    """The live files of one partition into ``tail``, newest first (by the newest time each
    file's footer records), until the rest are older than every row they could still add; a
    file compacted away meanwhile is read in the merged file that replaced it (rows already kept
    are not kept twice)."""
    done: set[str] = set()
    for _ in range(_READ_ATTEMPTS):
        try:
            listed = log_.partition_files(event_type, day)
            # an unreadable file is quarantined here (and left out)
            files = [f for f in listed if f.name not in done and log_.readable(f)]
            newest = {f.name: _newest_micros(log_, f) for f in files}
        except FileNotFoundError:  # a file (or the partition) went: list again
            continue
        files.sort(key=lambda f: newest[f.name], reverse=True)
        try:
            for file in files:
                if tail.older_than_kept(event_type, newest[file.name]):
                    return
                _read_file(log_, file, tail)
                done.add(file.name)
            return
        except FileNotFoundError:
            continue
    raise ConcurrentModification(f"the event log at {log_.storage.uri} kept changing while "
                                 "being read", uri=log_.storage.uri)


def _newest_micros(log_: EventLog, file: LogFile) -> int:
    """The newest ``occurred_at`` a (readable) file holds, from its footer's statistics (µs);
    ``_UNKNOWN`` (newer than anything: the file is read) when they do not say."""
    metadata = log_.open_file(file).metadata
    column = next((i for i in range(metadata.num_columns)
                   if metadata.schema.column(i).path == "occurred_at"), None)
    if column is None:
        return _UNKNOWN
    newest = -_UNKNOWN
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.max, datetime):
            return _UNKNOWN
        newest = max(newest, _micros(stats.max))
    return newest


def _read_file(log_: EventLog, file: LogFile, tail: _Tail) -> None:
    table = log_.read_file(file)  # None: unreadable, quarantined
    if table is not None and table.num_rows:
        tail.take(file.event_type, table)


def seed_stats(data_dir: str | Path | EventLog, models: Collection[str], *,
               alpha: float = 0.1, per_model: int = SEED_OUTCOMES_PER_MODEL,
               max_days: int = SEED_MAX_DAYS,
               alerts: Callable[[Sequence[Event]], object] | None = None) -> StatsCore:
    """Statistics of ``models`` folded from the newest outcomes of the log under ``data_dir``
    (:func:`recent_outcomes`); empty when there is no log or it cannot be read (a WARNING, no
    data). ``alerts``: where the alert of a quarantined file goes (a process that must not write
    Parquet passes its spool's ``write``; default: the log)."""
    log_ = data_dir if isinstance(data_dir, EventLog) else EventLog(data_dir, alerts=alerts)
    try:
        history = recent_outcomes(log_, models, per_model=per_model, max_days=max_days)
    except (OSError, ConcurrentModification) as exc:
        log.warning("live statistics start empty: the event log could not be read (%s)",
                    type(exc).__name__)
        history = []
    return StatsCore.from_events(history, alpha=alpha)


