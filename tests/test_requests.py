"""The one request translator: every framework's call becomes the same Request."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError, UnknownTagError
from routedllm.core.requests import (
    MAX_OUTPUT_TOKENS,
    Request,
    call_policy,
    output_limit,
    request_from_call,
    select_tags,
)

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def test_framework_tags_count_only_when_they_are_task_tags() -> None:
    selection = select_tags(names=["code", "team-a", "cod", "code", 3, " chinese "])
    assert selection.tags == ("code", "chinese")
    assert selection.ignored == ("team-a", "cod")  # kept so adapters can say so


def test_routedllm_tags_are_strict_and_win_over_framework_tags() -> None:
    assert select_tags(given=["extraction"], names=["code"]).tags == ("extraction",)
    assert select_tags(given="code, chinese").tags == ("code", "chinese")
    with pytest.raises(UnknownTagError, match="'poetry'"):
        select_tags(given=["poetry"])
    with pytest.raises(InvalidRequestError, match="tag names"):
        select_tags(given=[["code"]])
    with pytest.raises(InvalidRequestError, match="a tag name or a list"):
        select_tags(given=123)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, "positive"),
        (-5, "positive"),
        (True, "positive integer"),
        (1.5, "positive integer"),
        ("100", "positive integer"),
        (10**400, "more than any model"),
    ],
)
def test_max_tokens_must_be_a_sane_positive_integer(value: Any, error: str) -> None:
    with pytest.raises(InvalidRequestError, match=error):
        output_limit(value)


def test_max_tokens_within_reason_passes() -> None:
    assert output_limit(None) is None and output_limit(1) == 1
    assert output_limit(MAX_OUTPUT_TOKENS) == MAX_OUTPUT_TOKENS


def test_the_chat_model_and_the_litellm_body_give_the_same_request() -> None:
    """One rule for tags, capabilities and limits, whichever adapter the call came from."""
    text = [{"type": "text", "text": "What is in this picture?"}, IMAGE]
    from_call = request_from_call(
        [HumanMessage(content=text)],
        tags=["code", "team-a"],
        call_kwargs={"tools": [TOOL], "max_tokens": 64, "response_format": {"type": "json_object"}},
    )
    from_body = Request.from_openai_body(
        {
            "model": "routed/auto",
            "messages": [{"role": "user", "content": text}],
            "tags": ["code", "team-a"],
            "tools": [TOOL],
            "max_tokens": 64,
            "response_format": {"type": "json_object"},
        }
    )
    for request in (from_call, from_body):
        assert request.tags == ("code",) and request.ignored_tags == ("team-a",)
        assert request.require == {"tools", "structured_output", "image_input"}
        assert request.max_output_tokens == 64 and request.model is None


def test_a_text_response_format_needs_no_structured_output() -> None:
    messages = [{"role": "user", "content": "hi"}]
    body = {"messages": messages, "response_format": {"type": "text"}}
    assert Request.from_openai_body(body).require == frozenset()
    marked = request_from_call(messages, call_kwargs={"ls_structured_output_format": {}})
    assert marked.require == {"structured_output"}


def test_body_tags_from_routedllm_key_metadata_and_header_merge() -> None:
    messages = [{"role": "user", "content": "hi"}]
    merged = Request.from_openai_body(
        {"messages": messages, "metadata": {"tags": "chinese,acme"}, "tags": ["code"]},
        tags=["extraction"],
    )
    assert merged.tags == ("extraction", "chinese", "code")
    strict = Request.from_openai_body(
        {"messages": messages, "routedllm_tags": ["summarization"], "tags": ["code"]}
    )
    assert strict.tags == ("summarization",)
    pinned = Request.from_openai_body({"messages": messages, "model": "gpt-4o"}, pin=True)
    assert pinned.model == "gpt-4o"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"model": "routed/auto", "input": "hi"}, "Responses API"),
        ({"model": "routed/auto", "prompt": "hi"}, "/completions"),
        ({"model": "routed/auto", "messages": []}, "no messages to route on"),
        (["not", "a", "body"], "JSON object"),
    ],
)
def test_bodies_that_cannot_be_routed_say_why(body: Any, error: str) -> None:
    with pytest.raises(InvalidRequestError, match=error):
        Request.from_openai_body(body)


def test_a_per_call_policy_override() -> None:
    base = Policy(quality_gap=3)
    assert call_policy(base, None) is base
    assert call_policy(base, {"preset": "quality"}) == Policy(quality_gap=3, preset="quality")
    quality = Policy(preset="quality")
    assert call_policy(base, quality) is quality
    with pytest.raises(InvalidRequestError, match="routedllm_policy"):
        call_policy(base, "quality")
