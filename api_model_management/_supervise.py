"""Supervision of background loops: an error in one iteration never ends the loop.

Every background loop (the EventSink's ingestion, a HealthChecker's probes, a router's
housekeeping, the CostLedger's log follower) runs its body, one iteration at a time, under a
:class:`Supervisor`. An exception of one iteration is logged (its type and where it was raised;
the message only for ``OSError`` and the package's own errors, whose messages are built from
structured fields: never a prompt or a key), counted (``errors``), and followed by a back-off that
doubles while failures repeat, up to ``max_backoff_s``; then the loop goes on. ``CancelledError``
is a ``BaseException`` and is never caught: cancelling a loop still stops it.

A loop that died used to leave its actor alive and silent (a HealthChecker that no longer
probes, a sink that no longer ingests); Ray restarts an actor that crashes, not a task inside it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import NoReturn

from ._clock import SYSTEM_CLOCK, Clock
from .errors import AMMError

log = logging.getLogger(__name__)


class Supervisor:
    """Runs one loop's iterations; ``errors`` counts those that failed, ``last_error`` names
    the last failure's type."""

    def __init__(self, name: str, *, backoff_s: float = 0.1, max_backoff_s: float = 5.0,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.errors = 0
        self.consecutive = 0
        self.last_error: str | None = None

    def failed(self, exc: Exception) -> float:
        """Record a failed iteration; returns the seconds to back off before the next one."""
        self.errors += 1
        self.consecutive += 1
        self.last_error = type(exc).__name__
        delay_s = min(self.max_backoff_s, self.backoff_s * 2 ** (self.consecutive - 1))
        log.warning("%s: an iteration failed: %s (failure %d; next try in %.2f s)",
                    self.name, describe(exc), self.errors, delay_s)
        return delay_s

    def succeeded(self) -> None:
        if self.consecutive:
            log.info("%s: running again after %d failed iteration(s)", self.name, self.consecutive)
        self.consecutive = 0

    async def run(self, step: Callable[[], Awaitable[float]], *,
                  initial_delay_s: float = 0.0) -> NoReturn:
        """Run ``step`` forever; it returns the seconds to wait before the next iteration."""
        if initial_delay_s > 0:
            await self.clock.sleep(initial_delay_s)
        while True:
            try:
                delay_s = await step()
            # the supervisor is the one place that catches Exception: a loop must outlive any
            # error of one iteration (logged and counted above); CancelledError still ends it
            except Exception as exc:  # noqa: BLE001
                delay_s = self.failed(exc)
            else:
                self.succeeded()
            await self.clock.sleep(delay_s)

    def run_thread(self, step: Callable[[], float], stop: threading.Event, *,
                   initial_delay_s: float = 0.0) -> None:
        """:meth:`run` for a thread: until ``stop`` is set (checked between iterations)."""
        if stop.wait(initial_delay_s):
            return
        while True:
            try:
                delay_s = step()
            except Exception as exc:  # noqa: BLE001 - the supervisor (see run)
                delay_s = self.failed(exc)
            else:
                self.succeeded()
            if stop.wait(delay_s):
                return


def describe(exc: BaseException) -> str:
    """An exception for a log line, with no data in it: the type, where it was raised, and the
    message only when it is built from structured fields (``OSError``, the package's errors)."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    if isinstance(exc, OSError):
        detail = f": errno {exc.errno} ({exc.strerror})" if exc.errno is not None else ""
    elif isinstance(exc, AMMError):
        detail = f": {exc.message}"[:200]
    else:
        detail = ""
    return f"{type(exc).__name__}{detail}{where}"
