"""RoutedChatModel is a conventional LangChain chat model; its two seams hold.

See src/routedllm/adapters/langchain/seams.py: a LangChain release that changes either
behaviour fails here first.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from routedllm import CostLatencyHandler, Policy, Request, decide
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.adapters.langchain.seams import RunContext
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, FakeGateway, test_catalog

CATALOG = test_catalog()
SRC = Path(__file__).resolve().parents[1] / "src" / "routedllm"
pytestmark = SOCKET_PROBE_ALLOWED


def routed(gateway: FakeGateway, **params: object) -> RoutedChatModel:
    return RoutedChatModel(
        api_key="sk-seams-test-key", catalog=CATALOG, **gateway.clients(), **params
    )  # type: ignore[arg-type]


def ranking(text: str, **request: object) -> tuple[str, ...]:
    messages = [{"role": "user", "content": text}]
    return decide(CATALOG, Policy(), Request(messages=messages, **request)).ranking  # type: ignore[arg-type]


def record_of(chunks: list[Any]) -> dict[str, Any]:
    """The routedllm record of a stream: on exactly one chunk."""
    record = record_of(chunks)
    return record


PUBLIC = ("invoke", "ainvoke", "stream", "astream", "batch", "abatch", "generate", "agenerate")


def test_only_the_chat_model_hooks_are_overridden() -> None:
    own = set(vars(RoutedChatModel))
    assert not own & set(PUBLIC)
    assert not {n for n in own if "stream_v3" in n}
    assert {"_generate", "_agenerate", "_stream", "_astream"} <= own
    assert issubclass(RoutedChatModel, BaseChatModel)


def test_no_module_imports_a_private_langchain_openai_module() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "langchain_openai" and any(p.startswith("_") for p in parts[1:]):
                    offenders.append(f"{path.relative_to(SRC)}: {name}")
    assert offenders == []


def test_stream_routes_on_the_run_tags_and_metadata() -> None:
    """Seam 1: stream() calls _stream without the run manager; the run context carries
    the call's tags and metadata to routing, once."""
    llm = routed(FakeGateway())
    chunks = list(llm.stream("Hello", config={"tags": ["code"]}))
    [record] = [
        c.response_metadata["routedllm"] for c in chunks if "routedllm" in c.response_metadata
    ]
    assert record["tags"] == ["code"] and record["model"] == ranking("Hello", tags=["code"])[0]
    meta = {"metadata": {"routedllm_tags": ["chinese"]}}
    chunks = list(llm.stream("Hello", config=meta))
    [record] = [
        c.response_metadata["routedllm"] for c in chunks if "routedllm" in c.response_metadata
    ]
    assert record["tags"] == ["chinese"]
    # the next call without tags is not routed on the previous call's
    chunks = list(llm.stream("Hello"))
    [record] = [
        c.response_metadata["routedllm"] for c in chunks if "routedllm" in c.response_metadata
    ]
    assert record["tags"] == ["general"]


def test_concurrent_async_streams_keep_their_own_tags() -> None:
    llm = routed(FakeGateway())

    async def one(tag: str) -> list[str]:
        chunks = [c async for c in llm.astream("Hello", config={"tags": [tag]})]
        return [
            c.response_metadata["routedllm"]["tags"]
            for c in chunks
            if "routedllm" in c.response_metadata
        ][0]

    async def many() -> list[list[str]]:
        return await asyncio.gather(*(one(t) for t in ("code", "chinese", "extraction") * 5))

    assert asyncio.run(many()) == [[t] for t in ("code", "chinese", "extraction") * 5]


def test_the_run_context_is_one_handler_among_the_users_callbacks() -> None:
    collector = RunCollectorCallbackHandler()
    llm = routed(FakeGateway(), callbacks=[collector])
    assert isinstance(llm.callbacks, list) and llm.callbacks[0] is collector
    assert sum(isinstance(h, RunContext) for h in llm.callbacks) == 1
    copy = llm.model_copy()
    assert sum(isinstance(h, RunContext) for h in copy.callbacks or ()) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_traces_name_the_model_that_answered(mode: str) -> None:
    """Seam 2: the run starts as "auto"; at its end the tracer's ls_model_name is the
    model that answered (a fallback here), through LangChain's gateway-metadata key."""
    first, second = ranking("Hello")[:2]
    tracer = RunCollectorCallbackHandler()
    llm = routed(FakeGateway(faults={first: "503"}))
    config = {"callbacks": [tracer]}
    if mode == "invoke":
        llm.invoke("Hello", config=config)
    elif mode == "stream":
        list(llm.stream("Hello", config=config))
    elif mode == "ainvoke":
        asyncio.run(llm.ainvoke("Hello", config=config))
    else:

        async def drain() -> None:
            async for _ in llm.astream("Hello", config=config):
                pass

        asyncio.run(drain())
    [run] = tracer.traced_runs
    assert run.extra["metadata"]["ls_model_name"] == second


def test_a_pinned_alias_is_priced_the_same_in_every_place() -> None:
    handler = CostLatencyHandler(CATALOG)
    llm = routed(FakeGateway(), model="openai/gpt-4o")
    reply = llm.invoke("Hello", config={"callbacks": [handler]})
    record = reply.response_metadata["routedllm"]
    [ledger] = handler.memory.records
    assert record["pinned"] is True and reply.response_metadata["model_name"] == "openai/gpt-4o"
    assert record["cost_usd"] is not None and record["cost_usd"] == ledger.cost_usd
    assert ledger.model == "gpt-4o" and record["estimated_cost_usd"] is not None


class Events(BaseCallbackHandler):
    """Counts the LLM events a user's handler sees."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.seen.append("start")

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self.seen.append("token")

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.seen.append("end")


@pytest.mark.parametrize("streaming", [False, True])
def test_a_hook_holding_the_run_drops_the_run_context_from_that_run_alone(
    streaming: bool,
) -> None:
    """With the run manager in hand the hook needs no run context: it leaves the run's
    handlers (so a run with no other handler skips LangChain's dispatch of its end and
    tokens); the user's handlers stay, and the model keeps it for the next call."""
    events = Events()
    llm = routed(FakeGateway(), streaming=streaming)
    handlers: list[BaseCallbackHandler] = [RunContext(), events]
    run = CallbackManagerForLLMRun(run_id=uuid4(), handlers=handlers, inheritable_handlers=[])
    llm._generate([HumanMessage("Hello")], run_manager=run)
    assert run.handlers == [events] and len(handlers) == 2
    assert sum(isinstance(h, RunContext) for h in llm.callbacks or ()) == 1  # type: ignore[union-attr]
    events.seen.clear()
    llm.invoke("Hello", config={"callbacks": [events], "tags": ["code"]})
    assert events.seen[0] == "start" and events.seen[-1] == "end"
    assert ("token" in events.seen) is streaming
    chunks = list(llm.stream("Hello", config={"tags": ["code"]}))
    [record] = [
        c.response_metadata["routedllm"] for c in chunks if "routedllm" in c.response_metadata
    ]
    assert record["tags"] == ["code"]
