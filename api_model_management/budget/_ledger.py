"""CostLedger core: spend per scope and window, budget reservations, slices and alerts (no Ray).

Spend is kept per ``(scope, scope_key, window, window_start)`` for the scopes ``global`` (key
``*``), ``provider``, ``model`` and ``agent_type`` and the windows ``day`` and ``month`` in the
configured time zone. Money is exact ``Decimal`` throughout; floats are refused.

Enforcement (``strict``): a reservation of the worst-case cost is refused with ``BudgetExceeded``
when ``settled + reserved + amount`` would pass any applicable limit; a budget *slice* is a
reservation a router spends locally, granted only up to the headroom. So settled + reserved +
sliced never passes a hard limit as long as actual costs do not exceed what was reserved (an actual
cost above its reservation is recorded as the truth). ``best_effort`` reserves without refusing.

Reservations and slices left by a dead router expire (``reservation_ttl_s``; a slice stops being
usable at its ``expires_at_monotonic`` and is dropped ``reservation_ttl_s`` later, so calls started
under it can settle). A late ``settle`` / ``return_slice`` of an expired one still records the
spend: the money was spent.

Limits with a non-global scope and key ``*`` apply to each key of that scope separately.

Rebuilt from the event log on start: :meth:`CostLedgerCore.apply` folds the ``cost_usd`` of
``RequestCompleted``, ``RequestFailed`` and ``FeedbackRecorded`` (judge calls, keyed by the judge
model) at their ``occurred_at``, and ``BudgetAlert`` (an alert already emitted is not emitted
again). For the live ledger and the rebuilt one to agree, pass the terminal event's timestamp as
``occurred_at`` when settling near a window boundary, and key judge spend by the judge model.
"""

from __future__ import annotations

import heapq
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from .._clock import SYSTEM_CLOCK, Clock
from ..config import BudgetLimit, BudgetSettings, RegistryConfig, Scope, Window
from ..errors import BudgetExceeded, InvalidInput
from ..events import BudgetAlert, Event, FeedbackRecorded, RequestCompleted, RequestFailed

if TYPE_CHECKING:
    from ._fold import SpendDelta
from ._limits import (
    SCOPES,
    WINDOWS,
    SpendKey,
    applicable_limits,
    limit_keys,
    scope_keys,
    spend_key_of,
    window_start,
)

__all__ = [
    "BudgetStatus",
    "CostLedgerCore",
    "LedgerSnapshot",
    "LimitRef",
    "Reservation",
    "Slice",
    "SpendKey",
    "to_money",
]

_EXPIRED_MEMORY = 10_000

#: How long the ledger remembers that the log delivered a request's spend (longer than a slice
#: can be held before it comes back).
LOGGED_MEMORY_S = 600.0
#: A pending charge the log has not delivered in this long is dropped (with a warning).
PENDING_MAX_S = 3600.0
#: A dead holder's slice is kept until its spool is in the log, but never longer than this past
#: its drop time; the check runs every ``ORPHAN_RECHECK_S``.
ORPHAN_MAX_S = 3600.0
ORPHAN_RECHECK_S = 1.0

#: A slice is at most this share of the headroom (see :func:`slice_amount`).
SLICE_SHARE = Decimal("0.1")

BucketKey = tuple[str, str, str, datetime]  # scope, scope_key, window, window_start (UTC)
AlertKey = tuple[str, str, str, datetime, float, Decimal]  # ... threshold, limit_usd


# ---------------------------------------------------------------------------------------------
# values crossing the actor boundary


@dataclass(frozen=True)
class Slice:
    """Budget a router may spend locally until ``expires_at_monotonic``; ``slice_id`` None when
    nothing could be granted."""

    slice_id: str | None
    key: SpendKey
    amount_usd: Decimal
    expires_at_monotonic: float
    ttl_s: float = 0.0  # how long it was granted for
    clock_domain: str = ""  # the granter's clock (``Clock.domain``); "" shared with the holder
    #: when less than asked was granted: the limit with the least headroom (what refused)
    limited_by: LimitRef | None = None


@dataclass(frozen=True)
class LimitRef:
    """One configured limit in its current window, as a refusal names it."""

    scope: str
    scope_key: str
    window: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal


@dataclass(frozen=True)
class Reservation:
    """A held amount: a per-call reservation or a slice (``kind``)."""

    reservation_id: str
    kind: str  # "reservation" | "slice"
    key: SpendKey
    amount_usd: Decimal
    created_at: float  # monotonic
    drop_at: float  # monotonic: expired (dropped) from then on
    holder: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class BudgetStatus:
    scope: str
    key: str
    window: str
    window_start: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    share: float  # spent / limit


@dataclass(frozen=True)
class LedgerSnapshot:
    """Settled spend (non-zero buckets), alerts already emitted, and open reservations."""

    settled: tuple[tuple[BucketKey, Decimal], ...]
    alerted: frozenset[AlertKey]
    reservations: tuple[Reservation, ...]


# ---------------------------------------------------------------------------------------------
# input checks


def to_money(value: object, name: str = "amount_usd") -> Decimal:
    """A finite, non-negative Decimal from a Decimal, an int or a numeric string (never a float)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{name} must be a Decimal, an int or a numeric string, not a float",
                           field=name)
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
        try:
            amount = Decimal(value)
        except InvalidOperation as exc:
            raise InvalidInput(f"{name} is not a decimal amount", field=name) from exc
    else:
        raise InvalidInput(f"{name} must be a Decimal amount", field=name)
    if not amount.is_finite() or amount < 0:
        raise InvalidInput(f"{name} must be finite and not negative", field=name)
    return amount


def _check_key(key: object) -> SpendKey:
    for name in ("provider", "model_id", "agent_type"):
        value = getattr(key, name, None)
        if value is not None and not isinstance(value, str):
            raise InvalidInput("a spend key has string provider, model_id and agent_type",
                               field=name)
    if not hasattr(key, "model_id"):
        raise InvalidInput("a spend key has provider, model_id and agent_type", field="key")
    return cast(SpendKey, key)  # checked above: anything with SpendKey's three fields


def _check_time(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{name} must be a timezone-aware datetime", field=name)
    return value


def slice_amount(asked: Decimal, headroom: Decimal, minimum: Decimal | None) -> Decimal:
    """The size of a strict budget's slice: ``asked``, capped at ``SLICE_SHARE`` of the headroom
    but at least ``minimum`` when that much is left; zero when the headroom is gone."""
    if not headroom.is_finite():
        return asked
    room = max(headroom, Decimal(0))
    cap = room * SLICE_SHARE
    if minimum is not None:
        cap = max(cap, min(minimum, room))
    return min(asked, cap)


# ---------------------------------------------------------------------------------------------
# the core


class CostLedgerCore:
    """The system's one ledger of spend and budget holds. Plain class; the Ray shell forwards
    calls and :meth:`drain_events`."""

    def __init__(
        self,
        settings: BudgetSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        registry: RegistryConfig | None = None,
        slice_ttl_s: float | None = None,
        holder_gone: Callable[[str], bool] | None = None,
        follows_log: bool = False,
    ) -> None:
        if not isinstance(settings, BudgetSettings):
            raise InvalidInput("settings must be BudgetSettings", field="settings")
        self.settings = settings
        self._zone = ZoneInfo(settings.timezone)
        self._clock = clock
        self._registry = registry
        self._providers = {m.id: m.provider for m in registry.models} if registry is not None else None
        self._slice_ttl_s = settings.slice_ttl_s if slice_ttl_s is None else slice_ttl_s
        self._thresholds = [(t, Decimal(str(t))) for t in settings.alert_thresholds]
        self._prefix = secrets.token_hex(4)
        self._seq = 0
        self._settled: dict[BucketKey, Decimal] = {}
        self._alerted: set[AlertKey] = set()
        self._reservations: dict[str, Reservation] = {}
        self._drop_heap: list[tuple[float, str]] = []
        self._reserved: dict[tuple[str, str], Decimal] = {}
        self._expired: OrderedDict[str, Reservation] = OrderedDict()
        self._events: list[Event] = []
        #: whether a holder (a router) is gone and its spool fully ingested; None: holds simply
        #: expire at their time (one process, nothing to wait for)
        self._holder_gone = holder_gone
        #: settled spend arrives through :meth:`apply_log` (the Ray runtime): spend reported by
        #: routers is held as pending charges until then
        self.follows_log = follows_log
        #: request ids whose spend the log has delivered recently (see :meth:`log_spend`)
        self._logged: dict[str, float] = {}
        self._logged_order: deque[tuple[float, str]] = deque()
        #: holds added and removed since the last drain (for a journal that survives a restart)
        self._hold_changes: list[tuple[str, Reservation | str]] = []

    # -- reservations --------------------------------------------------------------------------
    def reserve(
        self,
        key: SpendKey,
        amount_usd: Decimal,
        *,
        holder: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Hold the worst-case cost of a call; returns the reservation id. Raises
        ``BudgetExceeded`` (strict mode) when an applicable limit would be passed."""
        key = _check_key(key)
        amount = to_money(amount_usd)
        self.expire()
        if self.settings.enforcement == "strict":
            self._check_headroom(key, amount)
        now = self._clock.monotonic()
        reservation = Reservation(
            reservation_id=self._new_id("b"), kind="reservation", key=key, amount_usd=amount,
            created_at=now, drop_at=now + self.settings.reservation_ttl_s, holder=holder,
            request_id=request_id,
        )
        self._hold(reservation)
        return reservation.reservation_id

    def settle(
        self, reservation_id: str, actual_usd: Decimal, *, occurred_at: datetime | None = None
    ) -> list[BudgetAlert]:
        """The call cost ``actual_usd``: drop the hold, record the spend, return new alerts (the
        same alerts are also queued for :meth:`drain_events`). A ledger that follows the log
        holds the spend of a reservation made for a request as a pending charge instead, until
        the log delivers it."""
        actual = to_money(actual_usd, "actual_usd")
        at = self._at(occurred_at)
        reservation = self._closable(reservation_id, "reservation")
        self._unhold(reservation)
        if self.follows_log and reservation.request_id is not None:
            return self._spend(reservation.key, actual, [(reservation.request_id, actual)], at)
        return self._add_spend(reservation.key, actual, at)

    def release(self, reservation_id: str) -> None:
        """The call was not made (or cost nothing): drop the hold."""
        reservation = self._closable(reservation_id, "reservation")
        self._unhold(reservation)

    def record(
        self, key: SpendKey, amount_usd: Decimal, occurred_at: datetime | None = None
    ) -> list[BudgetAlert]:
        """Spend without a reservation (best-effort mode, reconciliation)."""
        key = _check_key(key)
        amount = to_money(amount_usd)
        at = self._at(occurred_at)
        return self._add_spend(key, amount, at)

    def expire(self) -> int:
        """Drop reservations and slices past their TTL; returns how many were dropped.

        With ``holder_gone`` set (the Ray runtime, where spend reaches the ledger through the
        log), a slice past its time is dropped only once its holder is gone and its spool is in
        the log (its spend has arrived by :meth:`log_spend`), or after ``ORPHAN_MAX_S``: a dead
        router's slice is never granted again before its spend is known."""
        now = self._clock.monotonic()
        dropped = 0
        while self._drop_heap and self._drop_heap[0][0] <= now:
            _, reservation_id = heapq.heappop(self._drop_heap)
            reservation = self._reservations.get(reservation_id)
            if reservation is None:
                continue
            if self._still_spending(reservation, now):
                heapq.heappush(self._drop_heap, (now + ORPHAN_RECHECK_S, reservation_id))
                continue
            self._unhold(reservation)
            self._expired[reservation_id] = reservation
            if len(self._expired) > _EXPIRED_MEMORY:
                self._expired.popitem(last=False)
            dropped += 1
        self._forget_logged(now)
        return dropped

    def _still_spending(self, reservation: Reservation, now: float) -> bool:
        """A slice whose holder may still have spend on its way to the log."""
        if self._holder_gone is None or reservation.kind != "slice" or reservation.holder is None:
            return False
        if now >= reservation.drop_at + ORPHAN_MAX_S:
            return False
        return not self._holder_gone(reservation.holder)

    # -- slices --------------------------------------------------------------------------------
    def grant_slice(
        self,
        key: SpendKey,
        amount_usd: Decimal,
        holder: str,
        *,
        minimum_usd: Decimal | None = None,
        ttl_s: float | None = None,
    ) -> Slice:
        """Hold up to ``amount_usd`` for a router to spend locally until ``expires_at_monotonic``.

        Strict budgets grant at most :data:`SLICE_SHARE` of the headroom (so that routers holding
        idle slices do not starve each other), but at least ``minimum_usd`` (one call's worst
        case) when that much is left, and nothing when the headroom is gone (it may be negative:
        actual costs above their reservation, or spend learnt after a restart)."""
        key = _check_key(key)
        amount = to_money(amount_usd)
        minimum = None if minimum_usd is None else to_money(minimum_usd, "minimum_usd")
        if not isinstance(holder, str) or not holder:
            raise InvalidInput("holder must be a non-empty string", field="holder")
        ttl = self._slice_ttl_s if ttl_s is None else ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < float("inf"):
            raise InvalidInput("ttl_s must be a positive number of seconds", field="ttl_s")
        self.expire()
        now = self._clock.monotonic()
        limited_by = None
        if self.settings.enforcement == "strict":
            asked = amount
            amount = slice_amount(amount, self._headroom(key), minimum)
            if amount < (minimum if minimum is not None else asked):
                limited_by = self._tightest(key)
        if amount <= 0:
            return Slice(None, key, Decimal(0), now, limited_by=limited_by)
        expires_at = now + ttl
        reservation = Reservation(
            reservation_id=self._new_id("s"), kind="slice", key=key, amount_usd=amount,
            created_at=now, drop_at=expires_at + self.settings.reservation_ttl_s, holder=holder,
        )
        self._hold(reservation)
        return Slice(reservation.reservation_id, key, amount, expires_at, ttl_s=float(ttl),
                     clock_domain=getattr(self._clock, "domain", ""), limited_by=limited_by)

    def return_slice(
        self,
        slice_id: str,
        spent_usd: Decimal,
        key: SpendKey | None = None,
        *,
        charges: Sequence[tuple[str, Decimal]] | None = None,
        occurred_at: datetime | None = None,
    ) -> list[BudgetAlert]:
        """Record what was spent from a slice and free the rest.

        ``charges``, when given, are the (request id, cost) of each call settled under the slice:
        their spend reaches the ledger through the log (:meth:`log_spend`), so until then each is
        held as a pending hold (a request the log already delivered is skipped), and ``spent_usd``
        is their sum. Without ``charges`` the spend is recorded at once (one process).

        A slice this ledger does not know (it restarted since the grant) is still spent money:
        with its ``key`` given, the spend is recorded (or held as pending charges); without,
        ``InvalidInput``."""
        spent = to_money(spent_usd, "spent_usd")
        at = self._at(occurred_at)
        try:
            reservation = self._closable(slice_id, "slice")
        except InvalidInput:
            if key is None:
                raise
            return self._spend(_check_key(key), spent, charges, at)
        self._unhold(reservation)
        return self._spend(reservation.key, spent, charges, at)

    def _spend(self, key: SpendKey, spent: Decimal,
               charges: Sequence[tuple[str, Decimal]] | None, at: datetime) -> list[BudgetAlert]:
        if charges is None:
            return self._add_spend(key, spent, at)
        now = self._clock.monotonic()
        for request_id, cost in charges:
            amount = to_money(cost, "cost_usd")
            if amount <= 0 or request_id in self._logged or f"p:{request_id}" in self._reservations:
                continue
            self._hold(Reservation(
                reservation_id=f"p:{request_id}", kind="pending", key=key, amount_usd=amount,
                created_at=now, drop_at=now + PENDING_MAX_S, request_id=request_id,
            ))
        return []

    # -- spend from the log --------------------------------------------------------------------
    def apply_log(self, delta: SpendDelta) -> list[BudgetAlert]:
        """Take what the log delivered since the last poll (:class:`LogSpend`): spend added and
        removed, and the request ids of terminal events, whose pending holds (from slice returns)
        are dropped now that their spend is settled. Returns the alerts crossed.

        Applied in bulk: amounts are summed per key and window first, so a start from a whole
        log costs one bucket update per key and window, not one per event."""
        now = self._clock.monotonic()
        by_minute: dict[tuple[SpendKey, datetime], Decimal] = {}
        for key, at, amount in delta.removed:
            by_minute[(key, at)] = by_minute.get((key, at), Decimal(0)) - amount
        for key, at, amount in delta.added:
            by_minute[(key, at)] = by_minute.get((key, at), Decimal(0)) + amount
        starts: dict[datetime, tuple[datetime, datetime]] = {}
        windowed: dict[tuple[SpendKey, datetime, datetime], list[Any]] = {}
        for (key, at), amount in by_minute.items():
            if not amount:
                continue
            hit = starts.get(at)
            if hit is None:
                hit = starts[at] = (self._window_start("day", at), self._window_start("month", at))
            entry = windowed.setdefault((key, *hit), [Decimal(0), at])
            entry[0] += amount
            entry[1] = max(entry[1], at)
        alerts: list[BudgetAlert] = []
        for (key, day, month), (amount, at) in windowed.items():
            for window, start in (("day", day), ("month", month)):
                for scope, scope_key in scope_keys(key):
                    bucket = (scope, scope_key, window, start)
                    self._settled[bucket] = self._settled.get(bucket, Decimal(0)) + amount
            if amount > 0:
                found = self._new_alerts(key, at)
                self._events.extend(found)
                alerts.extend(found)
        for request_id in delta.request_ids:
            self._note_logged(request_id, now)
            pending = self._reservations.get(f"p:{request_id}")
            if pending is not None:
                self._unhold(pending)
        return alerts

    def _note_logged(self, request_id: str, now: float) -> None:
        if request_id not in self._logged:
            self._logged[request_id] = now
            self._logged_order.append((now, request_id))

    def _forget_logged(self, now: float) -> None:
        horizon = now - LOGGED_MEMORY_S
        while self._logged_order and self._logged_order[0][0] <= horizon:
            _, request_id = self._logged_order.popleft()
            self._logged.pop(request_id, None)

    def drain_hold_changes(self) -> list[tuple[str, Reservation | str]]:
        """Holds added (``("+", reservation)``) and dropped (``("-", id)``) since the last drain:
        what a journal keeps so that a restarted ledger still holds what routers hold."""
        changes, self._hold_changes = self._hold_changes, []
        return changes

    def restore_holds(self, holds: Iterable[Reservation]) -> int:
        """Hold again what a previous incarnation held (from its journal), after the log was
        applied: pending charges the log has delivered meanwhile are not restored. Returns how
        many were restored."""
        restored = 0
        for reservation in holds:
            if reservation.reservation_id in self._reservations:
                continue
            if reservation.kind == "pending" and reservation.request_id in self._logged:
                continue
            self._hold(reservation)
            restored += 1
        return restored

    def catch_up_alerts(self) -> None:
        """Emit alerts of the current windows that were crossed but never emitted."""
        self._catch_up_alerts()

    def pending_usd(self) -> Decimal:
        """Spend reported by routers that the log has not delivered yet (held)."""
        return sum((r.amount_usd for r in self._reservations.values() if r.kind == "pending"),
                   Decimal(0))

    # -- the fold over the event log -----------------------------------------------------------
    def apply(self, event: Event) -> None:
        """Fold one logged event (costs and alerts; other types are ignored). Emits nothing."""
        if isinstance(event, BudgetAlert):
            self._alerted.add((event.scope, event.scope_key, event.window, event.window_start,
                               event.threshold, event.limit_usd))
            return
        if not isinstance(event, RequestCompleted | RequestFailed | FeedbackRecorded):
            return
        if event.cost_usd <= 0:
            return
        self._add_to_buckets(self._event_key(event), event.cost_usd, event.occurred_at)

    @classmethod
    def from_events(
        cls,
        settings: BudgetSettings,
        events: Iterable[Event],
        *,
        clock: Clock = SYSTEM_CLOCK,
        registry: RegistryConfig | None = None,
        **kwargs: Any,
    ) -> CostLedgerCore:
        """A ledger rebuilt from the event log; alerts of the current windows that were never
        emitted (the ledger died first) are emitted now. Requests logged in the last
        ``LOGGED_MEMORY_S`` are remembered as delivered (a slice returned later with them does
        not count them twice)."""
        ledger = cls(settings, clock=clock, registry=registry, **kwargs)
        now_wall, now = clock.now(), clock.monotonic()
        recent = now_wall - timedelta(seconds=LOGGED_MEMORY_S)
        for event in events:
            ledger.apply(event)
            if (isinstance(event, RequestCompleted | RequestFailed) and event.request_id
                    and event.occurred_at >= recent):
                ledger._note_logged(event.request_id, now)
        ledger._catch_up_alerts()
        return ledger

    # -- reads ---------------------------------------------------------------------------------
    def spend(self, scope: Scope, key: str, window: Window, at: datetime | None = None) -> Decimal:
        """Settled spend of one scope key in the window containing ``at`` (default now)."""
        if scope not in SCOPES or window not in WINDOWS:
            raise InvalidInput("unknown scope or window", field="scope")
        at = self._at(at)
        return self._settled.get((scope, key, window, self._window_start(window, at)), Decimal(0))

    def status(self) -> list[BudgetStatus]:
        """Every configured limit (each key of a ``*`` limit) in its current window."""
        self.expire()
        now = self._clock.now()
        rows = []
        for limit in self.settings.limits:
            for scope_key in self._limit_keys(limit, now):
                start = self._window_start(limit.window, now)
                spent = self._settled.get((limit.scope, scope_key, limit.window, start), Decimal(0))
                rows.append(BudgetStatus(
                    scope=limit.scope, key=scope_key, window=limit.window, window_start=start,
                    limit_usd=limit.limit_usd, spent_usd=spent,
                    reserved_usd=self._reserved.get((limit.scope, scope_key), Decimal(0)),
                    share=float(spent / limit.limit_usd),
                ))
        return rows

    def reserved_usd(self) -> Decimal:
        """Everything held now (reservations and slices)."""
        return sum((r.amount_usd for r in self._reservations.values()), Decimal(0))

    def reservations(self) -> list[Reservation]:
        return sorted(self._reservations.values(), key=lambda r: r.reservation_id)

    def drain_events(self) -> list[Event]:
        """Take the ``BudgetAlert`` events queued since the last drain."""
        events, self._events = self._events, []
        return events

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            settled=tuple(sorted((k, v) for k, v in self._settled.items() if v != 0)),
            alerted=frozenset(self._alerted),
            reservations=tuple(self.reservations()),
        )

    # -- deciding ------------------------------------------------------------------------------
    def _applicable(self, key: SpendKey) -> Iterator[tuple[BudgetLimit, str]]:
        return applicable_limits(self.settings.limits, key)

    def _usage(self, limit: BudgetLimit, scope_key: str) -> tuple[Decimal, Decimal]:
        start = self._window_start(limit.window, self._clock.now())
        spent = self._settled.get((limit.scope, scope_key, limit.window, start), Decimal(0))
        return spent, self._reserved.get((limit.scope, scope_key), Decimal(0))

    def _check_headroom(self, key: SpendKey, amount: Decimal) -> None:
        for limit, scope_key in self._applicable(key):
            spent, reserved = self._usage(limit, scope_key)
            if spent + reserved + amount > limit.limit_usd:
                raise BudgetExceeded(
                    f"{limit.window} budget of {limit.limit_usd} USD for {limit.scope} "
                    f"{scope_key!r} would be exceeded",
                    scope=limit.scope, scope_key=scope_key, window=limit.window,
                    limit_usd=limit.limit_usd, spent_usd=spent, reserved_usd=reserved,
                    requested_usd=amount,
                )

    def headroom(self, key: SpendKey) -> Decimal:
        """What could still be reserved for ``key`` under every applicable limit (Infinity when
        no limit applies)."""
        return self._headroom(_check_key(key))

    def _tightest(self, key: SpendKey) -> LimitRef | None:
        """The applicable limit with the least headroom for ``key``."""
        best: tuple[Decimal, LimitRef] | None = None
        for limit, scope_key in self._applicable(key):
            spent, reserved = self._usage(limit, scope_key)
            left = limit.limit_usd - spent - reserved
            if best is None or left < best[0]:
                best = (left, LimitRef(limit.scope, scope_key, limit.window, limit.limit_usd,
                                       spent, reserved))
        return None if best is None else best[1]

    def _headroom(self, key: SpendKey) -> Decimal:
        room = None
        for limit, scope_key in self._applicable(key):
            spent, reserved = self._usage(limit, scope_key)
            left = limit.limit_usd - spent - reserved
            room = left if room is None or left < room else room
        return Decimal("Infinity") if room is None else room

    def _closable(self, reservation_id: str, kind: str) -> Reservation:
        """The open (or expired) reservation of ``kind``; InvalidInput when there is none."""
        if not isinstance(reservation_id, str):
            raise InvalidInput(f"unknown {kind}", field="reservation_id")
        reservation = self._reservations.get(reservation_id)
        if reservation is None:
            reservation = self._expired.get(reservation_id)
        if reservation is None or reservation.kind != kind:
            raise InvalidInput(f"unknown or already closed {kind}", field="reservation_id")
        return reservation

    # -- mutating ------------------------------------------------------------------------------
    def _hold(self, reservation: Reservation) -> None:
        self._hold_changes.append(("+", reservation))
        self._reservations[reservation.reservation_id] = reservation
        heapq.heappush(self._drop_heap, (reservation.drop_at, reservation.reservation_id))
        for scope_key in scope_keys(reservation.key):
            self._reserved[scope_key] = (
                self._reserved.get(scope_key, Decimal(0)) + reservation.amount_usd
            )

    def _unhold(self, reservation: Reservation) -> None:
        """Drop an open hold, or forget an expired one (its hold is already gone)."""
        if self._expired.pop(reservation.reservation_id, None) is not None:
            return
        self._hold_changes.append(("-", reservation.reservation_id))
        del self._reservations[reservation.reservation_id]
        for scope_key in scope_keys(reservation.key):
            left = self._reserved.get(scope_key, Decimal(0)) - reservation.amount_usd
            if left:
                self._reserved[scope_key] = left
            else:
                self._reserved.pop(scope_key, None)

    def _add_spend(self, key: SpendKey, amount: Decimal, at: datetime) -> list[BudgetAlert]:
        self._add_to_buckets(key, amount, at)
        alerts = self._new_alerts(key, at)
        self._events.extend(alerts)
        return alerts

    def _add_to_buckets(self, key: SpendKey, amount: Decimal, at: datetime) -> None:
        for window in WINDOWS:
            start = self._window_start(window, at)
            for scope, scope_key in scope_keys(key):
                bucket = (scope, scope_key, window, start)
                self._settled[bucket] = self._settled.get(bucket, Decimal(0)) + amount

    def _new_alerts(self, key: SpendKey, at: datetime) -> list[BudgetAlert]:
        alerts = []
        for limit, scope_key in self._applicable(key):
            alerts.extend(self._crossings(limit, scope_key, at))
        return alerts

    def _crossings(self, limit: BudgetLimit, scope_key: str, at: datetime) -> list[BudgetAlert]:
        """Alerts for thresholds crossed and not yet alerted in the window containing ``at``."""
        start = self._window_start(limit.window, at)
        spent = self._settled.get((limit.scope, scope_key, limit.window, start), Decimal(0))
        alerts = []
        for threshold, share in self._thresholds:
            alert_key = (limit.scope, scope_key, limit.window, start, threshold, limit.limit_usd)
            if spent < share * limit.limit_usd or alert_key in self._alerted:
                continue
            self._alerted.add(alert_key)
            alerts.append(BudgetAlert(
                occurred_at=at, scope=limit.scope, scope_key=scope_key, window=limit.window,
                window_start=start, threshold=threshold, spent_usd=spent,
                limit_usd=limit.limit_usd,
                provider=scope_key if limit.scope == "provider" else None,
                model_id=scope_key if limit.scope == "model" else None,
                agent_type=scope_key if limit.scope == "agent_type" else None,
            ))
        return alerts

    def _catch_up_alerts(self) -> None:
        now = self._clock.now()
        for limit in self.settings.limits:
            for scope_key in self._limit_keys(limit, now):
                self._events.extend(self._crossings(limit, scope_key, now))

    # -- helpers -------------------------------------------------------------------------------
    def _limit_keys(self, limit: BudgetLimit, now: datetime) -> list[str]:
        """The scope keys a limit covers now: one, or every key seen for a ``*`` limit."""
        start = self._window_start(limit.window, now)
        seen = {k for (s, k, w, st) in self._settled if s == limit.scope and w == limit.window
                and st == start}
        seen.update(k for (s, k) in self._reserved if s == limit.scope)
        return limit_keys(limit, seen)

    def _event_key(self, event: RequestCompleted | RequestFailed | FeedbackRecorded) -> SpendKey:
        judge = event.judge_model_id if isinstance(event, FeedbackRecorded) else None
        return spend_key_of(event.model_id, event.provider, event.agent_type, judge,
                            self._providers)

    def _window_start(self, window: Window, at: datetime) -> datetime:
        return window_start(window, at, self._zone)

    def _at(self, occurred_at: datetime | None) -> datetime:
        if occurred_at is None:
            return self._clock.now()
        return _check_time(occurred_at, "occurred_at")

    def _new_id(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}-{self._prefix}-{self._seq}"
