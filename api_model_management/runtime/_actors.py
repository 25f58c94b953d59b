"""Where ``ray.remote`` is applied, once, to the shells, and how the system's actors are started
and wired.

Sizing on a 2-core machine: every actor asks for a small fraction of a CPU (they are I/O bound),
so that two dozen of them fit beside the driver and Ray's own processes.

RateLimiters are not started here: one is started for a model when a router first needs a lease
for it, and retires when idle (``_limiters.LimiterDirectory``, ``settings.rate_limit.
idle_retire_s``), so start-up and memory do not grow with the registry.

Placement on a cluster: the control plane (CostLedger, Cache, Selector, HealthCheckers,
RateLimiters) prefers the node that started the system (soft node affinity: their journals are
on that node's disk; if the node goes, Ray restarts them elsewhere). One EventSink runs on every
node (hard affinity: it ingests that node's spool, and Ray restarts it there). Router actors are
spread by Ray (``settings.routers.placement = "spread"``) or one per node (``"per_node"``).
:func:`add_node_actors` gives a node that joined later its sink (and router).

Every actor is named ``<prefix>:<role>[:<key>]`` (in the starting driver's namespace), so that
another driver finds a running system in any namespace (:func:`find_actors`) and ``amm status``
reads it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import RegistryConfig
from ..errors import ComponentUnavailable
from ..events import uuid7
from . import _ray
from ._limiters import LimiterDirectory, LimiterShell
from ._nodes import NodeWatcherShell
from ._ray import Handle
from ._router import RouterShell
from ._shells import (
    CacheShell,
    CostLedgerShell,
    EventSinkShell,
    HealthCheckersShell,
    SelectorShell,
)

#: How long start-up waits for every actor's constructor (worker processes start concurrently; on
#: a loaded 2-core machine two dozen of them take tens of seconds).
START_TIMEOUT_S = 120.0
#: The Ray namespace of detached systems' actors (``ModelManagement.start(detached=True)``).
DETACHED_NAMESPACE = "amm"
_SMALL: dict[str, Any] = {"num_cpus": 0.01, "max_restarts": -1, "max_task_retries": 0}
_ASYNC: dict[str, Any] = {"max_concurrency": 1000}

EventSinkActor = _ray.remote_class(EventSinkShell, **_SMALL)
HealthCheckersActor = _ray.remote_class(HealthCheckersShell, **_SMALL)
RateLimiterActor = _ray.remote_class(LimiterShell, **_SMALL)
CostLedgerActor = _ray.remote_class(CostLedgerShell, **_SMALL)
CacheActor = _ray.remote_class(CacheShell, **_SMALL)
SelectorActor = _ray.remote_class(SelectorShell, **_SMALL)
RouterActor = _ray.remote_class(RouterShell, **_SMALL, **_ASYNC)
NodeWatcherActor = _ray.remote_class(NodeWatcherShell, **_SMALL)


@dataclass
class ActorHandles:
    """The system's actor handles, for pipelines that pass them between Ray tasks.

    ``routers``: the request path (``complete.remote(request)``, ``stream.options(
    num_returns="streaming").remote(request)``, ``select.remote(request)``); ``health``: the
    HealthChecker of each provider (``health[p].status.remote()``; all are hosted by one actor,
    ``health_host``); ``limiters``: the RateLimiter of each model, started on first
    use (``limiters[model_id]``; ``limiters.live()``: those running now); ``ledger``: the
    CostLedger; ``cache``: the shared Cache; ``selector``: the Selector; ``sink``: the EventSink.
    """

    sink: Handle
    ledger: Handle
    cache: Handle
    selector: Handle
    health: dict[str, Handle] = field(default_factory=dict)
    limiters: LimiterDirectory = field(default_factory=lambda: LimiterDirectory.of({}))
    routers: list[Handle] = field(default_factory=list)
    #: one EventSink per node, by node id (``sink`` is the one of the starting node)
    sinks: dict[str, Handle] = field(default_factory=dict)
    #: the node each Router actor is placed on (``per_node`` placement), by router index
    router_nodes: dict[int, str] = field(default_factory=dict)
    #: nodes drained for removal (``ModelManagement.drain_node``): given no actors again
    drained: set[str] = field(default_factory=set)
    #: the number the next Router actor started is named by (``router:<n>``; never reused, as
    #: a stopped router's name may still be taken for a moment)
    next_router: int = 0
    #: the actor hosting every provider's HealthChecker (``health`` holds one handle for each)
    health_host: Handle | None = None
    #: a detached system's node watcher (``_nodes.NodeWatcherShell``); None: a driver watches
    node_watcher: Handle | None = None

    def all(self) -> list[Handle]:
        return [handle for _, handle in self.named()]

    def router_for_current_node(self) -> Handle:
        """A Router actor on the node this code runs on (a driver, a Ray task or actor), else
        any; ``ComponentUnavailable`` when there is none."""
        if not self.routers:
            raise ComponentUnavailable("the system has no Router actor", component="Router",
                                       restarting=False)
        node = _ray.current_node_id()
        self.learn_router_nodes()
        local = [i for i, n in sorted(self.router_nodes.items()) if n == node]
        return self.routers[local[0] if local else 0]

    def learn_router_nodes(self) -> None:
        """Ask the routers whose node is not known yet where they run."""
        unknown = [i for i in range(len(self.routers)) if i not in self.router_nodes]
        if not unknown:
            return
        replies = [_ray.send(self.routers[i], "node", what="Router") for i in unknown]
        try:
            nodes = _ray.get(replies, timeout_s=10.0)
        except (ComponentUnavailable, TimeoutError):
            return  # asked again next time
        self.router_nodes.update({i: n for i, n in zip(unknown, nodes, strict=True) if n})

    def forget_routers(self, indices: list[int]) -> None:
        """Take routers out (their node left, or was drained); the others keep their order."""
        keep = [i for i in range(len(self.routers)) if i not in set(indices)]
        nodes = self.router_nodes
        self.router_nodes = {new: nodes[old] for new, old in enumerate(keep) if old in nodes}
        self.routers = [self.routers[i] for i in keep]

    def named(self) -> list[tuple[str, Handle]]:
        """Every handle with the name of its actor (``CostLedger``, ``HealthChecker openai``, ...)."""
        sinks = [(f"EventSink {n[:8]}", h) for n, h in self.sinks.items() if h is not self.sink]
        health = ([("HealthCheckers", self.health_host)] if self.health_host is not None
                  else [(f"HealthChecker {p}", h) for p, h in self.health.items()])
        watcher = [("NodeWatcher", self.node_watcher)] if self.node_watcher is not None else []
        return [*watcher, ("EventSink", self.sink), *sinks, ("CostLedger", self.ledger),
                ("Cache", self.cache), ("Selector", self.selector), *health,
                *((f"RateLimiter {m}", h) for m, h in self.limiters.live().items()),
                *((f"Router {i}", h) for i, h in enumerate(self.routers))]


class _Factory:
    """Creates one system's actors: named ``<prefix>:<name>`` in the driver's namespace (got if
    they exist already), placed as asked."""

    def __init__(self, name_prefix: str | None, *, detached: bool = False) -> None:
        self.name_prefix = name_prefix
        self.detached = detached

    def new(self, actor_class: Any, name: str, *args: Any, concurrent: bool = False,
            placement: Mapping[str, Any] | None = None, **kwargs: Any) -> Handle:
        opts: dict[str, Any] = dict(placement or {})
        if self.name_prefix:
            opts.update(name=f"{self.name_prefix}:{name}", get_if_exists=True)
            if self.detached:  # outlives its driver: in a namespace any driver can name
                opts.update(lifetime="detached", namespace=DETACHED_NAMESPACE)
        if concurrent:
            opts.update(_ASYNC)
        return _ray.create(_ray.options(actor_class, **opts), *args, **kwargs)


def start_actors(config: RegistryConfig, api_keys: Mapping[str, Any], *,
                 name_prefix: str | None = None,
                 start_timeout_s: float = START_TIMEOUT_S, detached: bool = False) -> ActorHandles:
    """Start the actors of design §3 from a configuration, wait until each has come up (its
    constructor ran: :func:`await_started`) and wire them by push. If any step fails, every actor
    started is killed and the error raised. ``detached``: the actors outlive the driver (a
    shared system that other drivers join by its ``name_prefix``; without one, a random one:
    RateLimiters, started later, are named and find the others by name)."""
    name_prefix = name_prefix or f"amm-{uuid.uuid4().hex[:8]}"
    factory = _Factory(name_prefix, detached=detached)
    new = factory.new
    here = _ray.current_node_id()
    nodes = _ray.alive_nodes()
    control = _ray.on_node(here, soft=True)
    ledger = new(CostLedgerActor, "ledger", config, placement=control)
    sinks = {node: _new_sink(factory, config, ledger, node) for node in nodes}
    cache = new(CacheActor, "cache", config, placement=control)
    selector = new(SelectorActor, "selector", config, session=uuid7(), placement=control)
    health_host = new(HealthCheckersActor, "health", config, dict(api_keys), concurrent=True,
                      placement=control)
    limiters = LimiterDirectory(config, name_prefix, namespace=_namespace(detached), detached=detached,
                                node=here)
    handles = ActorHandles(sinks.get(here) or next(iter(sinks.values())), ledger, cache, selector,
                           _hosted_health(health_host, config.providers), limiters, sinks=sinks,
                           health_host=health_host)
    per_node = config.settings.routers.placement == "per_node"
    for i, node in enumerate(nodes if per_node else [None] * config.settings.routers.replicas):
        handles.routers.append(_new_router(factory, config, api_keys, handles, node))
        if node is not None:
            handles.router_nodes[i] = node
    try:
        await_started(handles, start_timeout_s)
        _wire(handles)
    except BaseException:
        for handle in handles.all():
            _ray.kill(handle)
        raise
    return handles


def _new_sink(factory: _Factory, config: RegistryConfig, ledger: Handle, node: str) -> Handle:
    return factory.new(EventSinkActor, f"sink:{node}", config, ledger, concurrent=True,
                       placement=_ray.on_node(node))


def _new_router(factory: _Factory, config: RegistryConfig, api_keys: Mapping[str, Any],
                handles: ActorHandles, node: str | None) -> Handle:
    index = handles.next_router
    handles.next_router += 1
    return factory.new(
        RouterActor, f"router:{index}", config, index, limiters=handles.limiters,
        ledger=handles.ledger, cache=handles.cache, health=handles.health,
        selector=handles.selector, api_keys=api_keys, sink=handles.sink, sinks=dict(handles.sinks),
        placement=_ray.on_node(node) if node is not None else None,
    )


def add_node_actors(config: RegistryConfig, api_keys: Mapping[str, Any], handles: ActorHandles,
                    node: str, *, name_prefix: str | None = None,
                    detached: bool = False) -> list[Handle]:
    """Give a node that joined the cluster its EventSink (and its Router, with ``per_node``
    placement), started and wired; returns the actors started."""
    factory = _Factory(name_prefix, detached=detached)
    started = []
    if node not in handles.sinks:
        handles.sinks[node] = _new_sink(factory, config, handles.ledger, node)
        started.append(handles.sinks[node])
        _ray.get(_ray.send(handles.sinks[node], "start", what="EventSink"), timeout_s=START_TIMEOUT_S)
    if config.settings.routers.placement == "per_node" and node not in handles.router_nodes.values():
        router = _new_router(factory, config, api_keys, handles, node)
        _ray.get(_ray.send(router, "start", what="Router"), timeout_s=START_TIMEOUT_S)
        _subscribe_router(handles, router)
        handles.routers.append(router)
        handles.router_nodes[len(handles.routers) - 1] = node
        started.append(router)
    return started


def start_node_watcher(config: RegistryConfig, api_keys: Mapping[str, Any], handles: ActorHandles,
                       name_prefix: str, *, start_timeout_s: float = START_TIMEOUT_S) -> Handle:
    """Start a detached system's node watcher (``<prefix>:nodes``, detached, on this node while
    it lives) with a copy of ``handles``, and wait until it runs; it is then in
    ``handles.node_watcher``."""
    factory = _Factory(name_prefix, detached=True)
    watcher = factory.new(NodeWatcherActor, "nodes", config, api_keys, handles, name_prefix,
                          concurrent=True,
                          placement=_ray.on_node(_ray.current_node_id(), soft=True))
    try:
        _ray.get(_ray.send(watcher, "ping", what="NodeWatcher"), timeout_s=start_timeout_s)
    except (ComponentUnavailable, TimeoutError):
        _ray.kill(watcher)
        raise
    handles.node_watcher = watcher
    return watcher


def node_actors_by_name(name_prefix: str) -> tuple[dict[str, Handle], list[Handle]]:
    """The sinks (by node) and Router actors (in the order of their numbers) of the running
    system ``name_prefix``, found by name (empty when it does not run)."""
    named = _system_names(name_prefix)
    if named is None:
        return {}, []
    namespace, roles = named
    sinks = {role[len("sink:"):]: _ray.get_actor(name, namespace)
             for role, name in roles.items() if role.startswith("sink:")}
    routers = sorted((int(role[len("router:"):]), name) for role, name in roles.items()
                     if role.startswith("router:") and role[len("router:"):].isdigit())
    return sinks, [_ray.get_actor(name, namespace) for _, name in routers]


def _system_names(name_prefix: str) -> tuple[str, dict[str, str]] | None:
    """The namespace of the system ``name_prefix`` and its actors' names by role (``ledger``,
    ``sink:<node>``, ...); None when no such system runs."""
    head = f"{name_prefix}:"
    found = _ray.named_actors()
    namespace = next((ns for ns, name in found if name == f"{head}ledger"), None)
    if namespace is None:
        return None
    return namespace, {name[len(head):]: name for ns, name in found
                       if ns == namespace and name.startswith(head)}


def _subscribe_router(handles: ActorHandles, router: Handle) -> None:
    """Add a new router to every publisher's subscribers (health, limits, selection)."""
    replies = [_ray.send(h, "add_subscribers", [router]) for h in handles.health.values()]
    replies += [_ray.send(lim, "add_subscribers", [router])
                for lim in handles.limiters.live().values()]
    replies.append(_ray.send(handles.selector, "add_subscribers", [router]))
    _ray.get(replies, timeout_s=START_TIMEOUT_S)


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


def _hosted_health(host: Handle, providers: Iterable[str]) -> dict[str, Handle]:
    """One handle per provider to its HealthChecker in ``host``."""
    return {name: _ray.Hosted(host, name) for name in providers}


def _wire(handles: ActorHandles) -> None:
    """Start the loops and push the subscribers, in one round (an actor runs the calls of one
    caller in the order sent: a checker is subscribed before its probes start).
    (RateLimiters, started later, find their subscribers by name: ``_limiters``.)"""
    selector, health, routers = handles.selector, handles.health, handles.routers
    subscribers = [*routers, selector]
    _ray.get([*[_ray.send(s, "start") for s in handles.sinks.values()],
              *[_ray.send(r, "start") for r in routers],
              *[_ray.send(h, "subscribe", subscribers) for h in health.values()],
              _ray.send(selector, "subscribe", routers),
              *[_ray.send(h, "start") for h in health.values()]])


def _namespace(detached: bool) -> str:
    return DETACHED_NAMESPACE if detached else _ray.current_namespace()


def find_actors(name_prefix: str, config: RegistryConfig | None = None) -> ActorHandles | None:
    """The handles of the running system named ``name_prefix`` (its actors may be in any
    namespace), for a driver that joins it; None when no such system runs. With ``config``,
    the driver starts the RateLimiters it needs (as the system's routers do); without, it sees
    those running when it joined."""
    system = _system_names(name_prefix)
    if system is None:
        return None
    namespace, named = system

    def get(role: str) -> Handle:
        return _ray.get_actor(named[role], namespace)

    def keyed(prefix: str) -> dict[str, Handle]:
        return {role[len(prefix):]: get(role) for role in named if role.startswith(prefix)}

    sinks = keyed("sink:")
    routers = sorted(((int(k), h) for k, h in keyed("router:").items() if k.isdigit()))
    here = _ray.current_node_id()
    if not sinks:
        return None
    limiters = (LimiterDirectory(config, name_prefix, namespace=namespace,
                                 detached=namespace == DETACHED_NAMESPACE)
                if config is not None else LimiterDirectory.of(keyed("ratelimit:")))
    health_host = get("health")
    providers = (list(config.providers) if config is not None
                 else _ray.get(_ray.send(health_host, "providers", what="HealthCheckers"),
                               timeout_s=START_TIMEOUT_S))
    return ActorHandles(sinks.get(here) or next(iter(sinks.values())), get("ledger"), get("cache"),
                        get("selector"), _hosted_health(health_host, providers), limiters,
                        [h for _, h in routers], sinks=sinks,
                        next_router=max((n for n, _ in routers), default=-1) + 1,
                        health_host=health_host,
                        node_watcher=get("nodes") if "nodes" in named else None)
