"""Router-side holders of RateLimiter leases and CostLedger budget slices (pure, clock injected).

A router asks the RateLimiter for a :class:`~.rate_limiter.Lease` and the CostLedger for a
:class:`~.cost_ledger.Slice`, then admits requests locally against them with no round trip. When a
holder is exhausted or expired, the router returns the used part (``usage()`` / ``spent_usd``) and
asks for a new one.

Expiry is read on the holder's clock against the granter's ``expires_at_monotonic`` when both share
a monotonic clock (the same host boot, ``Clock.domain``), and counted from receipt with the granted
``ttl_s`` when they do not (a router on another node); ``safety_margin_s`` stops local use that much
earlier to absorb call latency.
"""

from __future__ import annotations

from decimal import Decimal

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import InvalidInput
from .cost_ledger import Slice, to_money
from .rate_limiter import Lease, _count


class LeaseHolder:
    """Consumes one RateLimiter lease locally: one request and some tokens per ``try_take``."""

    def __init__(self, lease: Lease, clock: Clock = SYSTEM_CLOCK, *, safety_margin_s: float = 0.0):
        self.lease = lease
        self._clock = clock
        self._stop_at = _stop_at(lease, clock, safety_margin_s)
        self._used_requests = 0
        self._used_tokens = 0

    @property
    def lease_id(self) -> str | None:
        return self.lease.lease_id

    def expired(self) -> bool:
        """True once the lease must no longer be used."""
        return self.lease.lease_id is None or self._clock.monotonic() >= self._stop_at

    def remaining(self) -> tuple[int, int]:
        """(requests, tokens) still available (tokens may be negative after an overrun)."""
        return (self.lease.requests - self._used_requests, self.lease.tokens - self._used_tokens)

    def try_take(self, tokens: int) -> bool:
        """Take one request and ``tokens``; False (nothing taken) when exhausted or expired."""
        tokens = _count(tokens, "tokens")
        requests_left, tokens_left = self.remaining()
        if self.expired() or requests_left < 1 or tokens > tokens_left:
            return False
        self._used_requests += 1
        self._used_tokens += tokens
        return True

    def adjust(self, taken_tokens: int, actual_tokens: int) -> None:
        """Replace a taken estimate with the tokens actually used (like ``commit``)."""
        taken_tokens = _count(taken_tokens, "taken_tokens")
        actual_tokens = _count(actual_tokens, "actual_tokens")
        if taken_tokens > self._used_tokens:
            raise InvalidInput("taken_tokens exceeds what was taken", field="taken_tokens")
        self._used_tokens += actual_tokens - taken_tokens

    def untake(self, tokens: int) -> None:
        """The request was not sent: give its request and tokens back (like ``release``)."""
        tokens = _count(tokens, "tokens")
        if self._used_requests < 1 or tokens > self._used_tokens:
            raise InvalidInput("nothing of that size was taken", field="tokens")
        self._used_requests -= 1
        self._used_tokens -= tokens

    def usage(self) -> tuple[int, int]:
        """(used_requests, used_tokens): the arguments of ``return_lease``."""
        return self._used_requests, self._used_tokens


class SliceHolder:
    """Spends one CostLedger budget slice locally: reserve worst case, settle actual."""

    def __init__(
        self, budget_slice: Slice, clock: Clock = SYSTEM_CLOCK, *, safety_margin_s: float = 0.0
    ):
        self.slice = budget_slice
        self._clock = clock
        self._stop_at = _stop_at(budget_slice, clock, safety_margin_s)
        self._reserved = Decimal(0)
        self._spent = Decimal(0)

    @property
    def slice_id(self) -> str | None:
        return self.slice.slice_id

    def expired(self) -> bool:
        """True once no new spend may start against the slice."""
        return self.slice.slice_id is None or self._clock.monotonic() >= self._stop_at

    def available_usd(self) -> Decimal:
        return self.slice.amount_usd - self._reserved - self._spent

    def try_reserve(self, amount_usd: Decimal) -> bool:
        """Hold ``amount_usd`` (a worst case) for one call; False when it does not fit."""
        amount = to_money(amount_usd, "amount_usd")
        if self.expired() or amount > self.available_usd():
            return False
        self._reserved += amount
        return True

    def settle(self, reserved_usd: Decimal, actual_usd: Decimal) -> None:
        """The call cost ``actual_usd`` (recorded as the truth even above the reservation)."""
        reserved = self._held(reserved_usd)
        self._reserved -= reserved
        self._spent += to_money(actual_usd, "actual_usd")

    def release(self, reserved_usd: Decimal) -> None:
        """The call was not made: the held amount is free again."""
        self._reserved -= self._held(reserved_usd)

    def _held(self, reserved_usd: Decimal) -> Decimal:
        reserved = to_money(reserved_usd, "reserved_usd")
        if reserved > self._reserved:
            raise InvalidInput("more than was reserved", field="reserved_usd")
        return reserved

    @property
    def spent_usd(self) -> Decimal:
        """The argument of ``return_slice`` (calls still in flight are not counted yet)."""
        return self._spent

    @property
    def in_flight_usd(self) -> Decimal:
        return self._reserved


def _stop_at(grant: Lease | Slice, clock: Clock, safety_margin_s: float) -> float:
    """When local use must stop, on the holder's clock. A grant from another host (another
    monotonic clock) counts its TTL from receipt: later than the granter's deadline by the one-way
    delivery time, which the safety margin must cover, as it covers call latency."""
    domain = getattr(clock, "domain", "")
    if grant.clock_domain and domain and grant.clock_domain != domain:
        return clock.monotonic() + grant.ttl_s - safety_margin_s
    return grant.expires_at_monotonic - safety_margin_s
