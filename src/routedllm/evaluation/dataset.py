"""Evaluation datasets: workload rows held as columns, ready for vectorised replay.

A dataset is JSONL rows in the workload schema (:mod:`routedllm.workload`). Each row's
tags, size and outcomes are read once, here; replay then works on numpy arrays, so a
million rows replay in seconds. Tags a row does not give are inferred from its messages
with the inference thresholds of ``inference`` (default: :class:`~routedllm.core.decision.Policy`
defaults).
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError, UnknownTagError
from routedllm.core.tags import (
    VOCABULARY,
    infer_tags,
    message_features,
    primary_tag,
    prompt_tokens,
    validate_tags,
)
from routedllm.workload import WorkloadRow, read_rows, row_of, sample_rows

GROUP_AUTO = "auto"  # a row's ``category`` field when it has one, else its primary tag
GROUP_TAG = "tag"  # the primary tag


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Rows as columns. Arrays have one entry per row; outcome matrices one column per model.

    ``output_tokens`` is 0 where the row gives no expected output length (the policy's
    default then applies). ``scores`` and ``costs`` are NaN where a row has no outcome for
    a model, or the outcome gives no cost. ``memo`` keeps values derived from the rows
    alone (decision keys), computed once.
    """

    ids: tuple[str, ...]
    tag_sets: tuple[tuple[str, ...], ...]
    tag_index: np.ndarray
    inferred: np.ndarray
    group_names: tuple[str, ...]
    group_index: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    models: tuple[str, ...]
    scores: np.ndarray
    costs: np.ndarray
    inference: tuple[float, int]  # (cjk_share, long_context_tokens) used to infer tags
    memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_outcomes(self) -> bool:
        return bool(self.models) and bool(np.isfinite(self.scores).any())

    @property
    def primary_tags(self) -> tuple[str, ...]:
        """The primary tag of each distinct tag set (index with ``tag_index``)."""
        return tuple(primary_tag(tags) for tags in self.tag_sets)

    def column(self, model: str) -> int:
        """The outcome column of ``model``; raises naming the models the table has."""
        try:
            return self.models.index(model)
        except ValueError:
            known = ", ".join(self.models) or "none"
            raise InvalidRequestError(
                f"model {model!r} has no outcomes in this dataset; models with outcomes: {known}"
            ) from None

    def subset(self, rows: np.ndarray) -> EvalSet:
        """The rows at positions ``rows`` (an index array), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return EvalSet(
            ids=tuple(self.ids[i] for i in rows.tolist()),
            tag_sets=self.tag_sets,
            tag_index=self.tag_index[rows],
            inferred=self.inferred[rows],
            group_names=self.group_names,
            group_index=self.group_index[rows],
            input_tokens=self.input_tokens[rows],
            output_tokens=self.output_tokens[rows],
            models=self.models,
            scores=self.scores[rows],
            costs=self.costs[rows],
            inference=self.inference,
        )

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[WorkloadRow],
        *,
        group_by: str = GROUP_AUTO,
        inference: Policy | None = None,
    ) -> EvalSet:
        """Read tags, sizes, groups and outcomes off workload rows.

        ``group_by`` names the calibration group of each row: ``auto`` (its ``category``
        field when present, else its primary tag), ``tag`` (the primary tag) or the name of
        any extra string field the rows carry.
        """
        columns = _Columns(group_by, inference or Policy())
        seen: set[str] = set()
        for row in rows:
            if row.id in seen:
                raise InvalidRequestError(f"row id {row.id!r} appears twice in the dataset")
            seen.add(row.id)
            outcomes = row.outcomes or {}
            columns.add(
                row.id,
                row.tags,
                row.messages,
                row.prompt,
                row.expected_output_tokens,
                {m: {"score": o.score, "cost_usd": o.cost_usd} for m, o in outcomes.items()},
                row.model_extra or {},
            )
        return columns.build()

    @classmethod
    def from_jsonl(
        cls,
        path: str | Path,
        *,
        group_by: str = GROUP_AUTO,
        inference: Policy | None = None,
        progress: Callable[[Iterable[bytes]], Iterable[bytes]] | None = None,
    ) -> EvalSet:
        """:meth:`from_rows` of a JSONL file, read as a stream: no row object is kept, so
        memory holds the columns alone. Rows are checked as :func:`~routedllm.workload.
        read_rows` checks them, with the same errors (file, line, field); rows of the
        common shapes are checked in plain Python, any other goes through
        :class:`WorkloadRow`. ``progress`` wraps the file's lines (a progress bar)."""
        path = Path(path)
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise InvalidRequestError(f"{path}: cannot read workload: {exc.strerror}") from None
        columns = _Columns(group_by, inference or Policy())
        lines_of: dict[str, int] = {}
        check = _FastCheck()
        with handle:
            lines: Iterable[bytes] = handle if progress is None else progress(handle)
            for number, line in enumerate(lines, 1):
                if line[:1] in _SPACE and not line.strip():
                    continue
                data = _parse_line(line, path, number)
                if check(data):
                    row_id = data["id"]
                    outcomes = data.get("outcomes") or {}
                    args: tuple[Any, ...] = (
                        data.get("tags"),
                        data.get("messages"),
                        data.get("prompt"),
                        data.get("expected_output_tokens"),
                        outcomes,
                        check.extra(data),
                    )
                else:
                    row = row_of(data, f"{path}:{number}")
                    row_id = row.id
                    outcome_rows = row.outcomes or {}
                    args = (
                        row.tags,
                        row.messages,
                        row.prompt,
                        row.expected_output_tokens,
                        {
                            m: {"score": o.score, "cost_usd": o.cost_usd}
                            for m, o in outcome_rows.items()
                        },
                        row.model_extra or {},
                    )
                first = lines_of.setdefault(row_id, number)
                if first != number:
                    raise InvalidRequestError(
                        f"{path}:{number}: row id {row_id!r} repeats line {first}"
                    )
                columns.add(row_id, *args)
        return columns.build()


class _Columns:
    """Rows' tags, sizes, groups and outcomes, gathered a row at a time into compact
    columns (arrays of numbers, not objects), then built into an :class:`EvalSet`."""

    def __init__(self, group_by: str, policy: Policy) -> None:
        self.group_by = group_by
        self.policy = policy
        self.ids: list[str] = []
        self.tag_ids: dict[tuple[str, ...], int] = {}
        self.group_ids: dict[str, int] = {}
        self.model_ids: dict[str, int] = {}
        self.tag_index = array("i")
        self.inferred = array("b")
        self.group_index = array("i")
        self.in_tokens = array("q")
        self.out_tokens = array("q")
        # outcomes: (row, model column, score, cost) as four columns
        self.o_row, self.o_col = array("q"), array("q")
        self.o_score, self.o_cost = array("d"), array("d")
        self._valid_tags: dict[tuple[str, ...], tuple[str, ...]] = {}
        # (tag set, inferred) of a row without extra fields -> (tag id, group id, inferred)
        self._kinds: dict[tuple[tuple[str, ...], bool], tuple[int, int, bool]] = {}

    def add(
        self,
        row_id: str,
        tags: Sequence[str] | None,
        messages: Sequence[Any] | None,
        prompt: str | None,
        expected_output_tokens: int | None,
        outcomes: Mapping[str, Mapping[str, Any]],
        extra: Mapping[str, Any],
    ) -> None:
        """Count one row in (its fields already checked as a :class:`WorkloadRow`'s):
        ``messages``, or ``prompt`` for a single user message; ``outcomes`` maps models to
        ``score`` and ``cost_usd``."""
        try:
            given = self._given(tags) if tags else ()
            if given and prompt is not None:  # the size alone is needed
                input_tokens = prompt_tokens(prompt)
            else:
                features = message_features(
                    [{"role": "user", "content": prompt}] if messages is None else messages,
                    scan=not given,
                )
                input_tokens = features.input_tokens
        except (UnknownTagError, InvalidRequestError) as exc:
            raise InvalidRequestError(f"row {row_id!r}: {exc}") from None
        policy = self.policy
        found = given or infer_tags(
            features, cjk_share=policy.cjk_share, long_context_tokens=policy.long_context_tokens
        )
        kind = self._kinds.get((found, not given)) if not extra else None
        if kind is None:
            group = _group(row_id, extra, found, self.group_by)
            kind = (
                self.tag_ids.setdefault(found, len(self.tag_ids)),
                self.group_ids.setdefault(group, len(self.group_ids)),
                not given,
            )
            if not extra:
                self._kinds[found, not given] = kind
        n = len(self.ids)
        self.ids.append(row_id)
        self.tag_index.append(kind[0])
        self.group_index.append(kind[1])
        self.inferred.append(kind[2])
        self.in_tokens.append(input_tokens)
        self.out_tokens.append(expected_output_tokens or 0)
        if outcomes:
            model_ids = self.model_ids
            for model, outcome in outcomes.items():
                col = model_ids.get(model)
                if col is None:
                    col = model_ids[model] = len(model_ids)
                cost = outcome.get("cost_usd")
                self.o_row.append(n)
                self.o_col.append(col)
                self.o_score.append(outcome["score"])
                self.o_cost.append(math.nan if cost is None else cost)

    def _given(self, tags: Sequence[str]) -> tuple[str, ...]:
        key = tuple(tags)
        valid = self._valid_tags.get(key)
        if valid is None:
            valid = self._valid_tags[key] = validate_tags(key)
        return valid

    def build(self) -> EvalSet:
        if not self.ids:
            raise InvalidRequestError("the dataset has no rows")
        shape = (len(self.ids), len(self.model_ids))
        scores, costs = np.full(shape, np.nan), np.full(shape, np.nan)
        if self.o_row:
            at = (np.frombuffer(self.o_row, dtype=np.int64), np.frombuffer(self.o_col, np.int64))
            scores[at] = np.frombuffer(self.o_score, dtype=np.float64)
            costs[at] = np.frombuffer(self.o_cost, dtype=np.float64)
        return EvalSet(
            ids=tuple(self.ids),
            tag_sets=tuple(self.tag_ids),
            tag_index=np.array(self.tag_index, dtype=np.int32),
            inferred=np.array(self.inferred, dtype=bool),
            group_names=tuple(self.group_ids),
            group_index=np.array(self.group_index, dtype=np.int32),
            input_tokens=np.array(self.in_tokens, dtype=np.int64),
            output_tokens=np.array(self.out_tokens, dtype=np.int64),
            models=tuple(self.model_ids),
            scores=scores,
            costs=costs,
            inference=(self.policy.cjk_share, self.policy.long_context_tokens),
        )


def _group(row_id: str, extra: Mapping[str, Any], tags: Sequence[str], group_by: str) -> str:
    if group_by == GROUP_TAG:
        return primary_tag(tags)
    if group_by == GROUP_AUTO:
        category = extra.get("category")
        return category if isinstance(category, str) and category else primary_tag(tags)
    value = extra.get(group_by)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"row {row_id!r} has no string field {group_by!r} to group by; "
            f"use --group-by {GROUP_AUTO} or {GROUP_TAG}, or a field every row carries"
        )
    return value


def _loads() -> Callable[[bytes], Any]:
    """orjson's parser when installed (several times faster), else the standard one."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def _parse_line(line: bytes, path: Path, number: int) -> Any:
    """One JSONL line's value. Where the fast parser refuses a line (NaN, a huge integer)
    the standard one decides, so a file reads the same with or without orjson."""
    try:
        return _LOADS(line)
    except ValueError:
        pass
    where = f"{path}:{number}"
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"{where}: not valid UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{where}: not valid JSON: {exc.msg}") from None


_LOADS = _loads()
_SPACE = b" \t\r\n\f\v"
_FIELD_NAMES = frozenset(WorkloadRow.model_fields)
_NUMBER = (int, float)


class _FastCheck:
    """Whether parsed JSON is a :class:`WorkloadRow` as it stands, in plain Python.

    True only where validation would accept the row unchanged: exact types, no value to
    coerce. Anything else (an error, a value pydantic would convert) is left to
    ``WorkloadRow`` itself, which then accepts it or raises the one error message.
    """

    def __init__(self) -> None:
        self._extra_ok: dict[str, bool] = {}
        self._tags_ok: dict[tuple[str, ...], bool] = {}

    def __call__(self, data: Any) -> bool:
        if type(data) is not dict:
            return False
        row_id = data.get("id")
        if type(row_id) is not str or not row_id:
            return False
        prompt, messages = data.get("prompt"), data.get("messages")
        if messages is None:
            if type(prompt) is not str:
                return False
        elif prompt is not None or type(messages) is not list or not messages:
            return False
        elif not all(type(m) is dict for m in messages):
            return False
        tags = data.get("tags")
        if tags is not None and not self._tags(tags):
            return False
        size = data.get("expected_output_tokens")
        if size is not None and (type(size) is not int or size <= 0):
            return False
        for name in ("reference", "grader"):
            value = data.get(name)
            if value is not None and type(value) is not str:
                return False
        outcomes = data.get("outcomes")
        if outcomes is not None:
            if type(outcomes) is not dict:
                return False
            for outcome in outcomes.values():
                if type(outcome) is not dict:
                    return False
                score: Any = outcome.get("score")
                cost: Any = outcome.get("cost_usd")
                if type(score) not in _NUMBER or not 0 <= score <= 1:
                    return False
                if cost is not None and (type(cost) not in _NUMBER or not cost >= 0):
                    return False
        return data.keys() <= _FIELD_NAMES or all(
            self._extra(key) for key in data.keys() - _FIELD_NAMES
        )

    def extra(self, data: dict[str, Any]) -> Mapping[str, Any]:
        """The row's fields beyond the schema's (``category``, ...)."""
        if data.keys() <= _FIELD_NAMES:
            return {}
        return {k: v for k, v in data.items() if k not in _FIELD_NAMES}

    def _tags(self, tags: Any) -> bool:
        if type(tags) is not list:
            return False
        key = tuple(tags)
        ok = self._tags_ok.get(key)
        if ok is None:
            ok = all(type(t) is str and t in VOCABULARY for t in key)
            self._tags_ok[key] = ok
        return ok

    def _extra(self, key: str) -> bool:
        """An extra field passes unless its name is close to a schema field's (a typo)."""
        ok = self._extra_ok.get(key)
        if ok is None:
            ok = self._extra_ok[key] = not get_close_matches(
                key, tuple(WorkloadRow.model_fields), n=1, cutoff=0.75
            )
        return ok


def load_rows(path: str | Path | None) -> list[WorkloadRow]:
    """Rows of a JSONL dataset, or the bundled sample workload when ``path`` is None."""
    return sample_rows() if path is None else list(read_rows(path))


def write_rows(rows: Iterable[dict[str, Any] | WorkloadRow], path: str | Path) -> int:
    """Write rows as JSONL (UTF-8, one object a line); returns the number written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in rows:
            data = row.model_dump(exclude_none=True) if isinstance(row, WorkloadRow) else row
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def benchmark_of(tags: Sequence[str]) -> str:
    """The benchmark that scores a call with these tags (its primary tag's)."""
    return VOCABULARY[primary_tag(tags)].benchmark


def validated(rows: Iterable[dict[str, Any]], origin: str) -> list[WorkloadRow]:
    """Workload rows from plain dicts; a bad one raises naming ``origin`` and the row."""
    out = []
    for i, data in enumerate(rows):
        try:
            out.append(WorkloadRow.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidRequestError(f"{origin}: row {i}: {problems}") from None
    return out
