"""The local directories that live beside the event log: the spool and actors' state.

The spool needs a local disk (``flock``, appends of tens of microseconds, rename), and so do the
journals and caches that actors keep across restarts. With a local ``data_dir`` both sit inside it
(``<data_dir>/spool``, ``<data_dir>/state``), as they always have. With a remote one
(``s3://bucket/prefix``) they go to ``settings.events.spool_dir`` / ``state_dir``, by default
``<system temp dir>/amm-<12 hex of data_dir>/spool`` and ``.../state`` on each machine.

A configured directory may hold ``{node_id}``: the Ray node id of the process that uses it (the
runtime fills it in; ``local`` outside Ray). One machine standing for several nodes (a test
cluster) then gives each node its own spool, as separate machines have.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import InvalidInput
from ._storage import local_default_dir, local_path

NODE_PLACEHOLDER = "{node_id}"


def spool_dir(settings: Settings, node_id: str | None = None) -> Path:
    """Where this node's writers spool (each writer in its own subdirectory)."""
    return spool_root(settings.data_dir, settings.events.spool_dir, node_id)


def spool_root(data_dir: str | Path, spool_dir: str | Path | None = None,
               node_id: str | None = None) -> Path:
    """``spool_dir`` if given, else ``<data_dir>/spool`` (local) or the default local directory
    of a remote ``data_dir``."""
    if spool_dir is not None:
        return _path(for_node(str(spool_dir), node_id))
    return _beside_log(str(data_dir)) / "spool"


def state_dir(settings: Settings, node_id: str | None = None) -> Path:
    """Where this node's actors keep their journals and caches."""
    if settings.events.state_dir is not None:
        return _path(for_node(settings.events.state_dir, node_id))
    return _beside_log(settings.data_dir) / "state"


def for_node(directory: str, node_id: str | None) -> str:
    """``directory`` with ``{node_id}`` replaced (by ``local`` when there is no node)."""
    return directory.replace(NODE_PLACEHOLDER, node_id or "local")


def node_settings(settings: Settings, node_id: str) -> Settings:
    """``settings`` with the spool and state directories resolved for ``node_id``."""
    events = settings.events
    update = {name: for_node(value, node_id) for name in ("spool_dir", "state_dir")
              if (value := getattr(events, name)) is not None and NODE_PLACEHOLDER in value}
    if not update:
        return settings
    return settings.model_copy(update={"events": events.model_copy(update=update)})


def _beside_log(data_dir: str) -> Path:
    local = local_path(data_dir)
    return local if local is not None else local_default_dir(data_dir)


def _path(text: str) -> Path:
    local = local_path(text)
    if local is None:  # the settings refuse a URI; a direct caller gets the same one line
        raise InvalidInput("spool_dir and state_dir must be local directories", field="spool_dir")
    return local


__all__ = ["NODE_PLACEHOLDER", "for_node", "node_settings", "spool_dir", "spool_root", "state_dir"]
