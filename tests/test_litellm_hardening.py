"""A real LiteLLM proxy against upstreams that stall, cut streams short or echo the key.

LiteLLM's ``timeout`` and ``stream_timeout`` bound each read, not an attempt: routedllm's
hook bounds the whole attempt, so a trickling upstream falls back. A stream that closes
without a finish reason is recorded as ``truncated``. The error a client gets back holds
no form of the upstream key, whatever way the upstream echoed it.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from routedllm.records.schema import encodings
from routedllm.testing import ModelSpec, Upstream
from routedllm.testing.faults import (
    empty_deltas_forever,
    error_body,
    keepalive_forever,
    no_finish,
    trickle,
)
from routedllm.testing.spec import CannedResponse
from tests.test_litellm_proxy import CODE, Proxy, start_proxy

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

TIMEOUT_S = 2.0
STREAM_TIMEOUT_S = 1.5
KEY = f"ga_{secrets.token_hex(12)}/+=x"  # '/', '+', '=' change its URL-encoded forms
ECHO = "Incorrect API key provided: " + " | ".join(sorted(encodings(KEY)))
STALLS = [
    (trickle(1), False),
    (trickle(1), True),
    (keepalive_forever(0.3), False),
    (keepalive_forever(0.3), True),
]
REFUSED = CannedResponse(
    401,
    json.dumps(
        {"error": {"message": ECHO, "type": "invalid_request_error", "code": "invalid_api_key"}}
    ).encode(),
    (("content-type", "application/json"),),
)
SPECS = {
    # the code chain starts deepseek-v4-flash, gpt-4o: each stall falls back to gpt-4o
    "deepseek-v4-flash": ModelSpec(
        script=[*(f for f, _ in STALLS), empty_deltas_forever(0.2), no_finish()],
        reply="def add(a, b):\n    return a + b\n",
        chunk_delay_s=0.01,
    ),
    "gpt-4o": ModelSpec(reply="Done."),
    # concrete names, no fallback: what the upstream says reaches the client
    "claude-3.5-sonnet": ModelSpec(canned=[REFUSED] * 2),
    "gpt-4o-mini": ModelSpec(canned=[REFUSED] * 2),  # a 401 cools a model down: another one
    "qwen3-32b": ModelSpec(faults={error_body(1, ECHO): 1.0}, reply="一二三四五六七八九十"),
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    args = ["--timeout", str(TIMEOUT_S), "--stream-timeout", str(STREAM_TIMEOUT_S)]
    with (
        Upstream(SPECS) as upstream,
        start_proxy(
            tmp_path_factory.mktemp("litellm-hard"),
            SPECS,
            config_args=[*args, "--retries", "0"],
            env={"GLOBAL_API_KEY": KEY},
            upstream=upstream,
        ) as running,
    ):
        yield running


def _post(proxy: Proxy, model: str, *, stream: bool, trace: str) -> httpx.Response:
    """One chat request through raw HTTP (the body as the proxy sent it), read whole."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": CODE}],
        "stream": stream,
        "litellm_trace_id": trace,
    }
    headers = {"Authorization": f"Bearer {proxy.key}"}
    return httpx.post(f"{proxy.url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_a_stalled_upstream_is_cut_by_its_deadline_and_falls_back(proxy: Proxy) -> None:
    for fault, stream in STALLS:
        trace, before = str(uuid.uuid4()), len(proxy.chat_requests())
        started = time.monotonic()
        response = _post(proxy, "routed/code", stream=stream, trace=trace)
        took = time.monotonic() - started
        case = (fault.kind.value, stream)
        assert response.status_code == 200, case
        assert "Done." in response.text, case
        assert [r.model for r in proxy.chat_requests()[before:]] == ["deepseek-v4-flash", "gpt-4o"]
        bound = STREAM_TIMEOUT_S if stream else TIMEOUT_S
        assert bound * 0.9 < took < bound + 2.5, case  # the bound, not the client's 30 s
        stalled, answer = proxy.records(trace, 2)
        assert stalled.model == "deepseek-v4-flash" and not stalled.ok, case
        assert "Timeout" in (stalled.outcome or ""), case
        assert stalled.latency_s is not None and stalled.latency_s < bound + 1.0, case
        assert answer.ok and answer.model == "gpt-4o" and answer.attempt == 2, case

    # empty deltas for ever: LiteLLM has started the stream (its first chunk), so it cannot
    # fall back; the deadline still ends it, and the attempt is a timeout, not an answer
    trace, started = str(uuid.uuid4()), time.monotonic()
    response = _post(proxy, "routed/code", stream=True, trace=trace)
    assert time.monotonic() - started < STREAM_TIMEOUT_S + 2.5
    assert "error" in response.text
    [stalled] = proxy.records(trace, 1)
    assert stalled.model == "deepseek-v4-flash" and "Timeout" in (stalled.outcome or "")


def test_a_stream_without_a_finish_reason_is_recorded_as_truncated(proxy: Proxy) -> None:
    trace = str(uuid.uuid4())
    response = _post(proxy, "routed/code", stream=True, trace=trace)
    assert '"content":"def' in response.text  # the stream had started: no fallback
    assert "finish_reason was received" in response.text  # LiteLLM's error event
    [record] = proxy.records(trace, 1)
    assert record.model == "deepseek-v4-flash" and record.outcome == "truncated"
    assert not record.ok and record.input_tokens is None  # it may have been billed: unknown


@pytest.mark.parametrize(
    ("model", "stream"),
    [("claude-3.5-sonnet", False), ("gpt-4o-mini", True), ("qwen3-32b", True)],
    ids=["401", "401-stream", "error-event-mid-stream"],
)
def test_the_error_returned_to_the_client_holds_no_key(
    proxy: Proxy, model: str, stream: bool
) -> None:
    trace = str(uuid.uuid4())
    response = _post(proxy, model, stream=stream, trace=trace)
    assert "[redacted]" in response.text, response.text[:500]
    for form in encodings(KEY):
        assert form not in response.text, form
        assert form not in json.dumps(response.text), form
    if model != "qwen3-32b":
        assert response.status_code == 401  # status and type unchanged
        assert response.json()["error"]["code"] in ("401", 401, "invalid_api_key")
    [record] = proxy.records(trace, 1)
    assert not record.ok and KEY not in (record.error or "")
