"""A fake LangChain chat model that reports usage and metadata the way real ones do.

It fakes the model object, above HTTP; to fake the OpenAI wire (status codes, SSE, broken
streams and the rest of the fault vocabulary) use ``routedllm.testing`` (the loopback
``Upstream``) or ``tests.fake_gateway.FakeGateway`` (the same responses in process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult


class RateLimitError(Exception):
    """Stands in for openai.RateLimitError."""


class FakeChat(BaseChatModel):
    """Answers ``reply``; usage: input tokens = characters of the last message.

    ``model`` is what ``response_metadata["model_name"]`` reports (and ``ls_model_name``);
    ``routed`` is put in ``response_metadata["routedllm"]`` like RoutedChatModel does.
    Streams one chunk per word after ``delay_s``, then a final chunk carrying usage and
    metadata (OpenAI style). ``fail_after`` raises after that many chunks (0: before any).
    """

    model: str = "gpt-4o-mini"
    reply: str = "one two three"
    output_tokens: int = 200
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    report_usage: bool = True
    routed: dict[str, Any] | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    fail_after: int | None = None

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    def _usage(self, messages: list[BaseMessage]) -> dict[str, Any] | None:
        if not self.report_usage:
            return None
        n = len(str(messages[-1].content))
        usage: dict[str, Any] = {
            "input_tokens": n,
            "output_tokens": self.output_tokens,
            "total_tokens": n + self.output_tokens,
        }
        if self.cached_tokens:
            usage["input_token_details"] = {"cache_read": self.cached_tokens}
        if self.reasoning_tokens:
            usage["output_token_details"] = {"reasoning": self.reasoning_tokens}
        return usage

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"model_name": self.model}
        if self.routed is not None:
            meta["routedllm"] = self.routed
        return meta

    def _result(self, messages: list[BaseMessage]) -> ChatResult:
        if self.fail_after is not None:
            raise RateLimitError("429 Too Many Requests")
        message = AIMessage(
            content=self.reply, usage_metadata=self._usage(messages), response_metadata=self._meta()
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        for i, word in enumerate(self.reply.split()):
            if self.fail_after is not None and i >= self.fail_after:
                raise RateLimitError("stream broke")
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        if self.fail_after is not None:
            raise RateLimitError("stream broke")
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=self._usage(messages), response_metadata=self._meta()
            )
        )

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        time.sleep(self.delay_s)
        return self._result(messages)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        await asyncio.sleep(self.delay_s)
        return self._result(messages)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        time.sleep(self.delay_s)
        for chunk in self._chunks(messages):
            yield chunk
            time.sleep(self.chunk_delay_s)

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.sleep(self.delay_s)
        for chunk in self._chunks(messages):
            yield chunk
            await asyncio.sleep(self.chunk_delay_s)
