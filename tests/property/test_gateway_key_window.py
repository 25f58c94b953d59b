"""A virtual key's requests per minute (``gateway.KeyLimits.admit``, on the package's one
rate-limit core) against an independent model: a sliding window of 60 s."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_model_management._clock import ManualClock
from api_model_management.config import GatewayKey
from api_model_management.errors import RateLimitExceeded
from api_model_management.gateway import KeyLimits, key_hash

pytestmark = pytest.mark.property

WINDOW_S = 60.0


@settings(max_examples=80, deadline=None)
@given(rpm=st.integers(1, 6), share=st.sampled_from([1.0, 0.5, 0.25]),
       steps=st.lists(st.floats(0, 40, allow_nan=False), min_size=1, max_size=40))
def test_a_key_is_admitted_exactly_while_its_window_has_room(rpm: int, share: float,
                                                              steps: list[float]) -> None:
    clock = ManualClock()
    key = GatewayKey(name="k", key_sha256=key_hash("secret"), requests_per_minute=rpm)
    limits = KeyLimits([key], clock=clock, share=share)
    limit = max(1, int(rpm * share))
    admitted: list[float] = []  # the model: times of admitted requests
    for step in steps:
        clock.advance(step)
        now = clock.monotonic()
        in_window = [t for t in admitted if t > now - WINDOW_S]
        if len(in_window) < limit:
            limits.admit("k")
            admitted.append(now)
        else:
            with pytest.raises(RateLimitExceeded) as caught:
                limits.admit("k")
            assert caught.value.retry_after_s == pytest.approx(min(in_window) + WINDOW_S - now)
            assert caught.value.retry_after_s > 0
        status = limits.status()[0]
        assert status.requests_in_window == len([t for t in admitted if t > now - WINDOW_S])
        assert status.requests_per_minute == limit
