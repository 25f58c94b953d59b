"""The ports of the request path that belong to no other concern: outcome reporting and the
event spool. (Admission, budget and cache ports live with their concerns: ``ratelimit``,
``budget``, ``cache``.)"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from .._request import ModelRequest, ProviderResult, StreamChunk
from ..config import ModelConfig
from ..events import Event
from ..selection import StatsCore


class AdapterPort(Protocol):
    """A provider's wire protocol, as the request path uses it (``providers.ProviderAdapter``)."""

    async def complete(self, request: ModelRequest, model: ModelConfig, *,
                       timeout_s: float | None = None) -> ProviderResult: ...

    def stream(self, request: ModelRequest, model: ModelConfig, *,
               timeout_s: float | None = None) -> AsyncIterator[StreamChunk]: ...

    async def aclose(self) -> None: ...


class OutcomePort(Protocol):
    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        """One call's outcome: a passive health signal and a live statistic."""
        ...


class EventPort(Protocol):
    """Where a router's events go (``events.ResilientSpool`` in every runtime)."""

    def check(self) -> None:
        """Raise ``SpoolUnavailable`` when new work must not start: events could not be made
        durable now. Called before a request is admitted, before any provider call."""
        ...

    def write(self, events: Sequence[Event]) -> None:
        """Durable against process death when it returns, or, when the spool cannot take them,
        kept in memory and written later (see ``events._resilient``); never raises for want of
        disk (the response of a billed call is returned, its events wait)."""
        ...

    def write_intent(self, event: Event) -> None:
        """An intent (``AttemptStarted``), durable before the call it announces is made; raises
        ``SpoolUnavailable`` when it cannot be (the call is then not made)."""
        ...


class AckPort(Protocol):
    """When a request may be answered (``settings.events.ack="shipped"``: ``events.GroupShipper``).
    Without one, a request is answered once its events are written (``EventPort.write``)."""

    async def durable(self) -> None:
        """Return once every event written so far is in the shared log; raise
        ``EventsNotShipped`` when they are not within the configured time."""
        ...


class NullOutcomes:
    """Outcomes go nowhere (the in-process router has no health checkers to tell)."""

    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        return None


class ListEvents:
    """Collects events in memory (tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.intents: list[Event] = []

    def check(self) -> None:
        return None

    def write(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def write_intent(self, event: Event) -> None:
        self.intents.append(event)


#: One outcome as batched to a provider's health checker: (ok, error_kind, model_id).
OutcomeReport = tuple[bool, str | None, str]


class HealthReporter(Protocol):
    def report(self, provider: str, batch: list[OutcomeReport]) -> object:
        """Send a batch of outcomes to ``provider``'s health checker (fire and forget)."""
        ...


class BatchedOutcomes:
    """Outcomes recorded into live statistics at once and batched to the health checkers
    (sent by :meth:`flush`, from the router's housekeeping)."""

    def __init__(self, stats: StatsCore, reporter: HealthReporter) -> None:
        self.stats = stats
        self.reporter = reporter
        self._pending: dict[str, list[OutcomeReport]] = defaultdict(list)

    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        self._pending[provider].append((ok, error_kind, model_id))
        self.stats.record(model_id, ok, latency_ms, quality, error_kind=error_kind)

    def flush(self) -> list[object]:
        sent = [self.reporter.report(p, batch) for p, batch in self._pending.items() if batch]
        self._pending = defaultdict(list)
        return sent
