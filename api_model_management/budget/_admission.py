"""Budget admission on the router's side: the port the request path uses, and its two
implementations.

- :class:`LocalBudget`: one reservation per call, straight on a :class:`CostLedgerCore` in the
  same process.
- :class:`SliceBudget`: calls reserve from a *slice*, a piece of budget granted by the CostLedger
  (wherever it runs, through a :class:`SliceGranter`) and spent locally; refilled with one call
  when it runs out. The ledger holds a slice in full until it comes back, so settled + reserved +
  sliced never passes a strict limit, with any number of holders.

Keys no configured limit applies to (:func:`is_limited`) need no reservation at all: their spend
is reported in batches. Everything here is plain and runs on the injected clock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Protocol

from .._clock import SYSTEM_CLOCK, Clock
from .._grants import Growth, Refills, local_deadline
from ..config import BudgetSettings
from ..errors import BudgetExceeded, ComponentUnavailable, InvalidInput
from ._ledger import CostLedgerCore, LimitRef, Slice, to_money
from ._limits import SpendKey, is_limited

log = logging.getLogger(__name__)

#: Refill rounds one ``reserve`` may go through.
MAX_REFILLS = 64
#: A slice holder stops spending this long before the slice expires (absorbs call latency).
SAFETY_MARGIN_S = 0.5
#: A first slice covers this many worst-case calls; it doubles while refills come faster than
#: ``FAST_REFILL_S``, up to ``MAX_SLICE_CALLS`` calls.
SLICE_CALLS = 8
FAST_REFILL_S = 1.0
MAX_SLICE_CALLS = 512
#: An idle slice (no refill for this long) goes back at the next flush.
IDLE_RETURN_S = 1.0


@dataclass(frozen=True)
class BudgetTicket:
    """One admitted call's budget hold: its key, the worst case held, and the port's handle."""

    key: SpendKey
    amount_usd: Decimal
    token: object = None  # a reservation id, a SliceHolder, or None (no limit applies)
    request_id: str | None = None


class BudgetPort(Protocol):
    """Budget admission as the request path sees it."""

    def try_reserve(self, key: SpendKey, amount_usd: Decimal,
                    request_id: str | None = None) -> BudgetTicket | None:
        """A ticket when one can be had at once (no round trip); None: call ``reserve``."""
        ...

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        """Hold ``amount_usd`` (a worst case); raises ``BudgetExceeded`` (or
        ``ComponentUnavailable`` when strict budgets cannot be checked)."""
        ...

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        """The call was made and cost ``actual_usd``."""
        ...

    def release(self, ticket: BudgetTicket) -> None:
        """The call was not made: free the hold."""
        ...


class LocalBudget:
    """Budget straight on a CostLedger core, one reservation per call (none for keys no limit
    applies to: their spend is recorded when settled)."""

    #: ``reserve`` answers without waiting for anything (the router need not run it in a task)
    immediate: ClassVar[bool] = True

    def __init__(self, ledger: CostLedgerCore) -> None:
        self.ledger = ledger
        self._limited: dict[SpendKey, bool] = {}

    def _is_limited(self, key: SpendKey) -> bool:
        hit = self._limited.get(key)
        if hit is None:
            hit = self._limited[key] = is_limited(self.ledger.settings.limits, key)
        return hit

    def try_reserve(self, key: SpendKey, amount_usd: Decimal,
                    request_id: str | None = None) -> BudgetTicket | None:
        if not self._is_limited(key):
            return BudgetTicket(key, amount_usd, None, request_id)
        return None  # ``reserve`` is just as immediate here, and raises the typed error itself

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        if not self._is_limited(key):
            return BudgetTicket(key, amount_usd, None, request_id)
        rid = self.ledger.reserve(key, amount_usd, request_id=request_id)
        return BudgetTicket(key, amount_usd, rid, request_id)

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        if ticket.token is None:
            if actual_usd > 0:
                self.ledger.record(ticket.key, actual_usd)
            return
        self.ledger.settle(_reservation(ticket), actual_usd)

    def release(self, ticket: BudgetTicket) -> None:
        if ticket.token is not None:
            self.ledger.release(_reservation(ticket))


def _exceeded(key: SpendKey, amount_usd: Decimal, limit: LimitRef | None) -> BudgetExceeded:
    """The refusal, naming the limit that refused when the ledger said which."""
    if limit is None:
        return BudgetExceeded(
            f"no budget left for a worst case of ${amount_usd} (agent type {key.agent_type!r}, "
            f"model {key.model_id})", scope_key=key.agent_type, requested_usd=amount_usd,
        )
    return BudgetExceeded(
        f"{limit.window} budget of {limit.limit_usd} USD for {limit.scope} {limit.scope_key!r} "
        f"would be exceeded", scope=limit.scope, scope_key=limit.scope_key, window=limit.window,
        limit_usd=limit.limit_usd, spent_usd=limit.spent_usd, reserved_usd=limit.reserved_usd,
        requested_usd=amount_usd,
    )


def _reservation(ticket: BudgetTicket) -> str:
    if not isinstance(ticket.token, str):
        raise InvalidInput("not a ticket of this port", field="ticket")
    return ticket.token


# ---------------------------------------------------------------------------------------------
# slices


class SliceGranter(Protocol):
    """Where slices come from: the CostLedger (a core here, an actor elsewhere). Calls that reach
    a ledger which cannot answer raise ``ComponentUnavailable``.

    ``follows_log``: the ledger learns settled spend from the event log (the Ray runtime): a
    returned slice then carries its charges (request id and cost of each call), held at the
    ledger until the log delivers them, and spend without a slice is not reported (the log
    has it). Otherwise spend is reported directly."""

    @property
    def follows_log(self) -> bool: ...

    async def grant_slice(self, key: SpendKey, amount_usd: Decimal, holder: str,
                          minimum_usd: Decimal) -> Slice: ...

    def return_slice(self, slice_id: str, spent_usd: Decimal, key: SpendKey,
                     charges: Sequence[tuple[str, Decimal]] | None = None
                     ) -> Awaitable[object] | None:
        """Sent at once; the awaitable (if any) completes when the ledger has it."""
        ...

    async def record(self, key: SpendKey, amount_usd: Decimal) -> None:
        """Spend made without a reservation (unlimited keys, best-effort mode)."""
        ...


class LocalSliceGranter:
    """Slices from a CostLedger core in this process (spend reported directly)."""

    follows_log = False

    def __init__(self, ledger: CostLedgerCore) -> None:
        self.ledger = ledger

    async def grant_slice(self, key: SpendKey, amount_usd: Decimal, holder: str,
                          minimum_usd: Decimal) -> Slice:
        return self.ledger.grant_slice(key, amount_usd, holder, minimum_usd=minimum_usd)

    def return_slice(self, slice_id: str, spent_usd: Decimal, key: SpendKey,
                     charges: Sequence[tuple[str, Decimal]] | None = None) -> None:
        self.ledger.return_slice(slice_id, spent_usd, key, charges=charges)

    async def record(self, key: SpendKey, amount_usd: Decimal) -> None:
        self.ledger.record(key, amount_usd)


class SliceHolder:
    """Spends one CostLedger budget slice locally: reserve worst case, settle actual."""

    def __init__(self, budget_slice: Slice, clock: Clock = SYSTEM_CLOCK, *,
                 safety_margin_s: float = 0.0) -> None:
        self.slice = budget_slice
        self._clock = clock
        self._stop_at = local_deadline(budget_slice, clock, safety_margin_s)
        self._reserved = Decimal(0)
        self._spent = Decimal(0)
        self._charges: list[tuple[str, Decimal]] = []

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

    def settle(self, reserved_usd: Decimal, actual_usd: Decimal,
               request_id: str | None = None) -> None:
        """The call cost ``actual_usd`` (recorded as the truth even above the reservation);
        ``request_id`` names the charge (see ``charges``)."""
        reserved = self._held(reserved_usd)
        actual = to_money(actual_usd, "actual_usd")
        self._reserved -= reserved
        self._spent += actual
        if request_id is not None and actual > 0:
            self._charges.append((request_id, actual))

    @property
    def charges(self) -> tuple[tuple[str, Decimal], ...]:
        """(request id, cost) of each call settled under the slice with its request id."""
        return tuple(self._charges)

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


_BEST_EFFORT = object()


class SliceBudget:
    """Budget admission from slices. With the ledger unreachable, ``strict`` enforcement refuses
    (``ComponentUnavailable``) and ``best_effort`` proceeds and reports the spend when the ledger
    is back."""

    def __init__(self, granter: SliceGranter, settings: BudgetSettings, holder: str, *,
                 clock: Clock = SYSTEM_CLOCK, slice_calls: int = SLICE_CALLS) -> None:
        self.granter = granter
        self.holder = holder
        self.strict = settings.enforcement == "strict"
        self.limits = settings.limits
        self._clock = clock
        self._slices: dict[SpendKey, SliceHolder] = {}
        self._refills: Refills[SpendKey, Slice] = Refills()
        self._unreported: dict[SpendKey, Decimal] = defaultdict(Decimal)
        self._retired: list[SliceHolder] = []
        self._growth = Growth(clock, start=slice_calls, cap=MAX_SLICE_CALLS,
                              fast_s=FAST_REFILL_S, reset=False)
        self._limited: dict[SpendKey, bool] = {}

    def limited(self, key: SpendKey) -> bool:
        """Whether any configured limit applies to ``key`` (cached: the limits are fixed)."""
        hit = self._limited.get(key)
        if hit is None:
            hit = self._limited[key] = is_limited(self.limits, key)
        return hit

    def try_reserve(self, key: SpendKey, amount_usd: Decimal,
                    request_id: str | None = None) -> BudgetTicket | None:
        """From the key's current slice (or no reservation at all for unlimited keys)."""
        if amount_usd <= 0 or not self.limited(key):
            return BudgetTicket(key, amount_usd, None, request_id)
        holder = self._slices.get(key)
        if holder is not None and holder.try_reserve(amount_usd):
            return BudgetTicket(key, amount_usd, holder, request_id)
        return None

    async def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str) -> BudgetTicket:
        if amount_usd <= 0 or not self.limited(key):  # free models need no budget
            return BudgetTicket(key, amount_usd, None, request_id)
        limited_by: LimitRef | None = None
        for _ in range(MAX_REFILLS):
            holder = self._slices.get(key)
            if holder is not None and holder.try_reserve(amount_usd):
                return BudgetTicket(key, amount_usd, holder, request_id)
            try:
                grant = await self._refill(key, amount_usd)
            except ComponentUnavailable:
                if self.strict:
                    raise ComponentUnavailable(
                        "the CostLedger is unavailable and budgets are strict: request refused",
                        component="CostLedger",
                    ) from None
                return BudgetTicket(key, amount_usd, _BEST_EFFORT, request_id)
            if grant.amount_usd < amount_usd:
                limited_by = grant.limited_by
                break
        raise _exceeded(key, amount_usd, limited_by)

    async def _refill(self, key: SpendKey, amount_usd: Decimal) -> Slice:
        """Replace the key's slice with a new one; returns the grant (one refill per key at a
        time, finished even when its caller gives up: see :class:`Refills`)."""
        return await self._refills.run(key, lambda: self._new_slice(key, amount_usd))

    async def _new_slice(self, key: SpendKey, amount_usd: Decimal) -> Slice:
        size = self._growth.next(key)
        old = self._slices.get(key)
        if old is not None and old.in_flight_usd == 0:
            self._return(key)
        grant = await self.granter.grant_slice(key, amount_usd * size, self.holder, amount_usd)
        self._growth.arrived(key)
        if grant.slice_id is not None:
            if key in self._slices:  # the old slice has calls in flight: give it back later
                self._retired.append(self._slices[key])
            self._slices[key] = SliceHolder(grant, self._clock, safety_margin_s=SAFETY_MARGIN_S)
        return grant

    def _return(self, key: SpendKey) -> Awaitable[object] | None:
        holder = self._slices.pop(key, None)
        if holder is None:
            return None
        return self._give_back(holder, key)

    def _give_back(self, holder: SliceHolder, key: SpendKey) -> Awaitable[object] | None:
        if holder.slice_id is None:
            return None
        charges = holder.charges if self.granter.follows_log else None
        return self.granter.return_slice(holder.slice_id, holder.spent_usd, key, charges)

    def settle(self, ticket: BudgetTicket, actual_usd: Decimal) -> None:
        token = ticket.token
        if isinstance(token, SliceHolder):
            token.settle(ticket.amount_usd, actual_usd, ticket.request_id)
        elif not self.granter.follows_log:
            # unlimited key or best effort: reported in batches (a ledger that follows the log
            # learns it from there)
            self._unreported[ticket.key] += actual_usd

    def release(self, ticket: BudgetTicket) -> None:
        if isinstance(ticket.token, SliceHolder):
            ticket.token.release(ticket.amount_usd)

    async def flush(self, *, everything: bool = False) -> None:
        """Report unreserved spend, and return expired, idle (or, at the end, all) slices."""
        await self._report_unreserved()
        returns: list[Awaitable[object] | None] = []
        for key, holder in list(self._slices.items()):
            idle = self._growth.idle_for(key) > IDLE_RETURN_S
            if holder.in_flight_usd == 0 and (everything or idle or holder.expired()):
                returns.append(self._return(key))
        for holder in list(self._retired):
            if holder.in_flight_usd == 0 and holder.slice_id is not None:
                self._retired.remove(holder)
                returns.append(self._give_back(holder, holder.slice.key))
        for ref in returns:
            if ref is not None:
                try:
                    await ref
                except ComponentUnavailable:
                    log.warning("a budget slice could not be returned; the ledger expires it")

    async def _report_unreserved(self) -> None:
        pending = [(k, a) for k, a in self._unreported.items() if a]
        self._unreported.clear()
        for key, amount in pending:
            try:
                await self.granter.record(key, amount)
            except ComponentUnavailable:  # ledger restarting: keep it for the next flush
                self._unreported[key] += amount

    def held(self) -> dict[SpendKey, Decimal]:
        """What is left to spend in each slice held now."""
        return {k: h.available_usd() for k, h in self._slices.items()}
