"""RouterCore, the request path of design §4, on the local cores with scripted fake providers.

No Ray, no sockets, no real waiting: time is a ManualClock that the recording sleep advances.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management.budget import BudgetTicket, LocalBudget
from api_model_management.budget._pricing import cost_usd, worst_case_cost_usd
from api_model_management.errors import (
    AllCandidatesFailed,
    AuthenticationError,
    BudgetExceeded,
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
    ResponseTooLarge,
    StreamInterrupted,
)
from api_model_management.events import (
    AttemptFailed,
    FailoverTriggered,
    FeedbackRecorded,
    ModelSelected,
    PerformanceAlert,
    QualityLow,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from api_model_management.ratelimit import LocalAdmission, RateTicket

from _fakes import (
    GOOD_ANSWER,
    GOOD_PROMPT,
    FakeAdapter,
    Streamed,
    config_with,
    make_router,
    names,
    of_type,
    ok,
)

pytestmark = pytest.mark.unit

MINI, GPT41, HAIKU, FLASH, SONNET = (
    "gpt-4.1-mini", "gpt-4.1", "claude-haiku-4-5", "gemini-2.5-flash", "claude-sonnet-4-5",
)


def req(*allowed: str, **fields) -> ModelRequest:
    """A good prompt, limited to ``allowed`` models when given."""
    if allowed:
        fields["constraints"] = SelectionConstraints(allowed_models=allowed)
    return ModelRequest(prompt=fields.pop("prompt", GOOD_PROMPT), **fields)


def of_request(events, request_id: str) -> list:
    return [e for e in events.events if e.request_id == request_id]


def terminal(events) -> list:
    return of_type(events, RequestCompleted, RequestFailed)


def cost_of(config, model_id: str, result) -> Decimal:
    return cost_usd(config.model(model_id), result.input_tokens, result.output_tokens, result.cached_tokens)


def scripted(router, model_id: str, *outcomes) -> FakeAdapter:
    adapter = router.adapters[router.config.model(model_id).provider]
    adapter.script(model_id, *outcomes)
    return adapter


# ---------------------------------------------------------------------------------------------
# the success path


def test_success_events_cost_and_no_prompt_text():
    router, _, sleep, events = make_router()
    result = ok(input_tokens=34, output_tokens=467, cached_tokens=9)  # within the usage bound
    adapter = scripted(router, MINI, result)
    response = asyncio.run(router.complete(req(MINI, agent_type="research", task_id="t-1")))

    expected = (Decimal(34) * Decimal("0.0004") + Decimal(9) * Decimal("0.0001")
                + Decimal(467) * Decimal("0.0016")) / 1000
    assert response.cost_usd == expected == Decimal("0.0007617")
    assert (response.model_id, response.provider, response.text) == (MINI, "openai", GOOD_ANSWER)
    assert response.attempts == 1 and not response.cache_hit
    assert names(events.events) == ["ModelSelected", "ResponseEvaluated", "RequestCompleted"]
    assert {e.request_id for e in events.events} == {response.request_id}
    assert {e.task_id for e in events.events} == {"t-1"}
    assert {e.agent_type for e in events.events} == {"research"}
    done = events.events[-1]
    assert done.cost_usd == expected and isinstance(done.cost_usd, Decimal)
    assert (done.input_tokens, done.output_tokens, done.cached_tokens) == (34, 467, 9)
    assert done.model_id == MINI and done.attempts == 1 and not done.streamed
    assert done.prompt_hash == req(MINI).prompt_hash()
    assert done.prompt_chars == len(GOOD_PROMPT) and done.response_chars == len(GOOD_ANSWER)
    assert done.prompt_text is None and done.response_text is None
    for event in events.events:
        dumped = event.model_dump_json()
        assert GOOD_PROMPT not in dumped and "hash map" not in dumped
    assert len(adapter.calls) == 1 and sleep.delays == []
    assert events.events[0].candidates[0].model_id == MINI


def test_store_prompts_keeps_the_text():
    router, _, _, events = make_router(config_with(store_prompts=True))
    asyncio.run(router.complete(req(MINI)))
    done = events.events[-1]
    assert done.prompt_text == GOOD_PROMPT and done.response_text == GOOD_ANSWER


def test_request_id_given_by_the_caller_is_kept():
    router, _, _, events = make_router()
    response = asyncio.run(router.complete(req(MINI, request_id="my-id")))
    assert response.request_id == "my-id"
    assert {e.request_id for e in events.events} == {"my-id"}


# ---------------------------------------------------------------------------------------------
# failover


TRANSIENT = [
    ProviderTimeout("timed out"),
    ProviderConnectionError("refused"),
    RateLimited("429", http_status=429, retry_after_s=2.0),
    ProviderServerError("500", http_status=500),
    ProviderOverloaded("529", http_status=529),
    MalformedResponse("bad body"),
    ResponseTooLarge("larger than max_response_bytes=8388608", limit_bytes=8388608),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: e.error_kind)
def test_transient_error_fails_over_to_the_next_model(error):
    router, _, sleep, events = make_router()
    openai = scripted(router, MINI, error)
    haiku_result = ok(input_tokens=10, output_tokens=20)
    anthropic = scripted(router, HAIKU, haiku_result)
    response = asyncio.run(router.complete(req(MINI, HAIKU)))

    assert response.model_id == HAIKU and response.attempts == 2
    assert names(events.events) == ["ModelSelected", "AttemptFailed", "FailoverTriggered",
                                    "ResponseEvaluated", "RequestCompleted"]
    failed, failover = events.events[1], events.events[2]
    assert (failed.model_id, failed.attempt, failed.error_kind, failed.transient) == (
        MINI, 1, error.error_kind, True)
    assert failed.http_status == error.http_status and failed.retry_after_s == error.retry_after_s
    assert (failover.from_model_id, failover.to_model_id, failover.reason) == (MINI, HAIKU, error.error_kind)
    assert failover.backoff_ms == pytest.approx(sleep.delays[0] * 1000)
    done = events.events[-1]
    assert done.model_id == HAIKU and done.attempts == 2
    # the failed call cost nothing: only the answer is paid for
    assert done.cost_usd == response.cost_usd == cost_of(router.config, HAIKU, haiku_result)
    assert [c.model_id for c in openai.calls] == [MINI] and [c.model_id for c in anthropic.calls] == [HAIKU]


def test_failover_stays_within_the_request_constraints():
    # gpt-4.1-mini's configured fallbacks (gemini-2.5-flash first) are not allowed here
    router, _, _, events = make_router()
    scripted(router, MINI, ProviderServerError("500", http_status=500))
    response = asyncio.run(router.complete(req(MINI, HAIKU)))
    assert response.model_id == HAIKU
    assert router.adapters["google"].calls == []
    assert [e.to_model_id for e in of_type(events.events, FailoverTriggered)] == [HAIKU]


def _five_failing(router, error_factory):
    order = [MINI, FLASH, HAIKU, GPT41, SONNET]
    for model_id in order[:-1]:
        scripted(router, model_id, error_factory())
    return order


@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_backoff_is_exponential_with_jitter_and_capped(jitter):
    config = config_with(failover={"max_attempts": 5, "backoff_base_s": 0.1, "backoff_cap_s": 0.3,
                                   "jitter": jitter})
    router, _, sleep, events = make_router(config)
    order = _five_failing(router, lambda: ProviderServerError("503", http_status=503))
    response = asyncio.run(router.complete(req(*order)))

    assert response.model_id == SONNET and response.attempts == 5
    moves = of_type(events.events, FailoverTriggered)
    assert [(m.from_model_id, m.to_model_id) for m in moves] == list(zip(order, order[1:], strict=False))
    assert len(sleep.delays) == 4
    for n, delay in enumerate(sleep.delays, start=1):
        ceiling = min(0.3, 0.1 * 2 ** (n - 1))
        assert ceiling * (1 - jitter) - 1e-12 <= delay <= ceiling + 1e-12
        assert moves[n - 1].backoff_ms == pytest.approx(delay * 1000)
    if jitter == 0.0:
        assert sleep.delays == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_backoff_jitter_actually_varies():
    config = config_with(failover={"max_attempts": 5, "backoff_base_s": 0.1, "backoff_cap_s": 10.0,
                                   "jitter": 1.0})
    router, _, sleep, _ = make_router(config)
    order = _five_failing(router, lambda: ProviderServerError("503", http_status=503))
    asyncio.run(router.complete(req(*order)))
    ratios = [d / (0.1 * 2 ** n) for n, d in enumerate(sleep.delays)]
    assert len(set(ratios)) == 4 and all(0 <= r <= 1 for r in ratios)


@pytest.mark.parametrize(("hint_s", "expected_s"), [(1.5, 1.5), (30.0, 2.0)])
def test_retry_hint_is_honoured_when_the_next_model_is_on_the_same_provider(hint_s, expected_s):
    router, _, sleep, _ = make_router()
    scripted(router, MINI, RateLimited("429", http_status=429, retry_after_s=hint_s))
    response = asyncio.run(router.complete(req(MINI, GPT41)))
    assert response.model_id == GPT41
    assert sleep.delays == [expected_s]  # capped by backoff_cap_s (2 s in the demo config)


def test_retry_hint_is_ignored_when_the_next_model_is_elsewhere():
    router, _, sleep, _ = make_router()
    scripted(router, MINI, RateLimited("429", http_status=429, retry_after_s=1.5))
    asyncio.run(router.complete(req(MINI, HAIKU)))
    assert len(sleep.delays) == 1 and 0.025 <= sleep.delays[0] <= 0.05


@pytest.mark.parametrize("error", [
    AuthenticationError("401", http_status=401),
    QuotaExceeded("insufficient quota", http_status=429),
    ModelNotFound("404", http_status=404),
], ids=lambda e: e.error_kind)
def test_auth_quota_and_missing_model_fail_over(error):
    router, _, _, events = make_router()
    scripted(router, MINI, error)
    response = asyncio.run(router.complete(req(MINI, HAIKU)))
    assert response.model_id == HAIKU
    failed = of_type(events.events, AttemptFailed)
    assert [(f.error_kind, f.transient) for f in failed] == [(error.error_kind, False)]
    assert len(of_type(events.events, FailoverTriggered)) == 1


def test_context_window_exceeded_moves_to_a_larger_window():
    router, _, _, events = make_router()
    ollama = scripted(router, "qwen2.5", ContextWindowExceeded("too long", http_status=400))
    response = asyncio.run(router.complete(req("qwen2.5", "mistral", "gpt-4o-mini")))
    # mistral is next in the ranking but its window (32768) is no larger than qwen2.5's
    assert response.model_id == "gpt-4o-mini"
    assert [c.model_id for c in ollama.calls] == ["qwen2.5"]
    assert [e.to_model_id for e in of_type(events.events, FailoverTriggered)] == ["gpt-4o-mini"]


def test_context_window_exceeded_with_no_larger_model_fails():
    router, _, _, events = make_router()
    scripted(router, "qwen2.5", ContextWindowExceeded("too long", http_status=400))
    with pytest.raises(AllCandidatesFailed) as info:
        asyncio.run(router.complete(req("qwen2.5", "mistral")))
    assert info.value.errors == ["context_window"]
    assert [c.model_id for c in router.adapters["ollama"].calls] == ["qwen2.5"]
    assert [e.error_kind for e in terminal(events.events)] == ["all_candidates_failed"]


@pytest.mark.parametrize("error", [
    InvalidRequest("400", http_status=400),
    ContentPolicyViolation("refused", http_status=400),
], ids=lambda e: e.error_kind)
def test_request_errors_are_raised_at_once(error):
    router, _, sleep, events = make_router()
    scripted(router, MINI, error)
    with pytest.raises(type(error)):
        asyncio.run(router.complete(req(MINI, HAIKU)))
    assert names(events.events) == ["ModelSelected", "AttemptFailed", "RequestFailed"]
    failed = events.events[-1]
    assert failed.error_kind == error.error_kind and failed.models_tried == (MINI,)
    assert failed.attempts == 1 and failed.cost_usd == 0
    assert router.adapters["anthropic"].calls == [] and sleep.delays == []


def test_max_attempts_stops_failover():
    config = config_with(failover={"max_attempts": 2})
    router, _, _, events = make_router(config)
    order = _five_failing(router, lambda: ProviderTimeout("slow"))
    with pytest.raises(AllCandidatesFailed) as info:
        asyncio.run(router.complete(req(*order)))
    assert info.value.errors == ["timeout", "timeout"]
    assert info.value.models_tried == [MINI, FLASH]
    failed = terminal(events.events)
    assert len(failed) == 1 and isinstance(failed[0], RequestFailed)
    assert failed[0].models_tried == (MINI, FLASH) and failed[0].attempts == 2
    assert failed[0].error_kind == "all_candidates_failed"
    assert sum(len(a.calls) for a in router.adapters.values()) == 2


def test_deadline_stops_failover():
    config = config_with(failover={"backoff_base_s": 1.0, "backoff_cap_s": 10.0, "jitter": 0.5})
    router, clock, sleep, events = make_router(config)
    order = _five_failing(router, lambda: ProviderServerError("502", http_status=502))
    start = clock.monotonic()
    with pytest.raises(AllCandidatesFailed) as info:
        asyncio.run(router.complete(req(*order, timeout_s=1.2)))
    # attempt 1 backs off at most 1 s (fits in 1.2 s); attempt 2 would need at least 1 s more
    assert info.value.errors == ["server_error", "server_error"]
    assert len(sleep.delays) == 1 and clock.monotonic() - start <= 1.2
    assert len(terminal(events.events)) == 1


def test_a_pinned_model_is_never_swapped():
    router, _, sleep, events = make_router()
    scripted(router, MINI, ProviderTimeout("slow"))
    with pytest.raises(AllCandidatesFailed) as info:
        asyncio.run(router.complete(req(model_id=MINI)))
    assert info.value.models_tried == [MINI]
    assert sum(len(a.calls) for a in router.adapters.values()) == 1
    assert of_type(events.events, FailoverTriggered) == [] and sleep.delays == []
    assert names(events.events) == ["ModelSelected", "AttemptFailed", "RequestFailed"]


# ---------------------------------------------------------------------------------------------
# streaming


async def collect(router, request):
    chunks = []
    async for chunk in router.stream(request):
        chunks.append(chunk)
    return chunks


def test_stream_success():
    router, _, _, events = make_router()
    chunks = asyncio.run(collect(router, req(MINI)))
    deltas, final = chunks[:-1], chunks[-1]
    assert "".join(c.delta for c in deltas) == GOOD_ANSWER and not any(c.done for c in deltas)
    assert final.done and final.result.text == GOOD_ANSWER and final.model_id == MINI
    assert names(events.events) == ["ModelSelected", "ResponseEvaluated", "RequestCompleted"]
    done = events.events[-1]
    assert done.streamed and done.model_id == MINI
    assert done.cost_usd == cost_of(router.config, MINI, final.result)


@pytest.mark.parametrize("failure", [
    ProviderConnectionError("reset"),
    ProviderOverloaded("529", http_status=529),
    Streamed((), ProviderServerError("500", http_status=500)),
    Streamed((), None),  # the stream ended with no text and no final chunk
    ResponseTooLarge("the first delta passed max_response_bytes", limit_bytes=1024),
], ids=["connection", "overloaded", "error-before-text", "empty-no-final", "too-large"])
def test_stream_failure_before_the_first_token_fails_over_invisibly(failure):
    router, _, _, events = make_router()
    scripted(router, MINI, failure)
    other = "Another good answer about hash maps: buckets, keys, hashing and constant time lookups."
    scripted(router, HAIKU, ok(other))
    chunks = asyncio.run(collect(router, req(MINI, HAIKU)))
    assert "".join(c.delta for c in chunks) == other
    assert {c.model_id for c in chunks} == {HAIKU}
    assert chunks[-1].done and chunks[-1].result.text == other
    done = terminal(events.events)
    assert len(done) == 1 and isinstance(done[0], RequestCompleted)
    assert done[0].streamed and done[0].model_id == HAIKU and done[0].attempts == 2
    assert len(of_type(events.events, FailoverTriggered)) == 1


@pytest.mark.parametrize("then", [ProviderServerError("500", http_status=500),
                                  StreamInterrupted("cut", partial_text="Hash maps store"), None],
                         ids=["provider-error", "adapter-interrupted", "no-final-chunk"])
def test_stream_failure_after_tokens_is_interrupted_with_the_partial_text(then):
    router, _, _, events = make_router()
    scripted(router, MINI, Streamed(("Hash maps ", "store"), then))
    received: list[str] = []

    async def consume():
        async for chunk in router.stream(req(MINI, HAIKU)):
            received.append(chunk.delta)

    with pytest.raises(StreamInterrupted) as info:
        asyncio.run(consume())
    assert received == ["Hash maps ", "store"]  # never duplicated, never followed by other text
    assert info.value.partial_text == "Hash maps store"
    assert GOOD_PROMPT not in str(info.value)
    assert router.adapters["anthropic"].calls == []
    done = terminal(events.events)
    assert len(done) == 1 and isinstance(done[0], RequestFailed)
    assert done[0].error_kind == "stream_interrupted" and done[0].models_tried == (MINI,)
    assert of_type(events.events, FailoverTriggered) == []
    assert router.ledger.reserved_usd() == 0


# ---------------------------------------------------------------------------------------------
# cache


def test_temperature_zero_is_served_from_the_cache_the_second_time():
    router, _, _, events = make_router()
    request = req(MINI, parameters={"temperature": 0})
    first = asyncio.run(router.complete(request))
    second = asyncio.run(router.complete(request))
    assert len(router.adapters["openai"].calls) == 1
    assert second.cache_hit and second.cost_usd == 0 and second.text == first.text
    assert second.request_id != first.request_id
    hit = terminal(events.events)[-1]
    assert hit.cache_hit and hit.cost_usd == 0 and hit.saved_cost_usd == first.cost_usd > 0
    assert hit.request_id == second.request_id and hit.attempts == 0
    assert hit.prompt_text is None
    assert [type(e).__name__ for e in of_request(events, second.request_id)] == ["RequestCompleted"]


def test_warm_temperature_is_not_cached():
    router, _, _, events = make_router()
    request = req(MINI, parameters={"temperature": 0.7})
    asyncio.run(router.complete(request))
    second = asyncio.run(router.complete(request))
    assert len(router.adapters["openai"].calls) == 2 and not second.cache_hit
    assert not any(e.cache_hit for e in terminal(events.events))


def test_cacheable_opt_in_caches_a_warm_request():
    router, _, _, _ = make_router()
    request = req(MINI, parameters={"temperature": 0.7}, cacheable=True)
    asyncio.run(router.complete(request))
    assert asyncio.run(router.complete(request)).cache_hit
    assert len(router.adapters["openai"].calls) == 1


def test_failed_requests_are_not_cached():
    router, _, _, _ = make_router()
    scripted(router, MINI, InvalidRequest("400", http_status=400))
    request = req(MINI, parameters={"temperature": 0})
    with pytest.raises(InvalidRequest):
        asyncio.run(router.complete(request))
    assert not asyncio.run(router.complete(request)).cache_hit


def test_a_cached_answer_from_a_model_the_request_does_not_allow_is_a_miss():
    router, _, _, _ = make_router()
    asyncio.run(router.complete(req(MINI, parameters={"temperature": 0})))
    assert asyncio.run(router.complete(req(MINI, GPT41, parameters={"temperature": 0}))).cache_hit
    no_openai = ModelRequest(prompt=GOOD_PROMPT, parameters={"temperature": 0},
                             constraints=SelectionConstraints(excluded_providers=("openai",)))
    response = asyncio.run(router.complete(no_openai))
    assert not response.cache_hit and response.provider != "openai"


def test_a_low_quality_answer_is_not_cached():
    router, _, _, _ = make_router()
    scripted(router, MINI, ok(""))
    request = req(MINI, parameters={"temperature": 0})
    assert asyncio.run(router.complete(request)).text == ""
    second = asyncio.run(router.complete(request))
    assert not second.cache_hit and second.text == GOOD_ANSWER


# ---------------------------------------------------------------------------------------------
# budgets and rate limits


def _budget(limit_usd: str, **extra):
    return config_with(budgets={"enforcement": "strict",
                                "limits": [{"scope": "global", "limit_usd": limit_usd}], **extra})


def test_strict_budget_refuses_a_worst_case_that_does_not_fit():
    router, _, _, events = make_router(_budget("0.001"))
    with pytest.raises(BudgetExceeded):
        asyncio.run(router.complete(req(model_id=GPT41, max_tokens=512)))
    assert router.adapters["openai"].calls == []
    assert [e.error_kind for e in terminal(events.events)] == ["budget_exceeded"]
    assert router.ledger.reserved_usd() == 0


def test_budget_refusal_fails_over_to_a_model_that_fits():
    config = config_with(budgets={"enforcement": "strict", "limits": [
        {"scope": "global", "limit_usd": "1"}, {"scope": "model", "key": MINI, "limit_usd": "0.0001"}]})
    router, _, sleep, events = make_router(config)
    response = asyncio.run(router.complete(req(MINI, GPT41, max_tokens=512)))
    assert response.model_id == GPT41  # gpt-4.1-mini ranks first but its own budget is too small
    assert router.adapters["openai"].calls_to(MINI) == []
    failed = of_type(events.events, AttemptFailed)
    assert [(f.model_id, f.error_kind) for f in failed] == [(MINI, "budget_exceeded")]
    assert router.ledger.reserved_usd() == 0
    assert of_type(events.events, FailoverTriggered)[0].backoff_ms == 0 and sleep.delays == []


def test_cost_is_settled_and_no_reservation_leaks_after_success():
    router, _, _, _ = make_router(_budget("1"))
    response = asyncio.run(router.complete(req(MINI)))
    assert router.ledger.spend("global", "*", "day") == response.cost_usd > 0
    assert router.ledger.reserved_usd() == 0


def test_absurd_reported_usage_is_charged_within_the_bound_and_alerted():
    """A provider reporting 5M output tokens against max_tokens=100: charged at most the worst
    case reserved, the counts logged as reported, an alert, and the ledger equal to the log."""
    router, _, _, events = make_router(_budget("1"))
    scripted(router, MINI, ok(input_tokens=12, output_tokens=5_000_000))
    request = req(MINI, max_tokens=100)
    response = asyncio.run(router.complete(request))

    model = router.config.model(MINI)
    done = terminal(events.events)[0]
    assert (done.input_tokens, done.output_tokens) == (12, 5_000_000)  # as reported
    assert done.cost_usd == response.cost_usd == cost_usd(model, 12, 100)
    assert done.cost_usd <= worst_case_cost_usd(model, request.input_token_bound(), 100)
    assert router.ledger.spend("global", "*", "day") == done.cost_usd
    assert router.ledger.reserved_usd() == 0
    assert router.limiters[MINI].status().tokens_used == 12 + 100  # the bounded count
    alerts = of_type(events.events, PerformanceAlert)
    assert [(a.kind, a.metric, a.value, a.threshold, a.model_id) for a in alerts] == [
        ("usage_anomaly", "output_tokens", 5_000_000.0, 100.0, MINI)]
    assert GOOD_PROMPT not in alerts[0].model_dump_json()


def test_reported_input_above_the_byte_bound_is_an_anomaly_in_a_stream_too():
    router, _, _, events = make_router(_budget("1"))
    request = req(MINI)
    scripted(router, MINI, ok(input_tokens=10 * request.input_token_bound(), output_tokens=20))

    async def drain() -> None:
        async for _ in router.stream(request):
            pass

    asyncio.run(drain())
    done = terminal(events.events)[0]
    assert done.cost_usd == cost_usd(router.config.model(MINI), request.input_token_bound(), 20)
    assert router.ledger.spend("global", "*", "day") == done.cost_usd
    alerts = of_type(events.events, PerformanceAlert)
    assert [(a.metric, a.threshold) for a in alerts] == [("input_tokens", request.input_token_bound())]


def test_usage_within_the_bound_is_charged_exactly_its_price():
    router, _, _, events = make_router(_budget("1"))
    scripted(router, MINI, ok(input_tokens=12, cached_tokens=3, output_tokens=50))
    response = asyncio.run(router.complete(req(MINI)))
    expected = cost_usd(router.config.model(MINI), 12, 50, 3)
    assert response.cost_usd == terminal(events.events)[0].cost_usd == expected
    assert router.ledger.spend("global", "*", "day") == expected
    assert of_type(events.events, PerformanceAlert) == []


def test_no_reservation_leaks_after_failures():
    router, _, _, _ = make_router(_budget("1"))
    order = _five_failing(router, lambda: ProviderTimeout("slow"))
    scripted(router, SONNET, ProviderServerError("500", http_status=500))
    with pytest.raises(AllCandidatesFailed):
        asyncio.run(router.complete(req(*order)))
    assert router.ledger.reserved_usd() == 0
    assert router.ledger.spend("global", "*", "day") == 0
    for limiter in router.limiters.values():
        assert limiter.status().pending_reservations == 0


def _exhaust_rpm(router, model_id: str) -> None:
    limiter = router.limiters[model_id]
    while True:
        decision = limiter.reserve(1)
        if not decision.granted:
            return
        limiter.commit(decision.reservation_id, 1)


def test_a_model_out_of_rpm_is_skipped():
    router, _, sleep, events = make_router()
    _exhaust_rpm(router, "gpt-4o-mini")
    response = asyncio.run(router.complete(req("gpt-4o-mini", MINI)))
    assert response.model_id == MINI
    assert [c.model_id for c in router.adapters["openai"].calls] == [MINI]
    failed = of_type(events.events, AttemptFailed)
    assert [(f.model_id, f.error_kind) for f in failed] == [("gpt-4o-mini", "rate_limit_exceeded")]
    assert failed[0].retry_after_s is not None and failed[0].retry_after_s > 0
    assert sleep.delays == []  # nothing was sent: no backoff


def test_a_provider_429_cools_the_model_down():
    router, clock, _, events = make_router()
    scripted(router, MINI, RateLimited("429", http_status=429, retry_after_s=20.0))
    assert asyncio.run(router.complete(req(MINI, HAIKU))).model_id == HAIKU
    status = router.limiters[MINI].status()
    assert status.cooling_until_monotonic is not None
    assert status.cooling_until_monotonic >= clock.monotonic() + 19
    calls_before = len(router.adapters["openai"].calls)
    with pytest.raises(AllCandidatesFailed) as info:
        asyncio.run(router.complete(req(model_id=MINI)))
    assert info.value.errors == ["rate_limit_exceeded"]
    assert len(router.adapters["openai"].calls) == calls_before  # not sent while cooling
    clock.advance(21)
    assert asyncio.run(router.complete(req(model_id=MINI))).model_id == MINI


# ---------------------------------------------------------------------------------------------
# concurrency limits


def _limited_router(**failover):
    config = config_with(concurrency={"per_model": {MINI: 1}}, failover=failover or {})
    router, clock, sleep, events = make_router(config)
    router.adapters["openai"].hold = asyncio.Event()
    return router, events


def test_a_second_request_waits_for_the_model_slot():
    router, _ = _limited_router()
    openai = router.adapters["openai"]

    async def scenario():
        first = asyncio.create_task(router.complete(req(model_id=MINI)))
        second = asyncio.create_task(router.complete(req(model_id=MINI)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert openai.in_flight == 1 and len(openai.calls) == 1
        assert not first.done() and not second.done()
        openai.hold.set()
        return await asyncio.gather(first, second)

    responses = asyncio.run(scenario())
    assert [r.model_id for r in responses] == [MINI, MINI]
    assert openai.max_in_flight == 1 and len(openai.calls) == 2


def test_a_short_deadline_gives_concurrency_timeout_then_fails_over():
    router, events = _limited_router(backoff_base_s=0.001, backoff_cap_s=0.001)
    openai = router.adapters["openai"]

    async def scenario():
        first = asyncio.create_task(router.complete(req(model_id=MINI)))
        for _ in range(5):
            await asyncio.sleep(0)
        second = await router.complete(req(MINI, HAIKU, timeout_s=0.05))
        assert not first.done()
        openai.hold.set()
        return await first, second

    first, second = asyncio.run(scenario())
    assert (first.model_id, second.model_id) == (MINI, HAIKU)
    failed = of_request(events, second.request_id)
    assert [(e.model_id, e.error_kind) for e in of_type(failed, AttemptFailed)] == [(MINI, "concurrency_limit")]
    assert [e.to_model_id for e in of_type(failed, FailoverTriggered)] == [HAIKU]
    assert openai.max_in_flight == 1
    assert router.ledger.reserved_usd() == 0
    assert router.limiters[MINI].status().pending_reservations == 0


# ---------------------------------------------------------------------------------------------
# quality


def test_low_quality_reroutes_once_to_a_stronger_model():
    router, _, _, events = make_router(config_with(quality={"reroute_on_low_quality": True}))
    weak = ok("", output_tokens=0)
    scripted(router, MINI, weak)
    strong = ok(input_tokens=30, output_tokens=60)
    scripted(router, GPT41, strong)
    response = asyncio.run(router.complete(req(MINI, GPT41)))

    assert response.model_id == GPT41 and response.text == GOOD_ANSWER and response.attempts == 2
    low = of_type(events.events, QualityLow)
    assert [(q.model_id, q.rerouted_to) for q in low] == [(MINI, GPT41)]
    assert low[0].quality_score < low[0].threshold
    evaluated = of_type(events.events, ResponseEvaluated)
    assert [(e.model_id, e.low_quality) for e in evaluated] == [(MINI, True), (GPT41, False)]
    done = terminal(events.events)
    assert len(done) == 1 and done[0].model_id == GPT41
    assert done[0].cost_usd == cost_of(router.config, MINI, weak) + cost_of(router.config, GPT41, strong)
    assert router.config.model(GPT41).quality_prior > router.config.model(MINI).quality_prior


def test_a_large_answer_is_scored_in_a_worker_thread_on_a_prefix():
    router, _, _, events = make_router()
    text = (GOOD_ANSWER + " ") * 2000  # about 350 KB: scored off the loop, on a prefix
    scripted(router, MINI, ok(text, output_tokens=100))
    response = asyncio.run(router.complete(req(MINI)))
    evaluated = of_type(events.events, ResponseEvaluated)[0]
    assert response.text == text and f"of {len(text)} characters" in evaluated.explanation
    assert evaluated.quality_score == response.quality_score


def test_low_quality_reroutes_at_most_once():
    router, _, _, events = make_router(config_with(quality={"reroute_on_low_quality": True}))
    scripted(router, MINI, ok(""))
    scripted(router, GPT41, ok(""))
    response = asyncio.run(router.complete(req(MINI, GPT41, SONNET)))
    assert response.model_id == GPT41
    assert sum(len(a.calls) for a in router.adapters.values()) == 2
    assert [q.rerouted_to for q in of_type(events.events, QualityLow)] == [GPT41, None]


def test_low_quality_answer_is_kept_when_the_reroute_fails():
    router, _, _, events = make_router(config_with(quality={"reroute_on_low_quality": True}))
    scripted(router, MINI, ok(""))
    scripted(router, GPT41, ProviderTimeout("slow"))
    response = asyncio.run(router.complete(req(MINI, GPT41)))
    assert response.model_id == MINI and response.text == ""
    done = terminal(events.events)
    assert len(done) == 1 and isinstance(done[0], RequestCompleted) and done[0].model_id == MINI


def test_low_quality_without_reroute_is_reported_and_returned():
    router, _, _, events = make_router()
    scripted(router, MINI, ok("", finish_reason="length", output_tokens=0))
    response = asyncio.run(router.complete(req(MINI, GPT41)))
    assert response.model_id == MINI and response.finish_reason == "length"
    low = of_type(events.events, QualityLow)
    assert len(low) == 1 and low[0].rerouted_to is None
    assert len(router.adapters["openai"].calls) == 1


def test_judge_mode_records_feedback():
    config = config_with(quality={"judge": {"enabled": True, "model_id": MINI, "sample_rate": 1.0}})
    router, _, _, events = make_router(config)
    scripted(router, MINI, ok("Score: 8/10"))

    async def scenario():
        response = await router.complete(req(model_id=HAIKU))
        await asyncio.gather(*list(router._background))
        return response

    response = asyncio.run(scenario())
    judge_call = router.adapters["openai"].calls_to(MINI)
    assert len(judge_call) == 1
    assert judge_call[0].request.agent_type == "judge" and GOOD_ANSWER in judge_call[0].request.prompt_text()
    feedback = of_type(events.events, FeedbackRecorded)
    assert len(feedback) == 1
    fb = feedback[0]
    assert (fb.request_id, fb.model_id, fb.source, fb.judge_model_id) == (response.request_id, HAIKU, "judge", MINI)
    assert fb.score == pytest.approx(0.8)
    done = terminal(events.events)
    assert sorted(e.agent_type for e in done) == ["default", "judge"]
    assert GOOD_PROMPT not in fb.model_dump_json()


# ---------------------------------------------------------------------------------------------
# alerts


def test_excessive_failovers_raise_one_alert_per_window():
    config = config_with(failover={"alert_threshold": 3, "alert_window_s": 60.0})
    router, clock, _, events = make_router(config)

    def one_failover():
        scripted(router, MINI, ProviderServerError("500", http_status=500))
        asyncio.run(router.complete(req(MINI, HAIKU)))

    for _ in range(2):
        one_failover()
    assert of_type(events.events, PerformanceAlert) == []
    for _ in range(5):
        one_failover()
    alerts = of_type(events.events, PerformanceAlert)
    assert len(alerts) == 1
    assert alerts[0].kind == "excessive_failover" and alerts[0].value >= 3 and alerts[0].threshold == 3
    clock.advance(61)
    for _ in range(3):
        one_failover()
    assert len(of_type(events.events, PerformanceAlert)) == 2


def test_every_event_is_written_before_complete_returns():
    router, _, _, events = make_router()
    scripted(router, MINI, ProviderTimeout("slow"))
    response = asyncio.run(router.complete(req(MINI, HAIKU)))
    kinds = [type(e) for e in of_request(events, response.request_id)]
    assert kinds[0] is ModelSelected and kinds[-1] is RequestCompleted



def test_a_request_waiting_for_its_model_does_not_block_other_models():
    # one slot for gpt-4.1-mini, two for the provider: a second gpt-4.1-mini request must wait
    # without holding a provider slot, so that gpt-4.1 still gets the other one
    config = config_with(concurrency={"per_model": {MINI: 1}, "per_provider": {"openai": 2}})
    router, _, _, _ = make_router(config)
    openai = router.adapters["openai"]
    openai.hold = asyncio.Event()

    async def scenario():
        first = asyncio.create_task(router.complete(req(model_id=MINI)))
        waiting = asyncio.create_task(router.complete(req(model_id=MINI)))
        other = asyncio.create_task(router.complete(req(model_id=GPT41)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert [c.model_id for c in openai.calls] == [MINI, GPT41]
        openai.hold.set()
        return await asyncio.gather(first, waiting, other)

    assert [r.model_id for r in asyncio.run(scenario())] == [MINI, MINI, GPT41]
    assert openai.max_in_flight == 2


# -- admission: the fast path (taken at once) and the round-trip path, in every combination ----


class _FastAdmission(LocalAdmission):
    """Takes at once when ``fast`` (as a Ray router does from a lease), else needs ``acquire``."""

    def __init__(self, limiters, fast: bool) -> None:
        super().__init__(limiters)
        self.fast, self.slow_calls = fast, 0

    def try_acquire(self, model_id, tokens):
        if not self.fast:
            return None
        decision = self.limiters[model_id].reserve(tokens)
        return RateTicket(model_id, tokens, decision.reservation_id) if decision.granted else None

    async def acquire(self, model_id, tokens):
        self.slow_calls += 1
        return await super().acquire(model_id, tokens)


class _FastBudget(LocalBudget):
    def __init__(self, ledger, fast: bool) -> None:
        super().__init__(ledger)
        self.fast, self.slow_calls = fast, 0

    def try_reserve(self, key, amount_usd, request_id=None):
        if not self.fast:
            return None
        try:
            return BudgetTicket(key, amount_usd, self.ledger.reserve(key, amount_usd), request_id)
        except BudgetExceeded:
            return None

    async def reserve(self, key, amount_usd, request_id):
        self.slow_calls += 1
        return await super().reserve(key, amount_usd, request_id)


@pytest.mark.parametrize("rate_fast", [True, False])
@pytest.mark.parametrize("budget_fast", [True, False])
def test_admission_fast_and_slow_paths_settle_everything_they_take(rate_fast, budget_fast):
    router, _, _, _ = make_router(_budget("0.01"))
    router.admission = _FastAdmission(router.limiters, rate_fast)
    router.budget = _FastBudget(router.ledger, budget_fast)
    response = asyncio.run(router.complete(req(MINI)))
    assert response.model_id == MINI
    with pytest.raises(BudgetExceeded):  # its worst case does not fit: whatever was taken goes back
        asyncio.run(router.complete(req(model_id=GPT41, max_tokens=4096)))
    assert router.ledger.reserved_usd() == 0
    assert router.ledger.spend("global", "*", "day") == response.cost_usd
    assert all(lim.status().pending_reservations == 0 for lim in router.limiters.values())
    if rate_fast and budget_fast:  # the success needed no round trip at all
        assert router.admission.slow_calls == 0 and router.budget.slow_calls == 1  # the refusal's
    if not rate_fast:
        assert router.admission.slow_calls == 2


class _Waits:
    """Ports whose round trip (``acquire`` / ``reserve``) waits until the test lets it go."""

    immediate = False

    def __init__(self, *args, blocked: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.blocked = blocked

    async def _wait(self) -> None:
        await asyncio.sleep(0)  # a round trip: never answered within the caller's turn
        if self.blocked:
            await asyncio.Event().wait()


class _WaitingAdmission(_Waits, _FastAdmission):
    async def acquire(self, model_id, tokens):
        await self._wait()
        return await super().acquire(model_id, tokens)


class _WaitingBudget(_Waits, _FastBudget):
    async def reserve(self, key, amount_usd, request_id):
        await self._wait()
        return await super().reserve(key, amount_usd, request_id)


@pytest.mark.parametrize(("rate_fast", "rate_blocked", "budget_fast", "budget_blocked"), [
    (False, True, True, False),  # the budget taken at once, the caller gives up waiting for rate
    (True, False, False, True),  # the rate taken at once, the caller gives up waiting for budget
    (False, False, False, True),  # both sent together: the rate ticket came, the budget did not
    (False, True, False, False),  # both sent together: the budget ticket came, the rate did not
])
def test_a_caller_that_gives_up_during_admission_leaves_no_hold(rate_fast, rate_blocked,
                                                                budget_fast, budget_blocked):
    """A request cancelled while admission waits for a round trip (a lease, a slice) gives back
    what it had already taken: it used to keep a budget hold (a slice's in-flight amount, so the
    slice never went back) or a rate-limit reservation for good."""
    router, _, _, _ = make_router(_budget("1"))
    router.admission = _WaitingAdmission(router.limiters, rate_fast, blocked=rate_blocked)
    router.budget = _WaitingBudget(router.ledger, budget_fast, blocked=budget_blocked)

    async def give_up() -> None:
        call = asyncio.create_task(router.complete(req(MINI)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not call.done()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(give_up())
    assert router.ledger.reserved_usd() == 0
    assert all(lim.status().pending_reservations == 0 for lim in router.limiters.values())
    assert router.adapters["openai"].calls == []
