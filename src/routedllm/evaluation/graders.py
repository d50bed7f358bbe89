"""Graders: score a model's answer to a workload row in [0, 1].

A row names its grader in ``grader`` and carries what the grader needs:

* ``exact``: the answer equals ``reference`` (whitespace and case normalised);
* ``regex``: ``reference`` is a regular expression the answer must contain a match of;
* ``json_schema``: the answer is JSON valid against the row's ``schema`` field (a JSON
  Schema object, or ``reference`` holding one as text); needs ``jsonschema``;
* ``python_tests``: the answer's Python code, followed by the row's ``tests`` field (plain
  ``assert`` statements), runs in a subprocess with a timeout; exit status 0 passes. This
  isolates the interpreter (``python -I``), it is not a sandbox: run untrusted code in a
  container;
* ``judge``: a chat model rates the answer 1-10 (MT-Bench's ``[[rating]]`` format), scaled
  to [0, 1] by dividing by 10, the scale published MT-Bench outcomes use here.

A grade whose ``score`` is None could not be given (a judge that returned no rating):
count it, never read it as 0.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from routedllm.core.errors import InvalidRequestError
from routedllm.workload import WorkloadRow

GRADERS: tuple[str, ...] = ("exact", "regex", "json_schema", "python_tests", "judge")
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


@dataclass(frozen=True, slots=True)
class Grade:
    """A score in [0, 1] (None: could not grade) and a short reason."""

    score: float | None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.score is not None and self.score >= 1.0


class Grader(Protocol):
    """Anything that grades an answer to a row."""

    @property
    def name(self) -> str: ...

    def grade(self, row: WorkloadRow, answer: str) -> Grade: ...


def _extra(row: WorkloadRow, key: str) -> Any:
    return (row.model_extra or {}).get(key)


def _need_reference(row: WorkloadRow, grader: str) -> str:
    if row.reference is None:
        raise InvalidRequestError(f"row {row.id!r}: the {grader} grader needs a 'reference'")
    return row.reference


def code_block(text: str, language: str | None = None) -> str:
    """The first fenced code block (of ``language`` if given), else the text itself."""
    for lang, body in _FENCE.findall(text):
        if language is None or lang.lower() in ("", language):
            return body
    return text


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class ExactMatch:
    """The answer equals the row's reference, ignoring case and runs of whitespace."""

    name: str = "exact"

    def grade(self, row: WorkloadRow, answer: str) -> Grade:
        ok = _normalise(answer) == _normalise(_need_reference(row, self.name))
        return Grade(1.0 if ok else 0.0, "matches the reference" if ok else "differs")


@dataclass(frozen=True)
class RegexMatch:
    """The answer contains a match of the row's reference pattern (or ``pattern``)."""

    pattern: str | None = None
    name: str = "regex"

    def grade(self, row: WorkloadRow, answer: str) -> Grade:
        source = self.pattern or _need_reference(row, self.name)
        try:
            regex = re.compile(source, re.MULTILINE)
        except re.error as exc:
            raise InvalidRequestError(f"row {row.id!r}: bad regex {source!r}: {exc}") from None
        found = regex.search(answer)
        return Grade(
            1.0 if found else 0.0,
            f"matched {found.group(0)[:60]!r}" if found else f"no match for {source!r}",
        )


@dataclass(frozen=True)
class JsonSchemaValid:
    """The answer (or its fenced JSON block) is JSON that validates against the schema."""

    schema: dict[str, Any] | None = None
    name: str = "json_schema"

    def grade(self, row: WorkloadRow, answer: str) -> Grade:
        try:
            import jsonschema
        except ImportError:
            raise InvalidRequestError(
                "the json_schema grader needs jsonschema: pip install 'routedllm[eval]'"
            ) from None
        schema = self.schema or self._row_schema(row)
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidRequestError(
                f"row {row.id!r}: invalid JSON Schema: {exc.message}"
            ) from None
        try:
            value = json.loads(code_block(answer, "json"))
        except json.JSONDecodeError as exc:
            return Grade(0.0, f"not JSON: {exc.msg}")
        error = jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
        first = next(iter(error), None)
        if first is None:
            return Grade(1.0, "valid")
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return Grade(0.0, f"{where}: {first.message}")

    @staticmethod
    def _row_schema(row: WorkloadRow) -> dict[str, Any]:
        schema = _extra(row, "schema")
        if schema is None and row.reference is not None:
            try:
                schema = json.loads(row.reference)
            except json.JSONDecodeError:
                schema = None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                f"row {row.id!r}: the json_schema grader needs a 'schema' object "
                "(or a reference holding one)"
            )
        return schema


@dataclass(frozen=True)
class PythonTests:
    """The answer's code plus the row's ``tests`` exit 0 in a fresh interpreter in time."""

    timeout_s: float = 10.0
    python: str = sys.executable
    name: str = "python_tests"

    def grade(self, row: WorkloadRow, answer: str) -> Grade:
        tests = _extra(row, "tests")
        if not isinstance(tests, str) or not tests.strip():
            raise InvalidRequestError(f"row {row.id!r}: the python_tests grader needs 'tests'")
        program = code_block(answer, "python").rstrip() + "\n\n" + tests.rstrip() + "\n"
        with tempfile.TemporaryDirectory(prefix="routedllm-grade-") as tmp:
            script = Path(tmp) / "answer_test.py"
            script.write_text(program, encoding="utf-8")
            try:
                done = subprocess.run(
                    [self.python, "-I", "-B", str(script)],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout_s,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                return Grade(0.0, f"timed out after {self.timeout_s:g} s")
        if done.returncode == 0:
            return Grade(1.0, "tests passed")
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return Grade(0.0, last[:200])


JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an "
    "AI assistant to the user question below. Consider helpfulness, relevance, accuracy, "
    "depth and level of detail.{reference_note} Begin with a short explanation, then rate the "
    'response from 1 to 10 in exactly this format: "Rating: [[5]]".\n\n'
    "[Question]\n{question}\n\n{reference_block}[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]"
)


@dataclass(frozen=True)
class LLMJudge:
    """A chat model (any LangChain ``BaseChatModel``) rates the answer 1-10; score = rating / 10."""

    model: Any
    prompt: str = JUDGE_PROMPT
    name: str = "judge"

    def messages(self, row: WorkloadRow, answer: str) -> list[dict[str, str]]:
        """The judge conversation: one user message built from ``prompt``."""
        question = "\n\n".join(
            str(m.get("content", ""))
            for m in row.chat_messages()
            if m.get("role", "user") == "user"
        )
        ref = row.reference
        text = self.prompt.format(
            question=question,
            answer=answer,
            reference_note=" Compare it with the reference answer." if ref else "",
            reference_block=f"[Reference Answer]\n{ref}\n\n" if ref else "",
        )
        return [{"role": "user", "content": text}]

    def grade(self, row: WorkloadRow, answer: str) -> Grade:
        return self.parse(self.model.invoke(self.messages(row, answer)))

    async def agrade(self, row: WorkloadRow, answer: str) -> Grade:
        return self.parse(await self.model.ainvoke(self.messages(row, answer)))

    @staticmethod
    def parse(reply: Any) -> Grade:
        """Read ``[[rating]]`` from the judge's reply; None when it gave none in 1-10."""
        text = reply.content if hasattr(reply, "content") else str(reply)
        text = text if isinstance(text, str) else json.dumps(text)
        found = _RATING.findall(text)
        if not found:
            return Grade(None, f"judge gave no [[rating]]: {text[:120]!r}")
        rating = float(found[-1])
        if not 1 <= rating <= 10:
            return Grade(None, f"judge rating {rating:g} is outside 1-10")
        return Grade(rating / 10, f"judge rated {rating:g}/10")


def grader_for(row: WorkloadRow, judge: Any = None, timeout_s: float = 10.0) -> Grader:
    """The grader a row names; ``judge`` is the chat model the ``judge`` grader uses."""
    name = row.grader or ("exact" if row.reference is not None else None)
    if name == "exact":
        return ExactMatch()
    if name == "regex":
        return RegexMatch()
    if name == "json_schema":
        return JsonSchemaValid()
    if name == "python_tests":
        return PythonTests(timeout_s=timeout_s)
    if name == "judge":
        if judge is None:
            raise InvalidRequestError(
                f"row {row.id!r} asks for the judge grader: give a judge model"
            )
        return LLMJudge(judge)
    if name is None:
        raise InvalidRequestError(f"row {row.id!r} has no grader and no reference to match")
    raise InvalidRequestError(
        f"row {row.id!r}: unknown grader {name!r}; known: {', '.join(GRADERS)}"
    )


def grade(row: WorkloadRow, answer: str, judge: Any = None, timeout_s: float = 10.0) -> Grade:
    """Grade ``answer`` to ``row`` with the grader the row names."""
    return grader_for(row, judge, timeout_s).grade(row, answer)
