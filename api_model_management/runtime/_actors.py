"""Where ``ray.remote`` is applied, once, to the shells, and how the system's actors are started
and wired.

Sizing on a 2-core machine: every actor asks for a small fraction of a CPU (they are I/O bound),
so that two dozen of them fit beside the driver and Ray's own processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import RegistryConfig
from ..events import uuid7
from . import _ray
from ._ray import Handle
from ._router import RouterShell
from ._shells import (
    CacheShell,
    CostLedgerShell,
    EventSinkShell,
    HealthCheckerShell,
    RateLimiterShell,
    SelectorShell,
)

_SMALL: dict[str, Any] = {"num_cpus": 0.01, "max_restarts": -1, "max_task_retries": 0}
_ASYNC: dict[str, Any] = {"max_concurrency": 1000}

EventSinkActor = _ray.remote_class(EventSinkShell, **_SMALL)
HealthCheckerActor = _ray.remote_class(HealthCheckerShell, **_SMALL)
RateLimiterActor = _ray.remote_class(RateLimiterShell, **_SMALL)
CostLedgerActor = _ray.remote_class(CostLedgerShell, **_SMALL)
CacheActor = _ray.remote_class(CacheShell, **_SMALL)
SelectorActor = _ray.remote_class(SelectorShell, **_SMALL)
RouterActor = _ray.remote_class(RouterShell, **_SMALL, **_ASYNC)


@dataclass
class ActorHandles:
    """The system's actor handles, for pipelines that pass them between Ray tasks.

    ``routers``: the request path (``complete.remote(request)``, ``stream.options(
    num_returns="streaming").remote(request)``, ``select.remote(request)``); ``health``: one
    HealthChecker per provider; ``limiters``: one RateLimiter per model; ``ledger``: the
    CostLedger; ``cache``: the shared Cache; ``selector``: the Selector; ``sink``: the EventSink.
    """

    sink: Handle
    ledger: Handle
    cache: Handle
    selector: Handle
    health: dict[str, Handle] = field(default_factory=dict)
    limiters: dict[str, Handle] = field(default_factory=dict)
    routers: list[Handle] = field(default_factory=list)

    def all(self) -> list[Handle]:
        return [self.sink, self.ledger, self.cache, self.selector, *self.health.values(),
                *self.limiters.values(), *self.routers]


def start_actors(config: RegistryConfig, api_keys: Mapping[str, Any], *,
                 name_prefix: str | None = None) -> ActorHandles:
    """Start the actors of design §3 from a configuration and wire them by push."""
    def new(actor_class: Any, name: str, *args: Any, concurrent: bool = False,
            **kwargs: Any) -> Handle:
        opts: dict[str, Any] = {"name": f"{name_prefix}:{name}"} if name_prefix else {}
        if concurrent:
            opts.update(_ASYNC)
        return _ray.create(_ray.options(actor_class, **opts), *args, **kwargs)

    sink = new(EventSinkActor, "sink", config, concurrent=True)
    ledger = new(CostLedgerActor, "ledger", config)
    cache = new(CacheActor, "cache", config)
    selector = new(SelectorActor, "selector", config, session=uuid7())
    health = {
        name: new(HealthCheckerActor, f"health:{name}", config, name, api_keys.get(name),
                  concurrent=True)
        for name in config.providers
    }
    limiters = {m.id: new(RateLimiterActor, f"ratelimit:{m.id}", config, m.id) for m in config.models}
    routers = [
        new(RouterActor, f"router:{i}", config, i, limiters=limiters, ledger=ledger, cache=cache,
            health=health, selector=selector, api_keys=api_keys)
        for i in range(config.settings.routers.replicas)
    ]
    handles = ActorHandles(sink, ledger, cache, selector, health, limiters, routers)
    subscribers = [*routers, selector]
    _ray.get([_ray.send(sink, "start"), *[_ray.send(r, "start") for r in routers]])
    _ray.get([_ray.send(h, "subscribe", subscribers) for h in health.values()]
             + [_ray.send(lim, "subscribe", subscribers) for lim in limiters.values()]
             + [_ray.send(selector, "subscribe", routers)])
    _ray.get([_ray.send(h, "start") for h in health.values()])
    return handles
