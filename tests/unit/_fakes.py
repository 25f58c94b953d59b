"""Test doubles for the request path: a scripted ProviderAdapter, a recording sleep, and helpers to
build a RouterCore on the local cores with a ManualClock (no Ray, no sockets, no real waiting).

    adapter = FakeAdapter("openai", scripts={"gpt-4.1-mini": [ProviderTimeout(), ok("fine")]})
    router, clock, sleep, events = make_router(adapters={"openai": adapter})

A script is a list of outcomes per model, consumed in order (one per call); once a model's script
is used up it answers with ``default`` (a good answer). An outcome is a ``ProviderResult``, an
exception instance (raised), or a :class:`Streamed` (text deltas, then a result, an exception, or
nothing at all). ``complete`` turns a ``Streamed`` into its end (result or error); ``stream`` turns a
``ProviderResult`` into word deltas and a final chunk, and raises an exception before any text.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from api_model_management._clock import ManualClock
from api_model_management._request import ModelRequest, ProviderResult, StreamChunk
from api_model_management.config import ModelConfig, RegistryConfig
from api_model_management.config._load import demo_config, override
from api_model_management.providers import ProbeResult
from api_model_management.routing import ListEvents, build_local_router

GOOD_PROMPT = "Explain what a hash map is and when to use one."
GOOD_ANSWER = (
    "A hash map stores key value pairs in an array of buckets indexed by a hash of the key. "
    "Use one when you need fast lookups, inserts and deletes by key in average constant time."
)


def ok(text: str = GOOD_ANSWER, *, input_tokens: int = 12, output_tokens: int = 50,
       cached_tokens: int = 0, finish_reason: str = "stop", **extra: Any) -> ProviderResult:
    """A successful provider result."""
    return ProviderResult(text=text, finish_reason=finish_reason, input_tokens=input_tokens,
                          output_tokens=output_tokens, cached_tokens=cached_tokens, **extra)


@dataclass(frozen=True)
class Streamed:
    """A scripted stream: ``deltas`` then ``then`` (a result, an exception, or None: the stream
    ends without a final chunk)."""

    deltas: tuple[str, ...]
    then: ProviderResult | BaseException | None


@dataclass
class Call:
    """One recorded adapter call."""

    kind: str  # complete | stream | probe
    model_id: str | None
    request: ModelRequest | None
    timeout_s: float | None


@dataclass
class FakeAdapter:
    """A ProviderAdapter for one provider whose answers are scripted per model.

    ``hold``, when set, makes every call wait on that event before answering (a slow provider);
    ``in_flight`` / ``max_in_flight`` count concurrent calls.
    """

    name: str
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    default: ProviderResult = field(default_factory=ok)
    hold: asyncio.Event | None = None
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    closed: bool = False
    probe_result: ProbeResult | BaseException | None = None

    def script(self, model_id: str, *outcomes: Any) -> FakeAdapter:
        self.scripts.setdefault(model_id, []).extend(outcomes)
        return self

    def calls_to(self, model_id: str) -> list[Call]:
        return [c for c in self.calls if c.model_id == model_id]

    def _next(self, model_id: str) -> Any:
        queue = self.scripts.get(model_id)
        if queue:
            return queue.pop(0)
        return self.default

    async def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.hold is not None:
            await self.hold.wait()

    async def complete(self, request: ModelRequest, model: ModelConfig, *,
                       timeout_s: float | None = None) -> ProviderResult:
        self.calls.append(Call("complete", model.id, request, timeout_s))
        outcome = self._next(model.id)
        await self._enter()
        try:
            if isinstance(outcome, Streamed):
                outcome = outcome.then if outcome.then is not None else ok("".join(outcome.deltas))
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        finally:
            self.in_flight -= 1

    async def stream(self, request: ModelRequest, model: ModelConfig, *,
                     timeout_s: float | None = None) -> AsyncIterator[StreamChunk]:
        self.calls.append(Call("stream", model.id, request, timeout_s))
        outcome = self._next(model.id)
        if isinstance(outcome, ProviderResult):
            outcome = Streamed(tuple(_words(outcome.text)), outcome)
        await self._enter()
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            for delta in outcome.deltas:
                yield StreamChunk(delta=delta, model_id=model.id)
            if isinstance(outcome.then, BaseException):
                raise outcome.then
            if outcome.then is not None:
                yield StreamChunk(done=True, result=outcome.then, model_id=model.id)
        finally:
            self.in_flight -= 1

    async def probe(self) -> ProbeResult:
        self.calls.append(Call("probe", None, None, None))
        if isinstance(self.probe_result, BaseException):
            raise self.probe_result
        return self.probe_result or ProbeResult(ok=True, latency_ms=1.0)

    async def aclose(self) -> None:
        self.closed = True


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]] if text else []


class RecordingSleep:
    """The backoff sleeps of a router on a ManualClock (which moves instead of waiting)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    @property
    def delays(self) -> list[float]:
        return self.clock.slept


def fake_adapters(config: RegistryConfig, **scripted: FakeAdapter) -> dict[str, FakeAdapter]:
    """A FakeAdapter for every provider of ``config``; ``scripted`` replaces some of them."""
    adapters = {name: FakeAdapter(name) for name in config.providers}
    adapters.update(scripted)
    return adapters


def make_router(config: RegistryConfig | None = None, *, adapters: dict | None = None,
                seed: int = 0, **router_kwargs: Any):
    """(router, clock, sleep, events): a RouterCore on local cores, a ManualClock driving its time."""
    config = config or demo_config()
    clock = ManualClock()
    sleep = RecordingSleep(clock)
    events = ListEvents()
    router = build_local_router(
        config, adapters=adapters if adapters is not None else fake_adapters(config),
        events=events, clock=clock, rng=random.Random(seed), **router_kwargs,
    )
    return router, clock, sleep, events


def config_with(**settings: Any) -> RegistryConfig:
    """The demo config with ``settings`` sections merged in."""
    return override(demo_config(), settings=settings)


def of_type(events: Iterable[Any], *types: type) -> list[Any]:
    return [e for e in events if isinstance(e, types)]


def names(events: Iterable[Any]) -> list[str]:
    return [type(e).__name__ for e in events]
