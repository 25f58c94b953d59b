"""Answering a request only once its events are in the shared log (``settings.events.ack="shipped"``).

With ``ack="local"`` (the default) a request's events are in its node's spool when ``complete()``
returns: they survive the router's process, not the node (its disk). With ``ack="shipped"`` the
router's spool writer closes its segments as ``*.ship`` instead of ``*.wal`` and this process, not
the node's EventSink, writes them to the log (``data_dir``: local, or ``s3://``); the request path
waits (:meth:`GroupShipper.durable`) until the segment holding its events is there.

Group commit
------------
One :class:`GroupShipper` per router (per spool writer). A waiter's target is the number of the
spool segment its events are in (:attr:`SpoolWriter.position`). While there are waiters, the shipper
runs rounds, one at a time: it closes the open segment (on the event loop, where the writer is
written), then in a worker thread writes every closed ``*.ship`` segment, oldest first, to the log
and deletes it; then it wakes every waiter whose segment is shipped. Requests that write while a
round runs write to a new segment and wait for the next round: under load one round serves every
request that finished during the previous one, so the upload's cost is shared (measured in
``benchmarks/durable_ack.py``). A round that fails wakes the waiters it was for with
``EventsNotShipped``; their segment stays, and the next round (a later request, or the router's
housekeeping :meth:`GroupShipper.tick`) tries it again. A waiter waits at most ``timeout_s``.

A segment is written to the log as the EventSink would write it: its events grouped by (event
type, UTC date), one Parquet file each, named after the segment (``Segment.stem``), so a round
is one object per event type present (about four for a request: ``ModelSelected``,
``AttemptStarted``, ``RequestCompleted``, ``ResponseEvaluated``), however many requests it
serves. On an object store they are uploaded concurrently, each upload its own atomic publish;
on a local disk ``EventLog.append`` writes them (fsynced, renamed into place, directories fsynced).

Crash windows (each is repaired by writing the same files again; nothing is lost or doubled)
-------------------------------------------------------------------------------------------
- The router dies before or during a round: its ``*.ship`` segments stay in the spool. The sink
  does not touch ``*.ship`` segments while their writer holds its ``alive.lock``, and ingests them
  like any segment once it does not: under the same names, so files a round had already published
  are replaced by the same content. A torn multi-file publish (some event types uploaded, not all)
  is completed the same way.
- The router dies after the upload, before deleting the segment: as above (the same files again).
- The sink ingests while a round uploads: it cannot, for the writer is alive (its lock is held for
  the process's life, and :meth:`GroupShipper.aclose` waits for the round before a writer is
  closed); so one segment never has two writers at once.
- Compaction merges a shipped file, then the sink re-ingests the segment of a dead router (the
  case above) and writes that file again: the merged file claims its name, so ``EventLog`` readers
  ignore it and the next compaction deletes it (``_compact.py``, step 1).
- The node is lost: only what was not yet shipped is lost, and no request waiting for it was
  answered (it got ``EventsNotShipped``, or no answer at all).

What a waiter is told when the log cannot be reached: ``EventsNotShipped`` (after ``timeout_s`` or
a failed upload), never a silent success; the request path decides what to do with it (the router
raises it, with the answer attached, see ``routing._router``). Events that wait in memory for a
spool that cannot take them (``_resilient.py``) are in no segment: a waiter is told at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import EventsNotShipped
from ._log import PARQUET_SUFFIX, EventLog, events_to_table
from ._spool import Segment, SpoolWriter, decode_events, segment_number
from ._storage import display_uri
from ._types import Event

log = logging.getLogger(__name__)

#: The longest a waiter waits by default (``settings.events.ack_timeout_s``).
ACK_TIMEOUT_S = 10.0
#: Concurrent uploads of one segment's files (one per event type and date) to an object store.
UPLOAD_THREADS = 8


@dataclass(frozen=True)
class Sealed:
    """A closed batch waiting to be shipped: its number (batches are numbered in write order)
    and what the source needs to ship it."""

    number: int
    path: Path


class ShipSource(Protocol):
    """What a :class:`GroupShipper` ships: numbered batches of written events."""

    def position(self) -> int:
        """The number of the newest batch: everything written so far is in it or below it."""
        ...

    def seal(self) -> None:
        """Close the open batch (if any) so it can be shipped; called on the event loop."""
        ...

    def sealed(self) -> list[Sealed]:
        """Closed batches not shipped yet, oldest first."""
        ...

    def ship(self, batch: Sealed) -> None:
        """Put ``batch`` in the log, then forget it (blocking: run in a worker thread). Shipping
        a batch again (after a crash) must write the same thing."""
        ...

    def pending(self) -> int:
        """Events written but in no batch (waiting in memory); a waiter cannot be served."""
        ...


class GroupShipper:
    """Group commit of a :class:`ShipSource` for the request path (see the module docstring).
    One per source; used from one event loop."""

    def __init__(self, source: ShipSource, *, timeout_s: float = ACK_TIMEOUT_S,
                 where: str = "the event log") -> None:
        self.source = source
        self.timeout_s = timeout_s
        self.where = where
        #: Every batch numbered up to this one is shipped (or was empty).
        self.shipped_through = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._round: asyncio.Task[None] | None = None
        self._again = False
        self.counters = {"rounds": 0, "batches_shipped": 0, "rounds_failed": 0, "waits": 0,
                         "waits_failed": 0}

    @property
    def waiting(self) -> int:
        """Requests waiting for their events to be shipped."""
        return len(self._waiters)

    async def durable(self) -> None:
        """Return once every event written so far is in the log; ``EventsNotShipped`` when it
        is not within ``timeout_s`` or the round for it failed."""
        self.counters["waits"] += 1
        if self.source.pending():
            self.counters["waits_failed"] += 1
            raise EventsNotShipped(
                "events wait in memory for a spool that cannot take them: not in the shared log",
                component="EventShipper", cause="spool_unavailable")
        target = self.source.position()
        if target <= self.shipped_through:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._start()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            self.counters["waits_failed"] += 1
            raise EventsNotShipped(
                f"events not in {self.where} within {self.timeout_s:g} s: they stay in this "
                "node's spool and are shipped when it can be reached",
                component="EventShipper", cause="timeout", retry_after_s=1.0) from None
        except EventsNotShipped:
            self.counters["waits_failed"] += 1
            raise
        finally:
            self._waiters = [(t, f) for t, f in self._waiters if f is not future]
            if not future.done():
                future.cancel()

    def tick(self) -> None:
        """Housekeeping: ship segments closed without a waiter (by age or size) in the
        background, so that the log does not wait for the next request."""
        if self._round is None and self.source.sealed():
            self._start()

    async def flush(self) -> None:
        """Close the open batch and ship everything closed (``EventsNotShipped`` if a round
        fails; batches closed meanwhile are shipped too)."""
        self.source.seal()
        failed_before = self.counters["rounds_failed"]
        while self.source.sealed():
            self._start()
            while self._round is not None:
                await asyncio.shield(self._round)
            if self.counters["rounds_failed"] > failed_before:
                raise EventsNotShipped(f"events not in {self.where}: the upload failed",
                                       component="EventShipper", cause="upload_failed")

    async def aclose(self) -> None:
        """Let the round in flight end (before the spool writer is closed: the sink takes over a
        writer's ``*.ship`` segments only once it is gone)."""
        while self._round is not None:
            await asyncio.gather(asyncio.shield(self._round), return_exceptions=True)

    # -- rounds --------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._round is not None:
            self._again = True  # the running round looks once more before it ends
            return
        self._round = asyncio.get_running_loop().create_task(self._rounds())

    async def _rounds(self) -> None:
        try:
            while True:
                self._again = False
                await self._one_round()
                if not (self._again or self._waiters):
                    return
        finally:
            self._round = None

    async def _one_round(self) -> None:
        """Close the open batch, ship every closed one, wake the waiters. The round is for the
        waiters present when it starts; a waiter that comes during the upload waits for the
        next one (its events are in a batch opened after this round's was closed)."""
        self.counters["rounds"] += 1
        covered = max((target for target, _ in self._waiters), default=self.shipped_through)
        error: BaseException | None = None
        try:
            self.source.seal()  # on the loop: the writer is written here
            covered = max(covered, self.source.position())
            sealed_through = self.source.position()
            for batch in self.source.sealed():
                await asyncio.to_thread(self.source.ship, batch)
                self.counters["batches_shipped"] += 1
            self.shipped_through = max(self.shipped_through, sealed_through)
        except Exception as exc:  # noqa: BLE001 - handed to the waiters of this round
            error = exc
            self.counters["rounds_failed"] += 1
            log.warning("event shipper: a round failed (%s); its segments stay in the spool and "
                        "are tried again", type(exc).__name__)
        self._wake(covered, error)

    def _wake(self, covered: int, error: BaseException | None) -> None:
        """Wake the waiters whose batch is shipped, and, after a failure, those this round was
        for (the others wait for the next round)."""
        still: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._waiters:
            if future.done():
                continue
            if target <= self.shipped_through:
                future.set_result(None)
            elif error is not None and target <= covered:
                future.set_exception(EventsNotShipped(
                    f"events not in {self.where}: the upload failed ({type(error).__name__}); "
                    "they stay in this node's spool and are shipped when it can be reached",
                    component="EventShipper", cause=type(error).__name__, retry_after_s=1.0))
            else:
                still.append((target, future))
        self._waiters = still


class SpoolSegments:
    """A :class:`ShipSource` over a spool writer that closes its segments as ``*.ship``
    (``SpoolWriter(ships=True)``), shipping each to ``log`` under the names the EventSink would
    give it. ``pending``: events waiting in memory (``ResilientSpool.queued_events``)."""

    def __init__(self, writer: SpoolWriter, log_: EventLog,
                 pending: Callable[[], int] = lambda: 0) -> None:
        self.writer = writer
        self.log = log_
        self._pending = pending

    def position(self) -> int:
        return self.writer.position

    def seal(self) -> None:
        self.writer.rotate()

    def sealed(self) -> list[Sealed]:
        return [Sealed(segment_number(path), path) for path in self.writer.sealed()]

    def pending(self) -> int:
        return self._pending()

    def ship(self, batch: Sealed) -> None:
        try:
            data = batch.path.read_bytes()
        except FileNotFoundError:  # shipped and deleted already
            return
        segment = Segment(batch.path, self.writer.writer_id, True)
        publish(self.log, decode_events(data), segment.stem)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(batch.path)


def publish(log_: EventLog, events: Sequence[Event], stem: str) -> list[str]:
    """Write ``events`` to the log under the names the EventSink gives a segment (one file per
    event type and UTC date, ``<stem>.parquet``), durable when it returns. On an object store the
    files are uploaded concurrently, each upload its own atomic publish (if one fails, others may
    be visible already: a retry, or the sink, writes the same files again). Elsewhere
    ``EventLog.append`` writes them (temp, fsync, rename, directories fsynced: ``fsync="always"``
    in the shipper's log); writing them concurrently there gained nothing on a 2-core machine.
    Returns the paths written."""
    if not events:
        return []
    storage = log_.storage
    if not storage.atomic_upload:
        return log_.append(events, file_stem=stem)
    groups: dict[tuple[type[Event], str], list[Event]] = {}
    for event in events:
        groups.setdefault((type(event), event.occurred_at.date().isoformat()), []).append(event)
    jobs = [(f"{log_.partition_dir(cls.event_type, date)}/{stem}{PARQUET_SUFFIX}", cls, group)
            for (cls, date), group in groups.items()]

    def upload(job: tuple[str, type[Event], list[Event]]) -> str:
        path, cls, group = job
        sink = pa.BufferOutputStream()
        pq.write_table(events_to_table(group, cls), sink, compression=log_.compression)
        storage.write_new(path, sink.getvalue(), fsync=False)
        return path

    if len(jobs) == 1:
        return [upload(jobs[0])]
    with concurrent.futures.ThreadPoolExecutor(min(UPLOAD_THREADS, len(jobs))) as pool:
        return list(pool.map(upload, jobs))


def spool_shipper(writer: SpoolWriter, data_dir: str | Path, *, timeout_s: float = ACK_TIMEOUT_S,
                  pending: Callable[[], int] = lambda: 0) -> GroupShipper:
    """The shipper of a router's spool writer (built with ``ships=True``) to ``data_dir``."""
    log_ = EventLog(data_dir, fsync="always")
    return GroupShipper(SpoolSegments(writer, log_, pending), timeout_s=timeout_s,
                        where=display_uri(data_dir))


__all__ = ["ACK_TIMEOUT_S", "GroupShipper", "Sealed", "ShipSource", "SpoolSegments", "publish",
           "spool_shipper"]
