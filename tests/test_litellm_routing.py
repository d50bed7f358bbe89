"""The routedllm decision applied to LiteLLM request bodies (no litellm needed)."""

from __future__ import annotations

from typing import Any

import pytest

from routedllm import Catalog, Policy, Request, decide
from routedllm.adapters.litellm import route_body, routed_groups
from routedllm.core.decision import Router
from routedllm.core.errors import InvalidRequestError, NoEligibleModelError
from routedllm.core.tags import TAG_NAMES

CODE = "Refactor this function:\ndef add(a, b):\n    return a+b"
CHINESE = "请用中文总结这篇文章的主要观点。"
IMAGE = [
    {"type": "text", "text": "Describe this."},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
]


def body(content: Any, model: str = "routed/auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def test_groups_are_auto_and_one_per_tag() -> None:
    assert routed_groups() == ("routed/auto", *(f"routed/{t}" for t in TAG_NAMES))


@pytest.mark.parametrize(
    ("content", "tag"),
    [(CODE, "code"), (CHINESE, "chinese"), (IMAGE, "vision"), ("Hello!", "general")],
)
def test_auto_infers_tags_and_sets_model_and_fallbacks(
    catalog: Catalog, policy: Policy, content: Any, tag: str
) -> None:
    data = body(content)
    decision = route_body(Router(catalog, policy), data)
    expected = decide(catalog, policy, Request(messages=data["messages"]))
    assert decision is not None and tag in decision.tags
    assert data["model"] == decision.model == expected.model
    assert data["fallbacks"] == list(decision.fallbacks) == list(expected.fallbacks)
    summary = data["metadata"]["routedllm"]
    assert summary["group"] == "routed/auto" and summary["model"] == decision.model
    assert summary["tags"] == list(decision.tags) and summary["policy"] == policy.preset
    assert summary["estimated_input_tokens"] == decision.estimated_input_tokens


def test_tags_from_metadata_header_merge_and_body(catalog: Catalog, policy: Policy) -> None:
    # the proxy merges metadata.tags and the x-litellm-tags header into metadata.tags
    data = body(
        "Hello there.",
        metadata={"tags": ["acme-team", "chinese", "User-Agent: OpenAI"]},
        tags=["code"],
    )
    request = Request.from_openai_body(data)
    assert request.tags == ("chinese", "code")
    assert request.ignored_tags == ("acme-team", "User-Agent: OpenAI")
    decision = route_body(Router(catalog, policy), data)
    assert decision.tags == ("chinese", "code") and decision.given_tags == ("chinese", "code")
    assert data["metadata"]["tags"] == ["acme-team", "chinese", "User-Agent: OpenAI"]


def test_request_tags_from_lists_and_comma_strings() -> None:
    def tags(value: object) -> tuple[str, ...]:
        return tuple(Request.from_openai_body(body("Hi", tags=value)).tags or ())

    assert tags("code, chinese,foo") == ("code", "chinese")
    assert tags(["code", "code", 3, None]) == ("code",)
    assert tags(None) == () and tags(42) == ()


def test_a_tag_group_routes_on_its_tag_first(catalog: Catalog, policy: Policy) -> None:
    data = body("Tell me about tea.", model="routed/chinese")
    decision = route_body(Router(catalog, policy), data)
    assert decision.tags == ("chinese",)
    assert (
        data["model"]
        == decide(catalog, policy, Request(messages=data["messages"], tags=["chinese"])).model
    )
    both = body("Tell me about tea.", model="routed/code", metadata={"tags": ["chinese", "code"]})
    assert route_body(Router(catalog, policy), both).tags == ("code", "chinese")


def test_max_tokens_counts_against_context_windows(catalog: Catalog, policy: Policy) -> None:
    data = body("Extract the totals.", model="routed/extraction", max_tokens=130_000)
    decision = route_body(Router(catalog, policy), data)
    windows = [catalog.get(m).context_window for m in decision.ranking]
    assert all(w is None or w >= 130_000 for w in windows)
    assert any(r.code == "context_window" for r in decision.rejected)
    assert decision.expected_output_tokens == 130_000


def test_images_require_an_image_model_even_with_other_tags(
    catalog: Catalog, policy: Policy
) -> None:
    decision = route_body(Router(catalog, policy), body(IMAGE, model="routed/code"))
    assert "image_input" in decision.required_capabilities
    assert all(catalog.get(m).capabilities.image_input for m in decision.ranking)


def test_tools_route_by_default_and_a_strict_refusal_says_how_to_opt_in(
    catalog: Catalog, policy: Policy
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    decision = route_body(Router(catalog, policy), body("Call f.", tools=tools))
    assert decision is not None and "tools" in decision.required_capabilities
    unknown = catalog.merged(
        {"models": [{"id": c.id, "capabilities": {"tools": None}} for c in catalog]}
    )
    strict = Policy(strict_capabilities=True)
    with pytest.raises(NoEligibleModelError) as info:
        route_body(Router(unknown, strict), body("Call f.", tools=tools))
    assert "ROUTEDLLM_POLICY" in str(info.value) and "ROUTEDLLM_CATALOG" in str(info.value)


def test_structured_output_is_required_for_a_json_schema(catalog: Catalog) -> None:
    lenient = Policy(allow_unknown_capabilities=True)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    decision = route_body(Router(catalog, lenient), body("Give JSON.", response_format=schema))
    assert "structured_output" in decision.required_capabilities
    plain = route_body(
        Router(catalog, lenient), body("Give text.", response_format={"type": "text"})
    )
    assert "structured_output" not in plain.required_capabilities


def test_other_models_pass_through_untouched(catalog: Catalog, policy: Policy) -> None:
    data = body(CODE, model="gpt-4o", fallbacks=["kimi-k2.5"])
    before = dict(data)
    assert route_body(Router(catalog, policy), data) is None
    assert data == before


def test_client_fallbacks_lead_and_bad_metadata_is_replaced(
    catalog: Catalog, policy: Policy
) -> None:
    data = body(CODE, fallbacks=["gemini-1.5-pro"], metadata="not a mapping")
    decision = route_body(Router(catalog, policy), data)
    rest = [m for m in decision.fallbacks if m != "gemini-1.5-pro"]
    assert data["fallbacks"] == ["gemini-1.5-pro", *rest]
    assert data["metadata"]["routedllm"]["model"] == decision.model
    with pytest.raises(InvalidRequestError, match="fallbacks must be a list"):
        route_body(Router(catalog, policy), body(CODE, fallbacks="gpt-4o"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            body("x", model="routed/poetry"),
            "unknown routed model group 'routed/poetry'; known: routed/auto",
        ),
        ({"model": "routed/auto", "messages": []}, "no messages to route on"),
    ],
)
def test_unroutable_bodies_say_why(
    catalog: Catalog, policy: Policy, data: dict, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        route_body(Router(catalog, policy), data)
