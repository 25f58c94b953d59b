"""Cache core: an exact-match response cache, LRU-bounded by entries and bytes, with a TTL.

A pure class (no Ray, no I/O). The key is :meth:`ModelRequest.cache_key` (normalized messages and
parameters, model-agnostic unless the request pins a model). Only cacheable requests are stored or
looked up (``request.is_cacheable(settings.deterministic_only)``), and only complete answers
(``finish_reason`` ``stop`` or ``length``, or ``tool_calls`` with the calls it holds; never errors,
filtered content or cache hits). The key covers tools, tool choice and response format (``ModelRequest.canonical``): a
request offering other tools, or asking another format, is another entry.

Bounds: at most ``max_entries`` entries and ``max_bytes`` bytes (an entry's size is its response
serialized as JSON plus a fixed overhead); the least recently used entries go first. An entry older
than its TTL (``ttl_s``, or the shorter life of a copy taken from another tier: it expires with
the original) is never returned: it is dropped when met, and :meth:`CacheCore.purge_expired` drops
all of them (the shared Cache actor calls it at most once a minute, on writes; each router's
local tier from its housekeeping, as often).

Stats: ``hits``, ``misses``, ``bypassed`` (not cacheable or cache disabled), ``saved_cost_usd`` (the
original cost of every response served from the cache), ``entries``, ``bytes``, ``evictions``,
``expirations``. The entries themselves are warm state, not event-sourced (the log keeps no response
text unless ``store_prompts`` is on); hits and saved cost fold from ``RequestCompleted`` events with
``cache_hit`` (:meth:`CacheStats.from_events`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .. import config, events
from .._clock import Clock
from .._request import ModelRequest, ModelResponse
from ..errors import InvalidInput

#: Bytes counted per entry on top of its serialized response (key, bookkeeping).
ENTRY_OVERHEAD_BYTES = 256
CACHEABLE_FINISH_REASONS = frozenset({"stop", "length"})


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """A cache hit: the stored response (as it was first returned) and what it originally cost."""

    key: str
    response: ModelResponse
    cost_usd: Decimal
    stored_at: datetime
    age_s: float
    hits: int
    expires_in_s: float  # until the entry expires (its TTL less its age)

    def hit(self) -> CacheHit:
        """What a cache tier answers for this entry."""
        return CacheHit(self.response, self.cost_usd, self.expires_in_s)


@dataclass(frozen=True, slots=True)
class CacheHit:
    """What a cache tier answers on a hit (``CachePort.get``): the response, what it cost when it
    was made, and how long the entry has left, so that a copy of it expires with it."""

    response: ModelResponse
    cost_usd: Decimal
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    saved_cost_usd: Decimal = Decimal(0)
    entries: int = 0
    bytes: int = 0
    evictions: int = 0
    expirations: int = 0

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    @classmethod
    def from_events(cls, history: Iterable[events.Event]) -> CacheStats:
        """Hits and saved cost folded from ``RequestCompleted`` events with ``cache_hit`` set."""
        hits, saved = 0, Decimal(0)
        for event in history:
            if isinstance(event, events.RequestCompleted) and event.cache_hit:
                hits += 1
                saved += event.saved_cost_usd
        return cls(hits=hits, saved_cost_usd=saved)


@dataclass(slots=True)
class _Entry:
    response: ModelResponse
    cost_usd: Decimal
    size_bytes: int
    stored_mono: float
    stored_at: datetime
    ttl_s: float
    hits: int = 0


class CacheCore:
    """Exact-match LRU + TTL response cache (see the module docstring)."""

    def __init__(self, settings: config.CacheSettings, *, clock: Clock) -> None:
        if not isinstance(settings, config.CacheSettings):
            raise InvalidInput("CacheCore needs CacheSettings")
        self.settings = settings
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._bypassed = 0
        self._evictions = self._expirations = 0
        self._saved_usd = Decimal(0)

    def _lookup_key(self, request: ModelRequest) -> str | None:
        if not isinstance(request, ModelRequest):
            raise InvalidInput("the cache needs a ModelRequest")
        if not self.settings.enabled or not request.is_cacheable(self.settings.deterministic_only):
            return None
        return request.cache_key()

    def get(self, request: ModelRequest) -> CachedEntry | None:
        """The cached response for ``request``, or None (miss, expired, or not cacheable)."""
        key = self._lookup_key(request)
        if key is None:
            self._bypassed += 1
            return None
        entry = self._entries.get(key)
        now = self._clock.monotonic()
        if entry is not None and self._expired(entry, now):
            self._drop(key)
            self._expirations += 1
            entry = None
        if entry is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        entry.hits += 1
        self._hits += 1
        self._saved_usd += entry.cost_usd
        age_s = now - entry.stored_mono
        return CachedEntry(key, entry.response, entry.cost_usd, entry.stored_at, age_s,
                           entry.hits, entry.ttl_s - age_s)

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal, *,
            ttl_s: float | None = None) -> bool:
        """Store ``response`` for ``request``; True when stored. Not stored: cache disabled, request
        not cacheable, incomplete or cached response, or larger than ``max_bytes`` on its own.

        ``ttl_s``: a shorter life than the configured TTL (a copy of an entry from another tier
        keeps that entry's expiry); never longer. Nothing is stored when it is not positive."""
        if not isinstance(response, ModelResponse):
            raise InvalidInput("put needs a ModelResponse")
        if not isinstance(cost_usd, Decimal) or not cost_usd.is_finite() or cost_usd < 0:
            raise InvalidInput("cost_usd must be a finite Decimal >= 0")
        life_s = self.settings.ttl_s if ttl_s is None else min(_seconds(ttl_s), self.settings.ttl_s)
        key = self._lookup_key(request)
        if key is None or response.cache_hit or life_s <= 0:
            return False
        if response.finish_reason not in CACHEABLE_FINISH_REASONS and not (
                response.finish_reason == "tool_calls" and response.tool_calls):
            return False
        size = len(response.model_dump_json()) + ENTRY_OVERHEAD_BYTES
        if size > self.settings.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(response, cost_usd, size, self._clock.monotonic(),
                                    self._clock.now(), life_s)
        self._bytes += size
        self._evict()
        return True

    def purge_expired(self) -> int:
        """Drop every expired entry; the number dropped."""
        now = self._clock.monotonic()
        expired = [k for k, e in self._entries.items() if self._expired(e, now)]
        for key in expired:
            self._drop(key)
        self._expirations += len(expired)
        return len(expired)

    def clear(self) -> None:
        """Drop every entry (stats other than entries and bytes are kept)."""
        self._entries.clear()
        self._bytes = 0

    def keys(self) -> list[str]:
        """Keys from least to most recently used (for inspection and tests)."""
        return list(self._entries)

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self._hits, misses=self._misses, bypassed=self._bypassed,
            saved_cost_usd=self._saved_usd, entries=len(self._entries), bytes=self._bytes,
            evictions=self._evictions, expirations=self._expirations,
        )

    # -- internals ---------------------------------------------------------------------------
    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.stored_mono >= entry.ttl_s

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size_bytes

    def _evict(self) -> None:
        s = self.settings
        while len(self._entries) > s.max_entries or self._bytes > s.max_bytes:
            key = next(iter(self._entries))
            self._drop(key)
            self._evictions += 1


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidInput("ttl_s must be a number of seconds", field="ttl_s")
    return float(value)
