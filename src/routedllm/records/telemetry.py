"""CallRecords in the shapes tracing tools read: OpenTelemetry, LangSmith and Langfuse.

:class:`OTelSink` records the OpenTelemetry GenAI semantic-convention client metrics, a
cost counter in routedllm's own namespace and, opt-in, one span per attempt. A span
carries the cost where each tracing product looks for it: ``gen_ai.usage.cost``,
OpenInference's ``llm.cost.*`` (Arize Phoenix) and Langfuse's
``langfuse.observation.cost_details``. The other functions are pure mappings.
OpenTelemetry is imported only when an OTelSink is built (install the ``otel`` extra);
nothing here needs LangSmith, Langfuse or Phoenix installed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

from routedllm.core.pricing import Cost
from routedllm.records.schema import CallRecord

# GenAI semantic conventions (Development status; names as published in semconv v1.41 and
# opentelemetry-semantic-conventions 0.66b2). Kept here so a rename is a one-line change.
OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
# Not in the spec (no cost convention exists yet): routedllm's own namespace, unit USD.
COST = "routedllm.client.cost"
BASELINE_COST = "routedllm.client.baseline_cost"
# The spec's advisory bucket boundaries.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS: tuple[int, ...] = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
OPERATION = "chat"
# A de-facto attribute (Langfuse maps it to the observation's total cost); not in the spec.
USAGE_COST = "gen_ai.usage.cost"
# OpenInference's cost attributes (what Arize Phoenix shows on an LLM span), USD.
OPENINFERENCE_COST = {
    "llm.cost.prompt": "input_cost_usd",
    "llm.cost.completion": "output_cost_usd",
    "llm.cost.total": "cost_usd",
}
# Langfuse's own observation attributes (read by Langfuse's OTLP endpoint; JSON strings).
LANGFUSE_TYPE = "langfuse.observation.type"
LANGFUSE_MODEL = "langfuse.observation.model.name"
LANGFUSE_USAGE = "langfuse.observation.usage_details"
LANGFUSE_COST = "langfuse.observation.cost_details"
LANGFUSE_COMPLETION_START = "langfuse.observation.completion_start_time"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def server_of(url: str | None) -> tuple[str, int] | None:
    """``(server.address, server.port)`` of a base URL such as ``https://gw.example/v1``.

    The port is the URL's, else the scheme's default; None when ``url`` names no host.
    """
    if not url:
        return None
    parts = urlsplit(url if "//" in url else f"//{url}")
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme or "https", 443)
    return parts.hostname, port


def otel_metric_attributes(
    record: CallRecord, provider_name: str, server: tuple[str, int] | None = None
) -> dict[str, Any]:
    """Attributes every metric of ``record`` carries (``error.type`` goes on duration only).

    ``server`` is ``(server.address, server.port)`` of the endpoint the call went to.
    """
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": provider_name,
        "gen_ai.request.model": record.model,
    }
    if server is not None:
        attrs["server.address"], attrs["server.port"] = server
    if record.answering_model:
        attrs["gen_ai.response.model"] = record.answering_model
    if record.tags:
        attrs["routedllm.tags"] = ",".join(record.tags)
    if record.policy:
        attrs["routedllm.policy"] = record.policy
    return attrs


def otel_span_attributes(
    record: CallRecord, provider_name: str, server: tuple[str, int] | None = None
) -> dict[str, Any]:
    """The ``gen_ai.*`` span attributes of one attempt, plus the cost and ``routedllm.*`` extras.

    The cost goes in ``gen_ai.usage.cost``, in OpenInference's ``llm.cost.*`` and in
    Langfuse's ``langfuse.observation.cost_details`` when known; an unknown cost is left
    out rather than sent as 0. The attempt's catalog model is Langfuse's model name.
    """
    attrs = otel_metric_attributes(record, provider_name, server)
    optional: dict[str, Any] = {
        "gen_ai.response.id": record.response_id,
        "gen_ai.response.finish_reasons": [record.finish_reason] if record.finish_reason else None,
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": record.cached_input_tokens or None,
        "gen_ai.usage.reasoning.output_tokens": record.reasoning_tokens or None,
        USAGE_COST: record.cost_usd,
        "gen_ai.response.time_to_first_chunk": record.ttft_s,
        "error.type": None if record.ok else record.outcome,
        "routedllm.run_id": record.run_id,
        "routedllm.parent_run_id": record.parent_run_id,
        "routedllm.attempt": record.attempt,
        "routedllm.requested_model": record.requested_model,
        "routedllm.input_cost_usd": record.input_cost_usd,
        "routedllm.output_cost_usd": record.output_cost_usd,
        "routedllm.estimated_cost_usd": record.estimated_cost_usd,
        "routedllm.baseline_model": record.baseline_model,
        "routedllm.baseline_cost_usd": record.baseline_cost_usd,
        "routedllm.savings_usd": record.savings_usd,
        "routedllm.prices_as_of": record.prices_as_of,
    }
    optional.update((name, getattr(record, field)) for name, field in OPENINFERENCE_COST.items())
    attrs.update((k, v) for k, v in optional.items() if v is not None)
    if record.tags:
        attrs["routedllm.tags"] = list(record.tags)
    attrs.update(langfuse_observation_attributes(record))
    return attrs


def langfuse_observation_attributes(record: CallRecord) -> dict[str, str]:
    """Langfuse's attributes for one attempt: a generation, its model, usage and cost.

    Langfuse reads them from any OTLP span (JSON-encoded details); ``cost_details`` makes
    Langfuse show routedllm's figure instead of inferring one from its model prices.
    """
    attrs = {LANGFUSE_TYPE: "generation", LANGFUSE_MODEL: record.model}
    usage = langfuse_usage_details(record)
    if usage is not None:
        attrs[LANGFUSE_USAGE] = json.dumps(usage)
    cost = langfuse_cost_details(record)
    if cost is not None:
        attrs[LANGFUSE_COST] = json.dumps(cost)
    if record.ttft_s is not None:
        start = record.ts + dt.timedelta(seconds=record.ttft_s)
        attrs[LANGFUSE_COMPLETION_START] = start.isoformat()
    return attrs


class OTelSink:
    """Records each CallRecord as OpenTelemetry GenAI metrics and, if ``spans``, a span.

    Metrics: ``gen_ai.client.operation.duration`` (s, with ``error.type`` on failures),
    ``gen_ai.client.token.usage`` (``gen_ai.token.type`` input and output; successful
    attempts with reported usage only), ``gen_ai.client.operation.time_to_first_chunk``
    (streamed calls only), all with the spec's bucket boundaries as advisory; and the
    counters ``routedllm.client.cost`` / ``routedllm.client.baseline_cost`` (USD, known
    costs only; savings = baseline - cost). Providers default to the global ones.
    ``server_url`` (the gateway's base URL, e.g. ``catalog.gateway.base_url``) gives
    ``server.address`` and ``server.port`` on every metric and span.

    Spans are off by default: turn them on only when no other tracer (LangSmith, Langfuse,
    OpenLLMetry) already records the LangChain run, or the call is counted twice. A span
    is named ``chat {model}``, runs from the call's start for its latency, and parents to
    whatever span is current where the record is emitted.
    """

    def __init__(
        self,
        *,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        spans: bool = False,
        provider_name: str = "openai",
        server_url: str | None = None,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:  # pragma: no cover - exercised without the extra
            raise ImportError(
                "OTelSink needs OpenTelemetry: pip install 'routedllm[otel]'"
            ) from None
        self.provider_name = provider_name
        self.server = server_of(server_url)
        if server_url and self.server is None:
            raise ValueError(f"server_url {server_url!r} names no host: pass a base URL")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("routedllm")
        self._duration = meter.create_histogram(
            OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._cost = meter.create_counter(
            COST, unit="USD", description="What the calls cost, from the catalog prices."
        )
        self._baseline = meter.create_counter(
            BASELINE_COST,
            unit="USD",
            description="What the same tokens would have cost on the baseline model.",
        )
        self._tracer = None
        if spans:
            self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("routedllm")
            self._span_kind = trace.SpanKind.CLIENT
            self._status = (trace.Status, trace.StatusCode.ERROR)

    def emit(self, record: CallRecord) -> None:
        attrs = otel_metric_attributes(record, self.provider_name, self.server)
        if record.latency_s is not None:
            self._duration.record(
                record.latency_s, attrs if record.ok else {**attrs, "error.type": record.outcome}
            )
        if record.ok and record.input_tokens is not None and record.output_tokens is not None:
            self._tokens.record(record.input_tokens, {**attrs, "gen_ai.token.type": "input"})
            self._tokens.record(record.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if record.ttft_s is not None:
            self._ttfc.record(record.ttft_s, attrs)
        if record.cost_usd is not None:
            self._cost.add(record.cost_usd, attrs)
        if record.baseline_cost_usd is not None:
            self._baseline.add(
                record.baseline_cost_usd,
                {**attrs, "routedllm.baseline_model": record.baseline_model},
            )
        if self._tracer is not None:
            self._span(record)

    def _span(self, record: CallRecord) -> None:
        start = int(record.ts.timestamp() * 1e9)
        span = self._tracer.start_span(  # type: ignore[union-attr]
            f"{OPERATION} {record.model}",
            kind=self._span_kind,
            start_time=start,
            attributes=otel_span_attributes(record, self.provider_name, self.server),
        )
        if not record.ok:
            status, error = self._status
            span.set_status(status(error, record.error or record.outcome))
        span.end(end_time=start + int((record.latency_s or 0.0) * 1e9))


# -- LangSmith and Langfuse ------------------------------------------------------------------
def langsmith_cost_fields(cost: Cost) -> dict[str, float]:
    """``input_cost``/``output_cost``/``total_cost`` as LangSmith's UsageMetadata names them.

    Only known costs appear: LangSmith then prices the rest from its own model price map.
    """
    fields = {
        "input_cost": cost.input_usd,
        "output_cost": cost.output_usd,
        "total_cost": cost.total_usd,
    }
    return {k: v for k, v in fields.items() if v is not None}


def langsmith_usage_metadata(record: CallRecord) -> dict[str, Any] | None:
    """LangSmith's UsageMetadata (tokens and cost) for ``RunTree.set(usage_metadata=...)``.

    For ``@traceable`` code and other non-LangChain paths. None when usage is unknown.
    """
    if record.input_tokens is None or record.output_tokens is None:
        return None
    usage: dict[str, Any] = {
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "total_tokens": record.input_tokens + record.output_tokens,
    }
    if record.cached_input_tokens:
        usage["input_token_details"] = {"cache_read": record.cached_input_tokens}
    if record.reasoning_tokens:
        usage["output_token_details"] = {"reasoning": record.reasoning_tokens}
    usage.update(langsmith_cost_fields(Cost(record.input_cost_usd, record.output_cost_usd)))
    return usage


def langfuse_usage_details(record: CallRecord) -> dict[str, int] | None:
    """Langfuse ``usage_details``, split the way Langfuse's LangChain handler splits them.

    ``input`` excludes cache reads (``input_cache_read``), ``output`` excludes reasoning
    (``output_reasoning``). None when usage is unknown.
    """
    if record.input_tokens is None or record.output_tokens is None:
        return None
    cached, reasoning = record.cached_input_tokens or 0, record.reasoning_tokens or 0
    details = {
        "input": record.input_tokens - cached,
        "output": record.output_tokens - reasoning,
        "total": record.input_tokens + record.output_tokens,
    }
    if cached:
        details["input_cache_read"] = cached
    if reasoning:
        details["output_reasoning"] = reasoning
    return details


def langfuse_cost_details(record: CallRecord) -> dict[str, float] | None:
    """Langfuse ``cost_details`` (USD ``input``/``output``/``total``); None when unknown."""
    details = {
        "input": record.input_cost_usd,
        "output": record.output_cost_usd,
        "total": record.cost_usd,
    }
    known = {k: v for k, v in details.items() if v is not None}
    return known or None
