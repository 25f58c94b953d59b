"""The sink's fast decoding (``_arrow.segment_tables``) against the path it replaces (each line
through the event models, then ``events_to_table``): for any segment, valid or damaged, it gives
the very same tables, or ``None`` (the caller then takes the old path)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management.events import EVENT_TYPES
from api_model_management.events._arrow import segment_tables
from api_model_management.events._log import EventLog, events_to_table
from api_model_management.events._spool import decode_events, encode_events

from strategies import any_event

pytestmark = pytest.mark.property

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def old_tables(data: bytes) -> dict:
    """What the sink wrote before: the events the models decode, grouped as ``EventLog.append``
    groups them (first appearance of (type, UTC date)), each group as ``events_to_table``."""
    groups = EventLog._group(None, decode_events(data))  # type: ignore[arg-type]  # no self used
    return {key: events_to_table(group, key[0]) for key, group in groups.items()}


def assert_same(tables: dict, expected: dict) -> None:
    assert list(tables) == list(expected)
    for key, table in tables.items():
        assert table.schema.equals(expected[key].schema, check_metadata=True)
        assert table.equals(expected[key]), key


@SETTINGS
@given(st.lists(any_event(), min_size=1, max_size=12))
def test_valid_events_give_the_tables_of_the_models(events):
    data = encode_events(events)
    tables = segment_tables(data)
    expected = old_tables(data)
    if decode_events(data) == events:  # nothing lost in JSON (an infinite float is written null)
        assert tables is not None
    if tables is not None:
        assert_same(tables, expected)


# -- damaged segments: a value replaced, a field dropped or added, a line cut or garbled ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.sampled_from(["1.5", "1E-13", "2026-03-01T09:00:00Z",
                                             "2026-03-01T09:00:00+00:00", "2026-02-30T09:00:00+00:00",
                                             "2026-03-01T09:00:00.5+00:00", "healthy", "rpm",
                                             "1.0000000000000", "NaN", "-0", "", "5"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["model_id", "score", "capability", "cost", "performance",
                                       "availability", "x"]), children, max_size=7),
    max_leaves=8,
)


@st.composite
def damaged(draw) -> bytes:
    events = draw(st.lists(any_event(), min_size=1, max_size=6))
    lines = encode_events(events).split(b"\n")[:-1]
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        type_name, _, body = lines[index].partition(b"\t")
        how = draw(st.sampled_from(["value", "drop", "add", "cut", "byte", "type", "nested"]))
        try:
            row = orjson.loads(body)
        except orjson.JSONDecodeError:  # damaged already
            continue
        if not isinstance(row, dict) or not row:
            continue
        if how == "value":
            row[draw(st.sampled_from(sorted(row)))] = draw(json_values)
        elif how == "drop":
            del row[draw(st.sampled_from(sorted(row)))]
        elif how == "add":
            row[draw(st.text(max_size=6))] = draw(json_values)
        elif how == "nested":  # inside a list-valued field (candidates, tool calls, ...)
            lists = [k for k, v in row.items() if isinstance(v, list) and v]
            if lists:
                key = draw(st.sampled_from(lists))
                item = draw(st.integers(0, len(row[key]) - 1))
                if isinstance(row[key][item], dict) and row[key][item]:
                    row[key][item][draw(st.sampled_from(sorted(row[key][item])))] = \
                        draw(json_values)
                else:
                    row[key][item] = draw(json_values)
        if how in ("value", "drop", "add", "nested"):
            # json, not orjson: integers beyond 64 bits too ("Infinity" then makes the line bad)
            lines[index] = type_name + b"\t" + json.dumps(row).encode()
        elif how == "cut":
            lines[index] = lines[index][:draw(st.integers(0, len(lines[index]) - 1))]
        elif how == "byte":
            at = draw(st.integers(0, len(lines[index]) - 1))
            lines[index] = lines[index][:at] + draw(st.binary(min_size=1, max_size=2)) \
                + lines[index][at + 1:]
        else:
            lines[index] = draw(st.sampled_from([*EVENT_TYPES, "Nope", ""])).encode() \
                + b"\t" + body
    return b"\n".join(lines) + b"\n"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(damaged())
def test_a_damaged_segment_gives_the_old_tables_or_none(data):
    tables = segment_tables(data)
    if tables is not None:
        assert_same(tables, old_tables(data))
