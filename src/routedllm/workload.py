"""Workload rows: prompts (or message lists) with optional tags, sizes and outcomes.

One JSON object per line. The same schema serves the bundled sample workload, users' own
workloads and published per-prompt outcome tables (see README, "Workload rows").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routedllm.core.errors import InvalidRequestError
from routedllm.core.tags import validate_tags


class Outcome(BaseModel):
    """How one model did on one row: a score in [0, 1] and, if known, what it cost."""

    model_config = ConfigDict(extra="allow", frozen=True)

    score: float = Field(ge=0, le=1)
    cost_usd: float | None = Field(default=None, ge=0)


class WorkloadRow(BaseModel):
    """One prompt of a workload; ``prompt`` is shorthand for a single user message."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    tags: list[str] | None = None
    expected_output_tokens: int | None = Field(default=None, gt=0)
    reference: str | None = None
    grader: str | None = None
    outcomes: dict[str, Outcome] | None = None

    @model_validator(mode="after")
    def _check(self) -> WorkloadRow:
        if self.messages is None and self.prompt is None:
            raise ValueError("a row needs 'messages' or 'prompt'")
        if self.messages is not None and self.prompt is not None:
            raise ValueError("give 'prompt' or 'messages', not both")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        if self.tags is not None:
            validate_tags(self.tags)
        for extra in self.model_extra or {}:
            near = get_close_matches(extra, _FIELDS, n=1, cutoff=0.75)
            if near:
                raise ValueError(f"unknown field {extra!r}: did you mean {near[0]!r}?")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        """The row as OpenAI-style chat messages."""
        if self.messages is not None:
            return self.messages
        return [{"role": "user", "content": self.prompt}]


def read_rows(path: str | Path) -> Iterator[WorkloadRow]:
    """Rows of a JSONL file; a bad line raises an error naming file, line and field."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequestError(f"{path}: cannot read workload: {exc.strerror}") from None
    with handle:
        yield from _parse(handle, str(path))


def sample_rows() -> list[WorkloadRow]:
    """The bundled sample workload: coding, general, extraction, Chinese and image prompts."""
    text = resources.files("routedllm.data").joinpath("sample_workload.jsonl").read_text("utf-8")
    return list(_parse(text.splitlines(), "<sample workload>"))


def _parse(lines: Any, origin: str) -> Iterator[WorkloadRow]:
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{origin}:{number}: not valid JSON: {exc.msg}") from None
        row = row_of(data, f"{origin}:{number}")
        if row.id in seen:
            raise InvalidRequestError(
                f"{origin}:{number}: row id {row.id!r} repeats line {seen[row.id]}"
            )
        seen[row.id] = number
        yield row


def row_of(data: Any, where: str) -> WorkloadRow:
    """One row from its parsed JSON; a bad one raises naming ``where`` (file:line) and
    each field at fault."""
    try:
        return WorkloadRow.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in e['loc']) or '(row)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise InvalidRequestError(f"{where}: {problems}") from None


_FIELDS = tuple(WorkloadRow.model_fields)
