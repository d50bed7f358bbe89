"""RoutedChatModel on real recorded traffic from other providers (OpenAI, DeepSeek, Z.ai GLM,
OpenRouter incl. Kimi, Groq, Hugging Face).

The recordings live outside this repository, in ``../shared/wire-samples`` (or the folder
named by ``ROUTEDLLM_WIRE_SAMPLES``); these tests skip when it is absent, and the project's
own cassettes cover the same shapes. Each recorded response is served to the router's first
candidate; a second candidate answers if the router falls back. The test then checks that
the router read the response the way the wire says: text, tool calls, usage and cached
tokens, reasoning text, and whether the failure called for a fallback.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import yaml

from routedllm import Catalog
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.core.errors import StreamInterruptedError
from routedllm.records.routed import RoutedCall
from routedllm.reliability.failures import classify
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, FakeGateway

WIRE = Path(
    os.environ.get("ROUTEDLLM_WIRE_SAMPLES")
    or Path(__file__).resolve().parents[2] / "shared" / "wire-samples"
)
FIRST, SECOND = "first-model", "second-model"
CATALOG = Catalog.from_dict(
    {
        "models": [
            {
                "id": FIRST,
                "name": "First",
                "input_usd_per_mtok": 1.0,
                "output_usd_per_mtok": 2.0,
                "scores": {"mmlu": 90.0},
            },
            {
                "id": SECOND,
                "name": "Second",
                "input_usd_per_mtok": 2.0,
                "output_usd_per_mtok": 4.0,
                "scores": {"mmlu": 90.0},
            },
        ]
    }
)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
pytestmark = SOCKET_PROBE_ALLOWED


def load(path: Path) -> list[dict[str, Any]]:
    """A cassette's interactions; pydantic-ai's ``parsed_body`` turned back into a body."""
    interactions = yaml.load(path.read_text("utf-8"), Loader=_Loader)["interactions"]
    for interaction in interactions:
        for side in ("request", "response"):
            part = interaction[side]
            if "parsed_body" in part:
                text = json.dumps(part.pop("parsed_body"))
                part["body"] = text if side == "request" else {"string": text}
    return interactions


def _cases() -> list[Any]:
    if not WIRE.is_dir():
        return [
            pytest.param(
                None,
                0,
                marks=pytest.mark.skip(
                    reason=f"wire samples not found at {WIRE} (they live outside the repository)"
                ),
            )
        ]
    return [
        pytest.param(path, i, id=f"{path.relative_to(WIRE).as_posix()}#{i}")
        for path in sorted(WIRE.rglob("*.yaml"))
        for i, interaction in enumerate(load(path))
        if interaction["request"]["uri"].endswith("/chat/completions")
    ]


class Replay:
    """Serves the recorded response to the first model, and a plain answer to any other."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.models: list[str] = []
        self.fallback = FakeGateway()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        model = json.loads(request.content)["model"]
        self.models.append(model)
        if model != FIRST:
            return self.fallback(request)
        body = self.response.get("body") or {}
        content = body.get("string", "") if isinstance(body, dict) else body
        raw = content if isinstance(content, bytes) else content.encode("utf-8")
        headers = {
            k: v[0] if isinstance(v, list) else v
            for k, v in (self.response.get("headers") or {}).items()
            if k.lower() not in ("content-length", "transfer-encoding")
            and (isinstance(content, bytes) or k.lower() != "content-encoding")
        }
        return httpx2.Response(self.response["status"]["code"], content=raw, headers=headers)

    def text(self) -> str:
        body = self.response.get("body") or {}
        content = body.get("string", "") if isinstance(body, dict) else body
        if isinstance(content, bytes):
            content = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
            content = content.decode("utf-8")
        return content


def _events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            out.append(json.loads(line[5:]))
    return out


@pytest.mark.parametrize(("path", "index"), _cases())
def test_router_reads_the_recorded_response(path: Path, index: int) -> None:
    response = load(path)[index]["response"]
    replay = Replay(response)
    llm = RoutedChatModel(
        api_key="k",
        catalog=CATALOG,
        rate_limit_retries=0,  # one recorded response per request: a 429 falls back
        http_client=httpx2.Client(transport=httpx2.MockTransport(replay)),
    )
    status = response["status"]["code"]
    text = replay.text()
    if status >= 400:
        _check_error(llm, replay, status)
    elif text.lstrip().startswith(("data:", ":")):
        _check_stream(llm, replay, _events(text))
    else:
        _check_completion(llm, replay, json.loads(text))


def _check_error(llm: RoutedChatModel, replay: Replay, status: int) -> None:
    try:
        reply = llm.invoke("Hello")
    except openai.APIStatusError as exc:  # a caller error: raised at once, no fallback
        assert exc.status_code == status and classify(exc) == "fatal"
        assert replay.models == [FIRST]
        return
    attempts = reply.response_metadata["routedllm"]["attempts"]
    assert replay.models == [FIRST, SECOND]
    assert (attempts[0]["status"], attempts[1]["outcome"]) == (status, "ok")


def _check_completion(llm: RoutedChatModel, replay: Replay, data: dict[str, Any]) -> None:
    reply = llm.invoke("Hello")
    message = data["choices"][0]["message"]
    assert replay.models == [FIRST]
    assert reply.content == (message.get("content") or "")
    assert len(reply.tool_calls) + len(reply.invalid_tool_calls) == len(
        message.get("tool_calls") or []
    )
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    assert reply.additional_kwargs.get("reasoning_content") == (reasoning or None)
    record = reply.response_metadata["routedllm"]
    assert (
        record["served_model"] == data["model"] and reply.response_metadata["model_name"] == FIRST
    )
    _check_usage(reply.usage_metadata, data.get("usage"), record)


def _check_stream(llm: RoutedChatModel, replay: Replay, events: list[dict[str, Any]]) -> None:
    error_at = next((i for i, e in enumerate(events) if e.get("error")), None)
    before = events[:error_at] if error_at is not None else events
    deltas = [c.get("delta") or {} for e in before for c in e.get("choices") or []]
    text = "".join(d.get("content") or "" for d in deltas)
    shown = text or any(
        d.get("tool_calls") or d.get("reasoning_content") or d.get("reasoning") for d in deltas
    )
    chunks: list[Any] = []
    if error_at is not None and shown:  # the caller saw output: the error surfaces, no fallback
        with pytest.raises(StreamInterruptedError) as caught:
            for chunk in llm.stream("Hello"):
                chunks.append(chunk)
        assert isinstance(caught.value.__cause__, openai.APIError)
        assert "".join(c.text for c in chunks) == text and replay.models == [FIRST]
        return
    for chunk in llm.stream("Hello"):
        chunks.append(chunk)
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    record = full.response_metadata["routedllm"]
    if error_at is not None:  # an error before any output: the next model answers
        assert replay.models == [FIRST, SECOND] and record["model"] == SECOND
        return
    assert replay.models == [FIRST] and full.text == text
    calls = {tc["index"] for d in deltas for tc in d.get("tool_calls") or []}
    assert len(full.tool_calls) + len(full.invalid_tool_calls) == len(calls)
    reasoning = "".join(d.get("reasoning_content") or d.get("reasoning") or "" for d in deltas)
    assert full.additional_kwargs.get("reasoning_content", "") == reasoning
    usage = [e["usage"] for e in events if e.get("usage")]
    _check_usage(full.usage_metadata, usage[-1] if usage else None, record)
    assert sum("routedllm" in c.response_metadata for c in chunks) == 1


def _check_usage(usage: Any, wire: dict[str, Any] | None, record: dict[str, Any]) -> None:
    if not wire:
        assert record["cost_usd"] is None
        return
    assert usage["input_tokens"] == wire["prompt_tokens"]
    assert usage["output_tokens"] == wire["completion_tokens"]
    cached = (wire.get("prompt_tokens_details") or {}).get("cached_tokens")
    assert RoutedCall.model_validate(record).answer.cached_input_tokens == (cached or 0)
    assert isinstance(record["cost_usd"], float)
