"""A real LiteLLM proxy against upstreams that stall, cut streams short or echo the key.

LiteLLM's ``timeout`` and ``stream_timeout`` bound each read, not an attempt: routedllm's
hook bounds the whole attempt, so a trickling upstream falls back. A stream that closes
without a finish reason is recorded as ``truncated``. The error a client gets back holds
no form of the upstream key, whatever way the upstream echoed it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from routedllm.records.schema import CallRecord, encodings
from routedllm.testing import ModelSpec, Upstream
from routedllm.testing.faults import (
    empty_deltas_forever,
    error_body,
    keepalive_forever,
    no_choices,
    no_finish,
    trickle,
)
from routedllm.testing.spec import CannedResponse
from tests.test_litellm_proxy import CODE, Proxy, start_proxy

if importlib.util.find_spec("litellm") is None:
    pytest.skip(
        "litellm is not installed: pip install 'routedllm[litellm-proxy]'", allow_module_level=True
    )
from routedllm.adapters.litellm.deadlines import DeadlineTransport  # noqa: E402

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
    # the code chain starts deepseek-v4-flash, gpt-4o: each stall falls back to gpt-4o (the
    # tests below use up the script in order)
    "deepseek-v4-flash": ModelSpec(
        script=[*(f for f, _ in STALLS), empty_deltas_forever(0.2), no_finish(), no_choices()],
        reply="def add(a, b):\n    return a + b\n",
        chunk_delay_s=0.01,
    ),
    "gpt-4o": ModelSpec(reply="Done."),
    # concrete names, no fallback: what the upstream says reaches the client
    "claude-3.5-sonnet": ModelSpec(canned=[REFUSED] * 2),
    "gpt-4o-mini": ModelSpec(canned=[REFUSED] * 2),  # a 401 cools a model down: another one
    "qwen3-32b": ModelSpec(faults={error_body(1, ECHO): 1.0}, reply="一二三四五六七八九十"),
    # a stream that stalls after its first chunks, each gap past the stream timeout
    "gemini-1.5-pro": ModelSpec(reply="one two three four", chunk_delay_s=STREAM_TIMEOUT_S + 1.5),
}


# Another logger in the same proxy, as an operator's Langfuse or spend log would be: it
# writes down the model group and model of each standard logging payload it is given.
PAYLOADS_LOGGER = """\
import json, os
from litellm.integrations.custom_logger import CustomLogger


class Payloads(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        slo = kwargs.get("standard_logging_object") or {}
        line = {k: slo.get(k) for k in ("trace_id", "model_group", "model")}
        with open(os.environ["PAYLOADS_FILE"], "a") as out:
            out.write(json.dumps(line) + "\\n")


handler = Payloads()
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    args = ["--timeout", str(TIMEOUT_S), "--stream-timeout", str(STREAM_TIMEOUT_S)]
    tmp = tmp_path_factory.mktemp("litellm-hard")
    (tmp / "payloads_logger.py").write_text(PAYLOADS_LOGGER, "utf-8")
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)

    def with_payloads(config: dict[str, Any]) -> None:
        config["litellm_settings"]["callbacks"].append("payloads_logger.handler")

    with (
        Upstream(SPECS) as upstream,
        start_proxy(
            tmp,
            SPECS,
            config_args=[*args, "--retries", "0"],
            patch=with_payloads,
            env={
                "GLOBAL_API_KEY": KEY,
                "PYTHONPATH": path,
                "PAYLOADS_FILE": str(tmp / "payloads.jsonl"),
            },
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
        assert stalled.outcome == "Timeout", case
        assert stalled.latency_s is not None and stalled.latency_s < bound + 1.0, case
        assert answer.ok and answer.model == "gpt-4o" and answer.attempt == 2, case

    # empty deltas for ever: LiteLLM has started the stream (its first chunk), so it cannot
    # fall back; the deadline still ends it, and the attempt is a timeout, not an answer
    _stalled_stream(proxy, "routed/code", "deepseek-v4-flash")
    # a stream that stalls after its first chunk: LiteLLM's per-read limit ends it, and
    # the attempt is a Timeout as every other (not the SDK's APITimeoutError)
    stalled = _stalled_stream(proxy, "gemini-1.5-pro", "gemini-1.5-pro")
    assert stalled.output_tokens is None  # it may have been billed for what it sent


def _stalled_stream(proxy: Proxy, asked: str, called: str) -> CallRecord:
    """A stream to ``asked`` that stalls once started: ended within the stream timeout with
    an error to the client, and one ``Timeout`` record under ``called``."""
    trace, started = str(uuid.uuid4()), time.monotonic()
    response = _post(proxy, asked, stream=True, trace=trace)
    assert time.monotonic() - started < STREAM_TIMEOUT_S + 2.5
    assert "error" in response.text
    [stalled] = proxy.records(trace, 1)
    assert stalled.model == called and stalled.outcome == "Timeout"
    return stalled


def test_a_stream_without_a_finish_reason_is_recorded_as_truncated(proxy: Proxy) -> None:
    trace = str(uuid.uuid4())
    response = _post(proxy, "routed/code", stream=True, trace=trace)
    assert '"content":"def' in response.text  # the stream had started: no fallback
    assert "finish_reason was received" in response.text  # LiteLLM's error event
    [record] = proxy.records(trace, 1)
    assert record.model == "deepseek-v4-flash" and record.outcome == "truncated"
    assert not record.ok and record.input_tokens is None  # it may have been billed: unknown


def test_a_200_without_choices_falls_back(proxy: Proxy) -> None:
    trace, before = str(uuid.uuid4()), len(proxy.chat_requests())
    response = _post(proxy, "routed/code", stream=False, trace=trace)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
    assert "Done." in response.text  # the fallback's answer, not the empty one
    assert [r.model for r in proxy.chat_requests()[before:]] == ["deepseek-v4-flash", "gpt-4o"]
    empty, answer = proxy.records(trace, 2)
    assert empty.model == "deepseek-v4-flash" and not empty.ok
    assert "without choices" in (empty.error or "")
    assert answer.ok and answer.model == "gpt-4o" and answer.attempt == 2


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


def test_litellms_own_loggers_see_the_routed_group_as_the_model_group(proxy: Proxy) -> None:
    trace = str(uuid.uuid4())
    response = _post(proxy, "routed/general", stream=False, trace=trace)
    assert response.status_code == 200
    assert response.headers["x-litellm-model-group"] == "routed/general"
    [record] = proxy.records(trace, 1)
    payloads = proxy.log.parent / "payloads.jsonl"
    seen = [json.loads(line) for line in payloads.read_text("utf-8").splitlines()]
    [mine] = [p for p in seen if p["trace_id"] == trace]
    assert mine["model_group"] == "routed/general"  # the group the client asked for
    assert mine["model"] == f"openai/{record.model}"  # the deployment that answered


# -- in this process, no proxy ----------------------------------------------------------------
class _Paced(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], gap_s: float) -> None:
        self.chunks, self.gap_s = chunks, gap_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.gap_s)
            yield chunk


class _Upstream(httpx.AsyncBaseTransport):
    """Answers after ``head_s`` with ``chunks``, one every ``gap_s``."""

    def __init__(self, chunks: list[bytes], gap_s: float = 0.05, head_s: float = 0.0) -> None:
        self.chunks, self.gap_s, self.head_s = chunks, gap_s, head_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.head_s)
        return httpx.Response(200, stream=_Paced(self.chunks, self.gap_s), request=request)


KEEPALIVE = b": keep-alive\n\n"
CONTENT = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
EMPTY = b'data: {"choices":[{"delta":{"content":""}}]}\n\n'


async def _send(
    upstream: httpx.AsyncBaseTransport, *, stream: bool, path: str = "/v1/chat"
) -> httpx.Response:
    transport = DeadlineTransport(upstream, timeout_s=0.4, stream_s=0.2)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"http://upstream.test{path}", json={"stream": stream})
        await response.aread()
        return response


async def _read(upstream: _Upstream, *, stream: bool) -> bytes:
    return (await _send(upstream, stream=stream)).content


@pytest.mark.parametrize(
    ("upstream", "stream"),
    [
        (_Upstream([KEEPALIVE] * 100), True),  # comments only: no content ever
        (_Upstream([EMPTY] * 100), True),  # empty deltas only
        (_Upstream([b"{"] * 100), False),  # a plain body trickled
        (_Upstream([b"{}"], head_s=5.0), False),  # no head at all
        (_Upstream([b"{"] * 100), False),  # trickled, and read whole to be checked: below
    ],
    ids=["keepalive", "empty-deltas", "trickle", "no-head", "trickle-checked"],
)
async def test_the_deadline_transport_ends_a_stalled_attempt(
    upstream: _Upstream, stream: bool, request: pytest.FixtureRequest
) -> None:
    path = CHAT if request.node.callspec.id == "trickle-checked" else "/v1/chat"
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout, match="routedllm: the upstream did not send"):
        await _send(upstream, stream=stream, path=path)
    assert time.monotonic() - started < 1.5


async def test_a_started_stream_and_a_prompt_answer_run_to_their_end() -> None:
    # content first, then more than the stream's bound of keep-alives: a long answer
    body = await _read(_Upstream([CONTENT, *[KEEPALIVE] * 8]), stream=True)
    assert body.startswith(CONTENT) and body.count(KEEPALIVE) == 8
    assert await _read(_Upstream([b"{}"]), stream=False) == b"{}"


CHAT = "/v1/chat/completions"
ANSWER = {"id": "c-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}]}


class _Answers(httpx.AsyncBaseTransport):
    """Answers 200 with ``body`` (JSON unless bytes), gzip-encoded when ``gzip``."""

    def __init__(self, body: Any, gzip: bool = False) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = [("content-type", "application/json")]
        if gzip:
            import gzip as gzip_module

            raw = gzip_module.compress(raw)
            self.headers.append(("content-encoding", "gzip"))
        self.raw = raw

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers=self.headers, stream=_Paced([self.raw], 0.0), request=request
        )


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"id": "c-1", "choices": []}, 502, "without choices"),
        ({"id": "c-1"}, 502, "without choices"),
        ({"id": "c-1", "choices": None}, 502, "without choices"),
        ({"id": "c-1", "choices": [{"index": 0}]}, 502, "carry no message"),
        (b'{"id": "c-1", "choices": [{', 502, "not a JSON object"),
        (
            {"error": {"message": "overloaded", "type": "server_error", "code": None}},
            502,
            "overloaded",
        ),
        ({"error": {"message": "bad key", "code": "401"}}, 401, "bad key"),
        ({**ANSWER, "error": {"message": "late failure"}}, 502, "late failure"),
    ],
    ids=["empty", "missing", "null", "no-message", "not-json", "error", "error-401", "both"],
)
async def test_a_plain_200_without_a_completion_is_an_upstream_error(
    body: Any, status: int, says: str
) -> None:
    response = await _send(_Answers(body), stream=False, path=CHAT)
    assert response.status_code == status
    error = response.json()["error"]
    assert (
        error["message"].startswith("routedllm: the upstream answered") and says in error["message"]
    )


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
async def test_a_usable_completion_and_other_responses_pass_unchanged(gzip: bool) -> None:
    response = await _send(_Answers(ANSWER, gzip=gzip), stream=False, path=CHAT)
    assert response.status_code == 200 and response.json() == ANSWER
    # a stream, or another endpoint, is not read here: passed on as it came
    empty = b'{"choices": []}'
    for stream, path in ((True, CHAT), (False, "/v1/embeddings")):
        passed = await _send(_Answers(empty), stream=stream, path=path)
        assert passed.status_code == 200 and passed.content == empty


def test_truncated_streams_scrubbed_errors_and_the_model_group_in_the_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import litellm

    from routedllm.adapters.litellm import LiteLLMHandler
    from routedllm.records.memory import MemorySink
    from tests.conftest import fixture_catalog

    monkeypatch.setenv("GLOBAL_API_KEY", KEY)
    memory = MemorySink()
    handler = LiteLLMHandler(fixture_catalog(), memory=memory)
    # a stream LiteLLM reports as ended before a finish reason
    cut = "litellm.APIConnectionError: Stream ended before a finish_reason was received"
    slo = {"model": "gpt-4o", "model_id": "d-1", "trace_id": "t-cut", "error_str": cut}
    handler.log_failure_event(
        {"standard_logging_object": slo, "litellm_params": {"metadata": {}}}, None, None, None
    )
    [record] = memory.records
    assert record.outcome == "truncated" and not record.ok

    # the exception the proxy turns into the client's error body, scrubbed in place
    error = litellm.AuthenticationError(
        message=ECHO, llm_provider="openai", model="gpt-4o", litellm_debug_info=ECHO
    )
    asyncio.run(handler.async_post_call_failure_hook({"metadata": {}}, error, None))
    for form in encodings(KEY):
        assert form not in str(error) and form not in (error.litellm_debug_info or "")
    assert "[redacted]" in error.message

    # LiteLLM's standard logging payload of a routed call: the group, the deployment's model
    kwargs: dict[str, Any] = {
        "litellm_params": {"metadata": {"routedllm": {"group": "routed/code"}}},
        "standard_logging_object": {"model_group": "gpt-4o", "model": "gpt-4o"},
    }
    kwargs, _ = asyncio.run(handler.async_logging_hook(kwargs, None, "acompletion"))
    assert kwargs["standard_logging_object"] == {"model_group": "routed/code", "model": "gpt-4o"}
