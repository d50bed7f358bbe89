"""OpenTelemetry GenAI metrics and spans, and the LangSmith / Langfuse mappings (offline)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages.ai import add_usage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import routedllm
from routedllm import CostLatencyHandler, OTelSink
from routedllm.records.schema import Usage, build_record
from routedllm.records.telemetry import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    langfuse_cost_details,
    langfuse_usage_details,
    langsmith_usage_metadata,
)
from tests.fakes import FakeChat

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def otel():
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return MeterProvider(metric_readers=[reader]), tracer_provider, reader, exporter


def metrics(reader: InMemoryMetricReader) -> dict[str, object]:
    data = reader.get_metrics_data()
    return {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def points(metric) -> list:
    return list(metric.data.data_points)


def ok_record(catalog, **fields):
    fields.setdefault("usage", Usage(1000, 200, cached_input_tokens=300, reasoning_tokens=50))
    return build_record(
        catalog,
        fields.pop("model", "gpt-4o-mini"),
        ts=T0,
        latency_s=fields.pop("latency_s", 1.5),
        tags=["code"],
        policy="value",
        answering_model="gpt-4o-mini-2024-07-18",
        **fields,
    )


def test_genai_metrics_with_spec_buckets(catalog, otel) -> None:
    meter_provider, _, reader, exporter = otel
    sink = OTelSink(meter_provider=meter_provider)
    sink.emit(ok_record(catalog))  # not streamed
    sink.emit(ok_record(catalog, ttft_s=0.3))  # streamed
    sink.emit(
        build_record(
            catalog,
            "deepseek-v4-flash",
            usage=Usage(0, 0),
            ts=T0,
            latency_s=0.05,
            outcome="RateLimitError",
        )
    )
    sink.emit(ok_record(catalog, model="llama-3-70b"))  # unknown price
    got = metrics(reader)

    duration = got["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    by_error = {p.attributes.get("error.type"): p for p in points(duration)}
    assert tuple(by_error[None].explicit_bounds) == DURATION_BUCKETS
    assert by_error["RateLimitError"].count == 1
    assert by_error["RateLimitError"].attributes["gen_ai.request.model"] == "deepseek-v4-flash"
    ok = next(p for p in points(duration) if p.attributes["gen_ai.request.model"] == "gpt-4o-mini")
    assert ok.count == 2 and ok.sum == pytest.approx(3.0)
    assert ok.attributes["gen_ai.operation.name"] == "chat"
    assert ok.attributes["gen_ai.provider.name"] == "openai"
    assert ok.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert ok.attributes["routedllm.tags"] == "code"

    tokens = got["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    mini = {
        p.attributes["gen_ai.token.type"]: p
        for p in points(tokens)
        if p.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    }
    assert mini["input"].sum == 2000 and mini["output"].sum == 400
    assert tuple(mini["input"].explicit_bounds) == TOKEN_BUCKETS
    assert all(p.attributes["gen_ai.request.model"] != "deepseek-v4-flash" for p in points(tokens))

    [ttfc] = points(got["gen_ai.client.operation.time_to_first_chunk"])
    assert ttfc.count == 1 and ttfc.sum == pytest.approx(0.3)

    cost = got["routedllm.client.cost"]
    assert cost.unit == "USD"
    by_model = {p.attributes["gen_ai.request.model"]: p.value for p in points(cost)}
    assert "llama-3-70b" not in by_model  # unknown is not recorded as 0
    assert by_model["gpt-4o-mini"] == pytest.approx(2 * ok_record(catalog).cost_usd)
    baseline = {
        p.attributes["gen_ai.request.model"]: p.value
        for p in points(got["routedllm.client.baseline_cost"])
    }
    assert baseline["llama-3-70b"] == pytest.approx(ok_record(catalog).baseline_cost_usd)
    assert exporter.get_finished_spans() == ()  # spans are opt-in


def test_spans_opt_in_carry_genai_attributes_and_cost(catalog, otel) -> None:
    meter_provider, tracer_provider, _, exporter = otel
    sink = OTelSink(meter_provider=meter_provider, tracer_provider=tracer_provider, spans=True)
    good = ok_record(catalog, ttft_s=0.3, run_id="r1")
    sink.emit(good)
    sink.emit(
        build_record(
            catalog,
            "gpt-4o",
            usage=Usage(0, 0),
            ts=T0,
            latency_s=0.2,
            outcome="APITimeoutError",
            error="timed out",
            attempt=2,
        )
    )
    ok, failed = exporter.get_finished_spans()
    assert ok.name == "chat gpt-4o-mini" and ok.kind == SpanKind.CLIENT
    assert ok.start_time == int(T0.timestamp() * 1e9)
    assert ok.end_time - ok.start_time == pytest.approx(1.5e9, rel=1e-6)
    a = ok.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1000, 200)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 300
    assert a["gen_ai.usage.reasoning.output_tokens"] == 50
    assert a["gen_ai.usage.cost"] == pytest.approx(good.cost_usd)
    assert a["gen_ai.response.time_to_first_chunk"] == 0.3
    assert a["routedllm.run_id"] == "r1" and tuple(a["routedllm.tags"]) == ("code",)
    assert "error.type" not in a and ok.status.status_code == StatusCode.UNSET
    assert failed.attributes["error.type"] == "APITimeoutError"
    assert (
        failed.status.status_code == StatusCode.ERROR and failed.status.description == "timed out"
    )


def test_handler_feeds_the_otel_sink(catalog, otel) -> None:
    meter_provider, _, reader, _ = otel
    handler = CostLatencyHandler(catalog, sinks=[OTelSink(meter_provider=meter_provider)])
    for _ in FakeChat(delay_s=0.01).stream("hello", config={"callbacks": [handler]}):
        pass
    got = metrics(reader)
    assert points(got["gen_ai.client.operation.time_to_first_chunk"])[0].count == 1
    assert points(got["routedllm.client.cost"])[0].value == pytest.approx(
        handler.memory.records[0].cost_usd
    )


# -- LangSmith ---------------------------------------------------------------------------
def test_langsmith_usage_metadata_is_accepted_by_runtree_set(catalog) -> None:
    from langsmith.run_trees import validate_extracted_usage_metadata

    r = ok_record(catalog)
    usage = langsmith_usage_metadata(r)
    assert validate_extracted_usage_metadata(usage) == usage  # raises on unknown keys
    assert usage["input_token_details"] == {"cache_read": 300}
    assert usage["total_cost"] == pytest.approx(r.cost_usd)
    assert usage["input_cost"] + usage["output_cost"] == pytest.approx(r.cost_usd)
    unknown = langsmith_usage_metadata(ok_record(catalog, model="llama-3-70b"))
    assert "total_cost" not in unknown and unknown["total_tokens"] == 1200
    assert langsmith_usage_metadata(ok_record(catalog, usage=None)) is None


def test_langchain_add_usage_still_rejects_float_costs() -> None:
    """Why cost stays out of AIMessage.usage_metadata (if this starts failing, LangChain
    fixed it: revisit the README's LangSmith section)."""
    with_cost = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2, "total_cost": 0.1}
    with pytest.raises(ValueError, match="Only dict and int values"):
        add_usage(with_cost, with_cost)


@pytest.fixture
def sent_runs(monkeypatch):
    """What LangChainTracer would send to LangSmith, captured instead of posted."""
    from langsmith.run_trees import RunTree

    sent: list[dict] = []
    monkeypatch.setattr(RunTree, "post", lambda self, *a, **k: None)
    monkeypatch.setattr(
        RunTree,
        "patch",
        lambda self, *a, **k: sent.append(
            {"run_type": self.run_type, **self.extra.get("metadata", {})}
        ),
    )
    return sent


def test_langsmith_cost_tracer_adds_cost_and_keeps_usage_aggregation(catalog, sent_runs) -> None:
    from routedllm.records.langsmith import LangSmithCostTracer

    tracer = LangSmithCostTracer(catalog, client=object(), project_name="test")
    usage = UsageMetadataCallbackHandler()
    model = FakeChat(model="gpt-4o-mini-2024-07-18")
    model.invoke("x" * 1000, config={"callbacks": [tracer, usage]})
    for _ in model.stream("x" * 1000, config={"callbacks": [tracer, usage]}):
        pass
    FakeChat(model="llama-3-70b").invoke("hi", config={"callbacks": [tracer, usage]})
    priced = [s["usage_metadata"] for s in sent_runs if s["run_type"] == "llm"]
    expected = (1000 * 0.15 + 200 * 0.60) / 1e6
    assert [u.get("total_cost") for u in priced] == [pytest.approx(expected)] * 2 + [None]
    assert priced[0]["input_cost"] == pytest.approx(1000 * 0.15 / 1e6)
    # LangChain's own usage totals still add up across calls (no float reached add_usage)
    assert usage.usage_metadata["gpt-4o-mini-2024-07-18"]["input_tokens"] == 2000
    assert usage.usage_metadata["gpt-4o-mini-2024-07-18"]["total_tokens"] == 2400


# -- Langfuse ----------------------------------------------------------------------------
def test_langfuse_details(catalog) -> None:
    r = ok_record(catalog)
    assert langfuse_usage_details(r) == {
        "input": 700,
        "input_cache_read": 300,
        "output": 150,
        "output_reasoning": 50,
        "total": 1200,
    }
    cost = langfuse_cost_details(r)
    assert cost == {
        "input": pytest.approx(r.input_cost_usd),
        "output": pytest.approx(r.output_cost_usd),
        "total": pytest.approx(r.cost_usd),
    }
    assert langfuse_cost_details(ok_record(catalog, model="llama-3-70b")) is None
    assert json.dumps(cost)  # what goes into langfuse.observation.cost_details


# -- the base install -----------------------------------------------------------------------
def test_import_routedllm_loads_no_optional_dependency() -> None:
    code = (
        "import sys, datetime as dt, routedllm\n"
        "from routedllm.records.schema import Usage, build_record\n"
        "routedllm.MemorySink().emit(build_record(routedllm.Catalog.default(), 'gpt-4o',"
        " usage=Usage(1, 1), ts=dt.datetime.now(dt.timezone.utc), latency_s=1.0))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in"
        " ('opentelemetry', 'matplotlib', 'litellm')"
        " or m.startswith('google.protobuf')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_names_resolve() -> None:
    for name in routedllm.__all__:
        assert getattr(routedllm, name) is not None, name
