"""Graders: exact, regex, JSON Schema, Python tests in a subprocess, and an LLM judge."""

from __future__ import annotations

import json
import sys

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.graders import (
    JsonSchemaValid,
    LLMJudge,
    PythonTests,
    RegexMatch,
    code_block,
    grade,
    grader_for,
)
from routedllm.workload import WorkloadRow


def row(**fields) -> WorkloadRow:
    return WorkloadRow.model_validate({"id": "r1", "prompt": "What is 2 + 2?", **fields})


def test_exact_match_ignores_case_and_spacing() -> None:
    r = row(reference="Paris", grader="exact")
    assert grade(r, "  paris ").score == 1.0
    assert grade(r, "Lyon").score == 0.0
    assert grade(row(reference="4"), "4").passed  # a reference alone means exact match


def test_regex_searches_the_answer() -> None:
    r = row(reference=r"\b4\b", grader="regex")
    assert grade(r, "The answer is 4.").score == 1.0
    assert grade(r, "The answer is 42.").score == 0.0
    assert RegexMatch(pattern=r"^\d+$").grade(r, "17").passed
    with pytest.raises(InvalidRequestError, match="bad regex"):
        grade(row(reference="(", grader="regex"), "x")


SCHEMA = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
}


def test_json_schema_validity() -> None:
    r = row(grader="json_schema", schema=SCHEMA)
    assert grade(r, '{"name": "Ada", "age": 36}').passed
    assert grade(r, 'Here you go:\n```json\n{"name": "Ada", "age": 36}\n```').passed
    bad = grade(r, '{"name": "Ada", "age": -1}')
    assert bad.score == 0.0 and bad.detail.startswith("age:")
    assert grade(r, "{name: Ada}").detail.startswith("not JSON")
    as_text = row(grader="json_schema", reference=json.dumps(SCHEMA))
    assert grade(as_text, '{"name": "x", "age": 1}').passed


def test_json_schema_errors_name_the_row() -> None:
    with pytest.raises(InvalidRequestError, match="needs a 'schema'"):
        grade(row(grader="json_schema"), "{}")
    with pytest.raises(InvalidRequestError, match="invalid JSON Schema"):
        JsonSchemaValid(schema={"type": 12}).grade(row(), "{}")


TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_python_tests_run_the_answer_in_a_subprocess() -> None:
    r = row(grader="python_tests", tests=TESTS)
    good = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert grade(r, good).passed
    failed = grade(r, "def add(a, b):\n    return a - b\n")
    assert failed.score == 0.0 and "AssertionError" in failed.detail


def test_python_tests_time_out() -> None:
    r = row(grader="python_tests", tests="assert True\n")
    slow = PythonTests(timeout_s=0.5, python=sys.executable).grade(
        r, "import time\ntime.sleep(5)\n"
    )
    assert slow.score == 0.0 and "timed out" in slow.detail


def test_python_tests_need_tests() -> None:
    with pytest.raises(InvalidRequestError, match="needs 'tests'"):
        grade(row(grader="python_tests"), "x = 1")


def test_llm_judge_scales_the_rating() -> None:
    judge = FakeListChatModel(responses=["Accurate and complete. Rating: [[8]]"])
    r = row(grader="judge", reference="4")
    g = grade(r, "4", judge=judge)
    assert g.score == pytest.approx(0.8) and "8/10" in g.detail
    text = LLMJudge(judge).messages(r, "4")[0]["content"]
    assert "What is 2 + 2?" in text and "[Reference Answer]\n4" in text


def test_llm_judge_without_a_rating_is_ungraded_not_zero() -> None:
    judge = LLMJudge(FakeListChatModel(responses=["I cannot rate this.", "Rating: [[11]]"]))
    assert judge.grade(row(), "4").score is None
    assert judge.grade(row(), "4").score is None


async def test_llm_judge_async() -> None:
    judge = LLMJudge(FakeListChatModel(responses=["Rating: [[3.5]]"]))
    assert (await judge.agrade(row(), "5")).score == pytest.approx(0.35)


def test_grader_for_errors() -> None:
    with pytest.raises(InvalidRequestError, match="give a judge model"):
        grader_for(row(grader="judge"))
    with pytest.raises(InvalidRequestError, match="unknown grader 'vibes'"):
        grader_for(row(grader="vibes"))
    with pytest.raises(InvalidRequestError, match="no grader and no reference"):
        grader_for(row())
    with pytest.raises(InvalidRequestError, match="needs a 'reference'"):
        grade(row(grader="exact"), "x")


def test_code_block_prefers_the_language_asked_for() -> None:
    text = "```bash\nls\n```\n```python\nprint(1)\n```"
    assert code_block(text, "python") == "print(1)\n"
    assert code_block("no fences") == "no fences"
