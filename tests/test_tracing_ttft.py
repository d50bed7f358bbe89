"""Time to first token means one thing: the first chunk with content or a tool call.

A stand-in upstream sends the OpenAI stream's empty role chunk at once and the reply only
after a pause. A plain ChatOpenAI behind CostLatencyHandler and a RoutedChatModel must
both time the reply, not the role chunk, for text and for tool calls alike, so "measure
before you switch" compares the same event.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from routedllm import CostLatencyHandler, Policy, RoutedChatModel
from routedllm.core.decision import decide
from routedllm.core.requests import Request
from routedllm.records.schema import CallRecord
from routedllm.testing import ModelSpec, Upstream
from tests.conftest import fixture_catalog

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

CATALOG = fixture_catalog()
KEY = "ga_TESTSECRET_ttft_0123456789"
PAUSE_S = 0.3  # between chunks: the role chunk comes at once, the reply after this
PROMPT = "summarise the meeting notes"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def _answerer(tools: bool) -> str:
    messages = [{"role": "user", "content": PROMPT}]
    need = frozenset({"tools"}) if tools else frozenset()
    return decide(CATALOG, Policy(), Request(messages=messages, require=need)).model


def _streamed(llm: Any, handler: CostLatencyHandler, tools: bool) -> CallRecord:
    runnable = llm.bind_tools([get_weather]) if tools else llm
    chunks = list(runnable.stream(PROMPT, config={"callbacks": [handler]}))
    assert chunks
    [record] = handler.memory.records
    return record


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool call"])
def test_plain_and_routed_models_time_the_first_reply_chunk(tools: bool) -> None:
    model = _answerer(tools)
    specs = {model: ModelSpec(chunk_delay_s=PAUSE_S, reply=None if tools else "one two three")}
    with Upstream(specs, api_key=KEY) as up:
        plain = _streamed(
            ChatOpenAI(model=model, base_url=up.base_url, api_key=KEY, stream_usage=True),
            CostLatencyHandler(CATALOG),
            tools,
        )
        routed = _streamed(
            RoutedChatModel(base_url=up.base_url, api_key=KEY, catalog=CATALOG, timeout=5),
            CostLatencyHandler(CATALOG),
            tools,
        )
        sent = [r.path for r in up.requests]
    assert len(sent) == 2 and routed.model == plain.model == model
    for record in (plain, routed):
        # the empty role chunk arrived at once; the first content or tool call one pause on
        assert record.ttft_s is not None and PAUSE_S <= record.ttft_s < record.latency_s
        # and the reply took at least one more pause after that (finish, usage)
        assert record.latency_s - record.ttft_s >= PAUSE_S
