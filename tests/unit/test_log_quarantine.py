"""One unreadable log file never bricks a reader (issue 10, item 6): it is quarantined (moved to
``<data_dir>/quarantine/<type>/<date>/<name>``, never deleted; a WARNING naming it and the error
class; a ``PerformanceAlert(kind="log_file_quarantined")``) and every reader goes on with the rest:
``EventLog.read``/``read_table``, ``read_all_events``, compaction, the DuckDB views, the ledger's
``LogSpend``, and ``amm query``/``report``/``compact``."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from api_model_management._clock import ManualClock
from api_model_management.budget import CostLedgerCore, SpendKey
from api_model_management.budget._fold import LogSpend
from api_model_management.cli import app
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.events import (
    EventLog,
    FeedbackRecorded,
    PerformanceAlert,
    RequestCompleted,
)
from api_model_management.events._compact import compact
from api_model_management.events._ingest import read_all_events
from api_model_management.events._log import (
    MERGED_MARK,
    QUARANTINE_ALERT,
    LogFile,
    Storage,
    events_to_table,
)
from api_model_management.projections._duckdb import connect

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DATE = "2026-03-01"
BAD_NAME = "0195f000-0000-7000-8000-000000000000-1.parquet"
MARKER = b"CONTENT-NEVER-LOGGED"


def done(i: int, cost: str = "0.01") -> RequestCompleted:
    return RequestCompleted(request_id=f"r{i}", occurred_at=AT, latency_ms=float(i),
                            cost_usd=D(cost), provider="openai", model_id="gpt-a",
                            agent_type="research")


def good_log(tmp_path: Path, files: int = 2, **kw) -> EventLog:
    log = EventLog(tmp_path, fsync="never", **kw)
    for i in range(files):
        log.append([done(i)])
    return log


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def corrupt_bytes(kind: str) -> bytes:
    good = parquet_bytes(events_to_table([done(9)], RequestCompleted))
    return {
        "random": os.urandom(64) + MARKER + os.urandom(400),
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "garbled_footer": good[:-40] + bytes(b ^ 0x5A for b in good[-40:-8]) + good[-8:],
        "wrong_schema": parquet_bytes(pa.table({"event_id": ["x"], "secret": ["y"]})),
    }[kind]


KINDS = ["random", "empty", "truncated", "garbled_footer", "wrong_schema"]


def plant(log: EventLog, data: bytes, event_type: str = "RequestCompleted",
          name: str = BAD_NAME) -> Path:
    directory = Path(log.partition_dir(event_type, DATE))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def quarantine_path(root: Path, event_type: str = "RequestCompleted", name: str = BAD_NAME) -> Path:
    return root / "quarantine" / event_type / DATE / name


def alerts_in(log: EventLog) -> list[PerformanceAlert]:
    return [e for e in log.read("PerformanceAlert")
            if isinstance(e, PerformanceAlert) and e.kind == QUARANTINE_ALERT]


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_read_quarantines_an_unreadable_file_and_returns_the_rest(tmp_path, kind, caplog):
    log = good_log(tmp_path)
    data = corrupt_bytes(kind)
    bad = plant(log, data)
    with caplog.at_level(logging.WARNING, logger="api_model_management.events"):
        events = log.read("RequestCompleted")
    assert sorted(e.request_id for e in events) == ["r0", "r1"]
    moved = quarantine_path(tmp_path)
    assert not bad.exists() and moved.read_bytes() == data  # moved aside, never deleted
    [record] = log.quarantined
    assert record.file.path == str(bad) and record.moved_to == str(moved)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(bad) in warning.getMessage() and record.error in warning.getMessage()
    assert MARKER.decode() not in caplog.text
    [alert] = alerts_in(log)
    assert str(bad) in alert.message and record.error in alert.message


def test_the_error_class_is_named(tmp_path):
    log = good_log(tmp_path)
    plant(log, corrupt_bytes("random"))
    plant(log, corrupt_bytes("wrong_schema"), name=BAD_NAME.replace("-1.", "-2."))
    log.read_table("RequestCompleted")
    assert sorted(q.error for q in log.quarantined) == ["ArrowInvalid", "CorruptLogFile"]


def test_rows_that_do_not_validate_are_quarantined_by_read(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    fine = FeedbackRecorded(occurred_at=AT, request_id="r1", score=0.5, source="user")
    log.append([fine])
    table = events_to_table([fine], FeedbackRecorded)
    bad = table.set_column(table.schema.get_field_index("source"), table.schema.field("source"),
                           pa.array(["nobody"], pa.string()))
    plant(log, parquet_bytes(bad), event_type="FeedbackRecorded")
    assert [e.event_id for e in log.read("FeedbackRecorded")] == [fine.event_id]
    assert [q.error for q in log.quarantined] == ["ValidationError"]
    assert quarantine_path(tmp_path, "FeedbackRecorded").exists()


def test_read_table_quarantines_too_and_a_second_reader_raises_no_second_alert(tmp_path):
    first = good_log(tmp_path)
    plant(first, corrupt_bytes("truncated"))
    second = EventLog(tmp_path, fsync="never")
    assert first.read_table("RequestCompleted").num_rows == 2
    assert second.read_table("RequestCompleted").num_rows == 2
    assert len(first.quarantined) == 1 and second.quarantined == []
    assert len(alerts_in(second)) == 1


def test_a_file_that_vanished_is_not_corrupt(tmp_path):
    log = good_log(tmp_path)
    gone = LogFile("RequestCompleted", DATE, BAD_NAME,
                   log.partition_dir("RequestCompleted", DATE) + "/" + BAD_NAME)
    with pytest.raises(FileNotFoundError):
        log.read_file(gone)
    assert log.quarantine(gone, ValueError("x")) is None  # gone already: nothing moved, no alert
    assert log.quarantined == [] and not (tmp_path / "quarantine").exists()


def test_alerts_go_to_the_injected_sink_instead_of_the_log(tmp_path):
    sent: list = []
    log = good_log(tmp_path, alerts=sent.extend)
    plant(log, corrupt_bytes("random"))
    assert len(log.read("RequestCompleted")) == 2
    [alert] = sent
    assert isinstance(alert, PerformanceAlert) and alert.kind == QUARANTINE_ALERT
    assert log.read("PerformanceAlert") == []


def test_a_file_that_cannot_be_moved_is_skipped_and_alerted_once(tmp_path, monkeypatch):
    def refuse(self, src, dst):
        raise PermissionError(13, "read-only file system")

    monkeypatch.setattr(Storage, "move_aside", refuse)
    sent: list = []
    log = good_log(tmp_path, alerts=sent.extend)
    bad = plant(log, corrupt_bytes("random"))
    assert len(log.read("RequestCompleted")) == 2
    assert len(log.read("RequestCompleted")) == 2
    assert bad.exists() and len(sent) == 1 and log.quarantined[0].moved_to is None


def test_a_name_already_in_quarantine_is_never_overwritten(tmp_path):
    log = good_log(tmp_path)
    earlier = quarantine_path(tmp_path)
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"earlier")
    plant(log, corrupt_bytes("random"))
    log.read("RequestCompleted")
    assert earlier.read_bytes() == b"earlier"
    assert log.quarantined[0].moved_to == f"{earlier}.1" and Path(f"{earlier}.1").exists()


class _NoRenameFs:
    """A filesystem without rename (as some object stores): move raises NotImplementedError."""

    def __init__(self) -> None:
        self.files = {"/r/a": b"data"}

    def get_file_info(self, path):
        kind = pa.fs.FileType.File if path in self.files else pa.fs.FileType.NotFound
        return pa.fs.FileInfo(path, kind)

    def move(self, src, dst):
        raise pa.ArrowNotImplementedError("no rename")

    def copy_file(self, src, dst):
        self.files[dst] = self.files[src]

    def delete_file(self, path):
        del self.files[path]


def test_without_rename_the_file_is_copied_then_deleted():
    storage = Storage("mock:///r")
    storage.fs = _NoRenameFs()  # type: ignore[assignment]
    assert storage.move_aside("/r/a", "/r/q/a") == "/r/q/a"
    assert storage.fs.files == {"/r/q/a": b"data"}  # type: ignore[attr-defined]


def test_mock_filesystem_log_quarantines_too():
    log = EventLog("mock:///amm-q", fsync="never")
    log.append([done(1)])
    path = log.partition_dir("RequestCompleted", DATE) + "/" + BAD_NAME
    log.storage.write_new(path, corrupt_bytes("random"), fsync=False)
    assert [e.request_id for e in log.read("RequestCompleted")] == ["r1"]
    assert log.storage.exists(log.storage.join("quarantine", "RequestCompleted", DATE, BAD_NAME))


# -- every reader --------------------------------------------------------------------------------


def test_read_all_events_keeps_going(tmp_path):
    log = good_log(tmp_path)
    plant(log, corrupt_bytes("garbled_footer"))
    events = read_all_events(tmp_path, ["RequestCompleted"])
    assert sorted(e.request_id for e in events) == ["r0", "r1"]
    assert quarantine_path(tmp_path).exists() and len(alerts_in(log)) == 1


def test_compaction_quarantines_a_corrupt_input_and_merges_the_rest(tmp_path):
    log = good_log(tmp_path, files=3)
    plant(log, corrupt_bytes("truncated"))
    stats = compact(log)
    assert stats.partitions_compacted == 1 and stats.files_merged == 3 and stats.events_merged == 3
    assert quarantine_path(tmp_path).exists()
    assert len(log.partition_files("RequestCompleted", DATE)) == 1
    assert sorted(e.request_id for e in log.read("RequestCompleted")) == ["r0", "r1", "r2"]


def test_compaction_with_too_few_readable_inputs_merges_nothing(tmp_path):
    log = good_log(tmp_path, files=1)
    plant(log, corrupt_bytes("random"))
    stats = compact(log)
    assert stats.partitions_compacted == 0 and len(log.quarantined) == 1


def test_a_corrupt_merged_file_is_quarantined_by_listing_and_compaction(tmp_path):
    log = good_log(tmp_path)
    merged = BAD_NAME.replace(".parquet", f"{MERGED_MARK}0123456789abcdef.parquet")
    plant(log, corrupt_bytes("random"), name=merged)
    compact(log)
    assert quarantine_path(tmp_path, name=merged).exists()
    assert sorted(e.request_id for e in log.read("RequestCompleted")) == ["r0", "r1"]


def test_views_are_built_from_readable_files_and_footers_are_checked_once(tmp_path, monkeypatch):
    log = good_log(tmp_path)
    plant(log, corrupt_bytes("wrong_schema"))
    con = connect(log)
    assert con.execute("SELECT count(*) FROM request_completed").fetchone() == (2,)
    assert len(log.quarantined) == 1 and quarantine_path(tmp_path).exists()
    connect(log, con=con)  # sees the alert's file
    known = {f.path for f in log.snapshot()}
    opened: list[str] = []
    real = Storage.parquet_file

    def counting(self, path):
        opened.append(path)
        return real(self, path)

    monkeypatch.setattr(Storage, "parquet_file", counting)
    log.append([done(5)])
    connect(log, con=con)
    assert con.execute("SELECT count(*) FROM request_completed").fetchone() == (3,)
    assert len(opened) == 1 and opened[0] not in known  # only the new file's footer


# -- the ledger follows the rest ----------------------------------------------------------------


def test_log_spend_gives_the_spend_of_the_good_files_and_quarantines_the_bad(tmp_path):
    clock = ManualClock(start=AT)
    sent: list = []
    log = good_log(tmp_path, files=3, alerts=sent.extend)
    plant(log, corrupt_bytes("random"))
    plant(log, corrupt_bytes("wrong_schema"), name=BAD_NAME.replace("-1.", "-2."))
    tail = LogSpend(log, clock, cache_path=tmp_path / "state" / "ledger-files.json")
    core = CostLedgerCore(BudgetSettings(limits=[BudgetLimit(scope="agent_type", key="research",
                                                             limit_usd=D(1))]),
                          clock=clock, follows_log=True)
    delta = tail.start()
    core.apply_log(delta)
    assert core.spend("agent_type", "research", "day") == D("0.03") and delta.files_read == 3
    assert len(log.quarantined) == 2 and len(sent) == 2
    assert not list(Path(log.partition_dir("RequestCompleted", DATE)).glob("0195f000-*"))
    log.append([done(7)])
    later = tail.poll()  # and it keeps following
    core.apply_log(later)
    assert later.files_read == 1 and core.spend("agent_type", "research", "day") == D("0.04")
    assert SpendKey("openai", "gpt-a", "research") in {k for k, _, _ in delta.added}


# -- the CLI: exit 0 on the rest, one warning line, never a traceback ----------------------------


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_amm_query_works_on_the_rest_and_says_which_file(tmp_path):
    log = good_log(tmp_path)
    bad = plant(log, corrupt_bytes("random"))
    result = run("query", "SELECT count(*) AS n FROM request_completed", "--data-dir", str(tmp_path),
                 "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["n", "2"]
    [line] = warnings_of(result)
    assert line.startswith("warning: quarantined") and str(bad) in line and "ArrowInvalid" in line
    assert "Traceback" not in result.output
    again = run("query", "SELECT count(*) AS n FROM request_completed", "--data-dir", str(tmp_path))
    assert again.exit_code == 0 and warnings_of(again) == []


def test_amm_report_works_on_the_rest_and_says_which_file(tmp_path):
    log = good_log(tmp_path)
    bad = plant(log, corrupt_bytes("truncated"))
    result = run("report", "--data-dir", str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requests"] == 2
    [line] = warnings_of(result)
    assert line.startswith("warning: quarantined") and str(bad) in line
    assert "Traceback" not in result.output


def test_amm_compact_works_on_the_rest_and_says_which_file(tmp_path):
    log = good_log(tmp_path, files=3)
    bad = plant(log, corrupt_bytes("garbled_footer"))
    result = run("compact", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "3 files merged into 1 (3 events)" in result.stdout
    [line] = warnings_of(result)
    assert line.startswith("warning: quarantined") and str(bad) in line
    assert "Traceback" not in result.output
    assert len(log.read("RequestCompleted")) == 3


def test_a_file_older_than_a_field_is_read_with_nulls_not_quarantined(tmp_path):
    """Schema evolution: a file written before a nullable field was added to its event type is
    readable (the field is null), by events, by columns and by the views; only a changed or
    unknown column is another schema."""
    log = good_log(tmp_path, files=1)
    table = events_to_table([done(7)], RequestCompleted).drop_columns(["time_to_first_token_ms"])
    plant(log, parquet_bytes(table), name="older-0001.parquet")
    events = [e for e in log.read("RequestCompleted") if e.request_id == "r7"]
    assert len(events) == 1 and events[0].time_to_first_token_ms is None
    assert not (tmp_path / "quarantine").exists() and alerts_in(log) == []
    (file,) = [f for f in log.partition_files("RequestCompleted", DATE) if f.name.startswith("older")]
    columns = log.read_file(file, ["request_id", "time_to_first_token_ms"])
    assert columns is not None and columns.column("time_to_first_token_ms").null_count == 1
    changed = events_to_table([done(8)], RequestCompleted)
    changed = changed.set_column(changed.schema.get_field_index("latency_ms"),
                                 pa.field("latency_ms", pa.string()), pa.array(["8"]))
    plant(log, parquet_bytes(changed), name="changed-0001.parquet")
    log.read("RequestCompleted")
    assert quarantine_path(tmp_path, name="changed-0001.parquet").exists()
