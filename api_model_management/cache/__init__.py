"""The response cache, in one place: an exact-match LRU core with TTL and a byte bound, and the
tiers the request path uses (in-process, or a per-router LRU in front of a shared tier)."""

from ._core import (
    CACHEABLE_FINISH_REASONS,
    ENTRY_OVERHEAD_BYTES,
    CacheCore,
    CachedEntry,
    CacheHit,
    CacheStats,
)
from ._tiers import CachePort, LocalCache, TieredCache

__all__ = [
    "CACHEABLE_FINISH_REASONS",
    "ENTRY_OVERHEAD_BYTES",
    "CacheCore",
    "CacheHit",
    "CachePort",
    "CacheStats",
    "CachedEntry",
    "LocalCache",
    "TieredCache",
]
