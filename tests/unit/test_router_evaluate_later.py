"""RouterCore's ``later`` port: the evaluation of a prose answer nothing waits on follows the
answer (its terminal event is written first); an answer whose evaluation can change what is
answered (schema checks, re-routing on low quality) is still evaluated before it. Local immediate
admission and budget ports are awaited one after the other, without tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from api_model_management import ModelRequest, SelectionConstraints, ToolCall
from api_model_management.events import QualityLow, RequestCompleted, ResponseEvaluated

from _fakes import GOOD_PROMPT, config_with, make_router, names, of_type, ok

pytestmark = pytest.mark.unit

MINI = "gpt-4.1-mini"


def req(**fields) -> ModelRequest:
    return ModelRequest(prompt=GOOD_PROMPT, constraints=SelectionConstraints(allowed_models=(MINI,)),
                        **fields)


def deferring(router) -> list[Callable[[], None]]:
    jobs: list[Callable[[], None]] = []
    router.later = jobs.append
    return jobs


def test_a_prose_answer_is_answered_and_its_terminal_event_written_before_its_evaluation():
    inline, _, _, inline_events = make_router()
    inline_response = asyncio.run(inline.complete(req()))
    router, _, _, events = make_router()
    jobs = deferring(router)
    outcomes: list[tuple] = []
    router.outcomes = type("Recorded", (), {"outcome": lambda self, *a: outcomes.append(a)})()

    response = asyncio.run(router.complete(req()))
    assert outcomes == []  # the call's outcome goes with its quality, once evaluated

    assert names(events.events) == ["ModelSelected", "RequestCompleted"]
    assert response.quality_score is None and response.text == inline_response.text
    assert len(jobs) == 1
    jobs.pop()()
    assert names(events.events) == ["ModelSelected", "RequestCompleted", "ResponseEvaluated"]
    later, before = of_type(events.events, ResponseEvaluated)[0], of_type(
        inline_events.events, ResponseEvaluated)[0]
    assert later.request_id == response.request_id
    assert (later.quality_score, later.explanation) == (before.quality_score, before.explanation)
    done, inline_done = of_type(events.events, RequestCompleted)[0], of_type(
        inline_events.events, RequestCompleted)[0]
    assert done.cost_usd == inline_done.cost_usd and done.structured_valid is None
    assert len(outcomes) == 1 and outcomes[0][:4] == ("openai", MINI, True, None)
    assert outcomes[0][5] == later.quality_score


def test_a_low_quality_prose_answer_logs_quality_low_later_and_is_not_cached():
    router, _, _, events = make_router()
    jobs = deferring(router)
    adapter = router.adapters["openai"]
    adapter.script(MINI, ok(""))
    request = req(parameters={"temperature": 0})
    assert asyncio.run(router.complete(request)).text == ""
    assert not of_type(events.events, QualityLow)
    jobs.pop()()
    low = of_type(events.events, QualityLow)
    assert len(low) == 1 and low[0].rerouted_to is None
    second = asyncio.run(router.complete(request))  # the empty answer was not cached
    assert not second.cache_hit and len(adapter.calls) == 2


def test_a_good_deterministic_answer_is_cached_once_evaluated():
    router, _, _, _ = make_router()
    jobs = deferring(router)
    request = req(parameters={"temperature": 0})
    asyncio.run(router.complete(request))
    assert not asyncio.run(router.complete(request)).cache_hit  # not evaluated yet: not cached
    for job in list(jobs):
        job()
    assert asyncio.run(router.complete(request)).cache_hit


def test_a_stream_ends_before_its_evaluation():
    router, _, _, events = make_router()
    jobs = deferring(router)

    async def collect() -> list:
        return [chunk async for chunk in router.stream(req())]

    chunks = asyncio.run(collect())
    assert chunks[-1].done and names(events.events) == ["ModelSelected", "RequestCompleted"]
    jobs.pop()()
    assert names(events.events)[-1] == "ResponseEvaluated"


def test_answers_whose_evaluation_decides_are_evaluated_before_the_answer():
    # re-routing on low quality: the score decides which answer is given
    router, _, _, events = make_router(config_with(quality={"reroute_on_low_quality": True}))
    jobs = deferring(router)
    response = asyncio.run(router.complete(req()))
    assert not jobs and response.quality_score is not None
    assert names(events.events) == ["ModelSelected", "ResponseEvaluated", "RequestCompleted"]
    # tool calls: their schemas are checked (an invalid one fails over)
    router, _, _, events = make_router()
    jobs = deferring(router)
    call = ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    router.adapters["openai"].script(MINI, ok("", finish_reason="tool_calls", tool_calls=(call,)))
    tools = ModelRequest(prompt="Weather in Paris?", cacheable=False,
                         tools=[{"name": "get_weather", "parameters": {"type": "object"}}],
                         constraints=SelectionConstraints(allowed_models=(MINI,)))
    response = asyncio.run(router.complete(tools))
    assert not jobs and response.quality_score is not None
    assert of_type(events.events, RequestCompleted)[0].tool_calls_valid is True


def test_immediate_local_ports_are_awaited_in_turn_without_tasks(monkeypatch):
    router, _, _, _ = make_router(config_with(budgets={
        "enforcement": "strict", "limits": [{"scope": "global", "limit_usd": "100"}]}))
    assert router.admission.immediate and router.budget.immediate

    def no_gather(*args, **kwargs):
        for arg in args:
            arg.close()
        raise AssertionError("gather used for immediate ports")

    monkeypatch.setattr(asyncio, "gather", no_gather)  # the module the router calls it from
    response = asyncio.run(router.complete(req()))
    assert router.ledger.spend("global", "*", "day") == response.cost_usd > 0
    assert router.ledger.reserved_usd() == 0
    # a refused budget gives the rate ticket back, as with gather
    router, _, _, _ = make_router(config_with(budgets={
        "enforcement": "strict", "limits": [{"scope": "global", "limit_usd": "0.000001"}]}))
    with pytest.raises(Exception):  # noqa: B017 - BudgetExceeded, or all candidates failed
        asyncio.run(router.complete(req()))
    for limiter in router.limiters.values():
        assert limiter.status().pending_reservations == 0
