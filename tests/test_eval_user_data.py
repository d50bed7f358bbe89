"""`routedllm eval` on rows a user brings: compressed files, gaps in the outcome table,
values that are not what they claim, and errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routedllm.cli import main
from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation import EvalSet
from routedllm.evaluation.calibrate import held_out_masks
from routedllm.evaluation.splits import spread
from routedllm.workload import read_rows


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["eval", "--max-price-age-days", "100000", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def _outcome_rows(n: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "id": f"r{i}",
            "prompt": f"question {i}",
            "category": ("a", "b")[i % 2],
            "outcomes": {
                "strong": {"score": 1.0, "cost_usd": 0.01},
                "weak": {"score": float(i % 3 == 0), "cost_usd": 0.001},
            },
        }
        for i in range(n)
    ]


def test_two_models_are_compared_on_the_rows_that_score_both(capsys, tmp_path: Path) -> None:
    """A row the strong model has no score for is left out, not averaged into the weak
    model's quality alone: here the weak model scores 0 on exactly those rows."""
    rows = _outcome_rows()
    for row in rows[:10]:
        row["outcomes"] = {"weak": {"score": 0.0, "cost_usd": 0.001}}
    path = write(tmp_path / "rows.jsonl", rows)
    code, out, _ = run(capsys, str(path), "--strong", "strong", "--weak", "weak", "--json")
    assert code == 0
    report = json.loads(out)
    held = report["dataset"]["evaluated_rows"]
    assert report["dataset"]["rows"] == 40
    assert report["dataset"]["left_out_rows"] == 10
    assert held + report["dataset"]["train_rows"] == 30
    assert report["two_model"]["rows"] == held
    assert any("10 of 40 rows left out" in note for note in report["notes"])
    # on the 30 rows that score both, the weak model is right on rows 12, 15, ..., 39
    kept = [r for r in rows[10:]]
    data = EvalSet.from_rows(read_rows(write(tmp_path / "kept.jsonl", kept)))
    weak = data.scores[held_out_masks(data, 0.5, [0])[0], data.column("weak")]
    assert report["two_model"]["weak_only"]["quality"] == pytest.approx(weak.mean())
    assert report["two_model"]["strong_only"]["quality"] == 1.0

    code, out, _ = run(capsys, str(path), "--strong", "strong", "--weak", "weak", "--splits", "2")
    assert code == 0
    assert "10 rows left out (no score for both --strong and --weak)" in out.splitlines()[0]


def test_no_row_scoring_both_models_is_an_error(capsys, tmp_path: Path) -> None:
    rows = _outcome_rows(4)
    for i, row in enumerate(rows):
        row["outcomes"] = {("strong", "weak")[i % 2]: {"score": 1.0}}
    path = write(tmp_path / "rows.jsonl", rows)
    code, _, err = run(capsys, str(path), "--strong", "strong", "--weak", "weak")
    assert code == 2
    assert "no row has a score for both strong and weak" in err


def test_spread_counts_splits_without_a_value_as_missing() -> None:
    assert spread([1.0, None, 3.0])["missing"] == 1
    assert spread([1.0, 3.0], 5) == {
        "mean": 2.0,
        "sd": pytest.approx(2**0.5),
        "min": 1.0,
        "max": 3.0,
        "missing": 3,
    }
    assert spread([], 4)["missing"] == 4


def test_over_splits_missing_is_every_split_a_figure_lacks(capsys, tmp_path: Path) -> None:
    """No cost anywhere: the frontier has no value in any split, and says so; a tag whose
    one row is held out in some splits only has its figures missing in the others."""
    rows = _outcome_rows(20)
    for row in rows:
        for outcome in row["outcomes"].values():
            del outcome["cost_usd"]
    rows += [
        {"id": "c1", "prompt": "x", "tags": ["code"], "category": "pair",
         "outcomes": {"strong": {"score": 1.0}, "weak": {"score": 0.0}}},
        {"id": "c2", "prompt": "y", "tags": ["general"], "category": "pair",
         "outcomes": {"strong": {"score": 1.0}, "weak": {"score": 1.0}}},
    ]  # fmt: skip
    path = write(tmp_path / "rows.jsonl", rows)
    data = EvalSet.from_rows(read_rows(path))
    held = held_out_masks(data, 0.5, range(30))[:, data.ids.index("c1")]
    # a first seed that holds c1 out (the text's tag tables are the first split's), and
    # puts it on the training side in some of the next five
    seed = next(s for s in range(25) if held[s] and not held[s : s + 6].all())
    code_held = int(held[seed : seed + 6].sum())
    argv = (str(path), "--splits", "6", "--seed", str(seed))
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    spreads = json.loads(out)["over_splits"]
    assert spreads["frontier"]["area"]["missing"] == 6
    assert spreads["frontier"]["aiq"]["missing"] == 6
    quality = spreads["per_tag"]["oracle"]["code"]["quality"]
    assert quality["missing"] == 6 - code_held
    code, out, _ = run(capsys, *argv)
    code_table = out.split("tag code")[1].split("\n\n")[0]
    assert f"({code_held}/6 splits)" in code_table


def test_gzip_rows_read_as_the_plain_file(capsys, tmp_path: Path) -> None:
    rows = _outcome_rows(300)  # more than one block of lines
    plain = write(tmp_path / "rows.jsonl", rows)
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = EvalSet.from_jsonl(plain), EvalSet.from_jsonl(packed)
    assert a.ids == b.ids and np.array_equal(a.scores, b.scores)
    assert [r.id for r in read_rows(packed)] == list(a.ids)
    code, out, _ = run(capsys, str(packed), "--splits", "1", "--json")
    assert code == 0 and json.loads(out)["dataset"]["rows"] == 300


@pytest.mark.parametrize("save", [False, True])
def test_a_damaged_gzip_file_is_named(capsys, tmp_path: Path, save: bool) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": "a", "prompt": "x"}\n' * 50)[:30])
    extra = ["--save-rows", str(tmp_path / "out.jsonl")] if save else []
    code, _, err = run(capsys, str(path), *extra)
    assert code == 2
    assert f"{path}: a damaged gzip file" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
@pytest.mark.parametrize("save", [False, True])
def test_an_empty_file_is_named(capsys, tmp_path: Path, text: str, save: bool) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(text, "utf-8")
    extra = ["--save-rows", str(tmp_path / "out.jsonl")] if save else []
    code, _, err = run(capsys, str(path), *extra)
    assert code == 2
    assert f"{path}: no rows (the file is empty or blank)" in err


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "m", "messages": [{"role": "user", "content": 42}]},
         "row 'm': message content must be a string or a list of parts, got int"),
        ({"id": "m", "prompt": "x", "category": 5},
         "row 'm': field category: give a string (the row's calibration group), got int"),
        ({"id": "m", "prompt": "x", "category": ["a"]},
         "row 'm': field category: give a string (the row's calibration group), got list"),
    ],
)  # fmt: skip
def test_content_errors_name_the_file_and_line(tmp_path: Path, row: dict, message: str) -> None:
    """Past 200 good rows (the block path), the bad row's error names its line."""
    good = [{"id": f"g{i}", "prompt": "ok", "tags": ["general"]} for i in range(200)]
    path = write(tmp_path / "rows.jsonl", [*good, row])
    with pytest.raises(InvalidRequestError) as got:
        EvalSet.from_jsonl(path)
    assert str(got.value) == f"{path}:201: {message}"


def test_category_null_or_absent_groups_by_tag(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.jsonl",
        [{"id": "a", "prompt": "x", "tags": ["code"], "category": None},
         {"id": "b", "prompt": "y", "tags": ["code"]}],
    )  # fmt: skip
    data = EvalSet.from_jsonl(path)
    assert data.group_names == ("code",)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ('"outcomes": {"m": {"score": 1, "cost_usd": true}}',
         "field outcomes.m.cost_usd: give a cost in USD, not true"),
        ('"expected_output_tokens": false',
         "field expected_output_tokens: give a number of tokens, not false"),
    ],
)  # fmt: skip
def test_true_or_false_is_no_cost_or_size(tmp_path: Path, field: str, message: str) -> None:
    """pydantic reads true as 1: a cost of $1 nobody gave. Refused, by both readers."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "prompt": "x", ' + field + "}\n", "utf-8")
    for read in (EvalSet.from_jsonl, lambda p: list(read_rows(p))):
        with pytest.raises(InvalidRequestError) as got:
            read(path)
        assert str(got.value) == f"{path}:1: {message}"


def test_a_score_of_true_or_false_is_correct_or_incorrect(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "x", "outcomes": {"m": {"score": true}}}\n'
        '{"id": "b", "prompt": "x", "outcomes": {"m": {"score": false}}}\n',
        "utf-8",
    )
    assert EvalSet.from_jsonl(path).scores[:, 0].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"id": "a", "prompt": "x"}]\n',
         "a row is a JSON object, got an array (a JSON array of rows? give one object per line)"),
        ('"just text"\n', "a row is a JSON object, got a string"),
        ("null\n", "a row is a JSON object, got null"),
        ('{\n  "id": "a",\n  "prompt": "x"\n}\n',
         "not valid JSON: Expecting property name enclosed in double quotes (a pretty-printed "
         "JSON file? a workload is JSONL: one object per line)"),
    ],
)  # fmt: skip
def test_not_jsonl_says_what_it_looks_like(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(text, "utf-8")
    for read in (EvalSet.from_jsonl, lambda p: list(read_rows(p))):
        with pytest.raises(InvalidRequestError) as got:
            read(path)
        assert str(got.value) == f"{path}:1: {message}"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--seed", "-1"], "--seed must be 0 or more, got -1"),
        (["--floor", "2"], "--floor is a quality in [0, 1], got 2.0"),
        (["--gap", "-1"], "--gap must be within 0-100 points, got -1.0"),
        (["--policy", "random:seed=1.5"],
         "policy 'random:seed=1.5': seed '1.5' is not a whole number of 0 or more"),
        (["--policy", "random:seed=-2"],
         "policy 'random:seed=-2': seed '-2' is not a whole number of 0 or more"),
    ],
)  # fmt: skip
def test_settings_out_of_range_are_named(capsys, option: list[str], message: str) -> None:
    """With and without outcomes; a negative seed was numpy's unnamed error, a floor of 2
    or a gap of -1 went through."""
    code, _, err = run(capsys, *option)
    assert code == 2
    assert f"routedllm: error: {message}\n" in err


@pytest.mark.parametrize("option", ["--save-rows", "--write-override", "--plot"])
def test_an_output_that_cannot_be_written_is_named_first(
    capsys, tmp_path: Path, option: str
) -> None:
    rows = write(tmp_path / "rows.jsonl", _outcome_rows(10))
    for target, why in ((tmp_path, "it is a folder"), (tmp_path / "no" / "x", "no folder")):
        code, out, err = run(capsys, str(rows), "--splits", "1", option, str(target))
        assert code == 2
        assert f"routedllm: error: {target}: cannot write " in err and why in err
        assert "Traceback" not in err and out == ""  # refused before the evaluation


def _skill_rows(prefix: str, n: int, extra_model: bool = False) -> list[dict[str, Any]]:
    """Proofs only the strong model gets right, greetings both do: a router can learn it."""
    rows = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = (
            f"prove the theorem about primes number {i} rigorously"
            if hard
            else f"say hello to my friend number {i} politely"
        )
        outcomes = {
            "strong": {"score": 1.0, "cost_usd": 0.01},
            "weak": {"score": 0.0 if hard else 1.0, "cost_usd": 0.001},
        }
        if extra_model:
            outcomes["other"] = {"score": 0.5, "cost_usd": 0.005}
        rows.append({"id": f"{prefix}{i}", "prompt": prompt, "outcomes": outcomes})
    return rows


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    rows = write(tmp_path / "train.jsonl", _skill_rows("t", 80))
    router = tmp_path / "router.json"
    assert main(["train", str(rows), "-o", str(router), "--max-price-age-days", "100000"]) == 0
    return router


def test_a_trained_router_is_measured_on_other_rows(capsys, tmp_path: Path, trained: Path) -> None:
    """Trained on one file, measured on another with other ids, a model it never saw
    (never chosen) and a missing model of its own (named): proofs go to the strong model."""
    capsys.readouterr()
    held = write(tmp_path / "held.jsonl", _skill_rows("h", 40, extra_model=True))
    spec = f"learned:{trained}"
    code, out, err = run(capsys, str(held), "--policy", spec, "--splits", "3", "--json")
    assert code == 0, err
    report = json.loads(out)
    result = next(p for p in report["policies"] if p["name"] == spec)
    assert result["kind"] == "learned"
    assert set(result["model_share"]) <= {"strong", "weak"}
    assert 0 < result["model_share"]["strong"] < 1
    assert result["quality"] == 1.0  # each row on a model that gets it right
    assert result["cost_usd"] < next(
        p["cost_usd"] for p in report["policies"] if p["name"] == "always:strong"
    )
    assert report["over_splits"]["policies"][spec]["quality"]["mean"] == 1.0

    less = write(tmp_path / "less.jsonl", [
        {**r, "outcomes": {"strong": r["outcomes"]["strong"], "other": r["outcomes"]["other"]}}
        for r in _skill_rows("x", 10, extra_model=True)
    ])  # fmt: skip
    code, out, err = run(capsys, str(less), "--policy", spec, "--splits", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert any(f"{spec}: weak not in the table's outcomes" in n for n in report["notes"])


def test_a_trained_router_through_the_python_api(tmp_path: Path, trained: Path) -> None:
    from routedllm import Catalog
    from routedllm.evaluation import Settings
    from routedllm.evaluation import run as run_eval

    path = write(tmp_path / "held.jsonl", _skill_rows("h", 20))
    rows = list(read_rows(path))
    spec = f"learned:{trained}"
    report = run_eval(
        EvalSet.from_rows(rows), Catalog.default(), Settings(policies=[spec], rows=rows, splits=2)
    )
    assert report.evaluation.get(spec).quality == 1.0
    with pytest.raises(InvalidRequestError, match="reads each row's prompt"):
        run_eval(EvalSet.from_rows(rows), Catalog.default(), Settings(policies=[spec]))


@pytest.mark.parametrize(
    ("artifact", "message"),
    [
        ("[]", "not a learned router (a JSON list, not the object routedllm train writes)"),
        ('{"format": "routedllm-learned-router", "ver', "not valid JSON"),
        ('{"format": "x"}', "not a learned router (format 'x'"),
    ],
)
def test_a_bad_artifact_is_named(capsys, tmp_path: Path, artifact: str, message: str) -> None:
    router = tmp_path / "router.json"
    router.write_text(artifact, "utf-8")
    held = write(tmp_path / "held.jsonl", _skill_rows("h", 6))
    code, _, err = run(capsys, str(held), "--policy", f"learned:{router}")
    assert code == 2
    assert f"routedllm: error: {router}: {message}" in err
    assert "Traceback" not in err


def test_a_broken_artifact_is_named(capsys, tmp_path: Path, trained: Path) -> None:
    """Loadable, but weights of the wrong shape or not numbers: named, not a zip() error
    or a silent choice on NaN."""
    capsys.readouterr()
    held = write(tmp_path / "held.jsonl", _skill_rows("h", 6))
    data = json.loads(trained.read_text("utf-8"))
    data["structure"]["mean"] = []
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data), "utf-8")
    data = json.loads(trained.read_text("utf-8"))
    for model in data["models"]:
        data["structure"]["weights"][model][0] = float("nan")
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(data), "utf-8")  # NaN: json.loads reads it
    for path, message in ((short, "malformed learned router ("), (nan, "NaN is not a JSON number")):
        code, _, err = run(capsys, str(held), "--policy", f"learned:{path}")
        assert code == 2
        assert f"routedllm: error: {path}: {message}" in err


def test_a_trained_router_needs_its_models_and_outcomes(
    capsys, tmp_path: Path, trained: Path
) -> None:
    capsys.readouterr()
    other = write(tmp_path / "other.jsonl", [
        {"id": "a", "prompt": "x", "outcomes": {"m1": {"score": 1.0}, "m2": {"score": 0.0}}},
        {"id": "b", "prompt": "y", "outcomes": {"m1": {"score": 0.0}, "m2": {"score": 1.0}}},
    ])  # fmt: skip
    spec = f"learned:{trained}"
    code, _, err = run(capsys, str(other), "--policy", spec)
    assert code == 2
    assert "the router scores strong, weak, and none has outcomes here" in err
    code, _, err = run(capsys, "--policy", spec)  # the sample: no outcomes
    assert code == 2
    assert f"policy '{spec}' measures a trained router on outcome rows" in err


def test_a_byte_order_mark_past_the_first_line_is_named(tmp_path: Path) -> None:
    """`cat a.jsonl b.jsonl` where b was saved with a BOM: the mark is named."""
    path = tmp_path / "rows.jsonl"
    row = '{"id": "%s", "prompt": "x"}\n'
    path.write_text("\ufeff" + row % "a" + "\ufeff" + row % "b", "utf-8")
    for read in (EvalSet.from_jsonl, lambda p: list(read_rows(p))):
        with pytest.raises(InvalidRequestError) as got:
            read(path)
        assert str(got.value) == (
            f"{path}:2: not valid JSON: Expecting value (it starts with a byte-order mark: "
            "two files joined? remove the mark)"
        )
