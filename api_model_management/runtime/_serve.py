"""The gateway on Ray Serve (``amm serve --ray-serve``): the same ASGI app (``gateway``), one
copy in each replica of a Serve deployment, each replica holding a router.

A replica joins the running system by its name (``ModelManagement.start(name_prefix=...)``:
the actors are reused, never started again) and serves from a router embedded in the replica's
process, as ``amm serve --ray`` does in its one process: it admits from the RateLimiter actors'
leases and the CostLedger's budget slices, so the registry's rate limits and budgets hold
exactly across replicas, and it spools its events for the node's EventSink. Concurrency limits
are held by each router as its part (``settings.routers.count()`` parts): ``amm serve
--ray-serve`` starts the system with them divided so that its routers and the most replicas
there may be hold no more than the configured limits together (:func:`serve_config`). A virtual key's
own limits (``budget_usd``, ``requests_per_minute``: the gateway's ``KeyLimits``, in process
memory) are split over the most replicas there may be, as over ``--workers``: each replica
admits ``1/max_replicas`` of them.

Serve's HTTP proxy takes the requests and hands each to a replica (one actor call); replicas
scale between ``settings.gateway.serve.min_replicas`` and ``max_replicas`` on
``target_ongoing_requests`` (Serve's autoscaling), each reserving ``num_cpus``. Every response
carries ``x-amm-replica`` (the replica that served it; ``/health`` and ``/metrics`` are one
replica's).

    amm serve --config registry.json --ray-serve [--address ADDR] [--replicas N]

or, on a cluster where a system runs detached under a name (``ModelManagement.start(...,
name_prefix="amm-prod", detached=True)``), with Serve's own CLI::

    serve run api_model_management.runtime._serve:app config=registry.json system=amm-prod

The replicas read provider keys (and ``key_env`` virtual keys) from their own environment or
``./.env``, as every process of the cluster does: the environment of the Ray node (``ray start``
or, for the local Ray that ``amm serve --ray-serve`` starts, this process's). Keys are never
part of the deployment.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from ..config import RegistryConfig, config_from_dict, load_config, override
from ..errors import ComponentUnavailable, InvalidInput
from . import _ray
from ._actors import find_actors
from ._gateway import RayEngine
from ._system import ModelManagement

log = logging.getLogger(__name__)

#: The Serve application's name (``serve status`` shows it).
APP_NAME = "amm-gateway"
DEPLOYMENT_NAME = "AmmGateway"
#: The header naming the replica that answered.
REPLICA_HEADER = b"x-amm-replica"
#: How often a stopping replica looks whether its requests in flight are done.
_SHUTDOWN_POLL_S = 0.5


class ServeEngine(RayEngine):
    """The engine of one replica: the router embedded in a ``ModelManagement`` that joined the
    running system (its :meth:`aclose` flushes the replica's events and leaves the actors)."""

    mode = "ray-serve"

    @classmethod
    def join(cls, config: RegistryConfig, system: str) -> ServeEngine:
        """Join the system named ``system`` on the cluster this process is part of;
        ``ComponentUnavailable`` when none runs under that name (nothing is started)."""
        if find_actors(system) is None:
            raise ComponentUnavailable(f"no system named {system!r} runs on this cluster",
                                       component="ModelManagement")
        return cls(ModelManagement.start(config, name_prefix=system))


class ReplicaHeader:
    """An ASGI wrapper adding ``x-amm-replica: <tag>`` to every HTTP response of ``app``."""

    def __init__(self, app: Any, tag: str) -> None:
        self.app = app
        self.tag = tag.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Any) -> None:
            if message.get("type") == "http.response.start":
                headers = [*message.get("headers", []), (REPLICA_HEADER, self.tag)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, tagged)


class GatewayReplica:
    """One replica of the deployment (Serve wraps it as an ASGI ingress): it builds the gateway
    app when the replica starts, on a ``ServeEngine``; Serve runs the app's lifespan (start, and
    at the replica's end the engine's close: its events flushed)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)

    async def __serve_build_asgi_app__(self) -> Any:
        from ..gateway._server import build_gateway

        config = config_from_dict(self.spec["config"], source="the gateway's Serve deployment")
        # joining waits on actors (blocking calls): not on the replica's event loop
        engine = await asyncio.to_thread(ServeEngine.join, config, self.spec["system"])
        gateway = build_gateway(config, engine, share=float(self.spec["share"]))
        return ReplicaHeader(gateway.app, _ray.serve_replica_tag())


def deployment_options(config: RegistryConfig, replicas: int | None = None) -> dict[str, Any]:
    """Serve's options for the deployment, from ``settings.gateway.serve``: a fixed
    ``replicas`` count, else autoscaling between its bounds (equal bounds: a fixed count)."""
    serve = config.settings.gateway.serve
    if replicas is not None and replicas < 1:
        raise InvalidInput("replicas must be at least 1", field="replicas")
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": {"num_cpus": serve.num_cpus},
        "max_ongoing_requests": serve.max_ongoing_requests,
        "graceful_shutdown_timeout_s": config.settings.gateway.shutdown_timeout_s,
        "graceful_shutdown_wait_loop_s": _SHUTDOWN_POLL_S,
        "logging_config": {"enable_access_log": serve.access_log},
    }
    if replicas is not None or serve.min_replicas == serve.max_replicas:
        options["num_replicas"] = replicas if replicas is not None else serve.max_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": serve.min_replicas, "max_replicas": serve.max_replicas,
            "initial_replicas": serve.min_replicas,
            "target_ongoing_requests": serve.target_ongoing_requests}
    return options


def most_replicas(options: Mapping[str, Any]) -> int:
    """The most replicas ``options`` allow (a virtual key's limits are split over them)."""
    if "num_replicas" in options:
        return int(options["num_replicas"])
    return int(options["autoscaling_config"]["max_replicas"])


def serve_config(config: RegistryConfig, replicas: int) -> RegistryConfig:
    """``config`` with every concurrency limit cut so that the system's routers
    (``settings.routers.count()``, each holding its part) and ``replicas`` more routers, one per
    Serve replica (holding the same part), stay within the configured limit together (at least 1
    each, as a part is)."""
    routers = config.settings.routers.count()
    part = routers / (routers + replicas)
    limits = config.settings.concurrency

    def cut(value: int) -> int:
        return max(1, math.floor(value * part))

    return override(config, settings={"concurrency": {
        "max_in_flight": cut(limits.max_in_flight),
        "default_per_provider": cut(limits.default_per_provider),
        "default_per_model": cut(limits.default_per_model),
        "per_provider": {k: cut(v) for k, v in limits.per_provider.items()},
        "per_model": {k: cut(v) for k, v in limits.per_model.items()}}})


def gateway_app(config: RegistryConfig, system: str, *, replicas: int | None = None) -> Any:
    """The Serve application (to ``serve.run``): the gateway's deployment whose replicas join
    the system named ``system`` (started with :func:`serve_config`'s limits, for concurrency
    limits to hold across its routers and the replicas'). A local ``data_dir`` is made absolute
    (replicas run in other working directories)."""
    from ..events._storage import local_path

    local = local_path(config.settings.data_dir)
    if local is not None and not local.is_absolute():
        config = override(config, settings={"data_dir": str(local.resolve())})
    options = deployment_options(config, replicas)
    spec = {"config": config.model_dump(mode="json"), "system": system,
            "share": 1.0 / most_replicas(options)}
    return _ray.serve_ingress_deployment(GatewayReplica, **options).bind(spec)


def app(args: Mapping[str, str]) -> Any:
    """``serve run api_model_management.runtime._serve:app config=PATH system=NAME
    [replicas=N]``: the application on a system already running (detached) under ``NAME``.
    The replicas hold their part of ``serve_config``'s concurrency limits: together with the
    system's routers, within the configured limits when that system was started with
    ``serve_config(config, max_replicas)`` too."""
    missing = [name for name in ("config", "system") if not args.get(name)]
    if missing:
        raise InvalidInput(f"serve run needs {' and '.join(f'{m}=...' for m in missing)} "
                           "(the registry file; the running system's name prefix)",
                           field=missing[0])
    unknown = sorted(set(args) - {"config", "system", "replicas"})
    if unknown:
        raise InvalidInput(f"unknown argument {unknown[0]!r} (config, system, replicas)",
                           field=unknown[0])
    replicas = int(args["replicas"]) if args.get("replicas") else None
    config = load_config(Path(args["config"]))
    config = serve_config(config, most_replicas(deployment_options(config, replicas)))
    return gateway_app(config, args["system"], replicas=replicas)


def free_port(host: str, port: int = 0) -> int:
    """``port`` on ``host`` when it is free (0: a free one); ``OSError`` when it is taken (Serve's
    proxy would fail to bind it in its own process, where the command would not see it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, port))
        return int(sock.getsockname()[1])


def serve_gateway(config: RegistryConfig, *, address: str | None = None,
                  host: str = "127.0.0.1", port: int = 4000, replicas: int | None = None,
                  on_ready: Callable[[str, int], None] | None = None,
                  stop: threading.Event | None = None) -> int:
    """Start the system (a local Ray, or join ``address``), then Serve (its proxy on
    ``host:port``; port 0: a free one) and the gateway's application; serve until SIGINT or
    SIGTERM (or ``stop`` is set); then stop Serve (only the application when Serve ran
    before), which closes every replica (its events flushed), and shut the system down
    cleanly. Returns 0."""
    from ..gateway import KeyLimits, KeyRing
    from ..gateway._server import key_spend_path

    stop = stop or threading.Event()
    config = serve_config(config, most_replicas(deployment_options(config, replicas)))
    keys = config.settings.gateway.keys
    KeyRing(keys, os.environ)  # a key_env that is unset: refused before anything starts
    KeyLimits(keys, timezone=config.settings.budgets.timezone,
              journal=key_spend_path(config)).close()  # compacted before the replicas read it
    system = ModelManagement.start(config, address=address)
    # after Ray's start (it installs its own SIGTERM handler in this process): from here a signal
    # stops serving, cleanly
    with _StoppedBySignals(stop):
        serve_was_running, serving = False, False
        try:
            assert system.name_prefix is not None
            serve_was_running = _ray.serve_running()
            if not serve_was_running:  # else its proxies listen where they were started
                port = free_port(host, port)
            if not stop.is_set():
                serving = True
                _ray.serve_start(host, port, access_log=config.settings.gateway.serve.access_log)
                _ray.serve_run(gateway_app(config, system.name_prefix, replicas=replicas),
                               APP_NAME)
                if on_ready is not None:
                    on_ready(host, port)
            stop.wait()
        finally:
            try:
                if serving and serve_was_running:
                    _ray.serve_delete(APP_NAME)
                elif serving:
                    _ray.serve_shutdown()
            finally:
                system.shutdown()
    return 0


class _StoppedBySignals:
    """SIGINT and SIGTERM set ``stop`` while inside (in the main thread; elsewhere nothing)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.info("amm serve --ray-serve: signal %d, stopping", signum)
        self.stop.set()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
