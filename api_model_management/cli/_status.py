"""``amm status``: the live state of a running system (``--address``), or of the log.

With ``--address`` this process joins the Ray cluster as a driver (after checking within
seconds that the address answers), finds the system by its named actors, asks each for its state
and leaves; nothing in the system changes. Without it, the state is read from the event log under
``--data-dir`` (see ``projections._status``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from rich.console import Console

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import ComponentUnavailable, ConfigError, InvalidInput
from ..projections._status import SystemStatus, log_status, render_status
from ._errors import print_error
from ._query import data_dir_text, open_log, warn_quarantined


def status_command(data_dir: Path, address: str | None = None, system: str | None = None,
                   config_path: Path | None = None, fmt: str = "table", *,
                   console: Console | None = None, clock: Clock = SYSTEM_CLOCK) -> int:
    """Print the status; 0 on success, 2 (one line on stderr) on bad input or an address where no
    system can be reached."""
    out = console or Console()
    try:
        if fmt not in ("table", "json"):
            raise InvalidInput(f"--format {fmt!r}: use table or json", field="format")
        if address is not None:
            status = _live(address, system)
        else:
            if system is not None:
                raise InvalidInput("--system names a running system: give its --address too",
                                   field="system")
            status = _from_log(data_dir, config_path, clock)
    except (InvalidInput, ConfigError, ComponentUnavailable, duckdb.Error, OSError) as exc:
        return print_error(exc)
    if fmt == "json":
        out.print_json(status.model_dump_json())
    else:
        render_status(status, out)
    return 0


def _live(address: str, system: str | None) -> SystemStatus:
    if address.strip().lower() in ("", "local"):
        raise InvalidInput(f"--address {address!r} would start a new Ray: name the running "
                           "cluster (host:port, ray://host:port or auto)", field="address")
    from ..runtime import _ray
    from ..runtime._status import find_systems, live_status, system_actors

    joined = False
    try:
        if not _ray.is_initialized():
            _ray.start_or_join(address)
            joined = True
        systems = find_systems()
        prefix = choose_system(systems, system, address)
        return live_status(system_actors(prefix, systems[prefix]), address)
    finally:
        if joined:
            _ray.shutdown()


def choose_system(systems: dict[str, str], wanted: str | None, address: str) -> str:
    """The prefix of the system to show: ``wanted``, or the only one running; ``InvalidInput``
    naming what runs when that is not one system."""
    if wanted is not None:
        if wanted not in systems:
            known = ", ".join(sorted(systems)) or "none"
            raise InvalidInput(f"no system {wanted!r} runs on the Ray cluster at {address} "
                               f"(running: {known})", field="system")
        return wanted
    if len(systems) == 1:
        return next(iter(systems))
    if not systems:
        raise InvalidInput(f"no API Model Management system runs on the Ray cluster at {address}",
                           field="address")
    raise InvalidInput(f"{len(systems)} systems run on the Ray cluster at {address} "
                       f"({', '.join(sorted(systems))}): choose one with --system", field="system")


def _from_log(data_dir: Path, config_path: Path | None, clock: Clock) -> SystemStatus:
    text = data_dir_text(data_dir)
    if "://" not in text and not (data_dir / "events").is_dir():
        raise InvalidInput(f"no event log under {data_dir} (expected {data_dir}/events/); "
                           "to ask a running system, give its --address", field="data_dir")
    budgets = None
    if config_path is not None:
        from ..config._load import load_config

        budgets = load_config(config_path).settings.budgets
    log = open_log(text)
    try:
        from ..projections import Projections

        with Projections(log, clock=clock) as projections:
            return log_status(projections, budgets=budgets, data_dir=text, notes=[
                "read from the log: give --address to ask a running system"])
    finally:
        warn_quarantined(log)
