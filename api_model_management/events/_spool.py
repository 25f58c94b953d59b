"""The write-ahead spool: how a request's events become durable before ``complete()`` returns.

A router cannot afford a round trip to the EventSink and a Parquet write per request (about 2-3 ms),
so each writer (a router process) appends its events to its own spool segment with one ``os.write``
(tens of microseconds). Once written, the bytes are in the operating system: a ``kill -9`` of the
router, or of the sink, loses nothing. ``fsync`` runs at most every ``fsync_interval_ms`` (so on
power loss at most that much is at risk), or on every write with ``fsync="always"``. A writer
made with ``sync_in_thread`` (the HTTP gateway's) runs the interval's ``fsync`` and the closing of
a segment that :meth:`SpoolWriter.tick` finds old (its ``fsync``, rename and close) in a thread of
its own, so that a request on the writer's event loop never waits for the disk: a write is then on
disk at most ``fsync_interval_ms`` plus the ``fsync``'s own duration after it was made (a segment
is renamed ``.wal`` only after its ``fsync``, as before). :meth:`SpoolWriter.sync`,
:meth:`SpoolWriter.rotate` and :meth:`SpoolWriter.close` stay synchronous in both modes.

The EventSink ingests closed segments (``*.wal``) and segments whose writer died (an ``*.open``
segment whose ``flock`` it can take), writes their events to Parquet under names derived from the
segment (so a re-run after a crash rewrites the same files instead of duplicating them), then
deletes the segment. A writer that ships its own segments (``settings.events.ack="shipped"``,
``_shipper.py``) closes them as ``*.ship`` instead: the sink leaves those to their writer while it
lives and ingests them, as any segment, once it is gone (its ``alive.lock`` free).

Layout: ``<spool>/<writer_id>/<seq>.open`` while written, renamed ``<seq>.wal`` when full or old,
where ``<spool>`` is ``<data_dir>/spool`` for a local log and ``settings.events.spool_dir`` (by
default under the system temp dir) for a remote one (``_local.py``). A record is one line: ``<event_type>\\t<JSON>\\n``; a torn last line (a writer killed inside
``write``) belongs to a request that never returned and is skipped.

A write that fails part-way (``ENOSPC`` after a short write, ``EIO``) is cut back off the segment
(``ftruncate`` to its size before the batch) before the error is raised, so every batch starts on
a fresh line; should even that fail, the segment is closed with its torn last line and the next
batch starts a new one. The reader also recovers a record glued to a torn one (see
:func:`decode_events`). What a router does when the spool cannot take its events is in
``_resilient.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from ._local import spool_root
from ._types import EVENT_TYPES, Event, uuid7

log = logging.getLogger(__name__)

_OPEN = ".open"
_CLOSED = ".wal"
#: A closed segment its own writer ships to the log (``_shipper.py``); the sink's only if the
#: writer is gone.
SHIP = ".ship"
#: A file in each writer's directory, locked by the writer for its whole life: the sink knows a
#: writer is gone (and may finalize its directory) when it can take the lock.
ALIVE = "alive.lock"


def _default(value):
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_events(events: Sequence[Event]) -> bytes:
    parts = []
    for event in events:
        body = orjson.dumps(event.model_dump(mode="python"), default=_default)
        parts.append(event.event_type.encode() + b"\t" + body + b"\n")
    return b"".join(parts)


def decode_events(data: bytes) -> list[Event]:
    """Events of a segment; a torn or corrupt line is skipped and logged (never raised).

    A torn record followed on the same line by a whole one (``<type>\\t{"a": 1<type>\\t{...}``)
    gives the whole one back: JSON never holds a raw tab (it is escaped), so a line's last tab is
    its last record's separator, and that record's type is the known event type ending just
    before it."""
    events: list[Event] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        event = _decode_line(line)
        if event is None:
            event = _recover_glued(line)
            log.warning("spool: skipped a torn or unreadable record (%d bytes)%s", len(line),
                        "; the record after it was recovered" if event is not None else "")
        if event is not None:
            events.append(event)
    return events


def _decode_line(line: bytes) -> Event | None:
    type_name, _, body = line.partition(b"\t")
    cls = EVENT_TYPES.get(type_name.decode(errors="replace"))
    if cls is None:
        return None
    try:
        return cls.model_validate(orjson.loads(body))
    except ValueError:  # orjson.JSONDecodeError and pydantic.ValidationError are ValueErrors
        return None


def _recover_glued(line: bytes) -> Event | None:
    """The whole record at the end of a line that starts with a torn one, if there is one."""
    head, tab, body = line.rpartition(b"\t")
    if not tab:
        return None
    for name in EVENT_TYPES:
        type_name = name.encode()
        if head.endswith(type_name) and len(head) > len(type_name):
            return _decode_line(type_name + b"\t" + body)
    return None


class SpoolWriter:
    """One writer's append-only spool (not thread-safe; one per router process).

    ``ships``: segments are closed as ``*.ship`` (shipped to the log by this process, see
    ``_shipper.py``) instead of ``*.wal`` (ingested by the node's EventSink)."""

    def __init__(
        self,
        data_dir: str | Path,
        writer_id: str | None = None,
        *,
        fsync: str = "interval",
        fsync_interval_ms: int = 200,
        segment_max_bytes: int = 4 * 1024 * 1024,
        segment_max_age_s: float = 1.0,
        spool_dir: str | Path | None = None,
        ships: bool = False,
        sync_in_thread: bool = False,
    ) -> None:
        self.writer_id = writer_id or f"w-{os.getpid()}-{uuid7()[-12:]}"
        self.dir = spool_root(data_dir, spool_dir) / self.writer_id
        self.dir.mkdir(parents=True, exist_ok=True)
        # held until this process ends (or close()): while it is held the writer is alive
        self._alive_fd: int | None = os.open(self.dir / ALIVE, os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(self._alive_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_ms / 1000
        self._max_bytes = segment_max_bytes
        self._max_age_s = segment_max_age_s
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._size = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        self._seq = 0
        self._sealed_suffix = SHIP if ships else _CLOSED
        self._syncer: _Syncer | None = None
        if sync_in_thread:
            self.sync_in_thread()

    def sync_in_thread(self) -> None:
        """From now on :meth:`tick`'s interval ``fsync`` and its closing of an old segment run
        in a thread of this writer's (see the module); what was written before is unchanged."""
        if self._syncer is None:
            self._syncer = _Syncer(self.writer_id)

    @property
    def background_errors(self) -> int:
        """``fsync``, rename or close failures in the sync thread (each logged)."""
        return self._syncer.errors if self._syncer is not None else 0

    @property
    def position(self) -> int:
        """The number of the latest segment opened: every event written so far is in it or in
        a segment numbered below it (:func:`segment_number`)."""
        return self._seq

    def sealed(self) -> list[Path]:
        """This writer's segments closed as ``*.ship`` and not yet removed, oldest first."""
        try:
            names = sorted(p for p in os.listdir(self.dir) if p.endswith(SHIP))
        except FileNotFoundError:
            return []
        return [self.dir / name for name in names]

    def _open(self) -> int:
        self._seq += 1
        self._path = self.dir / f"{time.time_ns():020d}-{self._seq:06d}{_OPEN}"
        # created under a name the sink ignores, locked, then renamed: a sink never sees an
        # unlocked ``.open`` segment of a live writer (the lock belongs to the inode)
        creating = self._path.with_suffix(".creating")
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a sink may take it only if we die
            os.rename(creating, self._path)
        except OSError:  # a full directory: leave no half-created segment behind
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(creating)
            self._path = None
            raise
        self._fd = fd
        self._opened_at = time.monotonic()
        self._size = 0
        return fd

    def write(self, events: Sequence[Event]) -> None:
        """Append events durably (against process death) before returning. On ``OSError``
        nothing of the batch is left in the spool (or, if it cannot be cut back, the segment is
        closed and its torn last line is skipped by readers) and the error is raised."""
        if events:
            self.write_bytes(encode_events(events))

    def write_bytes(self, data: bytes) -> None:
        """Append encoded records (:func:`encode_events`) as one batch, as :meth:`write`."""
        if not data:
            return
        fd = self._fd if self._fd is not None else self._open()
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError:
            self._cut_back(fd)
            raise
        self._size += len(data)
        self._dirty = True
        try:
            if self._fsync == "always":
                self.sync()
            if self._size >= self._max_bytes:
                if self._syncer is not None:
                    self._rotate_in_thread(self._syncer)
                else:
                    self.rotate()
        except OSError as exc:  # the batch is written (in the OS): not a failed write
            log.error("spool %s: fsync or rotation failed after a write (%s); tried again at the "
                      "next tick", self.writer_id, type(exc).__name__)

    def _cut_back(self, fd: int) -> None:
        """Remove the part of a failed batch that reached the segment (shrinking a file needs no
        space); if even that fails, close the segment, torn last line and all, so the next batch
        starts on a fresh line in a new one."""
        try:
            os.ftruncate(fd, self._size)
        except OSError as exc:
            log.error("spool %s: could not cut a failed batch back (%s); closing the segment",
                      self.writer_id, type(exc).__name__)
            self._abandon()

    def _abandon(self) -> None:
        """Close the open segment without syncing (renamed ``.wal`` if that still works;
        otherwise it stays ``.open``, unlocked once closed, and the sink ingests it as such)."""
        if self._syncer is not None:
            self._syncer.wait()  # no fsync of this segment left queued once it is closed
        fd, path = self._fd, self._path
        self._fd = self._path = None
        if path is not None:
            with contextlib.suppress(OSError):
                os.rename(path, path.with_suffix(self._sealed_suffix))
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def write_intent(self, event: Event) -> None:
        """An intent, durable (against process death) before the call it announces."""
        self.write([event])

    def probe(self) -> None:
        """Raise ``OSError`` unless the spool takes a write now: an empty line, which readers
        skip (records stay on lines of their own)."""
        self.write_bytes(b"\n")

    def sync(self) -> None:
        """What was written is on disk on return (after any fsync the sync thread runs)."""
        if self._syncer is not None:
            self._syncer.wait()
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def tick(self) -> None:
        """Periodic housekeeping: fsync on the interval policy, rotate old segments (both in
        the sync thread with ``sync_in_thread``: nothing here waits for the disk then)."""
        now = time.monotonic()
        syncer = self._syncer
        if syncer is not None:
            if self._fd is not None and now - self._opened_at >= self._max_age_s:
                self._rotate_in_thread(syncer)  # syncs what it closes
            elif (self._fsync == "interval" and now - self._last_sync >= self._fsync_interval_s
                  and not syncer.busy):  # a slow disk: one fsync at a time, none queued up
                if self._fd is not None and self._dirty:
                    fd = self._fd
                    self._dirty = False
                    syncer.submit(lambda: _fsync_or_redirty(self, fd))
                self._last_sync = now
            return
        if self._fsync == "interval" and now - self._last_sync >= self._fsync_interval_s:
            self.sync()
        if self._fd is not None and now - self._opened_at >= self._max_age_s:
            self.rotate()

    def _rotate_in_thread(self, syncer: _Syncer) -> None:
        """Detach the open segment and have the sync thread fsync, rename and close it (in the
        order of its queue: an fsync submitted before runs while the segment is still open)."""
        fd, path = self._fd, self._path
        assert fd is not None and path is not None
        self._fd = self._path = None
        sync = self._fsync != "never" and self._dirty
        self._dirty = False
        self._last_sync = time.monotonic()
        closed = path.with_suffix(self._sealed_suffix)

        def seal() -> None:
            try:
                if sync:
                    os.fsync(fd)
                os.rename(path, closed)
            finally:  # even after a failure: an unlocked .open segment is ingested as a dead
                os.close(fd)  # writer's (see _abandon)

        syncer.submit(seal)

    def rotate(self) -> None:
        """Close the open segment so the sink can ingest it (after the segments the sync thread
        is closing, if any: on return every segment written before is closed)."""
        if self._syncer is not None:
            self._syncer.wait()
        if self._fd is None or self._path is None:
            return
        if self._fsync != "never":
            self.sync()
        closed = self._path.with_suffix(self._sealed_suffix)
        os.rename(self._path, closed)
        os.close(self._fd)  # releases the lock after the rename: the sink sees a .wal, never a live .open
        self._fd = None
        self._path = None

    def close(self) -> None:
        """Close the open segment and release the writer's lock: the sink then ingests what is
        left and retires the writer's directory."""
        self.rotate()
        if self._syncer is not None:
            self._syncer.stop()
            self._syncer = None
        if self._alive_fd is not None:
            os.close(self._alive_fd)
            self._alive_fd = None


def _fsync_or_redirty(writer: SpoolWriter, fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        writer._dirty = True  # tried again at a later tick (a segment still open)
        raise


class _Syncer:
    """A writer's sync thread: runs the jobs it is given one at a time, in order; a job's
    ``OSError`` is logged and counted (the writer's next tick tries again)."""

    def __init__(self, writer_id: str) -> None:
        self.writer_id = writer_id
        self.errors = 0
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._pending = 0  # submitted, not finished (written on the writer's thread only)
        self._done = 0  # finished (written by the sync thread only)
        self._thread = threading.Thread(target=self._run, name=f"spool-sync-{writer_id}",
                                        daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._done < self._pending

    def submit(self, job: Callable[[], None]) -> None:
        self._pending += 1
        self._jobs.put(job)

    def wait(self) -> None:
        """Until every job submitted so far has run."""
        if self.busy:
            self._jobs.join()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except OSError as exc:
                self.errors += 1
                log.error("spool %s: fsync or closing a segment failed in the sync thread (%s); "
                          "its events stay in the operating system", self.writer_id,
                          type(exc).__name__)
            except Exception:  # noqa: BLE001 - a sync thread that stops would stop syncing
                self.errors += 1
                log.exception("spool %s: the sync thread's job failed", self.writer_id)
            finally:
                if job is not None:
                    self._done += 1
                self._jobs.task_done()


@dataclass(frozen=True)
class Segment:
    path: Path
    writer_id: str
    closed: bool

    @property
    def stem(self) -> str:
        """The name of the log files of this segment's events, whoever writes them (the sink,
        or the writer's shipper): the same segment is always the same files."""
        return f"{self.path.name.split('.')[0]}-{self.writer_id}"


def segment_number(path: Path) -> int:
    """A segment's number within its writer (``<time_ns>-<number>.<suffix>``)."""
    return int(path.name.split(".")[0].rsplit("-", 1)[1])


def finished_writers(data_dir: str | Path, spool_dir: str | Path | None = None) -> Iterator[Path]:
    """Writer directories whose writer is gone and whose segments are all ingested: what is
    left to do for them is the sink's finalization (lost intents), then removal."""
    root = spool_root(data_dir, spool_dir)
    if not root.is_dir():
        return
    for writer_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        alive = writer_dir / ALIVE
        if not alive.exists():
            continue  # being created, or written by a version without the lock: left alone
        # dead first, then empty: a dead writer cannot add a segment after the check
        if _writer_is_dead(alive) and not any(
            p.suffix in (_OPEN, _CLOSED, SHIP, ".creating") for p in writer_dir.iterdir()
        ):
            yield writer_dir


def ingestible_segments(data_dir: str | Path, spool_dir: str | Path | None = None
                        ) -> Iterator[Segment]:
    """Closed segments, open segments whose writer is dead (their lock can be taken), and
    segments left to be shipped (``*.ship``) by a writer that is gone (its ``alive.lock`` free)."""
    root = spool_root(data_dir, spool_dir)
    if not root.is_dir():
        return
    for writer_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        writer_gone: bool | None = None
        for path in sorted(writer_dir.iterdir()):
            if path.suffix == _CLOSED:
                yield Segment(path, writer_dir.name, True)
            elif path.suffix == _OPEN and _writer_is_dead(path):
                yield Segment(path, writer_dir.name, False)
            elif path.suffix == SHIP:
                if writer_gone is None:  # its shipper lives as long as the lock is held
                    alive = writer_dir / ALIVE
                    writer_gone = alive.exists() and _writer_is_dead(alive)
                if writer_gone:
                    yield Segment(path, writer_dir.name, True)


def _writer_is_dead(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False  # renamed meanwhile: it will be seen as closed next time
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def read_segment(segment: Segment) -> list[Event]:
    return decode_events(segment.path.read_bytes())


def pending_events(data_dir: str | Path, spool_dir: str | Path | None = None) -> list[Event]:
    """Every event still in the spool (including live writers' open segments), for readers that
    must see everything a returned ``complete()`` wrote."""
    root = spool_root(data_dir, spool_dir)
    events: list[Event] = []
    if not root.is_dir():
        return events
    for path in sorted(root.glob("*/*")):
        if path.suffix in (_OPEN, _CLOSED, SHIP):
            try:
                events.extend(decode_events(path.read_bytes()))
            except FileNotFoundError:
                continue
    return events
