"""OpenTelemetry GenAI client spans and metrics: the semantic conventions' attributes
(server, response id, finish reasons, error type) and the cost where each product reads it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from langchain_core.tools import tool
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from routedllm import CostLatencyHandler, OTelSink, RoutedChatModel
from routedllm.records.schema import Usage, build_record
from routedllm.records.telemetry import server_of
from routedllm.testing import Upstream

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
KEY = "ga_TESTSECRET_otel_0123456789"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def _providers() -> tuple[
    TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader
]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("https://global-apis.com/v1", ("global-apis.com", 443)),
        ("http://127.0.0.1:8080/v1", ("127.0.0.1", 8080)),
        ("http://gateway.internal/v1", ("gateway.internal", 80)),
        ("gateway.internal:9000", ("gateway.internal", 9000)),
        ("", None),
        ("https:///v1", None),
    ],
)
def test_server_of_a_base_url(url: str, server: tuple[str, int] | None) -> None:
    assert server_of(url) == server


def test_a_server_url_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="names no host"):
        OTelSink(server_url="https:///v1", tracer_provider=TracerProvider())


def test_span_has_the_client_span_conventions_and_every_cost_attribute(catalog) -> None:
    tracer_provider, exporter, meter_provider, reader = _providers()
    sink = OTelSink(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        spans=True,
        server_url="https://global-apis.com/v1",
    )
    ok = build_record(
        catalog, "gpt-4o-mini", usage=Usage(1000, 200), ts=T0, latency_s=1.0, ttft_s=0.25
    ).model_copy(update={"response_id": "chatcmpl-abc", "finish_reason": "length"})
    failed = build_record(
        catalog, "gpt-4o", usage=Usage(0, 0), ts=T0, latency_s=0.1, outcome="RateLimitError"
    )
    sink.emit(failed)
    sink.emit(ok)
    bad, good = (dict(s.attributes or {}) for s in exporter.get_finished_spans())
    assert (good["server.address"], good["server.port"]) == ("global-apis.com", 443)
    assert good["gen_ai.response.id"] == "chatcmpl-abc"
    assert good["gen_ai.response.finish_reasons"] == ("length",)
    assert "error.type" not in good
    assert good["llm.cost.total"] == pytest.approx(ok.cost_usd)
    assert good["llm.cost.prompt"] + good["llm.cost.completion"] == pytest.approx(ok.cost_usd)
    assert json.loads(good["langfuse.observation.cost_details"]) == pytest.approx(
        {"input": ok.input_cost_usd, "output": ok.output_cost_usd, "total": ok.cost_usd}
    )
    assert good["langfuse.observation.completion_start_time"] == "2026-03-01T12:00:00.250000+00:00"
    assert bad["error.type"] == "RateLimitError"
    assert "gen_ai.response.finish_reasons" not in bad
    assert exporter.get_finished_spans()[0].status.status_code is StatusCode.ERROR
    metrics = {
        m.name: m
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert metrics["gen_ai.client.operation.duration"].unit == "s"
    assert metrics["gen_ai.client.token.usage"].unit == "{token}"
    assert metrics["gen_ai.client.operation.time_to_first_chunk"].unit == "s"
    for point in metrics["gen_ai.client.operation.duration"].data.data_points:
        assert point.attributes["server.address"] == "global-apis.com"
        assert point.attributes["server.port"] == 443


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_routed_call_spans_name_the_response_and_why_it_finished(catalog) -> None:
    tracer_provider, exporter, _, _ = _providers()
    with Upstream({}, api_key=KEY) as up:
        sink = OTelSink(tracer_provider=tracer_provider, spans=True, server_url=up.base_url)
        handler = CostLatencyHandler(catalog, sinks=[sink])
        llm = RoutedChatModel(base_url=up.base_url, api_key=KEY, catalog=catalog, timeout=5)
        reply = llm.bind_tools([get_weather]).invoke(
            "weather in Paris?", config={"callbacks": [handler]}
        )
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert reply.tool_calls and attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attrs["gen_ai.response.id"] == reply.response_metadata["id"]
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == up.port
    [record] = handler.memory.records
    assert (record.finish_reason, record.response_id) == (
        "tool_calls",
        reply.response_metadata["id"],
    )
