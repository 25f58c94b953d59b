"""RateLimiter actors started on demand and retired when idle (issue 15).

A system keeps one RateLimiter actor per model, but only for the models in use: the
:class:`LimiterDirectory` (held by every router, the embedded one included) gives the actor of a
model, starting it the first time a router needs a lease for that model. The actor is named
``<prefix>:ratelimit:<model>`` and started with get-if-exists, so routers and drivers that ask at
the same moment agree on one actor. A model without a live limiter has nothing leased and
nothing used that the selection must see: its headroom is full (what routers and the Selector
assume for a model they heard nothing about), up to what its journal still holds in the window,
which the limiter pushes once it is started again and has answered the lease it was started for.

A limiter (:class:`LimiterShell`) retires after ``settings.rate_limit.idle_retire_s`` without a
decision, and only with nothing outstanding (no lease unexpired, no reservation pending, no
cool-down): it compacts its journal, closes its spool segment (the EventSink ingests it) and
exits. The next lease for the model starts it again; it replays its journal (the decisions still
in the window count, as after a restart), so the window is exact across a retire and restart.
A router whose cached handle finds the actor gone forgets it and asks the directory again.

Subscribers: a limiter finds the system's Router actors and Selector by name when it starts (a
restarted one too), once it has answered the decision it was started for (their handles make
Ray import their classes' modules here, which the first lease need not wait for: to answer it,
the worker imports only this module, ``_shell_base`` and the cores), and pushes its headroom
and cool-downs to them; routers started later are added by :func:`~._actors.add_node_actors` to
the limiters alive then. (The embedded router is
not an actor: it polls the Selector, which every limiter pushes to.) A limiter started by a Router
actor is owned by it (Ray's ownership): if that router dies, the limiter goes too, and is started
again, from its journal, on its next use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from .._clock import SYSTEM_CLOCK
from ..config import RegistryConfig
from ..config._logging import configure_actor_logging
from ..errors import ComponentUnavailable
from ..ratelimit import (
    Admission,
    IdleRetirement,
    Lease,
    LimiterJournal,
    RateLimiterCore,
    RateLimitState,
    RateLimitStatus,
)
from . import _ray
from ._ray import Handle
from ._shell_base import _journaling, _safe, _spool, _state_dir, _Subscribers

log = logging.getLogger(__name__)

ROLE = "ratelimit"
#: A started limiter looks up its subscribers once it has answered a decision and had none for
#: this long (see ``LimiterShell._find_subscribers``), or this long after its start at the latest.
SUBSCRIBE_QUIET_S = 0.05
SUBSCRIBE_LATEST_S = 2.0


class RateLimiterShell:
    """One per model: exact RPM/TPM windows, leases to routers, 429 cool-downs."""

    def __init__(self, config: RegistryConfig, model_id: str) -> None:
        configure_actor_logging(config)
        model = config.model(model_id)
        self.model_id = model_id
        # a restarted limiter replays its decisions: grants made before count until they expire
        self.journal = LimiterJournal(_state_dir(config) / "ratelimit" / f"{_safe(model_id)}.jsonl",
                                      SYSTEM_CLOCK)
        self.core = RateLimiterCore.replay(
            self.journal.load(), model_id, config.admitted_rate_limits(model).requests_per_minute,
            config.admitted_rate_limits(model).tokens_per_minute, settings=config.settings.rate_limit,
            clock=SYSTEM_CLOCK, provider=model.provider,
        )
        self.spool = _spool(config, f"ratelimit-{model_id}")
        self.subscribers = _Subscribers()
        self._pushed_headroom: float | None = None

    def subscribe(self, handles: list[Handle]) -> bool:
        self.subscribers.set(handles)
        self._push_headroom(force=True)
        return True

    def add_subscribers(self, handles: list[Handle]) -> bool:
        """Add routers not subscribed yet (a router started on a node that joined later)."""
        if self.subscribers.add(handles):
            self._push_headroom(force=True)
        return True

    def _after(self) -> None:
        with _journaling("RateLimiter"):
            self.journal.append(self.core.drain_records())  # before the answer leaves
            if self.journal.needs_compaction():
                self.journal.rewrite(self.core.snapshot())
        events = self.core.drain_events()
        if events:
            self.spool.write(events)
        self.spool.tick()
        self._push_headroom()

    def _push_headroom(self, force: bool = False) -> None:
        """Tell the subscribers the headroom when it moved by a tenth (what selection sees)."""
        headroom = self.core.headroom()
        if force or self._pushed_headroom is None or int(headroom * 10) != int(self._pushed_headroom * 10):
            self._pushed_headroom = headroom
            self.subscribers.call("update_headroom", self.model_id, headroom)

    def lease(self, holder: str, requests: int, tokens: int, min_tokens: int = 0) -> Lease:
        try:
            return self.core.lease(holder, requests, tokens, min_tokens)
        finally:
            self._after()

    def return_lease(self, lease_id: str, used_requests: int, used_tokens: int) -> bool:
        self.core.return_lease(lease_id, used_requests, used_tokens)
        self._after()
        return True

    def ping(self) -> bool:
        """Answers once the constructor has run (start-up waits for every actor)."""
        return True

    def pid(self) -> int:
        """This incarnation's process id (operations, and tests that kill it)."""
        return os.getpid()

    def reserve(self, tokens: int) -> Admission:
        admission = self.core.reserve(tokens)
        self._after()
        return admission

    def commit(self, reservation_id: str, actual_tokens: int) -> bool:
        self.core.commit(reservation_id, actual_tokens)
        self._after()
        return True

    def release(self, reservation_id: str) -> bool:
        self.core.release(reservation_id)
        self._after()
        return True

    def cool_down(self, retry_after_s: float) -> bool:
        self.core.cool_down(retry_after_s)
        self._after()
        self.subscribers.call("update_rate_limited", self.model_id, time.monotonic() + retry_after_s)
        return True

    def observe(self, state: RateLimitState) -> bool:
        self.core.observe(state)
        self._after()
        return True

    def status(self) -> RateLimitStatus:
        try:
            return self.core.status()
        finally:
            self._after()

    def flush_events(self) -> bool:
        self.spool.rotate()
        return True



class LimiterShell(RateLimiterShell):
    """A RateLimiter that finds its subscribers by name and retires when idle.

    ``system``/``namespace``: the name prefix and Ray namespace of the system's actors (None: a
    limiter outside a named system, with no subscribers until it is given some)."""

    def __init__(self, config: RegistryConfig, model_id: str, system: str | None = None,
                 namespace: str | None = None) -> None:
        super().__init__(config, model_id)
        self.system, self.namespace = system, namespace
        self.idle = IdleRetirement(config.settings.rate_limit.idle_retire_s)
        if system is not None and namespace is not None:
            threading.Thread(target=self._find_subscribers, name="amm-limiter-subscribers",
                             daemon=True).start()
        if self.idle.enabled:
            threading.Thread(target=self._watch_idle, name="amm-limiter-idle", daemon=True).start()

    def _find_subscribers(self) -> None:
        """Find the system's routers and Selector by name and hand them to this actor
        (:meth:`take_subscribers`, a call queued like any other, so the push runs between
        decisions). In a thread, once the constructor has returned: a handle to an actor makes
        Ray load that actor's class in this process, and the Router's and the Selector's
        classes import most of the package (routing, selection, budget, pyarrow's compute...):
        about a third of a second of CPU, and Ray runs no call of this actor meanwhile (it loads
        classes under the lock its calls take). So it is done once the first decision (the lease
        a router is waiting for) has been answered and the actor has been quiet for
        ``SUBSCRIBE_QUIET_S`` (or ``SUBSCRIBE_LATEST_S`` after the start without a decision).
        Selection meanwhile sees the headroom it had (full for a model whose limiter did not
        run); admission is exact regardless (every grant is this actor's)."""
        assert self.system is not None and self.namespace is not None
        while not self.idle.settled(SUBSCRIBE_QUIET_S, SUBSCRIBE_LATEST_S):
            time.sleep(SUBSCRIBE_QUIET_S / 2)
        try:
            handles = _subscribers_by_name(self.system, self.namespace)
            _ray.tell(_ray.current_actor(), "take_subscribers", handles)
        except Exception:  # the limiter works without them: selection sees less, nothing else
            log.exception("RateLimiter %s: finding its subscribers failed", self.model_id)

    def take_subscribers(self, handles: list[Handle]) -> bool:
        """Add the subscribers found by name (those added meanwhile are kept) and push them the
        headroom and any cool-down, as a limiter does when it starts."""
        self.subscribers.add(handles)
        self._push_headroom(force=True)
        self._push_cooling()
        return True

    def _push_cooling(self) -> None:
        until = self.core.status().cooling_until_monotonic
        if until is not None:
            self.subscribers.call("update_rate_limited", self.model_id, until)

    # -- decisions: each one resets the idle time ---------------------------------------------
    def lease(self, holder: str, requests: int, tokens: int, min_tokens: int = 0) -> Lease:
        self.idle.touch()
        return super().lease(holder, requests, tokens, min_tokens)

    def return_lease(self, lease_id: str, used_requests: int, used_tokens: int) -> bool:
        self.idle.touch()
        return super().return_lease(lease_id, used_requests, used_tokens)

    def reserve(self, tokens: int) -> Admission:
        self.idle.touch()
        return super().reserve(tokens)

    def commit(self, reservation_id: str, actual_tokens: int) -> bool:
        self.idle.touch()
        return super().commit(reservation_id, actual_tokens)

    def release(self, reservation_id: str) -> bool:
        self.idle.touch()
        return super().release(reservation_id)

    def cool_down(self, retry_after_s: float) -> bool:
        self.idle.touch()
        return super().cool_down(retry_after_s)

    def observe(self, state: RateLimitState) -> bool:
        self.idle.touch()
        return super().observe(state)

    # -- retirement ---------------------------------------------------------------------------
    def retire_if_idle(self) -> bool:
        """Exit when idle long enough with nothing outstanding (the journal compacted, the spool
        segment closed first); False when it stays. Runs between calls like any other, so no
        lease is granted between the check and the exit; calls queued behind it find the actor
        gone and their callers start it again."""
        if not self.idle.due(self.core.outstanding()):
            return False
        try:
            self.journal.rewrite(self.core.snapshot())  # compaction only: every record is in it
        except OSError:
            pass
        self._push_headroom(force=True)  # what selection sees until it is started again
        self.spool.rotate()
        log.info("RateLimiter %s retired after %.0f s without a decision", self.model_id,
                 self.idle.idle_for())
        _ray.exit_actor()
        return True  # not reached

    def _watch_idle(self) -> None:
        """Ask this actor (between its calls) to retire once it has been idle long enough."""
        me: Handle = None
        while True:
            wait = self.idle.check_in_s()
            if wait is None:
                return
            time.sleep(wait)
            if self.idle.idle_for() < (self.idle.idle_s or 0.0):
                continue
            try:
                me = me or _ray.current_actor()
                _ray.get(_ray.send(me, "retire_if_idle", what=f"RateLimiter {self.model_id}"))
            except (ComponentUnavailable, TimeoutError):
                return  # it exited (or is going): nothing left to watch
            except Exception:  # never let the watcher die silently on a surprise
                log.exception("RateLimiter %s: idle check failed", self.model_id)


def _subscribers_by_name(system: str, namespace: str) -> list[Handle]:
    """The system's Router actors and its Selector, found by name."""
    head = f"{system}:"
    names = [name for ns, name in _ray.named_actors() if ns == namespace
             and name.startswith(head) and _is_subscriber(name[len(head):])]
    found = []
    for name in sorted(names):
        try:
            found.append(_ray.get_actor(name, namespace))
        except ComponentUnavailable:  # gone since the listing
            continue
    return found


def _is_subscriber(role: str) -> bool:
    kind, _, rest = role.partition(":")
    return role == "selector" or (kind == "router" and rest.isdigit())


class LimiterDirectory:
    """The RateLimiter actor of each model, started on first use (named, get-if-exists).

    ``name_prefix``/``namespace``: where the system's actors are named; ``detached``: limiters
    outlive their creator (a detached system); ``node``: the node they prefer (the control
    plane's). ``fixed``: a directory of given handles only (tests, a limiter outside a system).
    Picklable: a copy sent to a Router actor starts with an empty cache."""

    def __init__(self, config: RegistryConfig | None, name_prefix: str | None, *,
                 namespace: str | None = None, detached: bool = False, node: str | None = None,
                 fixed: Mapping[str, Handle] | None = None) -> None:
        self.config = config
        self.name_prefix = name_prefix
        self.namespace = namespace
        self.detached = detached
        self.node = node
        self._fixed = dict(fixed) if fixed is not None else None
        self._init_cache()

    @classmethod
    def of(cls, limiters: Mapping[str, Handle]) -> LimiterDirectory:
        """A directory of the handles given, which starts nothing."""
        return cls(None, None, fixed=limiters)

    def _init_cache(self) -> None:
        self._handles: dict[str, Handle] = dict(self._fixed or {})
        self._starting: dict[str, asyncio.Future[Handle]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("config", "name_prefix", "namespace", "detached", "node", "_fixed")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_cache()

    # -- lookup -------------------------------------------------------------------------------
    def name(self, model_id: str) -> str:
        return f"{self.name_prefix}:{ROLE}:{model_id}"

    def get(self, model_id: str) -> Handle:
        """The model's limiter, started if it does not run (a blocking call to Ray's GCS, once
        per model while its actor lives). ``ComponentUnavailable`` for a model this directory
        cannot start a limiter for."""
        handle = self._handles.get(model_id)
        if handle is not None:
            return handle
        with self._lock:
            handle = self._handles.get(model_id)
            if handle is None:
                handle = self._handles[model_id] = self._start(model_id)
        return handle

    __getitem__ = get

    async def aget(self, model_id: str) -> Handle:
        """:meth:`get` for the event loop: a limiter not held yet is found or started in a worker
        thread (the loop goes on serving the other models); concurrent callers share that."""
        handle = self._handles.get(model_id)
        if handle is not None:
            return handle
        pending = self._starting.get(model_id)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(loop.run_in_executor(None, self.get, model_id))
            self._starting[model_id] = pending
            pending.add_done_callback(lambda _: self._starting.pop(model_id, None))
        return await asyncio.shield(pending)

    def forget(self, model_id: str, handle: Handle) -> None:
        """The actor behind ``handle`` is gone (retired, or its owner died): the next use asks
        for the model's limiter again."""
        if self._fixed is None and self._handles.get(model_id) is handle:
            del self._handles[model_id]

    def __contains__(self, model_id: object) -> bool:
        if self._fixed is not None:
            return model_id in self._fixed
        return self.config is not None and any(m.id == model_id for m in self.config.models)

    def live(self) -> dict[str, Handle]:
        """The limiters running now, by model (found by name on the cluster)."""
        if self._fixed is not None:
            return dict(self._fixed)
        head = f"{self.name_prefix}:{ROLE}:"
        found = {}
        for ns, name in _ray.named_actors():
            if ns == self.namespace and name.startswith(head):
                try:
                    found[name[len(head):]] = _ray.get_actor(name, ns)
                except ComponentUnavailable:
                    continue
        return found

    def _start(self, model_id: str) -> Handle:
        from ._actors import RateLimiterActor

        if self._fixed is not None or self.config is None or self.name_prefix is None:
            raise ComponentUnavailable(f"no RateLimiter for model {model_id!r}",
                                       component="RateLimiter", restarting=False)
        if model_id not in self:
            raise ComponentUnavailable(f"no model {model_id!r} in the registry",
                                       component="RateLimiter", restarting=False)
        opts: dict[str, Any] = {"name": self.name(model_id), "get_if_exists": True,
                                "namespace": self.namespace}
        if self.detached:
            opts["lifetime"] = "detached"
        if self.node is not None:
            opts.update(_ray.on_node(self.node, soft=True))
        handle = _ray.create(_ray.options(RateLimiterActor, **opts),
                             config_for_limiter(self.config, model_id), model_id,
                             self.name_prefix, self.namespace)
        return handle


def config_for_limiter(config: RegistryConfig, model_id: str) -> RegistryConfig:
    """What the limiter of ``model_id`` is given: the registry with that model and its provider
    only (it reads nothing else: the model's limits, its provider's keys, the settings). The
    whole registry would be sent with every create call, kept by Ray's GCS for restarts and
    unpickled in the limiter's new process while a router waits: for a 300-model registry,
    76 kB and 3-9 ms against 5.6 kB and 0.4 ms. Not validated again (its registry was)."""
    model = config.model(model_id)
    providers = {name: p for name, p in config.providers.items() if name == model.provider}
    return config.model_copy(update={"models": [model], "providers": providers})
