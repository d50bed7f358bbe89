"""Router: the same decisions as decide(), its own bounded state, and pinned models."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from routedllm import Catalog, NoEligibleModelError, Policy, Request, decide
from routedllm.core.decision import PINNED, Router
from routedllm.core.errors import UnknownModelError
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
MESSAGES = {
    "hello": user("hello"),
    "code": user("def f(x):\n    return x\nwhy does this fail?"),
    "chinese": user("请解释一下数据库事务的隔离级别。" * 20),
    "japanese": user("これは日本語の文章です。東京は大きい都市です。" * 20),
    "image": IMAGE,
    "long": user("word " * 40_000),
}
POLICIES = [
    Policy(),
    Policy(preset="quality"),
    Policy(preset="cheapest"),
    Policy(quality_gap=3.0, tag_gaps={}),
    Policy(allow_unpriced=True, allow_unscored=True),
    Policy(allow_unknown_capabilities=True),
    Policy(max_cost_usd=0.001),
    Policy(allowed_origins=frozenset({"US"})),
    Policy(denied_models=frozenset({"deepseek-v4-flash"})),
    Policy(require=frozenset({"tools"})),
]
TAGS = [None, ["general"], ["code"], ["chinese"], ["vision"], ["extraction"], ["code", "chinese"]]
EXTRAS = [
    {},
    {"input_tokens": 127_000, "max_output_tokens": 2000},
    {"unavailable": {"deepseek-v4-flash": "cooling down", "kimi-k2.5": "down"}},
    {"sticky_model": "gpt-4o"},
    {"sticky_model": "deepseek-v4-flash"},
    {"model": "openai/gpt-4o"},
]


def outcome(choose, request: Request) -> object:
    """The decision, or the error's type and message: both must agree."""
    try:
        return choose(request)
    except Exception as exc:  # failures must agree too
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: repr(p)[:60])
def test_router_decides_as_decide_does(catalog: Catalog, policy: Policy) -> None:
    router = Router(catalog, policy)  # one router for every request: its caches fill up
    requests = [
        Request(messages=MESSAGES[m], tags=t, **x)
        for m, t, x in itertools.product(MESSAGES, TAGS, EXTRAS)
    ]
    for request in requests * 2:  # the second pass runs on warm caches
        assert outcome(router.decide, request) == outcome(
            lambda r: decide(catalog, policy, r), request
        ), request


def test_deciding_leaves_the_catalog_and_policy_unchanged(catalog: Catalog) -> None:
    fresh = fixture_catalog()
    cards, info = tuple(fresh), fresh.info
    policy = Policy()
    router = Router(fresh, policy)
    for request in (
        Request(messages=user("hi"), tags=["code"]),
        Request(messages=IMAGE),
        Request(messages=user("hi"), model="openai/gpt-4o"),
    ):
        decide(fresh, policy, request)
        router.decide(request)
    assert not hasattr(fresh, "memo") and not hasattr(fresh, "__dict__")
    assert tuple(fresh) == cards and fresh.info == info
    assert policy == Policy()


def test_router_state_is_bounded(catalog: Catalog) -> None:
    class Small(Router):
        max_plans = 2
        max_floor_rejections = 3

    router = Small(catalog, Policy())
    for tags in (["general"], ["code"], ["chinese"], ["vision"], ["extraction"]):
        router.decide(Request(messages=IMAGE, tags=tags))
        assert len(router._plans) <= 2 and len(router._floor_rejections) <= 3
    assert router.decide(Request(messages=user("x"), tags=["general"])) == decide(
        catalog, Policy(), Request(messages=user("x"), tags=["general"])
    )


def test_router_checks_the_policy_model_lists_up_front(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-5'"):
        Router(catalog, Policy(denied_models=frozenset({"gpt-5"})))
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-5'"):
        Router(catalog, Policy(allowed_models=frozenset({"gpt-5"})))
    assert Router(catalog).policy == Policy()


# -- pinned models ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpt-4o", "openai/gpt-4o", "gpt-4o-2024-08-06"])
def test_pinned_is_that_model_alone_priced_on_its_card(catalog: Catalog, name: str) -> None:
    request = Request(messages=user("x"), tags=["code"], input_tokens=1000, max_output_tokens=100)
    d = Router(catalog, Policy()).decide(dataclasses.replace(request, model=name))
    assert d.pinned and d.model == name and d.name == "GPT-4o"
    assert d.fallbacks == () and d.ranking == (name,) and d.rejected == ()
    assert d.binding_constraint == PINNED and d.note is None
    assert (d.tags, d.benchmark, d.score) == (("code",), "humaneval", 92.5)
    assert d.estimated_cost_usd == pytest.approx((1000 * 2.5 + 100 * 10.0) / 1e6)
    assert "pinned" in d.render()


def test_pinned_decision_infers_tags_and_ignores_routing_preferences(catalog: Catalog) -> None:
    d = decide(
        catalog,
        Policy(preset="cheapest", denied_models=frozenset({"gpt-4o"})),
        Request(messages=IMAGE, model="gpt-4o", sticky_model="deepseek-v4-flash"),
    )
    assert d.pinned and d.model == "gpt-4o" and d.inferred_tags == ("vision",)
    assert d.required_capabilities == ("image_input",) and d.policy == "cheapest"
    assert d.estimated_input_tokens > 765 and d.expected_output_tokens == 512


def test_pinned_model_outside_the_catalog_has_a_note_and_no_cost(catalog: Catalog) -> None:
    d = decide(catalog, Policy(), Request(messages=user("hello"), model="acme/llama-9"))
    assert d.pinned and d.model == d.name == "acme/llama-9" and d.fallbacks == ()
    assert d.score is None and d.estimated_cost_usd is None
    assert d.note is not None and "not in the catalog" in d.note and "cost" in d.note
    assert d.tags == ("general",) and d.binding_constraint == PINNED


def test_pinned_model_without_a_price_says_so(catalog: Catalog) -> None:
    d = decide(
        catalog, Policy(), Request(messages=user("x"), tags=["code"], model="deepseek-coder")
    )
    assert d.score == 91.0 and d.estimated_cost_usd is None
    assert d.note is not None and "no price" in d.note


def test_pinned_model_known_to_lack_a_capability_is_refused(catalog: Catalog) -> None:
    with pytest.raises(NoEligibleModelError, match="deepseek-v4-flash: pinned, but has no image"):
        decide(catalog, Policy(), Request(messages=IMAGE, model="deepseek-v4-flash"))
    # unknown capability: the catalog does not say, so the caller's choice stands
    d = decide(
        catalog,
        Policy(),
        Request(messages=user("x"), model="kimi-k2.5", require=frozenset({"tools"})),
    )
    assert d.model == "kimi-k2.5" and d.required_capabilities == ("tools",)
    # a model outside the catalog cannot be checked either
    assert decide(catalog, Policy(), Request(messages=IMAGE, model="acme/vision")).pinned
