"""RoutedChatModel end to end on cassettes: routing, streaming, tools, fallbacks, wire shapes.

Each test replays ``cassettes/chat_model/<test>.yaml`` offline (record mode ``none``). The
cassettes were built against the fake gateway (``scripts/build_cassettes.py``); tests whose
scenario a live gateway cannot reproduce on demand (faults, provider quirks) are skipped in
a live record run, so their constructed cassettes stay as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
import vcr as vcrpy
import yaml
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from routedllm import AllAttemptsFailedError, Policy, Request, decide
from routedllm.adapters.langchain.chat_model import RoutedChatModel, default_breaker
from routedllm.core.errors import StreamInterruptedError
from routedllm.core.pricing import call_cost
from routedllm.records.routed import call_of
from tests.fake_gateway import (
    CASSETTE_DIR,
    REPLAY_KEY,
    SOCKET_PROBE_ALLOWED,
    FakeGateway,
    api_key,
    building,
    gateway_params,
    test_catalog,
)

CATALOG = test_catalog()
RED_PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU"
    "5ErkJggg=="
)

pytestmark = SOCKET_PROBE_ALLOWED


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTE_DIR / "chat_model")


@pytest.fixture
def make(record_mode: str) -> Any:
    def _make(gateway: FakeGateway | None = None, **params: Any) -> RoutedChatModel:
        if gateway is not None and gateway.scripted and record_mode != "none" and not building():
            pytest.skip("constructed scenario: a live gateway cannot be made to answer this way")
        params = {"rate_limit_retries": 0, **params}  # the cassettes record one 429 each
        return RoutedChatModel(
            api_key=api_key(), catalog=CATALOG, **gateway_params(gateway), **params
        )

    return _make


@tool
def get_weather(location: str) -> str:
    """Get the current weather in a city."""
    return "sunny"


class Joke(BaseModel):
    """A joke."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


def _decision(text: str, **request: Any) -> Any:
    return decide(CATALOG, Policy(), Request(messages=[HumanMessage(text)], **request))


def _join(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def _expected_cost(model: str, usage: dict[str, Any]) -> float | None:
    cached = usage.get("input_token_details", {}).get("cache_read", 0)
    return call_cost(
        CATALOG.get(model), usage["input_tokens"], usage["output_tokens"], cached
    ).total_usd


def _sent(vcr: Any, gateway: FakeGateway) -> int:
    """Requests the gateway received: the fake one's count while building, else replays."""
    return len(gateway.requests) if building() else vcr.play_count


def _with_record(chunks: list[AIMessageChunk]) -> list[AIMessageChunk]:
    return [c for c in chunks if "routedllm" in c.response_metadata]


# -- the main paths -------------------------------------------------------------------------
@pytest.mark.vcr
def test_invoke_routes_prices_and_records(make: Any) -> None:
    decision = _decision("Hello")
    reply = make().invoke("Hello")
    record = reply.response_metadata["routedllm"]
    assert reply.response_metadata["model_name"] == record["model"] == decision.model
    assert record["decision"]["fallbacks"] == list(decision.fallbacks)
    assert record["tags"] == list(decision.tags) and record["policy"] == "value"
    assert [(a["model"], a["outcome"]) for a in record["attempts"]] == [(decision.model, "ok")]
    usage = reply.usage_metadata
    assert usage is not None and all(
        isinstance(usage[k], int) for k in usage if k.endswith("tokens")
    )
    assert record["cost_usd"] == pytest.approx(_expected_cost(decision.model, usage))
    assert record["estimated_cost_usd"] == pytest.approx(decision.estimated_cost_usd)
    assert record["streamed"] is False and record["ttft_s"] is None and record["latency_s"] > 0
    json.dumps(record)  # JSON-serialisable as it stands


@pytest.mark.vcr
def test_stream_puts_usage_and_record_on_one_chunk(make: Any) -> None:
    chunks = list(make().stream("Write me 2 haikus. Only include the haikus."))
    assert len(chunks) > 3
    tails = _with_record(chunks)
    assert len(tails) == 1
    assert sum("model_name" in c.response_metadata for c in chunks) == 1
    assert sum(bool(c.usage_metadata and c.usage_metadata["input_tokens"]) for c in chunks) == 1
    full = _join(chunks)
    record = full.response_metadata["routedllm"]
    assert full.response_metadata["model_name"] == record["model"]
    assert record["streamed"] is True and 0 < record["ttft_s"] <= record["latency_s"]
    assert record["attempts"][-1]["output_tokens"] == full.usage_metadata["output_tokens"]
    assert record["cost_usd"] == pytest.approx(_expected_cost(record["model"], full.usage_metadata))
    assert full.text.strip()
    json.dumps(record)


@pytest.mark.vcr
async def test_astream_usage_on_the_finish_chunk(make: Any) -> None:
    # GLM and DeepSeek send usage on the finish_reason chunk, with no usage-only chunk.
    llm = make(FakeGateway(usage="on-finish"))
    chunks = [c async for c in llm.astream("你好，请用中文介绍一下你自己。")]
    full = _join(chunks)
    record = full.response_metadata["routedllm"]
    assert record["tags"] == ["chinese"]
    assert full.usage_metadata and full.usage_metadata["output_tokens"] > 0
    assert record["cost_usd"] == pytest.approx(_expected_cost(record["model"], full.usage_metadata))


@pytest.mark.vcr
def test_tool_calls_invoke_and_stream(make: Any) -> None:
    question = "What is the weather in San Francisco, CA?"
    expected = _decision(question, require=frozenset({"tools"})).model
    llm = make().bind_tools([get_weather])
    reply = llm.invoke(question)
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]
    assert reply.tool_calls[0]["args"] == {"location": "San Francisco, CA"}
    assert reply.response_metadata["model_name"] == expected
    full = _join(list(llm.stream(question)))
    assert [c["name"] for c in full.tool_calls] == ["get_weather"]
    assert full.response_metadata["routedllm"]["model"] == expected


@pytest.mark.vcr
def test_tool_call_with_id_zero_and_no_finish_reason(make: Any) -> None:
    # Kimi K2 through OpenRouter: tool call id "0", usage on a chunk with choices, and no
    # finish_reason at all.
    llm = make(FakeGateway(kimi_tool_calls=True)).bind_tools([get_weather])
    full = _join(list(llm.stream("What is the weather in Paris?")))
    assert full.tool_calls == [
        {
            "name": "get_weather",
            "args": {"location": "San Francisco, CA"},
            "id": "0",
            "type": "tool_call",
        }
    ]
    assert full.usage_metadata and full.response_metadata["routedllm"]["cost_usd"] is not None


@pytest.mark.vcr
def test_structured_output_json_schema(make: Any) -> None:
    chat = make().with_structured_output(Joke, method="json_schema", include_raw=True)
    out = chat.invoke("Tell me a joke about cats.")
    assert isinstance(out["parsed"], Joke)
    expected = _decision("Tell me a joke about cats.", require=frozenset({"structured_output"}))
    assert out["raw"].response_metadata["routedllm"]["model"] == expected.model
    streamed = list(
        make()
        .with_structured_output(Joke, method="json_schema")
        .stream("Tell me a joke about cats.")
    )
    assert streamed and isinstance(streamed[-1], Joke)


@pytest.mark.vcr
def test_vision_input_routes_to_an_image_model(make: Any) -> None:
    message = HumanMessage(
        content=[
            {"type": "text", "text": "Describe this image in one sentence."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{RED_PIXEL}"}},
        ]
    )
    vision = [c.id for c in CATALOG if c.capabilities.image_input]
    reply = make().invoke([message])
    record = reply.response_metadata["routedllm"]
    assert record["model"] in vision and "vision" in record["tags"]
    assert set(record["decision"]["fallbacks"]) <= set(vision)
    assert "pixel" in reply.text


# -- fallbacks ------------------------------------------------------------------------------
@pytest.mark.vcr
def test_rate_limit_falls_back_and_defers_the_model(make: Any, vcr: Any) -> None:
    first, second = _decision("Hello").ranking[:2]
    gateway = FakeGateway(faults={first: "429"})
    # a breaker that cools a model for any Retry-After (the default waits out short ones)
    llm = make(gateway, breaker=default_breaker(wait_s=0))
    reply = llm.invoke("Hello")
    record = reply.response_metadata["routedllm"]
    assert reply.response_metadata["model_name"] == second
    failed, ok = record["attempts"]
    assert (failed["model"], failed["outcome"], failed["status"]) == (first, "RateLimitError", 429)
    assert failed["retry_after_s"] == 2.0 and failed["cost_usd"] == 0.0
    assert failed["latency_s"] >= 0 and (ok["model"], ok["outcome"]) == (second, "ok")
    # Within the Retry-After, the next call tries the rate-limited model last.
    again = llm.invoke("Hello").response_metadata["routedllm"]
    assert list(again["unavailable"]) == [first] and again["attempts"][0]["model"] == second
    assert (
        _sent(vcr, gateway) == 3
    )  # 429, answer, and the answer again: no retry of the 429'd model


@pytest.mark.vcr
def test_server_error_falls_back_before_the_first_token(make: Any) -> None:
    first, second = _decision("Hello").ranking[:2]
    chunks = list(make(FakeGateway(faults={first: "500"})).stream("Hello"))
    full = _join(chunks)
    record = full.response_metadata["routedllm"]
    assert full.response_metadata["model_name"] == second and full.text
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [(first, 500), (second, None)]
    assert len(_with_record(chunks)) == 1


@pytest.mark.vcr
def test_bad_request_raises_without_fallback(make: Any, vcr: Any) -> None:
    first = _decision("Hello").model
    gateway = FakeGateway(faults={first: "400"})
    with pytest.raises(openai.BadRequestError) as caught:
        make(gateway).invoke("Hello")
    call = call_of(caught.value)
    assert call is not None and [(a.model, a.status) for a in call.attempts] == [(first, 400)]
    assert _sent(vcr, gateway) == 1


@pytest.mark.vcr
def test_all_models_failing_names_every_attempt(make: Any) -> None:
    ranking = _decision("Hello").ranking
    faults = dict(zip(ranking, ("429", "500", "503"), strict=True))
    with pytest.raises(AllAttemptsFailedError) as caught:
        make(FakeGateway(faults=faults)).invoke("Hello")
    error = caught.value
    assert [(a.model, a.status) for a in error.call.attempts] == [
        (m, int(f)) for m, f in faults.items()
    ]
    for model, fault in faults.items():
        assert re.search(rf"{re.escape(model)}: \w+Error: Error code: {fault}", str(error))
    assert isinstance(error.__cause__, openai.InternalServerError)


@pytest.mark.vcr
def test_context_length_error_moves_to_a_larger_window(make: Any) -> None:
    ranking = _decision("Hello").ranking
    window = CATALOG.get(ranking[0]).context_window
    reply = make(FakeGateway(faults={ranking[0]: "context"})).invoke("Hello")
    attempts = reply.response_metadata["routedllm"]["attempts"]
    larger = [m for m in ranking[1:] if (CATALOG.get(m).context_window or 0) > window]
    assert reply.response_metadata["model_name"] == larger[0]
    skipped = [s["model"] for s in reply.response_metadata["routedllm"]["skipped"]]
    assert skipped == [m for m in ranking[1 : ranking.index(larger[0])]]
    assert attempts[0]["outcome"] == "BadRequestError" and attempts[0]["status"] == 400


@pytest.mark.vcr
def test_error_event_before_the_first_token_falls_back(make: Any) -> None:
    first, second = _decision("Hello").ranking[:2]
    full = _join(list(make(FakeGateway(faults={first: "stream-error"})).stream("Hello")))
    attempts = full.response_metadata["routedllm"]["attempts"]
    assert [(a["model"], a["outcome"], a["status"]) for a in attempts] == [
        (first, "APIError", 502),
        (second, "ok", None),
    ]


@pytest.mark.vcr
def test_error_event_after_the_first_token_raises(make: Any, vcr: Any) -> None:
    first = _decision("Hello").model
    gateway = FakeGateway(faults={first: "stream-break"})
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        for chunk in make(gateway).stream("Hello"):
            seen.append(chunk.text)
    assert "".join(seen).strip()  # the caller already had text: no fallback after that
    error = caught.value
    assert isinstance(error.__cause__, openai.APIError) and error.model == first
    assert [(a.model, a.outcome, a.status) for a in error.call.attempts] == [
        (first, "APIError", 502)
    ]
    assert f"1. {first}: APIError: Upstream connection reset" in str(error)
    assert _sent(vcr, gateway) == 1


# -- wire shapes ----------------------------------------------------------------------------
@pytest.mark.vcr
def test_cached_input_tokens_priced_at_the_cached_price(make: Any) -> None:
    prompt = "Refactor this Python function for clarity:\n" + "def f(x):\n    return x\n" * 300
    llm = make(FakeGateway(cached_tokens=1024))
    reply = llm.invoke(prompt, config={"tags": ["code"]})
    record = reply.response_metadata["routedllm"]
    card = CATALOG.get(record["model"])
    usage = reply.usage_metadata
    assert (
        usage["input_token_details"]["cache_read"]
        == record["attempts"][-1]["cached_input_tokens"]
        == 1024
    )
    assert card.cached_input_usd_per_mtok is not None
    assert record["cost_usd"] == pytest.approx(
        call_cost(card, usage["input_tokens"], usage["output_tokens"], 1024).total_usd
    )
    assert (
        record["cost_usd"]
        < call_cost(card, usage["input_tokens"], usage["output_tokens"]).total_usd
    )


@pytest.mark.vcr
def test_reasoning_content_is_kept(make: Any) -> None:
    gateway = FakeGateway(reasoning="The user greets me; a short greeting back is right.")
    llm = make(gateway)
    reply = llm.invoke("Hello")
    assert reply.additional_kwargs["reasoning_content"] == gateway.reasoning
    assert reply.usage_metadata["output_token_details"]["reasoning"] > 0
    full = _join(list(llm.stream("Hello")))
    assert full.additional_kwargs["reasoning_content"] == gateway.reasoning
    assert full.text == reply.text


@pytest.mark.vcr
def test_reply_starting_with_whitespace(make: Any) -> None:
    reply = make(FakeGateway(leading_whitespace=True)).invoke("Hello")
    assert reply.text == "Hello! How can I help you today?"


# -- the cassettes themselves ---------------------------------------------------------------
_SECRET_PATTERNS = [
    re.compile(r"Bearer\s+(?!PLACEHOLDER)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"),
    re.compile(r"\bga_[A-Za-z0-9_-]{12,}"),
    re.compile(re.escape(REPLAY_KEY)),
]
_CREDENTIAL_HEADERS = {"authorization", "api-key", "x-api-key", "proxy-authorization"}


def _cassettes() -> list[Path]:
    return sorted(CASSETTE_DIR.rglob("*.yaml"))


def test_cassettes_hold_no_credentials() -> None:
    files = _cassettes()
    assert len(files) >= 50
    for path in files:
        text = path.read_text("utf-8")
        for pattern in _SECRET_PATTERNS:
            assert not pattern.search(text), f"{path.name}: matches {pattern.pattern}"
        for interaction in yaml.safe_load(text)["interactions"]:
            for name, values in interaction["request"]["headers"].items():
                if name.lower() in _CREDENTIAL_HEADERS:
                    assert values == ["PLACEHOLDER"], f"{path.name}: {name} is not filtered"


def test_a_missing_cassette_fails_instead_of_reaching_the_network(tmp_path: Path) -> None:
    llm = RoutedChatModel(api_key="k", catalog=CATALOG, model="gpt-4o")
    recorder = vcrpy.VCR(record_mode="none")
    with recorder.use_cassette(str(tmp_path / "missing.yaml")), pytest.raises(Exception) as caught:
        llm.invoke("Hello")
    chain = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    assert "CannotOverwriteExistingCassetteException" in chain
