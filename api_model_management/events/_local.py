"""The local directories that live beside the event log: the spool and actors' state.

The spool needs a local disk (``flock``, appends of tens of microseconds, rename), and so do the
journals and caches that actors keep across restarts. With a local ``data_dir`` both sit inside it
(``<data_dir>/spool``, ``<data_dir>/state``), as they always have. With a remote one
(``s3://bucket/prefix``) they go to ``settings.events.spool_dir`` / ``state_dir``, by default
``<system temp dir>/amm-<12 hex of data_dir>/spool`` and ``.../state`` on each machine.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import InvalidInput
from ._storage import local_default_dir, local_path


def spool_dir(settings: Settings) -> Path:
    """Where this machine's writers spool (each writer in its own subdirectory)."""
    return spool_root(settings.data_dir, settings.events.spool_dir)


def spool_root(data_dir: str | Path, spool_dir: str | Path | None = None) -> Path:
    """``spool_dir`` if given, else ``<data_dir>/spool`` (local) or the default local directory
    of a remote ``data_dir``."""
    if spool_dir is not None:
        return _path(str(spool_dir))
    return _beside_log(str(data_dir)) / "spool"


def state_dir(settings: Settings) -> Path:
    """Where this machine's actors keep their journals and caches."""
    if settings.events.state_dir is not None:
        return _path(settings.events.state_dir)
    return _beside_log(settings.data_dir) / "state"


def _beside_log(data_dir: str) -> Path:
    local = local_path(data_dir)
    return local if local is not None else local_default_dir(data_dir)


def _path(text: str) -> Path:
    local = local_path(text)
    if local is None:  # the settings refuse a URI; a direct caller gets the same one line
        raise InvalidInput("spool_dir and state_dir must be local directories", field="spool_dir")
    return local


__all__ = ["spool_dir", "spool_root", "state_dir"]
