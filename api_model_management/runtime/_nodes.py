"""One EventSink (and, with ``per_node`` placement, one Router) on every node of the cluster, as
nodes come and go; and every driver's view of them.

One watcher creates the actors of the nodes that join (:func:`check_nodes`, every
``NODE_WATCH_S``): a node that joined gets its actors (``_actors.add_node_actors``); a node that
left is forgotten (its sink and routers taken out of the handles: requests no longer go there);
every sink is contacted, so a sink that Ray restarted on its node resumes its ingestion loop
within one period. Where that watcher runs depends on how long the system lives:

- a system that lives as long as its starting driver: a daemon thread of that driver
  (:class:`NodeWatcher`), as its actors die with it anyway, and no process is added at start;
- a detached system (``ModelManagement.start(detached=True)``), which outlives its starting
  driver: a detached actor, ``<prefix>:nodes`` (:class:`NodeWatcherShell`), so that nodes that
  join after that driver exited still get their sink and router.

Every other driver (the starter of a detached system, and every driver that joined a system)
follows: its thread (:class:`NodeWatcher` with ``create=False``) takes the nodes' actors it does
not know yet from their names, and forgets the nodes that left. Only one watcher creates, so a
node never gets two routers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._supervise import Supervisor
from ..config import RegistryConfig
from ..config._logging import configure_actor_logging
from . import _ray
from ._ray import Handle

if TYPE_CHECKING:
    from ._actors import ActorHandles
    from ._system import ModelManagement

log = logging.getLogger(__name__)

#: How often a watcher looks at the cluster's nodes.
NODE_WATCH_S = 2.0


def check_nodes(config: RegistryConfig, api_keys: Mapping[str, Any], handles: ActorHandles, *,
                name_prefix: str | None, detached: bool) -> list[str]:
    """Start the actors of nodes that joined, forget nodes that left, contact every sink;
    returns the nodes that got actors."""
    from ._actors import add_node_actors

    alive = set(_ray.alive_nodes())
    added = []
    for node in sorted(alive - set(handles.sinks) - handles.drained):
        add_node_actors(config, api_keys, handles, node, name_prefix=name_prefix,
                        detached=detached)
        added.append(node)
        log.info("node %s joined: its EventSink is running", node[:8])
    forget_left_nodes(handles, alive)
    for sink in handles.sinks.values():
        _ray.tell(sink, "ping")  # a sink Ray restarted resumes its loop
    return added


def follow_nodes(handles: ActorHandles, name_prefix: str) -> list[str]:
    """Take the nodes' sinks and routers that another watcher started (found by name) into
    ``handles``, and forget the nodes that left; returns the nodes whose sink was new here."""
    from ._actors import node_actors_by_name

    alive = set(_ray.alive_nodes())
    sinks, routers = node_actors_by_name(name_prefix)
    added = [n for n in sorted(sinks) if n in alive and n not in handles.sinks
             and n not in handles.drained]
    handles.sinks.update({n: sinks[n] for n in added})
    known = {_ray.actor_id(r) for r in handles.routers}
    handles.routers.extend(r for r in routers if _ray.actor_id(r) not in known)
    forget_left_nodes(handles, alive)
    return added


def forget_left_nodes(handles: ActorHandles, alive: set[str]) -> None:
    """Take the sinks and routers of nodes that are no longer alive out of ``handles``."""
    for node in [n for n in handles.sinks if n not in alive]:
        handles.sinks.pop(node)
        log.warning("node %s left the cluster: what its spool held and was not ingested "
                    "is not in the log", node[:8])
    gone = [i for i, n in handles.router_nodes.items() if n not in alive]
    if gone:
        handles.forget_routers(gone)


class NodeWatcher:
    """A daemon thread of a driver: the system's watcher (``create``), or a follower of the
    watcher that runs elsewhere (see the module docstring)."""

    def __init__(self, system: ModelManagement, api_keys: Mapping[str, Any], *,
                 detached: bool = False, interval_s: float = NODE_WATCH_S,
                 create: bool = True) -> None:
        self.system = system
        self.api_keys = api_keys
        self.detached = detached
        self.create = create
        self.interval_s = interval_s
        self.supervisor = Supervisor("node watcher")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.supervisor.run_thread,
                                        args=(self._step, self._stop),
                                        kwargs={"initial_delay_s": interval_s},
                                        name="amm-node-watcher", daemon=True)
        self._thread.start()

    def _step(self) -> float:
        self.check_once()
        return self.interval_s

    def check_once(self) -> list[str]:
        """One look at the nodes; returns the nodes that got actors (or, following, that this
        driver learnt of)."""
        system = self.system
        if not self.create:
            return follow_nodes(system.handles, system.name_prefix or "")
        return check_nodes(system.config, self.api_keys, system.handles,
                           name_prefix=system.name_prefix, detached=self.detached)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class NodeWatcherShell:
    """The node watcher of a detached system, as a detached actor (``<prefix>:nodes``): it holds
    its own copy of the system's handles and gives every node that joins its actors, whichever
    drivers still run."""

    def __init__(self, config: RegistryConfig, api_keys: Mapping[str, Any],
                 handles: ActorHandles, name_prefix: str, *,
                 interval_s: float = NODE_WATCH_S) -> None:
        configure_actor_logging(config)
        self.config, self.api_keys, self.handles = config, api_keys, handles
        self.name_prefix = name_prefix
        self.interval_s = interval_s
        self.supervisor = Supervisor("node watcher")
        self._lock = threading.Lock()  # one look at a time; a drain waits for the look
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.supervisor.run(self._step, initial_delay_s=self.interval_s))
        return True

    async def ping(self) -> bool:
        return await self.start()  # a restarted watcher resumes its loop on first contact

    async def _step(self) -> float:
        await asyncio.to_thread(self.check_once)
        return self.interval_s

    def check_once(self) -> list[str]:
        """One look at the nodes (:func:`check_nodes`); returns the nodes that got actors."""
        with self._lock:
            return check_nodes(self.config, self.api_keys, self.handles,
                               name_prefix=self.name_prefix, detached=True)

    async def drain(self, node: str) -> bool:
        """``node`` is being drained for removal: give it no actors again (a look under way
        finishes first)."""
        def mark() -> None:
            with self._lock:
                self.handles.drained.add(node)
                self.handles.sinks.pop(node, None)
        await asyncio.to_thread(mark)
        return True

    async def nodes(self) -> dict[str, Handle]:
        """The sink of every node this watcher knows, by node id."""
        return dict(self.handles.sinks)
