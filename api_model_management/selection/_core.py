"""Selector core: which model serves a request, and the ranked list to fail over along.

A pure class (no Ray, no I/O). The original algorithm:

1. **Filter.** A model is eligible when it is the pinned ``request.model_id`` (if any), enabled,
   allowed by ``request.constraints`` (providers, models), covers ``capabilities_needed()``
   (``required_capabilities`` plus ``function-calling`` for tools or a tool conversation,
   ``vision`` for images, ``structured-output`` for a ``json_schema`` answer), fits
   ``estimated_input_tokens() + max_tokens`` in its context window (and ``max_tokens`` within its
   ``max_output_tokens``), its provider allows traffic (``unknown`` counts as healthy; ``half_open``
   takes no traffic: its trials are the health checker's own probes), it is not
   reported unavailable, not rate-limited, and meets the cost / latency / quality constraints
   (worst-case cost: ``budget.worst_case_cost_usd`` on ``input_token_bound(model, provider
   type)``, as admission reserves; latency and quality are the expected values below). Every
   filtered model gets a reason. Images are counted per model by its provider's rule
   (``image_token_bound``): in the input estimate (context window, expected cost) and in the
   bound (worst-case cost); a request without images does no per-model work for them.
2. **Score.** ``suitability = w_cap·capability + w_cost·cost + w_perf·performance + w_avail·
   availability``, each sub-score in [0, 1]:

   - capability: ``0.8 · coverage of the needed capabilities + 0.2 · min(1, extra / 3)``, where
     ``extra`` counts capabilities beyond the needed ones (versatility bonus, bounded);
   - cost: the log-price of the request's expected cost ``c`` (input estimate and ``max_tokens``
     at the model's prices) on one fixed scale, ``(ln(C+f) − ln(c+f)) / (ln(C+f) − ln(2f))``
     clipped to [0, 1], with ``f = 1e-6`` USD and ``C = 1`` USD: a cheaper model never scores
     lower, and price ratios keep their meaning (a 20× dearer model scores 0.22 less, whatever
     else is eligible), so weights can trade quality against cost;
   - with ``value_usd`` set in the weights (see ``config.SelectionWeights``), the suitability
     also loses ``c / value_usd`` (``c`` clipped to the scale's ends, so that replay, which
     reads ``c`` back from the logged cost sub-score, computes the same score): amounts count,
     not only ratios;
   - performance: ``0.4 · quality + 0.3 · success_rate + 0.3 / (1 + latency_ms / 1000)``. The
     quality is learnt per (model, agent type) from the log (``QualityFold``: feedback over judge
     over the calibrated heuristic, shrunk to the model's mean and its prior) when pushed
     (``update_quality``); until then, and for success rate and latency, each expected value
     shrinks the live EWMA towards the prior with 5 pseudo-observations
     (priors: ``quality_prior``, success rate 0.95, ``average_response_time_ms``). The
     success-rate and latency part (``reliability_part``) reads the success rate to the nearest
     0.01 and the latency in whole steps of 100 ms, rounded down: about the noise of a 0.1-EWMA
     of a real API (on the llmperf traces its standard deviation is 7-220 ms for medians of
     0.8-5 s; a success rate of 0.99 moves by ±0.02). Finer differences are noise that would
     otherwise decide near-ties between models and move them from one push to the next: two
     models answering in 15 and 25 ms are equally fast here, and so is one whose estimate still
     leans towards its 500 ms prior (52 ms after 100 outcomes of 30 ms);
   - availability: health factor (healthy 1.0, unknown 0.9, degraded 0.6) ×
     ``(0.5 + 0.5 · headroom)`` with rate-limit headroom in [0, 1] (1.0 when unknown), rounded to the
     nearest tenth so that small headroom moves neither flush the assignment cache nor move
     choices (under 5% of a limit used counts as all of it free).
3. **Priority.** Weights (``settings.selection.weights``, or ``agent_weights[agent_type]``) are
   shifted by ``request.priority``: ``high`` moves 50 % of the cost weight, ``critical`` 80 %, to
   performance (2/3) and capability (1/3); ``low`` moves 40 % of the performance weight and 20 % of
   the capability weight to cost; ``normal`` / ``medium`` keep them. The weights still sum to 1.
4. **Choose.** The highest score wins (ties: cheaper, then config order). With
   ``exploration_epsilon`` ε > 0 a uniformly random eligible model is chosen with probability ε;
   ``propensity`` is the policy's probability of the chosen model, ``1 − ε + ε/n`` for the greedy
   one, ``ε/n`` for another. The fallback list (``candidates``) is the chosen model, then its
   configured ``fallbacks`` that are eligible, then the rest by score.

Ranked results are kept in an assignment cache (request signature → ranking) for
``assignment_cache_ttl_s``, flushed when configuration, health, rate-limit state or weights change.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from math import exp, floor, isfinite, log

from .. import config, events
from .._clock import Clock
from .._request import ModelRequest, Priority, SelectionConstraints
from ..budget._pricing import worst_case_cost_usd
from ..errors import InvalidInput, NoEligibleModel
from ..health._core import TRAFFIC_STATES, HealthSnapshot
from ._quality import QualitySnapshot
from ._stats import ModelStatsSnapshot

HEALTH_FACTOR: dict[str, float] = {
    "healthy": 1.0, "unknown": 0.9, "degraded": 0.6, "half_open": 0.0, "unhealthy": 0.0,
}
PRIOR_STRENGTH = 5.0
PRIOR_SUCCESS_RATE = 0.95
LATENCY_REF_MS = 1000.0
#: The weight of the learnt quality in the performance sub-score (the rest is ``reliability_part``).
QUALITY_IN_PERFORMANCE = 0.4
#: The steps the reliability part reads the success rate (nearest) and the latency (ms, rounded
#: down) in.
RELIABILITY_RESOLUTION = (0.01, 100.0)
COST_FLOOR_USD = 1e-6
#: The cost sub-score is the log-price of a request on one fixed scale, so that price ratios
#: keep their meaning whatever else is eligible: 1.0 at COST_FLOOR_USD (or less), 0.0 at
#: COST_CEILING_USD (or more); every 10x in price costs 1/6 of the score.
COST_CEILING_USD = 1.0
_ASSIGNMENT_CACHE_MAX = 4096
_LOG_COST_CEILING = log(COST_CEILING_USD + COST_FLOOR_USD)
_LOG_COST_SPAN = _LOG_COST_CEILING - log(2 * COST_FLOOR_USD)
_THOUSAND = Decimal(1000)

#: What the per-model image token bound depends on besides the model: each image's pixel size
#: (None: unknown) and OpenAI's ``detail``.
_ImageSizes = tuple[tuple[tuple[int, int] | None, str], ...]
# memo keys: (model_id, capabilities needed, image sizes, est_in, text bound, max_tokens, priority,
# agent_type, constraints) and (model_id, capabilities needed, constraints, exclude)
_AssignmentKey = tuple[str | None, tuple[str, ...], _ImageSizes, int, int, int, Priority, str,
                       SelectionConstraints]
_ShapeKey = tuple[str | None, tuple[str, ...], SelectionConstraints, frozenset[str]]


class Selection:
    """The outcome of a selection (picklable; treat as read-only).

    ``candidates`` is the fallback list, chosen model first, as ``events.CandidateScore``;
    ``filtered`` maps each model left out to the reason. ``candidates`` and ``selection_reason`` are
    built on first access (building twelve pydantic objects would otherwise dominate ``select()``).
    """

    __slots__ = ("model_id", "provider", "suitability_score", "propensity", "explored",
                 "weights_version", "filtered", "priority", "_raw", "_weights", "_n_models",
                 "_candidates", "_reason")

    def __init__(
        self,
        *,
        raw: tuple[tuple[str, float, float, float, float, float, float], ...],
        provider: str,
        propensity: float,
        explored: bool,
        weights_version: str,
        filtered: dict[str, str],
        priority: str,
        weights: config.SelectionWeights,
        n_models: int,
    ) -> None:
        self.model_id, self.suitability_score = raw[0][0], raw[0][1]
        self.provider, self.propensity, self.explored = provider, propensity, explored
        self.weights_version, self.filtered, self.priority = weights_version, filtered, priority
        self._raw, self._weights, self._n_models = raw, weights, n_models
        self._candidates: tuple[events.CandidateScore, ...] | None = None
        self._reason: str | None = None

    @property
    def candidates(self) -> tuple[events.CandidateScore, ...]:
        """The ranked fallback list with sub-scores, chosen model first."""
        if self._candidates is None:
            self._candidates = tuple(
                events.CandidateScore(model_id=r[0], score=r[1], capability=r[2], cost=r[3],
                                      performance=r[4], availability=r[5])
                for r in self._raw
            )
        return self._candidates

    @property
    def candidate_quality(self) -> tuple[float, ...] | None:
        """The learnt quality in each candidate's performance sub-score (candidate order), or
        None when performance came from live statistics alone."""
        if any(r[6] == NO_QUALITY for r in self._raw):
            return None
        return tuple(r[6] for r in self._raw)

    @property
    def fallbacks(self) -> list[str]:
        """The models to try next, in order."""
        return [r[0] for r in self._raw[1:]]

    @property
    def selection_reason(self) -> str:
        """Why this model: its sub-scores and weights, how many were eligible, what was filtered."""
        if self._reason is None:
            self._reason = _describe(self)
        return self._reason

    def to_event(self, request: ModelRequest) -> events.ModelSelected:
        """The ``ModelSelected`` event of this selection (no prompt text)."""
        return events.ModelSelected(
            request_id=request.request_id, task_id=request.task_id, agent_type=request.agent_type,
            model_id=self.model_id, provider=self.provider, candidates=self.candidates,
            propensity=self.propensity, weights_version=self.weights_version,
            priority=self.priority, explored=self.explored, reason=self.selection_reason,
            candidate_quality=self.candidate_quality,
        )

    def __repr__(self) -> str:
        return (f"Selection(model_id={self.model_id!r}, score={self.suitability_score:.3f}, "
                f"propensity={self.propensity:.3f}, explored={self.explored}, "
                f"candidates={len(self._raw)}, filtered={len(self.filtered)})")


def _describe(sel: Selection) -> str:
    _, score, cap, cost, perf, avail, _ = sel._raw[0]
    w = sel._weights
    how = "explored (random pick)" if sel.explored else "highest suitability"
    text = (
        f"{sel.model_id}: {how}, score {score:.3f} = capability {cap:.2f}×{w.capability:.2f} + "
        f"cost {cost:.2f}×{w.cost:.2f} + performance {perf:.2f}×{w.performance:.2f} + "
        f"availability {avail:.2f}×{w.availability:.2f}"
    )
    if w.value_usd:
        text += f" − expected ${expected_cost_usd(cost):.6f} / value ${w.value_usd:g}"
    text += (f" (priority {sel.priority}, weights {sel.weights_version}); {len(sel._raw)} of "
             f"{sel._n_models} models eligible")
    if sel.filtered:
        text += "; filtered: " + "; ".join(f"{k} ({v})" for k, v in sel.filtered.items())
    return text


class _Model:
    """The static, request-independent parts of one model, precomputed once per config."""

    __slots__ = ("id", "provider", "provider_type", "wire_name", "caps", "enabled",
                 "context_window", "max_output", "in_price", "out_price", "in_per_token",
                 "out_per_token", "prior_latency_ms", "quality_prior", "fallbacks", "order",
                 "n_caps", "config")

    def __init__(self, m: config.ModelConfig, order: int,
                 provider_type: str | None = None) -> None:
        self.id, self.provider, self.order = m.id, m.provider, order
        #: what prices an image (``_images.image_token_bound``); None: a provider not configured
        self.provider_type, self.wire_name = provider_type, m.wire_name
        self.caps = frozenset(m.capabilities)
        self.n_caps = len(self.caps)
        self.enabled = m.enabled
        self.context_window = m.context_window
        self.max_output = m.max_output_tokens
        self.in_price, self.out_price = m.cost_per_1k_input_tokens, m.cost_per_1k_output_tokens
        self.in_per_token = float(m.cost_per_1k_input_tokens) / 1000.0
        self.out_per_token = float(m.cost_per_1k_output_tokens) / 1000.0
        self.prior_latency_ms = m.average_response_time_ms
        self.quality_prior = m.quality_prior
        self.fallbacks = tuple(m.fallbacks)
        self.config = m


@dataclass(frozen=True, slots=True)
class _Dynamic:
    """Request-independent live values of one model, recomputed when health or stats change.
    ``reliability``: the success-rate and latency part of the performance sub-score."""

    performance: float
    latency_ms: float
    quality: float
    availability: float
    reliability: float = 0.0


#: model_id, score, 4 sub-scores, the learnt quality in the performance sub-score (NO_QUALITY:
#: performance from live statistics alone)
_Raw = tuple[str, float, float, float, float, float, float]
NO_QUALITY = -1.0


@dataclass(slots=True)
class _Ranking:
    raw: tuple[_Raw, ...]  # fallback order (greedy choice first)
    providers: tuple[str, ...]
    filtered: dict[str, str]
    weights: config.SelectionWeights
    expires_at: float
    greedy: Selection | None = None


@dataclass(frozen=True)
class LiveState:
    """The pushed inputs of a :class:`SelectorCore` (see ``live_state``)."""

    health: tuple[tuple[str, str, tuple[str, ...]], ...]
    limited_until: tuple[tuple[str, float], ...]
    weights: config.SelectionWeights
    weights_version: str
    headroom: tuple[tuple[str, float], ...] = ()
    agent_weights: tuple[tuple[str, config.SelectionWeights], ...] = ()
    quality: QualitySnapshot | None = None


class SelectorCore:
    """The selection policy and the live state it reads (health, rate limits, stats, weights)."""

    def __init__(
        self, config: config.RegistryConfig, *, clock: Clock, rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._provider_state: dict[str, str] = {}
        self._unavailable: dict[str, frozenset[str]] = {}
        self._limited_until: dict[str, float] = {}
        self._headroom: dict[str, float] = {}
        self._stats: dict[str, ModelStatsSnapshot] = {}
        self._quality: QualitySnapshot | None = None
        self._assignments: dict[_AssignmentKey, _Ranking] = {}
        self.set_config(config)

    # -- inputs ------------------------------------------------------------------------------
    def set_config(self, config: config.RegistryConfig) -> None:
        """Load a (new) configuration: models, weights, exploration, cache TTL."""
        self.config = config
        types = {name: p.type for name, p in config.providers.items()}
        self._models = [_Model(m, i, types.get(m.provider)) for i, m in enumerate(config.models)]
        self._by_id = {m.id: m for m in self._models}
        sel = config.settings.selection
        self._weights, self._weights_version = sel.weights, sel.weights_version
        self._agent_weights = dict(sel.agent_weights)
        self._epsilon = sel.exploration_epsilon
        self._ttl_s = sel.assignment_cache_ttl_s
        self._dynamic: dict[str, _Dynamic] = {}
        self._blocked: dict[str, str] = {}
        self._shapes: dict[_ShapeKey, tuple[list[_Model], dict[str, str]]] = {}
        self._refresh(self._models)

    def set_weights(
        self,
        weights: config.SelectionWeights,
        version: str,
        agent_weights: Mapping[str, config.SelectionWeights] | None = None,
    ) -> None:
        """Replace the policy: the default weights and the per-agent-type ones (None: none; the
        policy is the whole weights file, never a mix of two). ``version`` names it in every
        ``ModelSelected``."""
        if not isinstance(weights, config.SelectionWeights) or not version:
            raise InvalidInput("set_weights needs SelectionWeights and a non-empty version")
        agents = dict(agent_weights or {})
        if not all(isinstance(w, config.SelectionWeights) and isinstance(a, str)
                   for a, w in agents.items()):
            raise InvalidInput("agent_weights maps agent types to SelectionWeights",
                               field="agent_weights")
        self._weights, self._weights_version = weights, version
        self._agent_weights = agents
        self._invalidate()

    @property
    def agent_weights(self) -> dict[str, config.SelectionWeights]:
        return dict(self._agent_weights)

    def update_health(
        self,
        provider: str,
        snapshot_or_state: HealthSnapshot | str,
        unavailable_models: Iterable[str] = (),
    ) -> None:
        """A provider's health: a :class:`HealthSnapshot` or a state name plus unavailable models."""
        state: str
        if isinstance(snapshot_or_state, HealthSnapshot):
            state, missing = snapshot_or_state.state, frozenset(snapshot_or_state.unavailable_models)
        else:
            state, missing = snapshot_or_state, frozenset(unavailable_models)
        if state not in HEALTH_FACTOR:
            raise InvalidInput(f"unknown health state {state!r}", provider=provider)
        if self._provider_state.get(provider, "unknown") == state and self._unavailable.get(
            provider, frozenset()
        ) == missing:
            return
        self._provider_state[provider], self._unavailable[provider] = state, missing
        self._refresh(m for m in self._models if m.provider == provider)

    def update_rate_limited(self, model_id: str, until_monotonic: float | None) -> None:
        """Mark ``model_id`` rate-limited until ``until_monotonic`` (None: not limited)."""
        if until_monotonic is not None and not isfinite(until_monotonic):
            raise InvalidInput("until_monotonic must be finite", model_id=model_id)
        if until_monotonic is None:
            if self._limited_until.pop(model_id, None) is not None:
                self._invalidate()
        elif self._limited_until.get(model_id) != until_monotonic:
            self._limited_until[model_id] = until_monotonic
            self._invalidate()

    def update_headroom(self, model_id: str, headroom: float) -> None:
        """Rate-limit headroom of ``model_id`` in [0, 1] (share of its limits still free)."""
        if not (isfinite(headroom) and 0.0 <= headroom <= 1.0):
            raise InvalidInput("headroom must be in [0, 1]", model_id=model_id)
        if _tenths(self._headroom.get(model_id, 1.0)) != _tenths(headroom):
            self._headroom[model_id] = headroom
            self._refresh(m for m in self._models if m.id == model_id)
        else:
            self._headroom[model_id] = headroom

    def update_stats(self, snapshot: Mapping[str, ModelStatsSnapshot]) -> None:
        """Live statistics per model (from :class:`StatsCore.snapshot`). Not a cache flush: the
        assignment cache's TTL bounds how stale scores get."""
        self._stats = dict(snapshot)
        for m in self._models:
            self._dynamic[m.id] = self._compute_dynamic(m)

    def update_quality(self, snapshot: QualitySnapshot) -> None:
        """Learnt quality per (model, agent type) (from :class:`QualityFold`): the quality part
        of the performance sub-score from now on."""
        if not isinstance(snapshot, QualitySnapshot):
            raise InvalidInput("update_quality needs a QualitySnapshot", field="snapshot")
        if self._quality is None or snapshot.version != self._quality.version:
            self._quality = snapshot
            self._invalidate()

    def quality_for(self, model_id: str, agent_type: str) -> float:
        """The expected quality used to score ``model_id`` for ``agent_type``."""
        m = self._by_id.get(model_id)
        if m is None:
            raise InvalidInput(f"unknown model {model_id!r}", model_id=model_id)
        if self._quality is None:
            return self._dynamic[m.id].quality
        return self._quality.quality(m.id, agent_type, m.quality_prior)

    def live_state(self) -> LiveState:
        """What was pushed to this selector (health, rate-limit cool-downs and headroom,
        weights), for a router that cannot be pushed to and polls instead (the embedded
        router)."""
        return LiveState(
            health=tuple((p, s, tuple(sorted(self._unavailable.get(p, ()))))
                         for p, s in sorted(self._provider_state.items())),
            limited_until=tuple(sorted(self._limited_until.items())),
            weights=self._weights, weights_version=self._weights_version,
            headroom=tuple(sorted(self._headroom.items())),
            agent_weights=tuple(sorted(self._agent_weights.items())),
            quality=self._quality,
        )

    def apply_live_state(self, state: LiveState) -> list[tuple[str, float]]:
        """Take over a polled :meth:`live_state`; returns the cool-downs that are new here."""
        for provider, health, unavailable in state.health:
            self.update_health(provider, health, unavailable)
        fresh = [(m, until) for m, until in state.limited_until if self._limited_until.get(m) != until]
        for model_id, until in fresh:
            self.update_rate_limited(model_id, until)
        for model_id, headroom in state.headroom:
            self.update_headroom(model_id, headroom)
        if state.weights_version != self._weights_version:
            self.set_weights(state.weights, state.weights_version, dict(state.agent_weights))
        if state.quality is not None:
            self.update_quality(state.quality)
        return fresh

    def clear_assignment_cache(self) -> None:
        self._assignments.clear()

    # -- queries -----------------------------------------------------------------------------
    @property
    def weights_version(self) -> str:
        return self._weights_version

    def weights_for(self, agent_type: str, priority: str) -> config.SelectionWeights:
        """The weights used for an agent type and priority (after the priority shift)."""
        key = (agent_type, priority)
        weights = self._resolved_weights.get(key)
        if weights is None:
            base = self._agent_weights.get(agent_type, self._weights)
            weights = self._resolved_weights[key] = adjust_for_priority(base, priority)
        return weights

    def select(self, request: ModelRequest) -> Selection:
        """The best eligible model for ``request`` (see the module docstring).

        Raises :class:`NoEligibleModel` (with ``filtered``) when no model passes the filters."""
        if not isinstance(request, ModelRequest):
            raise InvalidInput("select needs a ModelRequest")
        now = self._clock.monotonic()
        needed, images = _needs(request)
        est_in = request.estimated_input_tokens()
        text_bound = request.text_token_bound()
        key = (request.model_id, needed, images, est_in, text_bound, request.max_tokens,
               request.priority, request.agent_type, request.constraints)
        ranking = self._assignments.get(key)
        if ranking is None or ranking.expires_at <= now:
            ranking = self._rank(request, needed, (est_in, text_bound, bool(images)), now,
                                 frozenset(), None)
            if ranking.expires_at > now:
                if len(self._assignments) >= _ASSIGNMENT_CACHE_MAX:
                    self._assignments.clear()
                self._assignments[key] = ranking
        return self._choose(ranking, request.priority, explore=True)

    def select_for_failover(
        self,
        request: ModelRequest,
        exclude: set[str] | frozenset[str],
        need_larger_context_than: int | None = None,
    ) -> Selection:
        """The best eligible model other than those in ``exclude`` (already tried), optionally
        with a context window larger than ``need_larger_context_than``. Greedy: no exploration."""
        if not isinstance(request, ModelRequest):
            raise InvalidInput("select_for_failover needs a ModelRequest")
        if need_larger_context_than is not None and need_larger_context_than < 0:
            raise InvalidInput("need_larger_context_than must be >= 0")
        needed, images = _needs(request)
        sizes = (request.estimated_input_tokens(), request.text_token_bound(), bool(images))
        ranking = self._rank(request, needed, sizes, self._clock.monotonic(), frozenset(exclude),
                             need_larger_context_than)
        return self._choose(ranking, request.priority, explore=False)

    # -- filtering and scoring ---------------------------------------------------------------
    def _rank(
        self,
        request: ModelRequest,
        needed: tuple[str, ...],
        sizes: tuple[int, int, bool],
        now: float,
        exclude: frozenset[str],
        need_larger: int | None,
    ) -> _Ranking:
        """``needed``: the capabilities the request needs. ``sizes``: the input token estimate of
        its text (to fit a context window, to rank by cost), the input token bound of its text
        (for the worst-case cost) and whether it holds images, which each model then counts by
        its provider's rule, in both."""
        est_in, text_bound, has_images = sizes
        shape_ok, filtered = self._shape_filter(request, needed, exclude)
        filtered = dict(filtered)
        image_tokens: dict[str, int] | None = None
        if has_images:
            image_tokens = {m.id: request.image_token_bound(m.wire_name, m.provider_type)
                            for m in shape_ok}
        eligible: list[_Model] = []
        expires_at = now + self._ttl_s
        for m in shape_ok:
            image = image_tokens[m.id] if image_tokens is not None else 0
            reason = self._size_reason(m, request, est_in + image, text_bound + image,
                                       need_larger)
            if reason is None:
                reason = self._live_reason(m, request, now)
                until = self._limited_until.get(m.id)
                if until is not None and until > now:
                    expires_at = min(expires_at, until)
            if reason is None:
                eligible.append(m)
            else:
                filtered[m.id] = reason
        if not eligible:
            raise NoEligibleModel.from_reasons(filtered)
        weights = self.weights_for(request.agent_type, request.priority)
        scored = self._score(eligible, request, len(frozenset(needed)), (est_in, image_tokens),
                             weights)
        ordered = self._fallback_order(scored)
        return _Ranking(
            raw=tuple(r for r, _ in ordered), providers=tuple(m.provider for _, m in ordered),
            filtered=filtered, weights=weights, expires_at=expires_at,
        )

    def _shape_filter(
        self, request: ModelRequest, needed: tuple[str, ...], exclude: frozenset[str]
    ) -> tuple[list[_Model], dict[str, str]]:
        """The filters that depend on neither the prompt's size nor live state (memoized)."""
        key = (request.model_id, needed, request.constraints, exclude)
        hit = self._shapes.get(key)
        if hit is not None:
            return hit
        if request.model_id is not None and request.model_id not in self._by_id:
            raise InvalidInput(f"unknown model {request.model_id!r}", model_id=request.model_id)
        required = frozenset(needed)
        passed: list[_Model] = []
        filtered: dict[str, str] = {}
        for m in self._models:
            reason = _shape_reason(m, request, required, exclude)
            if reason is None:
                passed.append(m)
            else:
                filtered[m.id] = reason
        if len(self._shapes) >= _ASSIGNMENT_CACHE_MAX:
            self._shapes.clear()
        self._shapes[key] = (passed, filtered)
        return passed, filtered

    @staticmethod
    def _size_reason(
        m: _Model, request: ModelRequest, est_in: int, in_bound: int, need_larger: int | None
    ) -> str | None:
        """``est_in``: the model's input estimate; ``in_bound``: its input token bound."""
        needed = est_in + request.max_tokens
        if needed > m.context_window:
            return f"context window {m.context_window} < {needed} tokens needed"
        if need_larger is not None and m.context_window <= need_larger:
            return f"context window {m.context_window} not larger than {need_larger}"
        if m.max_output is not None and request.max_tokens > m.max_output:
            return f"max_tokens {request.max_tokens} > max output {m.max_output}"
        max_cost = request.constraints.max_cost_per_request
        if max_cost is not None:
            worst = worst_case_cost_usd(m.config, in_bound, request.max_tokens)
            if worst > max_cost:
                return f"worst-case cost ${worst:.6f} > max ${max_cost}"
        return None

    def _live_reason(self, m: _Model, request: ModelRequest, now: float) -> str | None:
        blocked = self._blocked.get(m.id)
        if blocked is not None:
            return blocked
        until = self._limited_until.get(m.id)
        if until is not None and until > now:
            return f"rate-limited for {until - now:.1f} s"
        c = request.constraints
        if c.max_latency_ms is not None or c.min_quality is not None:
            dyn = self._dynamic[m.id]
            if c.max_latency_ms is not None and dyn.latency_ms > c.max_latency_ms:
                return f"expected latency {dyn.latency_ms:.0f} ms > max {c.max_latency_ms:.0f} ms"
            if c.min_quality is not None:
                quality = self.quality_for(m.id, request.agent_type)
                if quality < c.min_quality:
                    return f"expected quality {quality:.2f} < min {c.min_quality:.2f}"
        return None

    def _score(
        self,
        eligible: list[_Model],
        request: ModelRequest,
        n_required: int,
        estimate: tuple[int, dict[str, int] | None],
        w: config.SelectionWeights,
    ) -> list[tuple[_Raw, _Model, float]]:
        """``estimate``: the input tokens of the text and, when the request holds images, each
        model's image tokens."""
        est_in, image_tokens = estimate
        max_tokens = request.max_tokens
        wc, wk, wp, wa = w.capability, w.cost, w.performance, w.availability
        per_usd = 1.0 / w.value_usd if w.value_usd else 0.0
        dynamic = self._dynamic
        learnt = self._quality
        agent = request.agent_type
        out = []
        for m in eligible:
            tokens = est_in if image_tokens is None else est_in + image_tokens[m.id]
            usd = tokens * m.in_per_token + max_tokens * m.out_per_token
            lc = log(usd + COST_FLOOR_USD)
            capability = 0.8 + 0.2 * min(1.0, (m.n_caps - n_required) / 3.0)
            cost = min(1.0, max(0.0, (_LOG_COST_CEILING - lc) / _LOG_COST_SPAN))
            dyn = dynamic[m.id]
            if learnt is None:
                perf, quality = dyn.performance, NO_QUALITY
            else:
                quality = learnt.quality(m.id, agent, m.quality_prior)
                perf = QUALITY_IN_PERFORMANCE * quality + dyn.reliability
            avail = dyn.availability
            score = wc * capability + wk * cost + wp * perf + wa * avail
            if per_usd:  # the amount the cost sub-score stands for (see expected_cost_usd)
                score -= per_usd * min(COST_CEILING_USD, max(COST_FLOOR_USD, usd))
            out.append(((m.id, score, capability, cost, perf, avail, quality), m, lc))
        out.sort(key=lambda t: (-t[0][1], t[2], t[1].order))
        return out

    @staticmethod
    def _fallback_order(scored: list[tuple[_Raw, _Model, float]]) -> list[tuple[_Raw, _Model]]:
        """The greedy choice, then its configured fallbacks that are eligible, then by score."""
        best_raw, best, _ = scored[0]
        ordered = [(best_raw, best)]
        if best.fallbacks:
            by_id = {m.id: (r, m) for r, m, _ in scored}
            for fallback in best.fallbacks:
                if fallback in by_id and fallback != best.id:
                    ordered.append(by_id.pop(fallback))
            by_id.pop(best.id, None)
            ordered.extend(by_id[m.id] for _, m, _ in scored if m.id in by_id)
        else:
            ordered.extend((r, m) for r, m, _ in scored[1:])
        return ordered

    def _choose(self, ranking: _Ranking, priority: str, *, explore: bool) -> Selection:
        n = len(ranking.raw)
        eps = self._epsilon if explore else 0.0
        if eps > 0.0 and self._rng.random() < eps:
            index = self._rng.randrange(n)
            propensity = eps / n + (1.0 - eps if index == 0 else 0.0)
            return self._selection(ranking, priority, index, propensity, explored=True)
        if eps == 0.0:
            if ranking.greedy is None:
                ranking.greedy = self._selection(ranking, priority, 0, 1.0, explored=False)
            return ranking.greedy
        return self._selection(ranking, priority, 0, 1.0 - eps + eps / n, explored=False)

    def _selection(
        self, ranking: _Ranking, priority: str, index: int, propensity: float, *, explored: bool
    ) -> Selection:
        raw = ranking.raw
        if index:
            raw = (raw[index],) + raw[:index] + raw[index + 1:]
        return Selection(
            raw=raw, provider=ranking.providers[index], propensity=propensity, explored=explored,
            weights_version=self._weights_version, filtered=ranking.filtered, priority=priority,
            weights=ranking.weights, n_models=len(self._models),
        )

    # -- live values -------------------------------------------------------------------------
    def _compute_dynamic(self, m: _Model) -> _Dynamic:
        stats = self._stats.get(m.id)
        latency, success, quality = m.prior_latency_ms, PRIOR_SUCCESS_RATE, m.quality_prior
        if stats is not None:
            if stats.latency_ms is not None:
                latency = _shrink(m.prior_latency_ms, stats.latency_ms, stats.successes)
            if stats.success_rate is not None:
                success = _shrink(PRIOR_SUCCESS_RATE, stats.success_rate, stats.count)
            if stats.quality is not None:
                quality = _shrink(m.quality_prior, stats.quality, stats.quality_count)
        reliability = reliability_part(success, latency)
        performance = QUALITY_IN_PERFORMANCE * quality + reliability
        health = HEALTH_FACTOR[self._provider_state.get(m.provider, "unknown")]
        availability = health * (0.5 + 0.5 * _tenths(self._headroom.get(m.id, 1.0)))
        return _Dynamic(performance, latency, quality, availability, reliability)

    def _refresh(self, models: Iterable[_Model]) -> None:
        for m in models:
            self._dynamic[m.id] = self._compute_dynamic(m)
            reason = self._health_reason(m)
            if reason is None:
                self._blocked.pop(m.id, None)
            else:
                self._blocked[m.id] = reason
        self._invalidate()

    def _health_reason(self, m: _Model) -> str | None:
        state = self._provider_state.get(m.provider, "unknown")
        if state not in TRAFFIC_STATES:
            return f"provider {m.provider} {state}"
        if m.id in self._unavailable.get(m.provider, ()):
            return "model unavailable (reported missing)"
        return None

    def _invalidate(self) -> None:
        self._assignments.clear()
        self._resolved_weights: dict[tuple[str, str], config.SelectionWeights] = {}


def expected_cost_usd(cost_score: float) -> float:
    """The expected cost (USD) a cost sub-score stands for: the inverse of the log-price scale
    (exact between COST_FLOOR_USD and COST_CEILING_USD; the clipped ends give those bounds)."""
    return max(0.0, exp(_LOG_COST_CEILING - cost_score * _LOG_COST_SPAN) - COST_FLOOR_USD)


def adjust_for_priority(w: config.SelectionWeights, priority: str) -> config.SelectionWeights:
    """Shift weights for a task priority (factors in the module docstring); sums stay 1;
    ``value_usd`` is kept as it is."""
    cap, cost, perf, avail = w.capability, w.cost, w.performance, w.availability
    if priority in ("high", "critical"):
        moved = cost * (0.5 if priority == "high" else 0.8)
        cost -= moved
        perf += moved * 2.0 / 3.0
        cap += moved / 3.0
    elif priority == "low":
        from_perf, from_cap = perf * 0.4, cap * 0.2
        perf, cap = perf - from_perf, cap - from_cap
        cost += from_perf + from_cap
    else:
        return w
    # re-normalize against float drift so the model validator's tolerance always holds
    total = cap + cost + perf + avail
    return config.SelectionWeights(
        capability=cap / total, cost=cost / total, performance=perf / total,
        availability=avail / total, value_usd=w.value_usd,
    )


def _needs(request: ModelRequest) -> tuple[tuple[str, ...], _ImageSizes]:
    """What a request needs of a model besides room: the capabilities
    (``ModelRequest.capabilities_needed``) and each image's (size, detail), from which each
    model's image tokens follow. A prompt alone needs its ``required_capabilities`` and has no
    image: answered without looking further (the plain path stays as fast as it was)."""
    if request.messages is None and not request.tools and request.response_format is None:
        return request.required_capabilities, ()
    needed = request.capabilities_needed()
    if "vision" not in needed:
        return needed, ()
    return needed, tuple((image.size, image.detail) for image in request.images())


def _shape_reason(
    m: _Model, request: ModelRequest, required: frozenset[str], exclude: frozenset[str]
) -> str | None:
    c = request.constraints
    if request.model_id is not None and m.id != request.model_id:
        return "not the pinned model"
    if m.id in exclude:
        return "already tried"
    if not m.enabled:
        return "disabled"
    if c.allowed_providers is not None and m.provider not in c.allowed_providers:
        return f"provider {m.provider} not allowed"
    if m.provider in c.excluded_providers:
        return f"provider {m.provider} excluded"
    if c.allowed_models is not None and m.id not in c.allowed_models:
        return "model not allowed"
    if m.id in c.excluded_models:
        return "model excluded"
    if not required <= m.caps:
        return "missing capabilities: " + ", ".join(sorted(required - m.caps))
    return None


def reliability_part(success_rate: float, latency_ms: float) -> float:
    """The success-rate and latency part of the performance sub-score: ``0.3 · success_rate +
    0.3 / (1 + latency_ms / 1000)``, with the success rate to the nearest 0.01 and the latency in
    whole 100 ms steps, rounded down (``RELIABILITY_RESOLUTION``; see the module docstring)."""
    success_step, latency_step = RELIABILITY_RESOLUTION
    success = round(success_rate / success_step) * success_step
    latency = floor(latency_ms / latency_step) * latency_step
    return 0.3 * success + 0.3 / (1.0 + latency / LATENCY_REF_MS)


def _shrink(prior: float, observed: float, n: int) -> float:
    return (PRIOR_STRENGTH * prior + n * observed) / (PRIOR_STRENGTH + n)


def _tenths(x: float) -> float:
    """``x`` (a headroom in [0, 1]) to the nearest tenth: a model that has used under 5% of
    its limit counts as having all of it (rounding down made any use at all cost 0.05 of
    availability, so whether the limiter's last push came before or after the first lease moved
    choices between otherwise equal runs)."""
    return round(x * 10.0) / 10.0
