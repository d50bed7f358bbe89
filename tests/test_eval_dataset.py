"""Evaluation datasets: rows into columns, and RouteLLM's published tables into rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.dataset import EvalSet, load_rows, validated, write_rows
from routedllm.evaluation.published import routellm_rows
from routedllm.workload import WorkloadRow, read_rows

DATA = Path(__file__).parent / "data"
ROUTELLM = DATA / "routellm"


def rows(*dicts: dict) -> list[WorkloadRow]:
    return [WorkloadRow.model_validate(d) for d in dicts]


def test_tags_given_or_inferred_and_outcomes_as_matrix() -> None:
    data = EvalSet.from_rows(
        rows(
            {
                "id": "a",
                "prompt": "Refactor this:\n```python\nx=1\n```",
                "outcomes": {"m1": {"score": 1.0, "cost_usd": 0.002}, "m2": {"score": 0.25}},
            },
            {
                "id": "b",
                "prompt": "hello",
                "tags": ["extraction"],
                "expected_output_tokens": 40,
                "outcomes": {"m2": {"score": 0.5, "cost_usd": 0.001}},
            },
        )
    )
    assert data.tag_sets[data.tag_index[0]] == ("code",) and data.inferred.tolist() == [True, False]
    assert data.tag_sets[data.tag_index[1]] == ("extraction",)
    assert data.output_tokens.tolist() == [0, 40]
    assert data.models == ("m1", "m2")
    assert np.isnan(data.scores[1, 0]) and data.scores[0, 1] == 0.25
    assert np.isnan(data.costs[0, 1]) and data.costs[1, 1] == 0.001
    assert data.has_outcomes


def test_groups_auto_tag_and_field() -> None:
    source = rows(
        {"id": "a", "prompt": "x", "tags": ["general"], "category": "law", "topic": "t1"},
        {"id": "b", "prompt": "y", "tags": ["code"], "topic": "t2"},
    )
    assert EvalSet.from_rows(source).group_names == ("law", "code")
    assert EvalSet.from_rows(source, group_by="tag").group_names == ("general", "code")
    assert EvalSet.from_rows(source, group_by="topic").group_names == ("t1", "t2")
    with pytest.raises(InvalidRequestError, match="row 'b' has no string field 'category'"):
        EvalSet.from_rows(source, group_by="category")


def test_bad_rows_are_named() -> None:
    with pytest.raises(InvalidRequestError, match="table: row 0: .*unknown tag 'poems'"):
        validated([{"id": "a", "prompt": "x", "tags": ["poems"]}], "table")
    with pytest.raises(InvalidRequestError, match="'a' appears twice"):
        EvalSet.from_rows(rows({"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}))
    with pytest.raises(InvalidRequestError, match="no rows"):
        EvalSet.from_rows([])
    with pytest.raises(InvalidRequestError, match="table: row 0"):
        validated([{"id": "x"}], "table")


def test_subset_keeps_rows_in_order() -> None:
    data = EvalSet.from_rows(read_rows(DATA / "eval_catalog_outcomes.jsonl"))
    part = data.subset(np.array([3, 0]))
    assert part.ids == ("general-2", "code-1")
    assert part.scores[1].tolist() == data.scores[0].tolist()


def test_load_rows_defaults_to_the_sample_and_write_round_trips(tmp_path: Path) -> None:
    sample = load_rows(None)
    assert len(sample) > 10
    path = tmp_path / "rows.jsonl"
    assert write_rows(sample[:3], path) == 3
    assert [r.id for r in read_rows(path)] == [r.id for r in sample[:3]]


def test_routellm_mmlu_rows_drop_contaminated_prompts() -> None:
    out = routellm_rows(ROUTELLM, "mmlu")
    assert [r["id"] for r in out] == [
        "mmlu-anatomy-0",
        "mmlu-anatomy-1",
        "mmlu-virology-0",
        "mmlu-virology-1",
    ]
    first = out[1]
    assert first["category"] == "anatomy" and first["tags"] == ["general"]
    assert first["outcomes"] == {
        "org/weak-y": {"score": 0.0, "cost_usd": None},
        "strong-x": {"score": 1.0, "cost_usd": None},
    }
    assert len(routellm_rows(ROUTELLM, "mmlu", drop_contaminated=False)) == 5
    # the folder can be given at any level
    assert len(routellm_rows(ROUTELLM / "evals", "mmlu")) == 4


def test_routellm_gsm8k_ignores_response_columns() -> None:
    out = routellm_rows(ROUTELLM, "gsm8k")
    assert len(out) == 2 and set(out[1]["outcomes"]) == {"org/weak-y", "strong-x"}
    assert out[1]["outcomes"]["strong-x"]["score"] == 1.0 and out[1]["category"] == "gsm8k"


def test_routellm_mt_bench_averages_turns_and_maps_categories() -> None:
    out = {r["id"]: r for r in routellm_rows(ROUTELLM, "mt-bench")}
    assert set(out) == {"mt-bench-81", "mt-bench-82"}  # 83 has a contaminated second turn
    code = out["mt-bench-82"]
    assert code["tags"] == ["code"] and code["category"] == "coding"
    assert code["outcomes"]["strong-x"]["score"] == pytest.approx(0.95)
    assert code["outcomes"]["org/weak-y"]["score"] == pytest.approx(0.55)
    assert code["prompt"] == code["turns"][0]
    assert out["mt-bench-81"]["tags"] == ["general"]
    rows_ = validated(out.values(), "mt-bench")
    assert all(r.outcomes for r in rows_)


def test_routellm_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no RouteLLM evals folder"):
        routellm_rows(tmp_path, "mmlu")
    with pytest.raises(InvalidRequestError, match="unknown benchmark 'arena'"):
        routellm_rows(ROUTELLM, "arena")
    bad = tmp_path / "evals" / "gsm8k"
    bad.mkdir(parents=True)
    (bad / "gsm8k_responses.csv").write_text("prompt,m\nq,maybe\n")
    with pytest.raises(InvalidRequestError, match="m is 'maybe'"):
        routellm_rows(tmp_path, "gsm8k", drop_contaminated=False)
    with pytest.raises(InvalidRequestError, match="contaminated_prompts.jsonl is missing"):
        routellm_rows(tmp_path, "gsm8k")


def test_converted_rows_validate_as_workload_rows(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.jsonl"
    write_rows(routellm_rows(ROUTELLM, "mmlu"), path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["outcomes"]["strong-x"]["cost_usd"] is None
    assert len(list(read_rows(path))) == 4


def _same(a: EvalSet, b: EvalSet) -> None:
    for name in ("ids", "tag_sets", "group_names", "models", "inference"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("tag_index", "inferred", "group_index", "input_tokens", "output_tokens"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    for name in ("scores", "costs"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


# Rows that the plain-Python check takes, and rows it leaves to WorkloadRow (values pydantic
# converts: an int as text, a bool score, NaN), mixed in one file.
MIXED = [
    {"id": "a", "prompt": "Refactor this:\n```python\nx=1\n```", "category": "law"},
    {"id": "b", "prompt": "hello", "tags": ["extraction", "extraction"], "topic": "t"},
    {"id": "c", "messages": [{"role": "system", "content": "Reply in JSON."}, {"content": "hi"}]},
    {"id": "d", "prompt": "请总结这段文字。" * 30, "expected_output_tokens": 40},
    {"id": "e", "prompt": "x", "tags": ["general"], "outcomes": {"m1": {"score": 1}}},
    {"id": "f", "prompt": "x", "expected_output_tokens": "12", "outcomes": {"m2": {"score": True}}},
    {"id": "g", "prompt": "y", "outcomes": {"m1": {"score": 0.5, "cost_usd": 2e-3, "note": 1}}},
]


def test_from_jsonl_reads_as_from_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) for row in MIXED]
    path.write_text("\n".join(lines[:3]) + "\n  \n" + "\r\n".join(lines[3:]) + "\n", "utf-8")
    for group_by in ("auto", "tag"):
        _same(
            EvalSet.from_jsonl(path, group_by=group_by),
            EvalSet.from_rows(read_rows(path), group_by=group_by),
        )
    for source in (DATA / "eval_catalog_outcomes.jsonl", DATA / "eval_two_model.jsonl"):
        _same(EvalSet.from_jsonl(source), EvalSet.from_rows(read_rows(source)))


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "a", "prompt": "x"',  # not JSON
        '{"id": "a", "prompt": NaN, "tags": ["general"]}',  # JSON to Python, not to orjson
        '{"id": "", "prompt": "x"}',
        '{"id": "a", "prompt": "x", "messages": [{"content": "y"}]}',
        '{"id": "a", "prompt": "x", "tags": ["poems"]}',
        '{"id": "a", "prompt": "x", "outcomes": {"m": {"score": 1.5}}}',
        '{"id": "a", "prompt": "x", "outcomes": {"m": {"score": 1, "cost_usd": -1}}}',
        '{"id": "a", "prompt": "x", "promt": "y"}',
        '{"id": "a", "prompt": "x", "expected_output_tokens": 0}',
        '{"id": "b", "prompt": "x"}\n{"id": "b", "prompt": "y"}',
        '{"id": "b", "prompt": "x"}\n\n  \n{"id": "c", "prompt": "y"}\n{"id": "b", "prompt": "z"}',
        '{"id": "a\\u0007", "prompt": "x", "tags": ["general"]}',  # a control character
        '{"id": "  ", "prompt": "x", "tags": ["general"]}',
        '{"id": "a", "prompt": "x", "tags": ["general"], "expected_output_tokens": 20000000}',
        '{"id": "a", "prompt": "x", "tags": [{}]}',  # not a string (nor hashable)
        '{"id": "a", "prompt": "x", "tags": ["code", ["general"]]}',
        '{"id": "a", "messages": [{"content": "x"}], "tags": [["general"]]}',
        '{"id": "a", "prompt": "x", "tags": ["general"], "outcomes": {"m": {"score": 1, '
        '"cost_usd": 1e999}}}',
    ],
)
def test_from_jsonl_fails_as_read_rows(tmp_path: Path, line: str) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text('{"id": "first", "prompt": "ok"}\n' + line + "\n", "utf-8")
    with pytest.raises(InvalidRequestError) as expected:
        EvalSet.from_rows(read_rows(path))
    with pytest.raises(InvalidRequestError) as got:
        EvalSet.from_jsonl(path)
    assert str(got.value) == str(expected.value)
    assert str(got.value).startswith(f"{path}:")


def test_from_jsonl_refuses_what_read_rows_refuses_before_reading(tmp_path: Path) -> None:
    """A FIFO (it would block), a directory and a deeply nested line: the same errors."""
    import os

    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"id": "a", "prompt": "x", "x": ' + "[" * 5000 + "]" * 5000 + "}\n")
    for path in (fifo, tmp_path, deep):
        with pytest.raises(InvalidRequestError) as expected:
            list(read_rows(path))
        with pytest.raises(InvalidRequestError) as got:
            EvalSet.from_jsonl(path)
        assert str(got.value) == str(expected.value)


def test_from_jsonl_without_orjson_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import routedllm.evaluation.dataset as dataset

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MIXED), "utf-8")
    fast = EvalSet.from_jsonl(path)
    monkeypatch.setattr(dataset, "_LOADS", json.loads)
    _same(EvalSet.from_jsonl(path), fast)


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "a", "prompt": "x", "tags": ["code"]}',  # no field to group by
        '{"id": "a", "prompt": "x", "tags": ["code"], "outcomes": {"m": {"score": 2}}}',
        '{"id": "a", "prompt": "x", "tags": ["code"], "expected_output_tokens": -1}',
    ],
)
def test_from_jsonl_groups_after_checking_as_from_rows(tmp_path: Path, line: str) -> None:
    """A row that is bad and lacks the field to group by: the same first error (from the
    file, it names the line when the rows do not)."""
    path = tmp_path / "w.jsonl"
    path.write_text('{"id": "first", "prompt": "ok", "topic": "t"}\n' + line + "\n", "utf-8")
    with pytest.raises(InvalidRequestError) as expected:
        EvalSet.from_rows(read_rows(path), group_by="topic")
    with pytest.raises(InvalidRequestError) as got:
        EvalSet.from_jsonl(path, group_by="topic")
    where = f"{path}:2: "
    assert str(got.value) == (
        str(expected.value)
        if str(expected.value).startswith(where)
        else where + str(expected.value)
    )


def _common(i: int) -> dict:
    """A row of the common shape: a prompt, given tags, outcomes."""
    outcomes = {"m1": {"score": i % 2, "cost_usd": 0.001 * (i % 3)}, "m2": {"score": 0.5}}
    return {"id": f"r{i}", "prompt": "word " * (i % 40), "tags": ["general"], "outcomes": outcomes}


# One row each, read in the middle of a block of otherwise common rows: rows the block check
# takes as they stand (the first nine), rows it leaves to the row-by-row path (values
# pydantic converts, other shapes, new tags) and rows with an error.
_V = '{"id": "v", "prompt": "x", "tags": ["general"]'
BLOCK_VARIANTS = [
    _V + ', "outcomes": {"m1": {"score": 1, "cost_usd": 0}}}',
    _V + ', "outcomes": {"m3": {"score": 0.25}}}',
    _V + ', "outcomes": {"m1": {"score": 1, "cost_usd": null}}}',
    _V + ', "outcomes": {"m1": {"score": 1, "cost_usd": -0.0, "n": [1]}}}',
    _V + ', "outcomes": {}}',
    _V + ', "outcomes": null}',
    _V + ', "expected_output_tokens": 9}',
    _V + ', "reference": "y", "grader": "exact"}',
    '{"id": "v", "prompt": "请总结这段文字。", "tags": ["general"]}',
    '{"id": "v", "prompt": "x", "tags": ["general", "general"]}',
    '{"id": "v", "prompt": "x", "tags": ["code"], "category": "law"}',
    '{"id": "v", "prompt": "x", "tags": []}',
    '{"id": "v", "prompt": "x", "messages": null, "tags": ["general"]}',
    '{"id": "v", "messages": [{"content": "x"}], "tags": ["general"]}',
    _V + ', "outcomes": {"m1": {"score": true}}}',
    _V + ', "outcomes": {"m1": {"score": "1"}}}',
    _V + ', "expected_output_tokens": 12.0}',
    # errors
    '{"id": "v", "prompt": "x", "tags": {"general": 1}}',
    '{"id": "v", "prompt": "x", "tags": "general"}',
    '{"id": "v", "prompt": "x", "tags": [["general"]]}',
    '{"id": "v", "prompt": "x", "tags": ["poems"]}',
    '{"id": "v", "prompt": 5, "tags": ["general"]}',
    '{"id": 5, "prompt": "x", "tags": ["general"]}',
    '{"id": "v\\u0007", "prompt": "x", "tags": ["general"]}',
    '{"id": " ", "prompt": "x", "tags": ["general"]}',
    '{"prompt": "x", "tags": ["general"]}',
    '["id", "prompt", "tags"]',
    '"id"',
    "",
    '{"id": "v", "prompt": "x"',
    _V + '}, {"id": "w", "prompt": "y", "tags": ["general"]}',
    _V + ', "outcomes": {"m1": {"score": 1.5}}}',
    _V + ', "outcomes": {"m1": {"score": null}}}',
    _V + ', "outcomes": {"m1": {"cost_usd": 0.1}}}',
    _V + ', "outcomes": {"m1": {"score": 1, "cost_usd": -1}}}',
    _V + ', "outcomes": {"m1": {"score": 1, "cost_usd": 1e999}}}',
    _V + ', "outcomes": {"m1": 1}}',
    _V + ', "outcomes": []}',
    _V + ', "expected_output_tokens": 0}',
    _V + ', "reference": 1}',
    _V + ', "promt": "y"}',
    '{"id": "r3", "prompt": "x", "tags": ["general"]}',  # repeats line 4
]


@pytest.mark.parametrize(("variant", "whole"), [(v, i < 9) for i, v in enumerate(BLOCK_VARIANTS)])
def test_from_jsonl_reads_a_block_as_read_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str, whole: bool
) -> None:
    """A row among many of the common shape (read a block of lines at a time): the same
    columns as from_rows, or the same error naming its line, with orjson or without."""
    import routedllm.evaluation.dataset as dataset

    path = tmp_path / "rows.jsonl"
    rows = [json.dumps(_common(i)) for i in range(300)]
    rows[200] = variant  # line 201: the second block, after a block of the same tags
    path.write_text("\n".join(rows) + "\n", "utf-8")
    taken = []
    take_block = dataset._Columns.take_block
    monkeypatch.setattr(
        dataset._Columns,
        "take_block",
        lambda self, lines, loads: taken.append(take_block(self, lines, loads)) or taken[-1],
    )
    try:
        expected = EvalSet.from_rows(read_rows(path))
    except InvalidRequestError as exc:
        for parser in (dataset._LOADS, json.loads):
            monkeypatch.setattr(dataset, "_LOADS", parser)
            with pytest.raises(InvalidRequestError) as got:
                EvalSet.from_jsonl(path)
            assert str(got.value) == str(exc)
            assert str(got.value).startswith(f"{path}:201: ")
        return
    for parser in (dataset._LOADS, json.loads):
        monkeypatch.setattr(dataset, "_LOADS", parser)
        taken.clear()
        _same(EvalSet.from_jsonl(path), expected)
        # the first block has tags not seen yet; the one after the variant is read at once
        assert taken == [False, whole, True]
