"""Invariant of a pinned model with fallbacks (``ModelRequest.use_fallbacks``): whatever each
call does, the models called are a prefix of the pin and then its configured fallbacks (never
another model), each failover is announced naming the next of them, and a success comes from
the last model called."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_model_management import ModelRequest
from api_model_management.config import config_from_dict, demo_config
from api_model_management.errors import AMMError, ProviderServerError, ProviderTimeout, RateLimited
from api_model_management.events import FailoverTriggered, RequestCompleted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _fakes import GOOD_PROMPT, make_router, ok  # noqa: E402

pytestmark = pytest.mark.property

PIN = "gpt-4.1-mini"
OTHERS = ("gemini-2.5-flash", "claude-haiku-4-5", "gpt-4.1", "claude-sonnet-4-5")
OUTCOMES = {
    "good": ok,
    "timeout": lambda: ProviderTimeout("timed out"),
    "server_error": lambda: ProviderServerError("500", http_status=500),
    "rate_limited": lambda: RateLimited("429", http_status=429, retry_after_s=0.1),
}


@settings(max_examples=60, deadline=None)
@given(fallbacks=st.lists(st.sampled_from(OTHERS), unique=True, max_size=3),
       outcomes=st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=4, max_size=4))
def test_only_the_pin_and_its_fallbacks_are_called_in_order(fallbacks: list[str],
                                                            outcomes: list[str]) -> None:
    data = demo_config().model_dump(mode="python")
    for model in data["models"]:
        if model["id"] == PIN:
            model["fallbacks"] = fallbacks
    config = config_from_dict(data, source="test")
    router, _, _, events = make_router(config)
    chain = [PIN, *fallbacks]
    for model_id, outcome in zip(chain, outcomes, strict=False):
        router.adapters[config.model(model_id).provider].script(model_id, OUTCOMES[outcome]())
    request = ModelRequest(prompt=GOOD_PROMPT, model_id=PIN, use_fallbacks=True)
    try:
        response = asyncio.run(router.complete(request))
    except AMMError:
        response = None
    called = [c.model_id for a in router.adapters.values() for c in a.calls if c.kind != "probe"]
    order = sorted(called, key=chain.index)
    assert order == chain[:len(called)] and sorted(called) == sorted(set(called))
    hops = [(e.from_model_id, e.to_model_id) for e in events.events
            if isinstance(e, FailoverTriggered)]
    assert hops == list(zip(order, order[1:], strict=False))
    if response is not None:
        assert response.model_id == order[-1]
        assert [e.model_id for e in events.events if isinstance(e, RequestCompleted)] == [order[-1]]
        assert outcomes[len(order) - 1] == "good"
