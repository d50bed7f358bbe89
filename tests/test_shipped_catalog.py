"""The shipped catalog: every figure, choice and headline the README and docs promise.

This is the one module a price, score, capability or context-window update in
``src/routedllm/data/catalog.yaml`` should touch (with the docs' figures). Logic tests run
on ``tests/data/fixture_catalog.yaml`` instead (the ``catalog`` fixture in conftest).
Related: ``tests/test_litellm_config.py::test_committed_config_is_current`` checks that the
committed LiteLLM config matches the shipped catalog, and ``tests/test_demo.py`` runs the
demo against it.
"""

from __future__ import annotations

import json

import pytest

from routedllm import Catalog, Policy, Request, decide
from routedllm.cli import main
from routedllm.demo import run_demo
from routedllm.workload import sample_rows
from tests.conftest import user


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.default()


# -- the published figures (docs/catalog.md) ---------------------------------------------
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


def by_name(shipped: Catalog) -> dict:
    return {card.name: card for card in shipped}


def test_exactly_the_published_models(shipped: Catalog) -> None:
    assert sorted(by_name(shipped)) == sorted(name for name, *_ in PRICES)


@pytest.mark.parametrize(("name", "origin", "pin", "pout"), PRICES)
def test_prices_and_origin(shipped: Catalog, name: str, origin, pin, pout) -> None:
    card = by_name(shipped)[name]
    assert (card.origin, card.input_usd_per_mtok, card.output_usd_per_mtok) == (origin, pin, pout)


def test_output_price_ratios_against_deepseek_v4_flash(shipped: Catalog) -> None:
    cards = by_name(shipped)
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
def test_scores_exact_and_missing_stays_missing(shipped: Catalog, bench: str) -> None:
    published = SCORES[bench]
    for card in shipped:
        assert card.score(bench) == published.get(card.name), (card.name, bench)


def test_gemini_and_gpt4o_mini_have_no_score(shipped: Catalog) -> None:
    unscored = {c.name for c in shipped if all(c.score(b) is None for b in SCORES)}
    assert unscored == {"Gemini 1.5 Pro", "GPT-4o-mini"}


def test_head_to_head_attributes(shipped: Catalog) -> None:
    cards = by_name(shipped)
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
def test_capabilities_carried_exactly_with_their_source(shipped: Catalog, name: str) -> None:
    card = by_name(shipped)[name]
    caps = card.capabilities
    found = (caps.tools, caps.structured_output, caps.json_schema, caps.image_input)
    assert (*found, card.context_window) == CAPABILITIES[name]
    assert caps.source  # where the facts come from


def test_unknown_stays_unknown(shipped: Catalog) -> None:
    """The three models of the benchmark tables only: no capability, window or speed claim."""
    for card in shipped:
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


def test_provenance(shipped: Catalog) -> None:
    assert shipped.info.as_of == "2026"
    assert "Global API" in shipped.info.source and "0.44" in shipped.info.source
    assert shipped.info.gateway.base_url == "https://global-apis.com/v1"
    assert shipped.info.gateway.api_key_env == "GLOBAL_API_KEY"


# -- the choices the README promises for the shipped catalog (default gap 2 points) -------
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What does this chart show?"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ],
    }
]


@pytest.mark.parametrize(
    ("preset", "tag", "model"),
    [
        ("value", "code", "deepseek-v4-flash"),
        ("value", "vision", "kimi-k2.5"),
        ("value", "general", "kimi-k2.5"),
        ("value", "chinese", "qwen3-32b"),
        ("value", "extraction", "deepseek-v4-flash"),
        ("value", "classification", "deepseek-v4-flash"),
        ("value", "summarization", "kimi-k2.5"),
        ("value", "long-context", "kimi-k2.5"),
        ("quality", "code", "claude-3.5-sonnet"),
        ("quality", "general", "claude-3.5-sonnet"),
        ("quality", "chinese", "glm-5"),
        ("quality", "vision", "claude-3.5-sonnet"),
        ("cheapest", "code", "deepseek-v4-flash"),
        ("cheapest", "general", "deepseek-v4-flash"),
        ("cheapest", "chinese", "deepseek-v4-flash"),
    ],
)
def test_shipped_choices(shipped: Catalog, preset: str, tag: str, model: str) -> None:
    messages = IMAGE if tag == "vision" else user("hello")
    request = Request(messages=messages, tags=[tag])
    assert decide(shipped, Policy(preset=preset), request).model == model


def test_readme_example_routes_code_to_deepseek_v4_flash(shipped: Catalog) -> None:
    request = Request(messages=user("Fix the off-by-one in my pagination helper"), tags=["code"])
    assert decide(shipped, Policy(), request).model == "deepseek-v4-flash"


# -- the demo's headline (README "Quick start", docs/demo.md) ------------------------------
# The first choice per sample row (the injected fault then moves general-explain-kids from
# kimi-k2.5 to gpt-4o). The vision rows go to kimi-k2.5 (Kimi K2.5 takes images); the
# ratios are 17.0% routed (README, docs/demo.md) and 15.7% estimated.
DEMO_CHOICES = {
    "code-fix-pagination": "deepseek-v4-flash",
    "code-sql-report": "deepseek-v4-flash",
    "code-ts-debounce": "deepseek-v4-flash",
    "code-review-go": "deepseek-v4-flash",
    "general-tradeoffs": "kimi-k2.5",
    "general-incident": "kimi-k2.5",
    "general-email": "kimi-k2.5",
    "extract-invoice": "deepseek-v4-flash",
    "extract-contacts": "deepseek-v4-flash",
    "classify-ticket": "deepseek-v4-flash",
    "classify-sentiment": "deepseek-v4-flash",
    "summarize-postmortem": "kimi-k2.5",
    "zh-customer-reply": "qwen3-32b",
    "zh-summary": "qwen3-32b",
    "zh-explain": "qwen3-32b",
    "vision-chart": "kimi-k2.5",
    "vision-receipt": "kimi-k2.5",
    "general-explain-kids": "kimi-k2.5",
}


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_demo_headline(shipped: Catalog, tmp_path) -> None:
    """18 calls, one fallback, the routed share of the always-GPT-4o cost."""
    run = run_demo(shipped, Policy(), sample_rows(), ledger_path=tmp_path / "calls.jsonl")
    totals = run.totals()
    assert totals["calls"] == 18 and totals["fallbacks"] == 1
    assert run.fault == ("general-explain-kids", "kimi-k2.5")
    assert {row.id: result.records[0].model for row, result in run.rows} == DEMO_CHOICES
    answered = {row.id: result.model for row, result in run.rows}
    assert answered[run.fault[0]] == "gpt-4o"
    assert round(totals["cost_ratio"] * 100, 1) == 17.0


def test_demo_estimate_headline(capsys, monkeypatch) -> None:
    """``routedllm demo --estimate``: the same first choices, from expected output lengths."""
    monkeypatch.delenv("ROUTEDLLM_CATALOG", raising=False)
    assert main(["demo", "--estimate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["id"]: row["model"] for row in data["rows"]} == DEMO_CHOICES
    assert round(data["totals"]["cost_ratio"] * 100, 1) == 15.7
