"""Which budget limits a spend counts towards, and in which window: the one answer used by the
CostLedger, the routers' budget admission, the SQL budget projection and config validation.

A limit has a scope (``global``, ``provider``, ``model``, ``agent_type``), a key and a window
(``day`` or ``month`` in the budgets' time zone, starting at local midnight). A spend under
``SpendKey(provider, model_id, agent_type)`` lands in one bucket per scope: ``global`` (key
``*``) and each scope whose value is known. A limit applies to it when

- its scope is ``global``, or
- its key equals the spend's value for that scope, or
- its key is ``*`` (or empty) for a non-global scope: then it applies to *each* key of that scope
  separately ("every agent type may spend $5 a day").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # the config package imports this module lazily (validation)
    from ..config import BudgetLimit

ScopeName = Literal["global", "provider", "model", "agent_type"]
WindowName = Literal["day", "month"]

GLOBAL_KEY = "*"
SCOPES: tuple[ScopeName, ...] = ("global", "provider", "model", "agent_type")
WINDOWS: tuple[WindowName, ...] = ("day", "month")


@dataclass(frozen=True)
class SpendKey:
    """Whose spend: the provider, model and agent type of a call (None where unknown)."""

    provider: str | None
    model_id: str | None
    agent_type: str | None


def spend_key_of(model_id: str | None, provider: str | None, agent_type: str | None,
                 judge_model_id: str | None = None,
                 providers: Mapping[str, str] | None = None) -> SpendKey:
    """Whose spend a logged cost is: its model (a judge's feedback: the judge model), that
    model's provider (from the registry when known) and its agent type."""
    key_model = judge_model_id or model_id
    key_provider = provider if key_model == model_id else None
    if providers is not None and key_model is not None:
        key_provider = providers.get(key_model, key_provider)
    return SpendKey(provider=key_provider, model_id=key_model, agent_type=agent_type)


def scope_keys(key: SpendKey) -> Iterator[tuple[ScopeName, str]]:
    """The (scope, scope_key) buckets one spend lands in (scopes with no value are skipped)."""
    yield "global", GLOBAL_KEY
    if key.provider:
        yield "provider", key.provider
    if key.model_id:
        yield "model", key.model_id
    if key.agent_type:
        yield "agent_type", key.agent_type


def per_key(scope: str, key: str) -> bool:
    """Whether a limit of ``scope`` with ``key`` applies to each key of its scope separately
    (a non-global scope with key ``*`` or empty)."""
    return scope != "global" and key in (GLOBAL_KEY, "")


def is_per_key(limit: BudgetLimit) -> bool:
    """A non-global limit with key ``*`` (or empty): one limit per key of its scope."""
    return per_key(limit.scope, limit.key)


def applicable_limits(limits: Sequence[BudgetLimit],
                      key: SpendKey) -> Iterator[tuple[BudgetLimit, str]]:
    """(limit, scope_key) for every limit that a spend under ``key`` counts towards."""
    keys = dict(scope_keys(key))
    for limit in limits:
        scope_key = keys.get(limit.scope)
        if scope_key is None:
            continue
        if limit.scope == "global" or is_per_key(limit) or limit.key == scope_key:
            yield limit, scope_key


def is_limited(limits: Sequence[BudgetLimit], key: SpendKey) -> bool:
    """True when some limit applies to ``key`` (a spend under it needs a reservation)."""
    return next(applicable_limits(limits, key), None) is not None


def limit_keys(limit: BudgetLimit, seen: Iterable[str]) -> list[str]:
    """The scope keys a limit covers: ``*`` for global, its key, or (per-key limits) every key
    of its scope in ``seen``."""
    if limit.scope == "global":
        return [GLOBAL_KEY]
    if is_per_key(limit):
        return sorted(set(seen))
    return [limit.key]


def window_start(window: WindowName, at: datetime, zone: ZoneInfo | str) -> datetime:
    """Start (UTC) of the day or month containing ``at`` in the time zone ``zone``."""
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    local = at.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "month":
        local = local.replace(day=1)
    return local.astimezone(UTC)
