"""decide(): presets, constraints, explanations and errors, on the fixture catalog.

The choices the README promises for the shipped catalog: tests/test_shipped_catalog.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from routedllm import Catalog, NoEligibleModelError, Policy, Request, decide
from routedllm.core.errors import InvalidRequestError, UnknownModelError, UnknownTagError
from tests.conftest import fixture_catalog, user

IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What does this chart show?"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ],
    }
]


def route(catalog: Catalog, tags=None, messages=None, **policy):
    return decide(catalog, Policy(**policy), Request(messages=messages or user("hello"), tags=tags))


def test_value_explains_floor_fallbacks_and_rejections(catalog: Catalog) -> None:
    d = route(catalog, ["general"])
    assert (d.benchmark, d.score, d.best_score, d.quality_floor) == ("mmlu", 87.0, 89.0, 87.0)
    assert d.fallbacks == ("gpt-4o", "claude-3.5-sonnet")
    reasons = {r.model: r.code for r in d.rejected}
    assert reasons["deepseek-v4-flash"] == reasons["glm-5"] == "quality_floor"
    assert reasons["qwen3.5-397b"] == "unpriced" and reasons["gemini-1.5-pro"] == "unscored"
    assert d.binding_constraint.startswith("quality floor")
    assert set(reasons) | {d.model, *d.fallbacks} == set(catalog.ids)


def test_gap_widens_to_cheaper_models(catalog: Catalog) -> None:
    assert route(catalog, ["general"], quality_gap=3.0).model == "glm-5"
    assert route(catalog, ["general"], quality_gap=3.5).model == "deepseek-v4-flash"
    assert route(catalog, ["general"], quality_gap=0).model == "claude-3.5-sonnet"
    assert route(catalog, ["extraction"], tag_gaps={}).model == "kimi-k2.5"


def test_vision_binding_constraint_is_the_capability(catalog: Catalog) -> None:
    d = route(catalog, None, IMAGE)
    assert d.inferred_tags == ("vision",) and d.model == "kimi-k2.5"
    assert set(d.fallbacks) == {"gpt-4o", "claude-3.5-sonnet"}  # the vision models in the gap
    assert {r.model: r.reason for r in d.rejected}["deepseek-v4-flash"] == "no image_input"
    assert d.binding_constraint.startswith("required capability")


def test_origin_allowed_models_denied_models(catalog: Catalog) -> None:
    assert route(catalog, ["code"], allowed_origins=frozenset({"US"})).model == "gpt-4o"
    assert (
        route(catalog, ["code"], denied_models=frozenset({"deepseek-v4-flash"})).model == "gpt-4o"
    )
    d = route(catalog, ["code"], allowed_models=frozenset({"claude-3.5-sonnet", "gpt-4o"}))
    assert d.ranking == ("gpt-4o", "claude-3.5-sonnet")
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-5'"):
        route(catalog, ["code"], denied_models=frozenset({"gpt-5"}))


def test_unpriced_and_unscored_need_opt_in(catalog: Catalog) -> None:
    d = route(catalog, ["code"], allow_unpriced=True, preset="cheapest")
    # unpriced models rank after every priced one (their cost is unknown, not zero), by score
    assert d.model == "deepseek-v4-flash" and d.fallbacks[-2:] == (
        "qwen3-coder-30b",
        "deepseek-coder",
    )
    assert d.estimated_cost_usd is not None
    d = route(catalog, ["chinese"], allow_unscored=True)
    assert d.model == "qwen3-32b" and set(d.fallbacks) >= {"gemini-1.5-pro", "gpt-4o-mini"}


def test_tools_route_to_a_tool_capable_model(catalog: Catalog) -> None:
    tools = Request(messages=user("hi"), tags=["code"], require=frozenset({"tools"}))
    d = decide(catalog, Policy(), tools)
    assert d.model == "deepseek-v4-flash" and d.required_capabilities == ("tools",)
    assert d.assumed_capabilities == () and d.note is None


def test_unknown_support_is_assumed_after_known_support(catalog: Catalog) -> None:
    """Unknown is not "no": a model whose tool support the catalog leaves unknown may be
    chosen, after the models known to have it; the strict policy refuses it."""
    unknown = catalog.merged(
        {"models": [{"id": "deepseek-v4-flash", "capabilities": {"tools": None}}]}
    )
    tools = Request(messages=user("hi"), tags=["code"], require=frozenset({"tools"}))
    d = decide(unknown, Policy(), tools)
    assert d.model != "deepseek-v4-flash" and d.fallbacks[-1] == "deepseek-v4-flash"
    assert d.binding_constraint.startswith("required capability: cheaper models' support")
    only = decide(unknown, Policy(allowed_models=frozenset({"deepseek-v4-flash"})), tools)
    assert only.model == "deepseek-v4-flash" and only.assumed_capabilities == ("tools",)
    assert only.note is not None and only.note.startswith("assumed:")
    with pytest.raises(NoEligibleModelError, match="tools unknown in the catalog"):
        decide(
            unknown,
            Policy(strict_capabilities=True, allowed_models=frozenset({"deepseek-v4-flash"})),
            tools,
        )
    images = Request(messages=IMAGE)  # image input is never assumed: the call would fail
    no_vision = catalog.merged(
        {
            "models": [
                {"id": m, "capabilities": {"image_input": None}}
                for m in (
                    "kimi-k2.5",
                    "gpt-4o",
                    "claude-3.5-sonnet",
                    "gemini-1.5-pro",
                    "gpt-4o-mini",
                )
            ]
        }
    )
    with pytest.raises(NoEligibleModelError, match="image_input unknown"):
        decide(no_vision, Policy(), images)


def test_context_window_and_long_context(catalog: Catalog) -> None:
    big = user("word " * 130_000)  # ~130k tokens: over the 128K windows
    d = route(catalog, None, big)
    assert "long-context" in d.tags and d.model in ("kimi-k2.5", "claude-3.5-sonnet", "glm-5")
    reasons = {r.model: r.reason for r in d.rejected}
    assert "context window is 128000" in reasons["deepseek-v4-flash"]
    huge = user("word " * 2_100_000)  # over every known window, even 2M
    with pytest.raises(NoEligibleModelError, match="context window is 256000"):
        route(catalog, None, huge)  # Gemini's 2M window has no MMLU score: unscored
    d = decide(
        catalog,
        Policy(),
        Request(messages=user("x"), tags=["general"], input_tokens=127_000, max_output_tokens=2000),
    )
    assert d.model not in ("gpt-4o", "deepseek-v4-flash", "qwen3-32b")


def test_max_cost(catalog: Catalog) -> None:
    d = decide(
        catalog,
        Policy(preset="quality", max_cost_usd=0.001),
        Request(messages=user("hi"), tags=["code"], max_output_tokens=500),
    )
    assert d.model == "deepseek-v4-flash" and d.estimated_cost_usd <= 0.001
    assert {r.code for r in d.rejected if r.model in ("gpt-4o", "claude-3.5-sonnet")} == {
        "max_cost"
    }
    with pytest.raises(NoEligibleModelError, match="above the per-call maximum"):
        route(catalog, ["code"], max_cost_usd=1e-9)


def test_estimated_cost_uses_both_prices(catalog: Catalog) -> None:
    d = decide(
        catalog,
        Policy(),
        Request(messages=user("x"), tags=["code"], input_tokens=1000, max_output_tokens=1000),
    )
    assert d.estimated_cost_usd == pytest.approx((1000 * 0.18 + 1000 * 0.25) / 1e6)
    assert route(catalog, ["code"]).expected_output_tokens == 512


def test_given_tags_win_and_are_validated(catalog: Catalog) -> None:
    d = route(catalog, ["general"], IMAGE)
    assert d.given_tags == ("general",) and d.inferred_tags == () and d.model == "kimi-k2.5"
    with pytest.raises(UnknownTagError, match="known tags"):
        route(catalog, ["poetry"])


def test_decision_is_pure_and_serialisable(catalog: Catalog) -> None:
    policy = Policy()
    request = Request(messages=user("请解释一下量子计算"))
    first, second = decide(catalog, policy, request), decide(catalog, policy, request)
    assert first == second
    data = first.model_dump(mode="json")
    assert data["model"] == "qwen3-32b" and data["rejected"][0].keys() == {
        "model",
        "code",
        "reason",
    }
    assert "binding constraint" in first.render() and "deepseek-v4-flash" in first.render()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quality_gap": -1}, "quality_gap"),
        ({"preset": "smart"}, "preset"),
        ({"tag_gaps": {"poetry": 1}}, "unknown tag 'poetry'"),
        ({"max_cost_usd": -0.5}, "max_cost_usd"),
        ({"require": {"telepathy"}}, "require"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_policy(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        Policy(**kwargs)


def test_bad_request() -> None:
    with pytest.raises(InvalidRequestError, match="max_output_tokens must be positive"):
        Request(messages=user("x"), max_output_tokens=0)
    with pytest.raises(InvalidRequestError, match="unknown capability"):
        Request(messages=user("x"), require=frozenset({"smell"}))
    with pytest.raises(InvalidRequestError, match="empty"):
        decide(fixture_catalog(), Policy(), Request(messages=[]))


def test_unavailable_models_are_skipped_with_the_reason(catalog: Catalog) -> None:
    d = decide(
        catalog,
        Policy(),
        Request(
            messages=user("x"),
            tags=["code"],
            unavailable={"deepseek-v4-flash": "cooling down: 5 errors"},
        ),
    )
    assert d.model == "gpt-4o"
    assert {r.model: r.reason for r in d.rejected}["deepseek-v4-flash"] == "cooling down: 5 errors"


def test_sticky_model_kept_unless_a_constraint_forces_a_change(catalog: Catalog) -> None:
    d = decide(catalog, Policy(), Request(messages=user("x"), tags=["code"], sticky_model="gpt-4o"))
    assert d.model == "gpt-4o" and d.binding_constraint.startswith("sticky") and d.note is None
    assert d.fallbacks[0] == "deepseek-v4-flash"
    d = decide(catalog, Policy(), Request(messages=IMAGE, sticky_model="deepseek-v4-flash"))
    assert (
        d.model == "kimi-k2.5"
        and d.note == "conversation model deepseek-v4-flash not kept: no image_input"
    )


def test_a_free_model_is_cheapest_not_unknown(catalog: Catalog) -> None:
    free = catalog.merged(
        {
            "models": [
                {
                    "id": "free-coder",
                    "name": "Free Coder",
                    "input_usd_per_mtok": 0,
                    "output_usd_per_mtok": 0,
                    "scores": {"humaneval": 93.0},
                }
            ]
        }
    )
    for preset in ("value", "cheapest"):
        d = decide(free, Policy(preset=preset), Request(messages=user("x"), tags=["code"]))
        assert d.model == "free-coder" and d.estimated_cost_usd == 0.0


def test_copies_of_a_policy_do_not_share_stale_eligibility(catalog: Catalog) -> None:
    base = Policy()
    assert route(catalog, ["code"]).model == "deepseek-v4-flash"
    decide(catalog, base, Request(messages=user("x"), tags=["code"]))
    copy = base.model_copy(update={"denied_models": frozenset({"deepseek-v4-flash"})})
    assert decide(catalog, copy, Request(messages=user("x"), tags=["code"])).model == "gpt-4o"
    assert base == Policy()  # deciding leaves no state on the policy


def test_each_image_counts() -> None:
    one = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a"}}]}]
    five = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a"}}] * 5}]
    from routedllm.core.tags import message_features

    assert message_features(five).input_tokens - message_features(one).input_tokens == 4 * 765
