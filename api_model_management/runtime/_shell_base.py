"""What every actor shell shares (state and spool directories, the journaling guard, the
subscribers pushed to), in a module that imports no more than a RateLimiter needs: a limiter is
started when a router first needs a lease for its model, and its worker process imports this,
not ``_shells`` (budget, cache, selection, health and their dependencies), while the router
waits (issue 15)."""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..config import RegistryConfig, Settings
from ..errors import ComponentUnavailable
from ..events._resilient import ResilientSpool
from ..events._spool import SpoolWriter
from . import _ray
from ._ray import Handle


def _state_dir(config: RegistryConfig) -> Path:
    """Where actors keep what must survive their restart (``<data_dir>/state``, or a local
    directory when the log is remote: ``events._local.state_dir``)."""
    from ..events._local import state_dir

    return state_dir(config.settings, _this_node())


def _this_node() -> str | None:
    """The Ray node this process runs on; None outside Ray (a shell built in a test)."""
    return _ray.current_node_id() if _ray.is_initialized() else None


def _node_settings(config: RegistryConfig) -> Settings:
    """The settings with ``{node_id}`` in the spool and state directories filled in."""
    from ..events._local import node_settings

    node = _this_node()
    return node_settings(config.settings, node) if node is not None else config.settings


def _safe(name: str) -> str:
    """A file name for ``name`` (model ids may hold ``/`` or ``:``)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _spool(config: RegistryConfig, name: str) -> ResilientSpool:
    """An actor's spool: events it cannot write now wait in its memory and are written back at
    its next ``tick`` (an actor's events are not refused work: nothing is refused)."""
    ev = _node_settings(config).events
    return ResilientSpool(SpoolWriter(
        config.settings.data_dir, f"{name}-{int(time.time() * 1000)}",
        fsync=ev.fsync, fsync_interval_ms=ev.fsync_interval_ms, spool_dir=ev.spool_dir,
    ))


@contextlib.contextmanager
def _journaling(component: str) -> Iterator[None]:
    """A journal that cannot be written (a full disk) refuses the call in hand with
    ``ComponentUnavailable`` (routers refuse that model, or the request, for now): what the journal
    could not record is not handed out, and the core's own state errs on the safe side."""
    try:
        yield
    except OSError as exc:
        cause = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise ComponentUnavailable(f"the {component} cannot write its journal ({cause})",
                                   component=component, restarting=False) from None


class _Subscribers:
    def __init__(self) -> None:
        self.handles: list[Handle] = []

    def set(self, handles: Sequence[Handle]) -> None:
        self.handles = list(handles)

    def add(self, handles: Sequence[Handle]) -> list[Handle]:
        """Add the handles not known yet (by actor id); returns those."""
        known = {_ray.actor_id(h) for h in self.handles}
        new = [h for h in handles if h is not None and _ray.actor_id(h) not in known]
        self.handles = self.handles + new
        return new

    def call(self, method: str, *args: Any) -> None:
        for handle in self.handles:
            _ray.tell(handle, method, *args)
