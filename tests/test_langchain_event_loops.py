"""One RoutedChatModel used from several event loops (``asyncio.run`` per call, a test
framework's loop per test): a pooled connection of a finished loop is not reused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from routedllm import Catalog, CostLatencyHandler
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.testing import Upstream

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

CATALOG = Catalog.default()


async def _streamed(llm: RoutedChatModel, text: str) -> str:
    return "".join([str(chunk.content) async for chunk in llm.astream(text)])


@pytest.mark.parametrize("mode", ["ainvoke", "astream"])
def test_each_asyncio_run_gets_an_answer_and_one_ok_attempt(mode: str) -> None:
    handler = CostLatencyHandler(CATALOG)
    with Upstream({}) as up:
        llm = RoutedChatModel(
            base_url=up.base_url, api_key="k", catalog=CATALOG, timeout=5, callbacks=[handler]
        )
        answers: list[Any] = []
        for i in range(3):
            if mode == "ainvoke":
                answers.append(asyncio.run(llm.ainvoke(f"hello {i}")).content)
            else:
                answers.append(asyncio.run(_streamed(llm, f"hello {i}")))
        assert len(up.requests) == 3
    assert all("stand-in reply" in answer for answer in answers)
    assert [record.outcome for record in handler.memory.records] == ["ok"] * 3
