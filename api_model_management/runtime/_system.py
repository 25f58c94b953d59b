"""``ModelManagement``: the facade over the running actor system.

    mm = ModelManagement.start("config/model_registry.json")
    response = await mm.complete(ModelRequest(prompt="...", agent_type="research"))
    async for chunk in mm.stream(request): ...
    selection = await mm.select(request)          # a dry run
    report = mm.report()                          # DuckDB projections over the log
    mm.shutdown()

Pipelines that pass handles between Ray tasks use ``mm.handles`` (see ``ActorHandles``) directly:
``await mm.handles.routers[0].complete.remote(request)``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .._request import ModelRequest, ModelResponse, StreamChunk
from ..budget import BudgetStatus
from ..config import RegistryConfig, SelectionWeights, Settings
from ..errors import ComponentUnavailable, InvalidInput, StreamInterrupted
from ..projections import Report
from ..selection import Selection
from . import _ray
from ._actors import START_TIMEOUT_S, ActorHandles
from ._embedded import EmbeddedRouter
from ._nodes import NodeWatcher

log = logging.getLogger(__name__)


class ModelManagement:
    """A started system. Create it with :meth:`start`."""

    def __init__(self, config: RegistryConfig, handles: ActorHandles, *, owns_ray: bool,
                 started_s: float, embedded: EmbeddedRouter | None = None,
                 owns_actors: bool = True) -> None:
        self.config = config
        self.handles = handles
        self.owns_ray = owns_ray
        #: False for a driver that joined a running named system: its shutdown leaves the actors
        self.owns_actors = owns_actors
        self.startup_s = started_s
        self.embedded = embedded
        self._round_robin = itertools.count()
        self._closed = False
        #: The actors' names start with ``<name_prefix>:`` (``amm status --system`` takes it).
        self.name_prefix: str | None = None
        self._watcher: NodeWatcher | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        config_path: str | Path | RegistryConfig,
        *,
        address: str | None = None,
        data_dir: str | Path | None = None,
        env: dict[str, str] | None = None,
        dotenv_path: str | Path | None = None,
        num_cpus: int | None = None,
        name_prefix: str | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        detached: bool = False,
    ) -> ModelManagement:
        """Start the system and return the facade.

        Without ``address`` (or with ``"local"``) a fresh local Ray is started, bound to loopback
        and without the dashboard, unless this process already runs Ray; ``address="auto"``
        joins the running cluster, any other address that cluster; one that cannot be reached
        raises ``ComponentUnavailable`` at once, naming it. Then the actors are started and
        waited for: an actor that cannot come up (its constructor raised, or it did not answer
        within ``start_timeout_s``) raises ``ComponentUnavailable`` naming it and its error
        class, with every actor started killed (and Ray stopped, if this call started it).

        The package logs at ``API_MODEL_LOG_LEVEL`` from ``env`` (default ``os.environ``) when it
        is set, else at ``settings.log_level``: in this process and in every actor, which get the
        level in effect in their configuration (``mm.config.settings.log_level`` shows it). API
        keys are read from ``env`` too, then from ``dotenv_path`` (default ``./.env``).

        The actors are named ``<name_prefix>:ledger``, ``<name_prefix>:router:0``, ... (default
        prefix ``amm-`` and 8 random hex digits, kept in ``mm.name_prefix``), so that another
        driver on the cluster finds them: ``amm status --address ADDR`` shows their live state.

        A second driver calling ``start`` with the ``name_prefix`` of a running system
        (``address="auto"`` on its cluster) joins it: it reuses those actors instead of starting
        new ones (``mm.owns_actors`` False; its ``shutdown`` leaves them running). The actors
        live as long as the driver that started them, or, with ``detached=True`` (which needs a
        ``name_prefix``), until a ``shutdown`` of that driver or the cluster's end (Ray's
        detached actors, in the namespace ``amm``). The driver that started the system gives
        every node that joins the cluster later its EventSink (and its Router, with
        ``settings.routers.placement = "per_node"``): a thread of this driver, or, for a detached
        system, a detached actor (``<prefix>:nodes``), so that nodes joining after this driver
        exited get them too. Every other driver (and the starter of a detached system) takes
        the nodes' actors started since from their names, every 2 s."""
        from ..config import load_config, load_secrets
        from ..config._logging import configure_logging, with_effective_log_level
        from ._actors import find_actors, start_actors

        t0 = time.monotonic()
        if not isinstance(config_path, str | Path | RegistryConfig):
            raise InvalidInput("start needs a config path or a RegistryConfig", field="config_path")
        config = config_path if isinstance(config_path, RegistryConfig) else load_config(config_path)
        if data_dir is not None:
            config = config.model_copy(update={
                "settings": config.settings.model_copy(update={"data_dir": str(data_dir)})
            })
        config = with_effective_log_level(config, env=env)
        configure_logging(config.settings.log_level, env={})  # resolved just above
        _make_local_dirs(config.settings)
        secrets = load_secrets(config, env=env, dotenv_path=dotenv_path)
        api_keys = {name: secrets.keys_for(name) for name in config.providers}
        owns_ray = False
        if not _ray.is_initialized():
            owns_ray = _ray.start_or_join(address, num_cpus=num_cpus)
        if detached and name_prefix is None:
            raise InvalidInput("a detached system needs a name_prefix (other drivers join it "
                               "by that name)", field="name_prefix")
        try:
            joined = find_actors(name_prefix, config) if name_prefix is not None else None
            name_prefix = name_prefix or f"amm-{uuid.uuid4().hex[:8]}"
            handles = joined or start_actors(config, api_keys, name_prefix=name_prefix,
                                             start_timeout_s=start_timeout_s, detached=detached)
            if joined is None and detached:
                _start_detached_watcher(config, api_keys, handles, name_prefix, start_timeout_s)
        except BaseException:
            if owns_ray:
                _ray.shutdown()
            raise
        embedded = EmbeddedRouter(config, handles, api_keys) if config.settings.routers.embedded else None
        system = cls(config, handles, owns_ray=owns_ray, started_s=time.monotonic() - t0,
                     embedded=embedded, owns_actors=joined is None)
        system.name_prefix = name_prefix
        # the one watcher that starts nodes' actors is this driver's thread, or for a detached
        # system its actor; every other driver follows it (see ``_nodes``)
        system._watcher = NodeWatcher(system, api_keys, detached=detached,
                                      create=joined is None and not detached)
        log.info("started system %s; its live state: amm status --address %s", name_prefix,
                 _ray.gcs_address())
        return system

    def shutdown(self) -> None:
        """Flush every actor's events into the log, stop the actors (and Ray, if we started it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        except (ComponentUnavailable, TimeoutError) as exc:
            log.warning("shutdown: could not flush all events (%s); they stay in the spool",
                        type(exc).__name__)
        if self._watcher is not None:
            self._watcher.stop()
        if self.embedded is not None:
            self.embedded.close()
        if self.owns_actors:
            for handle in self.handles.all():
                _ray.kill(handle)
        if self.owns_ray:
            _ray.shutdown()

    def flush(self) -> int:
        """Make every event so far visible in the Parquet log; returns events ingested. The
        CostLedger has then read it too: the calls whose charges came back with the routers'
        slices are settled spend in ``budget_status()``, no longer held as pending."""
        h = self.handles
        if self.embedded is not None:
            self.embedded.flush()
        _call_all("flush_events", h.routers)
        _call_all("flush_events", [*h.health.values(), *h.limiters.live().values(), h.ledger,
                                   h.selector])  # feedback, and alerts of files quarantined at start
        alive = set(_ray.alive_nodes())
        sinks = [sink for node, sink in h.sinks.items() if node in alive] or [h.sink]
        ingested = sum(int(n or 0) for n in _call_all("flush", sinks))
        _call_all("poll", [h.ledger])  # what the sinks just wrote (else: at its next poll)
        return ingested

    # -- nodes ---------------------------------------------------------------------------------
    def router_for_current_node(self) -> _ray.Handle:
        """A Router actor on the caller's node, so that a request costs no hop between
        machines; another one when no router runs there. With ``placement = "per_node"`` every
        node has one. (Ray tasks and actors holding ``mm.handles`` call
        ``handles.router_for_current_node()``, which is this.)"""
        return self.handles.router_for_current_node()

    def drain_node(self, node_id: str, *, timeout_s: float = 60.0) -> int:
        """Prepare ``node_id`` for removal from the cluster without losing an event: the Router
        actors there close their spool segments, hand back their leases and slices and stop
        (for good: they are taken out of ``handles.routers``), then the node's EventSink ingests
        everything left in the node's spool (also what any other writer there left) and stops.
        Returns the events it ingested. The node may then be removed. Refused for the node this
        driver runs on (its embedded router spools there)."""
        if self.embedded is not None and node_id == _ray.current_node_id():
            raise InvalidInput("cannot drain the node this driver runs on", field="node_id")
        if self.handles.node_watcher is not None:  # a detached system's: give the node nothing
            _ray.get(_ray.send(self.handles.node_watcher, "drain", node_id, what="NodeWatcher"),
                     timeout_s=timeout_s)
        self.handles.learn_router_nodes()
        leaving = sorted(i for i, n in self.handles.router_nodes.items() if n == node_id)
        _call_all("flush_events", [self.handles.routers[i] for i in leaving], timeout_s=timeout_s)
        for i in leaving:
            _ray.kill(self.handles.routers[i])
        self.handles.forget_routers(leaving)
        self.handles.drained.add(node_id)
        sink = self.handles.sinks.pop(node_id, None)
        if sink is None:
            return 0
        ingested = int(_call_all("flush", [sink], timeout_s=timeout_s)[0] or 0)
        _ray.kill(sink)
        return ingested

    def __enter__(self) -> ModelManagement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- the request path ----------------------------------------------------------------------
    def _router(self) -> _ray.Handle:
        routers = self.handles.routers
        return routers[next(self._round_robin) % len(routers)]

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Select, admit, call, evaluate and account one request; typed errors on failure.
        Runs on the embedded router (this process) unless ``settings.routers.embedded`` is off,
        then on a Router actor."""
        _check_request(request)
        if self.embedded is not None:
            return await self.embedded.complete(request)
        try:
            response: ModelResponse = await _ray.send(self._router(), "complete", request,
                                                      what="Router")
        except ComponentUnavailable as exc:
            if not (_ray.actor_down(exc) and self._retry_on_router_death()):
                raise  # the router answered (e.g. SpoolUnavailable), or retries are off
            log.warning("a Router actor died with a request: sent once more to another replica")
            response = await _ray.send(self._router(), "complete", _retried(request),
                                       what="Router")
        return response

    def _retry_on_router_death(self) -> bool:
        return self.config.settings.routers.retry_on_router_death and len(self.handles.routers) > 1

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Text deltas as they arrive, then a final chunk with the result."""
        _check_request(request)
        if self.embedded is not None:
            async with contextlib.aclosing(self.embedded.stream(request)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        delivered: list[str] = []
        try:
            async for chunk in _ray.stream(self._router(), "stream", request, what="Router"):
                delivered.append(chunk.delta)
                yield chunk
            return
        except ComponentUnavailable as exc:
            if not _ray.actor_down(exc):
                raise
            if any(delivered):  # the caller has text: never duplicate it
                raise StreamInterrupted(
                    "the Router actor died while streaming", partial_text="".join(delivered),
                    cause_kind=exc.error_kind,
                ) from exc
            if not self._retry_on_router_death():
                raise
        log.warning("a Router actor died before streaming: sent once more to another replica")
        async for chunk in _ray.stream(self._router(), "stream", _retried(request), what="Router"):
            yield chunk

    async def select(self, request: ModelRequest) -> Selection:
        """A dry run of selection: the ranked candidates, sub-scores and the reason."""
        _check_request(request)
        selection: Selection = await _ray.send(self.handles.selector, "select", request,
                                               what="Selector")
        return selection

    def set_weights(self, weights: SelectionWeights, version: str,
                    agent_weights: dict[str, SelectionWeights] | None = None) -> None:
        """Switch every router to a new policy: default ``weights`` and per-agent-type
        ``agent_weights`` (none: every agent type uses ``weights``), under ``version``, recorded
        in each ``ModelSelected`` the policy decides. The Selector actor pushes it to the Router
        actors; the embedded router takes it at once."""
        if not isinstance(weights, SelectionWeights) or not isinstance(version, str) or not version:
            raise InvalidInput("set_weights needs SelectionWeights and a non-empty version")
        agents = dict(agent_weights or {})
        if not all(isinstance(k, str) and isinstance(w, SelectionWeights) for k, w in agents.items()):
            raise InvalidInput("agent_weights maps agent types to SelectionWeights",
                               field="agent_weights")
        _ray.get(_ray.send(self.handles.selector, "set_weights", weights, version, agents,
                           what="Selector"))
        if self.embedded is not None:
            self.embedded.set_weights(weights, version, agents)

    def load_weights(self, path: str | Path) -> str:
        """Apply everything a weights file written by ``amm tune`` holds (default and
        per-agent-type weights) everywhere; returns its version. A file that cannot be read whole
        is refused (``BadWeightsFile``) and nothing changes."""
        from ..replay import read_weights_file

        weights_file = read_weights_file(path)
        self.set_weights(weights_file.weights, weights_file.weights_version,
                         dict(weights_file.agent_weights))
        return weights_file.weights_version

    async def feedback(self, request_id: str, score: float, *, source: str = "user",
                       comment: str | None = None) -> bool:
        """Report an outcome for a request this system answered: ``score`` in [0, 1] (did the
        answer pass its tests, did the user accept it). Recorded once per (request, source) as a
        ``FeedbackRecorded`` event and used at once by selection (the learnt quality of the model
        that answered, for its agent type). Returns False when this request already had feedback
        from ``source`` (nothing written). ``InvalidInput`` for an unknown request id, a score
        outside [0, 1], an unknown source (``user``, ``judge``, ``ground_truth``). ``comment`` is
        kept only with ``store_prompts`` on."""
        from ._router import check_feedback, record_feedback

        check_feedback(request_id, score, source, comment)
        if self.embedded is not None:
            return await self.embedded.feedback(request_id, score, source, comment,
                                                self.handles.routers)
        return await record_feedback(None, self.handles.selector, request_id, score, source,
                                     comment, self.handles.routers)

    # -- reporting -----------------------------------------------------------------------------
    def report(self, *, since: Any = None, agent_type: str | None = None) -> Report:
        """Cost, latency, reliability, quality, cache and budgets from the log (flushed first)."""
        from ..projections import open_projections

        self.flush()
        return open_projections(self.config.settings.data_dir).report(
            since=since, agent_type=agent_type, budgets=self.config.settings.budgets
        )

    def budget_status(self) -> list[BudgetStatus]:
        """Every configured budget limit in its current window, from the CostLedger."""
        status: list[BudgetStatus] = _ray.get(_ray.send(self.handles.ledger, "status",
                                                        what="CostLedger"))
        return status

    def counters(self) -> dict[str, int]:
        """Requests, completions, failures, cache hits and failovers over every router."""
        totals: dict[str, int] = {}
        embedded = [self.embedded.counters()] if self.embedded is not None else []
        replies = [_ray.send(r, "counters", what="Router") for r in self.handles.routers]
        for counters in [*embedded, *_ray.get(replies)]:
            for key, value in counters.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of this process and every Ray worker process of the session."""
        try:
            import psutil
        except ImportError:
            return {}
        out = {"driver": psutil.Process(os.getpid()).memory_info().rss / 2**20}
        for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or proc.info["name"].startswith("ray::"):
                out[f"{proc.info['name']}:{proc.pid}"] = proc.info["memory_info"].rss / 2**20
        return out


def _start_detached_watcher(config: RegistryConfig, api_keys: dict[str, Any], handles: Any,
                            name_prefix: str, start_timeout_s: float) -> None:
    """A detached system's node watcher; if it cannot start, the actors started are stopped."""
    from ._actors import start_node_watcher

    try:
        start_node_watcher(config, api_keys, handles, name_prefix, start_timeout_s=start_timeout_s)
    except BaseException:
        for handle in handles.all():
            _ray.kill(handle)
        raise


def _make_local_dirs(settings: Settings) -> None:
    """The log's directory when it is local; the spool's and the state's when the log is
    remote (an object store needs no directory made)."""
    from ..events._local import spool_dir, state_dir
    from ..events._storage import local_path

    local = local_path(settings.data_dir)
    for path in [local] if local is not None else [spool_dir(settings), state_dir(settings)]:
        path.mkdir(parents=True, exist_ok=True)


def _retried(request: ModelRequest) -> ModelRequest:
    """The request under a new id (the first may already have a terminal event, ``lost``)."""
    from ..events import uuid7

    new_id = f"{request.request_id}.retry" if request.request_id else uuid7()
    return request.model_copy(update={"request_id": new_id})


def _check_request(request: object) -> None:
    if not isinstance(request, ModelRequest):
        raise InvalidInput(f"expected a ModelRequest, got {type(request).__name__}",
                           field="request")


def _call_all(method: str, handles: list[_ray.Handle], *, timeout_s: float = 60.0) -> list[Any]:
    """Call ``method`` on every actor and wait; an actor that is restarting is waited for (up to
    ``timeout_s``), one that is gone for good is skipped (its spool is ingested as a dead
    writer's)."""
    deadline = time.monotonic() + timeout_s
    results: list[Any] = []
    for handle in handles:
        while True:
            try:
                results.append(_ray.get(_ray.send(handle, method), timeout_s=timeout_s))
                break
            except ComponentUnavailable as exc:
                if not getattr(exc, "restarting", False):
                    log.warning("an actor is gone; its events are ingested from its spool")
                    results.append(None)
                    break
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return results
