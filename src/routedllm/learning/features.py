"""What the learned router reads off a call: word n-grams and structure, from the prompt alone.

Two kinds of features, both computed in pure Python so the base install can apply a
trained router (numpy is needed only to train):

* **terms**: lower-cased words (runs of ASCII letters, digits and ``_``, or of other
  characters) and word bigrams of the ask (the latest user turn). Training keeps a
  vocabulary of the terms seen in enough rows; at decision time a term outside it is
  ignored. A vocabulary, not feature hashing: a dict lookup is faster than a stable hash
  in pure Python, and the artifact says which words weigh. A bigram is held as a pair of
  words (cheaper to build than a string) and written ``"a b"`` in the artifact.
* **structure**: sizes (log characters, log lines, log tokens of the whole call), shares
  of digits, capitals and math marks, question marks, a code fence, and one flag per
  routedllm tag of the call (given, or inferred by :mod:`routedllm.core.tags`). Never a
  dataset's label: a production call does not carry one.

Only the first :data:`HEAD_CHARS` and last :data:`TAIL_CHARS` characters of a long ask are
read for terms, which bounds the decision time; sizes still count the whole call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from routedllm.core.tags import TAG_NAMES, message_role

HEAD_CHARS = 1000
TAIL_CHARS = 250
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_SPLIT = bytes(c if c in _WORD_BYTES or c >= 128 else 32 for c in range(256))
"""Every ASCII byte that is not a word character becomes a space; UTF-8 stays as is."""
_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MATH = b"=+^\\$<>*/"
_NON_ASCII = bytes(range(128, 256))
STRUCTURE: tuple[str, ...] = (
    "bias",
    "log_chars",
    "log_lines",
    "log_tokens",
    "digit_share",
    "upper_share",
    "math_share",
    "questions",
    "code_fence",
    "messages",
    *(f"tag:{t}" for t in TAG_NAMES),
)
"""Names of the structure features, in the order :func:`structure` returns them."""


def ask_text(messages: Sequence[Any]) -> str:
    """The text of the latest user turn (the last message when none is a user's)."""
    roles = [message_role(m) for m in messages]
    index = max((i for i, r in enumerate(roles) if r == "user"), default=len(messages) - 1)
    message = messages[index]
    if isinstance(message, str):
        return message
    content = message.get("content") if isinstance(message, dict) else message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")
        )
    return ""


Term = str | tuple[str, str]
"""A word, or a bigram as a pair of words."""


def terms(text: str) -> set[Term]:
    """The distinct words and word bigrams of the text's head and tail, lower-cased."""
    words = _words(text)
    found: set[Term] = set(words)
    found.update(zip(words, words[1:], strict=False))
    return found


def _words(text: str) -> list[str]:
    """The lower-cased words of the text's head and tail, in order."""
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        text = text[:HEAD_CHARS] + " " + text[-TAIL_CHARS:]
    raw = text.lower().encode("utf-8", "surrogatepass").translate(_SPLIT)
    return raw.decode("utf-8", "surrogatepass").split()


def ask_features(text: str) -> tuple[frozenset[Term], tuple[float, ...]]:
    """:func:`terms` and the part of :func:`structure` read off the text alone (see
    :func:`call_structure`), kept for the last 128 asks up to 16,000 characters long, as
    :func:`routedllm.core.tags.read_ask` keeps its reading: an agent's every step, a retry,
    a shared prompt ask the same text again. (A pure function of the text.)"""
    return _ask_cached(text) if len(text) <= _CACHED_CHARS else _ask_features(text)


_CACHED_CHARS = 16_000


@functools.lru_cache(maxsize=128)
def _ask_cached(text: str) -> tuple[frozenset[Term], tuple[float, ...]]:
    return _ask_features(text)


def _ask_features(text: str) -> tuple[frozenset[Term], tuple[float, ...]]:
    words = _words(text)
    return frozenset(chain(words, zip(words, words[1:], strict=False))), text_structure(text)


def term_name(term: Term) -> str:
    """How a term is written in the artifact: a word, or ``"a b"`` for a bigram."""
    return term if isinstance(term, str) else " ".join(term)


def parse_term(name: str) -> Term:
    """The term :func:`term_name` wrote."""
    first, space, second = name.partition(" ")
    return (first, second) if space else name


def structure(text: str, tags: Iterable[str], input_tokens: int, messages: int) -> list[float]:
    """The structure features of an ask, named by :data:`STRUCTURE` (bias first)."""
    return call_structure(text_structure(text), tags, input_tokens, messages)


def call_structure(
    of_text: Sequence[float], tags: Iterable[str], input_tokens: int, messages: int
) -> list[float]:
    """:func:`structure` from :func:`text_structure` and what the call adds."""
    log_chars, log_lines, digits, upper, math_marks, questions, fence = of_text
    return [
        1.0,
        log_chars,
        log_lines,
        math.log1p(input_tokens),
        digits,
        upper,
        math_marks,
        questions,
        fence,
        math.log(messages) if messages > 0 else 0.0,
        *_tag_flags(tags if isinstance(tags, tuple) else tuple(tags)),
    ]


def text_structure(text: str) -> tuple[float, ...]:
    """The structure features read off the text alone: log characters, log lines, shares
    of digits, capitals and math marks, log question marks, a code fence."""
    n = len(text) or 1
    head = text[:HEAD_CHARS].encode("utf-8", "replace")
    h = len(head) or 1
    a = h  # a count is a - the bytes left when the marks are deleted (1 for an empty head)
    if not head.isascii():  # the marks are ASCII: count them among the ASCII bytes alone
        ascii_head = head.translate(None, _NON_ASCII)
        a -= len(head) - len(ascii_head)
        head = ascii_head
    digits = a - len(head.translate(None, _DIGITS))
    upper = a - len(head.translate(None, _UPPER))
    math_marks = a - len(head.translate(None, _MATH))
    # A one-character search (memchr) before counting or a three-character search: most
    # prompts have no question mark or backquote, and searching is faster than counting.
    return (
        math.log1p(n),
        math.log1p(text.count("\n")) if "\n" in text else 0.0,
        digits / h,
        upper / h,
        math_marks / h,
        math.log1p(text.count("?")) if "?" in text else 0.0,
        1.0 if "`" in text and "```" in text else 0.0,
    )


_TAG_FLAGS: dict[tuple[str, ...], tuple[float, ...]] = {}


def _tag_flags(tags: tuple[str, ...]) -> tuple[float, ...]:
    """One flag per :data:`TAG_NAMES` entry, 1.0 for the tags given; kept per tag tuple (a
    few dozen occur: the inferred ones and the caller's)."""
    flags = _TAG_FLAGS.get(tags)
    if flags is None:
        flags = tuple(1.0 if t in tags else 0.0 for t in TAG_NAMES)
        if len(_TAG_FLAGS) < 1024:
            _TAG_FLAGS[tags] = flags
    return flags
