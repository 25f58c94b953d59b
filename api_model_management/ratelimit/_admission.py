"""Rate-limit admission on the router's side: the port the request path uses, and its two
implementations.

- :class:`LocalAdmission`: one reservation per request, straight on :class:`RateLimiterCore`\\ s in
  the same process (no round trip to save; the facades and the in-process router use it).
- :class:`LeaseAdmission`: requests are taken from a *lease*, a small batch of request and token
  capacity granted by the model's RateLimiter (wherever it runs, through a :class:`LeaseGranter`).
  Steady-state admission needs no round trip; one refill serves every request waiting for it. The
  limiter counts a lease in full when granted, so used + leased never exceeds a window, with any
  number of holders.

Everything here is plain and runs on the injected clock; the Ray runtime supplies a granter whose
calls go to RateLimiter actors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from .._clock import SYSTEM_CLOCK, Clock
from .._grants import Growth, Refills, local_deadline
from ..errors import ComponentUnavailable, InvalidInput
from ._core import Lease, RateLimiterCore, count
from ._state import RateLimitState

#: Refill rounds one ``acquire`` may go through before it gives up for now.
MAX_REFILLS = 64
#: A lease holder stops using a lease this long before it expires (absorbs call latency).
SAFETY_MARGIN_S = 0.5
#: A lease grows (doubles) while refills come faster than this, up to ``MAX_LEASE_GROWTH`` times.
FAST_REFILL_S = 1.0
MAX_LEASE_GROWTH = 16
#: Retry hint when the limiter gave nothing and no better hint (seconds).
DEFAULT_RETRY_S = 0.05
#: Retry hint while the limiter cannot be reached (restarting).
UNAVAILABLE_RETRY_S = 1.0


@dataclass(frozen=True)
class RateTicket:
    """One admitted request: its model, the tokens taken, and the port's own handle."""

    model_id: str
    tokens: int
    token: object = None  # a reservation id (LocalAdmission) or a LeaseHolder (LeaseAdmission)


class AdmissionPort(Protocol):
    """Rate-limit admission as the request path sees it."""

    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        """A ticket when one can be had at once (no round trip); None: call ``acquire``."""
        ...

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        """A ticket, or the seconds after which to retry."""
        ...

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        """The request was sent: replace the estimate with the tokens actually used."""
        ...

    def release(self, ticket: RateTicket) -> None:
        """The request was not sent: give its capacity back."""
        ...

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        """The provider said 429: no traffic to ``model_id`` for ``retry_after_s``. This port
        refuses at once; other holders of the model's limiter (other routers) refuse when the
        limiter's push reaches them (``LeaseAdmission.set_cooling``), not before."""
        ...

    def observe(self, model_id: str, state: RateLimitState) -> None:
        """What the provider reported about its limits on a response."""
        ...


# ---------------------------------------------------------------------------------------------


class LocalAdmission:
    """Admission straight on RateLimiter cores (one per model), one reservation per request."""

    #: ``acquire`` answers without waiting for anything (the router need not run it in a task)
    immediate: ClassVar[bool] = True

    def __init__(self, limiters: Mapping[str, RateLimiterCore]) -> None:
        self.limiters = limiters

    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        return None  # ``acquire`` is just as immediate here (and a refusal is recorded once)

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        decision = self._core(model_id).reserve(tokens)
        if not decision.granted:
            return decision.retry_after_s
        return RateTicket(model_id, tokens, decision.reservation_id)

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        self._core(ticket.model_id).commit(_reservation(ticket), actual_tokens)

    def release(self, ticket: RateTicket) -> None:
        self._core(ticket.model_id).release(_reservation(ticket))

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self._core(model_id).cool_down(retry_after_s)

    def observe(self, model_id: str, state: RateLimitState) -> None:
        self._core(model_id).observe(state)

    def _core(self, model_id: str) -> RateLimiterCore:
        core = self.limiters.get(model_id)
        if core is None:
            raise InvalidInput(f"no rate limiter for model {model_id!r}", field="model_id")
        return core


def _lease_of(ticket: RateTicket) -> LeaseHolder:
    if not isinstance(ticket.token, LeaseHolder):
        raise InvalidInput("not a ticket of this port", field="ticket")
    return ticket.token


def _reservation(ticket: RateTicket) -> str:
    if not isinstance(ticket.token, str):
        raise InvalidInput("not a ticket of this port", field="ticket")
    return ticket.token


# ---------------------------------------------------------------------------------------------
# leases


class LeaseGranter(Protocol):
    """Where leases come from: the RateLimiter of each model (a core here, an actor elsewhere).
    Methods that reach an owner which cannot answer raise ``ComponentUnavailable``."""

    async def lease(self, model_id: str, holder: str, requests: int, tokens: int,
                    min_tokens: int = 0) -> Lease:
        """Up to ``requests`` / ``tokens``; nothing (a zero lease with the limiter's wait) when
        fewer than ``min_tokens`` can be granted."""
        ...

    def return_lease(self, model_id: str, lease_id: str, used_requests: int,
                     used_tokens: int) -> Awaitable[object] | None:
        """Sent at once; the awaitable (if any) completes when the owner has it."""
        ...

    def cool_down(self, model_id: str, retry_after_s: float) -> None: ...

    def observe(self, model_id: str, state: RateLimitState) -> None: ...


class LocalLeaseGranter:
    """Leases from RateLimiter cores in this process."""

    def __init__(self, limiters: Mapping[str, RateLimiterCore]) -> None:
        self.limiters = limiters

    async def lease(self, model_id: str, holder: str, requests: int, tokens: int,
                    min_tokens: int = 0) -> Lease:
        return self.limiters[model_id].lease(holder, requests, tokens, min_tokens)

    def return_lease(self, model_id: str, lease_id: str, used_requests: int,
                     used_tokens: int) -> None:
        self.limiters[model_id].return_lease(lease_id, used_requests, used_tokens)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        self.limiters[model_id].cool_down(retry_after_s)

    def observe(self, model_id: str, state: RateLimitState) -> None:
        self.limiters[model_id].observe(state)


class LeaseHolder:
    """Consumes one RateLimiter lease locally: one request and some tokens per ``try_take``."""

    def __init__(self, lease: Lease, clock: Clock = SYSTEM_CLOCK, *,
                 safety_margin_s: float = 0.0) -> None:
        self.lease = lease
        self._clock = clock
        self._stop_at = local_deadline(lease, clock, safety_margin_s)
        self._used_requests = 0
        self._used_tokens = 0
        self._in_flight = 0

    @property
    def lease_id(self) -> str | None:
        return self.lease.lease_id

    @property
    def in_flight(self) -> int:
        """Requests taken and not yet committed (``adjust``) or released (``untake``)."""
        return self._in_flight

    def expired(self) -> bool:
        """True once the lease must no longer be used."""
        return self.lease.lease_id is None or self._clock.monotonic() >= self._stop_at

    def remaining(self) -> tuple[int, int]:
        """(requests, tokens) still available (tokens may be negative after an overrun)."""
        return (self.lease.requests - self._used_requests, self.lease.tokens - self._used_tokens)

    def try_take(self, tokens: int) -> bool:
        """Take one request and ``tokens``; False (nothing taken) when exhausted or expired."""
        tokens = count(tokens, "tokens")
        requests_left, tokens_left = self.remaining()
        if self.expired() or requests_left < 1 or tokens > tokens_left:
            return False
        self._used_requests += 1
        self._used_tokens += tokens
        self._in_flight += 1
        return True

    def adjust(self, taken_tokens: int, actual_tokens: int) -> None:
        """Replace a taken estimate with the tokens actually used (like ``commit``)."""
        taken_tokens = count(taken_tokens, "taken_tokens")
        actual_tokens = count(actual_tokens, "actual_tokens")
        if taken_tokens > self._used_tokens:
            raise InvalidInput("taken_tokens exceeds what was taken", field="taken_tokens")
        self._settle_one()
        self._used_tokens += actual_tokens - taken_tokens

    def untake(self, tokens: int) -> None:
        """The request was not sent: give its request and tokens back (like ``release``)."""
        tokens = count(tokens, "tokens")
        if self._used_requests < 1 or tokens > self._used_tokens:
            raise InvalidInput("nothing of that size was taken", field="tokens")
        self._settle_one()
        self._used_requests -= 1
        self._used_tokens -= tokens

    def _settle_one(self) -> None:
        if self._in_flight < 1:
            raise InvalidInput("no request of this lease is in flight", field="ticket")
        self._in_flight -= 1

    def usage(self) -> tuple[int, int]:
        """(used_requests, used_tokens): the arguments of ``return_lease``."""
        return self._used_requests, self._used_tokens


class LeaseAdmission:
    """Admission from leases: one lease per model at a time, refilled with one call to the
    granter when it runs out; concurrent requests that need the same refill share that call.

    A lease replaced (refilled, cooled down, expired) while tickets taken from it are still in
    flight is *retired*, not returned: it goes back to the limiter with its final usage when its
    last ticket is committed or released, so actual tokens above the estimate reach the limiter
    and a late release frees its request. Until then it stays counted in full at the limiter, and
    a request it has room for again (after a release) may be taken from it.

    Lease size grows while refills come fast (see :class:`Growth`); a 429 cools the model down
    here at once and at its limiter (which pushes it to the other routers: ``set_cooling``)."""

    def __init__(self, granter: LeaseGranter, holder: str, *, lease_requests: int,
                 lease_tokens: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self.granter = granter
        self.holder = holder
        self.lease_requests = lease_requests
        self.lease_tokens = lease_tokens
        self._clock = clock
        self._leases: dict[str, LeaseHolder] = {}
        self._retired: dict[str, list[LeaseHolder]] = {}  # replaced, with tickets in flight
        self._refills: Refills[str, float | None] = Refills()
        self._cooling: dict[str, float] = {}
        self._growth = Growth(clock, start=1, cap=MAX_LEASE_GROWTH, fast_s=FAST_REFILL_S)

    def try_acquire(self, model_id: str, tokens: int) -> RateTicket | None:
        """From a lease held, when one has room and the model is not cooling down."""
        if self._clock.monotonic() < self._cooling.get(model_id, 0.0):
            return None
        return self._take(model_id, tokens)

    async def acquire(self, model_id: str, tokens: int) -> RateTicket | float:
        for _ in range(MAX_REFILLS):
            now = self._clock.monotonic()
            cooling = self._cooling.get(model_id, 0.0)
            if now < cooling:
                return cooling - now
            ticket = self._take(model_id, tokens)
            if ticket is not None:
                return ticket
            retry = await self._refill(model_id, tokens)
            if retry is not None:
                return retry
        return DEFAULT_RETRY_S

    def _take(self, model_id: str, tokens: int) -> RateTicket | None:
        """A ticket from the model's current lease, else from a retired one with room again."""
        current = self._leases.get(model_id)
        held = [] if current is None else [current]
        for lease in held + self._retired.get(model_id, []):
            if lease.try_take(tokens):
                return RateTicket(model_id, tokens, lease)
        return None

    async def _refill(self, model_id: str, tokens: int) -> float | None:
        """A new lease for ``model_id`` (None), or the seconds after which to try again (one
        refill per model at a time, finished even when its caller gives up: see
        :class:`Refills`)."""
        return await self._refills.run(model_id, lambda: self._new_lease(model_id, tokens))

    async def _new_lease(self, model_id: str, tokens: int) -> float | None:
        self._retire(model_id)
        size = self._growth.next(model_id)
        try:
            lease = await self.granter.lease(
                model_id, self.holder, self.lease_requests * size,
                max(self.lease_tokens * size, tokens), min_tokens=tokens,
            )
        except ComponentUnavailable:  # restarting: refuse this model for now, never over-admit
            return UNAVAILABLE_RETRY_S
        self._growth.arrived(model_id)
        if lease.requests <= 0 or lease.tokens < tokens:
            if lease.lease_id is not None:
                self.granter.return_lease(model_id, lease.lease_id, 0, 0)
            return max(0.001, lease.retry_after_s or DEFAULT_RETRY_S)
        self._leases[model_id] = LeaseHolder(lease, self._clock, safety_margin_s=SAFETY_MARGIN_S)
        return None

    def _retire(self, model_id: str) -> Awaitable[object] | None:
        """Stop taking from the model's current lease: hand it back now, or (tickets in flight)
        keep it retired until its last ticket is settled."""
        lease = self._leases.pop(model_id, None)
        if lease is None:
            return None
        if lease.in_flight:
            self._retired.setdefault(model_id, []).append(lease)
            return None
        return self._hand_back(model_id, lease)

    def _hand_back(self, model_id: str, lease: LeaseHolder) -> Awaitable[object] | None:
        if lease.lease_id is None:
            return None
        used_requests, used_tokens = lease.usage()
        return self.granter.return_lease(model_id, lease.lease_id, used_requests, max(0, used_tokens))

    def commit(self, ticket: RateTicket, actual_tokens: int) -> None:
        """Lease capacity is counted at grant time; the actual tokens correct the use of the
        ticket's own lease (current or retired)."""
        lease = _lease_of(ticket)
        lease.adjust(ticket.tokens, actual_tokens)
        self._settled(ticket.model_id, lease)

    def release(self, ticket: RateTicket) -> None:
        lease = _lease_of(ticket)
        lease.untake(ticket.tokens)
        self._settled(ticket.model_id, lease)

    def _settled(self, model_id: str, lease: LeaseHolder) -> None:
        """A retired lease goes back once its last ticket is settled (the reply is not awaited:
        a lease never returned stays counted in full at the limiter)."""
        retired = self._retired.get(model_id, [])
        if lease.in_flight == 0 and lease in retired:
            retired.remove(lease)
            if not retired:
                del self._retired[model_id]
            self._hand_back(model_id, lease)

    def cool_down(self, model_id: str, retry_after_s: float) -> None:
        """Refuses here at once; the limiter pushes the cool-down to the other holders."""
        self._cooling[model_id] = self._clock.monotonic() + retry_after_s
        self._retire(model_id)
        self.granter.cool_down(model_id, retry_after_s)

    def set_cooling(self, model_id: str, until_monotonic: float | None) -> None:
        """A cool-down pushed by the model's limiter (None: it is over)."""
        if until_monotonic is None:
            self._cooling.pop(model_id, None)
        else:
            self._cooling[model_id] = until_monotonic

    def extend_cooling(self, model_id: str, until_monotonic: float) -> None:
        """A cool-down heard of late (polled): never shortens one this router set itself."""
        if until_monotonic > self._cooling.get(model_id, 0.0):
            self._cooling[model_id] = until_monotonic

    def observe(self, model_id: str, state: RateLimitState) -> None:
        if state.remaining_requests == 0 or state.remaining_tokens == 0:
            self.granter.observe(model_id, state)

    def return_idle(self) -> list[Awaitable[object]]:
        """Hand back expired leases (their unused part); one with tickets in flight is retired
        and goes back after its last ticket."""
        expired = [m for m, h in self._leases.items() if h.expired()]
        return [ref for m in expired if (ref := self._retire(m)) is not None]

    def return_all(self) -> list[Awaitable[object]]:
        """Hand back every lease (end of a run); those with tickets in flight are retired and go
        back after their last ticket (returned now, their late usage would be lost)."""
        return [ref for m in list(self._leases) if (ref := self._retire(m)) is not None]

    def held(self) -> dict[str, tuple[int, int]]:
        """(requests, tokens) left in each lease held now."""
        return {m: h.remaining() for m, h in self._leases.items()}
