"""A fake ShipSource for the group-commit shipper's tests: items written into numbered batches,
uploads that wait for the test to let each one end (ok or failed)."""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path

from api_model_management.events._shipper import Sealed


class UploadFailed(OSError):
    """What a failing fake upload raises."""


class FakeSource:
    """Batches of items. ``write`` appends to the open batch; :meth:`seal` closes it; ``ship``
    (in a worker thread) takes the next outcome the test gives (:meth:`let`) and, if ok, records
    the batch's items as uploaded (``uploads``: one list per upload, in order)."""

    def __init__(self, *, gated: bool = True) -> None:
        self.number = 0
        self.open: list[int] | None = None
        self.closed: dict[int, list[int]] = {}
        self.uploads: list[list[int]] = []
        self.uploaded: set[int] = set()
        self.queued = 0  # items "in memory" (a spool that cannot write)
        self.ship_calls = 0
        self.finished = 0
        self._gated = gated
        self._outcomes: queue.Queue[bool] = queue.Queue()

    # -- the test's side ---------------------------------------------------------------------
    def write(self, *items: int) -> None:
        if self.open is None:
            self.number += 1
            self.open = []
        self.open.extend(items)

    def let(self, ok: bool = True) -> None:
        """Let one upload end, ok or failed."""
        self._outcomes.put(ok)

    async def until_finished(self, n: int) -> None:
        """Until ``n`` uploads have ended (and their round has moved on)."""
        while self.finished < n:
            await asyncio.sleep(0.001)
        for _ in range(3):
            await asyncio.sleep(0)

    # -- ShipSource ----------------------------------------------------------------------------
    def position(self) -> int:
        return self.number

    def seal(self) -> None:
        if self.open is not None:
            self.closed[self.number] = self.open
            self.open = None

    def sealed(self) -> list[Sealed]:
        return [Sealed(n, Path(f"batch-{n}")) for n in sorted(self.closed)]

    def pending(self) -> int:
        return self.queued

    def ship(self, batch: Sealed) -> None:
        self.ship_calls += 1
        try:
            ok = self._outcomes.get(timeout=30) if self._gated else True
            if not ok:
                raise UploadFailed("the store said no")
            items = self.closed.pop(batch.number)
            self.uploads.append(items)
            self.uploaded.update(items)
        finally:
            self.finished += 1
