"""Virtual keys: who is calling (:class:`KeyRing`) and what each key may still do
(:class:`KeyLimits`: its requests per minute and its own budget).

A key's requests per minute are counted by the package's one sliding-window core
(``ratelimit.RateLimiterCore``, the one every model's RPM goes through), one core per key.

A key is held only as its SHA-256: the configured hash, or the hash of the environment variable
named by ``key_env``, taken once at start. A presented key is hashed and compared with every
configured hash by ``hmac.compare_digest`` (no early exit: the time does not say which key came
close). Nothing here logs, stores or raises with a key; keys are known by their names.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from .._journal import ClockedJournal
from ..budget import window_start
from ..config import ConfigIssue, GatewayKey, RateLimitSettings
from ..errors import BudgetExceeded, ConfigError, RateLimitExceeded
from ..ratelimit import RateLimiterCore

#: Bytes of randomness in a key made by :func:`new_key` (256 bits).
KEY_BYTES = 32
KEY_PREFIX = "amm-"
_RPM_WINDOW = RateLimitSettings(window_s=60.0)
#: A key's window core keeps this many decision records before compacting them (nothing here
#: replays them: they are dropped as they are made).
_RPM_HISTORY = 1024


def key_hash(key: str) -> str:
    """The SHA-256 (hex) a key is configured and compared by."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A new random key and its SHA-256: ``(key, hash)``."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return key, key_hash(key)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY`` (OpenAI's SDK) or
    ``x-api-key: KEY`` (Anthropic's SDK); None when neither is there."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get("x-api-key")
    return value.strip() or None if value is not None else None


class KeyRing:
    """The configured virtual keys, by hash."""

    def __init__(self, keys: Sequence[GatewayKey], env: Mapping[str, str]) -> None:
        self.keys = {k.name: k for k in keys}
        self._hashes: list[tuple[bytes, GatewayKey]] = []
        issues: list[ConfigIssue] = []
        for i, key in enumerate(keys):
            digest = key.key_sha256
            if key.key_env is not None:
                value = env.get(key.key_env, "")
                if not value.strip():
                    issues.append(ConfigIssue(f"settings.gateway.keys[{i}].key_env",
                                              f"the variable {key.key_env} is not set",
                                              "set it in the environment or .env"))
                    continue
                digest = key_hash(value.strip())
            assert digest is not None  # one of the two, by the schema
            self._hashes.append((bytes.fromhex(digest), key))
        if issues:
            raise ConfigError("a gateway key cannot be read: " + "; ".join(map(str, issues)),
                              issues=issues)

    def __len__(self) -> int:
        return len(self._hashes)

    def authenticate(self, presented: str | None) -> GatewayKey | None:
        """The key whose hash matches ``presented``, or None. Every configured hash is compared
        (constant time each), whatever matched."""
        if presented is None:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: GatewayKey | None = None
        for expected, key in self._hashes:
            if hmac.compare_digest(digest, expected):
                found = key
        return found


@dataclass(frozen=True)
class KeyHold:
    """A request's hold on its key's budget (the most it can cost), to settle or release."""

    key: str
    amount_usd: Decimal


@dataclass(frozen=True)
class KeyStatus:
    """A key's budget in its current window (for ``/metrics``)."""

    name: str
    limit_usd: Decimal | None
    spent_usd: Decimal
    reserved_usd: Decimal
    requests_per_minute: int | None
    requests_in_window: int

    @property
    def headroom_usd(self) -> Decimal | None:
        if self.limit_usd is None:
            return None
        return max(Decimal(0), self.limit_usd - self.spent_usd - self.reserved_usd)


class KeyLimits:
    """Each key's requests per minute (a sliding window: one ``RateLimiterCore`` per key, its
    token limit unused) and budget per window (spend plus the holds of requests in flight never
    passes it), on an injected clock.

    ``share`` is this process's part of every limit (1/N with N gateway workers, which do not
    share memory): each worker admits at most ``share`` of a key's requests per minute (at least
    one) and of its budget, counting ``share`` of what the journal holds from before it started,
    so that together they never pass a limit. Spend is appended to ``journal`` (one line per
    request that cost something: key name, time, USD; never a key) and read back at start."""

    def __init__(self, keys: Sequence[GatewayKey], *, timezone: str = "UTC",
                 clock: Clock = SYSTEM_CLOCK, journal: Path | None = None,
                 share: float = 1.0) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.keys = {k.name: k for k in keys}
        self._zone = timezone
        self._clock = clock
        self._share = Decimal(str(share))
        self._rpm = {k.name: RateLimiterCore(f"key:{k.name}",
                                             max(1, int(k.requests_per_minute * share)), 1,
                                             settings=_RPM_WINDOW, clock=clock,
                                             max_history=_RPM_HISTORY, journaled=False)
                     for k in keys if k.requests_per_minute is not None}
        self._spent: dict[tuple[str, datetime], Decimal] = {}
        self._reserved: dict[str, Decimal] = {}
        self._windows: dict[str, tuple[datetime, datetime]] = {}  # window -> current (start, end)
        self._journal = ClockedJournal(journal, clock) if journal is not None else None
        if self._journal is not None:
            self._replay(self._journal)

    # -- requests per minute -------------------------------------------------------------------
    def admit(self, name: str) -> None:
        """Count one request of key ``name``; ``RateLimitExceeded`` (with ``retry_after_s``) when
        its window is full."""
        window = self._rpm.get(name)
        if window is None:
            return
        admission = window.reserve(0)
        # the core's RateLimitHit events are about a model: not kept for a key (nor its records:
        # the core is not journaled)
        window.drain_events()
        if not admission.granted:
            raise RateLimitExceeded(f"virtual key {name!r} is over its {self.keys[name].requests_per_minute} "
                                    "requests per minute", scope="key", key_name=name,
                                    retry_after_s=max(0.001, admission.retry_after_s))
        assert admission.reservation_id is not None
        window.commit(admission.reservation_id, 0)  # counted until it slides out of the window
        window.drain_events()

    # -- budget --------------------------------------------------------------------------------
    def reserve(self, name: str, amount_usd: Decimal) -> KeyHold:
        """Hold ``amount_usd`` (a request's worst case) on key ``name``'s budget;
        ``BudgetExceeded`` (with ``retry_after_s``: when the window turns) when it would pass."""
        key = self.keys[name]
        hold = KeyHold(name, amount_usd)
        if key.budget_usd is None:
            return hold
        limit = key.budget_usd * self._share
        spent, reserved = self._spent_now(name), self._reserved.get(name, Decimal(0))
        if spent + reserved + amount_usd > limit:
            raise BudgetExceeded(
                f"the {key.budget_window} budget of virtual key {name!r} would be exceeded",
                scope="key", scope_key=name, window=key.budget_window,
                limit_usd=key.budget_usd, requested_usd=amount_usd,
                retry_after_s=self._until_next_window(key))
        self._reserved[name] = reserved + amount_usd
        return hold

    def settle(self, hold: KeyHold, actual_usd: Decimal) -> None:
        """The request cost ``actual_usd``: drop the hold, count the spend (and journal it)."""
        self._unhold(hold)
        if actual_usd <= 0:
            return
        at = self._clock.now()
        self._add(hold.key, at, actual_usd)
        if self._journal is not None:
            self._journal.append_json([{"key": hold.key, "at": at.isoformat(),
                                        "usd": str(actual_usd)}])

    def release(self, hold: KeyHold) -> None:
        """The request failed at no cost: drop the hold."""
        self._unhold(hold)

    def status(self) -> list[KeyStatus]:
        out = []
        for name, key in self.keys.items():
            window = self._rpm.get(name)
            recent = window.status().requests_used if window is not None else 0
            limit = key.budget_usd * self._share if key.budget_usd is not None else None
            out.append(KeyStatus(name, limit, self._spent_now(name),
                                 self._reserved.get(name, Decimal(0)),
                                 window.rpm if window is not None else None, recent))
        return out

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    # -- internals -----------------------------------------------------------------------------
    def _unhold(self, hold: KeyHold) -> None:
        if self.keys[hold.key].budget_usd is None:
            return
        left = self._reserved.get(hold.key, Decimal(0)) - hold.amount_usd
        self._reserved[hold.key] = max(Decimal(0), left)

    def _spent_now(self, name: str) -> Decimal:
        start = self._window(self.keys[name].budget_window, self._clock.now())
        return self._spent.get((name, start), Decimal(0))

    def _add(self, name: str, at: datetime, amount: Decimal) -> None:
        start = self._window(self.keys[name].budget_window, at)
        self._spent[(name, start)] = self._spent.get((name, start), Decimal(0)) + amount

    def _window(self, window: str, at: datetime) -> datetime:
        """The start of the ``window`` (day or month) holding ``at``: the current one is kept
        with its end, so that a request does not convert time zones."""
        span = self._windows.get(window)
        if span is not None and span[0] <= at < span[1]:
            return span[0]
        start = window_start(window, at, self._zone)  # type: ignore[arg-type]
        self._windows[window] = (start, _next_window(window, start, self._zone))
        return start

    def _until_next_window(self, key: GatewayKey) -> float:
        now = self._clock.now()
        start = self._window(key.budget_window, now)
        end = _next_window(key.budget_window, start, self._zone)
        return max(1.0, (end - now).total_seconds())

    def _replay(self, journal: ClockedJournal) -> None:
        """Spend from before this start, each record counted at ``share`` (every worker reads
        the same file); records of keys no longer configured are dropped. The file is compacted
        to the current windows' totals."""
        _, records = journal.read()
        totals: dict[tuple[str, datetime], Decimal] = {}
        for record in records:
            parsed = _record(record)
            if parsed is None or parsed[0] not in self.keys:
                continue
            name, at, amount = parsed
            start = window_start(self.keys[name].budget_window, at, self._zone)
            totals[(name, start)] = totals.get((name, start), Decimal(0)) + amount
        now = self._clock.now()
        current = {(n, s): v for (n, s), v in totals.items()
                   if s == window_start(self.keys[n].budget_window, now, self._zone)}
        for (name, start), amount in current.items():
            self._spent[(name, start)] = amount * self._share
        if len(records) > len(current) and self._share == 1:
            journal.replace_json([{"key": n, "at": s.isoformat(), "usd": str(v)}
                                  for (n, s), v in current.items()])


def _next_window(window: str, start: datetime, zone: str) -> datetime:
    """The start of the window after the one starting at ``start``."""
    probe = start + timedelta(days=32 if window == "month" else 1, hours=2)
    return window_start(window, probe, zone)  # type: ignore[arg-type]


def _record(value: Any) -> tuple[str, datetime, Decimal] | None:
    if not isinstance(value, dict):
        return None
    try:
        return (str(value["key"]), datetime.fromisoformat(value["at"]), Decimal(value["usd"]))
    except (KeyError, ValueError, TypeError, ArithmeticError):
        return None
