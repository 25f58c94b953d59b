"""Compaction: merge each partition's small files into one, atomically and idempotently.

The approach (no step needs several files to change at once):

1. **Recover.** Any visible file that a merged file *claims* (lists in its Parquet metadata key
   ``amm.compacted_from``) is a leftover of an interrupted compaction: its events are already in the
   merged file, so it is deleted. Hidden temporary files of a crashed compaction, and append temps
   older than ``stale_temp_s``, are deleted too.
2. **Merge.** The partition's small live files (at least ``min_files`` of them) are read and
   written, in name (time) order, to a temp file, with the list of their names in its metadata; the
   temp is fsynced. An input that cannot be read is quarantined (``EventLog.quarantine``) and the
   others are merged without it.
3. **Publish.** The temp is renamed to ``<first input's base>.c-<hash of the input names>.parquet``
   (deterministic: a re-run over the same inputs writes the same name) and the directory fsynced.
   On an object store (``s3://``), which has no rename, steps 2 and 3 are one: the merged file is
   uploaded under its final name, and an upload becomes visible only when it completes, whole.
   The merged file is itself the marker that supersedes its inputs: the names it replaces are in
   its own footer, so the data and the claim appear in the same instant.
4. **Retire.** The inputs are deleted one by one, then the directory fsynced. On a remote log
   (``s3://``) they are left for ``retire_grace_s`` (``REMOTE_RETIRE_GRACE_S``, 5 minutes) and
   deleted by the first run after that (step 1): readers ignore them from the moment the merged
   file exists, and a query over a snapshot taken just before that instant (a DuckDB view lists
   its files at ``connect``) can still read them instead of failing on a vanished file.

What readers see, at any crash point:

- :class:`~api_model_management.events._log.EventLog` readers drop every file a merged file claims,
  so they never see a duplicate or miss an event: before step 3 the inputs alone hold the events,
  after it the merged file does and the inputs are ignored.
- A plain DuckDB glob reader does not know about claims. While a compaction is between steps 3
  and 4 (a few milliseconds per partition), or if one crashed there, it sees the merged file *and*
  the remaining inputs, i.e. those events twice; a query that listed a file just before step 4
  deleted it fails with a "file not found" error and can be re-run. The next ``compact`` run (or
  ``amm compact``) finishes step 4 first, after which the glob is exact again. Readers that need
  exactness use :func:`~api_model_management.projections._duckdb.connect`, whose views list the
  live files only.

One compaction at a time per log (two at once over overlapping inputs would publish two merged
files that do not claim each other: duplicates). On a local disk an ``flock`` on
``events/.compact.lock`` enforces it; on other filesystems a lease object under ``locks/compact/``
(``_lease.py``: upload, list, hold only if alone; renewed before each partition). Either way a
second compaction gets :class:`CompactionInProgress`.
Appenders need no coordination: compaction only reads and deletes files that existed when it
listed the partition, and never touches temp files younger than ``stale_temp_s``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import AMMError
from ._lease import StoreLease, holding
from ._log import (
    COMPACTED_FROM_KEY,
    EVENTS_DIR,
    MERGED_MARK,
    PARQUET_SUFFIX,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    EventLog,
    LogFile,
    event_class,
    is_merged_name,
    is_visible_name,
    temp_name,
)

#: Files at least this big are left alone (they are not "small").
DEFAULT_TARGET_FILE_BYTES = 256 * 1024 * 1024
#: How long the files a merged file replaced stay on a remote log (see the module docstring).
REMOTE_RETIRE_GRACE_S = 300.0
COMPACT_TEMP_PREFIX = f"{TEMP_PREFIX}compact-"


class CompactionInProgress(AMMError):
    """Another compaction holds this log's lock."""

    error_kind = "compaction_in_progress"


@dataclass(frozen=True)
class CompactStats:
    """What one :func:`compact` run did."""

    partitions: int = 0
    partitions_compacted: int = 0
    files_merged: int = 0
    files_written: int = 0
    events_merged: int = 0
    leftovers_removed: int = 0
    temps_removed: int = 0

    def __add__(self, other: CompactStats) -> CompactStats:
        return CompactStats(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))


def _fields(stats: CompactStats) -> tuple[int, ...]:
    return tuple(stats.__dict__.values())


#: Called with a step name before each change to the filesystem; tests raise in it to crash there.
StepHook = Callable[[str], None]
#: Called after each partition with (partitions done, partitions in total).
ProgressHook = Callable[[int, int], None]


def compact(
    log_or_data_dir: EventLog | str | Path,
    *,
    min_files: int = 2,
    target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES,
    stale_temp_s: float = 3600.0,
    retire_grace_s: float | None = None,
    progress: ProgressHook | None = None,
    _on_step: StepHook | None = None,
) -> CompactStats:
    """Merge, in every partition with at least ``min_files`` small live files, those files into one.

    ``retire_grace_s``: how long the files a merged file replaced stay after it is published
    (deleted by the first run after that); None: 0 on a local disk, ``REMOTE_RETIRE_GRACE_S``
    on any other filesystem. Safe to kill at any point and run again: see the module docstring."""
    if min_files < 2:
        raise ValueError("min_files must be at least 2")
    log = log_or_data_dir if isinstance(log_or_data_dir, EventLog) else EventLog(log_or_data_dir)
    if retire_grace_s is None:
        retire_grace_s = 0.0 if log.storage.local else REMOTE_RETIRE_GRACE_S
    if retire_grace_s < 0:
        raise ValueError("retire_grace_s must be >= 0")
    job = _Compaction(log, min_files, target_file_bytes, stale_temp_s, retire_grace_s,
                      _on_step or _no_hook)
    with _lock(log) as renew:
        partitions = log.partitions()
        total = CompactStats(partitions=len(partitions))
        for done, (event_type, date) in enumerate(partitions, start=1):
            renew()
            total = total + job.partition(event_type, date)
            if progress is not None:
                progress(done, len(partitions))
    return total


def _no_hook(step: str) -> None:
    return None


@contextlib.contextmanager
def _lock(log: EventLog) -> Iterator[Callable[[], None]]:
    """One compaction at a time; yields what to call before each partition (renewing a store's
    lease, which raises :class:`~._lease.LeaseLost` if another compaction took it over)."""
    if not log.storage.local:
        lease = StoreLease(log.storage, "compact")
        with holding(lease) as held:
            if not held:
                raise CompactionInProgress(f"another compaction is running on {log.storage.uri}")
            yield lease.renew
        return
    os.makedirs(log.events_root, exist_ok=True)
    fd = os.open(f"{log.events_root}/.compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionInProgress(f"another compaction is running on {log.storage.uri}") from None
        yield _no_renewal
    finally:
        os.close(fd)


def _no_renewal() -> None:
    return None


class _Compaction:
    def __init__(self, log: EventLog, min_files: int, target_file_bytes: int,
                 stale_temp_s: float, retire_grace_s: float, on_step: StepHook) -> None:
        self.log = log
        self.storage = log.storage
        self.min_files = min_files
        self.target_file_bytes = target_file_bytes
        self.stale_temp_s = stale_temp_s
        self.retire_grace_s = retire_grace_s
        self.step = on_step

    def partition(self, event_type: str, date: str) -> CompactStats:
        directory = self.log.partition_dir(event_type, date)
        leftovers, temps = self._recover(event_type, date)
        nothing = CompactStats(leftovers_removed=leftovers, temps_removed=temps)
        inputs = self._small_files(event_type, date)
        if len(inputs) < self.min_files:
            return nothing
        # an unreadable input is quarantined (by read_file) and the rest merged without it
        tables = {f.name: t for f in inputs if (t := self.log.read_file(f)) is not None}
        if len(tables) < self.min_files:
            return nothing
        events = self._merge(directory, event_type, tables)
        return CompactStats(partitions_compacted=1, files_merged=len(tables), files_written=1,
                            events_merged=events, leftovers_removed=leftovers, temps_removed=temps)

    # -- 1. recover ------------------------------------------------------------------------------
    def _recover(self, event_type: str, date: str) -> tuple[int, int]:
        directory = self.log.partition_dir(event_type, date)
        entries = [(n, m) for n, is_dir, m in self.storage.list_dir(directory) if not is_dir]
        present = {n for n, _ in entries if is_visible_name(n)}
        claims: dict[str, set[str]] = {}
        for name in sorted(n for n in present if is_merged_name(n)):
            found = self.log.claims(LogFile(event_type, date, name, f"{directory}/{name}"))
            if found is None:  # an unreadable merged file: quarantined
                present.discard(name)
            else:
                claims[name] = set(found)
        pending = self._retirable(present, claims, dict(entries))
        removed = 0
        while pending:  # a claimed merged file goes only after the files it claims
            ready = [n for n in pending if not claims.get(n, set()) & present]
            if not ready:  # what is left waits for files still in their grace period
                break
            for name in ready:
                self.step("recover-delete")
                self.storage.delete(f"{directory}/{name}")
                present.discard(name)
                removed += 1
            pending = [n for n in pending if n in present]
        temps = [n for n, mtime in entries if self._stale_temp(n, mtime)]
        for name in temps:
            self.step("temp-delete")
            self.storage.delete(f"{directory}/{name}")
        if removed or temps:
            self.storage.fsync_dir(directory)
        return removed, len(temps)

    def _retirable(self, present: set[str], claims: dict[str, set[str]],
                   mtimes: dict[str, float]) -> list[str]:
        """Present files claimed by a merged file published at least ``retire_grace_s`` ago."""
        now = time.time()
        old_claims: set[str] = set()
        for merged, claimed in claims.items():
            if now - mtimes.get(merged, now) >= self.retire_grace_s:
                old_claims |= claimed
        return sorted(present & old_claims)

    def _stale_temp(self, name: str, mtime: float) -> bool:
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            return False
        # our own temps are stale at once: we hold the lock, so no compaction is writing them
        return name.startswith(COMPACT_TEMP_PREFIX) or time.time() - mtime >= self.stale_temp_s

    def _small_files(self, event_type: str, date: str) -> list[LogFile]:
        files = self.log.partition_files(event_type, date)
        return [f for f in files if self._size(f.path) < self.target_file_bytes]

    def _size(self, path: str) -> int:
        return self.storage.size(path)

    # -- 2-4. merge, publish, retire -------------------------------------------------------------
    def _merge(self, directory: str, event_type: str, inputs: dict[str, pa.Table]) -> int:
        names = list(inputs)
        digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
        base = names[0].split(".", 1)[0]
        final_name = f"{base}{MERGED_MARK}{digest}{PARQUET_SUFFIX}"
        tmp = f"{directory}/{temp_name('compact-' + final_name)}"
        table = self._merged_table(event_type, list(inputs.values()), names)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression=self.log.compression)
        if self.storage.atomic_upload:  # an object store: the completed upload is the publish
            self.step("publish")
            self.storage.write_new(f"{directory}/{final_name}", buffer.getvalue(), fsync=False)
        else:
            self.step("write-temp")
            self.storage.write_new(tmp, buffer.getvalue(), fsync=True)
            self.step("publish")
            self.storage.rename(tmp, f"{directory}/{final_name}")
            self.storage.fsync_dir(directory)
        if self.retire_grace_s > 0:  # a later run retires them (readers already ignore them)
            return table.num_rows
        for name in names:
            self.step("retire")
            self.storage.delete(f"{directory}/{name}")
        self.storage.fsync_dir(directory)
        return table.num_rows

    def _merged_table(self, event_type: str, tables: list[pa.Table], names: list[str]) -> pa.Table:
        schema = event_class(event_type).arrow_schema()
        metadata = dict(schema.metadata or {})
        metadata[COMPACTED_FROM_KEY] = json.dumps(names).encode()
        return pa.concat_tables(tables).replace_schema_metadata(metadata)


__all__ = ["CompactStats", "CompactionInProgress", "compact", "EVENTS_DIR"]
