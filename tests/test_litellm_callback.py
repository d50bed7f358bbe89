"""LiteLLMHandler in litellm.Router (in this process, against the loopback stand-in upstream):
one CallRecord per attempt, priced with the catalog; the proxy hook's routing; its set-up."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routedllm import Catalog, MemorySink, Policy
from routedllm.core.errors import InvalidRequestError, UnknownModelError
from routedllm.core.pricing import call_cost, estimate_cost
from routedllm.records.ledger import read_ledger
from routedllm.records.schema import CallRecord
from routedllm.testing import ModelSpec, Upstream

if importlib.util.find_spec("litellm") is None:
    pytest.skip(
        "litellm is not installed: pip install 'routedllm[litellm]'", allow_module_level=True
    )
# Before litellm loads: use its bundled price map, never fetch one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402

import routedllm.adapters.litellm as rl  # noqa: E402
from routedllm.adapters.litellm import LiteLLMHandler, RoutedRouter  # noqa: E402
from tests.conftest import fixture_catalog

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

KEY = "ga_TESTSECRET_" + "0" * 16
INTEGRATION = Path(__file__).resolve().parents[1] / "integrations" / "litellm"
CODE = [{"role": "user", "content": "Write a python function that reverses a list."}]
SUMMARY = [{"role": "user", "content": "Summarize: the meeting moved to Tuesday."}]


class Collect:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def emit(self, record: CallRecord) -> None:
        self.records.append(record)

    def wait(self, count: int, timeout: float = 10.0) -> list[CallRecord]:
        """LiteLLM logs after answering: wait for ``count`` records, then check no more come."""
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert len(self.records) == count, self.records
        return sorted(self.records, key=lambda r: r.attempt)


async def await_records(sink: Collect, count: int) -> list[CallRecord]:
    for _ in range(500):
        if len(sink.records) >= count:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    return sink.wait(count, timeout=0)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The packaged catalog plus a model with no prices at all."""
    return fixture_catalog().merged({"models": [{"id": "mystery-1", "name": "Mystery"}]})


@pytest.fixture(scope="module")
def registered(catalog: Catalog) -> Iterator[tuple[LiteLLMHandler, Collect]]:
    """One handler for the module: LiteLLM copies ``litellm.callbacks`` on first use."""
    sink = Collect()
    h = LiteLLMHandler(catalog, sinks=[sink])
    saved = litellm.callbacks
    litellm.callbacks = [h]
    try:
        yield h, sink
    finally:
        litellm.logging_callback_manager._reset_all_callbacks()
        litellm.callbacks = saved


@pytest.fixture
def handler(
    registered: tuple[LiteLLMHandler, Collect], monkeypatch: pytest.MonkeyPatch
) -> LiteLLMHandler:
    monkeypatch.setenv("GLOBAL_API_KEY", KEY)
    registered[1].records.clear()
    return registered[0]


@pytest.fixture
def sink(handler: LiteLLMHandler, registered: tuple[LiteLLMHandler, Collect]) -> Collect:
    return registered[1]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream(
        {"mystery-1": ModelSpec(prompt_tokens=20, completion_tokens=5)}, api_key=KEY
    ) as up:
        yield up


def router(catalog: Catalog, upstream: Upstream) -> RoutedRouter:
    return RoutedRouter.from_catalog(catalog, base_url=upstream.base_url)


def failing_chain(rr: RoutedRouter, upstream: Upstream, group: str, messages: list) -> list[str]:
    """The first three models of the group's ranking: a 500, a 429, then an answer."""
    data = rr.prepare(group, messages)
    chain = [data["model"], *data["fallbacks"]][:3]
    assert len(chain) == 3, "the ranking has room for two fallbacks"
    upstream.models.update(
        {
            chain[0]: ModelSpec(faults={"500": 1.0}),
            chain[1]: ModelSpec(script=["429"]),
            chain[2]: ModelSpec(prompt_tokens=25, completion_tokens=9),
        }
    )
    return chain


async def test_routed_call_is_recorded_and_priced_from_the_catalog(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = router(catalog, upstream)
    decision = rr.prepare("routed/auto", CODE)["metadata"]["routedllm"]
    model = decision["model"]
    upstream.models[model] = ModelSpec(
        reply="def rev(xs): return xs[::-1]",
        answer_model=f"{model}-0613",
        prompt_tokens=30,
        completion_tokens=12,
        cached_tokens=10,
    )
    response = await rr.acompletion("routed/auto", CODE)
    [record] = await await_records(sink, 1)
    assert response.choices[0].message.content == "def rev(xs): return xs[::-1]"
    assert [r.model for r in upstream.requests] == [model]
    card = catalog.get(model)
    assert record.ok and record.model == model and record.attempt == 1
    assert record.answering_model == f"{model}-0613"
    assert record.requested_model == model and record.tags == ("code",)
    assert record.policy == "value" and record.run_id
    assert (record.input_tokens, record.output_tokens, record.cached_input_tokens) == (30, 12, 10)
    assert record.cost_usd == pytest.approx(call_cost(card, 30, 12, 10).total_usd)
    assert record.estimated_cost_usd == pytest.approx(
        estimate_cost(card, decision["estimated_input_tokens"], decision["expected_output_tokens"])
    )
    assert record.ttft_s is None and 0 < record.latency_s < 10
    assert handler.memory.records[-1] == record  # the memory sink took it too


async def test_each_failed_attempt_is_one_record(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = router(catalog, upstream)
    chain = failing_chain(rr, upstream, "routed/summarization", SUMMARY)
    await rr.acompletion("routed/summarization", SUMMARY)
    records = await await_records(sink, 3)
    assert [(r.model, r.attempt, r.outcome) for r in records] == [
        (chain[0], 1, "InternalServerError"),
        (chain[1], 2, "RateLimitError"),
        (chain[2], 3, "ok"),
    ]
    assert [(r.model, r.fault) for r in upstream.requests] == [
        (chain[0], "500"),
        (chain[1], "429"),
        (chain[2], None),
    ]
    assert len({r.run_id for r in records}) == 1
    for failed in records[:2]:
        assert failed.input_tokens == 0 and failed.cost_usd == 0.0 and failed.error
        assert failed.latency_s is not None and failed.ttft_s is None
        assert failed.requested_model == chain[0] and failed.tags == ("summarization",)
    assert records[2].input_tokens == 25 and records[2].requested_model == chain[0]


def test_sync_completion_records_each_attempt_once(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = router(catalog, upstream)
    chain = failing_chain(rr, upstream, "routed/summarization", SUMMARY)
    rr.completion("routed/summarization", SUMMARY)
    records = sink.wait(3)
    assert [(r.model, r.outcome) for r in records] == [
        (chain[0], "InternalServerError"),
        (chain[1], "RateLimitError"),
        (chain[2], "ok"),
    ]
    assert [r.input_tokens for r in records] == [0, 0, 25] and records[0].cost_usd == 0.0
    assert len({r.run_id for r in records}) == 1
    assert [r.attempt for r in records] == [1, 2, 3]


async def test_stream_has_time_to_first_token(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = router(catalog, upstream)
    model = rr.prepare("routed/vision", SUMMARY)["model"]
    upstream.models[model] = ModelSpec(prompt_tokens=25, completion_tokens=9, chunk_delay_s=0.02)
    stream = await rr.acompletion(
        "routed/vision", SUMMARY, stream=True, stream_options={"include_usage": True}
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    [record] = await await_records(sink, 1)
    assert text and record.model == model and record.ok and record.tags == ("vision",)
    assert (record.input_tokens, record.output_tokens) == (25, 9)
    assert 0 < record.ttft_s < record.latency_s
    assert record.output_tokens_per_s == pytest.approx(9 / (record.latency_s - record.ttft_s))


async def test_an_unpriced_model_costs_unknown_not_zero(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = RoutedRouter.from_catalog(catalog, base_url=upstream.base_url, include_unpriced=True)
    response = await rr.acompletion("mystery-1", CODE, tags=["code", "acme"])
    [record] = await await_records(sink, 1)
    assert response._hidden_params.get("response_cost") in (0.0, None)  # LiteLLM's "free"
    assert record.model == "mystery-1" and (record.input_tokens, record.output_tokens) == (20, 5)
    assert record.cost_usd is None and record.savings_usd is None
    assert record.requested_model == "mystery-1" and record.policy is None
    assert record.tags == ("code",)


async def test_pre_call_hook_routes_and_rejects(handler: LiteLLMHandler, catalog: Catalog) -> None:
    data = {"model": "routed/code", "messages": CODE, "metadata": {"tags": []}}
    expected = RoutedRouter(None, catalog=catalog).prepare("routed/code", CODE)
    assert await handler.async_pre_call_hook(None, None, data, "acompletion") is data
    assert data["model"] == expected["model"] and data["fallbacks"] == expected["fallbacks"]
    assert data["metadata"]["routedllm"]["group"] == "routed/code"
    bad = {"model": "routed/haiku", "messages": CODE, "metadata": {}}
    answer = await handler.async_pre_call_hook(None, None, bad, "acompletion")
    assert answer.startswith("routedllm: unknown routed model group 'routed/haiku'")
    assert bad["metadata"]["routedllm"] == {
        "group": "routed/haiku",
        "rejected": "InvalidRequestError",
    }


async def test_a_rejection_is_recorded_once_with_its_reason(
    handler: LiteLLMHandler, sink: Collect
) -> None:
    data = {
        "model": "routed/haiku",
        "messages": CODE,
        "litellm_trace_id": "t-1",
        "metadata": {"tags": ["code"]},
    }
    answer = await handler.async_pre_call_hook(None, None, data, "acompletion")
    assert answer.startswith("routedllm: unknown routed model group 'routed/haiku'")
    # LiteLLM then logs the failure it raised (some releases by both methods): no repeat
    kwargs = {
        "litellm_params": {"acompletion": True, "metadata": data["metadata"]},
        "standard_logging_object": {
            "model": "kimi-k2.5",  # a routed group's static deployment, never called
            "model_id": "abc",
            "trace_id": "t-1",
            "error_str": "400: routedllm: unknown routed model group",
        },
        "exception": ValueError("x"),
    }
    handler.log_failure_event(kwargs, None, None, None)
    await handler.async_log_failure_event(kwargs, None, None, None)
    [record] = sink.records
    assert record.outcome == "InvalidRequestError" and record.model == "routed/haiku"
    assert record.route == "routed/haiku" and record.run_id == "t-1"
    # no request was sent: a known $0, not an unpriced call
    assert record.cost_usd == 0.0 and record.input_tokens == 0
    assert "unknown routed model group 'routed/haiku'" in record.error


async def test_non_chat_calls_to_a_routed_group_are_refused(
    handler: LiteLLMHandler, sink: Collect, catalog: Catalog
) -> None:
    data = {"model": "routed/auto", "input": "hello", "metadata": {}}
    answer = await handler.async_pre_call_hook(None, None, data, "aembedding")
    assert answer == (
        "routedllm: routed/auto routes chat completions only (/chat/completions); send "
        "/embeddings requests to a concrete model name"
    )
    [record] = sink.records
    assert record.model == "routed/auto" and record.outcome == "InvalidRequestError"
    plain = {"model": "gpt-4o", "input": "hello", "metadata": {}}
    assert await handler.async_pre_call_hook(None, None, plain, "aembedding") is plain
    rr = RoutedRouter(None, catalog=catalog)
    with pytest.raises(InvalidRequestError, match="routes chat completions only"):
        await rr.aembedding("routed/auto", input=["hello"])


async def test_client_fallbacks_come_before_the_ranking(
    handler: LiteLLMHandler, catalog: Catalog
) -> None:
    plain = {"model": "routed/code", "messages": CODE, "metadata": {}}
    await handler.async_pre_call_hook(None, None, plain, "acompletion")
    ranking = [plain["model"], *plain["fallbacks"]]
    mine = "gpt-4o" if ranking[0] != "gpt-4o" else "claude-3.5-sonnet"
    data = {
        "model": "routed/code",
        "messages": CODE,
        "metadata": {},
        "fallbacks": [mine, ranking[0], "routed/auto"],
    }
    await handler.async_pre_call_hook(None, None, data, "acompletion")
    assert data["model"] == ranking[0]
    assert data["fallbacks"] == [mine, *(m for m in ranking[1:] if m != mine)]


async def test_unknown_tags_are_warned_once_and_named_in_a_header(
    handler: LiteLLMHandler, caplog: pytest.LogCaptureFixture
) -> None:
    async def ask() -> dict:
        data = {"model": "routed/auto", "messages": CODE, "tags": ["cod", "team-a"]}
        await handler.async_pre_call_hook(None, None, data, "acompletion")
        return data

    with caplog.at_level("WARNING", logger="routedllm"):
        first, second = await ask(), await ask()
    warned = [r for r in caplog.records if "not routedllm task tags" in r.getMessage()]
    assert len(warned) == 1 and "'cod'" in warned[0].getMessage()
    for data in (first, second):
        headers = await handler.async_post_call_response_headers_hook(data, None, None)
        assert headers == {
            "x-litellm-model-group": "routed/auto",
            "x-routedllm-ignored-tags": "cod,team-a",
        }
    assert await handler.async_post_call_response_headers_hook({"model": "x"}, None, None) is None


async def test_failures_before_any_model_are_litellms_to_log(
    handler: LiteLLMHandler, sink: Collect
) -> None:
    class ProxyException(Exception):  # what the proxy's own layers raise, by name
        pass

    unrouted = {
        "litellm_params": {"acompletion": True, "metadata": {}},
        "standard_logging_object": {
            "model": "routed/auto",
            "trace_id": "t-3",
            "error_str": "400: unknown model",
        },
    }
    # some releases log an authentication failure with a stale deployment attached
    auth = {
        "litellm_params": {"metadata": {"model_group": "gpt-4o"}},
        "standard_logging_object": {"model": "openai/gpt-4o", "model_id": "abc", "trace_id": "t-4"},
        "exception": ProxyException("No connected db."),
    }
    for kwargs in (unrouted, auth):
        await handler.async_log_failure_event(kwargs, None, None, None)
        handler.log_failure_event(kwargs, None, None, None)
    assert sink.records == []


async def test_a_stream_cut_midway_is_one_record_with_unknown_usage(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = router(catalog, upstream)
    model = rr.prepare("routed/vision", SUMMARY)["model"]
    upstream.models[model] = ModelSpec(
        script=["cut"], chunk_delay_s=0.01, reply="one two three four five six seven eight"
    )
    received = []
    with pytest.raises(litellm.APIConnectionError):
        stream = await rr.acompletion(
            "routed/vision", SUMMARY, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            received.append(chunk)
    [record] = await await_records(sink, 1)
    assert received and record.model == model and record.outcome == "APIConnectionError"
    assert record.input_tokens is None and record.cost_usd is None  # it may have been billed
    assert record.ttft_s is None and record.tags == ("vision",)


def test_logger_parameter_names_are_the_ones_litellm_passes() -> None:
    for name in (
        "log_success_event",
        "log_failure_event",
        "async_log_success_event",
        "async_log_failure_event",
    ):
        params = list(inspect.signature(getattr(LiteLLMHandler, name)).parameters)
        assert params == ["self", "kwargs", "response_obj", "start_time", "end_time"], name


def test_subclasses_keep_the_proxy_hook() -> None:
    class Mine(LiteLLMHandler):
        pass

    # the proxy calls the hook only when the instance's class itself defines it
    assert "async_pre_call_hook" in vars(Mine) and "async_pre_call_hook" in vars(LiteLLMHandler)


def test_from_env(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("preset: quality\nquality_gap: 5\n", "utf-8")
    h = LiteLLMHandler.from_env({"ROUTEDLLM_LEDGER": str(ledger), "ROUTEDLLM_POLICY": "cheapest"})
    assert h.ledger is not None and h.ledger.path == ledger and h.policy.preset == "cheapest"
    h = LiteLLMHandler.from_env({"ROUTEDLLM_POLICY": str(policy_file)})
    assert h.ledger is None and h.policy == Policy(preset="quality", quality_gap=5)
    with pytest.raises(InvalidRequestError, match="neither a preset"):
        LiteLLMHandler.from_env({"ROUTEDLLM_POLICY": str(tmp_path / "missing.yaml")})
    with pytest.raises(UnknownModelError):
        LiteLLMHandler(baseline_model="no-such-model")


def test_ledger_lines_are_call_records(tmp_path: Path, catalog: Catalog) -> None:
    ledger = tmp_path / "ledger.jsonl"
    h = LiteLLMHandler(catalog, ledger_path=ledger, memory=MemorySink())
    kwargs = {
        "standard_logging_object": {
            "model": "openai/gpt-4o",
            "trace_id": "t-2",
            "startTime": 1_800_000_000.0,
            "endTime": 1_800_000_001.0,
            "completionStartTime": 1_800_000_001.0,
            "stream": None,
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "request_tags": ["extraction", "User-Agent: OpenAI"],
        }
    }
    h.log_success_event(kwargs, None, None, None)
    [record] = read_ledger(ledger)
    assert record.model == "gpt-4o" and record.tags == ("extraction",) and record.ttft_s is None
    assert record.cost_usd == pytest.approx(call_cost(catalog.get("gpt-4o"), 100, 10).total_usd)
    assert record.latency_s == pytest.approx(1.0)


def test_the_configs_callback_paths_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from litellm.proxy.types_utils.utils import get_instance_fn

    monkeypatch.setattr(rl, "_handler", None)
    monkeypatch.setenv("ROUTEDLLM_LEDGER", str(tmp_path / "a.jsonl"))
    config = str(INTEGRATION / "config.yaml")
    packaged = get_instance_fn("routedllm.adapters.litellm.handler", config_file_path=config)
    assert isinstance(packaged, LiteLLMHandler) and packaged is rl.handler
    assert packaged.ledger.path == tmp_path / "a.jsonl"
    custom = get_instance_fn("custom_handler.handler", config_file_path=config)
    assert isinstance(custom, LiteLLMHandler) and custom.policy.quality_gap == 3.0


async def test_a_failed_request_releases_its_hold_and_a_cooled_chain_is_recorded(
    catalog: Catalog,
) -> None:
    from routedllm.adapters.litellm.budgets import ProxyBudgetConfig, ProxyBudgets

    class RouterRateLimitError(Exception):  # LiteLLM's, by name: every model cooling down
        pass

    sink = Collect()
    budgets = ProxyBudgets(ProxyBudgetConfig(max_run_usd=1.0))
    h = LiteLLMHandler(catalog, sinks=[sink], budgets=budgets)
    data = {"model": "routed/code", "messages": CODE, "litellm_trace_id": "t-9", "metadata": {}}
    assert await h.async_pre_call_hook(None, None, data, "acompletion") is data
    held = budgets.budget("global").status()
    assert held.in_flight == 1 and held.reserved_usd > 0
    error = RouterRateLimitError("No deployments available for selected model")
    await h.async_post_call_failure_hook(data, error, None)
    assert budgets.budget("global").status().reserved_usd == 0
    [record] = sink.records
    assert (record.model, record.outcome, record.run_id) == ("routed/code", "cooldown", "t-9")
    assert record.cost_usd == 0.0  # no model was called
    # the skips themselves are no attempt of any model
    await h.async_post_call_failure_deployment_hook({"model": "gpt-4o"}, error, "acompletion")
    assert len(sink.records) == 1


async def test_a_stream_breaking_after_a_logged_failure_is_recorded_by_the_failure_hook(
    catalog: Catalog,
) -> None:
    """LiteLLM logs one failure event per proxied call: a stream that starts after an
    earlier attempt failed is noted as it starts, and its break recorded by the hook."""
    import datetime as dt
    from types import SimpleNamespace

    sink = Collect()
    h = LiteLLMHandler(catalog, sinks=[sink])
    started = dt.datetime.now() - dt.timedelta(seconds=0.5)  # LiteLLM's naive local time

    async def request(call: str, logged_failure: bool) -> dict:
        details = {"current_attempt_api_call_start_time": started, "model": "gpt-4o"}
        if logged_failure:
            details["has_logged_async_failure"] = True
        data = {"model": "routed/code", "messages": CODE, "litellm_trace_id": call}
        data["metadata"] = {}
        assert await h.async_pre_call_hook(None, None, data, "acompletion") is data
        data.update(
            stream=True,
            litellm_call_id=call,
            litellm_logging_obj=SimpleNamespace(model_call_details=details),
            deployment=SimpleNamespace(model_name="gpt-4o"),
        )
        return data

    first_failure = await request("c-1", logged_failure=True)
    await h.async_post_call_response_headers_hook(first_failure, None, None)
    await h.async_post_call_failure_hook(first_failure, ConnectionError("reset"), None)
    await h.async_post_call_failure_hook(first_failure, ConnectionError("reset"), None)
    [record] = sink.records  # once, under the model that streamed
    assert (record.model, record.outcome, record.run_id) == ("gpt-4o", "ConnectionError", "c-1")
    assert record.route == "routed/code" and record.input_tokens is None
    assert record.cost_usd is None and record.latency_s is not None
    assert 0.4 <= record.latency_s < 30
    # LiteLLM's own failure event records a stream whose call had no earlier failure
    only_one = await request("c-2", logged_failure=False)
    await h.async_post_call_response_headers_hook(only_one, None, None)
    await h.async_post_call_failure_hook(only_one, ConnectionError("reset"), None)
    assert len(sink.records) == 1


async def test_a_refusal_on_a_litellm_metadata_endpoint_is_recorded_once(
    handler: LiteLLMHandler, sink: Collect
) -> None:
    # The Responses API and /v1/messages carry the proxy's fields in litellm_metadata, and
    # LiteLLM logs the refusal as a failure of the group's static deployment
    data = {
        "model": "routed/auto",
        "input": "hello",
        "litellm_call_id": "call-9",
        "litellm_trace_id": "t-9",
        "litellm_metadata": {"tags": []},
    }
    answer = await handler.async_pre_call_hook(None, None, data, "aresponses")
    assert "send the Responses API requests to a concrete model name" in answer
    kwargs = {
        "litellm_call_id": "call-9",
        "litellm_params": {"metadata": {}},
        "standard_logging_object": {"model": "kimi-k2.5", "model_id": "abc", "trace_id": "t-9"},
        "exception": Exception("400: {'error': 'routedllm: routed/auto routes chat ...'}"),
    }
    await handler.async_log_failure_event(kwargs, None, None, None)
    handler.log_failure_event(kwargs, None, None, None)
    [record] = sink.records
    assert (record.model, record.route, record.run_id) == ("routed/auto", "routed/auto", "t-9")
    assert record.outcome == "InvalidRequestError"


async def test_attempts_are_counted_per_request_within_a_trace(
    handler: LiteLLMHandler, sink: Collect
) -> None:
    # a conversation's requests may share one litellm_trace_id: each request's own
    # attempts count from 1, and its retries and fallbacks (one call id) go on from there
    def event(call: str) -> dict[str, Any]:
        return {
            "litellm_call_id": call,
            "litellm_params": {"metadata": {}},
            "standard_logging_object": {
                "model": "gpt-4o",
                "model_id": "abc",
                "trace_id": "conversation-1",
                "prompt_tokens": 10,
                "completion_tokens": 5,
            },
        }

    for call in ("call-a", "call-a", "call-b"):
        await handler.async_log_success_event(event(call), None, None, None)
    assert [r.attempt for r in sink.records] == [1, 2, 1]
    assert {r.run_id for r in sink.records} == {"conversation-1"}


async def test_two_router_calls_in_one_trace_each_count_from_one(
    handler: LiteLLMHandler, sink: Collect, upstream: Upstream, catalog: Catalog
) -> None:
    rr = router(catalog, upstream)
    chain = failing_chain(rr, upstream, "routed/summarization", SUMMARY)
    for _ in range(2):
        await rr.acompletion("routed/summarization", SUMMARY, litellm_trace_id="conv-2")
    records = await await_records(sink, 5)
    by_time = sorted(records, key=lambda r: r.ts)
    assert [(r.model, r.attempt) for r in by_time] == [
        (chain[0], 1),
        (chain[1], 2),
        (chain[2], 3),
        (chain[0], 1),  # the second call: its 429 was scripted once, so chain[1] answers
        (chain[1], 2),
    ]
    assert {r.run_id for r in records} == {"conv-2"}
