"""Task tags: the vocabulary, the benchmark and capability behind each, and inference.

A call's tags say what kind of work it is. Each tag names the benchmark that measures
that work and any capability it needs. When a caller gives no tags, they are inferred
from the messages (see :func:`infer_tags`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from routedllm.core.errors import InvalidRequestError, UnknownTagError


@dataclass(frozen=True, slots=True)
class TagSpec:
    """One tag: the benchmark that measures it and the capabilities it requires."""

    name: str
    benchmark: str
    requires: frozenset[str]
    description: str


# Order matters: when a call has several tags, the first tag here that it carries is the
# primary one, whose benchmark scores the candidates (vision work is judged as vision work
# first, Chinese code as code, ...). ``general`` and ``long-context`` rank last.
VOCABULARY: Mapping[str, TagSpec] = {
    spec.name: spec
    for spec in (
        TagSpec("vision", "mmlu", frozenset({"image_input"}), "the input holds images"),
        TagSpec("code", "humaneval", frozenset(), "writing, fixing or explaining code"),
        TagSpec("chinese", "ceval", frozenset(), "Chinese-language or mixed-language work"),
        TagSpec("extraction", "mmlu", frozenset(), "pulling fields or facts out of text"),
        TagSpec("summarization", "mmlu", frozenset(), "condensing a text"),
        TagSpec("classification", "mmlu", frozenset(), "labelling a text from a fixed set"),
        TagSpec("general", "mmlu", frozenset(), "general reasoning and writing"),
        TagSpec("long-context", "mmlu", frozenset(), "inputs that need a large context window"),
    )
}
TAG_NAMES: tuple[str, ...] = tuple(VOCABULARY)
TAGS_KEY = "routedllm_tags"
"""Call kwarg or config-metadata key giving a call's task tags (RoutedChatModel, the handler)."""
_PRIORITY = {name: i for i, name in enumerate(TAG_NAMES)}

# CJK punctuation, CJK Unified Ideographs (+ extension A), compatibility ideographs, and
# halfwidth and fullwidth forms: inclusive code point ranges, all in the BMP.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3000, 0x303F),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF00, 0xFFEF),
)
# Code-like lines: how they start (case-sensitive) and end; checked line by line, no regex.
_CODE_LINE_STARTS = (
    "def ",
    "class ",
    "import ",
    "#include",
    "function ",
    "const ",
    "let ",
    "var ",
    "public ",
    "private ",
    "fn ",
    "func ",
    "SELECT ",
    "CREATE TABLE",
    "return ",
    "if (",
    "for (",
    "while (",
)
_CODE_LINE_ENDS = (";", ") {", "){", "):")
# Asking for code without showing any: language, tool and task words (lower case).
_CODE_WORDS = (
    "python",
    "typescript",
    "javascript",
    "golang",
    "rust",
    "java",
    "kotlin",
    "swift",
    "c++",
    "c#",
    "sql",
    "postgres",
    "postgresql",
    "mysql",
    "bash",
    "shell script",
    "regex",
    "function",
    "refactor",
    "debug",
    "stack trace",
    "stacktrace",
    "compiler",
    "compile",
    "unit test",
    "unit tests",
    "api endpoint",
    "dockerfile",
)
_WORD_CHAR = re.compile(r"[a-z0-9_]")
_WORD_WINDOW = 3000  # characters searched for code words: the first 2,000 and the last 1,000
# Bytes to themselves when a word character ([a-z0-9_]), else to a space: splitting the
# result gives the words of a text, each bounded by non-word characters.
_WORD_BYTES = bytes(
    b if chr(b) in "abcdefghijklmnopqrstuvwxyz0123456789_" else 32 for b in range(256)
)
# Code words made of word characters only occur as a whole word exactly when they are one
# of the text's words; the others (``c++``, ``unit test``) need each of their words there,
# then a search.
_CODE_WORD_PARTS = {w: frozenset(w.encode().translate(_WORD_BYTES).split()) for w in _CODE_WORDS}
_PLAIN_CODE_WORDS = frozenset(
    w.encode() for w, parts in _CODE_WORD_PARTS.items() if parts == {w.encode()}
)
_OTHER_CODE_WORDS = tuple(
    (w, parts) for w, parts in _CODE_WORD_PARTS.items() if parts != {w.encode()}
)


class Features(NamedTuple):
    """What inference and cost estimation need to know about a message list."""

    chars: int
    cjk_chars: int
    has_image: bool
    has_code: bool
    input_tokens: int

    @property
    def cjk_share(self) -> float:
        return self.cjk_chars / self.chars if self.chars else 0.0


def validate_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags in the caller's order, duplicates dropped; an unknown tag raises."""
    out: list[str] = []
    for tag in tags:
        if tag not in VOCABULARY:
            raise UnknownTagError(tag, TAG_NAMES)
        if tag not in out:
            out.append(tag)
    return tuple(out)


def primary_tag(tags: Sequence[str]) -> str:
    """The tag whose benchmark scores candidates (see the order of ``VOCABULARY``)."""
    return min(tags, key=_PRIORITY.__getitem__) if tags else "general"


def message_features(messages: Sequence[Any], *, scan: bool = True) -> Features:
    """Size, script and content features of OpenAI-style dicts or LangChain messages.

    ``scan=False`` (tags already given) skips the regex scans: CJK characters are then
    approximated from the UTF-8 length, which is all the token estimate needs.
    """
    if not messages:
        raise InvalidRequestError("the message list is empty: give at least one message")
    texts: list[str] = []
    images = 0
    for index, message in enumerate(messages):
        if isinstance(message, dict):
            content = message.get("content")
        elif hasattr(message, "content"):
            content = message.content
        elif isinstance(message, str):
            content = message
        else:
            raise InvalidRequestError(
                f"message {index} must be a dict with 'content' or a message object, "
                f"got {type(message).__name__}"
            )
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, str):
                    texts.append(part)
                elif isinstance(part, dict):
                    kind = part.get("type")
                    if kind == "text":
                        texts.append(str(part.get("text", "")))
                    elif kind in ("image_url", "image", "input_image"):
                        images += 1
        elif content is not None:
            raise InvalidRequestError(
                f"message content must be a string or a list of parts, got {type(content).__name__}"
            )
    text = texts[0] if len(texts) == 1 else "\n".join(texts)
    chars = len(text)
    if text.isascii():
        cjk = 0
    elif scan:
        cjk = count_cjk(text)
    else:  # CJK is 3 bytes in UTF-8: count non-ASCII weight without a regex pass
        cjk = (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
    # ~4 characters per token for Latin text, ~1 token per CJK character, and 765 tokens per
    # image (a 1024x1024 image at high detail in OpenAI's accounting).
    tokens = (chars - cjk + 3) // 4 + cjk + 765 * images + 4 * len(messages)
    has_code = scan and looks_like_code(text)
    return Features(chars, cjk, images > 0, has_code, tokens)


def count_cjk(text: str) -> int:
    """How many characters of ``text`` fall in :data:`CJK_RANGES`.

    Counted without a per-character loop: in UTF-16 every BMP character is one 16-bit unit,
    so the high byte of each unit says whether it is CJK (``_HIGH``: one bit per class),
    and the low byte settles the three high bytes only partly in a range (``_LOW``: the
    bits of the classes it completes). The AND of the two, as integers, has one bit set
    per CJK character. Characters beyond the BMP (two surrogate units) never count.
    """
    units = text.encode("utf-16-be", "surrogatepass")
    high = int.from_bytes(units[0::2].translate(_HIGH))
    low = int.from_bytes(units[1::2].translate(_LOW))
    return (high & low).bit_count()


def _unit_tables(ranges: Sequence[tuple[int, int]]) -> tuple[bytes, bytes]:
    """The byte tables of :func:`count_cjk` for BMP code point ``ranges``."""
    high, low = bytearray(256), bytearray(256)
    whole = 0x80  # the class of high bytes whose 256 characters are all in a range
    partial: list[int] = []
    for byte in range(256):
        first, last = byte << 8, byte << 8 | 0xFF
        if any(a <= first and last <= b for a, b in ranges):
            high[byte] = whole
        elif any(a <= last and first <= b for a, b in ranges):
            partial.append(byte)
    if len(partial) > 7:
        raise ValueError("count_cjk supports at most 7 partly covered high bytes")
    for bit, byte in enumerate(partial):
        high[byte] = 1 << bit
    for lo in range(256):
        low[lo] = whole | sum(
            1 << bit
            for bit, byte in enumerate(partial)
            if any(a <= (byte << 8 | lo) <= b for a, b in ranges)
        )
    return bytes(high), bytes(low)


_HIGH, _LOW = _unit_tables(CJK_RANGES)


def looks_like_code(text: str) -> bool:
    """Code fences, code-shaped lines, or words that ask for code (``SQL``, ``refactor``)."""
    if "```" in text or "=>" in text:
        return True
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(_CODE_LINE_STARTS) or (len(line) > 1 and line.endswith(_CODE_LINE_ENDS)):
            return True
        if line.startswith("from ") and " import " in line:
            return True
    # Instructions sit at the start or the end of a prompt: look for the words there only.
    lower = (
        text.lower()
        if len(text) <= _WORD_WINDOW
        else (text[: _WORD_WINDOW * 2 // 3] + "\n" + text[-_WORD_WINDOW // 3 :]).lower()
    )
    return _has_code_word(lower)


def _has_code_word(lower: str) -> bool:
    """Any of ``_CODE_WORDS`` in ``lower`` as a whole word (see :func:`_has_word`).

    The text's words come from one pass over its bytes (non-ASCII characters, never word
    characters, become ``?``), so most code words are a set lookup rather than a search.
    """
    words = set(lower.encode("ascii", "replace").translate(_WORD_BYTES).split())
    if not words.isdisjoint(_PLAIN_CODE_WORDS):
        return True
    return any(words >= parts and _has_word(lower, word) for word, parts in _OTHER_CODE_WORDS)


def _has_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` not inside a longer Latin word (CJK neighbours are fine)."""
    start = text.find(word)
    while start != -1:
        end = start + len(word)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not _WORD_CHAR.match(before) and not _WORD_CHAR.match(after):
            return True
        start = text.find(word, start + 1)
    return False


def infer_tags(
    features: Features, *, cjk_share: float = 0.3, long_context_tokens: int = 32_000
) -> tuple[str, ...]:
    """Tags read off the messages: vision, chinese, code, long-context, else general."""
    tags: list[str] = []
    if features.has_image:
        tags.append("vision")
    if features.has_code:
        tags.append("code")
    if features.cjk_share >= cjk_share:
        tags.append("chinese")
    if features.input_tokens >= long_context_tokens:
        tags.append("long-context")
    if not tags or tags == ["long-context"]:
        tags.insert(0, "general")
    return tuple(tags)
