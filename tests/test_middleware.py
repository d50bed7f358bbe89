"""RoutingMiddleware in LangChain v1 agents (create_agent) on the in-process fake gateway."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip(
    "langchain.agents", reason="RoutingMiddleware needs langchain (the agents extra)"
)

from langchain.agents import create_agent  # noqa: E402
from langchain.agents.middleware import (  # noqa: E402
    ModelCallLimitMiddleware,
    ModelFallbackMiddleware,
    ModelRetryMiddleware,
)
from langchain.agents.structured_output import ProviderStrategy  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import routedllm  # noqa: E402
from routedllm import CostLatencyHandler, MemorySink, Policy, Request, decide  # noqa: E402
from routedllm.adapters.langchain.chat_model import RoutedChatModel  # noqa: E402
from routedllm.adapters.langchain.middleware import ROUTE_KEY, RoutingMiddleware  # noqa: E402
from routedllm.core.decision import STICKY  # noqa: E402
from routedllm.core.errors import UnknownTagError  # noqa: E402
from routedllm.records.routed import RoutedCall  # noqa: E402
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, FakeGateway, test_catalog  # noqa: E402

CATALOG = test_catalog()
POLICY = Policy(allow_unknown_capabilities=True)  # tests do not lean on catalog capability marks
KEY = "sk-test-middleware"
QUESTION = "What's the weather in Paris?"
CODE = "def parse(value):\n    return int(value)\n"
pytestmark = SOCKET_PROBE_ALLOWED


@tool
def get_weather(location: str) -> str:
    """Get the current weather in a city."""
    return CODE  # a tool result that reads as code: it must not re-route the final step


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    temperature: int


def routing(gateway: FakeGateway, **params: Any) -> RoutingMiddleware:
    return RoutingMiddleware(
        **{"catalog": CATALOG, "policy": POLICY, "api_key": KEY, **gateway.clients(), **params}
    )


def ask(text: str = QUESTION) -> dict[str, Any]:
    return {"messages": [HumanMessage(text)]}


def records(messages: list[Any]) -> list[RoutedCall]:
    """The routed-call record of each model answer, in order."""
    calls = [RoutedCall.from_metadata(m.response_metadata.get("routedllm")) for m in messages]
    return [c for c, m in zip(calls, messages, strict=True) if isinstance(m, AIMessage) and c]


def kept(call: RoutedCall) -> bool:
    """True when the call was routed with the run's model kept first (sticky)."""
    return call.decision.binding_constraint == STICKY and not call.pinned


def first_choice(text: str, *tags: str, require: frozenset[str] = frozenset()) -> str:
    request = Request(messages=[HumanMessage(text)], tags=tags or None, require=require)
    return decide(CATALOG, POLICY, request).model


# -- the tool loop --------------------------------------------------------------------------
def test_tool_loop_keeps_the_run_model_for_the_final_answer() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    memory = MemorySink()
    handler = CostLatencyHandler(CATALOG, memory=memory)
    agent = create_agent(
        mw.model, tools=[get_weather], middleware=[mw], system_prompt="You report the weather."
    )
    out = agent.invoke(ask(), config={"callbacks": [handler]})

    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][1].tool_calls[0]["name"] == "get_weather"
    expected = first_choice(QUESTION, "general", require=frozenset({"tools"}))
    assert gateway.models() == [expected, expected]
    assert gateway.requests[0]["messages"][0] == {
        "role": "system",
        "content": "You report the weather.",
    }
    first, final = records(out["messages"])
    assert first.model == final.model == expected
    assert first.tags == final.tags == ("general",)
    assert not kept(first) and "tools" in first.decision.required_capabilities
    assert kept(final)  # the decision for the final step ranked the run's model first
    assert final.decision.fallbacks  # and kept the other models as its fallbacks
    assert out[ROUTE_KEY] == {"tags": ["general"], "source": "inferred", "model": expected}
    # the handler saw each model call's attempt, with the routed model and the run's tags
    assert [(r.model, r.tags, r.outcome) for r in memory.records] == [
        (expected, ("general",), "ok"),
        (expected, ("general",), "ok"),
    ]


def test_without_the_middleware_a_tool_result_does_not_move_the_final_step() -> None:
    """Each call routed on its own re-reads the task, from the latest user turn: a tool
    result (here code) in the conversation does not make the final step code work."""
    gateway = FakeGateway()
    model = RoutedChatModel(catalog=CATALOG, policy=POLICY, api_key=KEY, **gateway.clients())
    out = create_agent(model, tools=[get_weather]).invoke(ask())
    first, final = records(out["messages"])
    assert "code" not in final.tags and final.tags == first.tags


async def test_tool_loop_async() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    agent = create_agent(mw.model, tools=[get_weather], middleware=[mw])
    out = await agent.ainvoke(ask())
    first, final = records(out["messages"])
    assert first.model == final.model and kept(final)
    assert len(set(gateway.models())) == 1 and len(gateway.models()) == 2


def test_run_tags_come_from_the_config_or_the_middleware() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    agent = create_agent(mw.model, tools=[get_weather], middleware=[mw])
    out = agent.invoke(ask(), config={"tags": ["chinese", "my-chain"]})
    assert out[ROUTE_KEY]["tags"] == ["chinese"] and out[ROUTE_KEY]["source"] == "run"
    assert {c.tags for c in records(out["messages"])} == {("chinese",)}
    assert set(gateway.models()) == {
        first_choice(QUESTION, "chinese", require=frozenset({"tools"}))
    }

    fixed = routing(FakeGateway(), tags="code")
    out = create_agent(fixed.model, tools=[get_weather], middleware=[fixed]).invoke(
        ask(), config={"tags": ["chinese"]}
    )
    assert out[ROUTE_KEY]["source"] == "middleware"
    assert {c.tags for c in records(out["messages"])} == {("code",)}


def test_a_new_run_on_the_thread_routes_afresh() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    agent = create_agent(mw.model, middleware=[mw], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    agent.invoke(ask("Hello there"), config=config)
    out = agent.invoke(ask("请用中文解释一下这个问题的答案是什么"), config=config)
    assert out[ROUTE_KEY]["tags"] == ["chinese"]
    assert [c.tags for c in records(out["messages"])] == [("general",), ("chinese",)]


def test_the_run_model_failing_mid_run_falls_back_within_the_step() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)

    @tool
    def lookup(city: str) -> str:
        """Look a city up (and, in this test, break the model that called the tool)."""
        gateway.faults[gateway.models()[-1]] = "500"
        return "sunny"

    memory = MemorySink()
    agent = create_agent(mw.model, tools=[lookup], middleware=[mw])
    out = agent.invoke(ask(), config={"callbacks": [CostLatencyHandler(CATALOG, memory=memory)]})
    first, final = records(out["messages"])
    # one routed call: the run's model kept first, failed, and its fallback answered
    assert final.model != first.model and kept(final) and final.decision.model == first.model
    assert [(a.model, a.outcome) for a in final.attempts] == [
        (first.model, "InternalServerError"),
        (final.model, "ok"),
    ]
    assert out[ROUTE_KEY]["model"] == final.model
    assert gateway.models() == [first.model, first.model, final.model]
    assert [(r.model, r.outcome) for r in memory.records][1] == (first.model, "InternalServerError")


def test_keep_model_off_routes_each_call_with_the_run_tags() -> None:
    gateway = FakeGateway()
    mw = routing(gateway, keep_model=False)
    out = create_agent(mw.model, tools=[get_weather], middleware=[mw]).invoke(ask())
    first, final = records(out["messages"])
    assert not kept(final) and first.tags == final.tags == ("general",)


# -- structured output ----------------------------------------------------------------------
def test_structured_response_through_a_tool() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    memory = MemorySink()
    agent = create_agent(mw.model, middleware=[mw], response_format=Weather)
    out = agent.invoke(
        ask("Weather for 'Paris', 21 degrees"),
        config={"callbacks": [CostLatencyHandler(CATALOG, memory=memory)]},
    )
    assert out["structured_response"] == Weather(city="Paris", temperature=21)
    (call,) = records(out["messages"])
    assert call.model == gateway.models()[0] and "tools" in call.decision.required_capabilities
    assert gateway.requests[0]["tools"][0]["function"]["name"] == "Weather"
    assert isinstance(out["messages"][-1], ToolMessage)
    assert [r.model for r in memory.records] == [call.model]


def test_structured_response_from_the_provider_after_a_tool_call() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    agent = create_agent(
        mw.model,
        tools=[get_weather],
        middleware=[mw],
        response_format=ProviderStrategy(Weather),
    )
    out = agent.invoke(ask())
    assert isinstance(out["structured_response"], Weather)  # filled in after the tool result
    first, final = records(out["messages"])
    assert first.model == final.model and kept(final)
    assert "structured_output" in final.decision.required_capabilities
    assert gateway.requests[1]["response_format"]["type"] == "json_schema"


# -- composition with LangChain's middlewares -------------------------------------------------
def test_model_fallback_after_routing_answers_when_every_routed_model_fails() -> None:
    gateway = FakeGateway(faults=dict.fromkeys(CATALOG.ids, "500"))
    mw = routing(gateway)
    backup = GenericFakeChatModel(messages=iter([AIMessage("from the backup model")]))
    agent = create_agent(mw.model, middleware=[mw, ModelFallbackMiddleware(backup)])
    out = agent.invoke(ask("Hello"))
    assert out["messages"][-1].content == "from the backup model"
    assert len(gateway.models()) >= 2  # routing tried its ranking before the backup answered


def test_model_retry_around_routing_retries_the_routed_step() -> None:
    gateway = FakeGateway(faults=dict.fromkeys(CATALOG.ids, "500"))
    mw = routing(gateway)
    calls: list[int] = []

    def heal(exc: Exception) -> bool:
        calls.append(1)
        gateway.faults.clear()
        return True

    retry = ModelRetryMiddleware(max_retries=1, retry_on=heal, initial_delay=0, jitter=False)
    out = create_agent(mw.model, middleware=[retry, mw]).invoke(ask("Hello"))
    (call,) = records(out["messages"])
    assert calls == [1] and call.model == gateway.models()[-1]


def test_model_call_limit_stops_a_routed_run() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    limit = ModelCallLimitMiddleware(run_limit=1, exit_behavior="end")
    out = create_agent(mw.model, tools=[get_weather], middleware=[limit, mw]).invoke(ask())
    assert len(gateway.models()) == 1
    assert len(records(out["messages"])) == 1


# -- construction and export ----------------------------------------------------------------
def test_construction_errors_name_the_problem() -> None:
    model = RoutedChatModel(catalog=CATALOG, api_key=KEY)
    with pytest.raises(TypeError, match="not both"):
        RoutingMiddleware(model, policy=POLICY)
    with pytest.raises(TypeError, match="RoutedChatModel"):
        RoutingMiddleware(GenericFakeChatModel(messages=iter([])))  # type: ignore[arg-type]
    with pytest.raises(UnknownTagError):
        RoutingMiddleware(model, tags=["not-a-tag"])
    assert RoutingMiddleware(model, tags="code, chinese").tags == ("code", "chinese")
    assert RoutingMiddleware(model).model is model


def test_routedllm_exports_it_lazily() -> None:
    assert routedllm.RoutingMiddleware is RoutingMiddleware
    probe = (
        "import sys, routedllm; "
        "assert 'langchain.agents' not in sys.modules, 'imported langchain at import time'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_runs_under_asyncio_and_threads_share_one_model() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    agent = create_agent(mw.model, tools=[get_weather], middleware=[mw])

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(agent.ainvoke(ask()), agent.ainvoke(ask("Hello"))))

    outs = asyncio.run(both())
    assert all(len(records(o["messages"])) >= 1 for o in outs)
    assert {r["tags"][0] for r in (o[ROUTE_KEY] for o in outs)} == {"general"}


def test_streamed_agent_run_is_routed_and_recorded() -> None:
    gateway = FakeGateway()
    mw = routing(gateway)
    memory = MemorySink()
    agent = create_agent(mw.model, tools=[get_weather], middleware=[mw])
    chunks = list(
        agent.stream(
            ask(),
            stream_mode="messages",
            config={"callbacks": [CostLatencyHandler(CATALOG, memory=memory)]},
        )
    )
    assert chunks
    models = gateway.models()
    assert len(models) == 2 and len(set(models)) == 1
    assert all(r.model == models[0] for r in memory.records) and len(memory.records) == 2
    assert all(request.get("stream") for request in gateway.requests)


def test_a_run_resumed_after_an_interrupt_keeps_its_route() -> None:
    from langchain.agents.middleware import HumanInTheLoopMiddleware
    from langgraph.types import Command

    gateway = FakeGateway()
    mw = routing(gateway)
    approve = HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})
    agent = create_agent(
        mw.model,
        tools=[get_weather],
        middleware=[mw, approve],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "t1"}, "tags": ["chinese"]}
    paused = agent.invoke(ask(), config=config)
    assert paused[ROUTE_KEY]["tags"] == ["chinese"] and "__interrupt__" in paused
    resumed = agent.invoke(
        Command(resume={"decisions": [{"type": "approve"}]}),
        config={"configurable": {"thread_id": "t1"}},  # the resume carries no tags
    )
    first, final = records(resumed["messages"])
    assert final.tags == ("chinese",) and final.model == first.model and kept(final)


def test_the_shared_model_budget_sees_every_call_of_the_run() -> None:
    from routedllm import LocalBudget
    from routedllm.reliability.budget import BudgetLimits

    budget = LocalBudget(BudgetLimits(max_run_usd=1.0))
    mw = routing(FakeGateway(), budget=budget)
    out = create_agent(mw.model, tools=[get_weather], middleware=[mw]).invoke(ask())
    calls = records(out["messages"])
    status = budget.status()
    assert status.settled_calls == len(calls) == 2
    assert status.spent_usd == pytest.approx(sum(c.cost_usd or 0.0 for c in calls))
