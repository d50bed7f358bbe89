"""Screenshots of routed calls in a local Arize Phoenix, for docs/phoenix.md.

Starts Phoenix on loopback (SQLite in a temporary folder), adds the catalog's prices as
Phoenix models (docs/phoenix.md), sends a fallback, a stream and a tool call through
``RoutedChatModel`` to the loopback stand-in with ``OTelSink(spans=True)``, and has a
headless Chromium photograph the fallback's trace.

    pip install -e '.[phoenix]'          # and a Chromium: apt-get install chromium
    python scripts/phoenix_screenshot.py docs/img
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from langchain_core.tools import tool
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from routedllm import Catalog, CostLatencyHandler, OTelSink, RoutedChatModel
from routedllm.testing import ModelSpec, Upstream

PROJECT = "routedllm"
CREATE_MODEL = (
    "mutation($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }"
)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", body, {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(answer["errors"])
    return dict(answer["data"])


def add_prices(url: str, catalog: Catalog) -> None:
    """Each priced catalog model as a Phoenix model, so its Cost column is routedllm's."""
    for card in catalog:
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
        model = {"name": card.id, "namePattern": f"^{re.escape(card.id)}$", "costs": costs}
        graphql(url, CREATE_MODEL, input=model)


def send_calls(url: str, catalog: Catalog) -> str:
    """A fallback, a stream and a tool call, each its own trace; the fallback's trace id."""
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": PROJECT}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{url}/v1/traces")))
    tracer = provider.get_tracer("app")
    llm_probe = RoutedChatModel(api_key="k", catalog=catalog)
    first = llm_probe.route([{"role": "user", "content": "summarise the meeting notes"}]).model
    with Upstream({first: ModelSpec(script=["429"], retry_after_s=30)}, api_key="k") as up:
        handler = CostLatencyHandler(
            catalog, sinks=[OTelSink(tracer_provider=provider, spans=True, server_url=up.base_url)]
        )
        llm = RoutedChatModel(base_url=up.base_url, api_key="k", max_wait_s=1, catalog=catalog)
        config: Any = {"callbacks": [handler]}
        with tracer.start_as_current_span("fallback") as span:
            llm.invoke("summarise the meeting notes", config=config)
            fallback = format(span.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("stream"):
            list(llm.stream("write a haiku about the sea", config=config))
        with tracer.start_as_current_span("tool call"):
            llm.bind_tools([get_weather]).invoke("weather in Paris?", config=config)
    provider.force_flush()
    return fallback


def shoot(chromium: str, url: str, out: Path) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1500,900",
            "--virtual-time-budget=15000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.default()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(
            PHOENIX_WORKING_DIR=work,
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(port),
            PHOENIX_GRPC_PORT=str(free_port()),
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "phoenix.server.main", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("Phoenix did not start")
                    time.sleep(0.5)
            add_prices(url, catalog)
            time.sleep(6)  # Phoenix reloads its model prices every few seconds
            fallback = send_calls(url, catalog)
            time.sleep(2)
            data = graphql(url, "{ projects { edges { node { id name } } } }")
            project = next(
                e["node"]["id"] for e in data["projects"]["edges"] if e["node"]["name"] == PROJECT
            )
            shoot(
                chromium,
                f"{url}/projects/{project}/traces/{fallback}",
                args.out / "phoenix-fallback-trace.png",
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
