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

from collections.abc import AsyncIterator, Generator, Sequence
from typing import Any, TypeVar

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError

from ..errors import ComponentUnavailable

__all__ = [
    "ACTOR_DOWN",
    "RayError",
    "Reply",
    "actor_id",
    "current_actor",
    "get",
    "init",
    "is_initialized",
    "kill",
    "remote_class",
    "send",
    "shutdown",
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
    """``restarting`` True: the actor will be back (Ray restarts it); False: it is gone."""
    restarting = isinstance(exc, ActorUnavailableError)
    state = "restarting" if restarting else "gone"
    return ComponentUnavailable(f"{what} is unavailable ({state})", component=what,
                                restarting=restarting)


def actor_id(handle: Handle) -> str:
    """A stable id of the actor behind ``handle`` (for de-duplicating subscribers)."""
    return str(handle._actor_id.hex())


def current_actor() -> Handle:
    """The handle of the actor this code runs in."""
    return ray.get_runtime_context().current_actor


def current_node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


def kill(handle: Handle) -> None:
    ray.kill(handle)


def is_initialized() -> bool:
    return bool(ray.is_initialized())


def init(**kwargs: Any) -> Any:
    return ray.init(**kwargs)


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
