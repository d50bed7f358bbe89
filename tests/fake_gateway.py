"""The gateway in process, for unit tests and for building cassettes, plus cassette helpers.

``FakeGateway`` is an ``httpx2.MockTransport`` handler that serves what the loopback
``routedllm.testing.Upstream`` would: the same response plans (``routedllm.testing.
responses``), wire format and fault vocabulary (a ``Fault`` or a short name from
``routedllm.testing.FAULTS``, per model), with no socket. Faults that need real time or
a real connection (hangs, resets, trickles, endless streams) become the transport errors
``httpx`` raises for them, or are refused. Every response carries
``x-routedllm-constructed: fake-gateway``, so cassettes built from it say how they were
made; ids and ``created`` are deterministic.

Cassette tests get their clients from :func:`gateway_params`: the fake gateway when
``ROUTEDLLM_CASSETTE_BUILD=1`` (``scripts/build_cassettes.py`` sets it), else none, so
vcrpy replays the cassette (or, in a live record run, the real gateway answers).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from routedllm import Catalog
from routedllm.testing import Fault, FaultKind, ModelSpec, parse_fault, respond
from routedllm.testing.replies import has_image, prompt_text, sample_text
from routedllm.testing.responses import Drop, Forever, Pause, Response
from routedllm.testing.wire import UsageStyle

CASSETTE_DIR = Path(__file__).resolve().parents[1] / "cassettes"
BUILD_ENV = "ROUTEDLLM_CASSETTE_BUILD"
CONSTRUCTED_HEADER = "x-routedllm-constructed"
REPLAY_KEY = "replay-key-not-a-secret"
ROUTING_CATALOG = Path(__file__).with_name("routing_catalog.yaml")
# langchain-openai probes TCP keep-alive support with a socket when it builds its default
# HTTP client; the socket ban blocks the probe, which only drops the keep-alive options.
SOCKET_PROBE_ALLOWED = pytest.mark.filterwarnings(
    "ignore:A test tried to use socket.socket:UserWarning"
)


def test_catalog() -> Catalog:
    """The catalog the chat-model tests route with (``tests/routing_catalog.yaml``)."""
    return Catalog.from_dict(
        yaml.safe_load(ROUTING_CATALOG.read_text("utf-8")), origin=str(ROUTING_CATALOG)
    )


test_catalog.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def building() -> bool:
    """True while ``scripts/build_cassettes.py`` rebuilds the cassettes."""
    return os.environ.get(BUILD_ENV) == "1"


def gateway_params(gateway: FakeGateway | None = None) -> dict[str, Any]:
    """Client params for a cassette test: the fake gateway's while building, else none."""
    return (gateway or FakeGateway()).clients() if building() else {}


def api_key() -> str:
    """The key cassette tests use: the live key when recording, else a placeholder."""
    return os.environ.get("GLOBAL_API_KEY") or REPLAY_KEY


# -- the gateway ----------------------------------------------------------------------------
_NEEDS_SOCKET = frozenset(
    {FaultKind.TRICKLE, FaultKind.KEEPALIVE_FOREVER, FaultKind.EMPTY_DELTAS_FOREVER}
)


@dataclass
class FakeGateway:
    """Answers chat completions; ``faults`` maps a model id to its fault.

    A fault is a ``routedllm.testing.Fault`` or a short name (``"429"``, ``"500"``,
    ``"400"``, ``"401"``, ``"404"``, ``"context"``, ``"stream-error"``, ``"stream-break"``,
    ``"timeout"``, ``"connect"``, ...: ``routedllm.testing.FAULTS``). The options set the
    provider quirks of ``ModelSpec`` for every model (``served_suffix``: the served model
    id is the requested one plus this).
    """

    faults: dict[str, str | Fault] = field(default_factory=dict)
    usage: UsageStyle = "separate"  # "separate" (OpenAI), "on-finish" (GLM, DeepSeek) or "none"
    cached_tokens: int = 0
    reasoning: str | None = None
    kimi_tool_calls: bool = False  # tool call id "0", no finish_reason (Kimi via OpenRouter)
    leading_whitespace: bool = False  # keep-alive padding before the JSON (OpenRouter)
    served_suffix: str = ""
    retry_after_s: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def scripted(self) -> bool:
        """True when the answers differ from a plain gateway's (a live run cannot redo them)."""
        return bool(
            self.faults
            or self.usage != "separate"
            or self.cached_tokens
            or self.reasoning
            or self.kimi_tool_calls
            or self.leading_whitespace
        )

    def clients(self) -> dict[str, Any]:
        return {
            "http_client": httpx2.Client(transport=httpx2.MockTransport(self)),
            "http_async_client": httpx2.AsyncClient(transport=httpx2.MockTransport(self)),
        }

    def models(self) -> list[str]:
        """The model of each request, in order."""
        return [r["model"] for r in self.requests]

    def spec(self, model: str) -> ModelSpec:
        """The ``ModelSpec`` every model gets: the gateway's quirks."""
        return ModelSpec(
            answer_model=model + self.served_suffix,
            cached_tokens=self.cached_tokens,
            reasoning=self.reasoning,
            usage_style=self.usage,
            kimi_tool_calls=self.kimi_tool_calls,
            leading_whitespace=self.leading_whitespace,
            retry_after_s=self.retry_after_s,
        )

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.urls.append(str(request.url))
        model = body["model"]
        named = self.faults.get(model)
        fault = None if named is None else parse_fault(named)
        digest = hashlib.sha256(request.content + str(len(self.requests)).encode()).hexdigest()
        if fault is not None:
            _raise_transport_error(fault, request)
        bearer = request.headers.get("authorization", "")
        plan = respond(
            body,
            model=model,
            spec=self.spec(model),
            fault=fault,
            id=f"chatcmpl-{digest[:29]}",
            created=self.created,
            default_text=sample_text(prompt_text(body), image=has_image(body)),
            api_key=bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None,
        )
        headers = {
            **plan.headers,
            "x-request-id": f"req_{digest[:24]}",
            CONSTRUCTED_HEADER: "fake-gateway",
            "date": email.utils.formatdate(self.created, usegmt=True),
        }
        if any(isinstance(p, Drop) for p in plan.parts):
            return httpx2.Response(plan.status, headers=headers, stream=_Cut(plan))
        return httpx2.Response(plan.status, headers=headers, content=plan.body)


def _raise_transport_error(fault: Fault, request: httpx2.Request) -> None:
    """The error ``httpx`` raises for a fault that lives below HTTP."""
    if fault.kind is FaultKind.HANG:
        raise httpx2.ReadTimeout("timed out", request=request)
    if fault.kind is FaultKind.CONNECT:
        raise httpx2.ConnectError("connection refused", request=request)
    if fault.kind is FaultKind.RESET:
        raise httpx2.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    if fault.kind in _NEEDS_SOCKET:
        raise ValueError(
            f"fault {fault.label!r} needs real time on a real socket: "
            "serve it with the loopback routedllm.testing.Upstream"
        )


class _Cut(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A body that stops partway, as when the peer resets the connection."""

    def __init__(self, plan: Response) -> None:
        self.parts = [p for p in plan.parts if not isinstance(p, (Pause, Forever))]

    def _error(self) -> httpx2.RemoteProtocolError:
        return httpx2.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Drop):
                raise self._error()
            yield part  # type: ignore[misc]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if isinstance(part, Drop):
                raise self._error()
            yield part  # type: ignore[misc]
