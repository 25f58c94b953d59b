"""``amm query`` and ``amm compact``: SQL over the event log, and compaction with a progress bar.

Both return an exit code: 0 on success, 2 on bad input (bad SQL, unknown format, no such data
directory) with one ``error:`` line on stderr, never a traceback; 1 if another compaction runs.
A log file that cannot be read is quarantined (moved aside, see ``EventLog.quarantine``), the
command works on the rest and says so in one ``warning:`` line on stderr per file.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..errors import InvalidInput
from ..events._log import EventLog
from ..events._storage import display_uri, local_path

FORMATS = ("table", "csv", "json")
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/+(?P<rest>.*)$")


def _error(message: str, code: int = 2) -> int:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return code


def data_dir_text(data_dir: str | Path) -> str:
    """The data directory as the log takes it; repairs a URI that ``Path`` squashed
    (``file:/x`` → ``file:///x``)."""
    text = str(data_dir)
    match = _URI.match(text)
    if match is None or len(match["scheme"]) == 1:  # no scheme, or a Windows drive letter
        return text
    scheme, rest = match["scheme"], match["rest"]
    if scheme in ("file", "mock"):
        return f"{scheme}:///{rest}"
    return f"{scheme}://{rest}"


def missing_log(text: str) -> str | None:
    """Why there is no event log at ``text`` (a directory that does not exist; a remote
    location with nothing under ``events/``), or None. Raises ``OSError`` (or ``InvalidInput``
    for a URI that cannot be opened) when a remote store cannot be asked."""
    if "://" not in text:
        return None if Path(text).is_dir() else f"no event log: data directory {text} does not exist"
    if local_path(text) is not None:
        return None
    log = EventLog(text)
    if log.storage.exists(log.events_root):
        return None
    return f"no event log at {log.storage.uri} (nothing under events/)"


def remote_log_missing(text: str) -> int | None:
    """As :func:`_missing_or_error`, for a remote ``text`` only (a local one is checked by its caller)."""
    return _missing_or_error(text) if "://" in text else None


def _missing_or_error(text: str) -> int | None:
    """An exit code and one ``error:`` line when there is no log at ``text``, else None."""
    try:
        reason = missing_log(text)
    except InvalidInput as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"cannot read the event log at {display_uri(text)}: {_first_line(exc)}", code=1)
    return _error(reason) if reason is not None else None


class _SaidByTheCommand(logging.Filter):
    """Keeps the log's own WARNING about a quarantined file off the console: the command says it
    once, as a ``warning:`` line (:func:`warn_quarantined`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == _LOG_LOGGER and record.getMessage().startswith(_QUARANTINED))


_LOG_LOGGER = "api_model_management.events._log"
_QUARANTINED = "event log: quarantined"


def open_log(text: str) -> EventLog:
    """The log a command reads. The log's own WARNING about a quarantined file is kept off the
    package's console handler (or, with logging not configured, from Python's last-resort
    printing of it): the command says it once (:func:`warn_quarantined`)."""
    package = logging.getLogger("api_model_management")
    consoles = [h for h in package.handlers if getattr(h, "_amm_console", False)]
    for console in consoles:
        if not any(isinstance(f, _SaidByTheCommand) for f in console.filters):
            console.addFilter(_SaidByTheCommand())
    if not consoles and not package.hasHandlers():
        package.addHandler(logging.NullHandler())
    return EventLog(text)


def warn_quarantined(log: EventLog) -> None:
    """One ``warning:`` line on stderr per file the command found unreadable and moved aside."""
    for record in log.quarantined:
        typer.secho(f"warning: {record.describe()}", fg=typer.colors.YELLOW, err=True)


# ------------------------------------------------------------------------------------------------
# query


def query_command(sql: str, data_dir: str | Path, fmt: str) -> int:
    """Run ``sql`` against the event views of ``data_dir`` and print the result as ``fmt``."""
    from ..projections._duckdb import connect

    if fmt not in FORMATS:
        return _error(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    text = data_dir_text(data_dir)
    if (code := _missing_or_error(text)) is not None:
        return code
    log = open_log(text)
    try:
        con = connect(log)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        return _error(f"cannot read the event log at {text}: {_first_line(exc)}", code=1)
    finally:
        warn_quarantined(log)
    try:
        result = con.execute(sql)
        if result.description is None:  # a statement without a result set
            return 0
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
    except duckdb.Error as exc:
        return _error(f"bad SQL: {_first_line(exc)}")
    {"table": _print_table, "csv": _print_csv, "json": _print_json}[fmt](columns, rows)
    return 0


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _print_table(columns: Sequence[str], rows: list[tuple]) -> None:
    table = Table(*columns, caption=f"{len(rows)} row{'s' if len(rows) != 1 else ''}")
    for row in rows:
        table.add_row(*(_text(v) for v in row))
    Console().print(table)


def _print_csv(columns: Sequence[str], rows: list[tuple]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_text(v) for v in row] for row in rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # exact: never through a binary float
    raise TypeError(f"cannot encode {type(value).__name__}")


def _print_json(columns: Sequence[str], rows: list[tuple]) -> None:
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    data = orjson.dumps(records, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    sys.stdout.write(data.decode() + "\n")


# ------------------------------------------------------------------------------------------------
# compact


def compact_command(data_dir: str | Path) -> int:
    """Compact every partition of ``data_dir`` with a progress bar, then print a summary line."""
    from ..events._compact import CompactionInProgress, compact
    from ..events._lease import LeaseLost

    text = data_dir_text(data_dir)
    if (code := _missing_or_error(text)) is not None:
        return code
    console = Console()
    columns = (TextColumn("compacting"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("compact", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        log = open_log(text)
        try:
            stats = compact(log, progress=advance)
        except (CompactionInProgress, LeaseLost) as exc:
            return _error(str(exc), code=1)
        except OSError as exc:  # a full disk, an unreachable store: what was done stands
            return _error(f"compaction of {display_uri(text)} stopped: {_first_line(exc)}", code=1)
        finally:
            warn_quarantined(log)
    console.print(
        f"{stats.partitions_compacted} of {stats.partitions} partitions compacted: "
        f"{stats.files_merged} files merged into {stats.files_written} "
        f"({stats.events_merged} events); removed {stats.leftovers_removed} leftover and "
        f"{stats.temps_removed} temporary files",
        highlight=False,
        soft_wrap=True,
    )
    return 0
