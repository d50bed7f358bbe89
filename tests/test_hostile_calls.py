"""Hostile upstreams and inputs during a call (issue #13, "calls in flight").

Slow-loris upstreams (a body trickled, keep-alive comments or empty deltas for ever) must
fall back within the attempt's deadline in every mode; a key echoed back by an upstream
must not leave in any encoding; usage that cannot be believed must not lose the answer or
hold money; every attempt that reached the upstream is recorded with its own outcome;
malformed 200s fall back; bad request values say what is wrong; a response naming another
model is priced one way everywhere; the budget's upper-bound reservation holds for any
script. Each case is a row of the "Calls in flight" table in docs/testing.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from routedllm import AllAttemptsFailedError, CostLatencyHandler, LocalBudget, Policy, Request
from routedllm import decide as decide_call
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.core.errors import InvalidRequestError, StreamInterruptedError
from routedllm.core.requests import input_token_bound
from routedllm.core.tags import message_features
from routedllm.records.ledger import read_ledger
from routedllm.records.routed import RoutedCall, call_of
from routedllm.records.schema import scrub
from routedllm.reliability.budget import MAX_AMOUNT_USD, BudgetLimits
from routedllm.reliability.secrets import Scrubber, encodings
from routedllm.testing import ModelSpec, Upstream
from routedllm.testing import faults as f
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, test_catalog
from tests.test_budget import on_redis, redis_url, shared  # noqa: F401  # redis_url: a fixture

CATALOG = test_catalog()
KEY = "sk-planted-9f8e7d6c5b4a39281706+/="  # '+', '/', '=' make every encoding differ
PROMPT = "Summarise the minutes of the meeting."
pytestmark = SOCKET_PROBE_ALLOWED
loopback = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]


def ranking(text: str = PROMPT) -> tuple[str, ...]:
    return decide_call(CATALOG, Policy(), Request(messages=[HumanMessage(text)])).ranking


# -- an in-process upstream answering whatever a test wants ---------------------------------
Handler = Callable[[str, dict[str, Any], int], httpx2.Response]


def completion(model: str, content: Any = "fine", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model}
    return "data: " + json.dumps({**body, "choices": choices, **extra}) + "\n\n"


def sse(model: str, text: str = "fine", *, finish: bool = True, done: bool = True) -> str:
    parts = [chunk(model, {"role": "assistant", "content": ""})]
    parts += [chunk(model, {"content": word}) for word in text.split(" ")]
    if finish:
        parts.append(chunk(model, {}, "stop"))
        usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
        parts.append(chunk(model, None, usage=usage))
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts)


def stream_response(body: str) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, text=body)


class Gateway:
    """Calls ``handler(model, body, n)`` for the n-th request (from 1); records models."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.models: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.models.append(body["model"])
        return self.handler(body["model"], body, len(self.models))

    def clients(self) -> dict[str, Any]:
        return {
            "http_client": httpx2.Client(transport=httpx2.MockTransport(self)),
            "http_async_client": httpx2.AsyncClient(transport=httpx2.MockTransport(self)),
        }


def routed(gateway: Gateway, **params: Any) -> RoutedChatModel:
    defaults = {"api_key": KEY, "catalog": CATALOG, "rate_limit_retries": 0}
    return RoutedChatModel(**{**defaults, **gateway.clients(), **params})


def first_fails(bad: Callable[[str, dict[str, Any]], httpx2.Response]) -> Gateway:
    """The first request gets ``bad``; the others a good answer (plain or streamed)."""

    def handler(model: str, body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 1:
            return bad(model, body)
        if body.get("stream"):
            return stream_response(sse(model))
        return httpx2.Response(200, json=completion(model))

    return Gateway(handler)


def record_of(reply: Any) -> RoutedCall:
    call = RoutedCall.from_metadata(reply.response_metadata.get("routedllm"))
    assert call is not None
    return call


def streamed_record(chunks: list[Any]) -> RoutedCall:
    for c in chunks:
        call = RoutedCall.from_metadata(c.message.response_metadata.get("routedllm"))
        if call is not None:
            return call
    raise AssertionError("no chunk carried the record")


def run_mode(llm: RoutedChatModel, mode: str, text: str = PROMPT, **kwargs: Any) -> RoutedCall:
    """One call in ``mode`` (invoke, ainvoke, stream, astream); the call's record."""
    if mode == "invoke":
        return record_of(llm.invoke(text, **kwargs))
    if mode == "ainvoke":
        return record_of(asyncio.run(llm.ainvoke(text, **kwargs)))
    if mode == "stream":
        return streamed_record([_Chunk(c) for c in llm.stream(text, **kwargs)])

    async def collect() -> list[Any]:
        return [_Chunk(c) async for c in llm.astream(text, **kwargs)]

    return streamed_record(asyncio.run(collect()))


class _Chunk:
    def __init__(self, message: Any) -> None:
        self.message = message


MODES = ("invoke", "ainvoke", "stream", "astream")


# == 1. deadlines ===============================================================================
SLOW_LORIS = {
    "trickle": f.trickle(1),  # the whole response at 1 byte/s: every read succeeds
    "keepalive": f.keepalive_forever(interval_s=0.3),  # SSE comments (plain: newlines)
    "empty_deltas": f.empty_deltas_forever(interval_s=0.3),  # streams only
}
ATTEMPT_S = 1.5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(SLOW_LORIS))
@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_slow_loris_falls_back_within_the_attempt_deadline(fault: str, mode: str) -> None:
    if fault == "empty_deltas" and mode in ("invoke", "ainvoke"):
        pytest.skip("empty deltas are a stream's fault")
    first, second = ranking()[:2]
    with Upstream({first: ModelSpec(script=[SLOW_LORIS[fault]])}, api_key=KEY) as up:
        llm = RoutedChatModel(
            base_url=up.base_url,
            api_key=KEY,
            catalog=CATALOG,
            timeout=10,  # each read: far longer than the attempt may take
            attempt_timeout_s=ATTEMPT_S,
        )
        started = time.monotonic()
        call = run_mode(llm, mode)
        took = time.monotonic() - started
    assert [a.model for a in call.attempts] == [first, second]
    failed = call.attempts[0]
    assert failed.outcome == "DeadlineExceeded", failed
    assert call.model == second
    # the bound: the deadline plus scheduling noise (generous: the suite shares 2 cores;
    # without the deadline these calls take minutes or never end), and the fallback's answer
    assert failed.latency_s is not None and failed.latency_s < ATTEMPT_S + 2.0
    assert took < ATTEMPT_S + 5.0


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("mode", MODES)
def test_the_call_deadline_bounds_every_attempt_and_wait_together(mode: str) -> None:
    models = ranking()
    spec = ModelSpec(script=[f.keepalive_forever(interval_s=0.2)] * 4)
    with Upstream(dict.fromkeys(models, spec), api_key=KEY) as up:
        llm = RoutedChatModel(
            base_url=up.base_url, api_key=KEY, catalog=CATALOG, timeout=30, call_timeout_s=2.0
        )
        started = time.monotonic()
        with pytest.raises(AllAttemptsFailedError) as caught:
            run_mode(llm, mode)
        took = time.monotonic() - started
    call = caught.value.call
    assert call is not None
    assert [a.outcome for a in call.attempts] == ["DeadlineExceeded"]
    assert {s.reason for s in call.skipped} == {"Deadline"}
    assert [s.model for s in call.skipped] == list(models[1:])
    assert took < 2.0 + 2.0  # the call deadline plus scheduling noise


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_documented_bound_timeout_times_candidates_holds_by_default() -> None:
    """Without attempt_timeout_s the attempt's deadline is ``timeout``: a call with three
    candidates that all keep the line open ends within 3 x timeout (plus one chunk wait)."""
    models = ranking()
    assert len(models) == 3
    spec = ModelSpec(script=[f.trickle(2)])
    with Upstream(dict.fromkeys(models, spec), api_key=KEY) as up:
        llm = RoutedChatModel(base_url=up.base_url, api_key=KEY, catalog=CATALOG, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(AllAttemptsFailedError) as caught:
            llm.invoke(PROMPT)
        took = time.monotonic() - started
    assert caught.value.call is not None
    # the deadline is the timeout itself here, so each attempt keeps the timeout's name
    assert [a.outcome for a in caught.value.call.attempts] == ["APITimeoutError"] * 3
    assert took < 3 * 1.0 + 3.0  # plus scheduling noise


class _TextThenKeepAlive(httpx2.SyncByteStream):
    """Some text, then an SSE comment every 0.2 s for ever (no finish, no [DONE])."""

    def __init__(self, model: str) -> None:
        self.model = model

    def __iter__(self) -> Iterator[bytes]:
        yield sse(self.model, "half an answer", finish=False, done=False).encode()
        while True:
            time.sleep(0.2)
            yield b": keep-alive\n\n"


def test_a_stream_that_keeps_talking_after_its_text_is_cut_at_the_deadline() -> None:
    """Text reached the caller, then the upstream sends keep-alives for ever: the stream
    ends at the deadline with StreamInterruptedError (no fallback once text is shown)."""
    gateway = Gateway(
        lambda m, b, n: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_TextThenKeepAlive(m)
        )
    )
    llm = routed(gateway, attempt_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(StreamInterruptedError) as caught:
        list(llm.stream(PROMPT))
    assert time.monotonic() - started < 1.0 + 2.0  # plus scheduling noise
    assert caught.value.call is not None
    assert [a.outcome for a in caught.value.call.attempts] == ["DeadlineExceeded"]
    assert len(gateway.models) == 1


class _SlowButSteady(httpx2.SyncByteStream):
    """A long answer: a word every 0.4 s for 2 s, then a proper end."""

    def __init__(self, model: str) -> None:
        self.model = model

    def __iter__(self) -> Iterator[bytes]:
        yield chunk(self.model, {"role": "assistant", "content": "one"}).encode()
        for word in ("two", "three", "four", "five"):
            time.sleep(0.4)
            yield chunk(self.model, {"content": " " + word}).encode()
        yield (chunk(self.model, {}, "stop") + "data: [DONE]\n\n").encode()


def test_by_default_a_long_stream_that_has_started_is_not_cut_at_timeout() -> None:
    """Without attempt_timeout_s, ``timeout`` bounds an attempt until its first chunk only:
    an answer streamed for longer than ``timeout`` is not a fault."""
    gateway = Gateway(
        lambda m, b, n: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_SlowButSteady(m)
        )
    )
    llm = routed(gateway, timeout=1.0)
    chunks = [_Chunk(c) for c in llm.stream(PROMPT)]
    assert "".join(c.message.text for c in chunks) == "one two three four five"
    assert [a.outcome for a in streamed_record(chunks).attempts] == ["ok"]


def test_the_deadlines_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="attempt_timeout_s"):
        RoutedChatModel(api_key=KEY, catalog=CATALOG, attempt_timeout_s=0)
    with pytest.raises(ValueError, match="call_timeout_s"):
        RoutedChatModel(api_key=KEY, catalog=CATALOG, call_timeout_s=-1)


def test_a_retry_after_longer_than_the_call_has_left_falls_back_at_once() -> None:
    def bad(model: str, body: dict[str, Any]) -> httpx2.Response:
        error = {"error": {"message": "slow down", "code": 429}}
        return httpx2.Response(429, json=error, headers={"retry-after": "5"})

    gateway = first_fails(bad)
    llm = routed(gateway, rate_limit_retries=1, max_wait_s=30, call_timeout_s=3)
    started = time.monotonic()
    call = record_of(llm.invoke(PROMPT))
    assert time.monotonic() - started < 2
    assert [a.outcome for a in call.attempts] == ["RateLimitError", "ok"]
    assert gateway.models[0] != gateway.models[1]


# == 2. secrets ================================================================================
FORMS = sorted(encodings(KEY))


def leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]


def everything_said(exc: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Every place an exception's text can be read from, chain included, and the logs."""
    logging.getLogger("hostile").exception("call failed", exc_info=exc)
    parts = [caplog.text]
    for e in chain(exc):
        parts += [str(e), repr(e), repr(e.args), repr(getattr(e, "__notes__", ""))]
        for name in ("message", "body"):
            parts.append(repr(getattr(e, name, "")))
        request = getattr(e, "request", None) if not isinstance(e, httpx2.HTTPError) else None
        for req in (request, getattr(e, "_request", None)):
            if req is not None:
                parts.append(repr(dict(req.headers)) + str(req.url))
        response = getattr(e, "response", None)
        if response is not None:
            parts += [response.text, repr(dict(response.headers))]
            if response._request is not None:  # noqa: SLF001
                parts.append(repr(dict(response.request.headers)))
        call = call_of(e)
        if call is not None:
            parts.append(call.model_dump_json())
    return "\n".join(parts)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("mode", MODES)
def test_a_key_echoed_in_a_401_body_never_leaves(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = ranking()[0]
    with Upstream({first: ModelSpec(script=[f.unauthorized(echo_key=True)])}, api_key=KEY) as up:
        llm = RoutedChatModel(base_url=up.base_url, api_key=KEY, catalog=CATALOG, timeout=5)
        with caplog.at_level(logging.DEBUG), pytest.raises(openai.AuthenticationError) as caught:
            run_mode(llm, mode)
    assert "[redacted]" in str(caught.value)  # the echo was there, and was scrubbed
    assert leaks(everything_said(caught.value, caplog)) == []


def test_a_key_in_any_encoding_is_scrubbed_after_all_attempts_fail(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    global_key = "ga_GLOBALSECRET_abcdef0123456789"
    monkeypatch.setenv(CATALOG.info.gateway.api_key_env, global_key)
    echoed = " | ".join(
        [
            KEY,
            json.dumps(KEY),
            urllib.parse.quote(KEY, safe=""),
            base64.b64encode(KEY.encode()).decode(),
            global_key,
        ]
    )

    def handler(model: str, body: dict[str, Any], n: int) -> httpx2.Response:
        return httpx2.Response(
            500, json={"error": {"message": f"upstream saw {echoed}", "code": 500}}
        )

    llm = routed(Gateway(handler))
    with caplog.at_level(logging.DEBUG), pytest.raises(AllAttemptsFailedError) as caught:
        llm.invoke(PROMPT)
    said = everything_said(caught.value, caplog)
    assert leaks(said) == [] and global_key not in said
    assert base64.b64encode(global_key.encode()).decode() not in said
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert "[redacted]" in str(caught.value.__cause__)


def test_the_scrubber_covers_encodings_and_leaves_short_strings_alone() -> None:
    scrub = Scrubber([KEY, "k", None])
    for form in FORMS:
        assert scrub.text(f"x{form}y") == "x[redacted]y"
    assert scrub.text("deepseek-v4-flash k") == "deepseek-v4-flash k"
    nested = {"a": [KEY, {"b": KEY.encode()}], "c": (1, KEY)}
    assert "sk-planted" not in repr(scrub.value(nested))


@pytest.mark.parametrize("prefix", [b"", b"u:", b"user:", b'{"api_key": "'])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_key_inside_a_longer_base64_blob_is_caught_at_any_offset(
    prefix: bytes, encode: Callable[[bytes], bytes]
) -> None:
    """``Authorization: Basic base64(user:key)`` or a base64'd JSON body: the key's bytes
    start at any offset mod 3 of the blob, and its characters there differ per offset."""
    blob = encode(prefix + KEY.encode() + b'", "n": 1}').decode()
    said = f"upstream echoed Basic {blob} back"
    assert Scrubber([KEY]).holds_secret(said)
    scrubbed = Scrubber([KEY]).text(said)
    assert "[redacted]" in scrubbed and not Scrubber([KEY]).holds_secret(scrubbed)
    assert scrub(said, KEY) == scrubbed  # records scrub the same forms
    assert (
        Scrubber([KEY]).text(f"Basic {encode(b'user:other-key-0000').decode()}").count("[redacted]")
        == 0
    )


# == 3. usage that cannot be believed ===========================================================
BAD_USAGE = {
    "negative": {"prompt_tokens": -5, "completion_tokens": 3},
    "1e308": {"prompt_tokens": 1e308, "completion_tokens": 3},
    "1e30": {"prompt_tokens": 1e30, "completion_tokens": 3},
    "fractional": {"prompt_tokens": 1.5, "completion_tokens": 3},
    "string": {"prompt_tokens": "many", "completion_tokens": 3},
    "above the window": {"prompt_tokens": 9_000_000, "completion_tokens": 3},
    "output negative": {"prompt_tokens": 10, "completion_tokens": -1},
    "cached nan": {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": float("nan")},
    },
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_usage_that_cannot_be_believed_is_unknown_and_the_answer_stands(
    case: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    usage = BAD_USAGE[case]

    def handler(model: str, body: dict[str, Any], n: int) -> httpx2.Response:
        if body.get("stream"):
            text = sse(model, "fine", finish=False, done=False)
            text += chunk(model, {}, "stop") + chunk(model, None, usage=usage) + "data: [DONE]\n\n"
            return stream_response(text)
        body = json.dumps(completion(model, usage=usage))  # NaN allowed, as Python's json.loads
        return httpx2.Response(200, text=body, headers={"content-type": "application/json"})

    budget = LocalBudget(BudgetLimits(max_run_usd=10.0))
    llm = routed(Gateway(handler), budget=budget)
    with caplog.at_level(logging.WARNING):
        call = run_mode(llm, mode)
    answer = call.answer
    assert answer is not None and answer.outcome == "ok"
    assert answer.input_tokens is None and answer.cost_usd is None
    assert any(flag.startswith("usage_invalid") for flag in answer.flags), answer.flags
    assert "not believed" in caplog.text
    status = budget.status()
    assert status.reserved_usd == 0 and status.in_flight == 0
    assert answer.estimated_cost_usd is not None
    assert status.spent_usd == pytest.approx(answer.estimated_cost_usd, rel=1e-6, abs=1e-9)


def test_a_settle_above_the_maximum_changes_nothing_and_says_so() -> None:
    budget = LocalBudget(BudgetLimits(max_run_usd=10.0))
    hold = budget.reserve(0.01)
    with pytest.raises(InvalidRequestError, match="still held"):
        hold.settle(2e10)
    assert budget.status().reserved_usd == pytest.approx(0.01)
    hold.settle(0.02)
    assert budget.status().spent_usd == pytest.approx(0.02)
    for bad in (math.inf, math.nan, -1.0, MAX_AMOUNT_USD * 2, True):
        with pytest.raises(InvalidRequestError):
            budget.reserve(bad)  # type: ignore[arg-type]


# == 4. every attempt that reached the upstream is recorded =====================================
@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streaming"])
def test_an_ainvoke_cancelled_after_sending_is_recorded_and_charged(
    streaming: bool, tmp_path: Path
) -> None:
    """A task cancelled while its request is out: one ``cancelled`` ledger line, charged the
    estimate, the hold released; a model built with ``streaming=True`` alike."""
    first = ranking()[0]
    ledger = tmp_path / "ledger.jsonl"
    budget = LocalBudget(BudgetLimits(max_run_usd=10.0))

    async def scenario(up: Upstream) -> None:
        llm = RoutedChatModel(
            base_url=up.base_url,
            api_key=KEY,
            catalog=CATALOG,
            budget=budget,
            streaming=streaming,
            callbacks=[CostLatencyHandler(ledger_path=ledger, catalog=CATALOG)],
        )
        task = asyncio.create_task(llm.ainvoke(PROMPT))
        while not up.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)  # the shielded clean-up finishes

    with Upstream({first: ModelSpec(latency_s=3.0)}, api_key=KEY) as up:
        asyncio.run(scenario(up))
    records = read_ledger(ledger)
    assert [(r.model, r.outcome) for r in records] == [(first, "cancelled")]
    status = budget.status()
    assert status.reserved_usd == 0 and status.in_flight == 0
    assert status.spent_usd == pytest.approx(records[0].estimated_cost_usd, rel=1e-6)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_that_ends_without_finish_or_done_is_truncated_not_ok(
    mode: str, tmp_path: Path
) -> None:
    first = ranking()[0]
    ledger = tmp_path / "ledger.jsonl"
    budget = LocalBudget(BudgetLimits(max_run_usd=10.0))
    with Upstream({first: ModelSpec(script=[f.no_finish()])}, api_key=KEY) as up:
        llm = RoutedChatModel(
            base_url=up.base_url,
            api_key=KEY,
            catalog=CATALOG,
            budget=budget,
            callbacks=[CostLatencyHandler(ledger_path=ledger, catalog=CATALOG)],
        )
        with pytest.raises(StreamInterruptedError) as caught:
            run_mode(llm, mode)
    assert caught.value.call is not None
    assert [a.outcome for a in caught.value.call.attempts] == ["truncated"]
    assert [r.outcome for r in read_ledger(ledger)] == ["truncated"]
    status = budget.status()
    assert status.reserved_usd == 0
    assert status.spent_usd == pytest.approx(caught.value.call.attempts[0].estimated_cost_usd)


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_cut_before_any_text_falls_back(mode: str) -> None:
    def bad(model: str, body: dict[str, Any]) -> httpx2.Response:
        return stream_response(chunk(model, {"role": "assistant", "content": ""}))

    gateway = first_fails(bad)
    call = run_mode(routed(gateway), mode)
    assert [a.outcome for a in call.attempts] == ["MalformedResponseError", "ok"]


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_with_done_but_no_finish_reason_is_an_answer(mode: str) -> None:
    """Kimi through OpenRouter sends no finish_reason; its [DONE] says the stream ended."""
    gateway = Gateway(lambda m, b, n: stream_response(sse(m, "all of it", finish=False)))
    call = run_mode(routed(gateway), mode)
    assert [a.outcome for a in call.attempts] == ["ok"]


# == 5. malformed 200s ==========================================================================
MALFORMED = {
    "content 12345": lambda m, b: (
        stream_response(
            chunk(m, {"role": "assistant", "content": 12345}, "stop") + "data: [DONE]\n\n"
        )
        if b.get("stream")
        else httpx2.Response(200, json=completion(m, content=12345))
    ),
    "content a list of numbers": lambda m, b: (
        stream_response(chunk(m, {"role": "assistant", "content": [1, 2]}) + "data: [DONE]\n\n")
        if b.get("stream")
        else httpx2.Response(200, json=completion(m, content=[1, 2]))
    ),
    "no choices key": lambda m, b: (
        stream_response(
            "data: " + json.dumps({"id": "x", "object": "chat.completion.chunk"}) + "\n\n"
            "data: [DONE]\n\n"
        )
        if b.get("stream")
        else httpx2.Response(200, json={"id": "x", "object": "chat.completion", "model": m})
    ),
    "choices not a list": lambda m, b: (
        stream_response(
            "data: " + json.dumps({"id": "x", "choices": {"0": 1}}) + "\n\ndata: [DONE]\n\n"
        )
        if b.get("stream")
        else httpx2.Response(200, json={"id": "x", "model": m, "choices": "yes"})
    ),
    "a JSON array": lambda m, b: httpx2.Response(
        200,
        text="[1, 2, 3]",
        headers={"content-type": "text/event-stream" if b.get("stream") else "application/json"},
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_200_falls_back_and_never_reaches_the_caller(case: str, mode: str) -> None:
    gateway = first_fails(MALFORMED[case])
    call = run_mode(routed(gateway), mode)
    assert call.attempts[-1].outcome == "ok" and len(call.attempts) == 2
    assert call.attempts[0].outcome != "ok"
    assert gateway.models[0] != gateway.models[1]


# == 6. request values ==========================================================================
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_tokens": 10**400}, "more than any model can produce"),
        ({"max_tokens": 10**5000}, "thousands of digits"),
        ({"max_tokens": 0}, "positive integer"),
        ({"max_tokens": 2.5}, "positive integer"),
        ({"max_tokens": -3}, "positive integer"),
        ({"routedllm_tags": [["code"]]}, r"tag names \(strings\)"),
        ({"routedllm_tags": 123}, "tag name or a list of tag names"),
        ({"routedllm_tags": {"code": 1}}, "tag"),
    ],
)
@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_bad_request_values_say_what_is_wrong_before_sending(
    kwargs: dict[str, Any], words: str, mode: str
) -> None:
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(m)))
    with pytest.raises(InvalidRequestError, match=words):
        run_mode(routed(gateway), mode, **kwargs)
    assert gateway.models == []


@pytest.mark.parametrize("mode", MODES)
def test_a_lone_surrogate_is_named_not_a_unicode_encode_error(mode: str) -> None:
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(m)))
    with pytest.raises(InvalidRequestError, match=r"message 1 has a lone surrogate \(U\+D800\)"):
        run_mode(routed(gateway), mode, text="half an emoji \ud800 here")
    assert gateway.models == []


# == 7. pricing trust ===========================================================================
def test_a_response_naming_another_model_is_priced_at_the_dearer_and_flagged(
    tmp_path: Path,
) -> None:
    asked, claimed = "gpt-4o", "gpt-4o-mini"
    usage = {"prompt_tokens": 1000, "completion_tokens": 1000}
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(claimed, usage=usage)))
    call = record_of(routed(gateway).invoke(PROMPT, model=asked))
    answer = call.answer
    assert answer is not None and answer.model == asked and answer.answering_model == claimed
    assert any(flag.startswith("model_mismatch") for flag in answer.flags)
    dear = CATALOG.get(asked)
    assert dear.input_usd_per_mtok is not None and dear.output_usd_per_mtok is not None
    expected = (1000 * dear.input_usd_per_mtok + 1000 * dear.output_usd_per_mtok) / 1e6
    assert answer.cost_usd == pytest.approx(expected)
    # The callback handler on a plain ChatOpenAI prices the same response the same way.
    ledger = tmp_path / "plain.jsonl"
    plain = ChatOpenAI(
        model=asked,
        api_key=KEY,  # type: ignore[arg-type]
        base_url="http://gateway.test/v1",
        **gateway.clients(),
        callbacks=[CostLatencyHandler(ledger_path=ledger, catalog=CATALOG)],
    )
    plain.invoke(PROMPT)
    [line] = read_ledger(ledger)
    assert line.cost_usd == pytest.approx(expected)
    assert any(flag.startswith("model_mismatch") for flag in line.flags)


def test_a_dated_snapshot_of_the_same_model_is_no_mismatch() -> None:
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(m + "-2024-08-06")))
    answer = record_of(routed(gateway).invoke(PROMPT, model="gpt-4o")).answer
    assert answer is not None and answer.flags == ()


# == 8. input estimates that are upper bounds ==================================================
SCRIPTS = {
    "english": "Please summarise the quarterly report in three bullet points.",
    "emoji": "😀🎉🚀🔥💯" * 40,
    "cjk": "请把这份季度报告总结成三个要点。" * 10,
    "arabic": "يرجى تلخيص التقرير الفصلي في ثلاث نقاط." * 5,
    "devanagari": "कृपया तिमाही रिपोर्ट को तीन बिंदुओं में सारांशित करें।" * 5,
    "combining": "e\u0301" * 200,
    "zwj family": "👨\u200d👩\u200d👧\u200d👦" * 30,
}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_the_input_bound_is_at_least_the_utf8_bytes_of_any_script(script: str) -> None:
    text = SCRIPTS[script]
    bound = input_token_bound([HumanMessage(text)])
    assert bound >= len(text.encode("utf-8"))  # no byte-level BPE token is shorter than a byte
    typical = message_features([HumanMessage(text)]).input_tokens
    assert bound >= typical


@pytest.mark.parametrize("script", ["emoji", "cjk", "zwj family"])
@pytest.mark.parametrize("concurrency", [8])
def test_a_run_cap_is_never_passed_with_max_tokens_whatever_the_script(
    script: str, concurrency: int
) -> None:
    """The upstream reports the worst usage it could (one token per byte of the prompt and
    every allowed output token); with max_tokens set the holds are upper bounds, so the cap
    is never passed, however many calls are in flight. Overshoot measured: 0."""
    text = SCRIPTS[script]
    max_tokens = 50

    def handler(model: str, body: dict[str, Any], n: int) -> httpx2.Response:
        text_bytes = sum(len(m["content"].encode()) for m in body["messages"])
        worst = {
            "prompt_tokens": text_bytes + 4 * len(body["messages"]),  # OpenAI adds 3-4 a message
            "completion_tokens": max_tokens,
        }
        return httpx2.Response(200, json=completion(model, usage=worst))

    cap = 0.02
    budget = LocalBudget(BudgetLimits(max_run_usd=cap))
    llm = routed(Gateway(handler), budget=budget, model="gpt-4o")

    async def one() -> float | None:
        try:
            reply = await llm.ainvoke(text, max_tokens=max_tokens)
        except Exception:
            return None
        return record_of(reply).cost_usd

    async def burst() -> list[float | None]:
        return await asyncio.gather(*(one() for _ in range(concurrency * 4)))

    costs = asyncio.run(burst())
    spent = budget.status().spent_usd
    assert any(c is not None for c in costs)
    assert spent <= cap + 1e-12, f"overshoot {spent - cap:.6f}"
    assert sum(c for c in costs if c is not None) == pytest.approx(spent)


@on_redis
def test_redis_settle_cannot_overflow_or_half_apply(
    redis_url: str,  # noqa: F811  # the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    import redis

    budget = shared(redis_url, max_run_usd=10.0)
    hold = budget.reserve(0.01)
    with pytest.raises(InvalidRequestError, match="still held"):
        hold.settle(2e10)
    assert budget.status().reserved_usd == pytest.approx(0.01)  # nothing applied
    hold.settle(0.02)
    status = budget.status()
    assert (status.spent_usd, status.reserved_usd) == (pytest.approx(0.02), 0)
    # A run's total at the edge of what Redis counts: the settle changes nothing, says so,
    # and does not claim that calls are refused.
    second = shared(redis_url)
    second_hold = second.reserve(0.5)
    redis.Redis.from_url(redis_url).set(second._keys[0], str(9 * 10**18 - 10))  # noqa: SLF001
    with caplog.at_level(logging.WARNING):
        second_hold.settle(0.5)
    assert "would pass what Redis can count" in caplog.text
    assert "calls are refused" not in caplog.text
    assert second.status().spent_usd == pytest.approx((9 * 10**18 - 10) / 1e9)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_without_max_tokens_the_overshoot_is_what_calls_in_flight_cost_beyond_their_holds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The remaining bound, measured: with no max_tokens a hold is an estimate, and a cap
    is passed by at most the sum, over the calls in flight when it was reached, of what
    each cost beyond its hold (here each call costs about 17x its estimate)."""
    cap, concurrency = 0.05, 8
    spec = ModelSpec(latency_s=0.3, prompt_tokens=2_000, completion_tokens=8_000)
    budget = LocalBudget(BudgetLimits(max_run_usd=cap))
    with Upstream({"gpt-4o": spec}, api_key=KEY) as up:
        llm = RoutedChatModel(
            base_url=up.base_url, api_key=KEY, catalog=CATALOG, budget=budget, model="gpt-4o"
        )

        async def one() -> RoutedCall | None:
            try:
                return record_of(await llm.ainvoke("Say hello."))
            except Exception:
                return None

        async def burst() -> list[RoutedCall | None]:
            return await asyncio.gather(*(one() for _ in range(concurrency * 2)))

        calls = [c for c in asyncio.run(burst()) if c is not None]
    spent = budget.status().spent_usd
    beyond = sum((c.cost_usd or 0) - (c.estimated_cost_usd or 0) for c in calls)
    overshoot = max(0.0, spent - cap)
    with capsys.disabled():
        print(
            f"\n{len(calls)} calls answered, cap ${cap}, spent ${spent:.6f}, overshoot "
            f"${overshoot:.6f} = {spent / cap:.1f}x the cap; bound (cost beyond holds) "
            f"${beyond:.6f}"
        )
    assert overshoot > 0  # the case the docs warn about: estimates are not bounds
    assert overshoot <= beyond + 1e-12


def test_a_plain_chat_models_error_record_is_scrubbed_of_every_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CostLatencyHandler on a plain ChatOpenAI scrubs the gateway key from its records
    with the same encodings (records.schema.scrub)."""
    monkeypatch.setenv(CATALOG.info.gateway.api_key_env, KEY)
    forms = (json.dumps(KEY), urllib.parse.quote(KEY, safe=""), base64.b64encode(KEY.encode()))
    echoed = " ".join(f if isinstance(f, str) else f.decode() for f in forms)
    gateway = Gateway(
        lambda m, b, n: httpx2.Response(500, json={"error": {"message": echoed, "code": 500}})
    )
    ledger = tmp_path / "plain.jsonl"
    plain = ChatOpenAI(
        model="gpt-4o",
        api_key=KEY,  # type: ignore[arg-type]
        base_url="http://gateway.test/v1",
        max_retries=0,
        **gateway.clients(),
        callbacks=[CostLatencyHandler(ledger_path=ledger, catalog=CATALOG)],
    )
    with pytest.raises(openai.InternalServerError):
        plain.invoke(PROMPT)
    text = ledger.read_text()
    assert "[redacted]" in text and leaks(text) == []


# == 9. a second round: new inputs in the same classes ===========================================
def _pct(text: str, upper: bool = False, every: bool = False) -> str:
    """``text`` percent-encoded: reserved characters (or ``every`` one), in lower-case hex
    unless ``upper``."""
    out = []
    for c in text:
        keep = not every and (c.isalnum() or c in "-_.~")
        out.append(c if keep else ("%%%02X" if upper else "%%%02x") % ord(c))
    return "".join(out)


B64 = base64.b64encode(KEY.encode()).decode()
RE_ESCAPED = {
    "percent, lower-case hex": _pct(KEY),
    "percent, every character": _pct(KEY, upper=True, every=True),
    "percent-encoded twice": urllib.parse.quote(urllib.parse.quote(KEY, safe=""), safe=""),
    "JSON \\u escapes": "".join(f"\\u{ord(c):04x}" for c in KEY),
    "JSON \\/ escapes": KEY.replace("/", "\\/"),
    "HTML character references": KEY.replace("+", "&#43;").replace("/", "&#x2F;"),
    "split across lines": KEY[:14] + "\n" + KEY[14:],
    "split by an escaped newline": KEY[:14] + "\\n" + KEY[14:],
    "hex of its bytes": KEY.encode().hex(),
    "base64 wrapped at 16 columns": "\n".join(B64[i : i + 16] for i in range(0, len(B64), 16)),
}


@pytest.mark.parametrize("form", list(RE_ESCAPED))
def test_a_key_the_upstream_re_escapes_is_scrubbed_everywhere(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """500 bodies quoting the key in a form the plain encodings miss: every model fails;
    no exception in the chain, record or log holds it."""
    echoed = RE_ESCAPED[form]
    gateway = Gateway(
        lambda m, b, n: httpx2.Response(
            500, json={"error": {"message": f"upstream saw <{echoed}>", "code": 500}}
        )
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(AllAttemptsFailedError) as caught:
        routed(gateway).invoke(PROMPT)
    said = everything_said(caught.value, caplog)
    assert "<[redacted]>" in str(caught.value.__cause__)
    assert echoed not in said and " ".join(echoed.split()) not in said
    assert leaks(said) == []


def test_the_scrubber_reaches_every_place_an_exception_keeps_text() -> None:
    """Dict keys, sets, attributes of any name, built-in exceptions' own fields (OSError's
    file name, JSONDecodeError's document, UnicodeError's object), HTTP requests and
    responses passed as arguments, and values nested 100 deep."""
    scrub = Scrubber([KEY])
    request = httpx2.Request("POST", f"http://gw.test/v1?key={KEY}", headers={"x-echo": KEY})
    response = httpx2.Response(500, content=f"saw {KEY}".encode(), request=request)
    deep: Any = [KEY]
    for _ in range(100):
        deep = [deep]
    custom = ValueError("x")
    custom.detail_of_upstream = {"echo": KEY}  # type: ignore[attr-defined]
    errors: list[BaseException] = [
        ValueError({KEY: 1}),
        ValueError({1, KEY}),
        ValueError(frozenset([KEY])),
        custom,
        OSError(2, "No such file", KEY),
        json.JSONDecodeError("bad", f"doc {KEY}", 0),
        UnicodeDecodeError("utf-8", KEY.encode(), 0, 1, "bad"),
        ValueError(request),
        ValueError(response),
        ValueError(deep),
    ]
    for exc in errors:
        scrub.exception(exc)
        shown = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        for name in ("filename", "doc", "object"):
            shown.append(repr(getattr(exc, name, "")))
        for arg in exc.args:
            if isinstance(arg, httpx2.Request):
                shown += [str(arg.url), repr(dict(arg.headers))]
            if isinstance(arg, httpx2.Response):
                shown += [arg.text, str(arg.request.url)]
        assert leaks("\n".join(shown)) == [], repr(exc)


def test_an_exception_that_cannot_be_scrubbed_in_place_is_replaced_in_the_chain() -> None:
    """A pydantic ValidationError quoting an input computes its text from state no
    attribute exposes: in a chain, it is replaced by a ScrubbedError with the text
    scrubbed (its type named), and the rest of the chain kept."""
    from pydantic import BaseModel

    from routedllm.reliability.secrets import ScrubbedError

    class Body(BaseModel):
        content: str

    root = OSError("connection reset")
    try:
        Body.model_validate({"content": {"echo": KEY}})
    except Exception as invalid:
        invalid.__cause__ = root
        outer = RuntimeError("a stream chunk that is not a chat completion chunk")
        outer.__cause__ = invalid
    assert KEY in str(outer.__cause__)
    Scrubber([KEY]).exception(outer)
    replaced = outer.__cause__
    assert isinstance(replaced, ScrubbedError) and "ValidationError" in str(replaced)
    assert "[redacted]" in str(replaced) and leaks(f"{replaced} {replaced!r}") == []
    assert replaced.__cause__ is root


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_key_echoed_in_a_malformed_chunk_after_text_never_leaves(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Text went out, then a chunk whose content is an object quoting the key: the
    StreamInterruptedError's chain (a pydantic error quoting its input) holds no key."""
    gateway = Gateway(
        lambda m, b, n: stream_response(
            chunk(m, {"role": "assistant", "content": "Hel"})
            + chunk(m, {"content": {"k": KEY}}, "stop")  # short: pydantic quotes it whole
            + "data: [DONE]\n\n"
        )
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(StreamInterruptedError) as caught:
        run_mode(routed(gateway), mode)
    assert leaks(everything_said(caught.value, caplog)) == []


STRANGE_WAITS = {
    "inf": "inf",
    "1e400": "1e400",
    "nan": "nan",
    "negative": "-5",
    "a date in the year 9999": "Fri, 31 Dec 9999 23:59:59 GMT",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wait", list(STRANGE_WAITS))
def test_a_retry_after_that_is_no_finite_wait_still_falls_back(wait: str, mode: str) -> None:
    """A 429 whose Retry-After is infinite, NaN, negative or centuries away: the attempt
    is recorded (no pydantic error from a non-finite number) and the next model answers."""
    header = STRANGE_WAITS[wait]
    gateway = first_fails(
        lambda m, b: httpx2.Response(429, headers={"retry-after": header}, json={})
    )
    call = run_mode(routed(gateway), mode)
    first, answer = call.attempts
    assert first.outcome == "RateLimitError" and answer.outcome == "ok"
    assert first.retry_after_s is None or 0 <= first.retry_after_s <= 86_400


@pytest.mark.parametrize("mode", MODES)
def test_a_body_nested_past_the_json_decoder_falls_back(mode: str) -> None:
    """A 200 body (or a stream chunk) of 100,000 nested arrays: a RecursionError while
    decoding is a malformed body, so the next model answers."""
    deep = "[" * 100_000 + "]" * 100_000
    gateway = first_fails(
        lambda m, b: (
            stream_response("data: " + deep + "\n\n" + sse(m))
            if b.get("stream")
            else httpx2.Response(200, text=deep, headers={"content-type": "application/json"})
        )
    )
    call = run_mode(routed(gateway), mode)
    assert [a.outcome for a in call.attempts] == ["RecursionError", "ok"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("mode", ["invoke", "astream"])
def test_a_redirect_is_an_upstream_fault_and_falls_back(status: int, mode: str) -> None:
    """The SDK does not follow redirects; a 3xx is not the caller's error (no fallback
    before: raised as APIStatusError at once)."""
    gateway = first_fails(
        lambda m, b: httpx2.Response(status, headers={"location": "http://elsewhere.test/"})
    )
    call = run_mode(routed(gateway), mode)
    assert [a.status for a in call.attempts] == [status, None]
    assert call.attempts[-1].outcome == "ok"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("role", ["user", "system", "tool", "model"])
def test_a_reply_in_another_role_than_assistant_falls_back(role: str, mode: str) -> None:
    """A 200 whose message (or first delta) has role ``user``/``system``/...: not an answer
    (it reached the caller as a HumanMessage/SystemMessage with its usage dropped)."""
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    body = completion("x")
    body["choices"][0]["message"]["role"] = role
    gateway = first_fails(
        lambda m, b: (
            stream_response(
                chunk(m, {"role": role, "content": "hi"})
                + chunk(m, {}, "stop")
                + chunk(m, None, usage=usage)
                + "data: [DONE]\n\n"
            )
            if b.get("stream")
            else httpx2.Response(200, json={**body, "model": m})
        )
    )
    call = run_mode(routed(gateway), mode)
    assert [a.outcome for a in call.attempts] == ["MalformedResponseError", "ok"]
    assert call.cost_usd is not None


SERVED = {
    "a number": (5, None),
    "a list": (["gpt-4o"], None),
    "an empty string": ("", None),
    "terminal escapes and NUL": ("gpt\x1b[31m\n\x00", "gpt\\x1b[31m\\n\\x00"),
    "10,000 characters": ("x" * 10_000, "x" * 197 + "..."),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("served", list(SERVED))
def test_the_model_field_of_an_answer_is_recorded_safely_whatever_its_shape(
    served: str, mode: str
) -> None:
    """The upstream's ``model`` field is the upstream's text: a non-string is no name (a
    number lost a whole streamed answer to a TypeError), control characters are shown
    escaped and a long one is clipped to 200 characters; the answer stands."""
    value, expected = SERVED[served]

    def body(m: str) -> dict[str, Any]:
        return {**completion(m), "model": value}

    def stream(m: str) -> str:
        return (
            "".join(
                "data: " + json.dumps({**json.loads(part[6:]), "model": value}) + "\n\n"
                for part in sse(m).split("\n\n")
                if part.startswith("data: {")
            )
            + "data: [DONE]\n\n"
        )

    gateway = Gateway(
        lambda m, b, n: (
            stream_response(stream(m)) if b.get("stream") else httpx2.Response(200, json=body(m))
        )
    )
    call = run_mode(routed(gateway), mode)
    assert [a.outcome for a in call.attempts] == ["ok"]
    assert call.served_model == expected and call.attempts[0].answering_model == expected
    assert call.cost_usd is not None


def _circular() -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    schema["properties"]["self"] = schema
    return schema


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


UNSENDABLE: dict[str, tuple[Callable[[RoutedChatModel], Any], Any]] = {
    "bytes in a content part": (
        lambda llm: llm,
        [HumanMessage(content=[{"type": "text", "text": "hi", "extra": b"\x00"}])],
    ),
    "temperature NaN": (lambda llm: llm.bind(temperature=math.nan), PROMPT),
    "a circular tool schema": (
        lambda llm: llm.bind_tools(
            [{"type": "function", "function": {"name": "f", "parameters": _circular()}}]
        ),
        PROMPT,
    ),
    "a tool schema 5,000 levels deep": (
        lambda llm: llm.bind_tools(
            [{"type": "function", "function": {"name": "f", "parameters": _deep(5_000)}}]
        ),
        PROMPT,
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(UNSENDABLE))
def test_a_request_json_cannot_carry_is_an_invalid_request_error(
    case: str, mode: str, tmp_path: Path
) -> None:
    """A value the SDK cannot encode (bytes, NaN, a circular or too deep schema) was a
    bare TypeError/ValueError/RecursionError recorded as a failed attempt: now an
    InvalidRequestError naming the problem; nothing sent, recorded, held or charged."""
    wrap, prompt = UNSENDABLE[case]
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(m)))
    budget = LocalBudget(BudgetLimits(max_run_usd=1.0))
    ledger = tmp_path / "calls.jsonl"
    llm = routed(
        gateway, budget=budget, callbacks=[CostLatencyHandler(ledger_path=ledger, catalog=CATALOG)]
    )
    runnable = wrap(llm)
    with pytest.raises(InvalidRequestError, match="cannot be sent as JSON"):
        if mode == "invoke":
            runnable.invoke(prompt)
        elif mode == "ainvoke":
            asyncio.run(runnable.ainvoke(prompt))
        elif mode == "stream":
            list(runnable.stream(prompt))
        else:

            async def drain() -> None:
                async for _ in runnable.astream(prompt):
                    pass

            asyncio.run(drain())
    assert gateway.models == []
    status = budget.status()
    assert status.reserved_usd == 0 and status.spent_usd == 0 and status.in_flight == 0
    assert not ledger.exists() or [r for r in read_ledger(ledger) if r.outcome != "ok"] == []


def test_a_policy_override_with_bad_values_is_an_invalid_request_error() -> None:
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(m)))
    with pytest.raises(InvalidRequestError, match="max_cost_usd"):
        routed(gateway).invoke(PROMPT, routedllm_policy={"max_cost_usd": math.nan})
    assert gateway.models == []


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("max_run_usd", math.inf, "finite"),
        ("max_run_usd", 1e300, "less than or equal"),  # was OverflowError at reserve()
        ("max_window_usd", True, "not a boolean"),  # was a $1 cap
        ("max_call_usd", math.nan, "finite"),
        ("window_s", math.inf, "finite"),
    ],
)
def test_budget_limits_refuse_caps_that_are_no_amount(field: str, value: Any, words: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=words):
        LocalBudget(BudgetLimits(**{field: value})).reserve(0.01)


@pytest.mark.parametrize("mode", MODES)
def test_a_body_without_end_is_cut_at_its_size_bound_and_falls_back(mode: str) -> None:
    """A 200 whose body (plain: 65 MB of JSON; a stream: one 17 MB line) keeps coming at
    full speed was read into memory until the deadline (700 MB in 3 s on loopback): now a
    broken response past 64 MB (a stream line: 16 MB), and the next model answers."""
    block = b"a" * 2**20

    class Endless(httpx2.SyncByteStream, httpx2.AsyncByteStream):
        def __init__(self, plain: bool) -> None:
            self.head = b'{"x": "' if plain else b'data: {"x": "'
            self.blocks = 65 if plain else 17

        def __iter__(self) -> Iterator[bytes]:
            yield self.head
            yield from [block] * self.blocks

        async def __aiter__(self) -> Any:
            for part in [self.head, *[block] * self.blocks]:
                yield part

    gateway = first_fails(
        lambda m, b: httpx2.Response(
            200,
            headers={
                "content-type": "text/event-stream" if b.get("stream") else "application/json"
            },
            stream=Endless(plain=not b.get("stream")),
        )
    )
    call = run_mode(routed(gateway), mode)
    first, answer = call.attempts
    assert first.outcome == "APIConnectionError" and "longer than" in (first.error or "")
    assert answer.outcome == "ok"


@pytest.mark.parametrize("mode", MODES)
def test_a_body_that_is_not_utf8_falls_back(mode: str) -> None:
    """Bytes 0xFF 0xFE inside the answer's JSON (a stream: inside a chunk): a malformed
    body, so the next model answers (was: a bare UnicodeDecodeError to the caller)."""

    def bad(m: str, b: dict[str, Any]) -> httpx2.Response:
        if b.get("stream"):
            body, kind = sse(m).encode(), "text/event-stream"
        else:
            body, kind = json.dumps(completion(m)).encode(), "application/json"
        return httpx2.Response(
            200, headers={"content-type": kind}, content=body.replace(b"fine", b"fi\xff\xfene")
        )

    call = run_mode(routed(first_fails(bad)), mode)
    assert [a.outcome for a in call.attempts] == ["UnicodeDecodeError", "ok"]


def test_ignored_run_tags_are_bounded_and_escaped_in_the_record() -> None:
    """A chain's own tags are the caller's text: 10,000 of them, one of 1 MB, one with a
    terminal escape were copied whole into every record and trace (90 KB of metadata).
    Now at most 32 are listed, each escaped and clipped to 64 characters, the rest
    counted; vocabulary tags still route."""
    gateway = Gateway(lambda m, b, n: httpx2.Response(200, json=completion(m)))
    names = ["x" * 1_000_000, "mine\x1b[31m", *(f"t{i}" for i in range(10_000)), "code"]
    call = record_of(routed(gateway).invoke(PROMPT, config={"tags": names}))
    assert call.tags == ("code",)
    assert len(call.ignored_tags) == 33 and call.ignored_tags[-1] == "(+9970 more)"
    assert call.ignored_tags[0] == "x" * 61 + "..." and call.ignored_tags[1] == "mine\\x1b[31m"
    assert all(t.isprintable() and len(t) <= 64 for t in call.ignored_tags)
