"""Workload rows: prompts (or message lists) with optional tags, sizes and outcomes.

One JSON object per line. The same schema serves the bundled sample workload, users' own
workloads and published per-prompt outcome tables (see README, "Workload rows").
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from difflib import get_close_matches
from importlib import resources
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from routedllm.core import files
from routedllm.core.errors import InvalidRequestError, UnknownTagError
from routedllm.core.tags import TAG_NAMES, validate_tags

MAX_ROW_BYTES = 32 * 2**20
"""The longest row read (a row with images inlined as data URLs can run to megabytes)."""
MAX_OUTPUT_TOKENS = 10_000_000
"""An ``expected_output_tokens`` above this is taken for a typo (no model writes near it)."""


def _not_bool(value: Any, what: str) -> Any:
    """``value`` unless it is true or false, which pydantic would read as 1 or 0: a score
    may be correct/incorrect, but ``"cost_usd": true`` is no price (it would read as $1)."""
    if isinstance(value, bool):
        raise ValueError(f"give {what}, not {str(value).lower()}")
    return value


class Outcome(BaseModel):
    """How one model did on one row: a score in [0, 1] and, if known, what it cost."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    score: float = Field(ge=0, le=1)
    cost_usd: float | None = Field(default=None, ge=0)

    @field_validator("cost_usd", mode="before")
    @classmethod
    def _no_bool_cost(cls, value: Any) -> Any:
        return _not_bool(value, "a cost in USD")


class WorkloadRow(BaseModel):
    """One prompt of a workload; ``prompt`` is shorthand for a single user message."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    id: str = Field(min_length=1)
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    tags: list[str] | None = None
    expected_output_tokens: int | None = Field(default=None, gt=0, le=MAX_OUTPUT_TOKENS)
    reference: str | None = None
    grader: str | None = None
    outcomes: dict[str, Outcome] | None = None

    @field_validator("expected_output_tokens", mode="before")
    @classmethod
    def _no_bool_size(cls, value: Any) -> Any:
        return _not_bool(value, "a number of tokens")

    @field_validator("tags")
    @classmethod
    def _known_tags(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            try:
                validate_tags(value)
            except UnknownTagError as exc:
                near = get_close_matches(exc.tag.lower(), TAG_NAMES, n=1, cutoff=0.6)
                raise ValueError(
                    f"{exc}{f' (did you mean {near[0]!r}?)' if near else ''}"
                ) from None
        return value

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError(
                f"row id {ascii(value)} is blank or holds control characters; give printable text"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> WorkloadRow:
        if self.messages is None and self.prompt is None:
            raise ValueError("a row needs 'messages' or 'prompt'")
        if self.messages is not None and self.prompt is not None:
            raise ValueError("give 'prompt' or 'messages', not both")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
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


def read_rows(path: str | os.PathLike[str]) -> Iterator[WorkloadRow]:
    """Rows of a JSONL file; a bad line raises an error naming file, line and field.

    The file must be a regular UTF-8 file (a FIFO or device is refused before reading);
    a line longer than :data:`MAX_ROW_BYTES`, NaN or Infinity, and nesting deeper than
    Python's JSON parser takes are refused with the line's number.
    """
    with open_workload(path) as handle:
        yield from _parse(_lines(handle, files.shown(path)), files.shown(path))


GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def open_workload(path: str | os.PathLike[str], buffer: int = 2**20) -> Iterator[io.BufferedIOBase]:
    """A workload file's bytes: a regular file only (a FIFO or device is refused before
    reading), decompressed when it is gzip (known by its first bytes, whatever its name),
    so ``rows.jsonl.gz`` reads as ``rows.jsonl``. A damaged gzip stream is refused naming
    the file."""
    try:
        raw = files.open_regular(path, "workload")
    except files.FileProblem as exc:
        raise InvalidRequestError(str(exc)) from None
    with io.BufferedReader(raw, buffer) as handle:
        if handle.peek(2)[:2] != GZIP_MAGIC:
            yield handle
            return
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                yield unzipped
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InvalidRequestError(
                f"{files.shown(path)}: a damaged gzip file ({exc}); "
                "check it with gzip -t, or give the rows uncompressed"
            ) from None


def _lines(handle: Any, origin: str) -> Iterator[str]:
    """The file's lines as text, each read with a bound on its length."""
    readline = handle.readline
    number = 0
    while line := readline(MAX_ROW_BYTES + 1):
        number += 1
        if len(line) > MAX_ROW_BYTES:
            raise InvalidRequestError(
                f"{origin}:{number}: a row longer than {MAX_ROW_BYTES // 2**20} MiB"
            )
        yield decode_line(line, f"{origin}:{number}", first=number == 1)


def sample_rows() -> list[WorkloadRow]:
    """The bundled sample workload: coding, general, extraction, Chinese and image prompts."""
    text = resources.files("routedllm.data").joinpath("sample_workload.jsonl").read_text("utf-8")
    return list(_parse(text.splitlines(), "<sample workload>"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; give a finite number or null")


_loads = json.JSONDecoder(parse_constant=_no_constant).decode  # NaN/Infinity refused


def _parse(lines: Iterable[str], origin: str) -> Iterator[WorkloadRow]:
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        data = parse_line(line, f"{origin}:{number}")
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
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), type(data).__name__)
        hint = " (a JSON array of rows? give one object per line)" if kind == "an array" else ""
        raise InvalidRequestError(f"{where}: a row is a JSON object, got {kind}{hint}")
    try:
        return WorkloadRow.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in e['loc']) or '(row)'}: {_message(e)}"
            for e in exc.errors()
        )
        raise InvalidRequestError(f"{where}: {problems}") from None


def _message(error: Any) -> str:
    """A pydantic error's message, without the ``Value error, `` of a validator's own."""
    message = str(error["msg"])
    return message.removeprefix("Value error, ") if error["type"] == "value_error" else message


_FIELDS = tuple(WorkloadRow.model_fields)
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def decode_line(line: bytes, where: str, *, first: bool = False) -> str:
    """A JSONL line as text; not UTF-8 is refused naming ``where`` and the byte."""
    try:
        return line.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"{where}: not UTF-8 text (byte 0x{line[exc.start]:02x} at "
            f"column {exc.start + 1}); a workload is JSONL text"
        ) from None


def parse_line(text: str, where: str) -> Any:
    """One JSONL line's value; bad JSON, NaN or Infinity and deep nesting are refused
    naming ``where`` (file:line). The one rule for every reader of workload files."""
    try:
        return _loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if text.strip() in ("{", "["):  # the first line of an indented JSON document
            hint = " (a pretty-printed JSON file? a workload is JSONL: one object per line)"
        elif text.startswith("\ufeff"):  # a byte-order mark past the first line
            hint = " (it starts with a byte-order mark: two files joined? remove the mark)"
        raise InvalidRequestError(f"{where}: not valid JSON: {exc.msg}{hint}") from None
    except ValueError as exc:  # NaN or Infinity
        raise InvalidRequestError(f"{where}: {exc}") from None
    except RecursionError:
        raise InvalidRequestError(
            f"{where}: nested too deep; a row is a flat JSON object"
        ) from None
