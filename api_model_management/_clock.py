"""Injected time, the one way: every core, port and policy takes a ``Clock``; tests move a
``ManualClock`` instead of sleeping."""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic scale (for windows, TTLs, backoff)."""
        ...

    def now(self) -> datetime:
        """Wall-clock time, UTC, timezone-aware (for event timestamps and budget windows)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (backoff)."""
        ...


class SystemClock:
    @property
    def domain(self) -> str:
        """Which monotonic clock this is: one per host boot. Deadlines from another domain are
        meaningless here (see the lease and slice holders)."""
        return _boot_id()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to. ``sleep`` moves it (and records the delay in
    ``slept``) instead of waiting."""

    domain = ""  # shared by everything a test hands it to

    def __init__(self, start: datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._mono = monotonic_start
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)  # let others run, as a real sleep would


SYSTEM_CLOCK = SystemClock()


@functools.cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:  # not Linux: the host name stands for the boot
        return socket.gethostname()


class Every:
    """True once every ``period_s`` on the clock (a housekeeping timer, testable)."""

    def __init__(self, period_s: float, clock: Clock, *, start_due: bool = True) -> None:
        self.period_s = period_s
        self._clock = clock
        self._last = -1e18 if start_due else clock.monotonic()

    def due(self) -> bool:
        now = self._clock.monotonic()
        if now - self._last < self.period_s:
            return False
        self._last = now
        return True
