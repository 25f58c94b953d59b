"""``RequestCompleted``'s agent fields (issue 13) in the log: tool names, counts, the format asked
and the verdicts go through Parquet, the EventLog and the DuckDB views unchanged; a file written
before the fields existed reads them as null (nullable fields: the log's schema evolution), and
so does every view over a log that mixes both."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api_model_management.events import RequestCompleted
from api_model_management.events._log import EventLog, events_to_table
from api_model_management.projections._duckdb import connect

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
AGENT_FIELDS = ["tool_calls", "tool_count", "image_count", "response_format", "structured_valid",
                "tool_calls_valid", "tool_calls_json"]


def completed(i: int, **fields) -> RequestCompleted:
    return RequestCompleted(request_id=f"r{i}", occurred_at=AT, latency_ms=float(i),
                            cost_usd=Decimal("0.01"), provider="anthropic",
                            model_id="claude-haiku-4-5", agent_type="coder", **fields)


AGENT = completed(1, tool_calls=("get_weather", "get_time"), tool_count=3, image_count=2,
                  response_format=None, structured_valid=None, tool_calls_valid=False,
                  finish_reason="tool_calls")
STRUCTURED = completed(2, tool_count=0, image_count=0, response_format="json_schema",
                       structured_valid=True)


def test_the_agent_fields_are_in_the_arrow_schema_and_nullable():
    schema = RequestCompleted.arrow_schema()
    assert all(schema.field(name).nullable for name in AGENT_FIELDS)
    assert schema.field("tool_calls").type == pa.list_(pa.string())
    assert schema.field("tool_count").type == schema.field("image_count").type == pa.int32()
    assert schema.field("structured_valid").type == pa.bool_()


def test_agent_fields_round_trip_through_the_log_and_duckdb(tmp_path: Path):
    log = EventLog(tmp_path, fsync="never")
    log.append([AGENT, STRUCTURED])
    back = sorted(log.read("RequestCompleted"), key=lambda e: e.request_id)
    assert back == [AGENT, STRUCTURED]
    con = connect(str(tmp_path))
    rows = con.sql("SELECT request_id, tool_calls, tool_count, image_count, response_format, "
                   "structured_valid, tool_calls_valid FROM request_completed "
                   "ORDER BY request_id").fetchall()
    assert rows == [("r1", ["get_weather", "get_time"], 3, 2, None, None, False),
                    ("r2", None, 0, 0, "json_schema", True, None)]


def test_a_file_from_before_the_agent_fields_reads_them_as_null(tmp_path: Path):
    log = EventLog(tmp_path, fsync="never")
    log.append([AGENT])
    older = events_to_table([completed(3)], RequestCompleted).drop_columns(AGENT_FIELDS)
    directory = Path(log.partition_dir("RequestCompleted", "2026-03-01"))
    pq.write_table(older, directory / "0195f000-0000-7000-8000-000000000003-1.parquet")
    events = {e.request_id: e for e in log.read("RequestCompleted")}
    assert events["r1"] == AGENT
    assert all(getattr(events["r3"], name) is None for name in AGENT_FIELDS)
    assert not (tmp_path / "quarantine").exists()
    con = connect(str(tmp_path))
    rows = con.sql("SELECT request_id, tool_count, tool_calls_valid FROM request_completed "
                   "ORDER BY request_id").fetchall()
    assert rows == [("r1", 3, False), ("r3", None, None)]
    # the projections over the mixed log still run
    assert con.execute("SELECT count(*) FROM request_completed WHERE NOT cache_hit").fetchone() == (2,)
