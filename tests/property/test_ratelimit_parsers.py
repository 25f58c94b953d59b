"""Properties of the rate-limit parsers: formatting a duration and parsing it gives it back, and no
input makes a parser raise (garbage → None)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_model_management.ratelimit._headers import (
    anthropic_rate_limit_state,
    format_go_duration,
    gemini_is_daily_quota,
    gemini_retry_delay_s,
    openai_rate_limit_state,
    parse_go_duration,
    parse_protobuf_duration,
    parse_retry_after,
    parse_retry_after_ms,
    parse_rfc3339,
    seconds_until,
)

pytestmark = pytest.mark.property

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None)

whole_ms = st.integers(min_value=0, max_value=48 * 3600 * 1000)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))
junk = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789.hmsuµn:+-TZ ", max_size=30),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
)


@FAST
@given(whole_ms)
def test_go_duration_round_trip(ms):
    text = format_go_duration(ms / 1000)
    assert parse_go_duration(text) == pytest.approx(ms / 1000, abs=1e-9)


@FAST
@given(
    st.integers(0, 99),
    st.integers(0, 59),
    st.decimals(min_value=0, max_value=59, places=3, allow_nan=False),
)
def test_go_duration_components_sum(hours, minutes, seconds):
    text = f"{hours}h{minutes}m{seconds}s"
    expected = hours * 3600 + minutes * 60 + float(seconds)
    assert parse_go_duration(text) == pytest.approx(expected, abs=1e-6)


@FAST
@given(st.integers(0, 10 * 24 * 3600 * 10**6), offsets)
def test_rfc3339_round_trip_any_offset(micros, offset):
    reset = NOW + timedelta(microseconds=micros)
    text = reset.astimezone(timezone(offset)).isoformat()
    if offset == timedelta(0):
        text = text.replace("+00:00", "Z")
    assert parse_rfc3339(text) == reset
    assert seconds_until(text, NOW) == pytest.approx(micros / 10**6, abs=1e-6)


@FAST
@given(st.integers(1, 10**6))
def test_past_resets_are_zero(seconds):
    text = (NOW - timedelta(seconds=seconds)).isoformat()
    assert seconds_until(text, NOW) == 0.0


@FAST
@given(st.integers(0, 10**6))
def test_retry_after_seconds_and_http_date_round_trip(seconds):
    assert parse_retry_after(str(seconds), NOW) == seconds
    http_date = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert parse_retry_after(http_date, NOW) == seconds
    assert parse_retry_after_ms(str(seconds * 1000)) == seconds


@FAST
@given(st.decimals(min_value=0, max_value=86400, places=3, allow_nan=False))
def test_protobuf_duration_round_trip(seconds):
    assert parse_protobuf_duration(f"{seconds}s") == pytest.approx(float(seconds))
    body = {
        "error": {
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}
            ]
        }
    }
    assert gemini_retry_delay_s(body) == pytest.approx(float(seconds))


@FAST
@given(junk)
def test_parsers_never_raise_on_garbage(value):
    for result in (
        parse_go_duration(value),
        parse_rfc3339(value),
        seconds_until(value, NOW),
        parse_retry_after(value, NOW),
        parse_retry_after_ms(value),
        parse_protobuf_duration(value),
    ):
        assert result is None or (isinstance(result, float | datetime))
        if isinstance(result, float):
            assert result >= 0


header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
header_names = st.sampled_from(
    [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        "retry-after",
        "retry-after-ms",
    ]
)


@FAST
@given(st.dictionaries(header_names, header_values, max_size=9))
def test_header_states_never_raise(raw):
    headers = httpx.Headers(raw)
    for state in (openai_rate_limit_state(headers, NOW), anthropic_rate_limit_state(headers, NOW)):
        if state is not None:
            for value in state.model_dump().values():
                assert value is None or value >= 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["error", "details", "@type", "retryDelay", "violations", "quotaId", "x"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@FAST
@given(json_values)
def test_gemini_body_parsers_never_raise(body):
    delay = gemini_retry_delay_s(body)
    assert delay is None or delay >= 0
    assert gemini_is_daily_quota(body) in (True, False)
