"""Upstream faults a drop-in for ChatOpenAI meets, each a typed error or a fallback that
the call's record shows, never a raw AttributeError."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from routedllm.core.errors import StreamInterruptedError
from routedllm.reliability.failures import MalformedResponseError
from tests.test_hostile_calls import (
    Gateway,
    completion,
    first_fails,
    ranking,
    record_of,
    routed,
    run_mode,
    sse,
    stream_response,
)

MODES = ["invoke", "ainvoke", "stream", "astream"]


@pytest.mark.parametrize("event", ["null", "[1]", "7", '"text"'])
@pytest.mark.parametrize("mode", MODES)
def test_a_stream_event_that_is_no_json_object_falls_back(event: str, mode: str) -> None:
    first, second = ranking()[:2]
    gateway = first_fails(lambda m, b: stream_response(f"data: {event}\n\n" + sse(m)))
    call = run_mode(routed(gateway), mode)
    assert [(a.model, a.outcome) for a in call.attempts] == [
        (first, "MalformedResponseError"),
        (second, "ok"),
    ]
    assert gateway.models == [first, second]


def _after_text(model: str, body: dict[str, Any]) -> httpx2.Response:
    return stream_response(sse(model, "some words", finish=False, done=False) + "data: null\n\n")


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_event_that_is_no_json_object_after_text_is_an_interruption(mode: str) -> None:
    first = ranking()[0]
    llm = routed(first_fails(_after_text))
    with pytest.raises(StreamInterruptedError) as caught:
        if mode == "stream":
            list(llm.stream("hello"))
        else:

            async def drain() -> None:
                async for _ in llm.astream("hello"):
                    pass

            asyncio.run(drain())
    assert isinstance(caught.value.__cause__, MalformedResponseError)
    assert [(a.model, a.outcome) for a in caught.value.call.attempts] == [
        (first, "MalformedResponseError")
    ]


class Joke(BaseModel):
    setup: str
    punchline: str


JOKE = {"setup": "why?", "punchline": "because"}
BAD_BODIES: dict[str, Any] = {
    "error object": {"error": {"message": "The upstream provider failed.", "code": 502}},
    "choices null": {"id": "x", "object": "chat.completion", "choices": None},
    "choice null": {"id": "x", "object": "chat.completion", "choices": [None]},
    "message null": {"id": "x", "choices": [{"index": 0, "message": None}]},
    "a list": [1, 2],
}


@pytest.mark.parametrize("bad", BAD_BODIES)
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_json_schema_structured_output_falls_back_on_a_broken_200(bad: str, mode: str) -> None:
    """langchain-openai parses json_schema answers with the SDK's own parser, which broke
    on these bodies with a raw TypeError or AttributeError before the model saw them."""

    def handler(model: str, body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 1:
            return httpx2.Response(200, json=BAD_BODIES[bad])
        return httpx2.Response(200, json=completion(model, json.dumps(JOKE)))

    gateway = Gateway(handler)
    structured = routed(gateway).with_structured_output(
        Joke, method="json_schema", include_raw=True
    )
    if mode == "invoke":
        out = structured.invoke("tell a joke")
    else:
        out = asyncio.run(structured.ainvoke("tell a joke"))
    assert out["parsed"] == Joke(**JOKE)
    attempts = record_of(out["raw"]).attempts
    assert [a.outcome for a in attempts][-1] == "ok" and len(attempts) == 2
    assert attempts[0].outcome in ("APIError", "MalformedResponseError")
    assert gateway.models[0] != gateway.models[1]
