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
