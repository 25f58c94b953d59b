"""RateLimiter actors started on demand and retired when idle (issue 15).

A system keeps one RateLimiter actor per model, but only for the models in use: the
:class:`LimiterDirectory` (held by every router, the embedded one included) gives the actor of a
model, starting it the first time a router needs a lease for that model. The actor is named
``<prefix>:ratelimit:<model>`` and started with get-if-exists, so routers and drivers that ask at
the same moment agree on one actor. A model without a live limiter has nothing leased and
nothing used that the selection must see: its headroom is full (what routers and the Selector
assume for a model they heard nothing about), up to what its journal still holds in the window,
which the limiter pushes as soon as it is started again.

A limiter (:class:`LimiterShell`) retires after ``settings.rate_limit.idle_retire_s`` without a
decision, and only with nothing outstanding (no lease unexpired, no reservation pending, no
cool-down): it compacts its journal, closes its spool segment (the EventSink ingests it) and
exits. The next lease for the model starts it again; it replays its journal (the decisions still
in the window count, as after a restart), so the window is exact across a retire and restart.
A router whose cached handle finds the actor gone forgets it and asks the directory again.

Subscribers: a limiter finds the system's Router actors and Selector by name when it starts (a
restarted one too) and pushes its headroom and cool-downs to them; routers started later are
added by :func:`~._actors.add_node_actors` to the limiters alive then. (The embedded router is
not an actor: it polls the Selector, which every limiter pushes to.) A limiter started by a Router
actor is owned by it (Ray's ownership): if that router dies, the limiter goes too, and is started
again, from its journal, on its next use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..config import RegistryConfig
from ..errors import ComponentUnavailable
from ..ratelimit import Admission, IdleRetirement, Lease, RateLimitState
from . import _ray
from ._ray import Handle
from ._shells import RateLimiterShell

log = logging.getLogger(__name__)

ROLE = "ratelimit"


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
            self.subscribers.set(_subscribers_by_name(system, namespace))
            self._push_headroom(force=True)
            self._push_cooling()
        if self.idle.enabled:
            threading.Thread(target=self._watch_idle, name="amm-limiter-idle", daemon=True).start()

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
        handle = _ray.create(_ray.options(RateLimiterActor, **opts), self.config, model_id,
                             self.name_prefix, self.namespace)
        return handle
