"""The cache as the request path sees it: a port, the in-process cache, and a per-router LRU in
front of a shared tier (the Cache actor in the Ray runtime)."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from .._request import ModelRequest, ModelResponse
from ..errors import ComponentUnavailable
from ._core import CacheCore, CacheHit


class CachePort(Protocol):
    async def get(self, request: ModelRequest) -> CacheHit | None:
        """The cached response, what it cost when it was made and how long the entry has left;
        or None."""
        ...

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None: ...


class LocalCache:
    """The cache core in this process."""

    def __init__(self, core: CacheCore) -> None:
        self.core = core

    async def get(self, request: ModelRequest) -> CacheHit | None:
        entry = self.core.get(request)
        return None if entry is None else entry.hit()

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None:
        self.core.put(request, response, cost_usd)


class TieredCache:
    """A per-router LRU in front of a shared tier: hits in the shared tier are copied into the
    local one, where the copy expires with the original (later by at most the reply's transit);
    a shared tier that cannot answer (``ComponentUnavailable``) is a miss."""

    def __init__(self, local: CacheCore, shared: CachePort | None) -> None:
        self.local = local
        self.shared = shared

    async def get(self, request: ModelRequest) -> CacheHit | None:
        entry = self.local.get(request)
        if entry is not None:
            return entry.hit()
        if self.shared is None:
            return None
        try:
            hit = await self.shared.get(request)
        except ComponentUnavailable:  # the shared tier is restarting: a miss
            return None
        if hit is not None:
            self.local.put(request, hit.response, hit.cost_usd, ttl_s=hit.expires_in_s)
        return hit

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None:
        self.local.put(request, response, cost_usd)
        if self.shared is not None:
            self.shared.put(request, response, cost_usd)
