"""The live state of a running system, read from its actors (``amm status --address``).

A system's actors are named ``<prefix>:ledger``, ``<prefix>:health`` (every provider's checker),
``<prefix>:ratelimit:<model>``, ``<prefix>:router:<i>``, ... (``ModelManagement.start``); a
system is found by its ``<prefix>:ledger`` in any namespace of the cluster. Each actor is asked
what it holds now: a HealthChecker its breaker's snapshot, a RateLimiter its window and
cool-down (``cooling_for_s``, on its own clock), the CostLedger its limits with spend and
reservations, each Router actor its counters, the EventSink the settings (where the log is, the
budgets' alert thresholds). Recent alerts come from the log, when this machine can read it.

Routers embedded in a caller's process are not actors: their requests in flight are not counted
here (their leases and budget slices are, at the RateLimiters and the CostLedger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..budget import BudgetStatus
from ..config import Settings
from ..errors import ComponentUnavailable
from ..health import HealthSnapshot
from ..projections._report import AlertRow
from ..projections._status import (
    BudgetHeadroom,
    InFlight,
    ModelLimit,
    ProviderHealth,
    SystemStatus,
    headroom_row,
    recent_alerts,
)
from ..ratelimit import RateLimitStatus
from . import _ray

#: How long each actor may take to answer.
ANSWER_TIMEOUT_S = 10.0
_LEDGER = "ledger"


@dataclass
class SystemActors:
    """One running system's named actors: their prefix, namespace and handles by role."""

    prefix: str
    namespace: str
    sink: Any = None
    ledger: Any = None
    health: dict[str, Any] = field(default_factory=dict)
    #: the actor hosting every provider's HealthChecker (``health`` is filled in from it)
    health_host: Any = None
    limiters: dict[str, Any] = field(default_factory=dict)
    routers: dict[int, Any] = field(default_factory=dict)


def find_systems() -> dict[str, str]:
    """Every system running on the connected cluster: its name prefix -> its namespace."""
    suffix = f":{_LEDGER}"
    return {name[: -len(suffix)]: namespace for namespace, name in _ray.named_actors()
            if name.endswith(suffix)}


def system_actors(prefix: str, namespace: str) -> SystemActors:
    """The named actors of the system ``prefix``, by role."""
    actors = SystemActors(prefix, namespace)
    head = f"{prefix}:"
    for ns, name in _ray.named_actors():
        if ns != namespace or not name.startswith(head):
            continue
        role, _, rest = name[len(head):].partition(":")
        handle = _ray.get_actor(name, namespace)
        if role == "sink":
            actors.sink = handle
        elif role == _LEDGER:
            actors.ledger = handle
        elif role == "health":
            actors.health_host = handle
        elif role == "ratelimit":
            actors.limiters[rest] = handle
        elif role == "router" and rest.isdigit():
            actors.routers[int(rest)] = handle
    return actors


def live_status(actors: SystemActors, address: str, *,
                timeout_s: float = ANSWER_TIMEOUT_S) -> SystemStatus:
    """Ask every actor of the system for its state, now."""
    now = datetime.now(UTC)
    notes: list[str] = []
    settings: Settings | None = _ask(actors.sink, "settings", "the EventSink", notes, timeout_s)
    if actors.health_host is not None and not actors.health:
        providers = _ask(actors.health_host, "providers", "the HealthCheckers", notes, timeout_s)
        actors.health = {p: _ray.Hosted(actors.health_host, p) for p in providers or []}
    health = {p: _ask(h, "status", f"the HealthChecker {p}", notes, timeout_s)
              for p, h in sorted(actors.health.items())}
    limits = {m: _ask(h, "status", f"the RateLimiter {m}", notes, timeout_s)
              for m, h in sorted(actors.limiters.items())}
    budgets = _ask(actors.ledger, "status", "the CostLedger", notes, timeout_s) or []
    counters = {i: _ask(h, "counters", f"Router {i}", notes, timeout_s)
                for i, h in sorted(actors.routers.items())}
    thresholds = settings.budgets.alert_thresholds if settings else []
    return SystemStatus(
        source="live", generated_at=now, system=actors.prefix, address=address,
        data_dir=str(settings.data_dir) if settings else None,
        providers=[_provider(p, snap) for p, snap in health.items() if snap is not None],
        models=_models(limits, health, now),
        budgets=[_budget(b, thresholds) for b in budgets],
        in_flight=_in_flight(counters, limits),
        alerts=_alerts(settings, now, notes),
        notes=[*notes, "routers embedded in callers' processes are not actors: their requests in "
                       "flight are not counted here", _limiters_note(settings, len(limits))],
    )


def _limiters_note(settings: Settings | None, running: int) -> str:
    """RateLimiters run for the models in use only (started on first use, retired when idle)."""
    idle = settings.rate_limit.idle_retire_s if settings is not None else None
    retire = f"retired after {idle:g} s idle" if idle else "never retired"
    return (f"{running} RateLimiter(s) running: one is started for a model on its first use and "
            f"{retire}; a model without one has its full rate limits")


def _ask(handle: Any, method: str, what: str, notes: list[str], timeout_s: float) -> Any:
    """``handle.method()``'s answer, or None with a note when the actor is down or slow."""
    if handle is None:
        notes.append(f"{what} was not found")
        return None
    try:
        return _ray.get(_ray.send(handle, method, what=what), timeout_s=timeout_s)
    except ComponentUnavailable as exc:
        notes.append(str(exc))
    except TimeoutError:
        notes.append(f"{what} did not answer within {timeout_s:g} s")
    return None


def _provider(provider: str, snap: HealthSnapshot) -> ProviderHealth:
    return ProviderHealth(provider=provider, state=snap.state, since=snap.since,
                          reason=snap.reason, calls=snap.window_calls,
                          failures=snap.window_failures, window="breaker window")


def _models(limits: dict[str, RateLimitStatus | None], health: dict[str, HealthSnapshot | None],
            now: datetime) -> list[ModelLimit]:
    out = [row for model_id, status in limits.items() if status is not None
           for row in _limit_rows(model_id, status, now)]
    for provider, snap in health.items():
        for model_id in snap.unavailable_models if snap is not None else ():
            out.append(ModelLimit(model_id=model_id, provider=provider, state="unavailable",
                                  detail="the provider's health checks found it missing or failing"))
    return out


def _limit_rows(model_id: str, s: RateLimitStatus, now: datetime) -> list[ModelLimit]:
    usage = (f"{s.requests_used:,}/{s.requests_limit:,} requests, {s.tokens_used:,}/"
             f"{s.tokens_limit:,} tokens per {s.window_s:g} s window (leased: {s.leased_requests:,}"
             f" requests)")
    if s.cooling_for_s is not None:
        return [ModelLimit(model_id=model_id, provider=s.provider, state="cooling down",
                           until=now + timedelta(seconds=s.cooling_for_s), detail=usage)]
    if s.approaching_rpm or s.approaching_tpm:
        return [ModelLimit(model_id=model_id, provider=s.provider, state="near its limit",
                           detail=usage)]
    return []


def _budget(b: BudgetStatus, thresholds: list[float]) -> BudgetHeadroom:
    return headroom_row(b.scope, b.key, b.window, b.limit_usd, b.spent_usd, b.reserved_usd,
                        thresholds)


def _in_flight(counters: dict[int, dict[str, int] | None],
               limits: dict[str, RateLimitStatus | None]) -> list[InFlight]:
    rows = [InFlight(where=f"Router {i}", requests=_open(c),
                     detail=f"{c.get('requests', 0):,} requests so far, {c.get('failovers', 0):,} "
                            "failovers")
            for i, c in counters.items() if c is not None]
    pending = sum(s.pending_reservations for s in limits.values() if s is not None)
    leased = sum(s.leased_requests for s in limits.values() if s is not None)
    rows.append(InFlight(where="RateLimiters", requests=pending,
                         detail=f"per-request reservations pending; {leased:,} requests of "
                                "capacity leased to routers"))
    return rows


def _open(counters: dict[str, int]) -> int:
    return max(0, counters.get("requests", 0) - counters.get("completed", 0)
               - counters.get("failed", 0))


def _alerts(settings: Settings | None, now: datetime, notes: list[str]) -> list[AlertRow]:
    if settings is None:
        return []
    data_dir = str(settings.data_dir)
    if "://" not in data_dir and not (Path(data_dir) / "events").is_dir():
        notes.append(f"alerts: the log at {data_dir} is not readable from this machine")
        return []
    from ..projections import Projections

    with Projections(data_dir) as p:
        return recent_alerts(p, now)
