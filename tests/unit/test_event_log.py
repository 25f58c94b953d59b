"""The Parquet event log: layout, temp files, fsync policies, URIs, views, the CLI."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from api_model_management._clock import ManualClock
from api_model_management.cli import app
from api_model_management.errors import InvalidInput
from api_model_management.events import (
    EVENT_TYPES,
    AttemptFailed,
    HealthChecked,
    RequestCompleted,
    snake_case,
)
from api_model_management.events import _log as log_module
from api_model_management.events._compact import CompactionInProgress, compact
from api_model_management.events._log import EventLog
from api_model_management.projections._duckdb import connect

pytestmark = pytest.mark.unit

DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}-\d+\.parquet$")


def completed(i: int = 0, at: datetime = DAY, **kw) -> RequestCompleted:
    return RequestCompleted(occurred_at=at, latency_ms=float(i), model_id="gpt-4o-mini",
                            cost_usd=Decimal("0.000123456789"), **kw)


def failed(at: datetime = DAY) -> AttemptFailed:
    return AttemptFailed(occurred_at=at, attempt=1, error_kind="timeout", transient=True)


def glob_sql(data_dir: Path) -> str:
    return (f"SELECT * FROM read_parquet('{data_dir}/events/*/*/*.parquet', "
            "hive_partitioning=true, union_by_name=true)")


# ------------------------------------------------------------------------------------------------
# layout


def test_layout_is_hive_partitioned_by_type_and_utc_date(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    late_in_kolkata = datetime(2026, 3, 2, 3, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    paths = log.append([completed(0), completed(1, at=late_in_kolkata), failed()])
    rel = sorted(str(Path(p).relative_to(tmp_path).parent) for p in paths)
    assert rel == [
        "events/event_type=AttemptFailed/date=2026-03-01",
        "events/event_type=RequestCompleted/date=2026-03-01",  # 03:00+05:30 is 21:30 UTC the day before
    ]
    assert all(NAME.match(Path(p).name) for p in paths)
    assert all(Path(p).name.endswith(f"-{os.getpid()}.parquet") for p in paths)
    # one file per (type, date) group, written with the explicit schema
    schema = pq.read_schema(paths[0])
    assert schema.remove_metadata().equals(RequestCompleted.arrow_schema().remove_metadata())


def test_file_names_sort_in_append_order(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    written = [log.append([completed(i)])[0] for i in range(50)]
    assert sorted(written) == written
    assert [f.path for f in log.iter_files()] == written


def test_read_returns_what_was_appended_in_time_order(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    events = [completed(i, at=DAY + timedelta(seconds=10 - i)) for i in range(5)] + [failed()]
    log.append(events)
    assert log.read() == sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    assert log.read("AttemptFailed") == [events[-1]]
    table = log.read_table("RequestCompleted")
    assert table.num_rows == 5 and str(table.schema.field("cost_usd").type) == "decimal128(38, 12)"


def test_empty_log_and_unknown_type(tmp_path):
    log = EventLog(tmp_path / "nothing-yet")
    assert log.read() == [] and log.read_table("RequestCompleted").num_rows == 0
    with pytest.raises(InvalidInput):
        log.read("NoSuchEvent")
    with pytest.raises(InvalidInput):
        EventLog(tmp_path, fsync="sometimes")


def test_plain_duckdb_glob_reads_the_log_with_exact_money(tmp_path):
    EventLog(tmp_path, fsync="never").append([completed(1), failed()])
    rows = duckdb.execute(
        f"SELECT event_type, typeof(cost_usd), cost_usd, date FROM ({glob_sql(tmp_path)}) "
        "ORDER BY event_type").fetchall()
    assert rows == [("AttemptFailed", "DECIMAL(38,12)", None, datetime(2026, 3, 1).date()),
                    ("RequestCompleted", "DECIMAL(38,12)", Decimal("0.000123456789"),
                     datetime(2026, 3, 1).date())]


# ------------------------------------------------------------------------------------------------
# temp files


def test_temp_and_hidden_files_are_ignored_by_every_reader(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    [path] = log.append([completed(1)])
    directory = Path(path).parent
    (directory / ".tmp-0000-1.parquet.partial").write_bytes(b"half a parquet file")
    (directory / "_scratch.parquet").write_bytes(b"not parquet")
    assert len(log.read()) == 1
    assert [f.name for f in log.iter_files()] == [Path(path).name]
    dataset = ds.dataset(tmp_path / "events", format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 1
    # DuckDB's glob matches `_scratch.parquet` (it has no hidden-file rule), but never a temp
    files = duckdb.execute(f"SELECT file FROM glob('{tmp_path}/events/*/*/*.parquet')").fetchall()
    assert not any(".partial" in f[0] or "/.tmp-" in f[0] for f in files)


def test_failed_append_leaves_nothing_visible(tmp_path, monkeypatch):
    log = EventLog(tmp_path, fsync="never")
    real_rename = log.storage.rename
    calls = []

    def rename_then_fail(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(log.storage, "rename", rename_then_fail)
    with pytest.raises(OSError):
        log.append([completed(1), failed()])
    assert log.read() == []
    leftovers = [p for p in (tmp_path / "events").rglob("*") if p.is_file()]
    assert leftovers == []


def test_file_stem_makes_a_rewrite_idempotent(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    batch = [completed(1), completed(2), failed()]
    log.append(batch, file_stem="01900000-0000-7000-8000-000000000000-spool-7")
    log.append(batch, file_stem="01900000-0000-7000-8000-000000000000-spool-7")
    assert sorted(e.event_id for e in log.read()) == sorted(e.event_id for e in batch)


# ------------------------------------------------------------------------------------------------
# fsync policies


@pytest.fixture
def fsyncs(monkeypatch):
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(log_module.os, "fsync", counting)
    return calls


def test_fsync_never(tmp_path, fsyncs):
    log = EventLog(tmp_path, fsync="never")
    log.append([completed(1)])
    log.sync()
    assert fsyncs == []


def test_fsync_always_syncs_every_file_and_its_directories(tmp_path, fsyncs):
    log = EventLog(tmp_path, fsync="always")
    log.append([completed(1), failed()])
    # 2 files + 2 partition dirs + 2 new type dirs + the new events dir and root's entry
    first = len(fsyncs)
    assert first >= 4
    log.append([completed(2)])
    assert len(fsyncs) - first == 2  # the file and its (existing) partition directory
    assert log.unsynced_files == 0


def test_fsync_interval_batches_syncs_by_time(tmp_path, fsyncs):
    clock = ManualClock()
    log = EventLog(tmp_path, fsync="interval", fsync_interval_ms=200, clock=clock)
    log.append([completed(1)])
    clock.advance(0.1)
    log.append([completed(2)])
    assert fsyncs == [] and log.unsynced_files == 2
    assert log.sync_if_due() is False
    clock.advance(0.1)
    log.append([completed(3)])  # 200 ms since the last sync: this file and the two pending
    assert log.unsynced_files == 0
    synced = len(fsyncs)
    assert synced >= 4  # 3 files + the partition directory (+ new parents)
    clock.advance(0.05)
    log.append([completed(4)])
    assert len(fsyncs) == synced and log.unsynced_files == 1
    assert log.sync_if_due() is False
    clock.advance(0.2)
    assert log.sync_if_due() is True
    assert len(fsyncs) == synced + 2 and log.unsynced_files == 0


# ------------------------------------------------------------------------------------------------
# filesystem URIs


def test_file_uri_and_plain_path_are_the_same_log(tmp_path):
    EventLog(f"file://{tmp_path}", fsync="always").append([completed(1)])
    assert len(EventLog(tmp_path).read()) == 1


def test_mock_filesystem_append_read_compact_and_views():
    log = EventLog("mock:///amm", fsync="always")
    assert not log.storage.local
    events = [completed(i) for i in range(3)] + [failed()]
    for event in events:
        log.append([event])
    assert sorted(e.event_id for e in log.read()) == sorted(e.event_id for e in events)
    stats = compact(log)
    assert (stats.files_merged, stats.files_written) == (3, 1)
    assert len(list(log.iter_files())) == 2
    con = connect(log)
    assert con.execute("SELECT count(*), typeof(any_value(cost_usd)) FROM request_completed").fetchone() \
        == (3, "DECIMAL(38,12)")
    assert con.execute("SELECT count(*) FROM events").fetchone() == (4,)


# ------------------------------------------------------------------------------------------------
# compaction


def test_compaction_merges_small_files_and_is_idempotent(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    events = [completed(i) for i in range(5)]
    for event in events:
        log.append([event])
    log.append([failed()])
    stats = compact(tmp_path)
    assert (stats.partitions, stats.partitions_compacted, stats.files_merged) == (2, 1, 5)
    assert stats.events_merged == 5
    [merged] = [f for f in log.iter_files() if f.event_type == "RequestCompleted"]
    assert ".c-" in merged.name
    assert compact(tmp_path).partitions_compacted == 0  # nothing left to do
    assert log.read("RequestCompleted") == sorted(events, key=lambda e: e.event_id)
    assert duckdb.execute(f"SELECT count(*) FROM ({glob_sql(tmp_path)})").fetchone() == (6,)


def test_compaction_respects_min_files_and_removes_stale_temps(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    [path] = log.append([completed(1)])
    log.append([completed(2)])
    stale = Path(path).parent / ".tmp-abandoned.parquet.partial"
    stale.write_bytes(b"x")
    stats = compact(log, min_files=3, stale_temp_s=0)
    assert stats.partitions_compacted == 0 and stats.temps_removed == 1 and not stale.exists()
    with pytest.raises(ValueError):
        compact(log, min_files=1)


def test_one_compaction_at_a_time(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    log.append([completed(1)])
    fd = os.open(tmp_path / "events" / ".compact.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(CompactionInProgress):
            compact(log)
        result = CliRunner().invoke(app, ["compact", "--data-dir", str(tmp_path)])
        assert result.exit_code == 1 and "another compaction" in result.stderr
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# DuckDB views


def _describe(con, view):
    return con.execute(f"DESCRIBE {view}").fetchall()


def test_empty_views_have_the_same_columns_as_populated_ones(tmp_path):
    empty = connect(tmp_path / "empty")
    log = EventLog(tmp_path / "full", fsync="never")
    log.append([completed(1), failed(),
                HealthChecked(occurred_at=DAY, ok=True, latency_ms=3.0, missing_models=("a",))])
    full = connect(log)
    for event_type in ("RequestCompleted", "AttemptFailed", "HealthChecked"):
        view = snake_case(event_type)
        assert [r[:2] for r in _describe(empty, view)] == [r[:2] for r in _describe(full, view)]
    for event_type in EVENT_TYPES:
        assert empty.execute(f"SELECT count(*) FROM {snake_case(event_type)}").fetchone() == (0,)
    assert full.execute("SELECT count(*) FROM events").fetchone() == (3,)
    assert full.execute("SELECT typeof(cost_usd) FROM request_completed").fetchone() == ("DECIMAL(38,12)",)


def test_connect_again_refreshes_the_views(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    log.append([completed(1)])
    con = connect(tmp_path)
    log.append([completed(2)])
    assert con.execute("SELECT count(*) FROM request_completed").fetchone() == (1,)
    connect(tmp_path, con=con)
    assert con.execute("SELECT count(*) FROM request_completed").fetchone() == (2,)


# ------------------------------------------------------------------------------------------------
# the query CLI


@pytest.fixture
def populated(tmp_path) -> Path:
    log = EventLog(tmp_path, fsync="never")
    log.append([completed(1), completed(2), failed()])
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_query_table_format(populated):
    result = run("query", "SELECT model_id, count(*) AS n, sum(cost_usd) AS spent FROM "
                 "request_completed GROUP BY 1", "--data-dir", str(populated))
    assert result.exit_code == 0, result.output
    assert "gpt-4o-mini" in result.stdout and "0.000246913578" in result.stdout
    assert "1 row" in result.stdout


def test_query_csv_format(populated):
    result = run("query", "SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
                 "--data-dir", str(populated), "--format", "csv")
    assert result.exit_code == 0
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["event_type", "n"], ["AttemptFailed", "1"], ["RequestCompleted", "2"]]


def test_query_json_format_keeps_money_exact(populated):
    result = run("query", "SELECT cost_usd, occurred_at FROM request_completed LIMIT 1",
                 "--data-dir", str(populated), "--format", "json")
    assert result.exit_code == 0
    [row] = json.loads(result.stdout)
    assert row["cost_usd"] == "0.000123456789" and row["occurred_at"].startswith("2026-03-01T12:00")


@pytest.mark.parametrize("sql, problem", [
    ("SELEC 1", "syntax error"),
    ("SELECT * FROM no_such_view", "no_such_view"),
    ("SELECT no_such_column FROM request_completed", "no_such_column"),
])
def test_query_bad_sql_is_one_line_and_exit_2(populated, sql, problem):
    result = run("query", sql, "--data-dir", str(populated))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad SQL") and problem in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_query_missing_data_dir_and_bad_format(tmp_path, populated):
    missing = run("query", "SELECT 1", "--data-dir", str(tmp_path / "absent"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    bad = run("query", "SELECT 1", "--data-dir", str(populated), "--format", "xml")
    assert bad.exit_code == 2 and "unknown format 'xml'" in bad.stderr


def test_compact_command_prints_a_summary(populated):
    log = EventLog(populated, fsync="never")
    log.append([completed(3)])
    result = run("compact", "--data-dir", str(populated))
    assert result.exit_code == 0
    assert "1 of 2 partitions compacted: 2 files merged into 1 (3 events)" in result.stdout
    assert len(log.read()) == 4
    missing = run("compact", "--data-dir", str(populated / "absent"))
    assert missing.exit_code == 2


@pytest.mark.parametrize("given, expected", [
    ("data", "data"),
    ("/srv/amm/data", "/srv/amm/data"),
    (Path("file:///srv/amm"), "file:///srv/amm"),  # Path squashes the slashes; they come back
    (Path("mock:///amm"), "mock:///amm"),
    (Path("s3://bucket/amm"), "s3://bucket/amm"),
])
def test_data_dir_uris_survive_the_cli_path_type(given, expected):
    from api_model_management.cli._query import data_dir_text

    assert data_dir_text(given) == expected


def test_query_over_a_file_uri(populated):
    result = run("query", "SELECT count(*) AS n FROM events", "--data-dir", f"file://{populated}",
                 "--format", "csv")
    assert result.exit_code == 0 and result.stdout.splitlines() == ["n", "3"]
