"""Any valid event → Parquet log → EventLog / DuckDB → the same event (style.md §6)."""

from __future__ import annotations

import tempfile
from collections import Counter

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management.events import EVENT_TYPES, snake_case
from api_model_management.events._log import EventLog, events_to_table, partition_date
from api_model_management.projections._duckdb import connect

from strategies import any_event

pytestmark = pytest.mark.property

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_CON = duckdb.connect()


def _key(event):
    return (event.event_type, event.event_id)


@SETTINGS
@given(st.lists(any_event(), min_size=1, max_size=6, unique_by=lambda e: e.event_id))
def test_log_then_read_is_identity(events):
    with tempfile.TemporaryDirectory() as data_dir:
        log = EventLog(data_dir, fsync="never")
        log.append(events)
        back = log.read()
        assert sorted(back, key=_key) == sorted(events, key=_key)
        # and each type's rows through DuckDB are the same events, in the right date partition
        con = connect(data_dir, con=_CON)  # refreshing one connection's views (a new one is ~80 ms)
        from_duckdb = []
        for event_type, cls in EVENT_TYPES.items():
            table = con.sql(f"SELECT * FROM {snake_case(event_type)}").to_arrow_table()
            for row in table.to_pylist():
                day = row.pop("date")
                event = cls.from_row(row)
                assert day.isoformat() == partition_date(event)
                from_duckdb.append(event)
        assert sorted(from_duckdb, key=_key) == sorted(events, key=_key)
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == len(events)


@settings(max_examples=60, deadline=None)
@given(st.lists(any_event(), min_size=1, max_size=10))
def test_columnwise_table_equals_to_row(events):
    """The fast column-wise builder agrees with the model's own ``to_row``."""
    by_type = Counter(type(e) for e in events)
    for cls in by_type:
        group = [e for e in events if type(e) is cls]
        rows = [e.to_row() for e in group]
        expected = cls.arrow_schema().empty_table().from_pylist(rows, schema=cls.arrow_schema())
        assert events_to_table(group, cls).equals(expected)
