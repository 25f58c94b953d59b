"""An exclusive lease kept in a store that has no locks (an S3 bucket): who may compact the log.

A local disk has ``flock``; an object store has neither locks nor an atomic create-if-absent that
pyarrow exposes. What it does have, S3 since December 2020 and the S3-compatible stores, is strong
read-after-write consistency: a listing made after an upload completed includes the object. So:

1. a contender uploads its own lease object ``<root>/locks/<name>/<uuid7>-<pid>.lease``;
2. it lists ``<root>/locks/<name>/``;
3. it holds the lease if its object is the only live one there; otherwise it deletes its object
   and gives up (:meth:`StoreLease.acquire` returns False).

Two contenders cannot both hold it: each listed after its own upload, so whichever listed second
listed after *both* uploads and saw the other's object. (Both may give up when they race; the
caller tries again later.) A lease whose holder died is stale once ``ttl_s`` has passed since its
last upload, measured on the store's clock (the listing's modification time of the contender's
own, just-uploaded object), so clocks of different machines never compare. Contenders delete
stale leases. A holder renews its lease (:meth:`StoreLease.renew`) between units of work well
within ``ttl_s``; a holder that finds its lease deleted (judged stale) has lost it and must stop
before changing anything more (:class:`LeaseLost`).

A lease also names its holder (host name, PID namespace, pid). A contender on the same host and
PID namespace whose check finds that process gone takes the lease over at once, so a compaction
killed with ``kill -9`` does not block the next one on that machine for ``ttl_s`` (a pid reused
meanwhile only makes the contender wait for the ttl: the safe side).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import AMMError
from ._storage import Storage
from ._types import uuid7

LOCKS_DIR = "locks"
LEASE_SUFFIX = ".lease"
DEFAULT_TTL_S = 600.0


class LeaseLost(AMMError):
    """The lease was taken from its holder (judged stale): stop before changing anything."""

    error_kind = "lease_lost"


class StoreLease:
    """One contender's lease on ``name`` under ``storage`` (see the module docstring)."""

    def __init__(self, storage: Storage, name: str, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.storage = storage
        self.ttl_s = ttl_s
        self.directory = storage.join(LOCKS_DIR, name)
        self.object_name = f"{uuid7()}-{os.getpid()}{LEASE_SUFFIX}"
        self.path = f"{self.directory}/{self.object_name}"
        self.held = False

    def acquire(self) -> bool:
        """Try once; True if this contender now holds the lease."""
        self.storage.makedirs(self.directory)
        self._upload()
        leases = {name: mtime for name, is_dir, mtime in self.storage.list_dir(self.directory)
                  if not is_dir and name.endswith(LEASE_SUFFIX)}
        now = leases.get(self.object_name)
        if now is None:  # not listed after its upload: the store is not consistent; never hold
            self.storage.delete(self.path)
            return False
        others = {n: m for n, m in leases.items() if n != self.object_name}
        for name, mtime in list(others.items()):
            if now - mtime > self.ttl_s or self._holder_gone(name):
                self.storage.delete(f"{self.directory}/{name}")
                del others[name]
        if others:
            self.storage.delete(self.path)
            return False
        self.held = True
        return True

    def renew(self) -> None:
        """Upload the lease again (its age starts over); :class:`LeaseLost` if it was deleted."""
        if not self.held:
            raise LeaseLost("the lease is not held", name=self.directory)
        if not self.storage.exists(self.path):
            self.held = False
            raise LeaseLost(f"the lease at {self.directory} was taken over (judged stale)",
                            name=self.directory)
        self._upload()

    def release(self) -> None:
        if self.held:
            self.held = False
            self.storage.delete(self.path)

    def _upload(self) -> None:
        self.storage.write_new(self.path, json.dumps(_identity()).encode(), fsync=False)

    def _holder_gone(self, name: str) -> bool:
        """Whether the lease's holder is a process of this host (and PID namespace) that is gone."""
        try:
            holder = json.loads(self.storage.read_bytes(f"{self.directory}/{name}"))
            pid = int(holder["pid"])
            same_place = {k: holder.get(k) for k in ("host", "pid_ns")} == \
                {k: v for k, v in _identity().items() if k != "pid"}
        except (OSError, ValueError, KeyError, TypeError):  # gone, being written, or foreign
            return False
        return same_place and pid != os.getpid() and not _alive(pid)


def _identity() -> dict[str, object]:
    try:
        pid_ns: int | None = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pid_ns = None
    return {"host": socket.gethostname(), "pid_ns": pid_ns, "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextmanager
def holding(lease: StoreLease) -> Iterator[bool]:
    """``lease`` acquired (yields True) or not (yields False); released on leaving."""
    try:
        yield lease.acquire()
    finally:
        lease.release()


__all__ = ["DEFAULT_TTL_S", "LeaseLost", "StoreLease", "holding"]
