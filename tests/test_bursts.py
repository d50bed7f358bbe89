"""Real agent traffic under pressure: bursts of 429s, capability refusals, cooling models.

On the loopback stand-in upstream (routedllm.testing.Upstream); every call is answered or
fails with a typed error, and the default settings answer what a burst leaves answerable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.tools import tool

from routedllm import (
    Catalog,
    CircuitBreaker,
    CostLatencyHandler,
    Policy,
    Request,
    RoutedLLMError,
    decide,
)
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.testing import ModelSpec, Upstream
from routedllm.testing.faults import unsupported

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

CATALOG = Catalog.default()
KEY = "ga_TESTSECRET_bursts_0123456789"
PROMPT = "summarise the meeting notes {i}"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def ranking(prompt: str, **request: Any) -> tuple[str, ...]:
    messages = [{"role": "user", "content": prompt}]
    return decide(CATALOG, Policy(), Request(messages=messages, **request)).ranking


def model(up: Upstream, **params: Any) -> RoutedChatModel:
    return RoutedChatModel(base_url=up.base_url, api_key=KEY, timeout=5, catalog=CATALOG, **params)


def test_a_429_is_retried_on_the_same_model_before_a_pricier_one() -> None:
    first, second = ranking("hello")[:2]
    with Upstream({first: ModelSpec(script=["429"], retry_after_s=0.2)}) as up:
        started = time.perf_counter()
        reply = model(up).invoke("hello")
        took = time.perf_counter() - started
    record = reply.response_metadata["routedllm"]
    assert [(a["model"], a["outcome"]) for a in record["attempts"]] == [
        (first, "RateLimitError"),
        (first, "ok"),
    ]
    assert record["attempts"][0]["retry_after_s"] == pytest.approx(0.2)
    assert took >= 0.2 and [r.model for r in up.requests] == [first, first]
    assert second not in {r.model for r in up.requests}  # no escalation to a pricier model


def test_a_long_retry_after_falls_back_instead_of_waiting() -> None:
    first, second = ranking("hello")[:2]
    with Upstream({first: ModelSpec(script=["429"], retry_after_s=30)}) as up:
        reply = model(up, max_wait_s=2).invoke("hello")
    assert reply.response_metadata["model_name"] == second
    assert [r.model for r in up.requests] == [first, second]


def test_a_capability_refusal_moves_on_and_is_remembered() -> None:
    first, second = ranking("what is the weather?", require=frozenset({"tools"}))[:2]
    spec = ModelSpec(faults={unsupported("tools"): 1.0})
    with Upstream({first: spec}) as up:
        llm = model(up).bind_tools([get_weather])
        reply = llm.invoke("what is the weather?")
        again = llm.invoke("what is the weather in Paris?")
        plain = model(up).invoke("hello")  # no tools: the model is still fine for text
        sent = [r.model for r in up.requests]
    assert reply.tool_calls and reply.response_metadata["model_name"] == second
    failed = reply.response_metadata["routedllm"]["attempts"][0]
    assert (failed["model"], failed["status"]) == (first, 400)
    # the second call with tools does not try the model again, and says why
    record = again.response_metadata["routedllm"]
    assert again.response_metadata["model_name"] == second
    assert [a["model"] for a in record["attempts"]] == [second]
    assert "the gateway said so" in record["unavailable"][first]
    assert sent[:3] == [first, second, second] and plain.response_metadata["model_name"]


def test_a_call_waits_for_a_cooling_model_instead_of_failing() -> None:
    """Every model that can take the call is cooling down after 429s: the call waits for
    the first to come back (within max_wait_s) instead of raising NoEligibleModelError."""
    vision = [c.id for c in CATALOG if c.capabilities.image_input and c.priced and c.scores]
    specs = {m: ModelSpec(script=["429"], retry_after_s=0.5) for m in vision}
    image = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    with Upstream(specs) as up:
        # a breaker that cools a model for any Retry-After, so all of them are cooling
        llm = model(up, rate_limit_retries=0, breaker=CircuitBreaker(failures=5))
        with pytest.raises(RoutedLLMError):  # each model's one 429: all of them cool down
            llm.invoke([{"role": "user", "content": image}])
        started = time.perf_counter()
        reply = llm.invoke([{"role": "user", "content": image}])
        waited = time.perf_counter() - started
    assert reply.response_metadata["model_name"] in vision
    assert 0.2 < waited < 5


BURST_CALLS, BURST_CONCURRENCY = 150, 32


async def _burst(up: Upstream, llm: RoutedChatModel, handler: CostLatencyHandler) -> int:
    gate = asyncio.Semaphore(BURST_CONCURRENCY)
    answered = 0

    async def one(i: int) -> None:
        nonlocal answered
        async with gate:
            try:
                await llm.ainvoke(PROMPT.format(i=i), config={"callbacks": [handler]})
                answered += 1
            except RoutedLLMError:
                pass

    await asyncio.gather(*(one(i) for i in range(BURST_CALLS)))
    return answered


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_burst_of_429s_and_500s_is_answered_by_default(seed: int) -> None:
    """150 calls, 32 at a time, 10% 429 (Retry-After 1 s) and 10% 500 on every model: the
    default settings answer at least 98%, for no more than the breaker-less run costs."""
    specs = {
        c.id: ModelSpec(faults={"429": 0.1, "500": 0.1}, retry_after_s=1.0)
        for c in CATALOG
        if c.priced
    }
    results = {}
    for name, params in (("default", {}), ("no breaker", {"breaker": None})):
        handler = CostLatencyHandler(CATALOG)
        with Upstream(specs, seed=seed) as up:
            answered = await _burst(up, model(up, **params), handler)
        cost = sum(r.cost_usd or 0.0 for r in handler.memory.records)
        results[name] = (answered, cost)
    print(f"\nburst seed {seed}: {results}")
    answered, cost = results["default"]
    assert answered >= 0.98 * BURST_CALLS
    assert cost <= results["no breaker"][1] * 1.10  # same-model retries, no escalation
