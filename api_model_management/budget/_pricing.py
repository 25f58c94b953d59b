"""Exact request cost in USD from a model's per-1k-token prices, and the bound on what one call can
use and cost (:func:`usage_bound`): reserved, taken from rate limits and settled within it.

Token meaning (normalized by the adapters, see each adapter's module docstring):

- ``input_tokens`` is **uncached** input; ``cached_tokens`` is the cached part, priced at
  ``cost_per_1k_cached_input_tokens`` when configured, else at the input price.
  OpenAI ``prompt_tokens`` and Gemini ``promptTokenCount`` *include* their cached counts (the
  adapters subtract them); Anthropic ``input_tokens`` *excludes* cache reads (the adapter adds
  cache writes to input and reports cache reads as cached).
- ``output_tokens`` is everything billed as output, reasoning/thinking tokens included.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..config import ModelConfig
from ..errors import InvalidInput

_THOUSAND = Decimal(1000)


def _tokens(name: str, value: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
    return Decimal(value)


def _cached_price(model: ModelConfig) -> Decimal:
    price = model.cost_per_1k_cached_input_tokens
    return model.cost_per_1k_input_tokens if price is None else price


def cost_usd(
    model: ModelConfig, input_tokens: int, output_tokens: int, cached_tokens: int = 0
) -> Decimal:
    """The exact cost of a call: uncached input + cached input + output, each per 1k tokens."""
    cached_price = _cached_price(model)
    total = (
        _tokens("input_tokens", input_tokens) * model.cost_per_1k_input_tokens
        + _tokens("cached_tokens", cached_tokens) * cached_price
        + _tokens("output_tokens", output_tokens) * model.cost_per_1k_output_tokens
    )
    return total / _THOUSAND


@dataclass(frozen=True, slots=True)
class UsageBound:
    """The most tokens one call can be billed for: ``input_tokens`` counts uncached and cached
    input together, ``output_tokens`` everything billed as output (reasoning included)."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def usage_bound(model: ModelConfig, input_token_bound: int, max_tokens: int) -> UsageBound:
    """The one rule for what a call to ``model`` can use (reserved, taken from TPM, settled).

    - input: ``input_token_bound``, capped at the model's ``context_window``, which no input can
      exceed. Callers pass ``ModelRequest.input_token_bound(model.wire_name, provider type)``:
      the UTF-8 bytes of all the text sent (messages, tool definitions, tool calls and results,
      the response schema) plus framing, and for each image the provider's documented rule
      (``_images.image_token_bound``: OpenAI base + per-tile tokens of 512 px tiles, or its
      32 px patch rule, the larger; Anthropic ``w*h/750`` capped at 1,750; Gemini 258 per
      768 px tile; Ollama at least 6,404; an image of unknown size at the provider's largest);
    - output: ``max_tokens``, capped at ``max_output_tokens`` when that is smaller. There is no
      reasoning allowance: ``ModelConfig`` has no field saying a model bills reasoning beyond
      ``max_tokens`` (OpenAI's ``max_completion_tokens``, Anthropic's thinking budget and
      Gemini's ``maxOutputTokens`` all include it).
    """
    output = max_tokens
    if model.max_output_tokens is not None:
        output = min(output, model.max_output_tokens)
    return UsageBound(min(input_token_bound, model.context_window), output)


def worst_case_cost_usd(
    model: ModelConfig, input_token_bound: int, max_tokens: int
) -> Decimal:
    """The most a call can cost: the :func:`usage_bound`, every input token at the higher of the
    uncached and cached input price."""
    bound = usage_bound(model, input_token_bound, max_tokens)
    return _worst_cost(model, bound)


def _worst_cost(model: ModelConfig, bound: UsageBound) -> Decimal:
    input_price = max(model.cost_per_1k_input_tokens, _cached_price(model))
    total = (_tokens("input_tokens", bound.input_tokens) * input_price
             + _tokens("output_tokens", bound.output_tokens) * model.cost_per_1k_output_tokens)
    return total / _THOUSAND


@dataclass(frozen=True, slots=True)
class UsageOverrun:
    """A provider reported more ``metric`` tokens (``input_tokens`` counts cached input too)
    than the call could use."""

    metric: str
    reported: int
    bound: int


@dataclass(frozen=True, slots=True)
class SettledUsage:
    """What a call is charged: ``cost_usd`` (never above the worst case), the tokens counted
    against rate limits (never above the bound), and any overrun of the bound."""

    cost_usd: Decimal
    tokens: int
    overruns: tuple[UsageOverrun, ...]


def settle_usage(model: ModelConfig, bound: UsageBound, input_tokens: int, output_tokens: int,
                 cached_tokens: int = 0) -> SettledUsage:
    """Price the provider-reported usage within ``bound``.

    Usage within the bound is charged exactly (:func:`cost_usd`). Usage beyond it cannot be real
    (or is not what the reservation allowed for) and is an overrun: the counts are clipped to the
    bound (uncached input first, then cached, then output) and the charge is never more than
    :func:`worst_case_cost_usd`, what was reserved."""
    reported_in = input_tokens + cached_tokens
    overruns = tuple(
        UsageOverrun(metric, reported, limit)
        for metric, reported, limit in (("input_tokens", reported_in, bound.input_tokens),
                                        ("output_tokens", output_tokens, bound.output_tokens))
        if reported > limit
    )
    if not overruns:
        cost = cost_usd(model, input_tokens, output_tokens, cached_tokens)
        return SettledUsage(cost, reported_in + output_tokens, ())
    uncached = min(input_tokens, bound.input_tokens)
    cached = min(cached_tokens, bound.input_tokens - uncached)
    output = min(output_tokens, bound.output_tokens)
    cost = min(cost_usd(model, uncached, output, cached), _worst_cost(model, bound))
    return SettledUsage(cost, uncached + cached + output, overruns)
