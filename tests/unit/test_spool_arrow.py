"""The EventSink's fast decoding (issue 15): a segment straight to Arrow (``_arrow.py``) writes the
same log as decoding it through the event models, and a segment it does not take (a torn or
corrupt line, a value the models would convert or refuse) goes the old way, line for line."""

from __future__ import annotations

import json
import logging
import typing
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest
from pydantic import field_validator

from api_model_management.config import EventSettings
from api_model_management.errors import InvalidInput
from api_model_management.events import (
    EVENT_TYPES,
    CandidateScore,
    Event,
    EventLog,
    HealthChanged,
    ModelSelected,
    RequestCompleted,
)
from api_model_management.events._arrow import _Plan, _Unsupported, fast_types, segment_tables
from api_model_management.events._ingest import SpoolIngestor
from api_model_management.events._log import events_to_table
from api_model_management.events._spool import SpoolWriter, decode_events, encode_events

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)


def old_tables(data: bytes) -> dict:
    """The tables the sink wrote before: the models' events grouped as ``EventLog.append`` does."""
    groups = EventLog._group(None, decode_events(data))  # type: ignore[arg-type]  # self unused
    return {key: events_to_table(group, key[0]) for key, group in groups.items()}


def same_tables(tables: dict, expected: dict) -> bool:
    return list(tables) == list(expected) and all(
        t.schema.equals(expected[k].schema, check_metadata=True) and t.equals(expected[k])
        for k, t in tables.items())


def _value(cls: type[Event], field: pa.Field, filled: bool) -> Any:
    """A valid value of every field (optionals None unless ``filled``)."""
    annotation = cls.model_fields[field.name].annotation
    if field.nullable and not filled and type(None) in typing.get_args(annotation):
        return None
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)[-1]
    kind = field.type
    if field.name == "event_id":
        return "0195f000-0000-7000-8000-00000000000a"
    if pa.types.is_string(kind):
        return "é\t\"x\""
    if pa.types.is_boolean(kind):
        return True
    if pa.types.is_integer(kind):
        return 7
    if pa.types.is_floating(kind):
        return 0.25
    if pa.types.is_decimal(kind):
        return D("1.5E-7")
    if pa.types.is_timestamp(kind):
        return AT
    if pa.types.is_struct(kind.value_type):
        return (CandidateScore(model_id="m", score=0.5, capability=1.0, cost=0.0,
                               performance=0.25, availability=1.0),)
    if pa.types.is_string(kind.value_type):
        return ("a", "b")
    return (0.5, -1.0)


def sample(cls: type[Event], filled: bool) -> Event:
    return cls(**{f.name: _value(cls, f, filled) for f in cls.arrow_schema()
                  if f.name not in ("event_type", "schema_version")})


SAMPLES = [sample(cls, filled) for cls in EVENT_TYPES.values() for filled in (False, True)]
HEALTH = sample(HealthChanged, True)

#: JSON values a damaged or foreign line could hold where a field is: what the models convert
#: (5 for a float, "5" for an int, 1 for a bool, "Z" datetimes), refuse, or take as they are.
WRONG = [None, True, False, 0, 1, 5, -1, 2**31, 2**63, 2**64 + 1, 1.0, 5.0, 1.5, -0.0, 1e300,
         "", "x", "5", "1.5", "true", "healthy", "degraded", "rpm", "tpm", "day", "user", "global",
         "approaching", "0E-20", "1E-13", "1.0000000000000", "1" * 27, "NaN", "Infinity",
         "\u0663", "1_000", "+1", " 1", "-0", "0.1234567890123", "1" * 26 + ".5", "1e2",
         "2026-03-01T0\u0669:00:00+00:00",
         "2026-03-01T09:00:00Z", "2026-03-01T09:00:00+05:30", "2026-03-01",
         "2026-02-30T09:00:00+00:00", "2026-03-01T24:00:00+00:00", "2026-03-01T09:00:00.5+00:00",
         "2026-03-01T09:00:00.000001+00:00", [], ["a"], [1], [1.5], [None], [True], [[]], {},
         [{"model_id": "m", "score": 1, "capability": 1.0, "cost": 0.0, "performance": 0.0,
           "availability": 1.0}]]


def line(event: Event, **changes: Any) -> bytes:
    row = json.loads(encode_events([event]).split(b"\t", 1)[1])
    row.update(changes)
    return event.event_type.encode() + b"\t" + json.dumps(row).encode() + b"\n"


def variants() -> list[bytes]:
    out = []
    for event in SAMPLES:
        base = json.loads(encode_events([event]).split(b"\t", 1)[1])
        for key in base:
            out.extend(line(event, **{key: wrong}) for wrong in WRONG)
            dropped = {k: v for k, v in base.items() if k != key}
            out.append(event.event_type.encode() + b"\t" + json.dumps(dropped).encode() + b"\n")
            for i, item in enumerate(base[key] if isinstance(base[key], list) else []):
                for wrong in WRONG:
                    items = list(base[key])
                    if isinstance(item, dict):  # a candidate: each of its fields wrong in turn
                        for name in item:
                            items[i] = {**item, name: wrong}
                            out.append(line(event, **{key: items}))
                        items[i] = {k: v for k, v in item.items() if k != "score"}
                        out.append(line(event, **{key: items}))
                    else:
                        items[i] = wrong
                        out.append(line(event, **{key: items}))
        out.append(line(event, extra=1))
    return out


def test_every_event_type_takes_the_fast_path():
    assert fast_types() == sorted(EVENT_TYPES)


def test_valid_events_of_every_type_give_the_models_tables():
    data = encode_events(SAMPLES)
    tables = segment_tables(data)
    assert tables is not None
    assert same_tables(tables, old_tables(data))
    assert sum(t.num_rows for t in tables.values()) == len(SAMPLES)


def test_every_changed_value_gives_the_models_tables_or_goes_the_old_way():
    """Each field of each type, in turn, set to each of ``WRONG`` (or dropped; an extra field;
    each field of a candidate): what the fast path takes is exactly what the models give."""
    taken = refused = 0
    good = encode_events(SAMPLES[1:2])
    for damaged in variants():
        data = damaged + good
        tables = segment_tables(data)
        if tables is None:
            refused += 1
            continue
        taken += 1
        assert same_tables(tables, old_tables(data)), damaged
    assert taken > 500 and refused > 5000  # both sides were exercised


@pytest.mark.parametrize("damaged", [
    pytest.param(line(HEALTH, from_state="bogus"), id="unknown-literal"),
    pytest.param(line(sample(RequestCompleted, True), latency_ms=5), id="int-for-float"),
    pytest.param(line(sample(RequestCompleted, True), cache_hit=1), id="int-for-bool"),
    pytest.param(line(sample(RequestCompleted, True), input_tokens=5.0), id="float-for-int"),
    pytest.param(line(sample(RequestCompleted, True), input_tokens=True), id="bool-for-int"),
    pytest.param(line(sample(RequestCompleted, True), cost_usd="1E-13"), id="13-decimal-places"),
    pytest.param(line(sample(RequestCompleted, True), occurred_at="2026-03-01T09:00:00+05:30"),
                 id="another-offset"),
    pytest.param(line(sample(RequestCompleted, True), extra=1), id="extra-field"),
])
def test_a_value_the_models_would_convert_or_refuse_is_not_taken(damaged):
    assert segment_tables(encode_events(SAMPLES) + damaged) is None


@pytest.mark.parametrize("cut", [5, 20, 100, -2])
def test_a_torn_line_is_not_taken(cut):
    data = encode_events(SAMPLES)
    torn = encode_events([SAMPLES[3]])[:cut]
    assert segment_tables(data + torn) is None
    assert segment_tables(data + torn + b"\n" + data) is None


def test_blank_lines_are_skipped_and_an_empty_segment_is_no_table():
    assert segment_tables(b"") == {}
    assert segment_tables(b"\n\n") == {}
    data = encode_events(SAMPLES[:4])
    tables = segment_tables(b"\n" + data.replace(b"\n", b"\n\n"))
    assert tables is not None and same_tables(tables, old_tables(data))


def test_groups_follow_the_first_appearance_of_type_and_utc_date():
    later = AT + timedelta(microseconds=1)  # the next UTC day
    events = [HealthChanged(from_state="healthy", to_state="degraded", occurred_at=later),
              sample(RequestCompleted, True),
              HealthChanged(from_state="degraded", to_state="healthy", occurred_at=AT),
              sample(RequestCompleted, False).model_copy(update={"occurred_at": later}),
              HealthChanged(from_state="healthy", to_state="unknown", occurred_at=later)]
    data = encode_events(events)
    tables = segment_tables(data)
    assert tables is not None
    assert [(cls.event_type, day) for cls, day in tables] == [
        ("HealthChanged", "2026-03-02"), ("RequestCompleted", "2026-03-01"),
        ("HealthChanged", "2026-03-01"), ("RequestCompleted", "2026-03-02")]
    assert tables[(HealthChanged, "2026-03-02")].column("to_state").to_pylist() == \
        ["degraded", "unknown"]
    assert same_tables(tables, old_tables(data))


def test_a_type_with_a_validator_of_its_own_is_never_taken():
    class Checked(HealthChanged):
        event_type: ClassVar[str] = "Checked"

        @field_validator("reason")
        @classmethod
        def _trimmed(cls, value: str) -> str:
            return value.strip()

    with pytest.raises(_Unsupported):
        _Plan(Checked)
    assert isinstance(_Plan(ModelSelected), _Plan)


# -- the log: append_tables, and the sink ---------------------------------------------------------

def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_append_tables_writes_the_files_append_writes_byte_for_byte(tmp_path):
    data = encode_events(SAMPLES * 3)
    tables = segment_tables(data)
    assert tables is not None
    EventLog(tmp_path / "old", fsync="never").append(decode_events(data), file_stem="s-1")
    EventLog(tmp_path / "new", fsync="never").append_tables(tables, file_stem="s-1")
    old, new = files(tmp_path / "old"), files(tmp_path / "new")
    assert len(old) == len(tables) and old == new


def test_append_tables_refuses_a_table_of_another_schema(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    table = events_to_table([HEALTH], HealthChanged)
    with pytest.raises(InvalidInput):
        log.append_tables({(RequestCompleted, "2026-03-01"): table})
    assert log.append_tables({}) == []
    assert log.append_tables({(HealthChanged, "2026-03-01"): table.slice(0, 0)}) == []
    assert files(tmp_path) == {}


def spool(tmp_path: Path, *chunks: bytes) -> None:
    writer = SpoolWriter(tmp_path, "w-1", fsync="never")
    for chunk in chunks:
        writer.write_bytes(chunk)
        writer.rotate()
    writer.close()


def ingest(root: Path, chunks: list[bytes], fast: bool, caplog) -> tuple[int, dict, list[str]]:
    spool(root, *chunks)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="api_model_management.events._spool"):
        count = SpoolIngestor(root, EventSettings(fsync="never"), fast_decode=fast).ingest()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # named after their segment, less its creation time (which differs between the two runs)
    written = {name.replace(name.rsplit("/", 1)[1].split("-")[0], "<ns>"): content
               for name, content in files(root / "events").items()}
    return count, written, warnings


def test_a_segment_with_a_corrupt_line_is_ingested_as_before(tmp_path, caplog):
    good = encode_events(SAMPLES)
    corrupt = good + encode_events([SAMPLES[5]])[:40] + b"\n" + line(HEALTH, from_state="?") \
        + encode_events(SAMPLES[1:3])
    chunks = [good, corrupt, encode_events(SAMPLES[4:9])]
    old = ingest(tmp_path / "old", chunks, False, caplog)
    new = ingest(tmp_path / "new", chunks, True, caplog)
    assert new == old
    count, written, warnings = new
    assert count == 2 * len(SAMPLES) + 2 + 5  # the torn and the refused lines skipped
    assert len(warnings) == 2 and all("skipped a torn or unreadable record" in w for w in warnings)
    assert not (tmp_path / "new" / "spool" / "w-1").exists()  # every segment ingested, removed


def test_the_sink_reads_back_every_event_it_took_the_fast_way(tmp_path, caplog):
    count, _, warnings = ingest(tmp_path, [encode_events(SAMPLES)], True, caplog)
    assert count == len(SAMPLES) and warnings == []
    back = EventLog(tmp_path).read()
    key = lambda e: (e.event_type, e.event_id, str(e.model_dump()))  # noqa: E731
    assert sorted(back, key=key) == sorted(SAMPLES, key=key)
