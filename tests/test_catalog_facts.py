"""The packaged catalog carries every published figure exactly, and nothing invented."""

from __future__ import annotations

import pytest

from routedllm import Catalog

# (name, origin, input $/M, output $/M) from the facts' price table and benchmark tables.
PRICES = [
    ("GPT-4o", "US", 2.50, 10.00),
    ("Claude 3.5 Sonnet", "US", 3.00, 15.00),
    ("Gemini 1.5 Pro", "US", 1.25, 5.00),
    ("GPT-4o-mini", "US", 0.15, 0.60),
    ("DeepSeek V4 Flash", "CN", 0.18, 0.25),
    ("Qwen3-32B", "CN", 0.18, 0.28),
    ("GLM-5", "CN", 0.73, 1.92),
    ("Kimi K2.5", "CN", 0.59, 3.00),
    ("Qwen3.5-397B", None, None, 2.34),
    ("Qwen3-Coder-30B", None, None, 0.35),
    ("DeepSeek Coder", None, None, 0.25),
]
SCORES = {
    "mmlu": {
        "Claude 3.5 Sonnet": 89.0,
        "GPT-4o": 88.7,
        "Qwen3.5-397B": 87.5,
        "Kimi K2.5": 87.0,
        "GLM-5": 86.0,
        "DeepSeek V4 Flash": 85.5,
    },
    "humaneval": {
        "Claude 3.5 Sonnet": 93.0,
        "GPT-4o": 92.5,
        "DeepSeek V4 Flash": 92.0,
        "Qwen3-Coder-30B": 91.5,
        "DeepSeek Coder": 91.0,
    },
    "ceval": {
        "GLM-5": 91.0,
        "Kimi K2.5": 90.5,
        "Qwen3-32B": 89.0,
        "GPT-4o": 88.5,
        "DeepSeek V4 Flash": 88.0,
    },
}
RATINGS = {
    "DeepSeek V4 Flash": {"general_quality": 4, "code": 5},
    "GPT-4o": {"general_quality": 5, "code": 5},
    "Qwen3-32B": {"quality": 4, "code": 4, "chinese": 4},
    "GPT-4o-mini": {"quality": 3, "code": 3, "chinese": 3},
    "Kimi K2.5": {"reasoning": 5, "chinese": 5},
    "Claude 3.5 Sonnet": {"reasoning": 5, "chinese": 3},
}


def by_name(catalog: Catalog) -> dict:
    return {card.name: card for card in catalog}


def test_exactly_the_published_models(catalog: Catalog) -> None:
    assert sorted(by_name(catalog)) == sorted(name for name, *_ in PRICES)


@pytest.mark.parametrize(("name", "origin", "pin", "pout"), PRICES)
def test_prices_and_origin(catalog: Catalog, name: str, origin, pin, pout) -> None:
    card = by_name(catalog)[name]
    assert (card.origin, card.input_usd_per_mtok, card.output_usd_per_mtok) == (origin, pin, pout)


def test_output_price_ratios_against_deepseek_v4_flash(catalog: Catalog) -> None:
    cards = by_name(catalog)
    base = cards["DeepSeek V4 Flash"].output_usd_per_mtok
    ratios = {
        "GPT-4o": 40,
        "Claude 3.5 Sonnet": 60,
        "Gemini 1.5 Pro": 20,
        "GPT-4o-mini": 2.4,
        "Qwen3-32B": 1.1,
        "GLM-5": 7.7,
        "Kimi K2.5": 12,
    }
    for name, ratio in ratios.items():
        assert cards[name].output_usd_per_mtok / base == pytest.approx(ratio, abs=0.05)


@pytest.mark.parametrize("bench", sorted(SCORES))
def test_scores_exact_and_missing_stays_missing(catalog: Catalog, bench: str) -> None:
    published = SCORES[bench]
    for card in catalog:
        assert card.score(bench) == published.get(card.name), (card.name, bench)


def test_gemini_and_gpt4o_mini_have_no_score(catalog: Catalog) -> None:
    unscored = {c.name for c in catalog if all(c.score(b) is None for b in SCORES)}
    assert unscored == {"Gemini 1.5 Pro", "GPT-4o-mini"}


def test_head_to_head_attributes(catalog: Catalog) -> None:
    cards = by_name(catalog)
    for name, ratings in RATINGS.items():
        assert cards[name].ratings == ratings
    flash, gpt4o = cards["DeepSeek V4 Flash"], cards["GPT-4o"]
    assert (flash.output_tokens_per_s, gpt4o.output_tokens_per_s) == (60, 50)
    assert flash.context_window == gpt4o.context_window == 128_000
    assert flash.capabilities.image_input is False and gpt4o.capabilities.image_input is True
    assert flash.ttft_p99_s == (1.2, 1.8) and gpt4o.ttft_p99_s == (1.5, 2.0)


# The capability table of the facts, per model: tools, JSON output, strict JSON schema,
# image input, context window. None is "-" (the documentation consulted does not say).
CAPABILITIES = {
    "GPT-4o": (True, True, True, True, 128_000),
    "GPT-4o-mini": (True, True, True, True, 128_000),
    "Claude 3.5 Sonnet": (True, None, None, True, 200_000),
    "Gemini 1.5 Pro": (True, True, None, True, 2_000_000),
    "DeepSeek V4 Flash": (True, True, None, False, 128_000),
    "Qwen3-32B": (True, None, None, False, 32_768),
    "GLM-5": (True, True, None, False, 200_000),
    "Kimi K2.5": (True, True, None, True, 256_000),
}


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_capabilities_carried_exactly_with_their_source(catalog: Catalog, name: str) -> None:
    card = by_name(catalog)[name]
    caps = card.capabilities
    found = (caps.tools, caps.structured_output, caps.json_schema, caps.image_input)
    assert (*found, card.context_window) == CAPABILITIES[name]
    assert caps.source  # where the facts come from


def test_unknown_stays_unknown(catalog: Catalog) -> None:
    """The three models of the benchmark tables only: no capability, window or speed claim."""
    for card in catalog:
        if card.name in CAPABILITIES:
            continue
        caps = card.capabilities
        assert (caps.tools, caps.structured_output, caps.json_schema, caps.image_input) == (
            None,
            None,
            None,
            None,
        )
        assert card.context_window is None and card.output_tokens_per_s is None


def test_provenance(catalog: Catalog) -> None:
    assert catalog.info.as_of == "2026"
    assert "Global API" in catalog.info.source and "0.44" in catalog.info.source
    assert catalog.info.gateway.base_url == "https://global-apis.com/v1"
    assert catalog.info.gateway.api_key_env == "GLOBAL_API_KEY"
