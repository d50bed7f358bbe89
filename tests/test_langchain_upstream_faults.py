"""Upstream faults a drop-in for ChatOpenAI meets, each a typed error or a fallback that
the call's record shows, never a raw AttributeError."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from routedllm.core.errors import StreamInterruptedError
from routedllm.reliability.failures import MalformedResponseError
from tests.test_hostile_calls import (
    first_fails,
    ranking,
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
