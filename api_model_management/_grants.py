"""What rate-limit leases and budget slices share on the holder's side: when local use must stop
(on the holder's clock) and how the size of the next grant grows while a holder runs out fast.

A lease (``ratelimit``) and a slice (``budget``) are both capacity granted by one owner to one
router, for local use until a deadline, so that steady-state admission needs no round trip.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, Protocol, TypeVar

from ._clock import Clock

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Grant(Protocol):
    """The timing fields of a lease or a slice."""

    @property
    def expires_at_monotonic(self) -> float: ...

    @property
    def ttl_s(self) -> float: ...

    @property
    def clock_domain(self) -> str: ...


def local_deadline(grant: Grant, clock: Clock, safety_margin_s: float) -> float:
    """When local use of ``grant`` must stop, on the holder's clock.

    The granter's ``expires_at_monotonic`` is read directly when both share a monotonic clock (the
    same host boot, ``Clock.domain``). A grant from another host counts its TTL from receipt:
    later than the granter's deadline by the one-way delivery time, which the safety margin must
    cover, as it covers call latency."""
    domain = getattr(clock, "domain", "")
    if grant.clock_domain and domain and grant.clock_domain != domain:
        return clock.monotonic() + grant.ttl_s - safety_margin_s
    return grant.expires_at_monotonic - safety_margin_s


class Growth:
    """The size (a multiple of the base grant) of a holder's next grant, per key.

    A refill within ``fast_s`` of the previous one doubles the size, up to ``cap``: a busy key
    needs fewer round trips. A slower refill starts again from ``start`` when ``reset`` is set
    (leases: capacity held idle is capacity others cannot use), or keeps the size (slices).

    The pace counts from when the previous grant *arrived* (:meth:`arrived`), not from when it
    was asked for: how fast the holder used it up. Counted from the ask, a queue at the owner
    made every refill look slow once grants took over ``fast_s`` to come back, so grants shrank
    to the base size exactly when the owner was busiest (``benchmarks/capacity_sim.py``: 1,954 of
    10,000 requests/s admitted over 1,024 routers; about 12,000 with the pace from arrival)."""

    def __init__(self, clock: Clock, *, start: int, cap: int, fast_s: float = 1.0,
                 reset: bool = True) -> None:
        self._clock = clock
        self.start, self.cap, self.fast_s, self.reset = start, cap, fast_s, reset
        self._size: dict[object, int] = {}
        self._last: dict[object, float] = {}

    def next(self, key: object) -> int:
        """The size for a refill of ``key`` now (and remember this refill)."""
        now = self._clock.monotonic()
        size = self._size.get(key, self.start)
        if now - self._last.get(key, -1e18) < self.fast_s:
            size = min(size * 2, self.cap)
        elif self.reset:
            size = self.start
        self._size[key], self._last[key] = size, now
        return size

    def arrived(self, key: object) -> None:
        """The grant asked for by the last :meth:`next` of ``key`` arrived now: the next
        refill's pace counts from here."""
        if key in self._last:
            self._last[key] = self._clock.monotonic()

    def idle_for(self, key: object) -> float:
        """Seconds since the last refill of ``key`` arrived (or was asked for, while it has not
        arrived); infinite when never refilled."""
        last = self._last.get(key)
        return float("inf") if last is None else self._clock.monotonic() - last


class Refills(Generic[K, T]):
    """At most one refill per key in flight, shared by every caller that runs out meanwhile.

    A refill runs as a task of its own: a caller that gives up (is cancelled) while it waits does
    not stop it. The owner grants the lease or slice whether or not the asker still listens, so a
    refill stopped half-way would leave the grant counted at the owner and unknown here (a slice
    held at the CostLedger until the router is gone; a lease's capacity until it expires). Let to
    finish, the grant is taken in and goes back with the holder's next return or flush."""

    def __init__(self) -> None:
        self._pending: dict[K, asyncio.Future[T]] = {}

    async def run(self, key: K, refill: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The result of the refill in flight for ``key``, else of ``refill()`` started now."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(refill())
            self._pending[key] = pending
            pending.add_done_callback(functools.partial(self._done, key))
        return await asyncio.shield(pending)

    def _done(self, key: K, done: asyncio.Future[T]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter re-raises it itself
