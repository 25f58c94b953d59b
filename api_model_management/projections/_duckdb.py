"""DuckDB views over the event log: one per event type (``request_completed``, ...) and ``events``.

The views list the log's *live* files as of :func:`connect` (a consistent snapshot: never a file
that a finished or interrupted compaction replaced), so they never double count. Call ``connect``
again with the same ``con`` to see files written since. Every type in ``EVENT_TYPES`` gets a view;
a type without files gets an empty one with the right columns, so queries return 0 rows instead of
failing. Money stays ``DECIMAL(38,12)``. Each view has its type's columns plus ``date`` (DATE, the
partition); a column that files written before its field existed lack is null there, also when no
file has it yet. ``events`` is the union by name of all type views.

Views are built from readable files only: each file's footer is checked once per ``EventLog`` (by
name), and a file that does not read as its type is quarantined (``EventLog.quarantine``; the
log's ``quarantined`` lists it) and left out.

Local data directories are read by DuckDB directly (``read_parquet`` over the live files). Other
pyarrow filesystems (``s3://``, ``mock://``) are read through pyarrow: each view is a pyarrow
dataset of the type's live files, registered in DuckDB, so DuckDB needs no extension (nothing is
downloaded at run time: no ``httpfs``) and reads lazily, pushing column projection and filters
down to pyarrow's scanner. The cost: each query lists nothing but reads again the footers and
column chunks it needs (no cache between queries), and a query runs on pyarrow's reader, so it
is slower than DuckDB's own over local files (see the README's measured numbers).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from ..events._log import EVENTS_DIR, EventLog, LogFile, event_class
from ..events._types import EVENT_TYPES, snake_case

DATE_FIELD = pa.field("date", pa.date32())
_CONNECT_ATTEMPTS = 5


def connect(
    data_dir: str | Path | EventLog,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (``con`` or a new in-memory one) with the event views (re)created."""
    log = data_dir if isinstance(data_dir, EventLog) else EventLog(data_dir)
    con = con if con is not None else duckdb.connect()
    if not log.storage.local:  # pyarrow reads the store: DuckDB must never fetch an extension
        con.execute("SET autoinstall_known_extensions = false")
    for attempt in range(_CONNECT_ATTEMPTS):
        try:
            files = _by_type([f for f in log.snapshot() if log.readable(f)])
            _create_views(con, log, files)
            return con
        except (FileNotFoundError, duckdb.IOException):
            # a compaction retired a file between the snapshot and the read: take a new snapshot
            if attempt == _CONNECT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _by_type(files: list[LogFile]) -> dict[str, list[LogFile]]:
    out: dict[str, list[LogFile]] = defaultdict(list)
    for f in files:
        out[f.event_type].append(f)
    return out


def _create_views(con: duckdb.DuckDBPyConnection, log: EventLog, files: dict) -> None:
    names = []
    for event_type in sorted(set(EVENT_TYPES) | set(files)):
        view = snake_case(event_type)
        type_files = files.get(event_type, [])
        if not type_files:
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {empty_select(event_type)}")
        elif log.storage.local and event_type in EVENT_TYPES:
            # the type's columns first (null where every file predates a field added since)
            con.execute(f"CREATE OR REPLACE VIEW {view} AS ({empty_select(event_type)}) "
                        f"UNION ALL BY NAME (SELECT * FROM {_read_parquet(type_files)})")
        elif log.storage.local:
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {_read_parquet(type_files)}")
        else:
            _create_arrow_view(con, view, _dataset(log, event_type, type_files))
        names.append(view)
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM {v}" for v in names)
    con.execute(f"CREATE OR REPLACE VIEW events AS {union}")


def _read_parquet(files: list[LogFile]) -> str:
    paths = ", ".join("'" + f.path.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{paths}], hive_partitioning=true, union_by_name=true)"


def _create_arrow_view(con: duckdb.DuckDBPyConnection, view: str,
                       source: pa.Table | ds.Dataset) -> None:
    name = f"_amm_arrow_{view}"
    con.register(name, source)
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {name}")


def _dataset(log: EventLog, event_type: str, files: list[LogFile]) -> ds.Dataset:
    """The type's live files as a pyarrow dataset on the log's own filesystem: DuckDB scans it
    lazily, asking for the columns (and row groups, by their statistics) a query needs, so
    nothing is downloaded at ``connect`` beyond the footers already checked, and no DuckDB
    extension is needed. Each query reads what it needs again (no cache)."""
    known = EVENT_TYPES.get(event_type)  # a type this version does not know: the files' schema
    schema = known.arrow_schema().append(DATE_FIELD) if known is not None else None
    type_dir = log.storage.join(EVENTS_DIR, f"event_type={event_type}")
    return ds.dataset([f.path for f in files], schema=schema, format="parquet",
                      filesystem=log.storage.fs, partition_base_dir=type_dir,
                      partitioning=ds.partitioning(pa.schema([DATE_FIELD]), flavor="hive"))


def empty_select(event_type: str) -> str:
    """A SELECT of no rows with exactly the columns (and DuckDB types) of ``event_type``'s view."""
    schema = event_class(event_type).arrow_schema().append(DATE_FIELD)
    columns = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {_quote(f.name)}" for f in schema)
    return f"SELECT {columns} LIMIT 0"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_SIMPLE_TYPES = {
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.date32(): "DATE",
}


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type DuckDB gives a Parquet column of ``arrow_type`` (the schemas' types only)."""
    if arrow_type in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[arrow_type]
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_list(arrow_type):
        return f"{duckdb_type(arrow_type.value_type)}[]"
    if pa.types.is_struct(arrow_type):
        fields = ", ".join(f"{_quote(f.name)} {duckdb_type(f.type)}" for f in arrow_type)
        return f"STRUCT({fields})"
    raise NotImplementedError(f"no DuckDB type for {arrow_type}")
