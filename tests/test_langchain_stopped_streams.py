"""A caller that stops reading a stream (``break``, ``aclose()``): the handler records the
attempt with the model that was called, as cancelled, with its time to first chunk."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from routedllm import Catalog, CostLatencyHandler, Policy, Request, decide
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.records import routed
from routedllm.testing import Upstream

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

CATALOG = Catalog.default()
PROMPT = "hello there"


def first_model() -> str:
    request = Request(messages=[{"role": "user", "content": PROMPT}])
    return decide(CATALOG, Policy(), request).ranking[0]


def read_two(llm: RoutedChatModel, mode: str) -> None:
    if mode == "stream":
        for n, _ in enumerate(llm.stream(PROMPT)):
            if n == 1:
                break
        return

    async def two() -> None:
        stream = llm.astream(PROMPT)
        n = 0
        async for _ in stream:
            n += 1
            if n == 2:
                break
        await stream.aclose()

    asyncio.run(two())


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_stream_stopped_by_the_caller_is_recorded_with_the_model_called(mode: str) -> None:
    handlers = [CostLatencyHandler(CATALOG), CostLatencyHandler(CATALOG)]
    with Upstream({}) as up:
        llm = RoutedChatModel(
            base_url=up.base_url, api_key="k", catalog=CATALOG, timeout=5, callbacks=handlers
        )
        read_two(llm, mode)
        assert [r.model for r in up.requests] == [first_model()]
    for handler in handlers:  # every handler gets the same record
        [record] = handler.memory.records
        assert (record.model, record.outcome) == (first_model(), "cancelled")
        assert record.ttft_s is not None and record.ttft_s >= 0
    assert handlers[0].memory.records[0].run_id == handlers[1].memory.records[0].run_id


class _Errors(BaseCallbackHandler):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_llm_error(self, error: BaseException, **kwargs: object) -> None:
        self.errors.append(error)


def test_the_stopped_stream_is_recorded_once_and_then_forgotten() -> None:
    errors = _Errors()
    with Upstream({}) as up:
        llm = RoutedChatModel(
            base_url=up.base_url, api_key="k", catalog=CATALOG, timeout=5, callbacks=[errors]
        )
        read_two(llm, "stream")
        list(llm.stream(PROMPT))  # read to the end: nothing left open
    [error] = errors.errors
    assert isinstance(error, GeneratorExit)
    assert all(s.closed is not None for s in routed._open_streams.values())
