"""Task tags: the vocabulary, the benchmark and capability behind each, and inference.

A call's tags say what kind of work it is. Each tag names the benchmark that measures
that work and any capability it needs. When a caller gives no tags, they are inferred
from the messages (see :func:`infer_tags`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
# Japanese kana and Korean Hangul (jamo, compatibility jamo, syllables): the scripts that
# say CJK text is not Chinese. Counted apart from CJK_RANGES, which they do not overlap.
KANA_HANGUL_RANGES: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),
    (0x3040, 0x30FF),
    (0x3130, 0x318F),
    (0x31F0, 0x31FF),
    (0xAC00, 0xD7AF),
)

# -- Which message is the ask ------------------------------------------------------------
# Roles by OpenAI ``role`` or LangChain message ``type``: "user" turns are what was asked;
# "system" prompts and "tool" results are context; "assistant" turns are earlier answers.
_ROLES = {
    "user": "user",
    "human": "user",
    "HumanMessageChunk": "user",
    "system": "system",
    "developer": "system",
    "SystemMessageChunk": "system",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "AIMessageChunk": "assistant",
    "tool": "tool",
    "function": "tool",
    "ToolMessageChunk": "tool",
    "FunctionMessageChunk": "tool",
}
_FOLLOW_UP_CHARS = 240  # a latest user turn this short may continue earlier code work
_CJK_ZONE = 600  # characters of a CJK ask searched for CJK phrases (see read_ask)
_WINDOW = 3000  # characters of the ask searched for words: the first 2,000 and last 1,000

# -- Code shown: line shapes -------------------------------------------------------------
# A line starting so is code on its own (case-sensitive; checked on the stripped line).
_STRONG_STARTS = (
    "#include",
    "#!/",
    "#define ",
    "Traceback (most recent call last)",
    'File "',
    "diff --git",
    "@@ -",
    "+++ b/",
    "--- a/",
    "Exception in thread",
    "npm ERR!",
    "error[E",
    "FAILED ",
    "SELECT ",
    "INSERT INTO ",
    "DELETE FROM ",
    "CREATE TABLE",
    "ALTER TABLE",
    "apiVersion:",
    "<?php",
    "<div",
    "<html",
    "<script",
    "console.log(",
    "System.out.",
    "print(",
    "async def ",
    "fn main(",
    "func (",
    "func main(",
    "package main",
    "using System",
)
_STRONG_ENDS = ("{", ");", "};", "*/")
# Starts and ends that count as code-like (two such lines make code) when the line also
# holds a bracket or ``=``: "let me know if Friday works;" is prose.
_WEAK_STARTS = (
    "return ",
    "const ",
    "let ",
    "var ",
    "fn ",
    "func ",
    "public ",
    "private ",
    "protected ",
    "if (",
    "for (",
    "while (",
    "elif ",
    "} ",
    "//",
    "@",
)
_WEAK_ENDS = (";", "):", "];", ")", "]", "}")
_BLOCK_STARTS = ("for ", "if ", "while ", "with ", "elif ", "else", "try", "except", "finally")
_CODE_MARKS = "()[]{}=<>"  # searched as substrings: faster than a set over characters
_SPAN_MARKS = _CODE_MARKS + "_./:\\$;"
_SHELL_COMMANDS = frozenset(
    "git pip npm npx yarn docker kubectl cd ls cat grep curl python python3 make cargo go "
    "brew apt sudo ssh terraform aws gcloud node java mvn gradle rm mv cp chmod".split()
)
_NAMED_ERROR = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]*)*(?:Error|Exception)\b")
_SPREADSHEET_FORMULA = re.compile(r"=[A-Z]{2,}\(")

# -- Code asked for: words ---------------------------------------------------------------
# Words in a request are lower-case runs of [a-z0-9_], found in one pass (``_WORD_BYTES``);
# "c++" and "c#" are read as "cpp" and "csharp" first.
_WORD_BYTES = bytes(
    b if chr(b) in "abcdefghijklmnopqrstuvwxyz0123456789_" else 32 for b in range(256)
)
# Words that are code work on their own.
_CODE_TERMS = frozenset(
    "regex regexes regexp regexps dockerfile makefile traceback tracebacks stacktrace "
    "segfault unittest pytest jest junit mypy eslint git kubectl npm cron crontab leetcode "
    "subroutine nullpointerexception".split()
)
# Phrases that are code work (each word must be a word of the request, then the phrase).
_CODE_PHRASES = tuple(
    p.encode()
    for p in (
        "unit test",
        "unit tests",
        "stack trace",
        "linked list",
        "binary search",
        "list comprehension",
        "memory leak",
        "race condition",
        "type hint",
        "type hints",
        "null pointer",
        "syntax error",
        "merge conflict",
        "json schema",
        "data class",
        "lru cache",
        "off by one",
        "one liner",
        "hash map",
        "time complexity",
        "shell command",
        "shell script",
        "cron expression",
        "code review",
        "source code",
        "api endpoint",
        "rest api",
        "compile error",
        "compiler error",
        "runtime error",
        "segmentation fault",
    )
)
_CODE_PHRASE_WORDS = frozenset(w for p in _CODE_PHRASES for w in p.split())
# Programming languages and frameworks: code only next to a code object ("a Python script")
# or after a request verb ("write it in Rust"), never on their own ("a trip to Java").
_LANGUAGES = frozenset(
    "python javascript typescript java rust golang kotlin cpp csharp ruby php scala haskell "
    "perl bash zsh powershell sql postgresql postgres mysql sqlite html css react vue angular "
    "django flask fastapi pandas numpy nodejs node terraform jquery lua matlab elixir erlang "
    "clojure dart flutter vba go".split()
)
_CODE_OBJECTS = frozenset(
    "function functions method methods class classes script scripts query queries program "
    "programs snippet snippets code loop loops variable variables array arrays dict dicts "
    "dictionary dictionaries algorithm algorithms endpoint endpoints module modules library "
    "component components handler handlers test tests bug bugs exception exceptions schema "
    "cli command commands decorator decorators lambda closure struct enum interface "
    "constructor recursion compiler parser webhook migration liner oneliner oneliners "
    "regex".split()
)
_CODE_VERBS = frozenset(
    "write writing fix fixing debug debugging refactor refactoring implement implementing "
    "optimize optimise optimizing optimising rewrite convert port translate generate create "
    "add build review explain complete code program speed how".split()
)
# Words before a language that make it the language of the work ("in Rust", "using SQL").
_LANGUAGE_MARKERS = frozenset({b"in", b"into", b"using", b"with"})
_TO_VERBS = frozenset({b"convert", b"port", b"translate", b"rewrite", b"migrate"})
# "code" is not a code object in these: "promo code", "dress code", "code of conduct".
_NOT_CODE_BEFORE = frozenset(
    b"promo dress zip postal sort area country qr discount coupon voucher bar morse penal "
    b"tax civil access".split()
)
_NOT_CODE_AFTER = frozenset({b"of", b"red", b"word", b"name"})
# A short follow-up that asks for a change continues the code of the turn before it.
_FOLLOW_UP_WORDS = frozenset(
    "change add make rename fix use remove rewrite convert handle reject support optimize "
    "optimise refactor test tests instead error fails failing broken crash crashes faster "
    "async return returns".split()
)
# Code asked for in Chinese or Japanese.
_CJK_CODE_WORDS = tuple(
    w.encode()
    for w in (
        "代码",
        "函数",
        "脚本",
        "报错",
        "正则",
        "编译",
        "调试",
        "関数",
        "コード",
        "スクリプト",
    )
)
_CJK_LANGUAGE_MARKS = tuple(w.encode() for w in ("用", "写", "实现", "查询", "语句", "で", "を"))

# -- Summarization, extraction, classification -------------------------------------------
_SUMMARY_WORDS = frozenset(
    b"summarize summarise summarized summarised summarizing summarising summary summaries "
    b"summarization summarisation tldr recap condense gist nutshell synopsis shorten "
    b"takeaways abridge".split()
)
_SUMMARY_PHRASES = tuple(
    p.encode()
    for p in (
        "key points",
        "main points",
        "sum up",
        "sum it up",
        "sum this up",
        "boil this down",
        "boil it down",
        "tl dr",
        "cliff notes",
        "main ideas",
    )
)
_CJK_SUMMARY = tuple(
    w.encode()
    for w in (
        "总结",
        "概括",
        "摘要",
        "归纳",
        "概述",
        "要点",
        "提炼",
        "简述",
        "要約",
        "まとめ",
        "요약",
    )
)
_EXTRACT_WORDS = frozenset(b"extract extracts extracting extraction".split())
_CJK_EXTRACT = tuple(
    w.encode()
    for w in ("提取", "抽取", "找出来", "找出所有", "找出全部", "列出所有", "抽出", "추출")
)
_CLASSIFY_WORDS = frozenset(
    b"classify classifies classified classifying classification categorize categorise "
    b"categorized categorised categorizing categorising categorization categorisation "
    b"sentiment".split()
)
_CJK_CLASSIFY = tuple(
    w.encode()
    for w in (
        "分类",
        "归类",
        "情感",
        "好评还是差评",
        "正面还是负面",
        "垃圾短信",
        "垃圾邮件",
        "属于哪",
        "打标签",
        "分類",
        "분류",
    )
)
# Words that point at a given text to work on (b"from this", b"the following", "parse").
_SOURCE_WORDS = frozenset(b"this these following from parse text below above".split())
_USE = "用".encode()
# One alternation per list: a regex finds any of several CJK words far faster than a
# search per word.
_CJK_CODE_RE, _CJK_SUMMARY_RE, _CJK_EXTRACT_RE, _CJK_CLASSIFY_RE = (
    re.compile("|".join(re.escape(w.decode()) for w in words))
    for words in (_CJK_CODE_WORDS, _CJK_SUMMARY, _CJK_EXTRACT, _CJK_CLASSIFY)
)
_TASK_TAGS = ("extraction", "summarization", "classification")


class Features(NamedTuple):
    """What inference and cost estimation need to know about a message list.

    Sizes count every message (they feed the token estimate); the ``ask_*`` counts, the
    code flag and the task tags read the ask, the latest user turn (see
    :func:`message_features`).
    """

    chars: int
    cjk_chars: int
    has_image: bool
    has_code: bool
    input_tokens: int
    ask_chars: int = 0
    ask_cjk_chars: int = 0
    ask_kana_hangul: int = 0
    tasks: tuple[str, ...] = ()

    @property
    def cjk_share(self) -> float:
        """CJK characters' share of all the text."""
        return self.cjk_chars / self.chars if self.chars else 0.0

    @property
    def chinese_share(self) -> float:
        """CJK characters' share of the ask, or 0 when kana or Hangul say it is not Chinese.

        One kana or Hangul character per 20 CJK ones marks Japanese or Korean text.
        """
        if not self.ask_chars or self.ask_kana_hangul * 20 >= self.ask_cjk_chars:
            return 0.0
        return self.ask_cjk_chars / self.ask_chars


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


def message_role(message: Any) -> str:
    """``user``, ``system``, ``assistant``, ``tool`` or ``other`` for a dict or message.

    A dict without a role and a bare string count as user turns.
    """
    if isinstance(message, dict):
        role = message.get("role", "user")
    elif isinstance(message, str):
        return "user"
    else:
        role = getattr(message, "type", "user")
        if role in ("chat", "ChatMessageChunk"):
            role = getattr(message, "role", "user")
    return _ROLES.get(role, "other") if isinstance(role, str) else "other"


_NO_MESSAGES = "the message list is empty: give at least one message"
_IMAGE_PARTS = ("image_url", "image", "input_image")


def has_image(messages: Sequence[Any]) -> bool:
    """Whether the messages carry an image part: ``message_features(...).has_image``, with
    the same checks, without collecting or measuring the text."""
    if not messages:
        raise InvalidRequestError(_NO_MESSAGES)
    found = False
    for index, message in enumerate(messages):
        content = _content(index, message)
        if isinstance(content, list):
            if not found:
                found = any(
                    isinstance(part, dict) and part.get("type") in _IMAGE_PARTS for part in content
                )
        elif content is not None and not isinstance(content, str):
            raise InvalidRequestError(_bad_content(content))
    return found


def _content(index: int, message: Any) -> Any:
    """A message's content (dict, message object or bare string), or a clear error."""
    if isinstance(message, dict):
        return message.get("content")
    if hasattr(message, "content"):
        return message.content
    if isinstance(message, str):
        return message
    raise InvalidRequestError(
        f"message {index} must be a dict with 'content' or a message object, "
        f"got {type(message).__name__}"
    )


def _bad_content(content: Any) -> str:
    return f"message content must be a string or a list of parts, got {type(content).__name__}"


def message_features(messages: Sequence[Any], *, scan: bool = True) -> Features:
    """Size, script and content features of OpenAI-style dicts or LangChain messages.

    The ask is the latest user turn (the last message when there is none). Code, task
    words and the Chinese share are read from it alone: system prompts, tool results and
    assistant turns describe the setting, not the work asked for. One exception: a short
    latest turn that asks for a change ("now add type hints") continues the code shown in
    the user or assistant turn before it.

    ``scan=False`` (tags already given) skips reading the ask: CJK characters are then
    approximated from the UTF-8 length, which is all the token estimate needs.
    """
    if not messages:
        raise InvalidRequestError(_NO_MESSAGES)
    texts: list[str] = []
    owners: list[int] = []  # the message each text comes from
    images = 0
    for index, message in enumerate(messages):
        content = _content(index, message)
        if isinstance(content, str):
            texts.append(content)
            owners.append(index)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, str):
                    texts.append(part)
                    owners.append(index)
                elif isinstance(part, dict):
                    kind = part.get("type")
                    if kind == "text":
                        texts.append(str(part.get("text", "")))
                        owners.append(index)
                    elif kind in _IMAGE_PARTS:
                        images += 1
        elif content is not None:
            raise InvalidRequestError(_bad_content(content))
    chars = sum(map(len, texts)) + max(len(texts) - 1, 0)
    if not scan:  # CJK is 3 bytes in UTF-8: count non-ASCII weight without a scan
        text = texts[0] if len(texts) == 1 else "\n".join(texts)
        wide = 0 if text.isascii() else (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
        return Features(chars, wide, images > 0, False, _tokens(chars, wide, images, messages))

    roles = [message_role(m) for m in messages]
    ask = _ask_index(roles)
    cjk = wide = ask_chars = ask_cjk = ask_other = 0
    ask_parts: list[str] = []
    for text, owner in zip(texts, owners, strict=True):
        if owner == ask:
            ask_parts.append(text)
            ask_chars += len(text)
        if text.isascii():
            continue
        units = text.encode("utf-16-be", "surrogatepass")
        high, low = units[0::2], units[1::2]
        n_cjk = _count_units(high, low, _HIGH, _LOW)
        n_other = _count_units(high, low, _KH_HIGH, _KH_LOW)
        cjk += n_cjk
        wide += n_cjk + n_other
        if owner == ask:
            ask_cjk += n_cjk
            ask_other += n_other
    ask_text = ask_parts[0] if len(ask_parts) == 1 else "\n".join(ask_parts)
    if ask_cjk and "`" in ask_text and "```" in ask_text:  # prose, not fenced code
        ask_chars -= sum(map(len, ask_text.split("```")[1::2]))
    has_code, tasks = read_ask(ask_text)
    if not has_code and not tasks:
        if "system" in roles:
            tasks = _system_tasks(roles, texts, owners)
        if not tasks and len(ask_text) <= _FOLLOW_UP_CHARS:
            has_code = _continues_code(ask_text, messages, roles, ask, texts, owners)
    return Features(
        chars,
        cjk,
        images > 0,
        has_code,
        _tokens(chars, wide, images, messages),
        ask_chars,
        ask_cjk,
        ask_other,
        tasks,
    )


def prompt_tokens(text: str) -> int:
    """The token estimate of one user message of ``text`` (tags given: no scan), as
    ``message_features([{"role": "user", "content": text}], scan=False).input_tokens``."""
    chars = len(text)
    wide = 0 if text.isascii() else (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
    return (chars - wide + 3) // 4 + wide + 4


def _tokens(chars: int, wide: int, images: int, messages: Sequence[Any]) -> int:
    """~4 characters per token for Latin text, ~1 token per CJK, kana or Hangul character,
    765 tokens per image (a 1024x1024 image at high detail in OpenAI's accounting), and 4
    per message."""
    return (chars - wide + 3) // 4 + wide + 765 * images + 4 * len(messages)


def _ask_index(roles: Sequence[str]) -> int:
    """The latest user turn; without one, the last message that is not a tool result."""
    for wanted in ("user", None):
        for i in range(len(roles) - 1, -1, -1):
            if roles[i] == wanted or (wanted is None and roles[i] != "tool"):
                return i
    return len(roles) - 1


def _system_tasks(
    roles: Sequence[str], texts: Sequence[str], owners: Sequence[int]
) -> tuple[str, ...]:
    """Extraction or classification set up by a system prompt, for an ask that names no
    task of its own ("Return JSON with fields ...", "Reply with one label: ...")."""
    system = "\n".join(t for t, o in zip(texts, owners, strict=True) if roles[o] == "system")
    tasks = read_ask(system)[1]
    return tuple(t for t in tasks if t != "summarization")


def _continues_code(
    ask: str,
    messages: Sequence[Any],
    roles: Sequence[str],
    index: int,
    texts: Sequence[str],
    owners: Sequence[int],
) -> bool:
    """A short ask for a change ("make it async") right after a turn that shows code."""
    words = ask.lower().encode("utf-8", "surrogatepass").translate(_WORD_BYTES).split()
    if _FOLLOW_UP_WORDS.isdisjoint(w.decode() for w in words) and "{" not in ask:
        return False
    for before in range(index - 1, -1, -1):
        if roles[before] == "tool":
            continue
        if roles[before] not in ("user", "assistant"):
            return False
        text = "\n".join(t for t, o in zip(texts, owners, strict=True) if o == before)
        if shows_code(text) or (roles[before] == "user" and read_ask(text)[0]):
            return True
        if roles[before] == "user":
            return False
    return False


def count_cjk(text: str) -> int:
    """How many characters of ``text`` fall in :data:`CJK_RANGES`.

    Counted without a per-character loop: in UTF-16 every BMP character is one 16-bit unit,
    so the high byte of each unit says whether it is CJK (``_HIGH``: one bit per class),
    and the low byte settles the three high bytes only partly in a range (``_LOW``: the
    bits of the classes it completes). The AND of the two, as integers, has one bit set
    per CJK character. Characters beyond the BMP (two surrogate units) never count.
    """
    units = text.encode("utf-16-be", "surrogatepass")
    return _count_units(units[0::2], units[1::2], _HIGH, _LOW)


def count_kana_hangul(text: str) -> int:
    """How many characters of ``text`` fall in :data:`KANA_HANGUL_RANGES` (as count_cjk)."""
    units = text.encode("utf-16-be", "surrogatepass")
    return _count_units(units[0::2], units[1::2], _KH_HIGH, _KH_LOW)


def _count_units(high: bytes, low: bytes, high_table: bytes, low_table: bytes) -> int:
    return (
        int.from_bytes(high.translate(high_table)) & int.from_bytes(low.translate(low_table))
    ).bit_count()


def _unit_tables(ranges: Sequence[tuple[int, int]]) -> tuple[bytes, bytes]:
    """The byte tables of :func:`count_cjk` for BMP code point ``ranges``."""
    high, low = bytearray(256), bytearray(b"\x80" * 256)
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
        base = byte << 8
        for a, b in ranges:  # the low bytes of this high byte's characters in a range
            for lo in range(max(a - base, 0), min(b - base, 0xFF) + 1):
                low[lo] |= 1 << bit
    return bytes(high), bytes(low)


_HIGH, _LOW = _unit_tables(CJK_RANGES)
_KH_HIGH, _KH_LOW = _unit_tables(KANA_HANGUL_RANGES)


def looks_like_code(text: str) -> bool:
    """``text`` shows code (:func:`shows_code`) or asks for code work (:func:`read_ask`)."""
    return read_ask(text)[0]


def read_ask(text: str) -> tuple[bool, tuple[str, ...]]:
    """Whether an ask is code work, and the task tags (extraction, ...) it asks for.

    Code work is code shown (:func:`shows_code`) or asked for: a code term ("regex",
    "stack trace"), a request verb a few words before a code object ("write a function",
    "fix this bug") or a language ("in Rust"), a language naming a code object ("a SQL
    query"). A language name alone is not code. Task words are looked for in the first
    2,000 and last 1,000 characters, where instructions sit.
    """
    return _read_cached(text) if len(text) <= _CACHED_CHARS else _read(text)


_CACHED_CHARS = 16_000
"""Asks up to this long are read once for the last few hundred asked: an agent's every
step, a retry, a shared system prompt ask the same text again. (A pure function of the
text; at most ~4 MB of text kept.)"""


@functools.lru_cache(maxsize=256)
def _read_cached(text: str) -> tuple[bool, tuple[str, ...]]:
    return _read(text)


def _read(text: str) -> tuple[bool, tuple[str, ...]]:
    """:func:`read_ask`, uncached."""
    window = (
        text if len(text) <= _WINDOW else text[: _WINDOW * 2 // 3] + "\n" + text[-_WINDOW // 3 :]
    )
    # UTF-8 bytes, ASCII letters lowered: non-ASCII bytes are never word bytes, and
    # searching bytes is much faster than searching str for CJK text.
    lower = window.encode("utf-8", "surrogatepass").lower()
    if b"+" in lower or b"#" in lower:
        lower = lower.replace(b"c++", b" cpp ").replace(b"c#", b" csharp ")
    words = lower.translate(_WORD_BYTES).split()
    seen = set(words)
    code = shows_code(text) or _asks_for_code(words, seen)
    # CJK phrases are searched for where instructions sit, the first 400 and last 200
    # characters: a multi-byte needle is slow to find in a long CJK text.
    zone = ""
    if not window.isascii():
        edge = window if len(window) <= _CJK_ZONE else window[:400] + "\n" + window[-200:]
        if not code:
            code = _CJK_CODE_RE.search(edge) is not None or _asks_for_code_cjk(
                edge.encode("utf-8", "surrogatepass").lower(), seen
            )
        zone = edge
    tasks: list[str] = []
    if _asks_extraction(lower, seen) or (zone and _CJK_EXTRACT_RE.search(zone)):
        tasks.append("extraction")
    if (
        not seen.isdisjoint(_SUMMARY_WORDS)
        or _has_phrase(words, seen, _SUMMARY_PHRASES)
        or (zone and _CJK_SUMMARY_RE.search(zone))
    ):
        tasks.append("summarization")
    if _asks_classification(lower, seen) or (zone and _CJK_CLASSIFY_RE.search(zone)):
        tasks.append("classification")
    return code, tuple(tasks)


def shows_code(text: str) -> bool:
    """Code in the text: fences, code-shaped lines, stack traces, diffs, inline code.

    One line of an unmistakable shape is enough (``def f(``, ``#include``, a line ending
    in ``{``, a traceback header, a diff hunk); weaker shapes (``return x;``, ``x = f(y)``,
    an indented line with brackets, an inline code span) need two.
    """
    # A one-character search (memchr) first: a three-character one is ~100x slower.
    if ("`" in text and "```" in text) or ("~" in text and "~~~" in text):
        return True
    weak = 0
    if "`" in text:
        spans = text.split("`")[1:-1:2]
        for span in spans:
            if 0 < len(span) <= 120 and "\n" not in span:
                if any(c in span for c in _SPAN_MARKS):
                    return True
                weak += 1
        if weak >= 2:
            return True
    for line in _lines(text):
        s = line.strip()
        if len(s) < 2:
            continue
        if s.startswith(_STRONG_STARTS) or s.endswith(_STRONG_ENDS):
            return True
        first = s.split(None, 1)[0]
        if first in ("def", "class", "from", "import", "at", "$"):
            if _strong_keyword_line(first, s):
                return True
        if not any(c in s for c in _CODE_MARKS):
            continue
        if (
            s.startswith(_WEAK_STARTS)
            or s.endswith(_WEAK_ENDS)
            or (s.endswith(":") and s.startswith(_BLOCK_STARTS))
            or (line[:1] in (" ", "\t") and line[:4].isspace())
            or "=>" in s
            or " = " in s
        ):
            weak += 1
            if weak >= 2:
                return True
    if "E" in text and ("Error" in text or "Exception" in text) and _NAMED_ERROR.search(text):
        return True
    return "=" in text and _SPREADSHEET_FORMULA.search(text) is not None


def _lines(text: str, size: int = 2048) -> Iterator[str]:
    """``text.splitlines()``, split a block of about ``size`` characters at a time, cut just
    after a newline: code shows in the first lines, so the rest often needs no splitting."""
    start, end = 0, len(text)
    while end - start > size:
        cut = text.rfind("\n", start, start + size) + 1 or text.find("\n", start + size) + 1
        if not cut:
            break
        yield from text[start:cut].splitlines()
        start = cut
    if start < end:
        yield from text[start:].splitlines()


def _strong_keyword_line(first: str, s: str) -> bool:
    """Lines whose first word is code only with more evidence on the line."""
    if first == "def":
        return "(" in s
    if first == "class":
        return s.endswith((":", "{")) or "(" in s
    if first == "from":
        return " import " in s
    if first == "import":
        rest = s[7:]
        return " " not in rest or " as " in rest or " from " in rest or rest.startswith("{")
    if first == "at":  # a Java or JavaScript stack frame: at com.acme.Orders.total(Orders.java:42)
        return s.endswith(")") and "(" in s and ":" in s
    command = s[2:].split(None, 1)
    return bool(command) and command[0] in _SHELL_COMMANDS  # "$ git status"


def _asks_for_code(words: list[bytes], seen: set[bytes]) -> bool:
    """Code terms, request verb + code object or language, language + code object."""
    if not _CODE_TERMS_B.isdisjoint(seen):
        return True
    if not _CODE_PHRASE_WORDS_B.isdisjoint(seen) and _has_phrase(words, seen, _CODE_PHRASES):
        return True
    objects = not _CODE_OBJECTS_B.isdisjoint(seen)
    languages = not _LANGUAGES_B.isdisjoint(seen)
    if not (objects or languages):
        return False
    verbs = not _CODE_VERBS_B.isdisjoint(seen)
    if not verbs and not (objects and languages):  # no pair below can match: skip the walk
        return False
    last = len(words) - 1
    for i, word in enumerate(words):
        if word in _LANGUAGES_B:
            nxt = words[i + 1 : i + 3]
            if any(w in _CODE_OBJECTS_B for w in nxt):
                return True
            if verbs and _language_of_work(words, i):
                return True
        elif verbs and word in _CODE_VERBS_B:
            for j in range(i + 1, min(i + 7, last + 1)):
                if words[j] in _CODE_OBJECTS_B and _is_code_object(words, j, word):
                    return True
    return False


def _is_code_object(words: list[bytes], j: int, verb: bytes) -> bool:
    """``words[j]`` is a code object here: not "promo code", "code of conduct"; "how"
    counts only before a code object named as such ("how do I write a function")."""
    word = words[j]
    if word == b"code":
        if j and words[j - 1] in _NOT_CODE_BEFORE:
            return False
        if j + 1 < len(words) and words[j + 1] in _NOT_CODE_AFTER:
            return False
    return True


def _language_of_work(words: list[bytes], i: int) -> bool:
    """A request verb up to six words before ``words[i]``, a language named as the one to
    use: "in Rust", "using SQL", "with CSS", or "to TypeScript" after convert/port/..."""
    before = words[i - 1] if i else b""
    window = words[max(0, i - 6) : i]
    if not any(w in _CODE_VERBS_B for w in window):
        return False
    if before in _LANGUAGE_MARKERS:
        return True
    if words[i] == b"go":
        return False
    if before == b"to":
        return any(w in _TO_VERBS for w in window)
    return before == b"this" and any(w in _TO_VERBS for w in window)


def _asks_for_code_cjk(lower: bytes, seen: set[bytes]) -> bool:
    """Chinese or Japanese code requests naming a language: 用Python写, Pythonで."""
    for name in _LANGUAGES_B.intersection(seen):
        at = lower.find(name)
        while at != -1:
            end = at + len(name)
            if lower[max(at - 3, 0) : at] == _USE or lower[end : end + 6].startswith(
                _CJK_LANGUAGE_MARKS
            ):
                return True
            at = lower.find(name, at + 1)
    return False


def _has_phrase(words: list[bytes], seen: set[bytes], phrases: tuple[bytes, ...]) -> bool:
    """One of ``phrases`` (space-separated words) occurs among ``words``."""
    joined: bytes | None = None
    for phrase in phrases:
        if seen.issuperset(phrase.split()):
            joined = b" " + b" ".join(words) + b" " if joined is None else joined
            if b" " + phrase + b" " in joined:
                return True
    return False


def _asks_extraction(lower: bytes, seen: set[bytes]) -> bool:
    """ "Extract ...", "pull out ...", "as JSON with fields", "every X mentioned", ..."""
    if not _EXTRACT_WORDS.isdisjoint(seen):
        return True
    if b"pull" in seen and b"out" in seen and b"pull out" in lower:
        return True
    if (
        b"json" in seen
        and not seen.isdisjoint((b"fields", b"keys", b"key", b"parse", b"into"))
        and not seen.isdisjoint(_SOURCE_WORDS)
    ):  # "as JSON with fields" of a given text, not "tell a joke, as JSON with keys"
        return True
    if b"mentioned" in seen and not seen.isdisjoint(
        (b"list", b"find", b"which", b"identify", b"all", b"every")
    ):
        return True
    if b"structured" in seen and not seen.isdisjoint((b"fields", b"data", b"format")):
        return True
    if b"fields" in seen and not seen.isdisjoint((b"from", b"into", b"return")):
        return True
    if b"table" in seen and (b"columns" in seen or b"from this" in lower):
        return True
    return (
        not seen.isdisjoint((b"find", b"list", b"identify"))
        and not seen.isdisjoint((b"all", b"every", b"each"))
        and any(p in lower for p in (b"from this", b"in this", b"the following", b"from the"))
    )


def _asks_classification(lower: bytes, seen: set[bytes]) -> bool:
    """ "Classify ...", "sentiment", "is this spam", "label each", "which category", ..."""
    if not _CLASSIFY_WORDS.isdisjoint(seen):
        return True
    if not seen.isdisjoint((b"spam", b"phishing", b"toxic")) and not seen.isdisjoint(
        (b"is", b"whether", b"or", b"label", b"flag")
    ):
        return True
    if not seen.isdisjoint((b"category", b"categories")) and not seen.isdisjoint(
        (b"which", b"what", b"belong", b"belongs", b"into")
    ):
        return True
    if not seen.isdisjoint((b"label", b"tag")) and not seen.isdisjoint(
        (b"each", b"every", b"these", b"as")
    ):
        return True
    if b"positive" in seen and (b"negative" in seen or b"neutral" in seen):
        return True
    if b"intent" in seen and (b"intent of" in lower or b"the intent" in lower):
        return True
    if b"sort" in seen and b"into" in seen:
        return True
    if not seen.isdisjoint((b"rate", b"grade", b"rank")) and {b"as", b"or"} <= seen:
        return True
    return b"yes" in seen and b"no" in seen and (b"yes/no" in lower or b"yes or no" in lower)


_CODE_TERMS_B = frozenset(w.encode() for w in _CODE_TERMS)
_CODE_PHRASE_WORDS_B = frozenset(_CODE_PHRASE_WORDS)
_LANGUAGES_B = frozenset(w.encode() for w in _LANGUAGES)
_CODE_OBJECTS_B = frozenset(w.encode() for w in _CODE_OBJECTS)
_CODE_VERBS_B = frozenset(w.encode() for w in _CODE_VERBS)


def infer_tags(
    features: Features, *, cjk_share: float = 0.3, long_context_tokens: int = 32_000
) -> tuple[str, ...]:
    """Tags read off the messages, in vocabulary order; ``general`` when no other applies.

    ``vision`` for image parts; ``code`` for code shown or asked for in the ask; ``chinese``
    when the ask's Chinese share reaches ``cjk_share``; ``extraction``, ``summarization``,
    ``classification`` when the ask asks for them, unless it is code (work on code is judged
    as code: "summarize this function" is ``code``); ``long-context`` from the token
    estimate.
    """
    tags: list[str] = []
    if features.has_image:
        tags.append("vision")
    if features.has_code:
        tags.append("code")
    if features.chinese_share >= cjk_share:
        tags.append("chinese")
    if not features.has_code:
        tags.extend(t for t in _TASK_TAGS if t in features.tasks)
    if not tags:
        tags.append("general")
    if features.input_tokens >= long_context_tokens:
        tags.append("long-context")
    return tuple(tags)
