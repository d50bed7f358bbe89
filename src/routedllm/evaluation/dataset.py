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
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from itertools import chain, islice, repeat
from operator import itemgetter
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
from routedllm.workload import (
    MAX_OUTPUT_TOKENS,
    MAX_ROW_BYTES,
    WorkloadRow,
    decode_line,
    open_workload,
    parse_line,
    read_rows,
    row_of,
    sample_rows,
)

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
        known = self.memo.get("has_outcomes")
        if known is None:
            known = bool(self.models) and bool(np.isfinite(self.scores).any())
            self.memo["has_outcomes"] = known
        return known

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
            ids=tuple(map(self.ids.__getitem__, rows.tolist())),
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
                columns.given(row.id, row.tags),
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
        read_rows` checks them, with the same errors (file, line, field), except that a
        repeated id is reported once the whole file is read (read_rows stops at it). Rows
        of the common shapes are checked in plain Python, any other goes through
        :class:`WorkloadRow`. ``progress`` wraps the file's lines (a progress bar)."""
        path = Path(path)
        columns = _Columns(group_by, inference or Policy())
        blanks = array("q")  # for each blank line, the number of rows before it
        check, take, loads, ids = _FastCheck(), columns.take, _LOADS, columns.ids

        def one(line: bytes, number: int) -> None:
            """Count in one line, or raise naming it."""
            if line[:1] in _SPACE and not line.strip():
                blanks.append(len(ids))
                return
            if len(line) > MAX_ROW_BYTES:
                raise InvalidRequestError(
                    f"{path}:{number}: a row longer than {MAX_ROW_BYTES // 2**20} MiB"
                )
            try:
                data = loads(line)
            except ValueError:
                data = _parse_line(line, path, number)
            try:
                counted(data, number)
            except _Named:
                raise
            except InvalidRequestError as exc:  # a row's content, checked past its schema
                raise InvalidRequestError(f"{path}:{number}: {exc}") from None

        def counted(data: Any, number: int) -> None:
            """Count in one parsed line (a message or group problem raises unnamed)."""
            if take(data):
                return
            args = check(data)
            if args is None:
                row = _row(data, f"{path}:{number}")
                outcome_rows = row.outcomes or {}
                args = (
                    row.id,
                    columns.given(row.id, row.tags),
                    row.messages,
                    row.prompt,
                    row.expected_output_tokens,
                    {
                        m: {"score": o.score, "cost_usd": o.cost_usd}
                        for m, o in outcome_rows.items()
                    },
                    row.model_extra or {},
                )
            columns.add(*args)

        # as read_rows opens it: a regular file, gzip read decompressed; 1 MiB reads
        with open_workload(path, 1 << 20) as handle:
            lines = iter(handle if progress is None else progress(handle))
            done = 0  # lines read before this block
            # A block of lines is parsed and checked a column at a time (take_block); a
            # block with anything else in it (a blank or bad line, a row of another shape,
            # tags not seen yet) is read again a line at a time, for the same errors.
            while block := list(islice(lines, _BLOCK)):
                if not columns.take_block(block, loads):
                    for number, line in enumerate(block, done + 1):
                        one(line, number)
                done += len(block)
        # Repeated ids are looked for once all rows are read, as repeated hashes in a sorted
        # array (a set of a million ids takes 4x the memory, fresh pages that cost more
        # than the sort); only where two ids share a hash are the ids compared. The error
        # is read_rows'.
        hashes = np.fromiter(map(hash, ids), np.int64, len(ids))
        hashes.sort()
        if (hashes[1:] == hashes[:-1]).any() and len(set(ids)) != len(ids):
            first: dict[str, int] = {}
            for index, row_id in enumerate(ids):
                number = index + 1 + bisect_right(blanks, index)  # its line's number
                if first.setdefault(row_id, number) != number:
                    raise InvalidRequestError(
                        f"{path}:{number}: row id {row_id!r} repeats line {first[row_id]}"
                    )
        if not ids:
            raise InvalidRequestError(f"{path}: no rows (the file is empty or blank)")
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
        # each row's kind: an id in kind_ids, (tag set id, group id, inferred)
        self.kind_ids: dict[tuple[int, int, int], int] = {}
        self.kind_index = array("i")
        self.in_tokens = array("q")
        self.out_tokens = array("q")
        # outcomes: (row, model column, score, cost) as four columns
        self.o_row, self.o_col = array("i"), array("i")
        self.o_score, self.o_cost = array("d"), array("d")
        self._valid_tags: dict[tuple[str, ...], tuple[str, ...]] = {}
        # a row without extra fields: its tags, given or inferred -> its kind
        self._kinds: tuple[dict[tuple[str, ...], int], ...] = ({}, {})
        # rows of the common shape (see take): their tags as written -> their kind
        self._tag_kinds: dict[tuple[Any, ...], int] = {}

    def given(self, row_id: str, tags: Sequence[str] | None) -> tuple[str, ...]:
        """A row's given tags, checked (``()`` for none: they are inferred)."""
        if not tags:
            return ()
        key = tuple(tags)
        valid = self._valid_tags.get(key)
        if valid is None:
            try:
                valid = self._valid_tags[key] = validate_tags(key)
            except UnknownTagError as exc:
                raise InvalidRequestError(f"row {row_id!r}: {exc}") from None
        return valid

    def take(self, data: Any) -> bool:
        """Count in parsed JSON that is a :class:`WorkloadRow` of the common shape as it
        stands (a prompt, given tags, no extra field), checked in plain Python, and True;
        False, with nothing counted, for anything else (:meth:`add` then takes it)."""
        if type(data) is not dict or not data.keys() <= _FIELD_NAMES:
            return False
        get = data.get
        row_id, prompt, tags = get("id"), get("prompt"), get("tags")
        if (
            type(row_id) is not str
            or type(prompt) is not str
            or type(tags) is not list
            or get("messages") is not None
            or not row_id.strip()
            or not row_id.isprintable()
        ):
            return False
        key = tuple(tags)
        try:
            kind = self._tag_kinds.get(key)
        except TypeError:  # a list or object among the tags
            return False
        if kind is None and (not key or not all(type(t) is str and t in VOCABULARY for t in key)):
            return False
        size = get("expected_output_tokens")
        if size is not None and (type(size) is not int or not 0 < size <= MAX_OUTPUT_TOKENS):
            return False
        reference, grader = get("reference"), get("grader")
        if (reference is not None and type(reference) is not str) or (
            grader is not None and type(grader) is not str
        ):
            return False
        n = len(self.ids)
        outcomes = get("outcomes")
        if outcomes:  # counted now, taken back if one is not as it stands
            if type(outcomes) is not dict:
                return False
            model_ids, o_score, o_cost = self.model_ids, self.o_score, self.o_cost
            before = len(o_score)
            for model, outcome in outcomes.items():
                if type(outcome) is not dict:
                    break
                score, cost = outcome.get("score"), outcome.get("cost_usd")
                if (type(score) is not float and type(score) is not int) or not 0 <= score <= 1:
                    break
                if cost is None:
                    cost = math.nan
                elif (type(cost) is not float and (type(cost) is not int or cost >= 2**63)) or (
                    not 0 <= cost < math.inf
                ):
                    break
                col = model_ids.get(model)
                if col is None:
                    col = model_ids[model] = len(model_ids)
                o_score.append(score)
                o_cost.append(cost)
                self.o_col.append(col)
            else:
                self.o_row.extend(repeat(n, len(o_score) - before))
                outcomes = None
            if outcomes is not None:
                del o_score[before:], o_cost[before:], self.o_col[before:]
                return False
        elif outcomes is not None and outcomes != {}:
            return False
        if kind is None:  # tags not seen yet; after the checks, as add() groups a good row
            found = validate_tags(key)
            kind = self._kinds[False].get(found)
            if kind is None:
                kind = self._kinds[False][found] = self._kind(
                    found, False, _group(row_id, {}, found, self.group_by)
                )
            self._tag_kinds[key] = kind
        self.ids.append(row_id)
        self.kind_index.append(kind)
        chars = len(prompt)  # prompt_tokens(prompt), inlined
        if prompt.isascii():
            self.in_tokens.append((chars + 3) // 4 + 4)
        else:
            self.in_tokens.append(prompt_tokens(prompt))
        self.out_tokens.append(size or 0)
        return True

    def take_block(self, lines: list[bytes], loads: Callable[[bytes], Any]) -> bool:
        """:meth:`take` for a block of JSONL lines at once, a column at a time: True with
        every row counted when each line is a row of the common shape with tags seen
        before; False, with nothing counted, otherwise (the lines are then read one by one).

        Each check is one pass over a column in C (``map``, ``set``, numpy), and accepts
        exactly what :meth:`take` accepts, so the columns come out the same either way."""
        try:
            if max(map(len, lines)) > MAX_ROW_BYTES:
                return False
            rows = list(map(loads, lines))  # a blank line or bad JSON raises ValueError
            # every key of every row (a row that is not an object fails at _ID below)
            fields = set(chain.from_iterable(rows))
            if not fields <= _BLOCK_FIELDS:
                return False
            n = len(rows)
            ids = list(map(_ID, rows))  # KeyError: no id; TypeError: not an object
            if not all(map(str.isprintable, ids)) or not all(map(str.strip, ids)):
                return False  # TypeError above where an id is not a string
            tags = list(map(_TAGS, rows))
            if set(map(type, tags)) != _LIST:
                return False
            # TypeError where a tag is a list or an object
            kinds: list[Any] = list(map(self._tag_kinds.get, map(tuple, tags)))
            if None in kinds:  # tags not seen yet, or not tags: take() decides
                return False
            prompts = list(map(_PROMPT, rows))
            if all(map(str.isascii, prompts)):  # prompt_tokens(), a block at a time
                chars = np.fromiter(map(len, prompts), np.int64, n)
                in_tokens = ((chars + 19) // 4).tobytes()  # (chars + 3) // 4 + 4
            else:
                in_tokens = np.array(list(map(prompt_tokens, prompts)), np.int64).tobytes()
            out_tokens = bytes(8 * n)
            if "expected_output_tokens" in fields:
                sizes = list(map(dict.get, rows, repeat("expected_output_tokens")))
                if not set(map(type, sizes)) <= _INT_OR_NONE or not all(
                    0 < size <= MAX_OUTPUT_TOKENS for size in sizes if size is not None
                ):
                    return False
                out_tokens = np.array([size or 0 for size in sizes], np.int64).tobytes()
            for name in ("reference", "grader"):
                if name in fields and not set(map(type, map(dict.get, rows, repeat(name)))) <= (
                    _STR_OR_NONE
                ):
                    return False
            outcomes = None
            if "outcomes" in fields and (outcomes := _block_outcomes(rows)) is None:
                return False
        except (TypeError, ValueError, KeyError, OverflowError):
            return False
        start = len(self.ids)
        if outcomes is not None:
            counts, models, scores, costs = outcomes
            model_ids = self.model_ids
            cols: list[Any] = list(map(model_ids.get, models))
            if None in cols:  # models not seen yet: numbered in the order rows give them
                for model in models:
                    model_ids.setdefault(model, len(model_ids))
                cols = list(map(model_ids.__getitem__, models))
            at = np.repeat(np.arange(start, start + n, dtype=np.int32), counts)
            self.o_row.frombytes(at.tobytes())
            self.o_col.extend(cols)
            self.o_score.frombytes(scores)
            self.o_cost.frombytes(costs)
        self.ids.extend(ids)
        self.kind_index.extend(kinds)
        self.in_tokens.frombytes(in_tokens)
        self.out_tokens.frombytes(out_tokens)
        return True

    def add(
        self,
        row_id: str,
        given: tuple[str, ...],
        messages: Sequence[Any] | None,
        prompt: str | None,
        expected_output_tokens: int | None,
        outcomes: Mapping[str, Mapping[str, Any]],
        extra: Mapping[str, Any],
    ) -> None:
        """Count one row in (its fields already checked as a :class:`WorkloadRow`'s):
        ``given`` tags (see :meth:`given`), ``messages`` or ``prompt`` for a single user
        message; ``outcomes`` maps models to ``score`` and ``cost_usd``."""
        try:
            if given and prompt is not None:  # the size alone is needed
                input_tokens = prompt_tokens(prompt)
            else:
                features = message_features(
                    [{"role": "user", "content": prompt}] if messages is None else messages,
                    scan=not given,
                )
                input_tokens = features.input_tokens
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"row {row_id!r}: {exc}") from None
        policy = self.policy
        found = given or infer_tags(
            features, cjk_share=policy.cjk_share, long_context_tokens=policy.long_context_tokens
        )
        kinds = self._kinds[not given]
        kind = None if extra else kinds.get(found)
        if kind is None:
            kind = self._kind(found, not given, _group(row_id, extra, found, self.group_by))
            if not extra:
                kinds[found] = kind
        n = len(self.ids)
        self.ids.append(row_id)
        self.kind_index.append(kind)
        self.in_tokens.append(input_tokens)
        self.out_tokens.append(expected_output_tokens or 0)
        if outcomes:
            model_ids = self.model_ids
            o_row, o_col, o_score, o_cost = self.o_row, self.o_col, self.o_score, self.o_cost
            for model, outcome in outcomes.items():
                col = model_ids.get(model)
                if col is None:
                    col = model_ids[model] = len(model_ids)
                cost = outcome.get("cost_usd")
                o_row.append(n)
                o_col.append(col)
                o_score.append(outcome["score"])
                o_cost.append(math.nan if cost is None else cost)

    def _kind(self, tags: tuple[str, ...], inferred: bool, group: str) -> int:
        """The id of a row kind: (tag set id, group id, inferred)."""
        kind = (
            self.tag_ids.setdefault(tags, len(self.tag_ids)),
            self.group_ids.setdefault(group, len(self.group_ids)),
            int(inferred),
        )
        return self.kind_ids.setdefault(kind, len(self.kind_ids))

    def build(self) -> EvalSet:
        if not self.ids:
            raise InvalidRequestError("the dataset has no rows")
        shape = (len(self.ids), len(self.model_ids))
        scores, costs = np.full(shape, np.nan), np.full(shape, np.nan)
        if self.o_row:
            at = (np.frombuffer(self.o_row, dtype=np.int32), np.frombuffer(self.o_col, np.int32))
            scores[at] = np.frombuffer(self.o_score, dtype=np.float64)
            costs[at] = np.frombuffer(self.o_cost, dtype=np.float64)
        kinds = np.array(list(self.kind_ids), dtype=np.int32).reshape(-1, 3)
        kind_index = np.frombuffer(self.kind_index, dtype=np.int32)
        return EvalSet(
            ids=tuple(self.ids),
            tag_sets=tuple(self.tag_ids),
            tag_index=kinds[kind_index, 0],
            inferred=kinds[kind_index, 2].astype(bool),
            group_names=tuple(self.group_ids),
            group_index=kinds[kind_index, 1],
            input_tokens=np.frombuffer(self.in_tokens, dtype=np.int64),  # no copy
            output_tokens=np.frombuffer(self.out_tokens, dtype=np.int64),
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
        if category is not None and not isinstance(category, str):
            raise InvalidRequestError(
                f"row {row_id!r}: field category: give a string (the row's calibration "
                f"group), got {type(category).__name__}"
            )
        return category or primary_tag(tags)
    value = extra.get(group_by)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"row {row_id!r} has no string field {group_by!r} to group by; "
            f"use --group-by {GROUP_AUTO} or {GROUP_TAG}, or a field every row carries"
        )
    return value


def _block_outcomes(rows: list[dict[str, Any]]) -> tuple[list[int], list[str], bytes, bytes] | None:
    """A block's outcomes as columns: outcomes per row, then model, score and cost (float64
    bytes, NaN for no cost) per outcome, rows in order; None where one is not as
    :meth:`_Columns.take` takes it. Raises TypeError, KeyError or OverflowError for some."""
    given: list[Any] = list(map(dict.get, rows, repeat("outcomes")))
    if None in given:
        given = [{} if outcomes is None else outcomes for outcomes in given]
    # TypeError where outcomes or an outcome is not an object, KeyError with no score
    outcomes = list(chain.from_iterable(map(dict.values, given)))
    scores = list(map(_SCORE, outcomes))
    costs = list(map(dict.get, outcomes, repeat("cost_usd")))
    if not set(map(type, scores)) <= _NUMBER:
        return None
    score = np.array(scores, np.float64)  # OverflowError past float's range
    if not ((score >= 0) & (score <= 1)).all():  # NaN (json.loads reads it) refused too
        return None
    cost_kinds = set(map(type, costs))
    if not cost_kinds <= _NUMBER_OR_NONE:
        return None
    if int in cost_kinds and not all(cost < 2**63 for cost in costs if type(cost) is int):
        return None
    missing = costs.count(None) if type(None) in cost_kinds else 0
    if missing:
        costs = [math.nan if cost is None else cost for cost in costs]
    cost = np.array(costs, np.float64)
    # the costs out of [0, inf) are the missing ones (NaN) alone: no NaN nor inf given
    if np.count_nonzero(~((cost >= 0) & (cost < math.inf))) != missing:
        return None
    return (
        list(map(len, given)),
        list(chain.from_iterable(given)),
        score.tobytes(),
        cost.tobytes(),
    )


class _Named(InvalidRequestError):
    """A row error that already names its file and line (not prefixed again)."""


def _row(data: Any, where: str) -> WorkloadRow:
    """:func:`~routedllm.workload.row_of`, its error marked as naming ``where``."""
    try:
        return row_of(data, where)
    except InvalidRequestError as exc:
        raise _Named(str(exc)) from None


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
    return parse_line(decode_line(line, where, first=number == 1), where)


_LOADS = _loads()
_SPACE = b" \t\r\n\f\v"
_BLOCK = 128  # lines a block: few enough that its parsed rows stay in the CPU cache
_BLOCK_FIELDS = frozenset(WorkloadRow.model_fields) - {"messages"}
_ID, _PROMPT, _TAGS = itemgetter("id"), itemgetter("prompt"), itemgetter("tags")
_SCORE = itemgetter("score")
_LIST = {list}
_DICT_OR_NONE = {dict, type(None)}
_INT_OR_NONE = {int, type(None)}
_STR_OR_NONE = {str, type(None)}
_NUMBER = {float, int}
_NUMBER_OR_NONE = {float, int, type(None)}
_FIELD_NAMES = frozenset(WorkloadRow.model_fields)


def _good_outcomes(outcomes: Iterable[Any]) -> bool:
    """Whether parsed outcomes are :class:`~routedllm.workload.Outcome` values as they stand:
    a score in [0, 1] and a finite cost >= 0 or none, of exact number types."""
    for outcome in outcomes:
        if type(outcome) is not dict:
            return False
        score: Any = outcome.get("score")
        if (type(score) is not float and type(score) is not int) or not 0 <= score <= 1:
            return False
        cost: Any = outcome.get("cost_usd")
        if cost is not None and (
            (type(cost) is not float and (type(cost) is not int or cost >= 2**63))
            or not 0 <= cost < math.inf  # NaN and 1e999 (read as inf by json) refused
        ):
            return False
    return True


class _FastCheck:
    """The arguments of :meth:`_Columns.add` for parsed JSON that is a :class:`WorkloadRow`
    as it stands, checked in plain Python; None for anything else.

    Only where validation would accept the row unchanged: exact types, no value to coerce.
    Anything else (an error, a value pydantic would convert) is left to ``WorkloadRow``
    itself, which then accepts it or raises the one error message.
    """

    def __init__(self) -> None:
        self._extra_ok: dict[str, bool] = {}
        self._tags: dict[tuple[Any, ...], tuple[str, ...] | None] = {}

    def __call__(self, data: Any) -> tuple[Any, ...] | None:
        if type(data) is not dict:
            return None
        get = data.get
        row_id = get("id")
        if type(row_id) is not str or not row_id.strip() or not row_id.isprintable():
            return None
        prompt, messages = get("prompt"), get("messages")
        if messages is None:
            if type(prompt) is not str:
                return None
        elif prompt is not None or type(messages) is not list or not messages:
            return None
        elif not all(type(m) is dict for m in messages):
            return None
        tags = get("tags")
        given: tuple[str, ...] | None = ()
        if tags:
            given = self._given(tags) if type(tags) is list else None
            if given is None:
                return None
        elif tags is not None and type(tags) is not list:
            return None
        size = get("expected_output_tokens")
        if size is not None and (type(size) is not int or not 0 < size <= MAX_OUTPUT_TOKENS):
            return None
        reference, grader = get("reference"), get("grader")
        if (reference is not None and type(reference) is not str) or (
            grader is not None and type(grader) is not str
        ):
            return None
        outcomes = get("outcomes")
        if outcomes is not None:
            if type(outcomes) is not dict or not _good_outcomes(outcomes.values()):
                return None
        extra: Mapping[str, Any] = {}
        if not data.keys() <= _FIELD_NAMES:
            extra = {k: v for k, v in data.items() if k not in _FIELD_NAMES}
            if not all(self._extra(key) for key in extra):
                return None
        return row_id, given, messages, prompt, size, outcomes or {}, extra

    def _given(self, tags: list[Any]) -> tuple[str, ...] | None:
        """The tags checked and deduplicated; None when one is not a known tag name."""
        key = tuple(tags)
        if not all(type(t) is str for t in key):  # a list or object is not hashed
            return None
        if key not in self._tags:
            ok = all(t in VOCABULARY for t in key)
            self._tags[key] = validate_tags(key) if ok else None
        return self._tags[key]

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
