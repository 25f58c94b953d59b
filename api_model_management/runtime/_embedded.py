"""A router replica inside the caller's process: no actor round trip per request.

``ModelManagement`` runs one (``settings.routers.embedded``, on by default). It is a
:class:`RouterShell` like the Router actors: the same RouterCore on the same Ray ports (leases
from the RateLimiter actors, budget slices from the CostLedger, outcomes batched to the
HealthCheckers, its own write-ahead spool that the EventSink ingests), so every exactness argument
of the actors holds for it too. What differs is how it hears about slow-changing state: nothing
can push to a plain process, so it polls the Selector actor (which receives every health,
cool-down and weights push) every ``_POLL_S`` seconds.

It runs on its own event loop in a daemon thread. Callers on any event loop (or several in turn,
as with ``asyncio.run`` per call) hand requests over with two ``call_soon_threadsafe`` (about
0.05 ms idle); in exchange the router's leases, slices, connection pools and housekeeping live on
one loop for the life of the system, whatever the caller does with its loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import AsyncGenerator, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from .._clock import Every
from .._request import ModelRequest, ModelResponse, StreamChunk
from ..config import RegistryConfig, SelectionWeights
from ..errors import ComponentUnavailable
from ..selection import Selection
from . import _ray
from ._actors import ActorHandles
from ._ray import Handle
from ._router import RouterShell, record_feedback

_T = TypeVar("_T")

log = logging.getLogger(__name__)

_POLL_S = 0.25
_POLL_TIMEOUT_S = 1.0
_END = object()


class EmbeddedShell(RouterShell):
    """A RouterShell that polls the Selector actor instead of being pushed to."""

    def __init__(self, config: RegistryConfig, **ports: Any) -> None:
        super().__init__(config, f"embedded-{os.getpid()}", **ports)
        self._poll_timer = Every(_POLL_S, self.clock, start_due=True)

    async def _tick(self, *, everything: bool = False) -> None:
        await super()._tick(everything=everything)
        if self._poll_timer.due():
            await self.poll()

    async def poll(self) -> bool:
        """Take over the health, cool-downs and weights the Selector actor has been pushed.
        False when the Selector did not answer (it is restarting): the state stays as it was."""
        if self.selector_actor is None:
            return False
        reply = _ray.send(self.selector_actor, "live_state", what="Selector")
        try:
            state = await asyncio.wait_for(reply, _POLL_TIMEOUT_S)
        except (TimeoutError, ComponentUnavailable):
            return False
        for model_id, until in self.selector.apply_live_state(state):
            self.admission.extend_cooling(model_id, until)
        return True

    async def stop(self) -> None:
        """End housekeeping (before the loop stops, so no task is left pending)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _resubscribe(self) -> None:
        """Keep the Selector subscribed to every HealthChecker (a restarted one too)."""
        if self.selector_actor is None:
            return
        for actor in self.health_actors.values():
            _ray.tell(actor, "add_subscribers", [self.selector_actor])


class EmbeddedRouter:
    """Owns an :class:`EmbeddedShell` and the thread its event loop runs on."""

    def __init__(self, config: RegistryConfig, handles: ActorHandles,
                 api_keys: Mapping[str, Any]) -> None:
        self.shell = EmbeddedShell(
            config, limiters=handles.limiters, ledger=handles.ledger, cache=handles.cache,
            health=handles.health, selector=handles.selector, api_keys=api_keys,
            sink=handles.sink,
        )
        self._closed = False
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name="amm-embedded-router", daemon=True)
        self._thread.start()
        self._wait(self._first_contact())

    async def _shutdown(self) -> None:
        try:
            await self.shell.aclose()
        finally:
            await self.shell.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _first_contact(self) -> None:
        await self.shell.start()
        await self.shell.poll()

    def _check_open(self) -> None:
        if self._closed:
            raise ComponentUnavailable("the system was shut down", component="Router")

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        if self._closed:
            coro.close()  # never awaited: close it, then refuse
        self._check_open()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _wait(self, coro: Coroutine[Any, Any, _T], timeout_s: float = 60.0) -> _T:
        return self._submit(coro).result(timeout_s)

    # -- the request path (from any event loop) ----------------------------------------------
    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run ``core.complete`` on the router's loop. The hand-over is two ``call_soon_threadsafe``
        (there, and the result back), without the ``concurrent.futures`` layer of
        ``run_coroutine_threadsafe``; cancelling the caller cancels the router's task."""
        self._check_open()
        caller = asyncio.get_running_loop()
        done: asyncio.Future[ModelResponse] = caller.create_future()
        tasks: list[asyncio.Task[ModelResponse]] = []

        def start() -> None:
            task = self._loop.create_task(self.shell.core.complete(request))
            task.add_done_callback(lambda t: _post(caller, _hand_back, t, done))
            tasks.append(task)

        self._loop.call_soon_threadsafe(start)
        try:
            return await done
        except asyncio.CancelledError:
            self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
            raise

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]:
        """The chunks of ``shell.core.stream`` handed over one by one; closing this generator
        early cancels the stream on the router's loop (its events are still written)."""
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

        def post(item: tuple[Any, BaseException | None]) -> None:
            _post(caller, queue.put_nowait, item)

        async def pump() -> None:
            try:
                async for chunk in self.shell.core.stream(request):
                    post((chunk, None))
            except Exception as exc:  # noqa: BLE001 - relayed: raised again in the caller
                post((None, exc))
            else:
                post((_END, None))

        future = self._submit(pump())
        try:
            while True:
                chunk, error = await queue.get()
                if error is not None:
                    raise error
                if chunk is _END:
                    return
                yield chunk
        finally:
            future.cancel()

    def select(self, request: ModelRequest) -> Selection:
        return self.shell.select(request)

    # -- operations ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand back leases and slices and close the spool segment (the sink then ingests it)."""
        self._wait(self.shell.flush_events())

    def counters(self) -> dict[str, int]:
        return self.shell.counters()

    def set_weights(self, weights: SelectionWeights, version: str,
                    agent_weights: dict[str, SelectionWeights] | None = None) -> None:
        """A new policy, applied on the router's loop (its only thread of state)."""

        async def apply() -> None:
            self.shell.set_weights(weights, version, agent_weights)

        self._wait(apply())

    async def feedback(self, request_id: str, score: float, source: str, comment: str | None,
                       routers: Sequence[Handle] = ()) -> bool:
        """Record an outcome (see ``ModelManagement.feedback``), resolved on the router's loop."""
        caller_done: bool = await asyncio.wrap_future(self._submit(record_feedback(
            self.shell.core, self.shell.selector_actor, request_id, score, source, comment,
            routers)))
        return caller_done

    def close(self) -> None:
        """Flush, close the connection pools and stop the loop thread. Idempotent."""
        if self._closed:
            return
        try:
            self._wait(self._shutdown())
        except (concurrent.futures.TimeoutError, RuntimeError, ComponentUnavailable,
                _ray.RayError) as exc:
            log.warning("embedded router: close did not finish (%s)", type(exc).__name__)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()


def _post(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # that loop is closed: its caller is gone, nobody waits for this
        pass


def _hand_back(task: asyncio.Task[_T], done: asyncio.Future[_T]) -> None:
    """On the caller's loop: the router task's outcome into the caller's future."""
    if done.done():  # the caller was cancelled meanwhile
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning
        return
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it exists (a dependency except on Windows): its wake-ups and socket I/O are
    cheaper, and this loop is private to the router, so the caller's choice of loop is untouched."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
