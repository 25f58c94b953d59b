"""Where ``ray.remote`` is applied, once, to the shells, and how the system's actors are started
and wired.

Sizing on a 2-core machine: every actor asks for a small fraction of a CPU (they are I/O bound),
so that two dozen of them fit beside the driver and Ray's own processes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import RegistryConfig
from ..errors import ComponentUnavailable
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

#: How long start-up waits for every actor's constructor (worker processes start concurrently; on
#: a loaded 2-core machine two dozen of them take tens of seconds).
START_TIMEOUT_S = 120.0
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
        return [handle for _, handle in self.named()]

    def named(self) -> list[tuple[str, Handle]]:
        """Every handle with the name of its actor (``CostLedger``, ``HealthChecker openai``, ...)."""
        return [("EventSink", self.sink), ("CostLedger", self.ledger), ("Cache", self.cache),
                ("Selector", self.selector),
                *((f"HealthChecker {p}", h) for p, h in self.health.items()),
                *((f"RateLimiter {m}", h) for m, h in self.limiters.items()),
                *((f"Router {i}", h) for i, h in enumerate(self.routers))]


def start_actors(config: RegistryConfig, api_keys: Mapping[str, Any], *,
                 name_prefix: str | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> ActorHandles:
    """Start the actors of design §3 from a configuration, wait until each has come up (its
    constructor ran: :func:`await_started`) and wire them by push. If any step fails, every actor
    started is killed and the error raised."""
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
            health=health, selector=selector, api_keys=api_keys, sink=sink)
        for i in range(config.settings.routers.replicas)
    ]
    handles = ActorHandles(sink, ledger, cache, selector, health, limiters, routers)
    try:
        await_started(handles, start_timeout_s)
        _wire(handles)
    except BaseException:
        for handle in handles.all():
            _ray.kill(handle)
        raise
    return handles


def await_started(handles: ActorHandles, timeout_s: float) -> None:
    """Wait until every actor answers ``ping`` (Ray runs an actor's constructor before its first
    call); raise ``ComponentUnavailable`` naming each actor that could not start, with its error
    class, or that did not answer within ``timeout_s``."""
    replies = [(name, _ray.send(handle, "ping", what=name)) for name, handle in handles.named()]
    deadline = time.monotonic() + timeout_s
    problems: dict[str, str] = {}
    for name, reply in replies:
        try:
            _ray.get(reply, timeout_s=max(0.0, deadline - time.monotonic()))
        except ComponentUnavailable as exc:
            cause = getattr(exc, "cause", None)
            problems[name] = f"the {name} could not start: {cause}" if cause else f"the {exc}"
        except TimeoutError:
            problems[name] = f"the {name} did not answer within {timeout_s:g} s"
    if problems:
        raise ComponentUnavailable("; ".join(problems.values()), component=", ".join(problems),
                                   restarting=False)


def _wire(handles: ActorHandles) -> None:
    sink, selector, health, limiters, routers = (handles.sink, handles.selector, handles.health,
                                                 handles.limiters, handles.routers)
    subscribers = [*routers, selector]
    _ray.get([_ray.send(sink, "start"), *[_ray.send(r, "start") for r in routers]])
    _ray.get([_ray.send(h, "subscribe", subscribers) for h in health.values()]
             + [_ray.send(lim, "subscribe", subscribers) for lim in limiters.values()]
             + [_ray.send(selector, "subscribe", routers)])
    _ray.get([_ray.send(h, "start") for h in health.values()])
