"""CostLatencyHandler on real LangChain runs of a fake chat model (no network)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

from routedllm import AllAttemptsFailedError, CostLatencyHandler
from routedllm.core.errors import UnknownModelError
from routedllm.records.ledger import read_ledger
from routedllm.records.routed import DecisionSummary, RoutedCall, Skip
from routedllm.records.schema import Usage, build_record
from tests.fakes import FakeChat, RateLimitError


def routed_call(catalog, *, ttft_s: float | None = None) -> RoutedCall:
    """A RoutedCall as RoutedChatModel builds it: a 429 on the first choice, a model passed
    over for its window, and gpt-4o answering, each attempt timed and priced on its own."""
    ts = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    common = {"ts": ts, "tags": ("code",), "policy": "value"}
    failed = build_record(
        catalog,
        "deepseek-v4-flash",
        usage=Usage(0, 0),
        latency_s=0.05,
        outcome="RateLimitError",
        error="RateLimitError: slow down",
        status=429,
        requested_model="deepseek-v4-flash",
        **common,
    )
    ok = build_record(
        catalog,
        "gpt-4o",
        usage=Usage(100, 200),
        latency_s=0.2,
        ttft_s=ttft_s,
        attempt=2,
        requested_model="deepseek-v4-flash",
        answering_model="gpt-4o-2024-08-06",
        estimated_cost_usd=0.0021,
        **common,
    )
    return RoutedCall(
        model="gpt-4o",
        requested_model="deepseek-v4-flash",
        served_model="gpt-4o-2024-08-06",
        tags=("code",),
        policy="value",
        decision=DecisionSummary(model="deepseek-v4-flash", fallbacks=("glm-5", "gpt-4o")),
        attempts=(failed, ok),
        skipped=(Skip(model="glm-5", reason="ContextWindow", detail="window too small"),),
        cost_usd=ok.cost_usd,
        latency_s=0.25,
    )


def test_all_failed_message_counts_requests_sent_and_models_passed_over(catalog) -> None:
    """Two requests went out and one model was passed over for its window: the message
    says so rather than "3 attempts"."""
    call = routed_call(catalog)
    failed = call.model_copy(update={"attempts": call.attempts[:1] * 2})
    text = str(AllAttemptsFailedError(failed))
    assert "(2 attempts failed and 1 model passed over)" in text
    assert "glm-5: skipped (ContextWindow)" in text


def test_plain_chat_model_call_is_priced_from_the_catalog(catalog, tmp_path: Path) -> None:
    handler = CostLatencyHandler(catalog, ledger_path=tmp_path / "calls.jsonl")
    model = FakeChat(model="gpt-4o-mini-2024-07-18", delay_s=0.02, cached_tokens=400)
    run_id = uuid.uuid4()
    model.invoke(
        "x" * 1000, config={"callbacks": [handler], "run_id": run_id, "tags": ["code", "team-a"]}
    )
    [r] = read_ledger(tmp_path / "calls.jsonl")
    assert r == handler.memory.records[0]
    assert r.run_id == str(run_id) and r.parent_run_id is None
    assert r.model == "gpt-4o-mini" and r.answering_model == "gpt-4o-mini-2024-07-18"
    assert r.tags == ("code",)  # run tags outside the vocabulary are not task tags
    assert (r.input_tokens, r.cached_input_tokens, r.output_tokens) == (1000, 400, 200)
    assert r.cost_usd == pytest.approx(
        (1000 * 0.15 + 200 * 0.60) / 1e6
    )  # no cached price: as input
    assert r.baseline_cost_usd == pytest.approx((1000 * 2.5 + 200 * 10) / 1e6)
    assert r.latency_s >= 0.02 and r.ttft_s is None and r.outcome == "ok"


def test_task_tags_follow_the_chat_models_rule(catalog) -> None:
    from routedllm.core.tags import TAGS_KEY

    handler = CostLatencyHandler(catalog)
    config = {"callbacks": [handler], "tags": ["code", "team-a"]}
    FakeChat().invoke("hi", config=config)
    FakeChat().invoke("hi", config={**config, "metadata": {TAGS_KEY: ["chinese"]}})
    FakeChat().invoke("hi", config={**config, "metadata": {TAGS_KEY: ["chinese", "nope"]}})
    # run tags outside the vocabulary are ignored; routedllm_tags win; a bad one never
    # breaks the call from a handler: the run's own tags count then
    assert [r.tags for r in handler.memory.records] == [("code",), ("chinese",), ("code",)]
    _, model = routed_model({})
    reply = model.invoke("hi", config={"tags": ["code"], "metadata": {TAGS_KEY: ["chinese"]}})
    assert reply.response_metadata["routedllm"]["tags"] == ["chinese"]


def test_streamed_call_records_time_to_first_chunk(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    model = FakeChat(delay_s=0.05, chunk_delay_s=0.03, reply="a b c d")
    chunks = list(model.stream("hello", config={"callbacks": [handler]}))
    assert "".join(str(c.content) for c in chunks).split() == ["a", "b", "c", "d"]
    [r] = handler.memory.records
    assert 0.05 <= r.ttft_s < r.latency_s and r.latency_s >= 0.05 + 4 * 0.03
    assert r.input_tokens == 5 and r.output_tokens == 200 and r.cost_usd is not None
    assert r.output_tokens_per_s == pytest.approx(200 / (r.latency_s - r.ttft_s))


async def test_async_stream_records_time_to_first_chunk(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    model = FakeChat(delay_s=0.05, chunk_delay_s=0.02)
    async for _ in model.astream("hello", config={"callbacks": [handler]}):
        pass
    [r] = handler.memory.records
    assert r.ttft_s is not None and 0.05 <= r.ttft_s < r.latency_s


def test_routed_run_delivers_the_routers_attempts_as_recorded(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    call = routed_call(catalog)
    FakeChat(model="gpt-4o", routed=call.to_metadata()).invoke(
        "x" * 100, config={"callbacks": [handler]}
    )
    failed, ok = handler.memory.records  # the skipped model was never called: no record
    assert failed.run_id == ok.run_id is not None
    # the attempts as the router timed and priced them; only the run's id is added
    assert failed.model_copy(update={"run_id": None}) == call.attempts[0]
    assert ok.model_copy(update={"run_id": None}) == call.attempts[1]
    assert (failed.outcome, failed.status, failed.cost_usd) == ("RateLimitError", 429, 0.0)
    assert ok.latency_s == 0.2 and ok.estimated_cost_usd == 0.0021
    stats = handler.memory.summary()
    assert stats["by_model"]["deepseek-v4-flash"]["error_rate"] == 1.0
    assert stats["by_tag"]["code"]["attempts"] == 2


def test_routed_stream_keeps_each_attempts_own_timings(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    call = routed_call(catalog, ttft_s=0.05)
    for _ in FakeChat(model="gpt-4o", routed=call.to_metadata()).stream(
        "hi", config={"callbacks": [handler]}
    ):
        pass
    failed, ok = handler.memory.records
    assert failed.ttft_s is None and failed.latency_s == 0.05
    assert (ok.latency_s, ok.ttft_s) == (0.2, 0.05)  # the fallback's own, not the call's


def test_another_baseline_compares_without_repricing(catalog) -> None:
    handler = CostLatencyHandler(catalog, baseline_model="claude-3.5-sonnet")
    call = routed_call(catalog)
    FakeChat(model="gpt-4o", routed=call.to_metadata()).invoke(
        "hi", config={"callbacks": [handler]}
    )
    ok = handler.memory.records[1]
    assert ok.cost_usd == call.attempts[1].cost_usd
    assert ok.baseline_model == "claude-3.5-sonnet"
    assert ok.baseline_cost_usd == pytest.approx((100 * 3 + 200 * 15) / 1e6)


def test_error_before_any_chunk_records_the_error_type_and_zero_tokens(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    with pytest.raises(RateLimitError):
        FakeChat(fail_after=0).invoke("hi", config={"callbacks": [handler], "tags": ["code"]})
    [r] = handler.memory.records
    assert r.model == "gpt-4o-mini" and r.outcome == "RateLimitError" and not r.ok
    assert r.error == "429 Too Many Requests" and r.tags == ("code",)
    assert r.input_tokens == 0 and r.cost_usd == 0.0 and r.latency_s is not None


def test_error_mid_stream_leaves_usage_unknown(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    with pytest.raises(RateLimitError):
        for _ in FakeChat(fail_after=2).stream("hi", config={"callbacks": [handler]}):
            pass
    [r] = handler.memory.records
    assert r.outcome == "RateLimitError" and r.ttft_s is None
    assert r.input_tokens is None and r.cost_usd is None  # tokens may have been billed


def test_a_routed_error_gives_a_record_per_attempt_sent(catalog) -> None:
    call = routed_call(catalog).model_copy(update={"model": None})

    class Failing(FakeChat):
        def _generate(self, *args, **kwargs):
            raise AllAttemptsFailedError(call)

    handler = CostLatencyHandler(catalog)
    with pytest.raises(AllAttemptsFailedError):
        Failing().invoke("hi", config={"callbacks": [handler]})
    records = handler.memory.records
    assert [(r.attempt, r.model, r.outcome) for r in records] == [
        (1, "deepseek-v4-flash", "RateLimitError"),
        (2, "gpt-4o", "ok"),
    ]
    assert records[0].tags == ("code",)


def test_unknown_model_cost_is_none(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    FakeChat(model="llama-3-70b").invoke("hi", config={"callbacks": [handler]})
    [r] = handler.memory.records
    assert r.model == "llama-3-70b" and r.cost_usd is None and r.savings_usd is None
    assert handler.memory.summary()["total"]["cost_usd"] is None


def test_missing_usage_leaves_cost_unknown(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    FakeChat(report_usage=False).invoke("hi", config={"callbacks": [handler]})
    [r] = handler.memory.records
    assert r.input_tokens is None and r.cost_usd is None


def test_nested_run_records_its_parent(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    chain = RunnableLambda(lambda text: FakeChat().invoke(text))
    chain.invoke("hi", config={"callbacks": [handler]})
    [r] = handler.memory.records
    assert r.parent_run_id is not None and r.parent_run_id != r.run_id


def test_unknown_baseline_fails_at_construction(catalog) -> None:
    with pytest.raises(UnknownModelError, match="gpt-9"):
        CostLatencyHandler(catalog, baseline_model="gpt-9")
    handler = CostLatencyHandler(catalog, baseline_model=None)
    FakeChat().invoke("hi", config={"callbacks": [handler]})
    assert handler.memory.records[0].savings_usd is None


async def test_many_concurrent_async_calls_keep_their_run_ids(catalog, tmp_path: Path) -> None:
    handler = CostLatencyHandler(catalog, ledger_path=tmp_path / "calls.jsonl")
    rng = random.Random(4)
    calls = {uuid.uuid4(): i for i in range(1, 61)}

    async def one(run_id: uuid.UUID, i: int) -> None:
        model = FakeChat(
            output_tokens=i, delay_s=rng.random() / 50, chunk_delay_s=rng.random() / 100
        )
        config = {"callbacks": [handler], "run_id": run_id}
        if i % 2:
            await model.ainvoke("x" * i, config=config)
        else:
            async for _ in model.astream("x" * i, config=config):
                pass

    await asyncio.gather(*(one(run_id, i) for run_id, i in calls.items()))
    records = read_ledger(tmp_path / "calls.jsonl")
    assert len(records) == 60 and handler._runs == {}
    for r in records:
        i = calls[uuid.UUID(r.run_id)]
        assert (r.input_tokens, r.output_tokens) == (i, i)
        assert (r.ttft_s is None) == bool(i % 2)  # streamed calls only


def test_many_calls_from_threads(catalog) -> None:
    handler = CostLatencyHandler(catalog)
    model = FakeChat(delay_s=0.005)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda i: model.invoke("x" * i, config={"callbacks": [handler]}), range(1, 41))
        )
    records = handler.memory.records
    assert sorted(r.input_tokens for r in records) == list(range(1, 41))
    assert len({r.run_id for r in records}) == 40


# -- with the real RoutedChatModel, over the in-process fake gateway (no sockets) -----------
def routed_model(faults: dict[str, str]):
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from tests.fake_gateway import FakeGateway, test_catalog

    catalog = test_catalog()
    clients = FakeGateway(faults=faults).clients()
    model = RoutedChatModel(
        catalog=catalog, api_key="test-key-placeholder", rate_limit_retries=0, **clients
    )
    return catalog, model


CODE_PROMPT = "fix this python function: def f(): return 1/0"


def test_routed_chat_model_fallback_gives_a_record_per_attempt(tmp_path: Path) -> None:
    catalog, model = routed_model({"deepseek-v4-flash": "429"})
    handler = CostLatencyHandler(catalog, ledger_path=tmp_path / "calls.jsonl")
    reply = model.invoke(CODE_PROMPT, config={"callbacks": [handler], "tags": ["code"]})
    failed, ok = read_ledger(tmp_path / "calls.jsonl")
    assert (failed.model, failed.outcome, failed.cost_usd) == (
        "deepseek-v4-flash",
        "RateLimitError",
        0.0,
    )
    assert ok.model == reply.response_metadata["model_name"] != "deepseek-v4-flash"
    assert ok.attempt == 2 and ok.tags == ("code",) and ok.policy == "value"
    assert ok.input_tokens == reply.usage_metadata["input_tokens"] > 0
    assert ok.cost_usd == pytest.approx(reply.response_metadata["routedllm"]["cost_usd"])


def test_routed_chat_model_stream_records_ttft() -> None:
    catalog, model = routed_model({})
    handler = CostLatencyHandler(catalog)
    for _ in model.stream(CODE_PROMPT, config={"callbacks": [handler], "tags": ["code"]}):
        pass
    [r] = handler.memory.records
    assert r.ok and r.ttft_s is not None and r.ttft_s <= r.latency_s
    assert r.output_tokens and r.cost_usd is not None


def test_routed_chat_model_all_failing_records_each_attempt() -> None:
    from routedllm.core.errors import AllAttemptsFailedError

    catalog, model = routed_model(
        {m: "503" for m in ("deepseek-v4-flash", "gpt-4o", "claude-3.5-sonnet")}
    )
    handler = CostLatencyHandler(catalog)
    with pytest.raises(AllAttemptsFailedError):
        model.invoke(CODE_PROMPT, config={"callbacks": [handler], "tags": ["code"]})
    records = handler.memory.records
    assert len(records) >= 2 and len({r.run_id for r in records}) == 1
    assert [r.attempt for r in records] == list(range(1, len(records) + 1))
    assert all(r.outcome == "InternalServerError" and r.cost_usd == 0.0 for r in records)


@pytest.fixture
def llm_cache():
    """LangChain's global LLM cache set to a fresh InMemoryCache; the previous one restored."""
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import get_llm_cache, set_llm_cache

    saved = get_llm_cache()
    set_llm_cache(InMemoryCache())
    try:
        yield
    finally:
        set_llm_cache(saved)


def test_an_llm_cache_hit_is_one_free_record_and_no_replayed_attempts(
    llm_cache, tmp_path: Path
) -> None:
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from tests.fake_gateway import FakeGateway, test_catalog

    catalog, gateway = test_catalog(), FakeGateway(faults={"deepseek-v4-flash": "429"})
    # no breaker: the 429 must not move the second call to another model (another cache key)
    model = RoutedChatModel(
        catalog=catalog,
        api_key="test-key-placeholder",
        breaker=None,
        rate_limit_retries=0,
        **gateway.clients(),
    )
    handler = CostLatencyHandler(catalog, ledger_path=tmp_path / "calls.jsonl")
    config = {"callbacks": [handler], "tags": ["code"]}
    first = model.invoke(CODE_PROMPT, config=config)
    again = model.invoke(CODE_PROMPT, config=config)
    assert again.content == first.content and len(gateway.requests) == 2  # a 429, an answer
    failed, ok, hit = read_ledger(tmp_path / "calls.jsonl")
    assert (failed.outcome, ok.outcome) == ("RateLimitError", "ok")
    assert not failed.cache_hit and not ok.cache_hit and ok.cost_usd > 0
    assert hit.run_id not in (failed.run_id, ok.run_id)
    assert (hit.outcome, hit.error, hit.cache_hit, hit.attempt) == ("ok", None, True, 1)
    assert hit.model == ok.model and hit.tags == ("code",) and hit.policy == "value"
    assert hit.cost_usd == 0.0 and hit.input_tokens == 0 and hit.output_tokens == 0
    assert hit.savings_usd == 0.0  # nothing was sent: no saving against the baseline either
    total = handler.memory.summary()["total"]
    assert total["cost_usd"] == pytest.approx(ok.cost_usd) and total["errors"] == 1
