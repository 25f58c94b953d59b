"""What a writer does when its spool cannot take events (a full disk, a quota, failing I/O).

:class:`ResilientSpool` wraps a :class:`SpoolWriter`; a router writes through it (it is the
router's ``EventPort``), and so do the actors that spool events. When the disk fills:

1. A write that fails (``OSError``: ``ENOSPC``, ``EDQUOT``, ``EIO``...) leaves nothing in the
   segment (the writer cuts a partial batch back) and its events are kept here, in order, in
   memory. :meth:`write` never raises for want of disk: a request whose call was made and billed
   returns its response, and its events wait here.
2. From then on the spool is *unavailable*: :meth:`check` (before a request is admitted) and
   :meth:`write_intent` (before each provider call) raise ``SpoolUnavailable``, so no new work
   starts and no call is made without its durable intent. Events of requests already in flight
   join the queue behind the others.
3. :meth:`tick` (the router's housekeeping, every 0.1 s; :meth:`check` too, at most every
   ``retry_s``) writes the queue again, oldest first, in batches of ``batch_bytes``; with the queue
   empty it probes with an empty line. Once everything queued is written the spool is available
   again and admission resumes by itself.
4. Events the spool could not take for ``grace_s`` are handed to the EventSink
   (:meth:`take_overdue`, then :meth:`handed_off` or :meth:`hand_back`), which writes them to the
   Parquet log, or, if its disk is full too, keeps them in its memory and retries
   (``SpoolIngestor.accept``).

What is at risk, and when: events that are only in memory (queued here, or held by the EventSink)
are lost if that process dies before the disk has room again. For a router the write-ahead
intent bounds the damage: a call it made is in the spool (``AttemptStarted``), so the sink
records the request as ``RequestFailed(lost)`` charged at its worst case; what is lost is the
call's detail (actual cost and tokens, quality, the response's outcome). Beyond
``max_backlog_bytes`` of queued events new ones are dropped, each logged at ERROR and counted
(``dropped_events``): with admission stopped only the requests in flight when the disk filled
add to the queue, so the limit (64 MiB, some 100,000 events) is a safety net. A hand-off whose
answer is lost (the EventSink dies between writing and answering) is handed back and may reach
the log twice; readers de-duplicate by ``event_id`` (``read_all_events``).

Not thread-safe (like the writer): one per process, used from one thread or under one lock.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import SpoolUnavailable
from ._spool import SpoolWriter, encode_events
from ._types import Event

log = logging.getLogger(__name__)

#: The most queued (encoded) bytes kept in memory; beyond it new events are dropped and logged.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
#: How long events may wait for the spool before they are handed to the EventSink.
HANDOFF_GRACE_S = 5.0
#: How often an unavailable spool is tried again from :meth:`ResilientSpool.check`.
RETRY_S = 0.1
#: The most bytes written back (or handed off) in one batch.
BATCH_BYTES = 1024 * 1024
HANDOFF_BATCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class _Queued:
    queued_at: float
    event: Event
    data: bytes


class ResilientSpool:
    """A spool writer whose events survive a spool that cannot take them (see the module)."""

    def __init__(self, writer: SpoolWriter, *, clock: Clock = SYSTEM_CLOCK,
                 max_backlog_bytes: int = MAX_BACKLOG_BYTES, grace_s: float = HANDOFF_GRACE_S,
                 retry_s: float = RETRY_S, batch_bytes: int = BATCH_BYTES) -> None:
        self.writer = writer
        self._clock = clock
        self._max_backlog_bytes = max_backlog_bytes
        self._grace_s = grace_s
        self._retry_s = retry_s
        self._batch_bytes = batch_bytes
        self._backlog: deque[_Queued] = deque()
        self._backlog_bytes = 0
        self._handing: list[_Queued] = []  # with the EventSink, not confirmed yet
        self._failed_at: float | None = None  # since when writes fail (None: they work)
        self._errno: int | None = None
        self._last_try = float("-inf")
        self.counters = {"write_errors": 0, "queued_events": 0, "rewritten_events": 0,
                         "handed_off_events": 0, "dropped_events": 0, "refused": 0,
                         "sync_errors": 0}

    # -- state -------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """Whether new work may start: the last write succeeded and nothing waits in memory."""
        return self._failed_at is None and not self._backlog and not self._handing

    @property
    def queued_events(self) -> int:
        """Events only in memory here (queued, or being handed to the EventSink)."""
        return len(self._backlog) + len(self._handing)

    def check(self) -> None:
        """Raise ``SpoolUnavailable`` unless new work may start (trying the spool again first,
        at most every ``retry_s``)."""
        if not self.available:
            self._retry(force=False)
        if not self.available:
            self.counters["refused"] += 1
            raise self._unavailable()

    # -- the EventPort -------------------------------------------------------------------------
    def write(self, events: Sequence[Event]) -> None:
        """Write ``events`` to the spool, or keep them (in order, behind any already kept) when
        it cannot take them. Never raises ``OSError``."""
        if not events:
            return
        if self.available:
            try:
                self.writer.write(events)
                return
            except OSError as exc:
                self._failed(exc)
        self._queue(events)

    def write_intent(self, event: Event) -> None:
        """Write an intent now or raise ``SpoolUnavailable`` (the call it announces must not be
        made): an intent is never queued."""
        self.check()
        try:
            self.writer.write_intent(event)
        except OSError as exc:
            self._failed(exc)
            raise self._unavailable() from None

    # -- housekeeping --------------------------------------------------------------------------
    def tick(self) -> None:
        """Write back what is queued (or probe, after a failure); then the writer's own
        housekeeping (fsync on the interval, rotation), whose errors are logged and counted."""
        if not self.available:
            self._retry(force=True)
        try:
            self.writer.tick()
        except OSError as exc:
            self._sync_failed("tick", exc)

    def take_overdue(self, *, everything: bool = False) -> list[Event]:
        """The queued events that waited ``grace_s`` or more (all of them with ``everything``),
        oldest first, up to ``HANDOFF_BATCH_BYTES``, to hand to the EventSink; until
        :meth:`handed_off` or :meth:`hand_back` they are neither written nor handed again."""
        if self._handing:
            return []
        now = self._clock.monotonic()
        size = 0
        while self._backlog and (everything or now - self._backlog[0].queued_at >= self._grace_s):
            if self._handing and size + len(self._backlog[0].data) > HANDOFF_BATCH_BYTES:
                break
            item = self._backlog.popleft()
            self._backlog_bytes -= len(item.data)
            size += len(item.data)
            self._handing.append(item)
        return [item.event for item in self._handing]

    def handed_off(self) -> None:
        """The EventSink took the events of :meth:`take_overdue`."""
        if self._handing:
            log.warning("spool %s: %d event(s) handed to the EventSink after %.1f s unwritten",
                        self.writer.writer_id, len(self._handing),
                        self._clock.monotonic() - self._handing[0].queued_at)
        self.counters["handed_off_events"] += len(self._handing)
        self._handing = []

    def hand_back(self) -> None:
        """The EventSink did not take them: back to the front of the queue, in order."""
        self._backlog.extendleft(reversed(self._handing))
        self._backlog_bytes += sum(len(item.data) for item in self._handing)
        self._handing = []

    def rotate(self) -> None:
        """Write back what is queued, then close the open segment (errors logged and counted)."""
        if not self.available:
            self._retry(force=True)
        try:
            self.writer.rotate()
        except OSError as exc:
            self._sync_failed("rotate", exc)

    def sync(self) -> None:
        try:
            self.writer.sync()
        except OSError as exc:
            self._sync_failed("sync", exc)

    def close(self) -> None:
        """Rotate and release the writer; events still only in memory are logged as lost."""
        self.rotate()
        if self.queued_events:
            log.error("spool %s closed with %d event(s) it could not write: they are lost",
                      self.writer.writer_id, self.queued_events)
        try:
            self.writer.close()
        except OSError as exc:
            self._sync_failed("close", exc)

    # -- internals -----------------------------------------------------------------------------
    def _queue(self, events: Sequence[Event]) -> None:
        now = self._clock.monotonic()
        for event in events:
            data = encode_events([event])
            if self._backlog_bytes + len(data) > self._max_backlog_bytes:
                self.counters["dropped_events"] += 1
                log.error("spool %s: %s of request %s dropped: %d bytes already wait in memory "
                          "for a spool that cannot take them", self.writer.writer_id,
                          event.event_type, getattr(event, "request_id", None),
                          self._backlog_bytes)
                continue
            self._backlog.append(_Queued(now, event, data))
            self._backlog_bytes += len(data)
            self.counters["queued_events"] += 1

    def _retry(self, *, force: bool) -> None:
        """Write the queue back, oldest first (or probe when nothing is queued); on success
        the spool is available again (once no hand-off is pending)."""
        now = self._clock.monotonic()
        if not force and now - self._last_try < self._retry_s:
            return
        self._last_try = now
        written = 0
        try:
            if not self._backlog and self._failed_at is not None:
                self.writer.probe()
            while self._backlog:
                batch: list[_Queued] = []
                size = 0
                while self._backlog and (not batch or size + len(self._backlog[0].data) <= self._batch_bytes):
                    item = self._backlog.popleft()
                    batch.append(item)
                    size += len(item.data)
                try:
                    self.writer.write_bytes(b"".join(item.data for item in batch))
                except OSError:
                    self._backlog.extendleft(reversed(batch))
                    raise
                self._backlog_bytes -= size
                written += len(batch)
        except OSError as exc:
            self._failed(exc)
            return
        finally:
            self.counters["rewritten_events"] += written
        if self._failed_at is not None:
            log.warning("spool %s takes writes again after %.1f s (%d queued event(s) written)%s",
                        self.writer.writer_id, now - self._failed_at, written,
                        "" if not self._handing else "; a hand-off to the EventSink is pending")
            self._failed_at = None
            self._errno = None

    def _failed(self, exc: OSError) -> None:
        self.counters["write_errors"] += 1
        self._errno = exc.errno
        if self._failed_at is None:
            self._failed_at = self._clock.monotonic()
            log.error("spool %s cannot take writes (%s): new requests are refused, events are "
                      "kept in memory until it can", self.writer.writer_id, _errno_name(exc.errno))

    def _sync_failed(self, what: str, exc: OSError) -> None:
        self.counters["sync_errors"] += 1
        log.error("spool %s: %s failed (%s); written events stay in the operating system and "
                  "are synced at the next try", self.writer.writer_id, what, _errno_name(exc.errno))

    def _unavailable(self) -> SpoolUnavailable:
        cause = _errno_name(self._errno)
        return SpoolUnavailable(
            f"the event spool cannot take writes ({cause}): new requests are refused until it "
            "can", component="EventSpool", cause=cause, retry_after_s=1.0,
        )


def _errno_name(code: int | None) -> str:
    if code is None:
        return "events still wait in memory"
    return errno.errorcode.get(code, str(code))
