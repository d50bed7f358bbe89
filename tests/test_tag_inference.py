"""Tag inference on the labelled set (floors on precision and recall) and the misroutes
it was rewritten for: each named case routed by what the user asked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from routedllm import Catalog, Policy, Request
from routedllm.core.decision import Router
from routedllm.core.tags import infer_tags, message_features

ROOT = Path(__file__).resolve().parent.parent


def tags_of(messages, **kwargs) -> tuple[str, ...]:
    return infer_tags(message_features(messages), **kwargs)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def accuracy() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tag_accuracy", ROOT / "benchmarks" / "tag_accuracy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# Floors a little under the figures measured when the rules were written (docs/concepts.md).
@pytest.mark.parametrize(
    ("split", "macro_f1", "code_precision", "exact"),
    [("all", 0.95, 0.97, 0.94), ("heldout", 0.92, 0.95, 0.9)],
)
def test_accuracy_floors(accuracy, split, macro_f1, code_precision, exact) -> None:
    rows = accuracy.load()
    assert len(rows) >= 300
    scores = accuracy.score([r for r in rows if split == "all" or r.split == split])
    assert scores.macro_f1 >= macro_f1
    assert scores.per_tag["code"][0] >= code_precision
    assert scores.per_tag["chinese"][0] >= 0.95
    assert scores.exact >= exact


def test_billing_question_under_an_ide_system_prompt_is_not_code() -> None:
    messages = [
        {"role": "system", "content": "You are billing support for PyCharm, the Python IDE."},
        user("I was charged twice for my annual subscription. Can I get a refund?"),
    ]
    assert tags_of(messages) == ("general",)


@pytest.mark.parametrize(
    "text",
    [
        "Write an email inviting the team to the JavaScript meetup on Thursday at 6pm.",
        "I'm planning a trip to Java next spring and there's rust on my bike. Any tips?",
        "Hey team,\nlet me know if Friday works;\nreturn the signed forms by noon;\nthanks!",
        "Where can I find a promo code, and is there a dress code at the opera?",
    ],
)
def test_language_names_and_code_words_in_prose_are_not_code(text) -> None:
    assert tags_of([user(text)]) == ("general",)


def test_sql_in_a_tool_result_does_not_move_the_final_answer_to_code() -> None:
    sql = "SELECT region, SUM(amount) FROM sales GROUP BY region;\n[('EMEA', 1843200)]"
    dicts = [
        user("Which region had the highest sales last quarter?"),
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "1", "content": sql},
    ]
    lc = [
        HumanMessage("Which region had the highest sales last quarter?"),
        AIMessage("", tool_calls=[{"name": "run_sql", "args": {"q": "..."}, "id": "1"}]),
        ToolMessage(sql, tool_call_id="1"),
    ]
    assert tags_of(dicts) == tags_of(lc) == ("general",)


def test_every_message_counts_towards_the_token_estimate() -> None:
    long_tool = "x" * 40_000
    few = message_features([user("Summarize the report.")])
    many = message_features([user("Summarize the report."), {"role": "tool", "content": long_tool}])
    assert many.input_tokens - few.input_tokens >= 10_000
    assert infer_tags(few) == infer_tags(many) == ("summarization",)


@pytest.mark.parametrize(
    "text",
    [
        "私たちのチームは来月から新しいプロジェクトを始めます。議題を考えてください。",
        "会議は午後三時に変更になりました。資料は前日までに共有してください。",
        "서울에서 가볼 만한 카페를 추천해 주세요.",
        "大韓民國의 憲法 第1條는 무엇인가요?",
    ],
)
def test_japanese_and_korean_are_not_chinese(text) -> None:
    assert "chinese" not in tags_of([user(text)])


def test_mixed_chinese_english_follows_the_policy_threshold() -> None:
    mixed = [user("我觉得这个 proposal 还需要再改一下，特别是 budget 部分，你能帮我看看吗？")]
    assert tags_of(mixed) == ("chinese",)
    assert tags_of(mixed, cjk_share=0.95) == ("general",)
    assert tags_of([user("Translate 你好 into English, please, and explain the tones.")]) == (
        "general",
    )


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        (
            "Summarize this article in three bullet points: The council voted ...",
            ("summarization",),
        ),
        ("TL;DR please: I've been at my company for four years and ...", ("summarization",)),
        ("Give me the key points of this email thread: ...", ("summarization",)),
        (
            "请帮我总结一下这篇文章的主要内容：近年来，电动汽车快速普及。",
            ("chinese", "summarization"),
        ),
        (
            "Extract the invoice number and total from: Invoice #4471, total $1,240.",
            ("extraction",),
        ),
        (
            "Pull out all dates from this letter: met on March 3rd, signed 15 April.",
            ("extraction",),
        ),
        ("From this job posting, return JSON with fields title and salary: ...", ("extraction",)),
        (
            "Classify the sentiment of this review: 'The room was clean but cold.'",
            ("classification",),
        ),
        (
            "Label each ticket as billing or technical: 1. charged twice 2. app crashes",
            ("classification",),
        ),
        ("Is this email spam? 'You have won a $1000 gift card!'", ("classification",)),
        ("Tell me a joke about cats. Return the result as a JSON with 'setup' keys.", ("general",)),
    ],
)
def test_task_requests(text, tags) -> None:
    assert tags_of([user(text)]) == tags


@pytest.mark.parametrize(
    "text",
    [
        "Summarize what this function does:\n\ndef f(xs):\n    return sorted(set(xs))",
        "Extract all the function names from this file:\n\nimport os\n\ndef load(path):\n    pass",
        "Write a Python function that returns the n-th Fibonacci number.",
        'Traceback (most recent call last):\n  File "app.py", line 3\nZeroDivisionError: x',
        "diff --git a/app.py b/app.py\n@@ -1,2 +1,2 @@\n-a = 1\n+a = 2\nsafe?",
    ],
)
def test_code_evidence_wins_over_tasks(text) -> None:
    assert tags_of([user(text)]) == ("code",)


def test_latest_user_turn_decides_and_short_follow_ups_continue_code() -> None:
    code = HumanMessage("def area(r):\n    return 3.14 * r * r")
    answer = AIMessage("Consider math.pi.")
    assert tags_of([code, answer, HumanMessage("ok, change it to use math.pi")]) == ("code",)
    assert tags_of([code, answer, HumanMessage("Thanks! Have a good evening.")]) == ("general",)
    system = SystemMessage("You are an expert coding assistant. Always write clean code.")
    assert tags_of([system, HumanMessage("What are your opening hours?")]) == ("general",)


def test_system_prompt_may_set_up_extraction_or_classification_but_not_summarization() -> None:
    def with_system(prompt: str) -> tuple[str, ...]:
        return tags_of([{"role": "system", "content": prompt}, user("Buy followers now!!!")])

    assert with_system("Classify each user message as SAFE or SPAM.") == ("classification",)
    assert with_system("Summarize every document the user sends.") == ("general",)


def test_router_decides_on_the_inferred_task() -> None:
    router = Router(Catalog.default(), Policy())
    decision = router.decide(Request(messages=[user("Write an email about the Rust meetup.")]))
    assert decision.inferred_tags == ("general",)
