"""Every call into Ray goes through here: so that the rest of the runtime reads as plain Python,
Ray's errors are translated at one edge (an actor that died or is restarting becomes
``ComponentUnavailable``), and tests can see what Ray is used for.

- :func:`remote_class` applies ``ray.remote`` (once per shell, in ``_actors.py``);
- :func:`send` starts a method call and returns a :class:`Reply` to await (or ignore: fire and
  forget); :func:`tell` sends and forgets; :func:`get` waits for replies from synchronous code;
- :func:`actor_id`, :func:`current_actor`, :func:`kill`, :func:`init`, :func:`shutdown`,
  :func:`is_initialized`: the rest of what the runtime needs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator, Sequence
from typing import Any, TypeVar

import ray
from ray.exceptions import (
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayError,
    RayTaskError,
)

from ..errors import ComponentUnavailable

__all__ = [
    "ACTOR_DOWN",
    "Hosted",
    "RayError",
    "Reply",
    "actor_id",
    "alive_nodes",
    "current_actor",
    "current_namespace",
    "exit_actor",
    "get",
    "is_initialized",
    "kill",
    "on_node",
    "remote_class",
    "send",
    "shutdown",
    "start_or_join",
    "stream",
    "tell",
]

#: An actor that died, or is restarting.
ACTOR_DOWN = (RayActorError, ActorUnavailableError)

T = TypeVar("T")
Handle = Any  # a Ray actor handle (untyped in Ray)


class Reply:
    """A method call already sent to an actor. Awaiting it gives the result, or raises
    ``ComponentUnavailable`` when the actor died or is restarting."""

    __slots__ = ("_ref", "_what")

    def __init__(self, ref: Any, what: str) -> None:
        self._ref = ref
        self._what = what

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        try:
            return await self._ref
        except ACTOR_DOWN as exc:
            raise _unavailable(self._what, exc) from None

    @property
    def ref(self) -> Any:
        """The underlying ObjectRef (for :func:`get`)."""
        return self._ref


class Hosted:
    """One of several objects that one actor hosts (``key`` names it), used like an actor handle:
    ``hosted.method.remote(*args)`` (and so :func:`send`, :func:`tell`) becomes
    ``actor.call_hosted.remote(key, "method", *args)``. :func:`kill` kills the host (and with it
    every object it hosts); :func:`actor_id` is the host's."""

    __slots__ = ("actor", "key")

    def __init__(self, actor: Handle, key: str) -> None:
        self.actor = actor
        self.key = key

    def __getattr__(self, method: str) -> _HostedMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _HostedMethod(self.actor, self.key, method)

    def __reduce__(self) -> tuple[type[Hosted], tuple[Handle, str]]:
        return (Hosted, (self.actor, self.key))

    def __repr__(self) -> str:
        return f"Hosted({self.key!r})"


class _HostedMethod:
    __slots__ = ("actor", "key", "method")

    def __init__(self, actor: Handle, key: str, method: str) -> None:
        self.actor, self.key, self.method = actor, key, method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.actor.call_hosted.remote(self.key, self.method, *args, **kwargs)


def host_of(handle: Handle) -> Handle:
    """The actor behind ``handle`` (itself, or the host of a :class:`Hosted` object)."""
    return handle.actor if isinstance(handle, Hosted) else handle


def remote_class(cls: type[T], **options: Any) -> Any:
    """``ray.remote(**options)(cls)``: the actor class of a shell."""
    return ray.remote(**options)(cls)


def send(handle: Handle, method: str, *args: Any, what: str = "an actor", **kwargs: Any) -> Reply:
    """Start ``handle.method(*args)``; the reply can be awaited (or dropped)."""
    return Reply(getattr(handle, method).remote(*args, **kwargs), what)


def tell(handle: Handle, method: str, *args: Any) -> None:
    """Fire and forget: ``handle.method(*args)``, result never read."""
    getattr(handle, method).remote(*args)


def options(actor_class: Any, **opts: Any) -> Any:
    """``actor_class.options(**opts)``: per-instance options (name, concurrency)."""
    return actor_class.options(**opts)


def create(actor_class: Any, *args: Any, **kwargs: Any) -> Handle:
    """Start an actor: ``actor_class.remote(*args, **kwargs)``."""
    return actor_class.remote(*args, **kwargs)


def get(replies: Sequence[Reply] | Reply, *, timeout_s: float | None = None) -> Any:
    """Wait for replies from synchronous code (``ray.get``). An actor that is down raises
    ``ComponentUnavailable``; one that does not answer in time raises ``TimeoutError``."""
    if isinstance(replies, Reply):
        refs: Any = replies.ref
        what = replies._what
    else:
        refs, what = [r.ref for r in replies], "an actor"
    try:
        return ray.get(refs, timeout=timeout_s)
    except ACTOR_DOWN as exc:
        raise _unavailable(what, exc) from None
    except GetTimeoutError as exc:
        raise TimeoutError(str(exc)) from None


def _unavailable(what: str, exc: BaseException) -> ComponentUnavailable:
    """``restarting`` True: the actor will be back (Ray restarts it); False: it is gone.
    ``cause``: for an actor whose constructor raised, ``"ErrorClass: message"``."""
    if getattr(exc, "actor_init_failed", False):
        cause = creation_error(str(exc))
        return ComponentUnavailable(f"{what} could not start: {cause}", component=what,
                                    restarting=False, cause=cause, actor_down=True)
    restarting = isinstance(exc, ActorUnavailableError)
    state = "restarting" if restarting else "gone"
    return ComponentUnavailable(f"{what} is unavailable ({state})", component=what,
                                restarting=restarting, actor_down=True)


def actor_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the actor itself is down (dead or restarting), not that it answered
    with an error of its own (a ``ComponentUnavailable`` it raised, e.g. ``SpoolUnavailable``)."""
    return (isinstance(exc, ComponentUnavailable) and bool(getattr(exc, "actor_down", False))
            and not isinstance(exc, RayTaskError))  # raised in the actor, passed on by it


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(: |$)")


def creation_error(report: str, limit: int = 200) -> str:
    """``"ErrorClass: message"`` (cut to ``limit`` characters) from Ray's report of an exception
    raised in an actor's constructor: the last line of its traceback that names an error."""
    lines = [line.strip() for line in _ANSI.sub("", report).splitlines() if line.strip()]
    named = [line for line in lines if _ERROR_LINE.match(line)]
    found = named[-1] if named else (lines[-1] if lines else "an unknown error")
    return found if len(found) <= limit else found[: limit - 1] + "…"


def actor_id(handle: Handle) -> str:
    """A stable id of the actor behind ``handle`` (for de-duplicating subscribers)."""
    return str(host_of(handle)._actor_id.hex())


def current_actor() -> Handle:
    """The handle of the actor this code runs in."""
    return ray.get_runtime_context().current_actor


def current_node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


def alive_nodes() -> list[str]:
    """The ids of the cluster's nodes that are alive, in Ray's order (the head first)."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [str(n["NodeID"]) for n in nodes if n.get("Alive")]


def on_node(node_id: str, *, soft: bool = False) -> dict[str, Any]:
    """Actor options that place it on ``node_id``: there only (``soft`` False: when the node is
    gone the actor is not restarted elsewhere), or there while the node lives."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=soft)}


def kill(handle: Handle) -> None:
    """Kill the actor behind ``handle`` (a :class:`Hosted` object's host, with all it hosts)."""
    ray.kill(host_of(handle))


def exit_actor() -> None:
    """End the actor this code runs in, for good (Ray does not restart it; calls queued behind
    this one fail as to an actor that is gone). Called from one of its methods."""
    ray.actor.exit_actor()  # type: ignore[no-untyped-call]


def current_namespace() -> str:
    """The Ray namespace of this process's job (where its named actors are)."""
    return str(ray.get_runtime_context().namespace)


def gcs_address() -> str:
    """The address of the cluster this process is connected to (``host:port``), as another
    driver passes it to ``ray.init(address=...)``; ``"unknown"`` through a Ray client
    (``ray://``), which does not say it."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except (AttributeError, RuntimeError):
        return "unknown"


def named_actors() -> list[tuple[str, str]]:
    """(namespace, name) of every named actor alive on the cluster, in every namespace."""
    return [(entry["namespace"], entry["name"])
            for entry in ray.util.list_named_actors(all_namespaces=True)]


def get_actor(name: str, namespace: str) -> Handle:
    """The handle of the named actor ``name`` in ``namespace``; ``ComponentUnavailable`` when
    there is none."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise ComponentUnavailable(f"no actor named {name!r} on the cluster",
                                   component=name, restarting=False) from None


def is_initialized() -> bool:
    return bool(ray.is_initialized())


#: How long to wait for a cluster's address to answer before saying it cannot be reached.
REACH_TIMEOUT_S = 3.0


def start_or_join(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Start a fresh local Ray (``address`` None or ``"local"``), bound to loopback, without the
    dashboard, never joining a cluster left behind in Ray's temp dir; or join the cluster at
    ``address`` (``"auto"``: the running one), failing fast with one clear line when it cannot
    be reached. Returns True when this process started Ray (and so shuts it down)."""
    quiet: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address is None or address == "local":
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", **quiet)
        return True
    target = _bootstrap_target(address)
    _check_reachable(address, target)
    ray.init(address=address, **quiet)
    return False


def _bootstrap_target(address: str) -> str:
    """host:port of the cluster ``address`` names (``auto`` resolved as Ray resolves it)."""
    from ray._private.services import canonicalize_bootstrap_address

    if address.startswith("ray://"):
        return address[len("ray://"):].split("/", 1)[0]
    try:
        target = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as exc:
        raise ComponentUnavailable(f"no Ray cluster found for address={address!r}: {exc}",
                                   component="Ray") from None
    if target is None:
        raise ComponentUnavailable(f"no running Ray cluster found for address={address!r}",
                                   component="Ray")
    return str(target)


def _check_reachable(address: str, target: str) -> None:
    import socket

    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, ValueError):
        asked = "" if target == address else f" (address={address!r})"
        raise ComponentUnavailable(
            f"cannot reach the Ray cluster at {target}{asked} within {REACH_TIMEOUT_S:g} s",
            component="Ray",
        ) from None


def shutdown() -> None:
    ray.shutdown()


async def stream(handle: Handle, method: str, *args: Any,
                 what: str = "an actor") -> AsyncIterator[Any]:
    """The items of a streaming actor method (``num_returns="streaming"``), as an async
    iterator; an actor that is down raises ``ComponentUnavailable``."""
    try:
        generator = getattr(handle, method).options(num_returns="streaming").remote(*args)
        async for ref in generator:
            yield await ref
    except ACTOR_DOWN as exc:
        raise _unavailable(what, exc) from None


# -- Ray Serve (the gateway's deployment: runtime/_serve.py) -------------------------------------
#: Serve's controller, named in Serve's namespace: running when Serve is up on the cluster.
_SERVE_CONTROLLER = ("serve", "SERVE_CONTROLLER_ACTOR")


def serve_ingress_deployment(cls: type[T], **options: Any) -> Any:
    """``serve.deployment(serve.ingress()(cls), **options)``: a deployment whose replicas serve
    the ASGI app that ``cls.__serve_build_asgi_app__`` builds in each replica."""
    from ray import serve

    return serve.deployment(serve.ingress()(cls), **options)


def serve_running() -> bool:
    """Whether Serve's controller runs on the cluster this process is connected to."""
    return _SERVE_CONTROLLER in named_actors()


def serve_start(host: str, port: int, *, access_log: bool = True) -> None:
    """Start Serve's controller and HTTP proxies (on ``host:port``; ``access_log``: a log line
    per request in the proxies), unless Serve runs already (its options then stay as they are)."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port},
                logging_config={"enable_access_log": access_log})


def serve_run(app: Any, name: str) -> None:
    """Deploy the application ``app`` under ``name`` at ``/``; returns once it runs."""
    from ray import serve

    serve.run(app, name=name, route_prefix="/", blocking=False)


def serve_delete(name: str) -> None:
    from ray import serve

    serve.delete(name)


def serve_shutdown() -> None:
    """Delete every application and stop Serve's controller and proxies."""
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]


def serve_replica_tag() -> str:
    """The unique id of the Serve replica this code runs in."""
    from ray import serve

    return str(serve.get_replica_context().replica_tag)
