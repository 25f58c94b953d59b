"""Exact request cost in USD from a model's per-1k-token prices.

Token meaning (normalized by the adapters, see each adapter's module docstring):

- ``input_tokens`` is **uncached** input; ``cached_tokens`` is the cached part, priced at
  ``cost_per_1k_cached_input_tokens`` when configured, else at the input price.
  OpenAI ``prompt_tokens`` and Gemini ``promptTokenCount`` *include* their cached counts (the
  adapters subtract them); Anthropic ``input_tokens`` *excludes* cache reads (the adapter adds
  cache writes to input and reports cache reads as cached).
- ``output_tokens`` is everything billed as output, reasoning/thinking tokens included.
"""

from __future__ import annotations

from decimal import Decimal

from ..config import ModelConfig
from ..errors import InvalidInput

_THOUSAND = Decimal(1000)


def _tokens(name: str, value: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
    return Decimal(value)


def cost_usd(
    model: ModelConfig, input_tokens: int, output_tokens: int, cached_tokens: int = 0
) -> Decimal:
    """The exact cost of a call: uncached input + cached input + output, each per 1k tokens."""
    cached_price = model.cost_per_1k_cached_input_tokens
    if cached_price is None:
        cached_price = model.cost_per_1k_input_tokens
    total = (
        _tokens("input_tokens", input_tokens) * model.cost_per_1k_input_tokens
        + _tokens("cached_tokens", cached_tokens) * cached_price
        + _tokens("output_tokens", output_tokens) * model.cost_per_1k_output_tokens
    )
    return total / _THOUSAND


def worst_case_cost_usd(
    model: ModelConfig, estimated_input_tokens: int, max_tokens: int
) -> Decimal:
    """The most a call can cost: every input token uncached and all ``max_tokens`` generated
    (capped at the model's ``max_output_tokens`` when that is smaller)."""
    output = max_tokens
    if model.max_output_tokens is not None:
        output = min(output, model.max_output_tokens)
    return cost_usd(model, estimated_input_tokens, output)
