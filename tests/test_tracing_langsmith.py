"""LangSmith: what the real SDK sends for routed calls, captured by a loopback server that
answers LangSmith's ingest API (``GET /info``, ``POST /runs/multipart``).

With the one switch (``trace_costs``) and no callbacks passed, each chat model run carries
routedllm's cost in ``usage_metadata``, the answering model as ``ls_model_name`` (also on a
fallback), the routed tags as run tags and the decision summary as run metadata.
"""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import tracing_v2_callback_var
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client

from routedllm import CostLatencyHandler, Policy, RoutedChatModel
from routedllm.core.decision import decide
from routedllm.core.requests import Request
from routedllm.records.langsmith import LangSmithCostTracer, trace_costs
from routedllm.records.routed import RoutedCall
from routedllm.testing import ModelSpec, Upstream
from tests.capture import CaptureServer
from tests.conftest import fixture_catalog

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

CATALOG = fixture_catalog()
KEY = "ga_TESTSECRET_langsmith_0123456789"
CHAT = "summarise the meeting notes"


def _ranking(prompt: str) -> tuple[str, ...]:
    messages = [{"role": "user", "content": prompt}]
    return decide(CATALOG, Policy(), Request(messages=messages)).ranking


def _first(prompt: str) -> str:
    return _ranking(prompt)[0]


@pytest.fixture
def langsmith() -> Iterator[tuple[CaptureServer, Client]]:
    """A capture server speaking LangSmith's ingest API, and a client pointed at it."""
    with CaptureServer({"/info": {"version": "0.10.0", "instance_flags": {}}}) as capture:
        client = Client(api_url=capture.url, api_key="lsv2_pt_test", auto_batch_tracing=True)
        try:
            yield capture, client
        finally:
            tracing_v2_callback_var.set(None)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    first, second = _ranking(CHAT)[:2]
    specs = {
        # once a 429 asking for 30 s: the call falls back at once (max_wait_s=1)
        first: ModelSpec(script=["429"], retry_after_s=30),
        second: ModelSpec(prompt_tokens=900, completion_tokens=40, cached_tokens=600),
    }
    with Upstream(specs, api_key=KEY) as up:
        yield up


def _model(up: Upstream) -> RoutedChatModel:
    return RoutedChatModel(
        base_url=up.base_url, api_key=KEY, timeout=5, max_wait_s=1, catalog=CATALOG
    )


def _sent(capture: CaptureServer) -> dict[str, list[Any]]:
    """Every multipart part the SDK sent, by part name (``patch.<id>.extra``...), in order."""
    parts: dict[str, list[Any]] = {}
    for request in capture.to("/runs/multipart"):
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        for part in email.message_from_bytes(head + request.body).get_payload():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            parts.setdefault(name, []).append(json.loads(payload) if payload else None)
    return parts


def _final(parts: dict[str, list[Any]], run_id: str, field: str = "") -> Any:
    """The last state of a run's field as sent (a patch wins over the post)."""
    suffix = f".{field}" if field else ""
    for op in ("patch", "post"):
        sent = parts.get(f"{op}.{run_id}{suffix}")
        if sent:
            return sent[-1]
    raise AssertionError(f"run {run_id}: no {field or 'run'} sent; parts: {sorted(parts)}")


def _llm_run(parts: dict[str, list[Any]]) -> str:
    """The id of the one chat model run that was sent."""
    (run_id,) = {
        name.split(".")[1]
        for name, sent in parts.items()
        if name.count(".") == 1 and sent[-1].get("run_type") == "llm"
    }
    return run_id


def _flush(tracer: LangSmithCostTracer, client: Client) -> None:
    tracer.wait_for_futures()
    client.flush()


def test_one_switch_puts_cost_model_tags_and_decision_on_the_run(langsmith, upstream) -> None:
    capture, client = langsmith
    handler = CostLatencyHandler(CATALOG)
    tracer = trace_costs(CATALOG, client=client, project_name="routed")
    reply = _model(upstream).invoke(
        CHAT, config={"callbacks": [handler], "tags": ["summarization"]}
    )
    _flush(tracer, client)

    call = RoutedCall.from_metadata(reply.response_metadata["routedllm"])
    assert call is not None and call.answer is not None and call.answer.attempt == 2
    parts = _sent(capture)
    run_id = _llm_run(parts)
    assert run_id == call.answer.run_id
    extra, run = _final(parts, run_id, "extra"), _final(parts, run_id)
    meta = extra["metadata"]
    usage = meta["usage_metadata"]
    # LangSmith's cost columns: routedllm's figure, equal to what the handler recorded
    recorded = sum(r.cost_usd or 0.0 for r in handler.memory.records)
    assert usage["total_cost"] == pytest.approx(call.cost_usd) == pytest.approx(recorded)
    assert usage["input_cost"] + usage["output_cost"] == pytest.approx(usage["total_cost"])
    assert usage["input_tokens"] == call.answer.input_tokens == 900
    assert usage["input_token_details"]["cache_read"] == 600  # LangSmith's token breakdown
    # the answering model, not the first choice that failed
    assert meta["ls_model_name"] == call.model != _first(CHAT)
    assert "routedllm:summarization" in run["tags"] and "routedllm:fallback" in run["tags"]
    assert meta["routedllm"]["decision"]["model"] == _first(CHAT)
    assert meta["routedllm"]["attempts"] == [
        f"{_first(CHAT)}:RateLimitError",
        f"{call.model}:ok",
    ]
    # one tracer: the run was posted once
    assert len(parts[f"post.{run_id}"]) == 1


def test_streamed_and_nested_runs_are_traced_once_with_cost(langsmith, upstream) -> None:
    capture, client = langsmith
    tracer = trace_costs(CATALOG, client=client)
    llm = _model(upstream)
    chain = RunnableLambda(lambda text: text) | llm  # the tracer is inherited by the model
    chunks = list(chain.stream("write a haiku about the sea"))
    _flush(tracer, client)

    routed = next(c for c in chunks if c.response_metadata.get("routedllm"))
    call = RoutedCall.from_metadata(routed.response_metadata["routedllm"])
    assert call is not None and call.streamed and call.answer is not None
    parts = _sent(capture)
    run_id = _llm_run(parts)
    meta = _final(parts, run_id, "extra")["metadata"]
    assert meta["usage_metadata"]["total_cost"] == pytest.approx(call.cost_usd)
    assert meta["ls_model_name"] == call.model
    assert len(parts[f"post.{run_id}"]) == 1
    posted = [name for name in parts if name.startswith("post.") and name.count(".") == 1]
    assert len(posted) == 3  # the sequence, the lambda and the model: no second tracer


def test_without_the_switch_the_answering_model_still_shows(langsmith, upstream) -> None:
    """LangChain's own tracer (what ``LANGSMITH_TRACING=true`` adds): LangSmith names the
    model that answered and has the tokens, but prices them from its own price map."""
    capture, client = langsmith
    # the tracer LANGSMITH_TRACING=true creates, set the way tracing_v2_enabled() sets it
    # (the environment variable itself is cached by langsmith once read)
    tracing_v2_callback_var.set(LangChainTracer(client=client))
    reply = _model(upstream).invoke(CHAT)
    client.flush()

    call = RoutedCall.from_metadata(reply.response_metadata["routedllm"])
    assert call is not None and call.answer is not None and call.answer.attempt == 2
    parts = _sent(capture)
    meta = _final(parts, _llm_run(parts), "extra")["metadata"]
    assert meta["ls_model_name"] == call.model
    assert meta["usage_metadata"]["input_tokens"] > 0
    assert "total_cost" not in meta["usage_metadata"]
