"""Tag vocabulary and inference from messages."""

from __future__ import annotations

import random
import re

import pytest
from langchain_core.messages import HumanMessage

from routedllm.core.errors import InvalidRequestError, UnknownTagError
from routedllm.core.tags import (
    _CACHED_CHARS,
    CJK_RANGES,
    KANA_HANGUL_RANGES,
    VOCABULARY,
    _lines,
    _read,
    count_cjk,
    count_kana_hangul,
    infer_tags,
    message_features,
    read_ask,
    shows_code,
    validate_tags,
)
from tests.conftest import user


def test_vocabulary_maps_benchmarks_and_capabilities() -> None:
    assert {t: s.benchmark for t, s in VOCABULARY.items()} == {
        "vision": "mmlu",
        "code": "humaneval",
        "chinese": "ceval",
        "extraction": "mmlu",
        "summarization": "mmlu",
        "classification": "mmlu",
        "general": "mmlu",
        "long-context": "mmlu",
    }
    assert VOCABULARY["vision"].requires == {"image_input"}


@pytest.mark.parametrize(
    ("messages", "tags"),
    [
        (user("What is the capital of Australia?"), ("general",)),
        (user("```python\nprint(1)\n```\nwhy does this fail?"), ("code",)),
        (user("Write a SQL query that counts orders per day."), ("code",)),
        (user("def f(x):\n    return x + 1\n"), ("code",)),
        (user("请解释一下数据库事务的隔离级别。"), ("chinese",)),
        (user("请用Python写一个快速排序函数"), ("code", "chinese")),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                    ],
                }
            ],
            ("vision",),
        ),
        (user("lorem ipsum dolor sit amet " * 5000), ("general", "long-context")),
        ([HumanMessage("今天天气怎么样？我们去哪里玩？")], ("chinese",)),
    ],
)
def test_inference(messages, tags) -> None:
    assert infer_tags(message_features(messages)) == tags


def test_short_chinese_share_in_english_text_is_not_chinese() -> None:
    assert infer_tags(message_features(user("Translate 你好 into English, please, thanks."))) == (
        "general",
    )


def test_unknown_tag_lists_known_ones() -> None:
    with pytest.raises(UnknownTagError, match="unknown tag 'coding'; known tags: vision, code"):
        validate_tags(["code", "coding"])
    assert validate_tags(["code", "chinese", "code"]) == ("code", "chinese")


def test_bad_messages() -> None:
    with pytest.raises(InvalidRequestError, match="message list is empty"):
        message_features([])
    with pytest.raises(InvalidRequestError, match="content must be a string or a list"):
        message_features([{"role": "user", "content": 42}])


def test_token_estimate_counts_cjk_per_character() -> None:
    latin = message_features(user("a" * 4000))
    cjk = message_features(user("字" * 4000))
    assert 990 <= latin.input_tokens <= 1010 and 3990 <= cjk.input_tokens <= 4010
    assert message_features(user("字" * 4000), scan=False).input_tokens == cjk.input_tokens


def test_count_cjk_counts_exactly_the_cjk_ranges() -> None:
    ranges = re.compile(
        "[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_RANGES) + "]"
    )  # the definition, one character at a time
    edges = [c for a, b in CJK_RANGES for c in (a - 1, a, b, b + 1)]
    samples = [
        "",
        "plain ASCII",
        "请用Python写一个快速排序函数，谢谢。",
        "これは日本語の文章です。カタカナ、ひらがな、漢字。",
        "한국어 텍스트",
        "𠀀𪜀 astral ideographs and a lone \ud800 surrogate",
        "".join(map(chr, edges)),
    ]
    rng = random.Random(7)
    pool = [*range(0x20, 0x7F), *range(0x2F00, 0x5000), *range(0x9F00, 0x10000), 0x20000]
    samples += ["".join(chr(rng.choice(pool)) for _ in range(200)) for _ in range(50)]
    for text in samples:
        assert count_cjk(text) == len(ranges.findall(text)), text


def test_count_kana_hangul_counts_exactly_its_ranges() -> None:
    ranges = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in KANA_HANGUL_RANGES) + "]")
    samples = [
        "これは日本語の文章です。カタカナ、ひらがな、漢字。",
        "한국어 텍스트 大韓民國",
        "请用Python写一个快速排序函数",
        "".join(chr(c) for a, b in KANA_HANGUL_RANGES for c in (a - 1, a, b, b + 1)),
    ]
    rng = random.Random(5)
    pool = [*range(0x20, 0x7F), *range(0x1000, 0x3300), *range(0xAB00, 0xD800)]
    samples += ["".join(chr(rng.choice(pool)) for _ in range(200)) for _ in range(50)]
    for text in samples:
        assert count_kana_hangul(text) == len(ranges.findall(text)), text


def test_an_ask_read_again_gives_the_first_reading() -> None:
    """read_ask keeps its last few hundred readings (an agent asks the same text at each
    step): a text read again, or past the cached length, reads as it does uncached."""
    asks = [
        "Write a Python function that parses ISO dates",
        "Summarise this report in three bullet points",
        "请用Python写一个函数, 解析日期",
        "Classify each review as positive or negative",
        "def f(x):\n    return x + 1\n\nWhat does this do? " * 900,  # past the cached length
    ]
    for ask in asks:
        first = read_ask(ask)
        assert read_ask(ask) == first == _read(ask)
        assert read_ask(ask + " ") == _read(ask + " ")
    assert len(asks[-1]) > _CACHED_CHARS


def test_lines_are_split_a_block_at_a_time_as_splitlines() -> None:
    """shows_code splits a long text's lines a block at a time (code shows early): the
    lines are those of str.splitlines, whatever the line breaks and the block size."""
    rng = random.Random(6)
    pieces = [
        "def f(x):",
        "  return x",
        "\n",
        "\r\n",
        "\r",
        "\x0b",
        "\x1c",
        "\u2028",
        "\x85",
        "text ",
    ]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 200)))
        assert list(_lines(text, rng.randint(1, 64))) == text.splitlines(), repr(text)


def test_fences_and_named_errors_are_found_past_the_one_character_search() -> None:
    assert shows_code("see below\n```\nx\n```") and shows_code("~~~\nx\n~~~")
    assert not shows_code("a ` lone backquote, a ~ tilde, and an ~~ pair")
    assert shows_code("it failed: KeyError: 'id'") and not shows_code("an Error, in English")
