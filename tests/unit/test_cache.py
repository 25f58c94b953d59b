"""CacheCore: exact match, what is cacheable, TTL, LRU by entries and bytes, stats, bad input."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from api_model_management import ModelRequest, ModelResponse, config, events
from api_model_management._clock import ManualClock
from api_model_management.cache._core import ENTRY_OVERHEAD_BYTES, CacheCore, CacheStats
from api_model_management.errors import InvalidInput

pytestmark = pytest.mark.unit


def make(**kw):
    clock = ManualClock()
    return CacheCore(config.CacheSettings(**kw), clock=clock), clock


def req(prompt="What is 2+2?", temperature=0, **kw) -> ModelRequest:
    return ModelRequest(prompt=prompt, parameters={"temperature": temperature}, **kw)


def resp(text="4", finish_reason="stop", **kw) -> ModelResponse:
    kw.setdefault("request_id", "r1")
    kw.setdefault("model_id", "m")
    kw.setdefault("provider", "openai")
    return ModelResponse(text=text, finish_reason=finish_reason, **kw)


def size_of(response: ModelResponse) -> int:
    return len(response.model_dump_json()) + ENTRY_OVERHEAD_BYTES


def test_miss_then_hit_counts_saved_cost():
    cache, clock = make()
    assert cache.get(req()) is None
    assert cache.put(req(), resp(), Decimal("0.002"))
    clock.advance(3)
    entry = cache.get(req())
    assert entry is not None and entry.response.text == "4"
    assert entry.cost_usd == Decimal("0.002") and entry.age_s == 3 and entry.hits == 1
    assert entry.key == req().cache_key()
    cache.get(req())
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 1, 1)
    assert stats.saved_cost_usd == Decimal("0.004")
    assert stats.bytes == size_of(resp())
    assert stats.hit_rate == pytest.approx(2 / 3)


def test_key_is_exact_and_model_agnostic_unless_pinned():
    cache, _ = make()
    cache.put(req(), resp(), Decimal("0.001"))
    assert cache.get(req(agent_type="other", task_id="t9")) is not None  # not in the key
    assert cache.get(req(prompt="What is 2+3?")) is None
    assert cache.get(req(max_tokens=100)) is None
    assert cache.get(req(model_id="m")) is None  # pinned: a different key


def test_only_cacheable_requests_are_stored_or_looked_up():
    cache, _ = make()
    warm = req(temperature=0.7)
    assert not cache.put(warm, resp(), Decimal(0))
    assert cache.get(warm) is None
    assert cache.stats().bypassed == 1 and cache.stats().misses == 0
    opted_in = req(temperature=0.7, cacheable=True)
    assert cache.put(opted_in, resp(), Decimal(0))
    assert cache.get(opted_in) is not None
    opted_out = req(cacheable=False)
    assert not cache.put(opted_out, resp(), Decimal(0))


def test_deterministic_only_off_caches_any_temperature():
    cache, _ = make(deterministic_only=False)
    assert cache.put(req(temperature=0.9), resp(), Decimal(0))


def test_disabled_cache_stores_nothing():
    cache, _ = make(enabled=False)
    assert not cache.put(req(), resp(), Decimal(0))
    assert cache.get(req()) is None and cache.stats().entries == 0


@pytest.mark.parametrize("finish_reason", ["error", "content_filter", "tool_calls", "other"])
def test_incomplete_answers_are_not_cached(finish_reason):
    cache, _ = make()
    assert not cache.put(req(), resp(finish_reason=finish_reason), Decimal(0))


def test_length_answers_are_cached_but_cache_hits_are_not_stored_again():
    cache, _ = make()
    assert cache.put(req(), resp(finish_reason="length"), Decimal(0))
    assert not cache.put(req(prompt="x"), resp(cache_hit=True), Decimal(0))


def test_ttl_expiry_is_exact():
    cache, clock = make(ttl_s=10)
    cache.put(req(), resp(), Decimal("0.5"))
    clock.advance(9.5)
    assert cache.get(req()) is not None
    clock.advance(0.5)
    assert cache.get(req()) is None
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.expirations) == (0, 0, 1)


def test_purge_expired():
    cache, clock = make(ttl_s=10)
    cache.put(req(prompt="a"), resp(), Decimal(0))
    clock.advance(5)
    cache.put(req(prompt="b"), resp(), Decimal(0))
    clock.advance(5)
    assert cache.purge_expired() == 1
    assert cache.keys() == [req(prompt="b").cache_key()]


def test_lru_eviction_by_entries():
    cache, _ = make(max_entries=2)
    cache.put(req(prompt="a"), resp(), Decimal(0))
    cache.put(req(prompt="b"), resp(), Decimal(0))
    cache.get(req(prompt="a"))  # a is now the most recently used
    cache.put(req(prompt="c"), resp(), Decimal(0))
    assert cache.get(req(prompt="b")) is None
    assert cache.get(req(prompt="a")) is not None and cache.get(req(prompt="c")) is not None
    assert cache.stats().evictions == 1


def test_lru_eviction_by_bytes_and_oversize_refused():
    one = size_of(resp(text="x" * 100))
    cache, _ = make(max_bytes=2 * one + 10)
    cache.put(req(prompt="a"), resp(text="x" * 100), Decimal(0))
    cache.put(req(prompt="b"), resp(text="x" * 100), Decimal(0))
    cache.put(req(prompt="c"), resp(text="x" * 100), Decimal(0))
    assert cache.keys() == [req(prompt="b").cache_key(), req(prompt="c").cache_key()]
    assert cache.stats().bytes == 2 * one
    assert not cache.put(req(prompt="d"), resp(text="x" * (3 * one)), Decimal(0))
    assert cache.stats().entries == 2


def test_replacing_an_entry_keeps_bytes_exact():
    cache, _ = make()
    cache.put(req(), resp(text="short"), Decimal(0))
    cache.put(req(), resp(text="a much longer answer"), Decimal("0.1"))
    assert cache.stats().entries == 1
    assert cache.stats().bytes == size_of(resp(text="a much longer answer"))
    assert cache.get(req()).cost_usd == Decimal("0.1")


def test_clear_drops_entries_and_keeps_counters():
    cache, _ = make()
    cache.put(req(), resp(), Decimal("0.01"))
    cache.get(req())
    cache.clear()
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits) == (0, 0, 1)
    assert cache.get(req()) is None


def test_stats_fold_from_cache_hit_events():
    cache, _ = make()
    cache.put(req(), resp(), Decimal("0.003"))
    log: list[events.Event] = [events.RequestCompleted(latency_ms=900.0, cost_usd=Decimal("0.003"))]
    for _ in range(3):
        entry = cache.get(req())
        log.append(events.RequestCompleted(latency_ms=0.1, cache_hit=True,
                                           saved_cost_usd=entry.cost_usd))
    folded = CacheStats.from_events(log)
    assert folded.hits == cache.stats().hits == 3
    assert folded.saved_cost_usd == cache.stats().saved_cost_usd == Decimal("0.009")


def test_entries_are_picklable():
    cache, _ = make()
    cache.put(req(), resp(), Decimal("0.001"))
    entry = cache.get(req())
    assert pickle.loads(pickle.dumps(entry)) == entry
    assert pickle.loads(pickle.dumps(cache.stats())) == cache.stats()


@pytest.mark.parametrize("cost", [Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity"), 0.01, 1])
def test_bad_cost_is_refused_and_changes_nothing(cost):
    cache, _ = make()
    with pytest.raises(InvalidInput):
        cache.put(req(), resp(), cost)
    assert cache.stats().entries == 0


def test_bad_request_response_or_settings_are_refused():
    cache, _ = make()
    with pytest.raises(InvalidInput):
        cache.get("What is 2+2?")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        cache.put("What is 2+2?", resp(), Decimal(0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        cache.put(req(), {"text": "4"}, Decimal(0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        CacheCore({"max_entries": 1}, clock=ManualClock())  # type: ignore[arg-type]
