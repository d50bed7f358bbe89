"""Token counts for a routed chat model: one estimate, the same for every model, offline.

A ``RoutedChatModel`` with ``model="auto"`` does not know which model a call will go to
until it is routed, and the catalog's models use different tokenizers (OpenAI's o200k,
DeepSeek's, Qwen's, GLM's, Kimi's), most of which are not available offline. So LangChain's
token counting (``get_num_tokens``, ``get_num_tokens_from_messages``, and through them
``trim_messages(token_counter=llm)``) uses the estimate routing itself makes of a prompt's
size (:mod:`routedllm.core.tags`): about 4 characters per token for Latin text, one token
per CJK, kana or Hangul character (other non-ASCII characters in between), 765 tokens per
image and 4 per message; tool calls and tool schemas are counted as their JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

TOKENS_PER_MESSAGE = 4
"""Role and delimiters of one message (routing's estimate uses the same figure)."""
TOKENS_PER_IMAGE = 765
"""A 1024x1024 image at high detail in OpenAI's accounting (routing's figure)."""
_IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})

TextCounter = Callable[[str], int]


def estimate_text_tokens(text: str) -> int:
    """Estimated tokens of ``text``: ~4 characters per token for ASCII, one per character
    of three UTF-8 bytes (CJK, kana, Hangul), a half more per two-byte character."""
    chars = len(text)
    if text.isascii():
        return (chars + 3) // 4
    wide = (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
    return (chars - wide + 3) // 4 + wide


def count_message_tokens(
    messages: Sequence[BaseMessage],
    tools: Iterable[Any] | None = None,
    *,
    count_text: TextCounter = estimate_text_tokens,
) -> int:
    """Tokens of ``messages`` (and of the schemas of ``tools``, when given) counted with
    ``count_text``: content text, names, tool calls (name and JSON arguments), images at
    a fixed figure. File and audio parts are not counted."""
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE + _content_tokens(message.content, count_text)
        if message.name:
            total += count_text(message.name)
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += count_text(call["name"]) + count_text(_json(call["args"]))
    for tool in tools or ():
        total += count_text(_json(convert_to_openai_tool(tool)))
    return total


def _content_tokens(content: Any, count_text: TextCounter) -> int:
    if isinstance(content, str):
        return count_text(content) if content else 0
    total = 0
    for part in content if isinstance(content, list) else ():
        if isinstance(part, str):
            total += count_text(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                total += count_text(part["text"])
            elif kind in _IMAGE_PARTS:
                total += TOKENS_PER_IMAGE
    return total


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


__all__ = [
    "TOKENS_PER_IMAGE",
    "TOKENS_PER_MESSAGE",
    "count_message_tokens",
    "estimate_text_tokens",
]
