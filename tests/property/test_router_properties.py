"""Properties of the request path over random scripts of provider outcomes (no Ray, no sockets).

Whatever the providers do, every request ends in exactly one terminal event (``RequestCompleted``
or ``RequestFailed``) that matches what the caller saw, no budget reservation or rate-limit
reservation is left behind, the ledger's spend equals the cost the events report, and a stream
never shows the caller text from two models or text it then takes back.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management.errors import (
    AMMError,
    AuthenticationError,
    ContentPolicyViolation,
    ContextWindowExceeded,
    InvalidRequest,
    MalformedResponse,
    ModelNotFound,
    ProviderConnectionError,
    ProviderOverloaded,
    ProviderServerError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimited,
    StreamInterrupted,
    error_kind_of,
)
from api_model_management.events import (
    AttemptFailed,
    FailoverTriggered,
    RequestCompleted,
    RequestFailed,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _fakes import GOOD_PROMPT, Streamed, config_with, make_router, ok  # noqa: E402

pytestmark = pytest.mark.property

MODELS = ("gpt-4.1-mini", "gemini-2.5-flash", "claude-haiku-4-5", "qwen2.5")

ERRORS = {
    "timeout": lambda: ProviderTimeout("timed out"),
    "connection": lambda: ProviderConnectionError("reset"),
    "rate_limited": lambda: RateLimited("429", http_status=429, retry_after_s=0.5),
    "server_error": lambda: ProviderServerError("500", http_status=500),
    "overloaded": lambda: ProviderOverloaded("529", http_status=529),
    "malformed": lambda: MalformedResponse("bad body"),
    "auth": lambda: AuthenticationError("401", http_status=401),
    "quota": lambda: QuotaExceeded("quota", http_status=429),
    "model_not_found": lambda: ModelNotFound("404", http_status=404),
    "context_window": lambda: ContextWindowExceeded("too long", http_status=400),
    "invalid_request": lambda: InvalidRequest("400", http_status=400),
    "content_policy": lambda: ContentPolicyViolation("refused", http_status=400),
}
RESULTS = {
    "good": lambda: ok(input_tokens=120, output_tokens=40),
    "empty": lambda: ok("", output_tokens=0),
    "truncated": lambda: ok("A hash map stores", finish_reason="length", output_tokens=5),
    "cached": lambda: ok(input_tokens=10, cached_tokens=90, output_tokens=30),
}
STREAMS = {
    "cut_after_text": lambda: Streamed(("Hash maps ", "store"), ProviderServerError("500")),
    "no_final_after_text": lambda: Streamed(("Hash ",), None),
    "no_final_no_text": lambda: Streamed((), None),
    "error_before_text": lambda: Streamed((), ProviderConnectionError("reset")),
    "adapter_interrupted": lambda: Streamed(("Hash ",), StreamInterrupted("cut", partial_text="Hash ")),
}
FACTORIES = {**ERRORS, **RESULTS, **STREAMS}

outcome_names = st.sampled_from(sorted(FACTORIES))
scripts = st.dictionaries(st.sampled_from(MODELS), st.lists(outcome_names, max_size=3), max_size=4)


@st.composite
def scenarios(draw):
    return {
        "scripts": draw(scripts),
        "allowed": tuple(draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=4, unique=True))),
        "pinned": draw(st.booleans()),
        "reroute": draw(st.booleans()),
        "max_attempts": draw(st.integers(1, 5)),
        "temperature": draw(st.sampled_from([0, 0.7])),
        "tight_budget": draw(st.booleans()),
        "requests": draw(st.integers(1, 2)),
    }


def build(scenario):
    limits = [{"scope": "global", "limit_usd": "10"}]
    if scenario["tight_budget"]:  # gpt-4.1-mini's worst case never fits its own budget
        limits.append({"scope": "model", "key": "gpt-4.1-mini", "limit_usd": "0.0001"})
    config = config_with(
        failover={"max_attempts": scenario["max_attempts"]},
        quality={"reroute_on_low_quality": scenario["reroute"]},
        budgets={"enforcement": "strict", "limits": limits},
    )
    router, _, _, events = make_router(config)
    for model_id, names in scenario["scripts"].items():
        adapter = router.adapters[config.model(model_id).provider]
        adapter.script(model_id, *(FACTORIES[name]() for name in names))
    return router, events


def request_of(scenario, index: int) -> ModelRequest:
    allowed = scenario["allowed"]
    pinned = allowed[0] if scenario["pinned"] else None
    return ModelRequest(
        prompt=GOOD_PROMPT, request_id=f"r-{index}", model_id=pinned,
        constraints=SelectionConstraints(allowed_models=allowed),
        parameters={"temperature": scenario["temperature"]},
    )


async def run_complete(router, request):
    try:
        return await router.complete(request), None
    except AMMError as exc:
        return None, exc


async def run_stream(router, request):
    chunks = []
    try:
        async for chunk in router.stream(request):
            chunks.append(chunk)
    except AMMError as exc:
        return chunks, exc
    return chunks, None


def check_request(router, events, request, response, error):
    mine = [e for e in events.events if e.request_id == request.request_id]
    assert mine, "a request left no events"
    terminals = [e for e in mine if isinstance(e, RequestCompleted | RequestFailed)]
    assert len(terminals) == 1, [type(e).__name__ for e in mine]
    end = terminals[0]
    assert mine[-1] is end  # nothing of the request is recorded after its end
    if error is None:
        assert isinstance(end, RequestCompleted)
        assert end.model_id == response.model_id
        assert response.cost_usd is None or end.cost_usd == response.cost_usd
    else:
        assert isinstance(end, RequestFailed)
        assert end.error_kind == error_kind_of(error)
        assert GOOD_PROMPT not in str(error)
    if request.model_id is not None:
        assert {e.model_id for e in mine if e.model_id is not None} <= {request.model_id}
    allowed = set(request.constraints.allowed_models)
    assert {e.model_id for e in mine if e.model_id is not None} <= allowed
    failed_on = [e.model_id for e in mine if isinstance(e, AttemptFailed)]
    for move in (e for e in mine if isinstance(e, FailoverTriggered)):
        assert move.from_model_id in failed_on and move.to_model_id != move.from_model_id
    for e in mine:
        assert GOOD_PROMPT not in e.model_dump_json()
    return end


def check_router(router, terminals):
    assert router.ledger.reserved_usd() == 0
    assert all(limiter.status().pending_reservations == 0 for limiter in router.limiters.values())
    assert router.ledger.spend("global", "*", "day") == sum((t.cost_usd for t in terminals), Decimal(0))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_complete_ends_every_request_in_exactly_one_terminal_event(scenario):
    router, events = build(scenario)
    terminals = []
    for index in range(scenario["requests"]):
        request = request_of(scenario, index)
        response, error = asyncio.run(run_complete(router, request))
        terminals.append(check_request(router, events, request, response, error))
        if response is not None:
            assert response.request_id == request.request_id
    check_router(router, terminals)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_stream_ends_every_request_in_exactly_one_terminal_event(scenario):
    router, events = build(scenario)
    terminals = []
    for index in range(scenario["requests"]):
        request = request_of(scenario, index)
        chunks, error = asyncio.run(run_stream(router, request))
        deltas = [c for c in chunks if not c.done]
        text = "".join(c.delta for c in deltas)
        if error is None:
            final = chunks[-1]
            assert final.done and sum(c.done for c in chunks) == 1
            assert text == final.result.text
            assert {c.model_id for c in chunks} == {final.model_id}
            end = check_request(router, events, request, _Seen(final.model_id, None), None)
            assert end.streamed
        else:
            assert not any(c.done for c in chunks)
            if isinstance(error, StreamInterrupted):
                assert error.partial_text == text and text
                assert len({c.model_id for c in deltas}) == 1
            else:
                assert text == ""  # nothing shown, then a failure: nothing to take back
            end = check_request(router, events, request, None, error)
        terminals.append(end)
    check_router(router, terminals)


class _Seen:
    """What a stream's caller learned of the result (for ``check_request``)."""

    def __init__(self, model_id, cost_usd):
        self.model_id = model_id
        self.cost_usd = cost_usd
