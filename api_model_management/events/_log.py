"""The durable event log: immutable, Hive-partitioned Parquet files (design §5).

Layout::

    <data_dir>/events/event_type=<EventType>/date=<YYYY-MM-DD>/<uuid7>-<pid>.parquet

``date`` is the UTC date of ``occurred_at``. Every file is written whole under a hidden temporary
name (``.tmp-<name>.partial``: a leading dot, so pyarrow datasets skip it, and no ``.parquet``
suffix, so the DuckDB glob ``events/*/*/*.parquet`` skips it), then renamed into place. Files are
never rewritten; :func:`~api_model_management.events._compact.compact` merges small ones.

Plain DuckDB reads the log with::

    read_parquet('<data_dir>/events/*/*/*.parquet', hive_partitioning=true, union_by_name=true)

What a crash can lose
---------------------
- ``kill -9`` of the writing process: nothing that :meth:`EventLog.append` returned for (the file
  was renamed into place; its bytes are in the operating system). A kill inside ``append`` leaves
  each (type, date) group of that batch either wholly visible or invisible, plus perhaps a hidden
  temporary file (removed later by compaction).
- Power loss (or a kernel crash): with ``fsync="always"`` nothing that ``append`` returned for.
  With ``"interval"`` (default), the files written since the last fsync: at most
  ``fsync_interval_ms`` of appends, provided the owner calls :meth:`EventLog.sync_if_due` (the
  EventSink does on every tick) so that a quiet period does not leave files pending. With
  ``"never"``, whatever the operating system had not yet written back (on Linux typically up to
  30 s). A file that lost its data can reappear empty or truncated; readers then raise rather than
  guess.
- On a non-local pyarrow filesystem (``s3://``, ``mock://``) fsync does not exist; durability is
  the store's (S3 acknowledges an upload once it is stored redundantly).

Object stores (``s3://bucket/prefix``, see ``_storage.py``) have no rename. There a file is
written under its final name in one upload, which becomes visible only when it completes, whole:
the same guarantee as temp + rename. Listing the whole log is one paged request
(:meth:`EventLog.iter_files`) rather than one per partition directory.

Unreadable files
----------------
A file that cannot be read as its event type (not Parquet, a truncated or garbled footer or page,
another schema, rows that do not validate) is *quarantined* by whichever reader meets it
(:meth:`EventLog.quarantine`): moved aside to ``<data_dir>/quarantine/<event_type>/<date>/<name>``
(never deleted), named in a WARNING with the error class, and reported as a ``PerformanceAlert``
(``kind="log_file_quarantined"``) to the log's ``alerts`` sink; the reader goes on with the other
files. A file that vanished (compacted meanwhile) is not corrupt: readers list again.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import date as Date
from pathlib import Path
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import AMMError, InvalidInput
from ._storage import Storage
from ._types import EVENT_TYPES, Event, PerformanceAlert, uuid7

logger = logging.getLogger(__name__)
T = TypeVar("T")

FsyncPolicy = Literal["always", "interval", "never"]

EVENTS_DIR = "events"
PARQUET_SUFFIX = ".parquet"
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".partial"
#: Marks a file written by compaction; its Parquet metadata lists the files it replaced.
MERGED_MARK = ".c-"
COMPACTED_FROM_KEY = b"amm.compacted_from"
_READ_ATTEMPTS = 8
#: Where unreadable files are moved: ``<data_dir>/quarantine/<event_type>/<date>/<name>``.
QUARANTINE_DIR = "quarantine"
#: The ``PerformanceAlert.kind`` that reports a quarantined file.
QUARANTINE_ALERT = "log_file_quarantined"


def is_visible_name(name: str) -> bool:
    """A finished data file (what the DuckDB glob and pyarrow datasets read)."""
    return name.endswith(PARQUET_SUFFIX) and not name.startswith((".", "_"))


def is_merged_name(name: str) -> bool:
    return is_visible_name(name) and MERGED_MARK in name


def temp_name(final_name: str) -> str:
    return f"{TEMP_PREFIX}{final_name}{TEMP_SUFFIX}"


# ------------------------------------------------------------------------------------------------
# events -> Arrow, column by column


def _plain(value: Any) -> Any:
    """Nested values as Arrow takes them: models → dicts, tuples → lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _is_nested(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_struct(arrow_type)


@functools.cache
def _layout(cls: type[Event]) -> tuple[pa.Schema, tuple[str, ...]]:
    """A type's schema and the names of its non-constant columns (cached: schemas are fixed)."""
    schema = cls.arrow_schema()
    return schema, tuple(n for n in schema.names if n not in ("event_type", "schema_version"))


def events_to_table(events: Sequence[Event], cls: type[Event]) -> pa.Table:
    """Events of one type as a table with the type's explicit schema.

    Built column-wise from the models' field values (one C-level transpose of ``vars``): several
    times faster than ``to_row`` per event; the round-trip tests hold it equal to ``to_row``."""
    schema, names = _layout(cls)
    n = len(events)
    rows = list(map(operator.itemgetter(*names), map(vars, events)))
    columns = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    arrays = []
    for field in schema:
        if field.name == "event_type":
            arrays.append(pa.array([cls.event_type] * n, field.type))
        elif field.name == "schema_version":
            arrays.append(pa.array([cls.schema_version] * n, field.type))
        else:
            values: Sequence[Any] = columns.get(field.name, ())
            if _is_nested(field.type):
                values = [_plain(v) for v in values]
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def table_to_events(table: pa.Table, cls: type[Event]) -> list[Event]:
    return [cls.from_row(row) for row in table.to_pylist()]


def partition_date(event: Event) -> str:
    return event.occurred_at.astimezone(UTC).date().isoformat()


# ------------------------------------------------------------------------------------------------
# names


class _Names:
    """Unique file names that sort by time: a per-process monotonic UUIDv7 plus the pid."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        value = uuid.UUID(uuid7()).int
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return f"{uuid.UUID(int=value)}-{os.getpid()}"


@dataclass(frozen=True, order=True)
class LogFile:
    """One visible data file of the log."""

    event_type: str
    date: str
    name: str
    path: str


@dataclass(frozen=True)
class Quarantined:
    """A file taken out of the log as unreadable: where it was, where it went (``None``: it could
    not be moved, so it stays in place and readers skip it) and the error class that showed it."""

    file: LogFile
    moved_to: str | None
    error: str

    def describe(self) -> str:
        where = f"moved to {self.moved_to}" if self.moved_to else "could not be moved; skipped"
        return f"quarantined {self.file.path} ({self.error}): {where}"

    def alert(self, now: datetime) -> PerformanceAlert:
        return PerformanceAlert(kind=QUARANTINE_ALERT, metric="log_files", value=1.0,
                                threshold=0.0, message=self.describe(), occurred_at=now)


def _partition_value(dirname: str, key: str) -> str | None:
    prefix = f"{key}="
    return dirname[len(prefix):] if dirname.startswith(prefix) else None


def schema_compatible(found: pa.Schema, expected: pa.Schema) -> bool:
    """Whether a file written with schema ``found`` can be read as ``expected``: every column it
    has is a column of the type with the same Arrow type, and every column it lacks is nullable
    (a field added to the event type since the file was written: read as null). Metadata is not
    compared. Anything else (a changed type, an unknown column) is another schema."""
    for field in found:
        if expected.get_field_index(field.name) < 0:
            return False
        if not field.type.equals(expected.field(field.name).type):
            return False
    return all(field.nullable or field.name in found.names for field in expected)


def claimed_names(pf: pq.ParquetFile) -> list[str]:
    """The file names a merged file replaced (empty for an ordinary file)."""
    metadata = pf.schema_arrow.metadata or {}
    raw = metadata.get(COMPACTED_FROM_KEY)
    return json.loads(raw) if raw else []


# ------------------------------------------------------------------------------------------------
# the log


class EventLog:
    """Append-only, Hive-partitioned Parquet event log under ``data_dir`` (a path or a pyarrow
    filesystem URI such as ``file:///srv/amm``, ``s3://bucket/prefix`` or ``mock:///``).

    ``fsync``: ``"always"`` fsyncs every file and its directory before ``append`` returns;
    ``"interval"`` at most every ``fsync_interval_ms`` (covering every file written since the
    previous fsync); ``"never"`` leaves it to the operating system. Safe to share between threads
    of one process; any number of processes may append to the same directory.

    ``alerts``: where the alert of a quarantined file goes (a process that must not write Parquet
    passes its spool's ``write``); by default it is appended to this log. ``quarantined``: the
    files this instance took out of the log, for callers to report.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        fsync: FsyncPolicy = "interval",
        fsync_interval_ms: int = 200,
        compression: str = "zstd",
        clock: Clock = SYSTEM_CLOCK,
        alerts: Callable[[Sequence[Event]], object] | None = None,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise InvalidInput(f"unknown fsync policy {fsync!r}", fsync=fsync)
        if fsync_interval_ms < 0:
            raise InvalidInput("fsync_interval_ms must be >= 0", fsync_interval_ms=fsync_interval_ms)
        self.storage = Storage(data_dir)
        self.fsync = fsync
        self.fsync_interval_ms = fsync_interval_ms
        self.compression = compression
        self._clock = clock
        self._names = _Names()
        self._lock = threading.Lock()
        self._known_dirs: set[str] = set()
        self._pending_files: list[str] = []
        self._pending_dirs: set[str] = set()
        self._last_sync = clock.monotonic()
        self._alerts = alerts if alerts is not None else self._append_alerts
        self.quarantined: list[Quarantined] = []
        self._bad: dict[str, Quarantined] = {}  # by path: files that could not be moved
        self._sound: set[str] = set()  # names whose footer was checked (names are never reused)
        self._claims_by_path: dict[str, tuple[str, ...]] = {}

    @property
    def events_root(self) -> str:
        return self.storage.join(EVENTS_DIR)

    def partition_dir(self, event_type: str, date: str) -> str:
        return self.storage.join(EVENTS_DIR, f"event_type={event_type}", f"date={date}")

    # -- writing ---------------------------------------------------------------------------------
    def append(self, events: Sequence[Event], *, file_stem: str | None = None) -> list[str]:
        """Write ``events``: one whole file per (event type, UTC date), each temp + rename.

        Returns the paths written. ``file_stem`` names the files ``<file_stem>.parquet`` instead of
        a fresh unique name, so that re-writing the same batch after a crash replaces the same files
        rather than duplicating events (it should start with a UUIDv7 so names sort by time). If
        any group fails, the groups already renamed are removed again and the error is raised: a
        failed ``append`` leaves nothing visible and may be retried.
        """
        groups = self._group(events)
        if not groups:
            return []
        with self._lock:
            return self._append_groups(groups, file_stem)

    def append_tables(self, tables: Mapping[tuple[type[Event], str], pa.Table], *,
                      file_stem: str | None = None) -> list[str]:
        """Write tables already built, one per (event type, UTC date) (``_arrow.segment_tables``:
        each with exactly its type's schema, its rows all of that date), as :meth:`append` writes
        the events they hold: the same files, names and guarantees."""
        groups = {}
        for (cls, date), table in tables.items():
            if not table.schema.equals(cls.arrow_schema(), check_metadata=True):
                raise InvalidInput(f"a table that is not of the {cls.event_type} schema",
                                   event_type=cls.event_type)
            if table.num_rows:
                groups[(cls, date)] = table
        if not groups:
            return []
        with self._lock:
            return self._append_groups(groups, file_stem)

    def _group(self, events: Sequence[Event]) -> dict[tuple[type[Event], str], list[Event]]:
        by_day: dict[tuple[type[Event], Date], list[Event]] = {}
        for event in events:  # occurred_at is UTC (the Event validator converts it)
            key = (type(event), event.occurred_at.date())
            group = by_day.get(key)
            if group is None:
                by_day[key] = group = []
            group.append(event)
        return {(cls, day.isoformat()): group for (cls, day), group in by_day.items()}

    def _append_groups(self, groups: dict, file_stem: str | None) -> list[str]:
        sync_now = self._sync_due()
        staged: list[tuple[str, str]] = []
        done: list[str] = []
        try:
            for (cls, date), group in groups.items():
                directory = self.partition_dir(cls.event_type, date)
                self._ensure_dir(directory)
                name = f"{file_stem or self._names.next()}{PARQUET_SUFFIX}"
                final = f"{directory}/{name}"
                if self.storage.atomic_upload:  # an object store: the upload is the publish
                    done.append(final)
                    self.storage.write_new(final, self._serialize(group, cls), fsync=False)
                    continue
                tmp = f"{directory}/{temp_name(name)}"
                staged.append((tmp, final))
                self.storage.write_new(tmp, self._serialize(group, cls), fsync=sync_now)
            for tmp, final in staged:
                self.storage.rename(tmp, final)
                done.append(final)
        except BaseException:
            self._roll_back(staged, done)
            raise
        dirs = {final.rsplit("/", 1)[0] for final in done}
        if sync_now:
            self._sync_pending(extra_dirs=dirs)
        elif self.fsync == "interval":
            self._pending_files.extend(done)
            self._pending_dirs.update(dirs)
        return done

    def _roll_back(self, staged: list[tuple[str, str]], done: list[str]) -> None:
        for tmp, _ in staged:
            self.storage.delete(tmp)
        for final in done:
            self.storage.delete(final)

    def _serialize(self, events: Sequence[Event] | pa.Table, cls: type[Event]) -> pa.Buffer:
        table = events if isinstance(events, pa.Table) else events_to_table(events, cls)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=self.compression)
        return sink.getvalue()

    def _ensure_dir(self, directory: str) -> None:
        if directory in self._known_dirs:
            return
        if not self.storage.local:  # nothing to fsync: no need to know what was created
            self.storage.makedirs(directory)
            self._known_dirs.add(directory)
            return
        parent = directory.rsplit("/", 1)[0]
        created = [p for p in (parent, directory) if not self.storage.exists(p)]
        self.storage.makedirs(directory)
        self._known_dirs.add(directory)
        # a new directory's entry lives in its parent: make the parent durable too
        for path in created:
            self._pending_dirs.add(path.rsplit("/", 1)[0])

    # -- fsync -----------------------------------------------------------------------------------
    def _sync_due(self) -> bool:
        if self.fsync == "always":
            return True
        if self.fsync == "never":
            return False
        elapsed_ms = (self._clock.monotonic() - self._last_sync) * 1000.0
        return elapsed_ms >= self.fsync_interval_ms - 1e-3  # float clock sums land a hair short

    def _sync_pending(self, extra_dirs: AbstractSet[str] = frozenset()) -> None:
        for path in self._pending_files:
            self.storage.fsync_file(path)
        for directory in sorted(self._pending_dirs | set(extra_dirs), key=len, reverse=True):
            self.storage.fsync_dir(directory)
        self._pending_files.clear()
        self._pending_dirs.clear()
        self._last_sync = self._clock.monotonic()

    @property
    def unsynced_files(self) -> int:
        """Files renamed into place but not yet fsynced (``"interval"`` only)."""
        return len(self._pending_files)

    def sync(self) -> None:
        """Fsync every file and directory written since the last fsync (no-op for ``"never"``)."""
        if self.fsync == "never":
            return
        with self._lock:
            self._sync_pending()

    def sync_if_due(self) -> bool:
        """Fsync pending files if ``fsync_interval_ms`` has passed; True if it did."""
        with self._lock:
            if not (self._pending_files or self._pending_dirs) or not self._sync_due():
                return False
            self._sync_pending()
            return True

    close = sync

    # -- listing ---------------------------------------------------------------------------------
    def event_types(self) -> list[str]:
        """The event types that have a partition directory, sorted."""
        out = []
        for name, is_dir, _ in self.storage.list_dir(self.events_root):
            value = _partition_value(name, "event_type") if is_dir else None
            if value:
                out.append(value)
        return sorted(out)

    def partitions(self, event_type: str | None = None) -> list[tuple[str, str]]:
        """``(event_type, date)`` of every partition directory, sorted."""
        types = self.event_types() if event_type is None else [event_type]
        out = []
        for etype in types:
            type_dir = self.storage.join(EVENTS_DIR, f"event_type={etype}")
            for name, is_dir, _ in self.storage.list_dir(type_dir):
                date = _partition_value(name, "date") if is_dir else None
                if date:
                    out.append((etype, date))
        return sorted(out)

    def partition_files(self, event_type: str, date: str) -> list[LogFile]:
        """The partition's live files: visible files minus those a merged file replaced."""
        directory = self.partition_dir(event_type, date)
        names = [n for n, is_dir, _ in self.storage.list_dir(directory)
                 if not is_dir and is_visible_name(n)]
        return self._live(event_type, date, names)

    def _live(self, event_type: str, date: str, names: Sequence[str]) -> list[LogFile]:
        directory = self.partition_dir(event_type, date)
        files = [LogFile(event_type, date, n, f"{directory}/{n}") for n in sorted(names)]
        claimed: set[str] = set()
        for file in files:
            if is_merged_name(file.name):
                claims = self.claims(file)
                claimed.update(claims if claims is not None else [file.name])
        return [f for f in files if f.name not in claimed]

    def claims(self, file: LogFile) -> list[str] | None:
        """The names a merged file replaced; None if its footer is unreadable (it is quarantined).
        Remembered by path: a merged file's name is a hash of what it claims, and files are never
        rewritten, so its footer is read once per ``EventLog`` (one request saved per merged file
        and listing on an object store)."""
        known = self._claims_by_path.get(file.path)
        if known is not None:
            return list(known)
        found = self._guarded(file, self._claims)
        if found is not None:
            self._claims_by_path[file.path] = tuple(found)
        return found

    def _claims(self, file: LogFile) -> list[str]:
        return claimed_names(self.storage.parquet_file(file.path))

    def iter_files(self, event_type: str | None = None) -> Iterator[LogFile]:
        """Live data files, by type, date and name (so by time within a partition). On an object
        store the whole tree (or the type's) is listed in one paged request."""
        if self.storage.local:
            for etype, date in self.partitions(event_type):
                yield from self.partition_files(etype, date)
            return
        for (etype, date), names in sorted(self._tree(event_type).items()):
            yield from self._live(etype, date, names)

    def _tree(self, event_type: str | None) -> dict[tuple[str, str], list[str]]:
        """Visible file names by partition, from one recursive listing."""
        root = self.events_root if event_type is None else \
            self.storage.join(EVENTS_DIR, f"event_type={event_type}")
        out: dict[tuple[str, str], list[str]] = {}
        for relative, _, _ in self.storage.list_tree(root):
            parts = relative.split("/")
            if event_type is not None:
                parts = [f"event_type={event_type}", *parts]
            if len(parts) != 3 or not is_visible_name(parts[2]):
                continue
            etype = _partition_value(parts[0], "event_type")
            date = _partition_value(parts[1], "date")
            if etype and date:
                out.setdefault((etype, date), []).append(parts[2])
        return out

    def snapshot(self, event_type: str | None = None) -> list[LogFile]:
        """A consistent list of live files: listed twice until two listings agree (a compaction
        running meanwhile can otherwise make one listing miss both a merged file and a source)."""
        previous = None
        for _ in range(_READ_ATTEMPTS):
            try:
                current = list(self.iter_files(event_type))
            except FileNotFoundError:  # a merged file vanished while its footer was read
                previous = None
                continue
            if current == previous:
                return current
            previous = current
        raise _changing(self.storage.uri)

    # -- reading ---------------------------------------------------------------------------------
    def read_table(self, event_type: str) -> pa.Table:
        """All events of one type as one table with the type's schema (no partition columns)."""
        schema = event_class(event_type).arrow_schema()
        tables = self._read_each(event_type, self.read_file)
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def read(self, event_type: str | None = None) -> list[Event]:
        """Events (of one type, or all), ordered by ``occurred_at`` then ``event_id``."""
        types = self.event_types() if event_type is None else [event_type]
        events: list[Event] = []
        for etype in types:
            event_class(etype)  # an unknown type is an error, not an empty read
            for part in self._read_each(etype, self.read_events):
                events.extend(part)
        events.sort(key=lambda e: (e.occurred_at, e.event_id))
        return events

    def _read_each(self, event_type: str, read: Callable[[LogFile], T | None]) -> list[T]:
        """``read`` of each live file of one type, from one consistent listing (taken again when a
        file vanished meanwhile); unreadable files are quarantined and left out."""
        for _ in range(_READ_ATTEMPTS):
            files = self.snapshot(event_type)
            try:
                parts = [read(f) for f in files]
            except FileNotFoundError:  # compacted away between listing and reading: list again
                continue
            return [p for p in parts if p is not None]
        raise _changing(self.storage.uri)

    # -- one file: checked, and quarantined when unreadable ----------------------------------------
    def read_file(self, file: LogFile, columns: Sequence[str] | None = None) -> pa.Table | None:
        """A live file's rows (only ``columns``, if given) with its type's schema metadata; None
        if the file is unreadable (it is then quarantined). ``FileNotFoundError`` if it vanished."""
        return self._guarded(file, functools.partial(self._read_checked, columns=columns))

    def read_events(self, file: LogFile) -> list[Event] | None:
        """A live file's events; None if the file is unreadable or a row does not validate (it is
        then quarantined). ``FileNotFoundError`` if it vanished."""
        return self._guarded(file, self._events_checked)

    def readable(self, file: LogFile) -> bool:
        """Whether the file's footer reads, with its type's schema (checked once per name); an
        unreadable file is quarantined. ``FileNotFoundError`` if it vanished."""
        if file.name not in self._sound:
            if self._guarded(file, self.open_file) is None:
                return False
            self._sound.add(file.name)
        return True

    def open_file(self, file: LogFile) -> pq.ParquetFile:
        """The file's footer, checked against its event type's schema (raises :class:`CorruptLogFile`
        on another schema; pyarrow's error on a footer that does not parse)."""
        pf = self.storage.parquet_file(file.path)
        cls = EVENT_TYPES.get(file.event_type)
        if cls is not None and not schema_compatible(pf.schema_arrow, cls.arrow_schema()):
            raise CorruptLogFile(f"{file.path} does not have the {file.event_type} schema",
                                 path=file.path, event_type=file.event_type)
        return pf

    def _read_checked(self, file: LogFile, columns: Sequence[str] | None = None) -> pa.Table:
        pf = self.open_file(file)
        schema = event_class(file.event_type).arrow_schema()
        present = set(pf.schema_arrow.names)
        wanted = list(columns) if columns is not None else list(schema.names)
        table = pf.read(columns=[c for c in wanted if c in present])
        for name in wanted:  # a column the file predates (a field added since): all null
            if name not in present:
                field = schema.field(name)
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        table = table.select(wanted)
        if columns is None:
            table = table.cast(schema)
        return table.replace_schema_metadata(schema.metadata)

    def _events_checked(self, file: LogFile) -> list[Event]:
        return table_to_events(self._read_checked(file), event_class(file.event_type))

    def _guarded(self, file: LogFile, read: Callable[[LogFile], T]) -> T | None:
        """``read(file)``, or None when the error shows the file's bytes are bad (the file is then
        quarantined). Errors of reading itself (vanished, permission, a disk error) are raised."""
        try:
            return read(file)
        except _CORRUPT as exc:
            self.quarantine(file, exc)
        except OSError as exc:  # pyarrow reports a garbled footer or page with no errno
            if isinstance(exc, FileNotFoundError) or exc.errno is not None:
                raise
            self.quarantine(file, exc)
        return None

    def quarantine(self, file: LogFile, error: BaseException) -> Quarantined | None:
        """Take an unreadable file out of the log: move it to
        ``<data_dir>/quarantine/<event_type>/<date>/<name>`` (never deleted), log a WARNING naming
        it and the error class (never its contents), send a ``PerformanceAlert``
        (``kind="log_file_quarantined"``) to ``alerts``. None if the file was gone already
        (another reader moved it, or compaction retired it): no alert then."""
        if file.path in self._bad:
            return self._bad[file.path]
        if not self.storage.exists(file.path):
            return None
        target_dir = self.storage.join(QUARANTINE_DIR, file.event_type, file.date)
        moved_to: str | None
        try:
            self.storage.makedirs(target_dir)
            moved_to = self.storage.move_aside(file.path, f"{target_dir}/{file.name}")
        except FileNotFoundError:
            return None
        except OSError as exc:  # a read-only disk: left in place, skipped by this reader
            logger.warning("cannot move %s aside (%s)", file.path, type(exc).__name__)
            moved_to = None
        record = Quarantined(file, moved_to, type(error).__name__)
        if moved_to is None:
            self._bad[file.path] = record
        logger.warning("event log: %s", record.describe())
        self.quarantined.append(record)
        self._alerts([record.alert(self._clock.now())])
        return record

    def _append_alerts(self, alerts: Sequence[Event]) -> None:
        try:
            self.append(alerts)
        except OSError as exc:  # a read-only disk: the WARNING above is all there is
            logger.warning("cannot record the alert of a quarantined file (%s)", type(exc).__name__)


class CorruptLogFile(AMMError):
    """A log file that cannot be read as its event type (here: it has another schema)."""

    error_kind = "corrupt_log_file"


#: Errors that show a file's bytes are bad (besides pyarrow's bare OSError): not Parquet or a
#: truncated footer (ArrowInvalid), types or encodings this reader cannot take, another schema,
#: rows that do not validate.
_CORRUPT = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, CorruptLogFile,
            ValidationError)


class ConcurrentModification(AMMError):
    """The log kept changing under a reader (a compaction loop racing it); try again."""

    error_kind = "concurrent_modification"


def _changing(uri: str) -> ConcurrentModification:
    return ConcurrentModification(f"the event log at {uri} kept changing while being read", uri=uri)


def event_class(event_type: str) -> type[Event]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise InvalidInput(f"unknown event type {event_type!r}", event_type=event_type) from None
