"""RoutedChatModel behaviour against the in-process fake gateway (no sockets, no cassettes)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any
from uuid import UUID

import openai
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.usage import get_usage_metadata_callback
from langchain_core.globals import set_llm_cache
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler as RunCollector

from routedllm import (
    AllAttemptsFailedError,
    Catalog,
    NoEligibleModelError,
    Policy,
    Request,
    RoutedLLMError,
    decide,
)
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.core.catalog import DEFAULT_BASE_URL
from routedllm.core.errors import InvalidRequestError, UnknownTagError
from routedllm.records.routed import RoutedCall, call_of
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, FakeGateway, test_catalog

CATALOG = test_catalog()
PLANTED_KEY = "sk-planted-9f8e7d6c5b4a39281706"
pytestmark = SOCKET_PROBE_ALLOWED


def routed(gateway: FakeGateway, **params: Any) -> RoutedChatModel:
    """A routed model over the fake gateway; a 429 falls back at once unless a test asks
    for same-model retries (tests/test_bursts.py covers those)."""
    params = {"rate_limit_retries": 0, **params}
    return RoutedChatModel(
        **{"api_key": PLANTED_KEY, "catalog": CATALOG, **gateway.clients(), **params}
    )


def ranking(text: str, **request: Any) -> tuple[str, ...]:
    return decide(CATALOG, Policy(), Request(messages=[HumanMessage(text)], **request)).ranking


@tool
def get_weather(location: str) -> str:
    """Get the current weather in a city."""
    return "sunny"


class Spy(BaseCallbackHandler):
    """Records chat-model starts, ends and streamed tokens."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.ends = 0
        self.tokens: list[str] = []

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self.starts.append(
            {
                "metadata": kw.get("metadata") or {},
                "invocation_params": kw.get("invocation_params") or {},
            }
        )

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.ends += 1

    def on_llm_new_token(self, token: Any, **kw: Any) -> None:
        self.tokens.append(token if isinstance(token, str) else "")


# -- connection -----------------------------------------------------------------------------
def test_key_comes_from_the_catalog_variable_and_base_url_from_the_catalog(
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("GLOBAL_API_KEY", "from-env")
    llm = RoutedChatModel(catalog=CATALOG)
    assert llm.openai_api_key is not None and llm.openai_api_key.get_secret_value() == "from-env"
    assert llm.openai_api_base == CATALOG.info.gateway.base_url == DEFAULT_BASE_URL
    assert str(llm.root_client.base_url).rstrip("/") == DEFAULT_BASE_URL


def test_any_openai_compatible_base_url_and_one_client_for_all_models() -> None:
    gateway = FakeGateway(faults={ranking("Hello")[0]: "503"})
    llm = routed(gateway, base_url="https://llm.internal.example/v1", timeout=7, max_retries=1)
    assert llm.root_client.timeout == 7 and llm.root_client.max_retries == 1
    llm.max_retries = 0
    client = llm.client
    llm.invoke("Hello")
    assert llm.client is client  # the same client served both models
    assert len(gateway.requests) >= 2 and len({r["model"] for r in gateway.requests}) >= 2
    assert set(gateway.urls) == {"https://llm.internal.example/v1/chat/completions"}


def test_missing_key_fails_at_call_time_with_a_clear_error(monkeypatch: Any) -> None:
    monkeypatch.delenv("GLOBAL_API_KEY", raising=False)
    llm = RoutedChatModel(catalog=CATALOG)
    with pytest.raises(RoutedLLMError, match="set GLOBAL_API_KEY or pass api_key="):
        llm.invoke("Hello")
    with pytest.raises(RoutedLLMError, match="GLOBAL_API_KEY"):
        asyncio.run(llm.ainvoke("Hello"))


def test_the_key_never_shows_in_repr_errors_or_logs(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    first = ranking("Hello")[0]
    llm = routed(FakeGateway(faults={m: "401" if m == first else "500" for m in ranking("Hello")}))
    assert PLANTED_KEY not in repr(llm) and PLANTED_KEY not in str(llm)
    assert PLANTED_KEY not in json.dumps(llm.model_dump(mode="json"), default=str)
    with pytest.raises(openai.AuthenticationError) as auth:
        llm.invoke("Hello")
    record = call_of(auth.value)
    assert record is not None and record.attempts[0].status == 401
    assert PLANTED_KEY not in str(auth.value) and PLANTED_KEY not in record.model_dump_json()
    llm = routed(FakeGateway(faults=dict.fromkeys(ranking("Hello"), "500")))
    with pytest.raises(AllAttemptsFailedError) as every:
        llm.invoke("Hello")
    assert PLANTED_KEY not in str(every.value) and PLANTED_KEY not in repr(every.value.call)
    assert caplog.records and PLANTED_KEY not in caplog.text


# -- routing per call -----------------------------------------------------------------------
def test_vocabulary_tags_from_config_route_and_other_tags_are_ignored() -> None:
    gateway = FakeGateway()
    llm = routed(gateway)
    reply = llm.invoke("Fix this", config={"tags": ["my-chain", "code", "seq:step:1"]})
    assert reply.response_metadata["routedllm"]["tags"] == ["code"]
    assert reply.response_metadata["model_name"] == ranking("Fix this", tags=["code"])[0]
    bound = llm.with_config(tags=["chinese"]).invoke("Hello")
    assert bound.response_metadata["routedllm"]["tags"] == ["chinese"]
    own = routed(gateway, tags=["summarization", "team-a"]).invoke("Hello")
    assert own.response_metadata["routedllm"]["tags"] == ["summarization"]


def test_tags_from_metadata_are_validated() -> None:
    llm = routed(FakeGateway())
    reply = llm.invoke("Hello", config={"metadata": {"routedllm_tags": ["extraction"]}})
    assert reply.response_metadata["routedllm"]["tags"] == ["extraction"]
    with pytest.raises(UnknownTagError):
        llm.invoke("Hello", config={"metadata": {"routedllm_tags": ["summarisation"]}})


def test_tags_are_inferred_when_none_are_given() -> None:
    reply = routed(FakeGateway()).invoke("Write a Python function that parses ISO dates.")
    assert reply.response_metadata["routedllm"]["tags"] == ["code"]


def test_tags_reach_the_model_inside_a_chain_and_through_astream_events() -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | routed(FakeGateway())
    reply = chain.invoke({"q": "Hello"}, config={"tags": ["code"]})
    assert reply.response_metadata["routedllm"]["tags"] == ["code"]

    async def events() -> list[Any]:
        out = []
        async for event in chain.astream_events(
            {"q": "Hello"}, version="v2", config={"tags": ["chinese"]}
        ):
            if event["event"] == "on_chat_model_end":
                out.append(event["data"]["output"].response_metadata["routedllm"]["tags"])
        return out

    assert asyncio.run(events()) == [["chinese"]]


def test_policy_set_on_the_model_and_overridden_per_call() -> None:
    quality = decide(CATALOG, Policy(preset="quality"), Request(messages=[HumanMessage("Hello")]))
    llm = routed(FakeGateway())
    assert llm.invoke("Hello").response_metadata["model_name"] == ranking("Hello")[0]
    assert quality.model != ranking("Hello")[0]
    for reply in (
        llm.invoke("Hello", routedllm_policy={"preset": "quality"}),
        llm.bind(routedllm_policy=Policy(preset="quality")).invoke("Hello"),
        llm.invoke("Hello", config={"metadata": {"routedllm_policy": {"preset": "quality"}}}),
        routed(FakeGateway(), policy=Policy(preset="quality")).invoke("Hello"),
    ):
        assert reply.response_metadata["model_name"] == quality.model
        assert reply.response_metadata["routedllm"]["policy"] == "quality"
    with pytest.raises(InvalidRequestError, match="routedllm_policy"):
        llm.invoke("Hello", routedllm_policy="quality")


def test_a_constraint_on_the_policy_limits_the_candidates() -> None:
    llm = routed(FakeGateway(), policy=Policy(allowed_origins=frozenset({"US"})))
    record = llm.invoke("Hello").response_metadata["routedllm"]
    chosen = [record["model"], *record["decision"]["fallbacks"]]
    assert all(CATALOG.get(m).origin == "US" for m in chosen)


def test_model_pin_per_call_and_on_the_model() -> None:
    gateway = FakeGateway()
    reply = routed(gateway).invoke("Hello", model="gpt-4o-mini")
    record = reply.response_metadata["routedllm"]
    assert reply.response_metadata["model_name"] == "gpt-4o-mini" and record["pinned"] is True
    assert record["decision"]["fallbacks"] == [] and record["tags"] == ["general"]
    assert record["decision"]["binding_constraint"].startswith("pinned")
    pinned = routed(gateway, model="glm-5").invoke("Hello")
    assert pinned.response_metadata["model_name"] == "glm-5"
    assert gateway.models() == ["gpt-4o-mini", "glm-5"]


def test_bound_tools_work_by_default_and_a_strict_refusal_says_how_to_opt_in() -> None:
    llm = RoutedChatModel(api_key="k", catalog=Catalog.default(), **FakeGateway().clients())
    reply = llm.bind_tools([get_weather]).invoke("Weather in Paris?")
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "get_weather"
    assert "tools" in reply.response_metadata["routedllm"]["decision"]["required_capabilities"]
    unknown = Catalog.default().merged(
        {"models": [{"id": c.id, "capabilities": {"tools": None}} for c in Catalog.default()]}
    )
    strict = RoutedChatModel(
        api_key="k",
        catalog=unknown,
        policy=Policy(strict_capabilities=True),
        **FakeGateway().clients(),
    )
    with pytest.raises(NoEligibleModelError) as caught:
        strict.bind_tools([get_weather]).invoke("Weather in Paris?")
    message = str(caught.value)
    assert "tools unknown" in message and "strict_capabilities" in message
    assert "'capabilities': {'tools': True}" in message


def test_structured_output_needs_the_capability() -> None:
    catalog = CATALOG.merged(
        {
            "models": [
                {"id": m, "capabilities": {"structured_output": False}}
                for m in ("kimi-k2.5", "gpt-4o")
            ]
        }
    )
    llm = RoutedChatModel(api_key="k", catalog=catalog, **FakeGateway().clients())
    out = llm.with_structured_output(
        {"title": "Answer", "type": "object", "properties": {"a": {"type": "string"}}},
        method="json_schema",
        include_raw=True,
    ).invoke("Hello")
    record = out["raw"].response_metadata["routedllm"]
    assert record["model"] not in ("kimi-k2.5", "gpt-4o") and out["parsed"] == {"a": "example a"}


def test_the_run_names_the_model_that_answered_and_hides_the_route() -> None:
    tracer = RunCollector()
    first, second = ranking("Hello")[:2]
    llm = routed(FakeGateway(faults={first: "429"}))
    llm.invoke("Hello", config={"callbacks": [tracer]}, routedllm_tags=["general"])
    list(llm.stream("Hi there", config={"callbacks": [tracer]}))
    assert len(tracer.traced_runs) == 2  # one run per call, fallback included
    for run in tracer.traced_runs:
        params = run.extra["invocation_params"]
        assert params["model"] == "auto"  # the run starts before routing
        assert not any(k.startswith("_routedllm") or k.startswith("routedllm") for k in params)
    # at the run's end, tracers see the model that answered (a fallback here), not "auto"
    assert tracer.traced_runs[0].extra["metadata"]["ls_model_name"] == second
    assert (
        "lc_gateway_metadata"
        not in tracer.traced_runs[0].outputs["generations"][0][0]["message"]["kwargs"][
            "response_metadata"
        ]
    )


def test_failed_stream_attempts_emit_no_tokens() -> None:
    spy = Spy()
    first = ranking("Hello")[0]
    chunks = list(
        routed(FakeGateway(faults={first: "stream-error"})).stream(
            "Hello", config={"callbacks": [spy]}
        )
    )
    assert (
        "".join(spy.tokens) == "".join(c.text for c in chunks) == "Hello! How can I help you today?"
    )


def test_stream_events_v3_routes_with_the_call_tags() -> None:
    stream = routed(FakeGateway()).stream_events("Hello", version="v3", config={"tags": ["code"]})
    list(stream)
    record = stream.output.response_metadata["routedllm"]
    assert record["tags"] == ["code"] and record["model"] == ranking("Hello", tags=["code"])[0]


def test_batch_routes_each_input_and_generate_each_prompt() -> None:
    llm = routed(FakeGateway())
    replies = llm.batch(["Hello", "写一首关于秋天的诗"])
    assert [r.response_metadata["routedllm"]["tags"] for r in replies] == [["general"], ["chinese"]]
    result = llm.generate([[HumanMessage("Hello")], [HumanMessage("写一首关于秋天的诗")]])
    models = [g[0].message.response_metadata["model_name"] for g in result.generations]
    assert models == [r.response_metadata["model_name"] for r in replies]


# -- fallbacks ------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["timeout", "connect", "404", "502"])
def test_upstream_faults_fall_back(fault: str) -> None:
    first, second = ranking("Hello")[:2]
    reply = routed(FakeGateway(faults={first: fault})).invoke("Hello")
    attempts = reply.response_metadata["routedllm"]["attempts"]
    assert [a["model"] for a in attempts] == [first, second]
    assert attempts[0]["outcome"] not in ("ok", "error") and attempts[1]["outcome"] == "ok"


@pytest.mark.parametrize(
    "fault,error", [("401", openai.AuthenticationError), ("400", openai.BadRequestError)]
)
def test_caller_errors_do_not_fall_back(fault: str, error: type[Exception]) -> None:
    gateway = FakeGateway(faults={ranking("Hello")[0]: fault})
    with pytest.raises(error):
        routed(gateway).invoke("Hello")
    assert len(gateway.requests) == 1


def test_async_fallbacks_and_all_failing() -> None:
    order = ranking("Hello")
    first, second = order[:2]

    async def run() -> tuple[Any, Any]:
        reply = await routed(FakeGateway(faults={first: "429"})).ainvoke("Hello")
        chunks = [c async for c in routed(FakeGateway(faults={first: "500"})).astream("Hello")]
        return reply, chunks

    reply, chunks = asyncio.run(run())
    assert reply.response_metadata["model_name"] == second
    assert [c for c in chunks if "routedllm" in c.response_metadata][0].response_metadata[
        "model_name"
    ] == second
    with pytest.raises(AllAttemptsFailedError) as caught:
        asyncio.run(routed(FakeGateway(faults=dict.fromkeys(order, "503"))).ainvoke("Hello"))
    assert [a.model for a in caught.value.call.attempts] == list(order)


def test_retry_after_cap_bounds_the_deferral() -> None:
    first = ranking("Hello")[0]
    llm = routed(FakeGateway(faults={first: "429"}), retry_after_cap_s=0)
    llm.invoke("Hello")
    assert llm.invoke("Hello").response_metadata["routedllm"]["unavailable"] == {}


# -- what a caller gets back ----------------------------------------------------------------
def test_usage_metadata_keeps_langchain_usage_tracking_working() -> None:
    llm = routed(FakeGateway())
    with get_usage_metadata_callback() as cb:
        llm.invoke("Hello")
        list(llm.stream("Hello"))
        list(llm.stream("Write me 2 haikus."))
    ((model, usage),) = cb.usage_metadata.items()
    assert model == ranking("Hello")[0]
    assert all(isinstance(v, int) for k, v in usage.items() if k.endswith("tokens"))
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def test_record_is_json_and_usage_metadata_holds_ints_only() -> None:
    reply = routed(FakeGateway(cached_tokens=2)).invoke("Hello")
    record = reply.response_metadata["routedllm"]
    assert json.loads(json.dumps(record)) == record
    for key in (
        "model",
        "tags",
        "policy",
        "decision",
        "attempts",
        "estimated_cost_usd",
        "cost_usd",
        "latency_s",
        "ttft_s",
    ):
        assert key in record
    assert {"model", "outcome", "error", "latency_s", "cost_usd"} <= set(record["attempts"][0])
    assert RoutedCall.model_validate(record).to_metadata() == record

    def ints(value: Any) -> bool:
        return (
            all(ints(v) for v in value.values())
            if isinstance(value, dict)
            else isinstance(value, int)
        )

    assert ints(reply.usage_metadata)


def test_unpriced_pinned_model_has_unknown_cost_not_zero() -> None:
    record = (
        routed(FakeGateway()).invoke("Hello", model="not-in-catalog").response_metadata["routedllm"]
    )
    assert record["cost_usd"] is None and record["estimated_cost_usd"] is None
    assert record["attempts"][0]["input_tokens"] > 0


def test_an_llm_cache_hit_costs_nothing() -> None:
    set_llm_cache(InMemoryCache())
    try:
        llm = routed(FakeGateway(), cache=True)
        first = llm.invoke("Hello").response_metadata["routedllm"]
        again = llm.invoke("Hello").response_metadata["routedllm"]
    finally:
        set_llm_cache(None)
    assert first["cost_usd"] > 0 and first["cache_hit"] is False
    assert again["cache_hit"] is True and again["cost_usd"] == 0.0


def test_import_routedllm_does_not_load_openai() -> None:
    code = (
        "import routedllm, sys; "
        "print('openai' in sys.modules, hasattr(routedllm, 'RoutedChatModel'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
