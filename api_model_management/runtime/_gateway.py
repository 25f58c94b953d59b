"""The gateway on a Ray system (``amm serve --ray``): its handlers call the router embedded in
a ``ModelManagement`` in the gateway's process (no actor round trip per request), on the
system's leases, budget slices, health, learnt quality and EventSink.

The ASGI app itself (``gateway``) knows nothing of Ray; this engine is what it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

from .._request import ModelRequest, ModelResponse, StreamChunk
from ..budget import BudgetStatus
from ..config import RegistryConfig
from ..errors import ComponentUnavailable
from . import _ray
from ._system import ModelManagement

#: How long ``/health`` waits for a HealthChecker actor.
HEALTH_TIMEOUT_S = 2.0


class RayEngine:
    """A started ``ModelManagement`` as a gateway engine; it owns the system (shut down at
    :meth:`aclose`)."""

    mode = "ray"

    def __init__(self, system: ModelManagement) -> None:
        self.system = system
        self.config = system.config

    @classmethod
    def launch(cls, config: RegistryConfig, *, address: str | None = None,
              data_dir: str | Path | None = None) -> RayEngine:
        """Start the system (a local Ray, or join ``address``) and wrap it."""
        return cls(ModelManagement.start(config, address=address, data_dir=data_dir))

    async def start(self) -> None:
        """Nothing to do: the system was started by :meth:`launch`."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self.system.complete(request)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]:
        chunks = self.system.stream(request)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def feedback(self, request_id: str, score: float, source: str,
                       comment: str | None) -> bool:
        return await self.system.feedback(request_id, score, source=source, comment=comment)

    async def provider_health(self) -> dict[str, str]:
        async def one(handle: _ray.Handle) -> str:
            try:
                snapshot = await asyncio.wait_for(
                    _ray.send(handle, "status", what="HealthChecker"), HEALTH_TIMEOUT_S)
            except (TimeoutError, ComponentUnavailable):
                return "unknown"
            return str(snapshot.state)

        names = list(self.system.handles.health)
        states = await asyncio.gather(*(one(self.system.handles.health[n]) for n in names))
        return dict(zip(names, states, strict=True))

    async def budget_status(self) -> list[BudgetStatus]:
        status: list[BudgetStatus] = await _ray.send(self.system.handles.ledger, "status",
                                                     what="CostLedger")
        return status

    async def aclose(self) -> None:
        """Flush every event into the log and stop the system."""
        await asyncio.to_thread(self.system.shutdown)
