"""The Router core: the request path of design §4, without Ray.

cache → select → admission (rate limit ∥ budget) → provider call → evaluate → settle → events.
Every request ends in exactly one terminal event (``RequestCompleted`` or ``RequestFailed``), every
failed attempt in ``AttemptFailed``, every move to another model in ``FailoverTriggered``. An answer
whose tool calls or structured output fail their schema (``evaluation.check_output``) is, with
``settings.quality.fail_over_on_invalid_output``, a failed attempt (``invalid_output``, after its
``ResponseEvaluated``; paid for, not cached) and the next candidate is tried. The
events of a request are written to the spool (durable against process death) before ``complete``
returns or raises; when the spool cannot take them they wait in memory (``events._resilient``)
and the request is answered all the same, while new requests are refused (``SpoolUnavailable``)
before any provider call. With an ``acks`` port (``settings.events.ack="shipped"``,
``events._shipper``) a request is answered, or its error raised, only once its events are in the
shared log as well: a lost node then loses none of the requests it answered.

With a ``later`` port (the HTTP gateway's standalone engine) the heuristic evaluation of a prose
answer that nothing waits on (no re-route on low quality, or a stream; no schema to check) runs
after the answer is given: the request's events, terminal one included, are written first, and
its ``ResponseEvaluated`` (with any ``QualityLow`` and quality alert), the call's outcome with its
quality, the cache entry and the judge's sampling follow once ``later``'s owner runs the work
(the response then carries ``quality_score`` None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import orjson

from .._clock import SYSTEM_CLOCK, Clock
from .._request import ModelRequest, ModelResponse, ProviderResult, StreamChunk, ToolCall
from ..alerts import DegradationCore
from ..budget import (
    BudgetPort,
    BudgetTicket,
    SpendKey,
    UsageBound,
    UsageOverrun,
    settle_usage,
    usage_bound,
    worst_case_cost_usd,
)
from ..cache import CachePort
from ..config import ModelConfig, RegistryConfig
from ..errors import (
    AllCandidatesFailed,
    BudgetExceeded,
    ComponentUnavailable,
    ConcurrencyLimitTimeout,
    ContextWindowExceeded,
    EventsNotShipped,
    InvalidOutput,
    MalformedResponse,
    NoEligibleModel,
    ProviderError,
    RateLimited,
    RateLimitExceeded,
    SpoolUnavailable,
    StreamInterrupted,
    error_kind_of,
)
from ..evaluation import Evaluation, ResponseEvaluator, check_output
from ..evaluation._evaluator import INLINE_MAX_CHARS
from ..events import (
    AttemptFailed,
    AttemptStarted,
    CandidateScore,
    Event,
    FailoverTriggered,
    FeedbackRecorded,
    ModelSelected,
    PerformanceAlert,
    QualityLow,
    RequestCompleted,
    RequestFailed,
    uuid7,
)
from ..ratelimit import AdmissionPort, RateTicket
from ..selection import Selection
from ._concurrency import ConcurrencyLimits
from ._ports import AckPort, AdapterPort, EventPort, NullOutcomes, OutcomePort

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Errors that say the whole provider is failing (not just one model of it).
_PROVIDER_WIDE = frozenset({"auth", "quota"})
#: Candidates looked at for one request, local refusals included (a bound on the loop).
_MAX_CANDIDATES = 32
#: Answers a router remembers for feedback that arrives before its events are in the log.
_RECENT_ANSWERS = 100_000


def _allows(request: ModelRequest, model: ModelConfig) -> bool:
    """Whether the request's pin and provider/model constraints allow ``model``."""
    c = request.constraints
    return (
        (request.model_id is None or request.model_id == model.id)
        and (c.allowed_providers is None or model.provider in c.allowed_providers)
        and model.provider not in c.excluded_providers
        and (c.allowed_models is None or model.id in c.allowed_models)
        and model.id not in c.excluded_models
    )


class SelectorPort(Protocol):
    """The selection policy as the request path uses it (``selection.SelectorCore``)."""

    def select(self, request: ModelRequest) -> Selection: ...

    def select_for_failover(self, request: ModelRequest, *, exclude: set[str],
                            need_larger_context_than: int | None = None) -> Selection: ...


#: A successful attempt kept aside (a low-quality answer while a stronger model is tried).
_Kept = tuple[ModelConfig, ProviderResult, ModelResponse, Evaluation, int]


@dataclass
class _Attempt:
    """The state of one request as it moves through candidates."""

    request: ModelRequest
    request_id: str
    started: float
    deadline: float
    streaming: bool = False
    events: list[Event] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    error_kinds: list[str] = field(default_factory=list)
    last_error: BaseException | None = None
    cost_usd: Decimal = Decimal(0)
    selection_reason: str = ""
    kept: _Kept | None = None  # a low-quality answer kept while a stronger model is tried
    sent: int = 0  # attempts that reached a provider (local refusals do not count)
    attempt_started: float = 0.0  # when the current attempt began (monotonic)
    failed_providers: set[str] = field(default_factory=set)  # providers that failed this request

    def common(self, model: ModelConfig | None = None) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "task_id": self.request.task_id,
            "agent_type": self.request.agent_type,
            "model_id": model.id if model else None,
            "provider": model.provider if model else None,
        }


class RouterCore:
    """One router replica's request path. ``adapters`` maps provider name → ProviderAdapter.

    Streamed and unstreamed requests go through one loop (:meth:`_run`); what differs is passed
    in: a stream yields text as it arrives, cannot fail over once text was delivered (it raises
    ``StreamInterrupted`` instead), is never re-routed for low quality and is not cached."""

    def __init__(
        self,
        config: RegistryConfig,
        *,
        adapters: Mapping[str, AdapterPort],
        selector: SelectorPort,
        admission: AdmissionPort,
        budget: BudgetPort | None,
        events: EventPort,
        cache: CachePort | None = None,
        outcomes: OutcomePort | None = None,
        evaluator: ResponseEvaluator | None = None,
        replicas: int = 1,
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
        router_id: str = "local",
        acks: AckPort | None = None,
    ) -> None:
        self.config = config
        self.router_id = router_id
        self.settings = config.settings
        self.adapters = adapters
        self.selector = selector
        self.admission = admission
        self.budget = budget
        self.events = events
        #: what a request waits for before it is answered (``ack="shipped"``), if anything
        self.acks = acks
        self.cache = cache
        self.outcomes: OutcomePort = outcomes or NullOutcomes()
        self.evaluator = evaluator or ResponseEvaluator(config.settings.quality)
        self.rng = rng or random.Random()
        self._clock = clock
        self.limits = ConcurrencyLimits(config.settings.concurrency, replicas=replicas)
        self._failovers: deque[float] = deque()
        self._failover_alerted_at = -1e18
        #: latency, error-rate and quality degradation of the models this router calls
        self.degradation = DegradationCore(config.settings.alerts, clock=clock, router_id=router_id)
        self._background: set[asyncio.Task[None]] = set()
        self.counters = {"requests": 0, "completed": 0, "failed": 0, "cache_hits": 0, "failovers": 0,
                         "refused_spool": 0, "not_shipped": 0}
        #: request id -> (model id, agent type, task id) of recent answers (feedback needs them
        #: before the log has the request)
        self.recent: OrderedDict[str, tuple[str, str, str | None]] = OrderedDict()
        #: where work that need not precede the answer is handed (None: done before it); its
        #: owner runs each callable once, soon, on this router's event loop (see the module)
        self.later: Callable[[Callable[[], None]], None] | None = None

    # -----------------------------------------------------------------------------------------
    # public

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Select, admit, call, evaluate and account one request; typed errors on failure.
        With an ``acks`` port (``settings.events.ack="shipped"``) it returns (or raises) only once
        the request's events are in the shared log (``EventsNotShipped`` if they are not in time)."""
        self._check_spool()
        state = self._begin(request, streaming=False)
        try:
            response = await self._complete(state)
        except BaseException as exc:
            self._fail(state, exc)
            self._flush(state)
            if isinstance(exc, Exception):  # not for a cancelled caller: nobody waits
                await self._acknowledge(state, None, failed=exc)
            raise
        self._flush(state)
        await self._acknowledge(state, response)
        return response

    async def _complete(self, state: _Attempt) -> ModelResponse:
        cached = await self._from_cache(state)
        if cached is not None:
            return cached
        async with contextlib.aclosing(self._run(state)) as steps:
            async for step in steps:
                if isinstance(step, ModelResponse):
                    return step
        raise AssertionError("the request loop ended without a response")  # pragma: no cover

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]:
        """Text deltas, then a final chunk (``done``) with the result. A failure before the first
        token fails over invisibly; after it, ``StreamInterrupted`` with the partial text. With
        an ``acks`` port the final chunk comes once the request's events are in the shared log."""
        self._check_spool()
        state = self._begin(request, streaming=True)
        final: StreamChunk | None = None
        try:
            async with contextlib.aclosing(self._run(state)) as steps:
                async for step in steps:
                    if isinstance(step, StreamChunk):
                        if step.done and self.acks is not None:
                            final = step  # given once the events are shipped
                        else:
                            yield step
        except BaseException as exc:
            self._fail(state, exc)
            self._flush(state)
            if isinstance(exc, Exception):
                await self._acknowledge(state, None, failed=exc)
            raise
        self._flush(state)
        if final is not None:
            await self._acknowledge(state, None, final=final)
            yield final

    async def _acknowledge(self, state: _Attempt, response: ModelResponse | None, *,
                           failed: BaseException | None = None,
                           final: StreamChunk | None = None) -> None:
        """Wait until the request's events (written by ``_flush``) are in the shared log, when
        the configuration asks for it. A request that failed raises its own error whatever
        happens here (its failure is logged); an answer that is not shipped in time raises
        ``EventsNotShipped`` carrying it, ``response`` (or ``final``: a stream's last chunk, with
        the result and cost; the call is made and paid; its events, cost included, stay in the
        spool and reach the log later)."""
        if self.acks is None:
            return
        try:
            await self.acks.durable()
        except EventsNotShipped as exc:
            self.counters["not_shipped"] += 1
            if failed is not None:
                log.warning("request %s failed (%s) and its events are not shipped yet: %s",
                            state.request_id, error_kind_of(failed), exc)
                return
            raise EventsNotShipped(exc.message, request_id=state.request_id, response=response,
                                   final=final, component="EventShipper",
                                   cause=getattr(exc, "cause", None)) from None

    def select(self, request: ModelRequest) -> Selection:
        """A dry run of selection (no events, no admission)."""
        return self.selector.select(request)

    # -----------------------------------------------------------------------------------------
    # the path

    def _check_spool(self) -> None:
        """Refuse a new request while its events could not be made durable (the spool's disk is
        full): before the cache, selection or any call, and without an event (nothing happened;
        refusals must not fill the memory that keeps the events of calls already made)."""
        try:
            self.events.check()
        except SpoolUnavailable:
            self.counters["refused_spool"] += 1
            raise

    def _begin(self, request: ModelRequest, *, streaming: bool) -> _Attempt:
        self.counters["requests"] += 1
        now = self._clock.monotonic()
        budget_s = self.settings.failover.deadline_s
        if request.timeout_s is not None:
            budget_s = min(budget_s, request.timeout_s)
        return _Attempt(request, request.request_id or uuid7(), now, now + budget_s, streaming)

    def _flush(self, state: _Attempt) -> None:
        if state.events:
            self.events.write(state.events)
            state.events = []

    def _fail(self, state: _Attempt, exc: BaseException) -> None:
        if any(isinstance(e, RequestCompleted | RequestFailed) for e in state.events):
            return
        self.counters["failed"] += 1
        last = self.config.model(state.tried[-1]) if state.tried else None
        state.events.append(RequestFailed(
            **state.common(last),
            attempts=max(1, len(state.tried)),
            error_kind=error_kind_of(exc),
            models_tried=tuple(state.tried),
            latency_ms=self._elapsed_ms(state),
            cost_usd=state.cost_usd,
        ))

    def _elapsed_ms(self, state: _Attempt) -> float:
        return (self._clock.monotonic() - state.started) * 1000

    async def _from_cache(self, state: _Attempt) -> ModelResponse | None:
        request = state.request
        if self.cache is None or not self.settings.cache.enabled:
            return None
        if not request.is_cacheable(self.settings.cache.deterministic_only):
            return None
        hit = await self.cache.get(request)
        if hit is None:
            return None
        response, original_cost = hit.response, hit.cost_usd
        model = self.config.model(response.model_id)
        if not _allows(request, model):  # the key is model-agnostic; the constraints are not
            return None
        latency_ms = self._elapsed_ms(state)
        self.counters["cache_hits"] += 1
        self.counters["completed"] += 1
        self._remember(state, model)
        state.events.append(RequestCompleted(
            **state.common(model),
            attempts=0,
            latency_ms=latency_ms,
            input_tokens=0,
            output_tokens=0,
            cost_usd=Decimal(0),
            finish_reason=response.finish_reason,
            cache_hit=True,
            saved_cost_usd=original_cost,
            **self._text_fields(request, response.text),
            **self._agent_fields(request, response.tool_calls, None),
        ))
        return response.model_copy(update={
            "request_id": state.request_id, "cache_hit": True, "cost_usd": Decimal(0),
            "latency_ms": latency_ms, "attempts": 0,
        })

    def _selection(self, state: _Attempt) -> list[str]:
        request = state.request
        pinned = request.model_id
        fallbacks = pinned is not None and request.use_fallbacks
        try:
            selection = self.selector.select(request)
            reason = selection.selection_reason
        except NoEligibleModel as exc:
            if not fallbacks:
                raise
            assert pinned is not None
            found = self._pinned_fallback(state, None)
            if found is None:
                raise
            selection = found
            why = exc.filtered.get(pinned, "not eligible")
            reason = (f"pinned {pinned} not eligible ({why}): its fallback "
                      f"{selection.selection_reason}")
        else:
            if fallbacks and pinned is not None:
                listed = ", ".join(self.config.model(pinned).fallbacks) or "none"
                reason = f"pinned {pinned} (fallbacks: {listed}): {reason}"
        state.selection_reason = reason
        chosen = self.config.model(selection.model_id)
        state.events.append(ModelSelected(
            **state.common(chosen),
            candidates=tuple(selection.candidates),
            propensity=selection.propensity,
            weights_version=selection.weights_version,
            priority=state.request.priority,
            explored=selection.explored,
            reason=reason,
            candidate_quality=selection.candidate_quality,
        ))
        order = [selection.model_id]
        if pinned is not None:
            return order  # a pinned model is swapped only for its fallbacks (_next_candidate)
        # the selector's candidates already put the chosen model's configured fallbacks first, and
        # only the eligible ones (constraints, capabilities, context window)
        for candidate in selection.candidates:
            c_id = candidate.model_id if isinstance(candidate, CandidateScore) else candidate
            if c_id not in order:
                order.append(c_id)
        return order

    def _next_candidate(self, state: _Attempt, order: list[str], larger_than: int | None) -> str | None:
        """The best untried candidate, preferring providers that have not failed this request
        (a provider that is down fails all its models alike)."""
        fits = [
            m for m in order
            if m not in state.tried
            and (larger_than is None or self.config.model(m).context_window > larger_than)
        ]
        for model_id in fits:
            if self.config.model(model_id).provider not in state.failed_providers:
                return model_id
        if fits:
            return fits[0]
        if state.request.model_id is not None and state.request.use_fallbacks:
            found = self._pinned_fallback(state, larger_than)
            if found is None:
                return None
            order.append(found.model_id)
            return found.model_id
        if larger_than is not None or len(state.tried) < len(order) or state.request.model_id is not None:
            return None
        try:  # the ranked list is exhausted: ask the selector for anything not tried yet
            selection = self.selector.select_for_failover(
                state.request, exclude=set(state.tried), need_larger_context_than=larger_than
            )
        except NoEligibleModel:
            return None
        order.append(selection.model_id)
        return selection.model_id

    def _pinned_fallback(self, state: _Attempt, larger_than: int | None) -> Selection | None:
        """The selection of the pinned model's first configured fallback that is not tried yet
        and is eligible now (each is checked by the selector as if it were pinned), or None."""
        request = state.request
        assert request.model_id is not None
        for fallback in self.config.model(request.model_id).fallbacks:
            if fallback in state.tried:
                continue
            try:
                return self.selector.select_for_failover(
                    request.model_copy(update={"model_id": fallback}), exclude=set(state.tried),
                    need_larger_context_than=larger_than)
            except NoEligibleModel:
                continue
        return None

    async def _admit(self, state: _Attempt, model: ModelConfig,
                     bound: UsageBound) -> tuple[RateTicket | float, BudgetTicket | None]:
        """A rate-limit ticket (or the seconds to wait for one) and a budget ticket, each for the
        most the call can use (``bound``)."""
        request = state.request
        tokens = bound.total_tokens
        # the fast path: both taken locally from a lease and a slice, nothing awaited
        rate: RateTicket | float | BaseException | None = self.admission.try_acquire(model.id, tokens)
        if self.budget is None:
            if rate is None:
                rate = await self.admission.acquire(model.id, tokens)
            assert not isinstance(rate, BaseException)
            return rate, None
        worst = worst_case_cost_usd(model, bound.input_tokens, request.max_tokens)
        key = SpendKey(model.provider, model.id, request.agent_type)
        budget: BudgetTicket | BaseException | None = self.budget.try_reserve(key, worst, state.request_id)
        try:
            if rate is None and budget is None and getattr(self.admission, "immediate", False) and (
                    getattr(self.budget, "immediate", False)):
                # both answer at once (ports in this process): the same two calls, in the same
                # order, without the two tasks and the loop's turns running them concurrently cost
                rate = await _settled(self.admission.acquire(model.id, tokens))
                budget = await _settled(self.budget.reserve(key, worst, state.request_id))
            elif rate is None and budget is None:  # both need a round trip: run them concurrently
                waits = (asyncio.ensure_future(self.admission.acquire(model.id, tokens)),
                         asyncio.ensure_future(self.budget.reserve(key, worst, state.request_id)))
                try:
                    rate, budget = await asyncio.gather(*waits, return_exceptions=True)
                except asyncio.CancelledError:  # the only way out: failures come back as values
                    rate, budget = _taken(waits[0]), _taken(waits[1])
                    raise
            elif rate is None:
                rate = await _settled(self.admission.acquire(model.id, tokens))
            elif budget is None:
                budget = await _settled(self.budget.reserve(key, worst, state.request_id))
        except asyncio.CancelledError:  # the caller gave up while waiting: give back what it took
            # (failures come back as values: _settled and gather(return_exceptions=True))
            if isinstance(rate, RateTicket):
                self.admission.release(rate)
            if isinstance(budget, BudgetTicket):
                self.budget.release(budget)
            raise
        if isinstance(budget, BaseException):
            if isinstance(rate, RateTicket):
                self.admission.release(rate)
            raise budget
        if isinstance(rate, BaseException):
            if budget is not None:
                self.budget.release(budget)
            raise rate
        assert rate is not None and budget is not None
        if not isinstance(rate, RateTicket):
            self.budget.release(budget)
            return rate, None
        return rate, budget

    # -----------------------------------------------------------------------------------------
    # the request loop (streamed and unstreamed alike)

    async def _run(self, state: _Attempt) -> AsyncGenerator[StreamChunk | ModelResponse, None]:
        """Try candidates in order until one answers well enough. Yields the text chunks of a
        stream as they arrive, and last the final chunk (streams) or the response."""
        order = self._selection(state)
        larger_than: int | None = None
        rerouted = False
        attempt = 0
        model_id: str | None = order[0]
        while model_id is not None:
            attempt += 1
            model = self.config.model(model_id)
            state.tried.append(model_id)
            delivered: list[str] = []
            result: ProviderResult | None = None
            state.attempt_started = self._clock.monotonic()
            try:
                async with contextlib.aclosing(self._attempt(state, model, delivered)) as chunks:
                    async for chunk in chunks:
                        if chunk.done:
                            result = chunk.result
                        else:
                            yield chunk
            except StreamInterrupted as exc:
                self._note_failure(state, model, attempt, exc)
                raise
            except SpoolUnavailable as exc:  # no durable intent: the call was not made
                self._note_failure(state, model, attempt, exc)
                if state.kept is None:
                    raise
                break  # a re-route that cannot be announced: the answer kept is given
            except (ProviderError, BudgetExceeded, RateLimitExceeded, ConcurrencyLimitTimeout) as exc:
                if delivered:  # never duplicate output: the caller already has text
                    self._note_failure(state, model, attempt, exc)
                    raise StreamInterrupted(
                        "the stream failed after text was delivered",
                        partial_text="".join(delivered), cause_kind=error_kind_of(exc),
                        model_id=model.id, provider=model.provider,
                    ) from exc
                larger_than = self._after_failure(state, model, attempt, exc, larger_than)
                model_id = await self._failover(state, order, model, exc, attempt, larger_than)
                continue
            assert result is not None
            if self._evaluates_later(state, result):
                final = self._finish_unevaluated(state, model, result, attempt)
                yield (StreamChunk(done=True, result=result, model_id=final.model_id,
                                   selection_reason=final.selection_reason,
                                   cost_usd=final.cost_usd) if state.streaming else final)
                return
            # a large answer is scored in a worker thread: the loop serves other requests meanwhile
            evaluation = await self.evaluator.evaluate_async(
                state.request, result.text, result.finish_reason, result.tool_calls)
            if evaluation.invalid_output and self._fails_over_invalid(state):
                invalid = self._invalid_output(state, model, evaluation)
                larger_than = self._after_failure(state, model, attempt, invalid, larger_than)
                model_id = await self._failover(state, order, model, invalid, attempt, larger_than)
                continue
            response = self._succeed(state, model, result, attempt, evaluation)
            stronger = self._reroute_target(state, order, model, evaluation, rerouted)
            if stronger is not None and self._clock.monotonic() >= state.deadline:
                stronger = None  # no time left to try it: the event must not say it was
            if evaluation.low_quality:
                state.events.append(QualityLow(
                    **state.common(model), quality_score=evaluation.quality_score,
                    threshold=self.settings.quality.threshold, rerouted_to=stronger,
                ))
            if stronger is not None:
                rerouted = True
                model_id = stronger
                state.kept = (model, result, response, evaluation, attempt)
                continue
            final = self._finish(state, model, result, response, evaluation, attempt)
            yield (StreamChunk(done=True, result=result, model_id=final.model_id,
                               selection_reason=final.selection_reason,
                               cost_usd=final.cost_usd) if state.streaming else final)
            return
        # a re-route that failed still has the first (low-quality) answer to give
        if state.kept is not None:
            yield self._finish(state, *state.kept)
            return
        raise self._exhausted(state)

    def _reroute_target(self, state: _Attempt, order: list[str], model: ModelConfig,
                        evaluation: Evaluation, rerouted: bool) -> str | None:
        """The stronger model a low-quality answer is re-routed to, if any (never for streams:
        the caller already has the text)."""
        quality = self.settings.quality
        if not evaluation.low_quality or not quality.reroute_on_low_quality or rerouted or state.streaming:
            return None
        return self._stronger_than(state, order, model)

    async def _attempt(self, state: _Attempt, model: ModelConfig,
                       delivered: list[str]) -> AsyncGenerator[StreamChunk, None]:
        """One call to ``model``: admission, the provider call (streamed or not), settlement.
        Yields text chunks (streams), then a final chunk with the result."""
        remaining = state.deadline - self._clock.monotonic()
        if remaining <= 0:
            raise ConcurrencyLimitTimeout("the request's deadline passed", model_id=model.id)
        provider = self.config.providers.get(model.provider)  # its type prices images
        in_bound = state.request.input_token_bound(model.wire_name,
                                                   provider.type if provider else None)
        bound = usage_bound(model, in_bound, state.request.max_tokens)
        rate: RateTicket | float | None = None
        budget: BudgetTicket | None = None
        sent = False
        result: ProviderResult | None = None
        try:
            async with self.limits.slot(model.provider, model.id, timeout_s=remaining):
                # admitted inside the slot: the call goes at once, so a rate ticket is always
                # used inside the span its lease is counted for (never after a wait for a slot)
                rate, budget = await self._admit(state, model, bound)
                if not isinstance(rate, RateTicket):
                    raise RateLimitExceeded(f"model {model.id} has no rate-limit headroom",
                                            model_id=model.id, retry_after_s=rate)
                self._intend(state, model, budget, bound)  # SpoolUnavailable: admission released
                sent = True
                state.sent += 1
                adapter = self.adapters[model.provider]
                timeout_s = max(0.001, state.deadline - self._clock.monotonic())
                if not state.streaming:
                    result = await adapter.complete(state.request, model, timeout_s=timeout_s)
                else:
                    async for chunk in adapter.stream(state.request, model, timeout_s=timeout_s):
                        if chunk.done:
                            result = chunk.result
                            break
                        reason = None if delivered else state.selection_reason  # first: why
                        if chunk.delta:
                            delivered.append(chunk.delta)
                            yield StreamChunk(delta=chunk.delta, model_id=model.id,
                                              selection_reason=reason)
                        elif chunk.tool_call is not None:  # a whole call, as it completes
                            delivered.append("")  # the caller has output: no failover after it
                            yield StreamChunk(tool_call=chunk.tool_call, model_id=model.id,
                                              selection_reason=reason)
        except BaseException:
            if isinstance(rate, RateTicket):
                self._settle_failed(rate, budget, sent)
            raise
        assert isinstance(rate, RateTicket)
        if result is None:
            self._settle_failed(rate, budget, sent)
            if not delivered:  # nothing reached the caller: a failure before the first token
                raise MalformedResponse("the stream ended without text or a final chunk",
                                        provider=model.provider, model_id=model.id)
            raise StreamInterrupted("the stream ended without a final chunk",
                                    partial_text="".join(delivered), model_id=model.id)
        self._settle_success(state, model, rate, budget, result, bound)
        yield StreamChunk(done=True, result=result, model_id=model.id)

    def _intend(self, state: _Attempt, model: ModelConfig, budget: BudgetTicket | None,
                bound: UsageBound) -> None:
        """Write ahead: the call about to be made, durable before it is made (a crash then
        leaves it in the log, charged at its worst case; see ``AttemptStarted``)."""
        if not self.settings.events.write_ahead_attempts:
            return
        reserved = (budget.amount_usd if budget is not None
                    else worst_case_cost_usd(model, bound.input_tokens, state.request.max_tokens))
        self.events.write_intent(AttemptStarted(
            **state.common(model), attempt=len(state.tried), router_id=self.router_id,
            reserved_usd=reserved, streamed=state.streaming,
        ))

    def _settle_success(self, state: _Attempt, model: ModelConfig, rate: RateTicket,
                        budget: BudgetTicket | None, result: ProviderResult,
                        bound: UsageBound) -> None:
        """Commit the tokens used, adopt the provider's rate-limit view, settle the cost: the
        reported usage within ``bound`` (the amount settled is the amount logged)."""
        settled = settle_usage(model, bound, result.input_tokens, result.output_tokens,
                               result.cached_tokens)
        self.admission.commit(rate, settled.tokens)
        if result.rate_limit is not None:
            self.admission.observe(model.id, result.rate_limit)
        state.cost_usd += settled.cost_usd
        if budget is not None and self.budget is not None:
            self.budget.settle(budget, settled.cost_usd)
        for overrun in settled.overruns:
            self._note_usage_anomaly(state, model, overrun)

    def _note_usage_anomaly(self, state: _Attempt, model: ModelConfig, overrun: UsageOverrun) -> None:
        """A provider reported more tokens than the call could use: alert (counts only)."""
        log.warning("usage anomaly: %s reported %d %s, bound %d", model.id, overrun.reported,
                    overrun.metric, overrun.bound)
        state.events.append(PerformanceAlert(
            **state.common(model), kind="usage_anomaly", metric=overrun.metric,
            value=float(overrun.reported), threshold=float(overrun.bound),
            message=(f"{model.id} reported {overrun.reported} {overrun.metric}, above the bound of "
                     f"{overrun.bound}; charged within the bound"),
        ))

    def _settle_failed(self, rate: RateTicket, budget: BudgetTicket | None, sent: bool) -> None:
        if sent:
            self.admission.commit(rate, 0)  # a sent request counts against RPM
        else:
            self.admission.release(rate)
        if budget is not None and self.budget is not None:
            self.budget.release(budget)

    def _note_failure(self, state: _Attempt, model: ModelConfig, attempt: int,
                      exc: BaseException) -> None:
        """Record a failed attempt: its event, the health signal, a provider's 429 cool-down."""
        kind = error_kind_of(exc)
        retry_after = getattr(exc, "retry_after_s", None)
        state.error_kinds.append(kind)
        state.last_error = exc
        state.events.append(AttemptFailed(
            **state.common(model), attempt=attempt, error_kind=kind,
            transient=bool(getattr(exc, "transient", True)),
            http_status=getattr(exc, "http_status", None), retry_after_s=retry_after,
            latency_ms=(self._clock.monotonic() - state.attempt_started) * 1000,
        ))
        if isinstance(exc, ProviderError | StreamInterrupted):
            self.outcomes.outcome(model.provider, model.id, False, kind, 0.0)
            state.events.extend(self.degradation.record(model.id, model.provider, False,
                                                        error_kind=kind))
        if isinstance(exc, ProviderError) and (exc.transient or exc.error_kind in _PROVIDER_WIDE):
            state.failed_providers.add(model.provider)
        if isinstance(exc, RateLimited):
            self.admission.cool_down(model.id, retry_after or 1.0)

    def _after_failure(self, state: _Attempt, model: ModelConfig, attempt: int,
                       exc: BaseException, larger_than: int | None) -> int | None:
        """Record the failure; raise it when no other model can help (the request is at fault);
        returns the context size the next candidate must exceed, if any."""
        self._note_failure(state, model, attempt, exc)
        if isinstance(exc, ProviderError) and not exc.failover:
            raise exc
        if isinstance(exc, ContextWindowExceeded):
            return max(larger_than or 0, model.context_window)
        return larger_than

    async def _failover(self, state: _Attempt, order: list[str], model: ModelConfig,
                        exc: BaseException, attempt: int, larger_than: int | None) -> str | None:
        """The next model to try, after backoff; None when attempts (calls that reached a
        provider), candidates or the deadline are exhausted."""
        if state.sent >= self.settings.failover.max_attempts or attempt >= _MAX_CANDIDATES:
            return None
        next_id = self._next_candidate(state, order, larger_than)
        if next_id is None:
            return None
        backoff_s = self._backoff_s(attempt, exc, same_provider=self.config.model(next_id).provider == model.provider)
        if self._clock.monotonic() + backoff_s >= state.deadline:
            return None
        self.counters["failovers"] += 1
        state.events.append(FailoverTriggered(
            **state.common(model), from_model_id=model.id, to_model_id=next_id,
            reason=error_kind_of(exc), backoff_ms=backoff_s * 1000,
        ))
        self._note_failover(state, model)
        if backoff_s > 0:
            await self._clock.sleep(backoff_s)
        return next_id

    def _backoff_s(self, attempt: int, exc: BaseException, *, same_provider: bool) -> float:
        """Exponential backoff with jitter; a retry hint counts when the next call goes to the
        same provider (the hint is about that provider), capped by ``backoff_cap_s``."""
        policy = self.settings.failover
        if isinstance(exc, BudgetExceeded | RateLimitExceeded):
            return 0.0  # nothing was sent; the next model is a different bucket
        if isinstance(exc, InvalidOutput):
            return 0.0  # the provider answered; another model is asked, nothing to wait for
        base = min(policy.backoff_cap_s, policy.backoff_base_s * (2.0 ** (attempt - 1)))
        delay = base * (1 - policy.jitter * self.rng.random())
        hint: float | None = getattr(exc, "retry_after_s", None)
        if same_provider and hint:
            delay = max(delay, min(hint, policy.backoff_cap_s))
        return delay

    def _note_failover(self, state: _Attempt, model: ModelConfig) -> None:
        policy = self.settings.failover
        now = self._clock.monotonic()
        self._failovers.append(now)
        while self._failovers and self._failovers[0] < now - policy.alert_window_s:
            self._failovers.popleft()
        if len(self._failovers) >= policy.alert_threshold and now - self._failover_alerted_at > policy.alert_window_s:
            self._failover_alerted_at = now
            state.events.append(PerformanceAlert(
                **state.common(model), kind="excessive_failover", metric="failovers_per_window",
                value=float(len(self._failovers)), threshold=float(policy.alert_threshold),
                message=f"{len(self._failovers)} failovers in {policy.alert_window_s:g}s on this router",
            ))

    def _exhausted(self, state: _Attempt) -> BaseException:
        last = state.last_error
        if isinstance(last, BudgetExceeded) and all(k == "budget_exceeded" for k in state.error_kinds):
            return last
        return AllCandidatesFailed(
            f"all {len(state.tried)} attempt(s) failed: {', '.join(state.error_kinds) or 'no candidate'}",
            errors=list(state.error_kinds), models_tried=list(state.tried),
        )

    def _stronger_than(self, state: _Attempt, order: list[str], model: ModelConfig) -> str | None:
        for model_id in order:
            other = self.config.model(model_id)
            if model_id not in state.tried and other.quality_prior > model.quality_prior:
                return model_id
        return None

    # -----------------------------------------------------------------------------------------
    # success

    def _fails_over_invalid(self, state: _Attempt) -> bool:
        """Whether an invalid answer is a failed attempt (never for a stream: the caller has it)."""
        return self.settings.quality.fail_over_on_invalid_output and not state.streaming

    def _invalid_output(self, state: _Attempt, model: ModelConfig,
                        evaluation: Evaluation) -> InvalidOutput:
        """The failure an invalid answer is (its evaluation logged first, so that the quality
        learnt for the model sees it)."""
        state.events.append(evaluation.to_event(**state.common(model)))
        return InvalidOutput(f"{model.id}: {evaluation.explanation}", provider=model.provider,
                             model_id=model.id)

    def _succeed(self, state: _Attempt, model: ModelConfig, result: ProviderResult,
                 attempt: int, evaluation: Evaluation) -> ModelResponse:
        self.outcomes.outcome(model.provider, model.id, True, None, result.latency_ms, evaluation.quality_score)
        state.events.extend(self.degradation.record(model.id, model.provider, True, result.latency_ms,
                                                    evaluation.quality_score))
        state.events.append(evaluation.to_event(**state.common(model)))
        return self._response(state, model, result, attempt, evaluation.quality_score)

    def _response(self, state: _Attempt, model: ModelConfig, result: ProviderResult, attempt: int,
                  quality_score: float | None) -> ModelResponse:
        return ModelResponse(
            request_id=state.request_id, model_id=model.id, provider=model.provider,
            text=result.text, finish_reason=result.finish_reason, tool_calls=result.tool_calls,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens,
            cached_tokens=result.cached_tokens, cost_usd=state.cost_usd,
            latency_ms=self._elapsed_ms(state),
            time_to_first_token_ms=result.time_to_first_token_ms, attempts=attempt,
            quality_score=quality_score, selection_reason=state.selection_reason,
        )

    def _evaluates_later(self, state: _Attempt, result: ProviderResult) -> bool:
        """Whether this answer's evaluation may follow the answer: a ``later`` port, a prose
        answer to a prose request (nothing to fail over for), scored on the loop (not a large
        one) and not re-routed on low quality (or a stream, which never is)."""
        return (self.later is not None and len(result.text) <= INLINE_MAX_CHARS
                and (state.streaming or not self.settings.quality.reroute_on_low_quality)
                and check_output(state.request, result.text, result.tool_calls) is None)

    def _finish_unevaluated(self, state: _Attempt, model: ModelConfig, result: ProviderResult,
                            attempt: int) -> ModelResponse:
        """The answer and its terminal event now; its evaluation and what depends on it handed
        to ``later`` (see the module)."""
        response = self._finish(state, model, result,
                                self._response(state, model, result, attempt, None), None, attempt)
        common = state.common(model)
        request, cost = state.request, state.cost_usd

        def evaluate() -> None:
            evaluation = self.evaluator.evaluate(request, result.text, result.finish_reason,
                                                 result.tool_calls)
            self.outcomes.outcome(model.provider, model.id, True, None, result.latency_ms,
                                  evaluation.quality_score)
            events: list[Event] = list(self.degradation.record(
                model.id, model.provider, True, result.latency_ms, evaluation.quality_score))
            events.append(evaluation.to_event(**common))
            if evaluation.low_quality:
                events.append(QualityLow(**common, quality_score=evaluation.quality_score,
                                         threshold=self.settings.quality.threshold,
                                         rerouted_to=None))
            self.events.write(events)
            if self._caches(state, evaluation):
                assert self.cache is not None
                self.cache.put(request, response, cost)
            self._maybe_judge(state, model, response)

        assert self.later is not None
        self.later(evaluate)
        return response

    def _caches(self, state: _Attempt, evaluation: Evaluation) -> bool:
        return self.cache is not None and self.settings.cache.enabled and not (
            evaluation.low_quality) and not evaluation.invalid_output and (
            state.request.is_cacheable(self.settings.cache.deterministic_only))

    def _finish(self, state: _Attempt, model: ModelConfig, result: ProviderResult,
                response: ModelResponse, evaluation: Evaluation | None,
                attempt: int) -> ModelResponse:
        """The response and its ``RequestCompleted``; with its ``evaluation`` (None: handed to
        ``later``, which caches and samples for the judge) the cache entry and the judge."""
        response = response.model_copy(update={
            "cost_usd": state.cost_usd, "latency_ms": self._elapsed_ms(state),
        })
        self.counters["completed"] += 1
        self._remember(state, model)
        state.events.append(RequestCompleted(
            **state.common(model), attempts=attempt, latency_ms=response.latency_ms,
            time_to_first_token_ms=result.time_to_first_token_ms,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens,
            cached_tokens=result.cached_tokens, reasoning_tokens=result.reasoning_tokens,
            cost_usd=state.cost_usd, finish_reason=result.finish_reason,
            provider_request_id=result.provider_request_id, streamed=state.streaming,
            **self._text_fields(state.request, result.text),
            **self._agent_fields(state.request, result.tool_calls, evaluation),
        ))
        if evaluation is None:
            return response
        if self._caches(state, evaluation):
            assert self.cache is not None
            self.cache.put(state.request, response, state.cost_usd)
        if evaluation.evaluator != "schema":  # tool calls and JSON answers: their schema judged
            self._maybe_judge(state, model, response)
        return response

    def _remember(self, state: _Attempt, model: ModelConfig) -> None:
        self.recent[state.request_id] = (model.id, state.request.agent_type, state.request.task_id)
        if len(self.recent) > _RECENT_ANSWERS:
            self.recent.popitem(last=False)

    def answer_of(self, request_id: str) -> tuple[str, str, str | None] | None:
        """(model id, agent type, task id) of a request this router answered recently."""
        return self.recent.get(request_id)

    def _text_fields(self, request: ModelRequest, text: str) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "prompt_hash": request.prompt_hash(),
            "prompt_chars": len(request.prompt_text()),
            "response_chars": len(text),
        }
        if self.settings.store_prompts:
            fields["prompt_text"] = request.prompt_text()
            fields["response_text"] = text
        return fields

    def _agent_fields(self, request: ModelRequest, tool_calls: tuple[ToolCall, ...],
                      evaluation: Evaluation | None) -> dict[str, Any]:
        """What an agent request and its answer add to ``RequestCompleted``: the names of the
        tools called, the counts of tools offered and images sent, the format asked and the
        checks' verdicts (None without an evaluation: a cache hit); the calls themselves only
        with ``store_prompts``."""
        fmt = request.response_format
        fields: dict[str, Any] = {
            "tool_calls": tuple(call.name for call in tool_calls) or None,
            "tool_count": request.tool_count(),
            "image_count": request.image_count(),
            "response_format": fmt.type if fmt is not None and fmt.type != "text" else None,
        }
        if evaluation is not None:
            fields["structured_valid"] = evaluation.structured_valid
            fields["tool_calls_valid"] = evaluation.tool_calls_valid
        if self.settings.store_prompts and tool_calls:
            fields["tool_calls_json"] = orjson.dumps([c.to_openai() for c in tool_calls]).decode()
        return fields

    # -----------------------------------------------------------------------------------------
    # judge mode

    def _maybe_judge(self, state: _Attempt, model: ModelConfig, response: ModelResponse) -> None:
        judge = self.settings.quality.judge
        if not judge.enabled or judge.model_id is None or state.request.agent_type == "judge":
            return
        if self.rng.random() >= judge.sample_rate:
            return
        task = asyncio.get_running_loop().create_task(self._judge(state, model, response))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _judge(self, state: _Attempt, model: ModelConfig, response: ModelResponse) -> None:
        from ..evaluation import build_judge_prompt, parse_judge_score

        judge_id = self.settings.quality.judge.model_id
        request = ModelRequest(
            prompt=build_judge_prompt(state.request.prompt_text(), response.text),
            agent_type="judge", max_tokens=64, parameters={"temperature": 0},
            model_id=judge_id, task_id=state.request.task_id, cacheable=False,
        )
        try:
            verdict = await self.complete(request)
        except (ProviderError, AllCandidatesFailed, BudgetExceeded, NoEligibleModel,
                ComponentUnavailable) as exc:
            log.info("judge call failed: %s", error_kind_of(exc))
            return
        score = parse_judge_score(verdict.text)
        if score is None:
            return
        judge_model = self.config.model(verdict.model_id)
        self.events.write([FeedbackRecorded(
            request_id=state.request_id, task_id=state.request.task_id,
            agent_type=state.request.agent_type, model_id=model.id, provider=model.provider,
            score=score, source="judge", judge_model_id=judge_model.id,
            cost_usd=Decimal(0),  # the judge call's own RequestCompleted carries its cost
        )])


def _taken(wait: asyncio.Future[Any]) -> Any:
    """What a finished wait got (None when it was cancelled, failed or is still running)."""
    if not wait.done() or wait.cancelled() or wait.exception() is not None:
        return None
    return wait.result()


async def _settled(awaitable: Awaitable[_T]) -> _T | BaseException:
    """The awaitable's result, or the exception it raised (as ``gather(return_exceptions=True)``)."""
    try:
        return await awaitable
    except Exception as exc:  # noqa: BLE001 - handed back to _admit, which releases and re-raises
        return exc
