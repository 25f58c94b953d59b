"""The pure core of the EventSink actor: buffer events, write them in group commits.

The actor shell calls :meth:`EventSinkCore.add` for each batch it receives and, on a timer,
:meth:`EventSinkCore.tick` (which flushes when :meth:`EventSinkCore.due` and fsyncs pending files
when the log's interval has passed). Events are never dropped: a full buffer is flushed
synchronously, and a failed flush keeps the buffer and raises.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._clock import SYSTEM_CLOCK, Clock
from ..config import EventSettings
from ._log import EventLog
from ._types import Event


class EventSinkCore:
    """Buffers events and writes them to an :class:`EventLog` in one ``append`` per flush."""

    def __init__(
        self,
        log: EventLog,
        settings: EventSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.log = log
        self.settings = settings or EventSettings()
        self._clock = clock
        self._buffer: list[Event] = []
        self._oldest_at: float | None = None
        self.flushed_events = 0
        self.flushes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add(self, events: Sequence[Event]) -> int:
        """Buffer ``events``; if the buffer reaches ``max_buffered_events``, flush it now.

        Returns the number of events written by that synchronous flush (0 if none)."""
        if not events:
            return 0
        if not self._buffer:
            self._oldest_at = self._clock.monotonic()
        self._buffer.extend(events)
        if len(self._buffer) >= self.settings.max_buffered_events:
            return self.flush()
        return 0

    def due(self, now_monotonic: float | None = None) -> bool:
        """True when the buffer holds ``batch_max_events`` or its oldest event has waited
        ``flush_interval_ms``."""
        if not self._buffer:
            return False
        if len(self._buffer) >= self.settings.batch_max_events:
            return True
        now = self._clock.monotonic() if now_monotonic is None else now_monotonic
        assert self._oldest_at is not None
        # a microsecond's tolerance: float sums of clock steps land a hair short of the boundary
        return (now - self._oldest_at) * 1000.0 >= self.settings.flush_interval_ms - 1e-3

    def flush(self) -> int:
        """Write the whole buffer in one ``append`` (group commit); returns the events written.

        On error the buffer is kept (``append`` leaves nothing visible) and the error raised."""
        if not self._buffer:
            return 0
        batch = self._buffer
        self.log.append(batch)
        self._buffer = []
        self._oldest_at = None
        self.flushed_events += len(batch)
        self.flushes += 1
        return len(batch)

    def tick(self, now_monotonic: float | None = None) -> int:
        """The timer's call: flush if due, and fsync files pending past the interval."""
        written = self.flush() if self.due(now_monotonic) else 0
        self.log.sync_if_due()
        return written

    def close(self) -> int:
        """Flush everything and fsync (for a clean shutdown)."""
        written = self.flush()
        self.log.sync()
        return written
