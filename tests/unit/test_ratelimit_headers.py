"""Table tests of the rate-limit header and body parsers (protocols.md 1.6, 2.6, 3.6)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

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
    retry_after_from_headers,
    seconds_until,
    suggested_wait_s,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 1, 15, 14, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("12ms", 0.012),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("9ms", 0.009),
        ("0s", 0.0),
        ("0", 0.0),
        ("2m30.5s", 150.5),
        ("1h", 3600.0),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("7ns", 7e-9),
        (" 20s ", 20.0),
    ],
)
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "text", ["", "s", "1", "1x", "-1s", "1s garbage", "1.s", ".5s", "m1s", "1e3s", None, 12]
)
def test_go_duration_garbage_is_none(text):
    assert parse_go_duration(text) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.012, "12ms"), (1.0, "1s"), (360.0, "6m0s"), (3723.0, "1h2m3s"), (1.5, "1.5s")],
)
def test_format_go_duration_writes_openai_style(seconds, text):
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15T14:24:00Z", datetime(2025, 1, 15, 14, 24, tzinfo=UTC)),
        ("2025-01-15T15:24:00+01:00", datetime(2025, 1, 15, 14, 24, tzinfo=UTC)),
        ("2025-01-15T09:24:00-05:00", datetime(2025, 1, 15, 14, 24, tzinfo=UTC)),
        ("2025-01-15t14:24:00z", datetime(2025, 1, 15, 14, 24, tzinfo=UTC)),
        (
            "2025-01-15T14:24:00.123456789Z",
            datetime(2025, 1, 15, 14, 24, 0, 123456, tzinfo=UTC),
        ),
        ("2025-01-15T14:24:00.5+00:00", datetime(2025, 1, 15, 14, 24, 0, 500000, tzinfo=UTC)),
    ],
)
def test_rfc3339(text, expected):
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "2025-01-15", "2025-01-15T14:24:00", "2025-13-15T14:24:00Z", "yesterday", None, 5],
)
def test_rfc3339_garbage_is_none(text):
    assert parse_rfc3339(text) is None


def test_seconds_until_reset_and_past_reset_is_zero():
    assert seconds_until("2025-01-15T14:24:00Z", NOW) == 60.0
    assert seconds_until("2025-01-15T14:24:00+00:00", NOW) == 60.0
    assert seconds_until("2025-01-15T14:00:00Z", NOW) == 0.0
    assert seconds_until("soon", NOW) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20", 20.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Wed, 15 Jan 2025 14:23:30 GMT", 30.0),
        ("Wed, 15 Jan 2025 14:00:00 GMT", 0.0),  # already past
    ],
)
def test_retry_after(text, seconds):
    assert parse_retry_after(text, NOW) == seconds


@pytest.mark.parametrize(
    "text", ["", "-3", "soon", "1e400", "Wed, 99 Foo 2025", None, "inf", "nan"]
)
def test_retry_after_garbage_is_none(text):
    assert parse_retry_after(text, NOW) is None


def test_retry_after_ms_wins_over_retry_after():
    assert parse_retry_after_ms("10") == 0.01
    assert parse_retry_after_ms("1.5") == 0.0015
    assert parse_retry_after_ms("x") is None
    headers = httpx.Headers({"retry-after-ms": "250", "retry-after": "20"})
    assert retry_after_from_headers(headers, NOW) == 0.25
    assert retry_after_from_headers(httpx.Headers({"retry-after": "20"}), NOW) == 20.0
    assert (
        retry_after_from_headers(httpx.Headers({"retry-after-ms": "bad", "retry-after": "3"}), NOW)
        == 3.0
    )
    assert retry_after_from_headers(httpx.Headers({}), NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("38s", 38.0), ("1.5s", 1.5), ("0s", 0.0), ("38.804097346s", 38.804097346)],
)
def test_protobuf_duration(value, seconds):
    assert parse_protobuf_duration(value) == seconds


@pytest.mark.parametrize("value", ["38", "s", "-1s", "1m", 38, None, {"seconds": 3}])
def test_protobuf_duration_garbage_is_none(value):
    assert parse_protobuf_duration(value) is None


GEMINI_429 = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota. Please retry in 38.804097346s.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}],
            },
            {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"},
        ],
    }
}


def test_gemini_retry_delay_and_daily_quota():
    assert gemini_retry_delay_s(GEMINI_429) == 38.0
    assert not gemini_is_daily_quota(GEMINI_429)
    daily = {
        "error": {
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}],
                }
            ]
        }
    }
    assert gemini_is_daily_quota(daily)
    assert gemini_retry_delay_s(daily) is None


@pytest.mark.parametrize(
    "body",
    [None, [], "x", {"error": "x"}, {"error": {"details": "x"}}, {"error": {"details": [1, "a"]}}],
)
def test_gemini_body_garbage(body):
    assert gemini_retry_delay_s(body) is None
    assert gemini_is_daily_quota(body) is False


def test_openai_state_from_headers():
    headers = httpx.Headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    state = openai_rate_limit_state(headers, NOW)
    assert state is not None
    assert (state.limit_requests, state.remaining_requests, state.reset_requests_s) == (60, 59, 1.0)
    assert (state.limit_tokens, state.remaining_tokens, state.reset_tokens_s) == (
        150000,
        149984,
        360.0,
    )
    assert state.retry_after_s is None
    assert suggested_wait_s(state) is None


def test_openai_state_absent_or_garbage():
    assert openai_rate_limit_state(httpx.Headers({}), NOW) is None
    garbage = httpx.Headers({"x-ratelimit-limit-requests": "lots", "x-ratelimit-reset-tokens": "?"})
    assert openai_rate_limit_state(garbage, NOW) is None


def test_suggested_wait_uses_empty_bucket_reset():
    headers = httpx.Headers(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "12s",
            "x-ratelimit-remaining-tokens": "10",
            "x-ratelimit-reset-tokens": "1m0s",
        }
    )
    assert suggested_wait_s(openai_rate_limit_state(headers, NOW)) == 12.0
    with_retry = httpx.Headers({**headers, "retry-after": "3"})
    assert suggested_wait_s(openai_rate_limit_state(with_retry, NOW)) == 3.0
    assert suggested_wait_s(None) is None


def test_anthropic_state_from_headers():
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2025-01-15T14:23:01Z",
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "2025-01-15T15:23:30+01:00",
            "retry-after": "7",
        }
    )
    state = anthropic_rate_limit_state(headers, NOW)
    assert state is not None
    assert (state.limit_requests, state.remaining_requests, state.reset_requests_s) == (50, 49, 1.0)
    assert (state.limit_tokens, state.remaining_tokens, state.reset_tokens_s) == (
        40000,
        39000,
        30.0,
    )
    assert state.retry_after_s == 7.0


def test_anthropic_input_token_bucket_when_no_combined_bucket():
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-input-tokens-limit": "20000",
            "anthropic-ratelimit-input-tokens-remaining": "19000",
            "anthropic-ratelimit-input-tokens-reset": "2025-01-15T14:23:05Z",
        }
    )
    state = anthropic_rate_limit_state(headers, NOW)
    assert state is not None
    assert (state.limit_tokens, state.remaining_tokens, state.reset_tokens_s) == (20000, 19000, 5.0)
    assert anthropic_rate_limit_state(httpx.Headers({}), NOW) is None
