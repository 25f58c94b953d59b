"""The workers of one ``amm serve --workers N`` asking each other for their figures, so that any
of them answers ``/metrics`` for the whole server.

Each worker listens on a Unix socket ``<pid>.sock`` in the server's run directory (made by the
parent, removed when it stops) and answers every connection with its :class:`Snapshot` taken
then, on its own event loop (so a snapshot is consistent and current: no file lags behind, and
the request path does no extra work). The worker answering a scrape asks every other socket in
the directory, within ``timeout_s`` each, and merges. A worker that does not answer (gone, or
stuck) is left out and counted in ``amm_gateway_workers_unreachable``; its counters come back
with it or, if uvicorn replaced it, start again from zero, as a restarted process's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from ._metrics import Snapshot

log = logging.getLogger(__name__)

_SUFFIX = ".sock"


class Peers:
    """This worker's socket in ``run_dir`` and the way to the others'."""

    def __init__(self, run_dir: str | Path, *, timeout_s: float = 2.0) -> None:
        self.run_dir = Path(run_dir)
        self.timeout_s = timeout_s
        self.path = self.run_dir / f"{os.getpid()}{_SUFFIX}"
        self._server: asyncio.AbstractServer | None = None

    async def start(self, snapshot: Callable[[], Awaitable[Snapshot]]) -> None:
        """Answer every connection with ``await snapshot()``."""
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write((await snapshot()).to_json())
                await writer.drain()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(answer, path=str(self.path))

    async def others(self) -> tuple[list[Snapshot], int]:
        """The other workers' snapshots, and how many did not answer."""
        paths = [p for p in self.run_dir.glob(f"*{_SUFFIX}") if p != self.path]
        found = await asyncio.gather(*(self._ask(p) for p in paths))
        snapshots = [s for s in found if s is not None]
        return snapshots, len(found) - len(snapshots)

    async def _ask(self, path: Path) -> Snapshot | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    data = await reader.read()
                finally:
                    writer.close()
        except ConnectionRefusedError:  # nobody listens there: a worker gone without cleaning up
            path.unlink(missing_ok=True)
            return None
        except (OSError, TimeoutError) as exc:
            log.warning("gateway: worker socket %s did not answer (%s)", path.name,
                        type(exc).__name__)
            return None
        return Snapshot.from_json(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)
