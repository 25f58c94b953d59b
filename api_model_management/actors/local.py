"""An in-process request path (no Ray): the RouterCore on local cores. Used by the original
system's ``FailoverManager`` facade, by tests of the path, and by benchmarks as a reference."""

from __future__ import annotations

from pathlib import Path

from .._clock import SYSTEM_CLOCK, Clock
from ..config import RegistryConfig
from ..events._spool import SpoolWriter
from ._ports import LocalAdmission, LocalBudget, LocalCache
from .router import RouterCore


def build_local_router(
    config: RegistryConfig,
    *,
    env: dict | None = None,
    data_dir: str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    events=None,
    adapters: dict | None = None,
    **router_kwargs,
) -> RouterCore:
    from .._secrets import load_secrets
    from ..providers import make_adapter
    from .cache import CacheCore
    from .cost_ledger import CostLedgerCore
    from .rate_limiter import RateLimiterCore
    from .selector import SelectorCore

    settings = config.settings
    if adapters is None:
        secrets = load_secrets(config, env=env)
        adapters = {name: make_adapter(name, p, secrets.key_for(name)) for name, p in config.providers.items()}
    limiters = {
        m.id: RateLimiterCore(m.id, m.rate_limits.requests_per_minute, m.rate_limits.tokens_per_minute,
                              settings=settings.rate_limit, clock=clock, provider=m.provider)
        for m in config.models
    }
    ledger = CostLedgerCore(settings.budgets, clock=clock, registry=config)
    if events is None:
        events = SpoolWriter(data_dir or settings.data_dir, fsync=settings.events.fsync,
                             fsync_interval_ms=settings.events.fsync_interval_ms)
    router = RouterCore(
        config, adapters=adapters, selector=SelectorCore(config, clock=clock),
        admission=LocalAdmission(limiters), budget=LocalBudget(ledger) if settings.budgets.limits else None,
        events=events, cache=LocalCache(CacheCore(settings.cache, clock=clock)), **router_kwargs,
    )
    router.limiters = limiters
    router.ledger = ledger
    return router
