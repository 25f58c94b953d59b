"""The starting driver's node watcher: one EventSink (and, with ``per_node`` placement, one Router)
on every node of the cluster, as nodes come and go.

Every ``NODE_WATCH_S`` it lists the nodes that are alive; a node that joined gets its actors
(``_actors.add_node_actors``); a node that left is forgotten (its sink and routers taken out of
the handles: requests no longer go there). It also contacts every sink, so a sink that Ray
restarted on its node resumes its ingestion loop within one period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._supervise import Supervisor
from . import _ray

if TYPE_CHECKING:
    from ._system import ModelManagement

log = logging.getLogger(__name__)

#: How often the driver looks at the cluster's nodes.
NODE_WATCH_S = 2.0


class NodeWatcher:
    """Runs in a daemon thread of the driver that started the system (see the module docstring)."""

    def __init__(self, system: ModelManagement, api_keys: Mapping[str, Any], *,
                 detached: bool = False, interval_s: float = NODE_WATCH_S) -> None:
        self.system = system
        self.api_keys = api_keys
        self.detached = detached
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
        """Start the actors of nodes that joined, forget nodes that left; returns the nodes
        that got actors."""
        from ._actors import add_node_actors

        handles = self.system.handles
        alive = set(_ray.alive_nodes())
        added = []
        for node in sorted(alive - set(handles.sinks) - handles.drained):
            add_node_actors(self.system.config, self.api_keys, handles, node,
                            name_prefix=self.system.name_prefix, detached=self.detached)
            added.append(node)
            log.info("node %s joined: its EventSink is running", node[:8])
        for node in [n for n in handles.sinks if n not in alive]:
            handles.sinks.pop(node)
            log.warning("node %s left the cluster: what its spool held and was not ingested "
                        "is not in the log", node[:8])
        gone = [i for i, n in handles.router_nodes.items() if n not in alive]
        if gone:
            handles.forget_routers(gone)
        for sink in handles.sinks.values():
            _ray.tell(sink, "ping")  # a sink Ray restarted resumes its loop
        return added

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
