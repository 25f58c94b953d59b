"""Shared hypothesis strategies for events (import from here; do not redefine).

- :func:`any_event` / :func:`event_of` — any valid event of any type in ``EVENT_TYPES``, built from
  each type's explicit Arrow schema: odd unicode (no surrogates, which UTF-8 cannot hold), extreme
  decimals within ``decimal128(38, 12)``, None optionals, microsecond timestamps in several offsets
  and near UTC date boundaries, ±infinity (never NaN: NaN != NaN).
- :func:`small_event` — cheap events of three types over three days, for stateful tests.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
from hypothesis import strategies as st

from api_model_management.events import (
    EVENT_TYPES,
    AttemptFailed,
    CandidateScore,
    Event,
    HealthChecked,
    RequestCompleted,
)

# literals: arithmetic on Decimal (even unary minus) rounds to the context's 28 digits
MAX_MONEY = Decimal("99999999999999999999999999.999999999999")  # 26 + 12 digits
MIN_MONEY = Decimal("-99999999999999999999999999.999999999999")

TIMEZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11)),
             timezone(timedelta(hours=14))]

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
ids = st.uuids().map(str)
# built from an integer count of 1e-12 units, exactly (decimal contexts round at 28 digits)
money = st.one_of(
    st.sampled_from([MAX_MONEY, MIN_MONEY, Decimal("1e-12"), Decimal("-1e-12"), Decimal(0)]),
    st.integers(-(10**38 - 1), 10**38 - 1).map(lambda units: Decimal(f"{units}e-12")),
    st.integers(-(10**8), 10**8).map(lambda units: Decimal(f"{units}e-6")),
)
floats = st.floats(allow_nan=False, allow_infinity=True)

_naive = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 12, 30)),
    # the last and first microseconds of a day: the date partition must not slip
    st.builds(
        lambda day, sign: datetime(2026, 1, 1) + timedelta(days=day) + sign,
        st.integers(-400, 400),
        st.sampled_from([timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1)]),
    ),
)


@st.composite
def timestamps(draw) -> datetime:
    """A timezone-aware datetime, microsecond precision, in one of a few offsets."""
    tz = draw(st.sampled_from(TIMEZONES))
    return draw(_naive).replace(tzinfo=UTC).astimezone(tz)


candidates = st.builds(CandidateScore, model_id=text, score=floats, capability=floats, cost=floats,
                       performance=floats, availability=floats)


def _for_arrow(arrow_type: pa.DataType, name: str) -> st.SearchStrategy:
    if name == "event_id":
        return ids
    if pa.types.is_string(arrow_type):
        return text
    if pa.types.is_boolean(arrow_type):
        return st.booleans()
    if pa.types.is_integer(arrow_type):
        bits = arrow_type.bit_width - 1
        return st.integers(-(2**bits), 2**bits - 1)
    if pa.types.is_floating(arrow_type):
        return floats
    if pa.types.is_decimal(arrow_type):
        return money
    if pa.types.is_timestamp(arrow_type):
        return timestamps()
    if pa.types.is_list(arrow_type) and pa.types.is_string(arrow_type.value_type):
        return st.lists(text, max_size=4).map(tuple)
    if pa.types.is_list(arrow_type) and pa.types.is_struct(arrow_type.value_type):
        return st.lists(candidates, max_size=3).map(tuple)
    if pa.types.is_list(arrow_type) and pa.types.is_floating(arrow_type.value_type):
        return st.lists(floats, max_size=4).map(tuple)
    raise NotImplementedError(f"no strategy for {name}: {arrow_type}")


def _literal(annotation: object) -> st.SearchStrategy | None:
    if typing.get_origin(annotation) is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    return None


def event_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Any valid event of ``cls``, every field drawn from its Arrow type (or its Literal)."""
    kwargs = {}
    for field in cls.arrow_schema():
        if field.name in ("event_type", "schema_version"):
            continue
        annotation = cls.model_fields[field.name].annotation
        base = _literal(annotation)
        if base is None:
            base = _for_arrow(field.type, field.name)
        kwargs[field.name] = st.none() | base if field.nullable else base
    return st.builds(cls, **kwargs)


def any_event() -> st.SearchStrategy[Event]:
    return st.one_of([event_of(cls) for cls in EVENT_TYPES.values()])


_DAYS = [datetime(2026, 3, d, tzinfo=UTC) for d in (1, 2, 3)]
_small_at = st.builds(lambda day, us: day + timedelta(microseconds=us),
                      st.sampled_from(_DAYS), st.integers(0, 86_400 * 10**6 - 1))


def small_event() -> st.SearchStrategy[Event]:
    """Cheap events (three types, three days) for stateful append/compaction tests."""
    return st.one_of(
        st.builds(RequestCompleted, event_id=ids, occurred_at=_small_at,
                  latency_ms=st.floats(0, 1e4), cost_usd=money),
        st.builds(AttemptFailed, event_id=ids, occurred_at=_small_at, attempt=st.integers(1, 5),
                  error_kind=st.sampled_from(["timeout", "rate_limited"]), transient=st.booleans()),
        st.builds(HealthChecked, event_id=ids, occurred_at=_small_at, ok=st.booleans(),
                  latency_ms=st.floats(0, 1e3)),
    )


# ---- JSON Schemas (tool parameters, structured output)

_PROPERTY_NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000),
                          st.text("abcxyz -", max_size=6))


@st.composite
def _bounded_integer(draw) -> dict:
    schema: dict = {"type": "integer"}
    low = draw(st.none() | st.integers(-500, 500))
    high = draw(st.none() | st.integers(-500, 500))
    step = draw(st.none() | st.sampled_from([2, 3, 5]))
    if low is not None and high is not None and high < low + (step or 1) * 2:
        high = low + (step or 1) * 2
    exclusive = draw(st.booleans())
    if low is not None:
        schema["exclusiveMinimum" if exclusive else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if exclusive else "maximum"] = high
    if step is not None:
        schema["multipleOf"] = step
    return schema


@st.composite
def _bounded_number(draw) -> dict:
    schema: dict = {"type": "number"}
    low = draw(st.none() | st.integers(-500, 500))
    if low is not None:
        schema["minimum"] = low
        schema["maximum"] = low + draw(st.integers(2, 100))
    step = draw(st.none() | st.sampled_from([0.5, 0.25, 0.1]))
    if step is not None:
        schema["multipleOf"] = step
    return schema


@st.composite
def _bounded_string(draw) -> dict:
    schema: dict = {"type": "string"}
    low = draw(st.none() | st.integers(0, 12))
    if low is not None:
        schema["minLength"] = low
    if draw(st.booleans()):
        schema["maxLength"] = (low or 0) + draw(st.integers(0, 12))
    return schema


_scalar_schemas = st.one_of(
    _bounded_string(), _bounded_integer(), _bounded_number(),
    st.just({"type": "boolean"}), st.just({"type": "null"}),
    st.lists(_JSON_SCALARS, min_size=1, max_size=5, unique_by=lambda v: (type(v), v)).map(
        lambda values: {"enum": values}),
    st.sampled_from([{"type": ["string", "null"]}, {"type": ["integer", "string"]}]),
)


def _containers(children: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    @st.composite
    def array(draw) -> dict:
        schema: dict = {"type": "array", "items": draw(children)}
        low = draw(st.none() | st.integers(0, 3))
        if low is not None:
            schema["minItems"] = low
        if draw(st.booleans()):
            schema["maxItems"] = (low or 0) + draw(st.integers(0, 3))
        return schema

    return st.one_of(array(), object_schemas(children), children.map(
        lambda child: {"anyOf": [child, {"type": "null"}]}))


@st.composite
def object_schemas(draw, children: st.SearchStrategy[dict] | None = None) -> dict:
    """An object schema: typed properties, some required, maybe no additional properties."""
    children = children if children is not None else _scalar_schemas
    names = draw(st.lists(_PROPERTY_NAMES, min_size=0, max_size=5, unique=True))
    properties = {name: draw(children) for name in names}
    schema: dict = {"type": "object", "properties": properties}
    required = [name for name in names if draw(st.booleans())]
    if required:
        schema["required"] = required
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


@st.composite
def json_schemas(draw) -> dict:
    """A tool's parameters or a structured-output schema: an object whose properties are scalars
    (bounded, enums, type lists), arrays, nested objects and optional (anyOf null) values, up to
    three levels deep, sometimes through a ``$defs`` reference."""
    nested = st.recursive(_scalar_schemas, _containers, max_leaves=8)
    root = draw(object_schemas(nested))
    if draw(st.booleans()) and root["properties"]:
        name = sorted(root["properties"])[0]
        root["$defs"] = {"Shared": root["properties"][name]}
        root["properties"][name] = {"$ref": "#/$defs/Shared"}
    return root
