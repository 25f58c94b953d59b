"""CacheCore under random puts, gets, clock moves, purges and clears, against a plain reference
(a list in LRU order with store times): bounds always hold, expired entries are never returned, LRU
order matches, and the hit / saved-cost stats fold back from the cache-hit events."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from api_model_management import ModelRequest, ModelResponse, config, events
from api_model_management._clock import ManualClock
from api_model_management.cache._core import ENTRY_OVERHEAD_BYTES, CacheCore, CacheStats

pytestmark = pytest.mark.property

PROMPTS = [f"question {i}" for i in range(5)]
REQUESTS = [ModelRequest(prompt=p, parameters={"temperature": 0}) for p in PROMPTS]


def response(length: int) -> ModelResponse:
    return ModelResponse(request_id="r", model_id="m", provider="p", text="x" * length,
                         finish_reason="stop")


def size_of(r: ModelResponse) -> int:
    return len(r.model_dump_json()) + ENTRY_OVERHEAD_BYTES


class CacheMachine(RuleBasedStateMachine):
    @initialize(
        max_entries=st.integers(1, 5),
        max_bytes=st.integers(500, 5000),
        ttl_s=st.integers(1, 60),
    )
    def setup(self, max_entries, max_bytes, ttl_s):
        self.s = config.CacheSettings(max_entries=max_entries, max_bytes=max_bytes, ttl_s=ttl_s)
        self.clock = ManualClock()
        self.cache = CacheCore(self.s, clock=self.clock)
        self.lru: list[tuple[int, float, int, Decimal]] = []  # (request, stored at, size, cost)
        self.hits = 0
        self.saved = Decimal(0)
        self.log: list[events.Event] = []

    def _find(self, i: int):
        return next((e for e in self.lru if e[0] == i), None)

    @rule(i=st.integers(0, len(PROMPTS) - 1), length=st.integers(0, 300),
          cents=st.integers(0, 500))
    def put(self, i, length, cents):
        r, cost = response(length), Decimal(cents) / 100
        stored = self.cache.put(REQUESTS[i], r, cost)
        size = size_of(r)
        assert stored == (size <= self.s.max_bytes)
        if not stored:
            return
        self.lru = [e for e in self.lru if e[0] != i] + [(i, self.clock.monotonic(), size, cost)]
        while len(self.lru) > self.s.max_entries or sum(e[2] for e in self.lru) > self.s.max_bytes:
            self.lru.pop(0)

    @rule(i=st.integers(0, len(PROMPTS) - 1))
    def get(self, i):
        entry = self.cache.get(REQUESTS[i])
        expected = self._find(i)
        if expected is not None and self.clock.monotonic() - expected[1] >= self.s.ttl_s:
            self.lru.remove(expected)
            expected = None
        if expected is None:
            assert entry is None
            return
        assert entry is not None and entry.age_s < self.s.ttl_s
        assert entry.cost_usd == expected[3]
        self.lru.remove(expected)
        self.lru.append(expected)
        self.hits += 1
        self.saved += expected[3]
        self.log.append(events.RequestCompleted(latency_ms=0.0, cache_hit=True,
                                                saved_cost_usd=entry.cost_usd))

    @rule(seconds=st.integers(0, 5))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def purge(self):
        now = self.clock.monotonic()
        alive = [e for e in self.lru if now - e[1] < self.s.ttl_s]
        assert self.cache.purge_expired() == len(self.lru) - len(alive)
        self.lru = alive

    @rule()
    def clear(self):
        self.cache.clear()
        self.lru = []

    @invariant()
    def within_bounds_and_in_lru_order(self):
        stats = self.cache.stats()
        assert stats.entries <= self.s.max_entries
        assert stats.bytes <= self.s.max_bytes
        assert stats.bytes == sum(e[2] for e in self.lru)
        assert self.cache.keys() == [REQUESTS[e[0]].cache_key() for e in self.lru]

    @invariant()
    def stats_match_and_fold_from_events(self):
        stats = self.cache.stats()
        assert stats.hits == self.hits and stats.saved_cost_usd == self.saved
        folded = CacheStats.from_events(self.log)
        assert (folded.hits, folded.saved_cost_usd) == (stats.hits, stats.saved_cost_usd)


CacheMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCacheMachine = CacheMachine.TestCase
