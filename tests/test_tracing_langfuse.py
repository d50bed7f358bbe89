"""Langfuse: what the real ``langfuse`` SDK exports for routed calls, captured on loopback.

The Langfuse client adds its span processor to the application's TracerProvider;
``OTelSink(spans=True)`` on that provider makes one generation per attempt. The capture
server answers Langfuse's OTLP endpoint and decodes what arrives: every generation must
carry the answering model and ``cost_details`` (input/output/total) as Langfuse reads them.
Needs ``pip install 'routedllm[langfuse]'``; skipped without it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip(
    "langfuse", reason="langfuse is not installed: pip install 'routedllm[langfuse]'"
)

from langfuse import Langfuse  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

from routedllm import CostLatencyHandler, OTelSink, Policy, RoutedChatModel  # noqa: E402
from routedllm.core.decision import decide  # noqa: E402
from routedllm.core.requests import Request  # noqa: E402
from routedllm.testing import ModelSpec, Upstream  # noqa: E402
from tests.capture import CaptureServer  # noqa: E402
from tests.conftest import fixture_catalog  # noqa: E402

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

CATALOG = fixture_catalog()
KEY = "ga_TESTSECRET_langfuse_0123456789"
OTLP_PATH = "/api/public/otel/v1/traces"


def _attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, kind)
    return out


def _exported(capture: CaptureServer) -> list[tuple[str, dict[str, Any]]]:
    """(span name, attributes) of every span the SDK exported to Langfuse's OTLP endpoint."""
    spans = []
    for request in capture.to(OTLP_PATH):
        message = ExportTraceServiceRequest()
        message.ParseFromString(request.body)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                spans.extend((s.name, _attributes(s)) for s in scope.spans)
    return spans


def test_every_generation_carries_the_answering_model_and_cost_details() -> None:
    chat = "summarise the meeting notes"
    first = decide(CATALOG, Policy(), Request(messages=[{"role": "user", "content": chat}]))
    specs = {first.model: ModelSpec(script=["429"], retry_after_s=30)}
    with CaptureServer() as capture, Upstream(specs, api_key=KEY) as up:
        provider = TracerProvider()
        langfuse = Langfuse(
            public_key="pk-lf-test",
            secret_key="sk-lf-test",
            base_url=capture.url,
            tracer_provider=provider,
        )
        handler = CostLatencyHandler(
            CATALOG, sinks=[OTelSink(tracer_provider=provider, spans=True)]
        )
        llm = RoutedChatModel(
            base_url=up.base_url, api_key=KEY, timeout=5, max_wait_s=1, catalog=CATALOG
        )
        config: Any = {"callbacks": [handler]}
        llm.invoke(chat, config=config)  # a fallback: two attempts
        list(llm.stream("write a haiku about the sea", config=config))
        langfuse.flush()
        langfuse.shutdown()
        sent = _exported(capture)
        auth = capture.to(OTLP_PATH)[0].headers["authorization"]

    records = handler.memory.records
    assert auth.startswith("Basic ")  # the SDK's own exporter sent them
    assert len(sent) == len(records) == 3
    for (name, attrs), record in zip(sent, records, strict=True):
        assert name == f"chat {record.model}"
        assert attrs["langfuse.observation.type"] == "generation"
        assert attrs["langfuse.observation.model.name"] == record.model
        assert attrs.get("gen_ai.response.model") == record.answering_model
        cost = json.loads(attrs["langfuse.observation.cost_details"])
        assert cost == pytest.approx(
            {
                "input": record.input_cost_usd,
                "output": record.output_cost_usd,
                "total": record.cost_usd,
            }
        )
        usage = json.loads(attrs["langfuse.observation.usage_details"])
        assert usage["total"] == (record.input_tokens or 0) + (record.output_tokens or 0)
    answered = [json.loads(a["langfuse.observation.cost_details"])["total"] for _, a in sent[1:]]
    assert all(total > 0 for total in answered)
    assert sent[0][1]["error.type"] == "RateLimitError"
    assert "langfuse.observation.completion_start_time" in sent[2][1]  # the stream's TTFT
