"""Routed calls traced into a real Arize Phoenix server, read back with Phoenix's client.

One Phoenix process (SQLite in a temporary directory, 127.0.0.1 only) serves the module.
RoutedChatModel calls a loopback stand-in upstream; CostLatencyHandler hands the records
to ``OTelSink(spans=True)``, which exports them over OTLP/HTTP. Each call runs under an
application span, so one call is one trace. Phoenix must then show, for a fallback, a
stream and a tool call, the answering model, the tokens and routedllm's cost.
Needs the ``phoenix`` extra (``pip install 'routedllm[phoenix]'``); skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _module in ("phoenix.server", "phoenix.client", "opentelemetry.exporter.otlp.proto.http"):
    if importlib.util.find_spec(_module.split(".")[0]) is None or (
        importlib.util.find_spec(_module) is None
    ):
        pytest.skip(
            f"{_module} is not installed: pip install 'routedllm[phoenix]'",
            allow_module_level=True,
        )

from langchain_core.tools import tool  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402

from routedllm import CostLatencyHandler, OTelSink, Policy, RoutedChatModel  # noqa: E402
from routedllm.core.decision import decide  # noqa: E402
from routedllm.core.requests import Request  # noqa: E402
from routedllm.records.schema import CallRecord  # noqa: E402
from routedllm.testing import ModelSpec, Upstream  # noqa: E402
from tests.conftest import fixture_catalog  # noqa: E402

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

STARTUP_S = 120.0
MODEL_REFRESH_S = 6.0  # Phoenix reloads its model prices every 5 s
PROJECT = "routedllm-tests"
CATALOG = fixture_catalog()
KEY = "ga_TESTSECRET_phoenix_0123456789"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text("utf-8", "replace")[-chars:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on loopback; yields its base URL."""
    work = tmp_path_factory.mktemp("phoenix")
    log = work / "phoenix.log"
    port, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_TELEMETRY_ENABLED="false",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "phoenix.server.main", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, log)
        yield url
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Phoenix exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"Phoenix was not healthy after {STARTUP_S:.0f} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _ranking(prompt: str, **request: Any) -> tuple[str, ...]:
    messages = [{"role": "user", "content": prompt}]
    return decide(CATALOG, Policy(), Request(messages=messages, **request)).ranking


CREATE_MODEL = """
mutation($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }
"""
TRACE_COST = """
query($project: ID!, $trace: ID!) { node(id: $project) { ... on Project {
  trace(traceId: $trace) { costSummary { total { cost tokens } } } } } }
"""


def _graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", body, {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer["errors"]
    return dict(answer["data"])


def _add_catalog_prices(url: str) -> None:
    """Each priced catalog model as a Phoenix model, as docs/phoenix.md shows."""
    for card in CATALOG:
        if not card.priced:
            continue
        costs = [
            {
                "tokenType": "input",
                "kind": "PROMPT",
                "costPerMillionTokens": card.input_usd_per_mtok,
            },
            {
                "tokenType": "output",
                "kind": "COMPLETION",
                "costPerMillionTokens": card.output_usd_per_mtok,
            },
        ]
        if card.cached_input_usd_per_mtok is not None:
            costs.append(
                {
                    "tokenType": "cache_read",
                    "kind": "PROMPT",
                    "costPerMillionTokens": card.cached_input_usd_per_mtok,
                }
            )
        model = {"name": card.id, "namePattern": f"^{re.escape(card.id)}$", "costs": costs}
        _graphql(url, CREATE_MODEL, input=model)


def _spans_by_trace(url: str, expected: int, timeout: float = 30.0) -> dict[str, list[dict]]:
    """Phoenix's spans of the project, grouped by trace, once ``expected`` have arrived."""
    import httpx
    from phoenix.client import Client

    client = Client(base_url=url)
    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            spans = list(client.spans.get_spans(project_identifier=PROJECT, limit=1000))
        except httpx.HTTPStatusError as exc:  # 404 until the first span creates the project
            if exc.response.status_code != 404:
                raise
        if len(spans) >= expected:
            break
        time.sleep(0.3)
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["context"]["trace_id"], []).append(span)
    return traces


def test_phoenix_shows_the_answering_model_tokens_and_cost(phoenix: str) -> None:
    _add_catalog_prices(phoenix)
    time.sleep(MODEL_REFRESH_S)  # Phoenix prices spans as they arrive, with the models it has
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": PROJECT}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{phoenix}/v1/traces")))
    tracer = provider.get_tracer("app")
    chat = "summarise the meeting notes"
    first = _ranking(chat)[0]
    specs = {first: ModelSpec(script=["429"], retry_after_s=30)}  # once: then a fallback
    traces: dict[str, str] = {}
    with Upstream(specs, api_key=KEY) as up:
        handler = CostLatencyHandler(
            CATALOG,
            sinks=[OTelSink(tracer_provider=provider, spans=True, server_url=up.base_url)],
        )
        llm = RoutedChatModel(
            base_url=up.base_url, api_key=KEY, timeout=5, max_wait_s=1, catalog=CATALOG
        )
        config: Any = {"callbacks": [handler]}
        with tracer.start_as_current_span("fallback") as span:
            fell_back = llm.invoke(chat, config=config)
            traces["fallback"] = format(span.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("stream") as span:
            streamed = list(llm.stream("write a haiku about the sea", config=config))
            traces["stream"] = format(span.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("tool call") as span:
            called = llm.bind_tools([get_weather]).invoke("weather in Paris?", config=config)
            traces["tool call"] = format(span.get_span_context().trace_id, "032x")
    provider.force_flush()
    records = handler.memory.records
    assert fell_back.response_metadata["model_name"] != first  # it did fall back
    assert streamed and called.tool_calls

    by_trace = _spans_by_trace(phoenix, expected=len(records) + 3)
    for kind, trace_id in traces.items():
        llm_spans = [s for s in by_trace.get(trace_id, []) if s["span_kind"] == "LLM"]
        shown = sorted(llm_spans, key=lambda s: s["attributes"]["routedllm.attempt"])
        expected = [r for r in records if _trace_of(r, llm_spans)]
        assert len(shown) == len(expected) >= 1, kind
        answer = shown[-1]["attributes"]
        record = next(r for r in expected if r.ok)
        _assert_shows(answer, record)
        assert answer["llm.token_count.total"] > 0 and answer["llm.cost.total"] > 0, kind
    fallback = sorted(
        (s for s in by_trace[traces["fallback"]] if s["span_kind"] == "LLM"),
        key=lambda s: s["attributes"]["routedllm.attempt"],
    )
    assert [s["attributes"]["llm.model_name"] for s in fallback][0] == first
    assert fallback[0]["status_code"] == "ERROR"
    assert fallback[0]["attributes"]["error.type"] == "RateLimitError"
    assert fallback[-1]["attributes"]["llm.model_name"] == fell_back.response_metadata["model_name"]
    # Phoenix's own cost column, from the catalog prices added above: routedllm's figure
    from phoenix.client import Client

    project = Client(base_url=phoenix).projects.get(project_name=PROJECT)["id"]
    for kind, trace_id in traces.items():
        data = _graphql(phoenix, TRACE_COST, project=project, trace=trace_id)
        total = data["node"]["trace"]["costSummary"]["total"]
        ids = {s["attributes"].get("routedllm.run_id") for s in by_trace[trace_id]}
        recorded = sum(r.cost_usd or 0.0 for r in records if r.run_id in ids)
        assert total["cost"] == pytest.approx(recorded), kind


def _trace_of(record: CallRecord, spans: list[dict[str, Any]]) -> bool:
    return any(
        s["attributes"].get("routedllm.run_id") == record.run_id
        and s["attributes"].get("routedllm.attempt") == record.attempt
        for s in spans
    )


def _assert_shows(attrs: dict[str, Any], record: CallRecord) -> None:
    """Phoenix's OpenInference view of a span matches routedllm's record of it."""
    assert attrs["llm.model_name"] == record.model
    assert attrs["gen_ai.response.model"] == record.answering_model
    assert attrs["llm.token_count.prompt"] == record.input_tokens
    assert attrs["llm.token_count.completion"] == record.output_tokens
    assert attrs["llm.cost.total"] == pytest.approx(record.cost_usd)
    assert attrs["llm.cost.prompt"] == pytest.approx(record.input_cost_usd)
    assert attrs["llm.cost.completion"] == pytest.approx(record.output_cost_usd)
    assert attrs["server.address"] == "127.0.0.1"
