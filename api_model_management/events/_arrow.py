"""Spool segments straight to Arrow: the EventSink's fast decoding path.

Decoding a segment through the event models (``orjson.loads``, pydantic validation, then the
models' values back into Arrow columns) cost the sink about two thirds of its CPU. Here each line
is only ``orjson.loads``-ed; rows of one type are transposed into columns, checked, and turned into
Arrow arrays against the type's own schema (``Event.arrow_schema``, what ``EventLog`` writes).

The guarantee: :func:`segment_tables` either returns exactly the tables ``events_to_table`` builds
from ``decode_events`` of the same bytes (same rows, order, values, (type, UTC date) groups), or
``None``, and the caller decodes that segment the old way (so a torn, corrupt or unusual line is
skipped and logged exactly as before). It accepts only the *canonical* form :func:`encode_events`
writes, for which pydantic's validation changes nothing but the Python type:

- every field present, no other key (``extra="forbid"``; a record of an older version with fewer
  fields goes the old way);
- each value of exactly the JSON type the encoder writes: ``str`` / ``int`` (never ``bool``) /
  ``float`` (never ``int``) / ``bool``, ``None`` only where the model allows it, a Literal's value
  one of its choices, lists for tuples (items as for a field), candidates as objects with exactly
  their fields, in the model's order;
- datetimes as ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`` (every model datetime is UTC);
- money (``Decimal`` with its digit limits): a plain decimal within ``decimal128(38, 12)`` as it
  is, any other string validated by pydantic itself (``Money``'s own annotation).

Arrow's conversion checks stay behind these (a bool for an int, an int32 overflow, a decimal that
does not fit raise, and the segment goes the old way).

A type whose model has a validator or a constraint not listed above never takes this path.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel, TypeAdapter

from ._types import EVENT_TYPES, Event

#: Field validators whose effect on canonical input is nil: ``occurred_at`` / ``window_start``
#: converted to UTC (canonical datetimes are UTC already), ``cleared`` None -> False (canonical is
#: a bool).
_NEUTRAL_VALIDATED = frozenset({"occurred_at", "window_start", "cleared"})

_UTC_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                      r"(?:\.[0-9]{6})?\+00:00\Z")

_PLAIN_MONEY = re.compile(r"-?[0-9]{1,26}(?:\.[0-9]{1,12})?\Z")
_DAY = itemgetter(slice(0, 10))
_NONE = type(None)
#: A column's values as Arrow takes them, or None when they are not canonical.
Convert = Callable[[Sequence[Any]], Sequence[Any] | None]


class _Unsupported(Exception):
    """A field this path does not handle: its type always decodes the old way."""


def _same(values: Sequence[Any]) -> Sequence[Any]:
    return values


def _of_types(allowed: frozenset[type], then: Convert = _same) -> Convert:
    def convert(values: Sequence[Any]) -> Sequence[Any] | None:
        if not set(map(type, values)) <= allowed:
            return None
        return then(values)
    return convert


def _utc_datetimes(values: Sequence[Any]) -> Sequence[Any] | None:
    if not all(map(_UTC_ISO.match, values)):
        return None
    return list(map(datetime.fromisoformat, values))  # ValueError on a day that does not exist


def _money(adapter: TypeAdapter[list[Decimal]]) -> Convert:
    """Decimal strings as the models take them. A plain one within ``decimal128(38, 12)``
    (at most 26 integer and 12 decimal digits, no exponent) is what ``Money`` accepts as it is:
    ``Decimal(s)``; any other (``1.5E-7``, ``0E-12``, too many digits, ``NaN``) is validated by
    pydantic itself, each distinct one once."""
    def convert(values: Sequence[Any]) -> Sequence[Any]:
        other = [v for v in dict.fromkeys(values) if not _PLAIN_MONEY.match(v)]
        if not other:
            return list(map(Decimal, values))
        decoded = dict(zip(other, adapter.validate_python(other), strict=True))
        return [decoded[v] if v in decoded else Decimal(v) for v in values]
    return convert


def _choices(allowed: frozenset[Any]) -> Convert:
    def convert(values: Sequence[Any]) -> Sequence[Any] | None:
        return values if set(values) <= allowed else None
    return convert


def _items(inner: frozenset[type]) -> Convert:
    def convert(values: Sequence[Any]) -> Sequence[Any] | None:
        lists = [v for v in values if v is not None]
        return values if set(map(type, chain.from_iterable(lists))) <= inner else None
    return convert


def _scalar_types(annotation: Any) -> frozenset[type]:
    if annotation in (str, int, bool):
        return frozenset({annotation})
    if annotation is float:
        return frozenset({float})
    raise _Unsupported(annotation)


def _models(model: type[BaseModel]) -> Convert:
    """Lists of objects with exactly ``model``'s fields, in its order, each of a plain scalar
    type (as ``model_dump`` writes them)."""
    if _has_validators(model):
        raise _Unsupported(model)
    names = tuple(model.model_fields)
    if len(names) < 2:
        raise _Unsupported(model)
    signature = []
    for name in names:
        info = model.model_fields[name]
        if info.metadata:
            raise _Unsupported(model)
        (only,) = _scalar_types(info.annotation)  # one type per field: a signature per object
        signature.append(only)
    wanted = {tuple(signature)}

    def convert(values: Sequence[Any]) -> Sequence[Any] | None:
        items = list(chain.from_iterable(values))
        if not items:
            return values
        if set(map(type, items)) != {dict} or set(map(tuple, items)) != {names}:
            return None
        if {tuple(map(type, fields)) for fields in map(dict.values, items)} != wanted:
            return None
        return values
    return convert


def _has_validators(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    return bool(decorators.model_validators or decorators.field_validators
                or decorators.validators or decorators.root_validators
                or decorators.field_serializers or decorators.model_serializers)


def _column(cls: type[Event], name: str) -> Convert:
    info = cls.model_fields[name]
    annotation = info.annotation
    nullable = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not _NONE]
        if len(args) != 1 or len(typing.get_args(annotation)) != 2:
            raise _Unsupported(annotation)
        annotation, nullable = args[0], True
    none = frozenset({_NONE}) if nullable else frozenset()
    if info.metadata:
        if annotation is not Decimal or nullable:
            raise _Unsupported(annotation)
        adapter = TypeAdapter(list[typing.Annotated[(Decimal, *info.metadata)]])
        return _of_types(frozenset({str}), _money(adapter))
    if annotation is datetime:
        if nullable:
            raise _Unsupported(annotation)
        return _of_types(frozenset({str}), _utc_datetimes)
    if typing.get_origin(annotation) is typing.Literal:
        choices = frozenset(typing.get_args(annotation))
        if not all(type(c) is str for c in choices):
            raise _Unsupported(annotation)
        allowed = choices | (frozenset({None}) if nullable else frozenset())
        return _of_types(frozenset({str}) | none, _choices(allowed))
    if typing.get_origin(annotation) is tuple:
        parts = typing.get_args(annotation)
        if len(parts) != 2 or parts[1] is not Ellipsis:
            raise _Unsupported(annotation)
        item = parts[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return _of_types(frozenset({list}) | none, _models(item))
        return _of_types(frozenset({list}) | none, _items(_scalar_types(item)))
    return _of_types(_scalar_types(annotation) | none)


class _Plan:
    """How one event type's rows become its table."""

    def __init__(self, cls: type[Event]) -> None:
        self.cls = cls
        self.schema = cls.arrow_schema()
        self.names = tuple(n for n in self.schema.names if n not in ("event_type", "schema_version"))
        if set(self.names) != set(cls.model_fields) or len(self.names) < 2:
            raise _Unsupported(cls)
        decorators = cls.__pydantic_decorators__
        validated = {f for d in decorators.field_validators.values() for f in d.info.fields}
        if (decorators.model_validators or decorators.validators or decorators.root_validators
                or not validated <= _NEUTRAL_VALIDATED):
            raise _Unsupported(cls)
        self.columns = [_column(cls, name) for name in self.names]
        self.get = itemgetter(*self.names)
        self.at = self.names.index("occurred_at")

    def tables(self, rows: list[dict[str, Any]], lines: list[int]
               ) -> list[tuple[int, str, pa.Table]] | None:
        """``(first line, UTC date, table)`` per date of ``rows``; None if a row is not canonical."""
        size = len(self.names)
        if any(len(row) != size for row in rows):
            return None
        columns = list(zip(*map(self.get, rows), strict=True))  # KeyError: a field missing
        converted = []
        for values, convert in zip(columns, self.columns, strict=True):
            out = convert(values)
            if out is None:
                return None
            converted.append(out)
        n = len(rows)
        arrays = []
        it = iter(converted)
        for field in self.schema:
            if field.name == "event_type":
                arrays.append(pa.array([self.cls.event_type] * n, field.type))
            elif field.name == "schema_version":
                arrays.append(pa.array([self.cls.schema_version] * n, field.type))
            else:
                arrays.append(pa.array(next(it), field.type))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        # the UTC date: canonical datetimes are UTC, written YYYY-MM-DD... (and they parsed)
        days = list(map(_DAY, columns[self.at]))
        if days.count(days[0]) == n:  # the usual segment: one day
            return [(lines[0], days[0], table)]
        by_date: dict[str, list[int]] = {}
        for index, day in enumerate(days):
            found = by_date.get(day)
            if found is None:
                by_date[day] = found = []
            found.append(index)
        return [(lines[indices[0]], day, table.take(pa.array(indices, pa.int64())))
                for day, indices in by_date.items()]


def _plans() -> dict[bytes, _Plan]:
    plans = {}
    for name, cls in EVENT_TYPES.items():
        try:
            plans[name.encode()] = _Plan(cls)
        except _Unsupported:
            continue
    return plans


_PLANS = _plans()

#: What a segment's events become: a table per (event type, UTC date), in the order
#: ``EventLog.append`` groups events (first appearance in the segment).
Tables = dict[tuple[type[Event], str], pa.Table]


def fast_types() -> list[str]:
    """The event types this path decodes (the others always go through the models)."""
    return sorted(plan.cls.event_type for plan in _PLANS.values())


def segment_tables(data: bytes) -> Tables | None:
    """A segment's events as the tables ``EventLog`` writes for them, or None if any line is not
    in canonical form (torn, corrupt, an unknown type, a field missing or extra, a value the
    models would convert or refuse): then decode it with ``decode_events`` instead. Logs nothing."""
    rows: dict[_Plan, list[dict[str, Any]]] = {}
    lines: dict[_Plan, list[int]] = {}
    loads = orjson.loads
    for number, line in enumerate(data.split(b"\n")):
        if not line:
            continue
        type_name, tab, body = line.partition(b"\t")
        plan = _PLANS.get(type_name)
        if plan is None or not tab:
            return None
        try:
            row = loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(row) is not dict:
            return None
        found = rows.get(plan)
        if found is None:
            rows[plan] = found = []
            lines[plan] = []
        found.append(row)
        lines[plan].append(number)
    groups: list[tuple[int, type[Event], str, pa.Table]] = []
    for plan, plan_rows in rows.items():
        try:
            tables = plan.tables(plan_rows, lines[plan])
        except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException):
            return None  # pydantic's ValidationError and Arrow's conversion errors included
        if tables is None:
            return None
        groups.extend((first, plan.cls, day, table) for first, day, table in tables)
    groups.sort(key=itemgetter(0))
    return {(cls, day): table for _, cls, day, table in groups}


__all__ = ["Tables", "fast_types", "segment_tables"]
