"""RateLimiter core: RPM and TPM admission for one model over a sliding window (no Ray here).

Model of time. Every grant is an *entry* holding some requests and tokens. An entry is counted
against the limits while ``now < until``:

- a reservation (``reserve``) is a point at its grant time ``t``: ``until = t + window_s``;
- a lease (``lease``) may be used by its holder at any time in ``[t, expires_at]``, so it is counted
  until ``expires_at + window_s``; returning it early shrinks it to the used part, counted until
  ``return_time + window_s``; a lease never returned simply stays counted in full (exact and
  conservative: nothing it could have been used for can fall outside the counted span);
- the provider's own view (``observe``) adds an *external* entry when the provider reports fewer
  remaining requests or tokens than we think we have, counted until the provider's reset.

Admission checks ``counted + asked <= limit``. Because every use of an entry happens inside its
counted span, this keeps every window of ``window_s`` seconds at or below RPM and TPM, whatever
the interleaving (the property test checks exactly that against an independent model).

Failures: ``release`` returns the capacity of a request that was *not* sent; a request that was
sent and failed still counts against RPM, so commit it with ``actual_tokens=0``.

State is a fold over decision records (:data:`Record`): every mutating method decides, then applies
records through one function, so :meth:`RateLimiterCore.replay` of :meth:`history` rebuilds an equal
:meth:`snapshot`. Events for the sink (``RateLimitHit``) are collected and taken with
:meth:`drain_events`.
"""

from __future__ import annotations

import heapq
import math
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._clock import SYSTEM_CLOCK, Clock
from ..config import RateLimitSettings
from ..errors import InvalidInput
from ..events import Event, RateLimitHit
from ._state import RateLimitState

EntryKind = Literal["reservation", "lease", "external"]
LimitType = Literal["rpm", "tpm"]
_LIMIT_TYPES: dict[str, LimitType] = {"rpm": "rpm", "tpm": "tpm"}


# ---------------------------------------------------------------------------------------------
# values crossing the actor boundary


@dataclass(frozen=True)
class Admission:
    """The answer to ``reserve``. ``reason``: ``granted``, ``cooling_down``, ``rpm``, ``tpm`` or
    ``never_fits`` (more tokens than the TPM limit; ``retry_after_s`` is infinite)."""

    granted: bool
    reservation_id: str | None
    retry_after_s: float
    reason: str


@dataclass(frozen=True)
class Lease:
    """Capacity granted to a router to admit locally until ``expires_at_monotonic``.

    A zero grant has ``lease_id`` None and says when to ask again in ``retry_after_s``."""

    lease_id: str | None
    model_id: str
    requests: int
    tokens: int
    expires_at_monotonic: float
    retry_after_s: float = 0.0
    ttl_s: float = 0.0  # how long it was granted for
    clock_domain: str = ""  # the granter's clock (``Clock.domain``); "" shared with the holder


@dataclass(frozen=True)
class RateLimitStatus:
    """Usage in the current window; ``requests_used`` / ``tokens_used`` include leased capacity."""

    model_id: str
    provider: str | None
    window_s: float
    requests_used: int
    requests_limit: int
    tokens_used: int
    tokens_limit: int
    leased_requests: int
    leased_tokens: int
    pending_reservations: int
    cooling_until_monotonic: float | None
    approaching_rpm: bool
    approaching_tpm: bool
    #: Seconds of cool-down left, on the limiter's own clock (None when not cooling down):
    #: meaningful to a reader in another process or on another machine.
    cooling_for_s: float | None = None


@dataclass(frozen=True)
class EntryState:
    """One grant as held by the core (part of a snapshot)."""

    entry_id: str
    kind: EntryKind
    started_at: float
    until: float
    requests: int
    tokens: int
    counted: bool = True
    pending: bool = False  # a reservation not yet committed or released
    lease_expires_at: float | None = None
    returned: bool = False
    holder: str | None = None


@dataclass(frozen=True)
class RateLimiterSnapshot:
    """The whole state of a core; equal snapshots mean equal future behaviour."""

    model_id: str
    rpm: int
    tpm: int
    window_s: float
    entries: tuple[EntryState, ...]
    cooling_until: float | None
    approaching_rpm: bool
    approaching_tpm: bool


# ---------------------------------------------------------------------------------------------
# decision records: the core's state is a fold over these


@dataclass(frozen=True)
class Granted:
    at: float
    entry: EntryState


@dataclass(frozen=True)
class Committed:
    at: float
    entry_id: str
    tokens: int


@dataclass(frozen=True)
class Released:
    at: float
    entry_id: str


@dataclass(frozen=True)
class LeaseReturned:
    at: float
    entry_id: str
    requests: int
    tokens: int
    until: float


@dataclass(frozen=True)
class Cooled:
    at: float
    until: float


@dataclass(frozen=True)
class Flagged:
    at: float
    limit_type: LimitType
    on: bool


@dataclass(frozen=True)
class Restored:
    """A checkpoint: the history was compacted into this snapshot."""

    at: float
    snapshot: RateLimiterSnapshot


Record = Granted | Committed | Released | LeaseReturned | Cooled | Flagged | Restored


# ---------------------------------------------------------------------------------------------
# input checks


def count(value: object, name: str) -> int:
    """A non-negative int (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a non-negative integer", field=name)
    if value < 0:
        raise InvalidInput(f"{name} must not be negative", field=name)
    return value


def _seconds(value: object, name: str) -> float:
    """A finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number of seconds", field=name)
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"{name} must be finite and not negative", field=name)
    return seconds


def _positive_limit(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"{name} must be a positive integer", field=name)
    return value


# ---------------------------------------------------------------------------------------------
# the core


class RateLimiterCore:
    """Sliding-window RPM/TPM admission for one model, with leases, provider feedback and
    cool-downs. Plain class; the Ray shell forwards calls and :meth:`drain_events`."""

    def __init__(
        self,
        model_id: str,
        rpm: int,
        tpm: int,
        *,
        settings: RateLimitSettings = RateLimitSettings(),
        clock: Clock = SYSTEM_CLOCK,
        provider: str | None = None,
        reservation_ttl_s: float = 600.0,
        max_history: int = 100_000,
        journaled: bool = True,
    ) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInput("model_id must be a non-empty string", field="model_id")
        self.model_id = model_id
        self.provider = provider
        self.rpm = _positive_limit(rpm, "rpm")
        self.tpm = _positive_limit(tpm, "tpm")
        window_s = _seconds(settings.window_s, "window_s")
        if window_s <= 0:
            raise InvalidInput("window_s must be positive", field="window_s")
        if _seconds(reservation_ttl_s, "reservation_ttl_s") < window_s:
            raise InvalidInput("reservation_ttl_s must be at least window_s", field="reservation_ttl_s")
        self.window_s = window_s
        self.settings = settings
        self._clock = clock
        self._reservation_ttl_s = float(reservation_ttl_s)
        self._max_history = max_history
        self._prefix = secrets.token_hex(4)
        self._seq = 0
        self._events: list[Event] = []
        self._history: list[Record] = []
        self._unsaved: list[Record] = []
        #: whether records are kept for a journal (:meth:`drain_records`); a core nobody
        #: journals (the standalone gateway's, the facades') must not keep them: they would grow
        #: by one per decision for as long as the process runs
        self._journaled = journaled
        self._reset_state()

    def _reset_state(self) -> None:
        self._entries: dict[str, EntryState] = {}
        self._expiry_heap: list[tuple[float, str]] = []  # (until, entry_id), lazily invalidated
        self._pending_order: deque[tuple[float, str]] = deque()  # reservations by start time
        self._used_requests = 0
        self._used_tokens = 0
        self._cooling_until: float | None = None
        self._approaching = {"rpm": False, "tpm": False}

    # -- admission -----------------------------------------------------------------------------
    def reserve(self, tokens: int) -> Admission:
        """Admit one request of ``tokens`` (an estimate; correct it with :meth:`commit`)."""
        tokens = count(tokens, "tokens")
        now = self._now()
        if tokens > self.tpm:
            return Admission(False, None, math.inf, "never_fits")
        refusal = self._refusal(1, tokens, now)
        if refusal is not None:
            reason, retry_after_s = refusal
            self._emit_exceeded(reason, retry_after_s)
            return Admission(False, None, retry_after_s, reason)
        entry = EntryState(
            entry_id=self._new_id("r"), kind="reservation", started_at=now,
            until=now + self.window_s, requests=1, tokens=tokens, pending=True,
        )
        self._record(Granted(now, entry))
        self._check_approaching(now)
        return Admission(True, entry.entry_id, 0.0, "granted")

    def commit(self, reservation_id: str, actual_tokens: int) -> None:
        """Replace a reservation's estimate with the tokens actually used. A request that was sent
        and failed is committed with ``actual_tokens=0``: it still counts against RPM."""
        actual_tokens = count(actual_tokens, "actual_tokens")
        now = self._now()
        self._pending_reservation(reservation_id)
        self._record(Committed(now, reservation_id, actual_tokens))
        self._check_approaching(now)

    def release(self, reservation_id: str) -> None:
        """The request was not sent: its request and tokens return to the window at once."""
        now = self._now()
        self._pending_reservation(reservation_id)
        self._record(Released(now, reservation_id))
        self._check_approaching(now)

    # -- leases --------------------------------------------------------------------------------
    def lease(self, holder: str, requests: int | None = None, tokens: int | None = None,
              min_tokens: int = 0) -> Lease:
        """Grant up to ``requests`` / ``tokens`` (defaults from settings) for local admission until
        ``now + lease_ttl_s``. May grant less, or nothing (``lease_id`` None): nothing when it
        cannot grant at least ``min_tokens`` (what the holder's waiting request needs); a zero
        lease says in ``retry_after_s`` when one request of ``min_tokens`` would fit."""
        if not isinstance(holder, str) or not holder:
            raise InvalidInput("holder must be a non-empty string", field="holder")
        requests = count(self.settings.lease_requests if requests is None else requests, "requests")
        tokens = count(self.settings.lease_tokens if tokens is None else tokens, "tokens")
        min_tokens = count(min_tokens, "min_tokens")
        now = self._now()
        granted_requests, granted_tokens = self._leasable(requests, tokens, now)
        if granted_requests == 0 or granted_tokens < min_tokens:
            return self._zero_lease(requests, max(min(tokens, 1), min_tokens), now)
        expires_at = now + self.settings.lease_ttl_s
        entry = EntryState(
            entry_id=self._new_id("l"), kind="lease", started_at=now,
            until=expires_at + self.window_s, requests=granted_requests, tokens=granted_tokens,
            lease_expires_at=expires_at, holder=holder,
        )
        self._record(Granted(now, entry))
        self._check_approaching(now)
        return Lease(entry.entry_id, self.model_id, granted_requests, granted_tokens, expires_at,
                     ttl_s=self.settings.lease_ttl_s, clock_domain=getattr(self._clock, "domain", ""))

    def return_lease(self, lease_id: str, used_requests: int, used_tokens: int) -> None:
        """Give back the unused part of a lease. The used part stays counted until it slides out
        of the window. ``used_tokens`` above the grant is recorded as the truth."""
        used_requests = count(used_requests, "used_requests")
        used_tokens = count(used_tokens, "used_tokens")
        now = self._now()
        entry = self._entries.get(lease_id) if isinstance(lease_id, str) else None
        if entry is None or entry.kind != "lease" or entry.returned:
            raise InvalidInput("unknown or already returned lease", field="lease_id")
        if used_requests > entry.requests:
            raise InvalidInput("used_requests exceeds the lease", field="used_requests")
        assert entry.lease_expires_at is not None
        until = min(now, entry.lease_expires_at) + self.window_s
        self._record(LeaseReturned(now, lease_id, used_requests, used_tokens, until))
        self._check_approaching(now)

    # -- provider feedback ---------------------------------------------------------------------
    def observe(self, state: RateLimitState) -> None:
        """Adopt the provider's reported remaining/reset: tighten when it reports less than we
        think is left; cool until the reset when it reports nothing left; cool for
        ``retry_after_s`` when given."""
        if not isinstance(state, RateLimitState):
            raise InvalidInput("observe takes a RateLimitState", field="state")
        _check_state(state)
        now = self._now()
        records: list[Record] = []
        cool_until = self._cooling_until
        reported: tuple[tuple[LimitType, int | None, float | None], ...] = (
            ("rpm", state.remaining_requests, state.reset_requests_s),
            ("tpm", state.remaining_tokens, state.reset_tokens_s),
        )
        for limit_type, remaining, reset_s in reported:
            if remaining is None:
                continue
            granted = self._tighten(limit_type, remaining, reset_s, now)
            if granted is not None:
                records.append(granted)
            if remaining == 0 and reset_s is not None:
                cool_until = max(cool_until or now, now + reset_s)
        if cool_until is not None and cool_until != self._cooling_until and cool_until > now:
            records.append(Cooled(now, cool_until))
        for record in records:
            self._record(record)
        if state.retry_after_s is not None:
            self.cool_down(state.retry_after_s)
        self._check_approaching(now)

    def cool_down(self, retry_after_s: float, limit_type: LimitType = "rpm") -> None:
        """After a provider 429: refuse reservations and leases for ``retry_after_s`` seconds."""
        retry_after_s = _seconds(retry_after_s, "retry_after_s")
        if limit_type not in ("rpm", "tpm"):
            raise InvalidInput("limit_type must be 'rpm' or 'tpm'", field="limit_type")
        now = self._now()
        until = now + retry_after_s
        if self._cooling_until is None or until > self._cooling_until:
            self._record(Cooled(now, until))
        used, limit = self._used_and_limit(limit_type)
        self._emit(kind="provider_429", limit_type=limit_type, used=used, limit=limit,
                   retry_after_s=retry_after_s)

    # -- reads ---------------------------------------------------------------------------------
    def status(self) -> RateLimitStatus:
        """Usage, leased capacity and cool-down as of now."""
        now = self._now()
        leased = [
            e for e in self._entries.values()
            if e.kind == "lease" and not e.returned and e.lease_expires_at is not None
            and now < e.lease_expires_at
        ]
        threshold = self.settings.approaching_threshold
        return RateLimitStatus(
            model_id=self.model_id, provider=self.provider, window_s=self.window_s,
            requests_used=self._used_requests, requests_limit=self.rpm,
            tokens_used=self._used_tokens, tokens_limit=self.tpm,
            leased_requests=sum(e.requests for e in leased),
            leased_tokens=sum(e.tokens for e in leased),
            pending_reservations=sum(1 for e in self._entries.values() if e.pending),
            cooling_until_monotonic=self._cooling_until if self._is_cooling(now) else None,
            approaching_rpm=self._used_requests >= threshold * self.rpm,
            approaching_tpm=self._used_tokens >= threshold * self.tpm,
            cooling_for_s=(self._cooling_until - now if self._cooling_until is not None
                           and now < self._cooling_until else None),
        )

    def headroom(self) -> float:
        """The share of the tighter limit (RPM or TPM) still free now, in [0, 1] (leased
        capacity counts as used); 0 while cooling down."""
        now = self._now()
        if self._is_cooling(now):
            return 0.0
        used = max(self._used_requests / self.rpm, self._used_tokens / self.tpm)
        return min(1.0, max(0.0, 1.0 - used))

    def outstanding(self) -> bool:
        """Whether anything granted is still open now: a lease neither returned nor expired, a
        reservation pending, or a cool-down running (a limiter that retires must have none)."""
        now = self._now()
        if self._is_cooling(now):
            return True
        return any(e.pending or (e.kind == "lease" and not e.returned
                                 and e.lease_expires_at is not None and now < e.lease_expires_at)
                   for e in self._entries.values())

    def is_limited(self) -> bool:
        """True when a one-request, one-token reservation would be refused now."""
        return self.limited_until() is not None

    def limited_until(self) -> float | None:
        """Until when (monotonic) a one-request, one-token reservation would be refused; None
        when it would be granted now."""
        now = self._now()
        refusal = self._refusal(1, min(1, self.tpm), now)
        return None if refusal is None else now + refusal[1]

    def drain_events(self) -> list[Event]:
        """Take the events collected since the last drain (for the event sink)."""
        events, self._events = self._events, []
        return events

    def drain_records(self) -> list[Record]:
        """Take the decision records made since the last drain (for a journal that survives a
        restart; see :class:`LimiterJournal`)."""
        records, self._unsaved = self._unsaved, []
        return records

    def history(self) -> list[Record]:
        """The decision records whose fold is the current state (see :meth:`replay`)."""
        return list(self._history)

    def snapshot(self) -> RateLimiterSnapshot:
        """The state as of now (entries that slid out of the window are dropped first)."""
        self._prune(self._clock.monotonic())
        return self._state_snapshot()

    def _state_snapshot(self) -> RateLimiterSnapshot:
        return RateLimiterSnapshot(
            model_id=self.model_id, rpm=self.rpm, tpm=self.tpm, window_s=self.window_s,
            entries=tuple(sorted(self._entries.values(), key=lambda e: e.entry_id)),
            cooling_until=self._cooling_until,
            approaching_rpm=self._approaching["rpm"], approaching_tpm=self._approaching["tpm"],
        )

    @classmethod
    def replay(
        cls,
        records: Iterable[Record],
        model_id: str,
        rpm: int,
        tpm: int,
        *,
        settings: RateLimitSettings = RateLimitSettings(),
        clock: Clock = SYSTEM_CLOCK,
        provider: str | None = None,
    ) -> RateLimiterCore:
        """A core whose state is the fold of ``records`` (no events are emitted)."""
        core = cls(model_id, rpm, tpm, settings=settings, clock=clock, provider=provider)
        for record in records:
            core._record(record)
        core._unsaved.clear()  # already saved: they are what was replayed
        return core

    # -- deciding ------------------------------------------------------------------------------
    def _refusal(self, requests: int, tokens: int, now: float) -> tuple[str, float] | None:
        """None when ``requests`` and ``tokens`` fit now; else (reason, seconds until they fit)."""
        fits_at = self._fits_at(requests, tokens, now)
        if self._is_cooling(now):
            assert self._cooling_until is not None
            return "cooling_down", _wait_s(now, max(self._cooling_until, fits_at))
        if fits_at <= now:
            return None
        reason = "rpm" if self._used_requests + requests > self.rpm else "tpm"
        return reason, _wait_s(now, fits_at)

    def _fits_at(self, requests: int, tokens: int, now: float) -> float:
        """The earliest time at which counted usage leaves room for the ask (no new grants)."""
        excess_requests = self._used_requests + requests - self.rpm
        excess_tokens = self._used_tokens + tokens - self.tpm
        if excess_requests <= 0 and excess_tokens <= 0:
            return now
        counted = sorted((e for e in self._entries.values() if e.counted), key=lambda e: e.until)
        for entry in counted:
            excess_requests -= entry.requests
            excess_tokens -= entry.tokens
            if excess_requests <= 0 and excess_tokens <= 0:
                return entry.until
        return math.inf  # only reachable for asks above the limits themselves

    def _leasable(self, requests: int, tokens: int, now: float) -> tuple[int, int]:
        if requests == 0 or self._is_cooling(now):
            return 0, 0
        granted_requests = min(requests, self.rpm - self._used_requests)
        granted_tokens = min(tokens, self.tpm - self._used_tokens)
        if granted_requests <= 0 or (tokens > 0 and granted_tokens <= 0):
            return 0, 0
        return granted_requests, max(granted_tokens, 0)

    def _zero_lease(self, requests: int, tokens: int, now: float) -> Lease:
        """Nothing granted; ``retry_after_s``: when one request of ``tokens`` would fit."""
        retry_after_s = 0.0
        if requests > 0:
            refusal = self._refusal(1, tokens, now)
            if refusal is not None:
                reason, retry_after_s = refusal
                self._emit_exceeded(reason, retry_after_s)
        return Lease(None, self.model_id, 0, 0, now, retry_after_s)

    def _tighten(
        self, limit_type: LimitType, remaining: int, reset_s: float | None, now: float
    ) -> Granted | None:
        used, limit = self._used_and_limit(limit_type)
        ours = limit - used
        if remaining >= ours:
            return None
        gap = ours - remaining
        entry = EntryState(
            entry_id=self._new_id("x"), kind="external", started_at=now,
            until=now + (self.window_s if reset_s is None else reset_s),
            requests=gap if limit_type == "rpm" else 0, tokens=gap if limit_type == "tpm" else 0,
        )
        return Granted(now, entry) if entry.until > now else None

    def _check_approaching(self, now: float) -> None:
        for limit_type in ("rpm", "tpm"):
            used, limit = self._used_and_limit(limit_type)
            above = used >= self.settings.approaching_threshold * limit
            if above == self._approaching[limit_type]:
                continue
            self._record(Flagged(now, limit_type, above))
            if above:
                self._emit(kind="approaching", limit_type=limit_type, used=used, limit=limit)

    def _pending_reservation(self, reservation_id: str) -> EntryState:
        entry = self._entries.get(reservation_id) if isinstance(reservation_id, str) else None
        if entry is None or entry.kind != "reservation" or not entry.pending:
            raise InvalidInput("unknown or already settled reservation", field="reservation_id")
        return entry

    # -- applying (the fold) -------------------------------------------------------------------
    def _record(self, record: Record) -> None:
        self._apply(record)
        if self._journaled:
            self._unsaved.append(record)
        if isinstance(record, Restored):
            self._history = [record]
            return
        self._history.append(record)
        if len(self._history) > self._max_history:
            self._history = [Restored(record.at, self._state_snapshot())]

    def _apply(self, record: Record) -> None:
        if isinstance(record, Restored):
            self._restore(record.snapshot)
            return
        self._prune(record.at)
        if isinstance(record, Granted):
            self._add(record.entry)
        elif isinstance(record, Committed):
            self._change(record.entry_id, tokens=record.tokens, pending=False)
        elif isinstance(record, Released):
            self._change(record.entry_id, requests=0, tokens=0, pending=False, counted=False)
        elif isinstance(record, LeaseReturned):
            self._change(record.entry_id, requests=record.requests, tokens=record.tokens,
                         until=record.until, returned=True)
        elif isinstance(record, Cooled):
            self._cooling_until = record.until
        elif isinstance(record, Flagged):
            self._approaching[record.limit_type] = record.on

    def _add(self, entry: EntryState) -> None:
        self._entries[entry.entry_id] = entry
        self._used_requests += entry.requests
        self._used_tokens += entry.tokens
        heapq.heappush(self._expiry_heap, (entry.until, entry.entry_id))
        if entry.pending:
            self._pending_order.append((entry.started_at, entry.entry_id))

    def _change(self, entry_id: str, **changes: Any) -> None:  # EntryState fields, as replace()
        old = self._entries[entry_id]
        new = replace(old, **changes)
        self._used_requests += _counted(new)[0] - _counted(old)[0]
        self._used_tokens += _counted(new)[1] - _counted(old)[1]
        if new.until != old.until:
            heapq.heappush(self._expiry_heap, (new.until, entry_id))
        if new.counted or new.pending:
            self._entries[entry_id] = new
        else:
            del self._entries[entry_id]

    def _prune(self, now: float) -> None:
        """Drop what slid out of the window, and reservations orphaned past their TTL."""
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            until, entry_id = heapq.heappop(heap)
            entry = self._entries.get(entry_id)
            if entry is None or entry.until != until or not entry.counted:
                continue
            self._change(entry_id, counted=False)
        horizon = now - self._reservation_ttl_s
        while self._pending_order and self._pending_order[0][0] <= horizon:
            _, entry_id = self._pending_order.popleft()
            entry = self._entries.get(entry_id)
            if entry is not None and entry.pending and not entry.counted:
                del self._entries[entry_id]
        if self._cooling_until is not None and self._cooling_until <= now:
            self._cooling_until = None

    def _restore(self, snapshot: RateLimiterSnapshot) -> None:
        self._reset_state()
        for entry in snapshot.entries:
            self._entries[entry.entry_id] = entry
            if entry.counted:
                self._used_requests += entry.requests
                self._used_tokens += entry.tokens
                heapq.heappush(self._expiry_heap, (entry.until, entry.entry_id))
            if entry.pending:
                self._pending_order.append((entry.started_at, entry.entry_id))
        self._pending_order = deque(sorted(self._pending_order))
        self._cooling_until = snapshot.cooling_until
        self._approaching = {"rpm": snapshot.approaching_rpm, "tpm": snapshot.approaching_tpm}

    # -- helpers -------------------------------------------------------------------------------
    def _now(self) -> float:
        now = self._clock.monotonic()
        self._prune(now)
        return now

    def _is_cooling(self, now: float) -> bool:
        return self._cooling_until is not None and now < self._cooling_until

    def _used_and_limit(self, limit_type: LimitType) -> tuple[int, int]:
        if limit_type == "rpm":
            return self._used_requests, self.rpm
        return self._used_tokens, self.tpm

    def _new_id(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}-{self._prefix}-{self._seq}"

    def _emit_exceeded(self, reason: str, retry_after_s: float) -> None:
        limit_type = _LIMIT_TYPES.get(reason)
        if limit_type is None:
            return  # cool-down refusals were already reported as provider_429
        used, limit = self._used_and_limit(limit_type)
        self._emit(kind="exceeded", limit_type=limit_type, used=used, limit=limit,
                   retry_after_s=retry_after_s)

    def _emit(self, **fields: object) -> None:
        self._events.append(RateLimitHit(
            occurred_at=self._clock.now(), model_id=self.model_id, provider=self.provider,
            **fields,
        ))


def _wait_s(now: float, then: float) -> float:
    """Seconds from ``now`` to ``then``, rounded up so that ``now + wait >= then`` in floats."""
    wait = then - now
    while now + wait < then:
        wait = math.nextafter(wait, math.inf)
    return wait


def _counted(entry: EntryState) -> tuple[int, int]:
    """What an entry adds to the window's usage."""
    return (entry.requests, entry.tokens) if entry.counted else (0, 0)


def _check_state(state: RateLimitState) -> None:
    for name in ("limit_requests", "remaining_requests", "limit_tokens", "remaining_tokens"):
        value = getattr(state, name)
        if value is not None:
            count(value, name)
    for name in ("reset_requests_s", "reset_tokens_s", "retry_after_s"):
        value = getattr(state, name)
        if value is not None:
            _seconds(value, name)
