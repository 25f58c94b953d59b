"""The CachePort contract: what the response cache promises the request path, whichever
implementation serves it.

Every port, alone or as one of two routers' views of one cache:

- ``get`` after ``put`` returns the response and what it cost (and how long the entry has
  left), to every view of the cache;
- a request never put (or put differently) is a miss: None;
- an entry older than the TTL is never returned, by any view, wherever a copy of it sits;
- what must not be cached is not stored: requests that are not cacheable (temperature above 0
  without opting in, or ``cacheable=False``), incomplete answers and answers already served from
  the cache.

One abstract suite (:class:`CacheContract`), one subclass per implementation: ``LocalCache`` and
``TieredCache`` over a ``LocalCache`` (unit, on a ManualClock), and ``TieredCache`` over the
Cache actor (integration, real Ray; TTLs under a second, waited out on the system clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest

from api_model_management import ModelRequest, ModelResponse
from api_model_management._clock import SYSTEM_CLOCK, Clock, ManualClock
from api_model_management.cache import CacheCore, CacheHit, CachePort, LocalCache, TieredCache
from api_model_management.config import CacheSettings

from _contract import config_in, ray_actors, run

D = Decimal
LONG_TTL_S = 3600.0


def request(prompt: str = "Explain what a hash map is.", **parameters: object) -> ModelRequest:
    return ModelRequest(prompt=prompt, parameters={"temperature": 0, **parameters})


def response(text: str = "A table of buckets indexed by a hash of the key.",
             **fields: object) -> ModelResponse:
    values: dict[str, object] = {"request_id": "r1", "model_id": "gpt-4.1-mini",
                                 "provider": "openai", "finish_reason": "stop", **fields}
    return ModelResponse(text=text, **values)  # type: ignore[arg-type]


@dataclass
class Cache:
    """Two routers' views of one cache, and time."""

    ports: list[CachePort]
    ttl_s: float
    wait: Callable[[float], Awaitable[None]]  # moves a ManualClock, or sleeps (system clock)


Make = Callable[[float], Cache]  # make(ttl_s)
Found = tuple[ModelResponse, Decimal] | None


async def lookup(port: CachePort, asked: ModelRequest) -> Found:
    """What ``port`` has for ``asked``: (response, cost), having checked the time it has left."""
    hit = await port.get(asked)
    if hit is None:
        return None
    assert isinstance(hit, CacheHit) and 0 < hit.expires_in_s <= LONG_TTL_S
    return hit.response, hit.cost_usd


class CacheContract:
    """What every CachePort does; a subclass supplies the ``make`` fixture and ``short_ttl_s``."""

    short_ttl_s: float = 60.0

    @pytest.fixture
    def make(self) -> Make:
        raise NotImplementedError

    def test_get_after_put_returns_the_response_and_its_cost(self, make: Make) -> None:
        mine, theirs = make(LONG_TTL_S).ports
        answer = response()

        async def scenario() -> list[Found]:
            mine.put(request(), answer, D("0.0123"))
            return [await lookup(mine, request()), await lookup(theirs, request())]

        assert run(scenario()) == [(answer, D("0.0123"))] * 2

    def test_a_miss_is_none(self, make: Make) -> None:
        mine, theirs = make(LONG_TTL_S).ports

        async def scenario() -> list[Found]:
            misses = [await lookup(mine, request()), await lookup(theirs, request())]
            mine.put(request(), response(), D("0.01"))
            return misses + [await lookup(theirs, request("Something else.")),
                             await lookup(theirs, request(seed=7)),
                             await lookup(mine, request(top_p=0.5))]

        assert run(scenario()) == [None] * 5

    def test_an_entry_expires_after_its_ttl(self, make: Make) -> None:
        cache = make(self.short_ttl_s)
        mine, theirs = cache.ports

        async def scenario() -> None:
            mine.put(request(), response(), D("0.01"))
            await cache.wait(cache.ttl_s * 0.3)
            assert await lookup(mine, request()) is not None
            await cache.wait(cache.ttl_s * 0.8)  # 1.1 TTL after the put
            assert await lookup(mine, request()) is None
            assert await lookup(theirs, request()) is None

        run(scenario())

    def test_a_copy_expires_with_the_original(self, make: Make) -> None:
        cache = make(self.short_ttl_s)
        mine, theirs = cache.ports

        async def scenario() -> Found:
            mine.put(request(), response(), D("0.01"))
            await cache.wait(cache.ttl_s * 0.55)
            assert await lookup(theirs, request()) is not None  # wherever it copies it to
            await cache.wait(cache.ttl_s * 0.55)  # 1.1 TTL after the put
            return await lookup(theirs, request())

        assert run(scenario()) is None

    def test_requests_that_are_not_cacheable_are_not_stored(self, make: Make) -> None:
        mine, theirs = make(LONG_TTL_S).ports
        warm = ModelRequest(prompt="Write a poem.", parameters={"temperature": 0.7})
        opted_out = ModelRequest(prompt="Explain a heap.", parameters={"temperature": 0},
                                 cacheable=False)
        opted_in = ModelRequest(prompt="Write a haiku.", parameters={"temperature": 0.7},
                                cacheable=True)

        async def scenario() -> list[Found]:
            for each in (warm, opted_out, opted_in):
                mine.put(each, response(), D("0.01"))
            return [await lookup(port, each) for each in (warm, opted_out, opted_in)
                    for port in (mine, theirs)]

        found = run(scenario())
        assert found[:4] == [None] * 4
        assert found[4:] == [(response(), D("0.01"))] * 2  # opting in is cacheable

    def test_incomplete_and_cached_answers_are_not_stored(self, make: Make) -> None:
        mine, theirs = make(LONG_TTL_S).ports
        answers = {"cut": response(finish_reason="error"),
                   "filtered": response(finish_reason="content_filter"),
                   "served": response(cache_hit=True)}

        async def scenario() -> list[Found]:
            for prompt, answer in answers.items():
                mine.put(request(prompt), answer, D("0.01"))
            return [await lookup(port, request(prompt)) for prompt in answers
                    for port in (mine, theirs)]

        assert run(scenario()) == [None] * 6


# ---------------------------------------------------------------------------------------------
# the implementations


def settings(ttl_s: float) -> CacheSettings:
    return CacheSettings(ttl_s=ttl_s)


def advancing(clock: ManualClock) -> Callable[[float], Awaitable[None]]:
    async def wait(seconds: float) -> None:
        clock.advance(seconds)

    return wait


def tiered(shared: CachePort, ttl_s: float, clock: Clock) -> list[CachePort]:
    return [TieredCache(CacheCore(settings(ttl_s), clock=clock), shared) for _ in range(2)]


@pytest.mark.unit
class TestLocalCache(CacheContract):
    @pytest.fixture
    def make(self) -> Make:
        def make(ttl_s: float) -> Cache:
            clock = ManualClock()
            core = CacheCore(settings(ttl_s), clock=clock)
            return Cache([LocalCache(core), LocalCache(core)], ttl_s, advancing(clock))

        return make


class TieredCacheContract(CacheContract):
    """TieredCache, whatever its shared tier."""


@pytest.mark.unit
class TestTieredCacheLocal(TieredCacheContract):
    @pytest.fixture
    def make(self) -> Make:
        def make(ttl_s: float) -> Cache:
            clock = ManualClock()
            shared = LocalCache(CacheCore(settings(ttl_s), clock=clock))
            return Cache(tiered(shared, ttl_s, clock), ttl_s, advancing(clock))

        return make


@pytest.mark.integration
class TestTieredCacheRay(TieredCacheContract):
    short_ttl_s = 0.8  # the Cache actor runs on the system clock: waited out, under a second

    @pytest.fixture
    def make(self, ray_session, tmp_path):
        import ray

        from api_model_management.runtime._actors import CacheActor
        from api_model_management.runtime._ports import RaySharedCache

        with ray_actors() as actors:
            def make(ttl_s: float) -> Cache:
                config = config_in(tmp_path, cache={"ttl_s": ttl_s})
                actor = actors.start(CacheActor, config)
                ray.get(actor.stats.remote())  # started: a put (sent, not awaited) is stored now
                shared = RaySharedCache(actor)
                return Cache(tiered(shared, ttl_s, SYSTEM_CLOCK), ttl_s, asyncio.sleep)

            yield make
