"""Where ``ray.remote`` is applied, once, to the shells, and how the system's actors are started.

Sizing on a 2-core machine: every actor asks for a small fraction of a CPU (they are I/O bound),
so that two dozen of them fit beside the driver and Ray's own processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ray

from ..config import RegistryConfig
from ..events import uuid7
from ._router_shell import RouterShell
from ._shells import (
    CacheShell,
    CostLedgerShell,
    EventSinkShell,
    HealthCheckerShell,
    RateLimiterShell,
    SelectorShell,
)

_SMALL = {"num_cpus": 0.01, "max_restarts": -1, "max_task_retries": 0}
_ASYNC = {"max_concurrency": 1000}

EventSinkActor = ray.remote(**_SMALL)(EventSinkShell)
HealthCheckerActor = ray.remote(**_SMALL)(HealthCheckerShell)
RateLimiterActor = ray.remote(**_SMALL)(RateLimiterShell)
CostLedgerActor = ray.remote(**_SMALL)(CostLedgerShell)
CacheActor = ray.remote(**_SMALL)(CacheShell)
SelectorActor = ray.remote(**_SMALL)(SelectorShell)
RouterActor = ray.remote(**{**_SMALL, **_ASYNC})(RouterShell)


@dataclass
class ActorHandles:
    """The system's actor handles, for pipelines that pass them between Ray tasks.

    ``routers``: the request path (``complete.remote(request)``, ``stream.options(
    num_returns="streaming").remote(request)``, ``select.remote(request)``); ``health``: one
    HealthChecker per provider; ``limiters``: one RateLimiter per model; ``ledger``: the
    CostLedger; ``cache``: the shared Cache; ``selector``: the Selector; ``sink``: the EventSink.
    """

    sink: object
    ledger: object
    cache: object
    selector: object
    health: dict[str, object] = field(default_factory=dict)
    limiters: dict[str, object] = field(default_factory=dict)
    routers: list[object] = field(default_factory=list)

    def all(self) -> list[object]:
        return [self.sink, self.ledger, self.cache, self.selector, *self.health.values(),
                *self.limiters.values(), *self.routers]


def start_actors(config: RegistryConfig, api_keys: dict, *, name_prefix: str | None = None) -> ActorHandles:
    """Start the actors of design §3 from a configuration and wire them by push."""
    def opts(name: str) -> dict:
        return {"name": f"{name_prefix}:{name}"} if name_prefix else {}

    sink = EventSinkActor.options(**_ASYNC, **opts("sink")).remote(config)
    ledger = CostLedgerActor.options(**opts("ledger")).remote(config)
    cache = CacheActor.options(**opts("cache")).remote(config)
    selector = SelectorActor.options(**opts("selector")).remote(config, session=uuid7())
    health = {
        name: HealthCheckerActor.options(**_ASYNC, **opts(f"health:{name}")).remote(config, name, api_keys.get(name))
        for name in config.providers
    }
    limiters = {
        m.id: RateLimiterActor.options(**opts(f"ratelimit:{m.id}")).remote(config, m.id)
        for m in config.models
    }
    routers = [
        RouterActor.options(**opts(f"router:{i}")).remote(
            config, i, limiters=limiters, ledger=ledger, cache=cache, health=health,
            selector=selector, api_keys=api_keys,
        )
        for i in range(config.settings.routers.replicas)
    ]
    handles = ActorHandles(sink, ledger, cache, selector, health, limiters, routers)
    subscribers = [*routers, selector]
    ray.get([sink.start.remote(), *[r.start.remote() for r in routers]])
    ray.get([h.subscribe.remote(subscribers) for h in health.values()]
            + [lim.subscribe.remote(subscribers) for lim in limiters.values()]
            + [selector.subscribe.remote(routers)])
    ray.get([h.start.remote() for h in health.values()])
    return handles
