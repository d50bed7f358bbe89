"""Money: estimated and actual cost of a call from token counts and catalog prices.

This is the one place that turns tokens into dollars. A price the catalog lacks makes the
cost unknown (``None``), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from routedllm.core.catalog import ModelCard

_PER_TOKEN = 1e-6  # catalog prices are per 1M tokens


@dataclass(frozen=True, slots=True)
class Cost:
    """A call's cost in USD, split the way bills are; fields are None when unpriced."""

    input_usd: float | None
    output_usd: float | None

    @property
    def total_usd(self) -> float | None:
        if self.input_usd is None or self.output_usd is None:
            return None
        return self.input_usd + self.output_usd


def estimate_cost(card: ModelCard, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated USD for a call of this size, or None when a needed price is missing."""
    pin, pout = card.input_usd_per_mtok, card.output_usd_per_mtok
    if pin is None or pout is None:
        return None
    return (input_tokens * pin + output_tokens * pout) * _PER_TOKEN


def call_cost(
    card: ModelCard, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> Cost:
    """Actual cost from a response's usage.

    ``input_tokens`` includes the cached ones (as OpenAI's ``prompt_tokens`` does); those
    are priced at the catalog's cached-input price when it has one, else as input.
    Reasoning tokens are part of ``output_tokens`` and priced as output.
    """
    if input_tokens < 0 or output_tokens < 0 or cached_input_tokens < 0:
        raise ValueError("token counts cannot be negative")
    pin, pout = card.input_usd_per_mtok, card.output_usd_per_mtok
    input_usd: float | None = None
    if pin is not None:
        cached = min(cached_input_tokens, input_tokens)
        pcached = card.cached_input_usd_per_mtok
        pcached = pin if pcached is None else pcached
        input_usd = ((input_tokens - cached) * pin + cached * pcached) * _PER_TOKEN
    output_usd = None if pout is None else output_tokens * pout * _PER_TOKEN
    return Cost(input_usd, output_usd)
