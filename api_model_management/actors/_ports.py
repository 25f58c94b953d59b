"""The ports the request path needs, and their in-process implementations.

The Router core talks to admission (rate limits), the budget, the shared cache, outcome reporting
and the event spool only through these small interfaces. In-process implementations wrap the pure
cores directly (tests, and a router without Ray); the Ray implementations in ``_ray_ports.py`` use
leases and slices so that steady-state admission needs no round trip (design §4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from .._request import ModelRequest, ModelResponse, RateLimitState
from ..events import Event


@dataclass(frozen=True)
class SpendKey:
    provider: str
    model_id: str
    agent_type: str


@dataclass(frozen=True)
class RateTicket:
    model_id: str
    tokens: int
    token: Any = None  # the port's own handle (reservation id or lease)


@dataclass(frozen=True)
class BudgetTicket:
    key: SpendKey
    amount_usd: Decimal
    token: Any = None


class AdmissionPort(Protocol):
    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        """A ticket when one can be had at once (no round trip); None: call ``acquire``."""

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        """A ticket, or the seconds after which to retry."""

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None: ...

    def release(self, ticket: RateTicket) -> None: ...

    def cool_down(self, model_id: str, retry_after_s: float) -> None: ...

    def observe(self, model_id: str, state: RateLimitState) -> None: ...


class BudgetPort(Protocol):
    def try_reserve(self, key: SpendKey, amount_usd: Decimal) -> BudgetTicket | None:
        """A ticket when one can be had at once (no round trip); None: call ``reserve``."""

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        """Raises ``BudgetExceeded``."""

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None: ...

    def release(self, ticket: BudgetTicket) -> None: ...


class CachePort(Protocol):
    async def get(self, request: ModelRequest) -> tuple[ModelResponse, Decimal] | None: ...

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None: ...


class OutcomePort(Protocol):
    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None: ...


class EventPort(Protocol):
    def write(self, events: Sequence[Event]) -> None:
        """Durable against process death when it returns."""


# ---------------------------------------------------------------------------------------------
# in-process implementations over the pure cores


class LocalAdmission:
    """Admission straight on RateLimiter cores (one per model)."""

    def __init__(self, limiters: dict) -> None:
        self.limiters = limiters

    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        return None  # ``acquire`` is just as immediate here (and a refusal is recorded once)

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        decision = self.limiters[model_id].reserve(tokens)
        if not decision.granted:
            return decision.retry_after_s
        return RateTicket(model_id, tokens, decision.reservation_id)

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        self.limiters[ticket.model_id].commit(ticket.token, actual_tokens)

    def release(self, ticket: RateTicket) -> None:
        self.limiters[ticket.model_id].release(ticket.token)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self.limiters[model_id].cool_down(retry_after_s)

    def observe(self, model_id: str, state: RateLimitState) -> None:
        self.limiters[model_id].observe(state)


class LocalBudget:
    """Budget straight on a CostLedger core."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger

    def try_reserve(self, key: SpendKey, amount_usd: Decimal) -> BudgetTicket | None:
        return None  # ``reserve`` is just as immediate here, and raises the typed error itself

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        rid = self.ledger.reserve(key, amount_usd, request_id=request_id)
        return BudgetTicket(key, amount_usd, rid)

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        self.ledger.settle(ticket.token, actual_usd)

    def release(self, ticket: BudgetTicket) -> None:
        self.ledger.release(ticket.token)


class LocalCache:
    def __init__(self, core) -> None:
        self.core = core

    async def get(self, request: ModelRequest):
        entry = self.core.get(request)
        if entry is None:
            return None
        return entry.response, entry.cost_usd

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> None:
        self.core.put(request, response, cost_usd)


class NullOutcomes:
    def outcome(self, *args, **kwargs) -> None:
        return None


class ListEvents:
    """Collects events in memory (tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
