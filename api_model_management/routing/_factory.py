"""The one factory that builds a router: the same RouterCore, selector, adapters and concurrency
limits for every runtime; what differs is where admission, budget, the shared cache and outcomes
go, given by a :class:`RouterBackend`:

- :class:`LocalBackend` (here): the cores in this process, per-request reservations. Used by the
  original system's ``FailoverManager``, by tests of the path and by benchmarks as a reference.
- ``runtime.RayBackend``: leases from RateLimiter actors, slices from the CostLedger actor, a
  per-router LRU in front of the Cache actor, outcomes batched to the HealthChecker actors.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from .._clock import SYSTEM_CLOCK, Clock
from ..budget import BudgetPort, CostLedgerCore, LocalBudget
from ..cache import CacheCore, CachePort, LocalCache
from ..config import RegistryConfig
from ..evaluation import ResponseEvaluator
from ..ratelimit import AdmissionPort, LocalAdmission, RateLimiterCore
from ..selection import SelectorCore, StatsCore
from ._ports import AckPort, AdapterPort, EventPort, NullOutcomes, OutcomePort
from ._router import RouterCore

if TYPE_CHECKING:
    from ..providers import KeySource


class RouterBackend(Protocol):
    """Where a router's admission, budget, shared cache and outcomes go, in one runtime."""

    def admission(self, holder: str, clock: Clock) -> AdmissionPort: ...

    def budget(self, holder: str, clock: Clock) -> BudgetPort | None: ...

    def cache(self, clock: Clock) -> CachePort | None: ...

    def outcomes(self, stats: StatsCore) -> OutcomePort: ...


class LocalBackend:
    """The cores of one process: a RateLimiter per model, a CostLedger, a cache."""

    def __init__(self, config: RegistryConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        settings = config.settings
        self.budgets_limited = bool(settings.budgets.limits)
        self.limiters = {
            m.id: RateLimiterCore(m.id, limits.requests_per_minute, limits.tokens_per_minute,
                                  settings=settings.rate_limit, clock=clock, provider=m.provider,
                                  journaled=False)
            for m in config.models
            for limits in (config.admitted_rate_limits(m),)
        }
        self.ledger = CostLedgerCore(settings.budgets, clock=clock, registry=config)
        self.cache_core = CacheCore(settings.cache, clock=clock)

    def admission(self, holder: str, clock: Clock) -> AdmissionPort:
        return LocalAdmission(self.limiters)

    def budget(self, holder: str, clock: Clock) -> BudgetPort | None:
        return LocalBudget(self.ledger) if self.budgets_limited else None

    def cache(self, clock: Clock) -> CachePort | None:
        return LocalCache(self.cache_core)

    def outcomes(self, stats: StatsCore) -> OutcomePort:
        return NullOutcomes()


def make_adapters(config: RegistryConfig, api_keys: Mapping[str, KeySource] | None = None,
                  *, env: Mapping[str, str] | None = None) -> dict[str, AdapterPort]:
    """One adapter per configured provider, with its keys (from ``api_keys``: one key or a
    pool each, else every key the environment holds)."""
    from ..config import load_secrets
    from ..providers import make_adapter

    if api_keys is None:
        secrets = load_secrets(config, env=dict(env) if env is not None else None)
        api_keys = {name: secrets.keys_for(name) for name in config.providers}
    return {name: make_adapter(name, p, api_keys.get(name))
            for name, p in config.providers.items()}


R = TypeVar("R", bound=RouterCore)


def build_router(
    config: RegistryConfig,
    backend: RouterBackend,
    *,
    holder: str,
    events: EventPort,
    adapters: Mapping[str, AdapterPort],
    clock: Clock = SYSTEM_CLOCK,
    stats: StatsCore | None = None,
    selector: SelectorCore | None = None,
    replicas: int = 1,
    rng: random.Random | None = None,
    evaluator: ResponseEvaluator | None = None,
    acks: AckPort | None = None,
    cls: type[R] = RouterCore,  # type: ignore[assignment]  # mypy cannot type a TypeVar'd default
) -> R:
    """A RouterCore (or ``cls``) wired to ``backend``; ``holder`` names this router to the
    limiters and the ledger (its leases and slices). ``acks``: what a request waits for before it
    is answered (``settings.events.ack="shipped"``), if anything.

    ``stats``: the live statistics selection scores reliability with (``selection.seed_stats``
    reads them from the log: no cold start), handed to the selector before the first request;
    by default empty (the priors)."""
    selector = selector or SelectorCore(config, clock=clock)
    if stats is None:
        stats = StatsCore()
    else:
        selector.update_stats(stats.snapshot())
    return cls(
        config, router_id=holder, adapters=adapters, selector=selector,
        admission=backend.admission(holder, clock), budget=backend.budget(holder, clock),
        events=events, cache=backend.cache(clock), outcomes=backend.outcomes(stats),
        evaluator=evaluator, replicas=replicas, rng=rng, clock=clock, acks=acks,
    )


class LocalRouter(RouterCore):
    """A RouterCore on the cores of this process (see :func:`build_local_router`); its
    ``limiters`` and ``ledger`` are those cores."""

    limiters: dict[str, RateLimiterCore]
    ledger: CostLedgerCore


def build_local_router(
    config: RegistryConfig,
    *,
    env: Mapping[str, str] | None = None,
    data_dir: str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    events: EventPort | None = None,
    adapters: Mapping[str, AdapterPort] | None = None,
    rng: random.Random | None = None,
    evaluator: ResponseEvaluator | None = None,
    backend: LocalBackend | None = None,
    selector: SelectorCore | None = None,
    stats: StatsCore | None = None,
) -> LocalRouter:
    """An in-process router (no Ray): local cores (those of ``backend`` when given, e.g. the
    original system's facades' own), selection on ``selector`` (else its own), events to
    ``data_dir``'s spool (or ``events``; with ``settings.events.ack="shipped"`` and no ``events``,
    each answer waits for its events to be shipped to the log), adapters from the environment's keys (or
    ``adapters``). With no housekeeping and no EventSink, events the spool could not take are
    written back when the next request is admitted (``ResilientSpool.check``). Selection starts
    from ``stats`` (see :func:`build_router`); the local backend's outcomes do not update them."""
    from ..events._resilient import ResilientSpool
    from ..events._spool import SpoolWriter

    settings = config.settings
    backend = backend if backend is not None else LocalBackend(config, clock)
    acks: AckPort | None = None
    if events is None:
        shipped = settings.events.ack == "shipped"
        writer = SpoolWriter(data_dir or settings.data_dir, fsync=settings.events.fsync,
                             fsync_interval_ms=settings.events.fsync_interval_ms,
                             spool_dir=None if data_dir else settings.events.spool_dir,
                             ships=shipped)
        spool = ResilientSpool(writer, clock=clock)
        events = spool
        if shipped:  # this process ships its own spool: answered once in the log
            from ..events._shipper import spool_shipper

            acks = spool_shipper(writer, data_dir or settings.data_dir,
                                 timeout_s=settings.events.ack_timeout_s,
                                 pending=lambda: spool.queued_events)
    router = build_router(
        config, backend, holder="local", events=events,
        adapters=adapters if adapters is not None else make_adapters(config, env=env),
        clock=clock, selector=selector, stats=stats, rng=rng, evaluator=evaluator, acks=acks,
        cls=LocalRouter,
    )
    router.limiters, router.ledger = backend.limiters, backend.ledger
    return router
