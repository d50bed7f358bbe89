"""Evaluation datasets: workload rows held as columns, ready for vectorised replay.

A dataset is JSONL rows in the workload schema (:mod:`routedllm.workload`). Each row's
tags, size and outcomes are read once, here; replay then works on numpy arrays, so a
million rows replay in seconds. Tags a row does not give are inferred from its messages
with the inference thresholds of ``inference`` (default: :class:`~routedllm.core.decision.Policy`
defaults).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError, UnknownTagError
from routedllm.core.tags import VOCABULARY, infer_tags, message_features, primary_tag, validate_tags
from routedllm.workload import WorkloadRow, read_rows, sample_rows

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
        policy = inference or Policy()
        ids: list[str] = []
        tag_ids: dict[tuple[str, ...], int] = {}
        group_ids: dict[str, int] = {}
        model_ids: dict[str, int] = {}
        tag_index: list[int] = []
        inferred: list[bool] = []
        group_index: list[int] = []
        in_tokens: list[int] = []
        out_tokens: list[int] = []
        outcomes: list[tuple[int, int, float, float]] = []  # (row, model, score, cost)
        seen: set[str] = set()
        for n, row in enumerate(rows):
            if row.id in seen:
                raise InvalidRequestError(f"row id {row.id!r} appears twice in the dataset")
            seen.add(row.id)
            try:
                given = validate_tags(row.tags) if row.tags else ()
                features = message_features(row.chat_messages(), scan=not given)
            except (UnknownTagError, InvalidRequestError) as exc:
                raise InvalidRequestError(f"row {row.id!r}: {exc}") from None
            tags = given or infer_tags(
                features, cjk_share=policy.cjk_share, long_context_tokens=policy.long_context_tokens
            )
            ids.append(row.id)
            tag_index.append(tag_ids.setdefault(tags, len(tag_ids)))
            inferred.append(not given)
            group = _group(row, tags, group_by)
            group_index.append(group_ids.setdefault(group, len(group_ids)))
            in_tokens.append(features.input_tokens)
            out_tokens.append(row.expected_output_tokens or 0)
            for model, outcome in (row.outcomes or {}).items():
                col = model_ids.setdefault(model, len(model_ids))
                cost = np.nan if outcome.cost_usd is None else outcome.cost_usd
                outcomes.append((n, col, outcome.score, cost))
        if not ids:
            raise InvalidRequestError("the dataset has no rows")
        scores = np.full((len(ids), len(model_ids)), np.nan)
        costs = np.full((len(ids), len(model_ids)), np.nan)
        if outcomes:
            r, c, s, k = (np.asarray(v) for v in zip(*outcomes, strict=True))
            scores[r.astype(np.int64), c.astype(np.int64)] = s
            costs[r.astype(np.int64), c.astype(np.int64)] = k
        return cls(
            ids=tuple(ids),
            tag_sets=tuple(tag_ids),
            tag_index=np.asarray(tag_index, dtype=np.int32),
            inferred=np.asarray(inferred, dtype=bool),
            group_names=tuple(group_ids),
            group_index=np.asarray(group_index, dtype=np.int32),
            input_tokens=np.asarray(in_tokens, dtype=np.int64),
            output_tokens=np.asarray(out_tokens, dtype=np.int64),
            models=tuple(model_ids),
            scores=scores,
            costs=costs,
            inference=(policy.cjk_share, policy.long_context_tokens),
        )


def _group(row: WorkloadRow, tags: Sequence[str], group_by: str) -> str:
    extra = row.model_extra or {}
    if group_by == GROUP_TAG:
        return primary_tag(tags)
    if group_by == GROUP_AUTO:
        category = extra.get("category")
        return category if isinstance(category, str) and category else primary_tag(tags)
    value = extra.get(group_by)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"row {row.id!r} has no string field {group_by!r} to group by; "
            f"use --group-by {GROUP_AUTO} or {GROUP_TAG}, or a field every row carries"
        )
    return value


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
