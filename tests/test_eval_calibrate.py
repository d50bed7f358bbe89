"""Calibration: seeded splits, learned per-group scores, routers and the catalog override."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from routedllm import Catalog, Policy, Request, decide
from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.calibrate import (
    learn,
    override,
    split,
    threshold_sweep,
    value_router,
    write_override,
)
from routedllm.evaluation.dataset import EvalSet
from routedllm.workload import WorkloadRow, read_rows

DATA = Path(__file__).parent / "data"
STRONG, WEAK = "big-model", "small-model"


@pytest.fixture(scope="module")
def two() -> EvalSet:
    return EvalSet.from_rows(read_rows(DATA / "eval_two_model.jsonl"))


def test_split_is_seeded_stratified_and_disjoint(two: EvalSet) -> None:
    train, test = split(two, 0.5, seed=7)
    again = split(two, 0.5, seed=7)
    assert train.tolist() == again[0].tolist() and test.tolist() == again[1].tolist()
    assert sorted([*train.tolist(), *test.tolist()]) == list(range(len(two)))
    for g in range(len(two.group_names)):
        assert (two.group_index[train] == g).sum() == 2 == (two.group_index[test] == g).sum()
    assert split(two, 0.5, seed=8)[0].tolist() != train.tolist()
    with pytest.raises(InvalidRequestError, match="between 0 and 1"):
        split(two, 1.0)


def test_small_groups_keep_a_row_on_each_side() -> None:
    data = EvalSet.from_rows(
        [
            WorkloadRow.model_validate(
                {"id": str(i), "prompt": "q", "category": "c" if i < 2 else "d"}
            )
            for i in range(3)
        ]
    )
    train, test = split(data, 0.9)
    assert data.group_index[test].tolist().count(0) == 1  # group c: one each side
    assert 2 in train.tolist()  # a single-row group trains


def test_learn_shrinks_group_means_toward_the_overall_mean() -> None:
    data = EvalSet.from_rows(
        [
            WorkloadRow.model_validate(
                {
                    "id": str(i),
                    "prompt": "q",
                    "category": "a" if i < 2 else "b",
                    "outcomes": {"m": {"score": s}},
                }
            )
            for i, s in enumerate([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
        ]
    )
    cal = learn(data, prior_rows=2)
    overall = 2 / 6
    assert cal.overall[0] == pytest.approx(overall)
    assert cal.group_scores("a")[0] == pytest.approx((2 + 2 * overall) / 4)
    assert cal.group_scores("b")[0] == pytest.approx((0 + 2 * overall) / 6)
    assert cal.group_scores("never seen")[0] == pytest.approx(overall)
    assert learn(data, prior_rows=0).group_scores("a")[0] == 1.0


def test_learn_only_reads_the_training_rows(two: EvalSet) -> None:
    rows = np.flatnonzero(two.group_index == two.group_names.index("poetry"))
    cal = learn(two, rows, prior_rows=0)
    assert cal.groups == ("poetry",) and cal.train_rows == 4
    assert cal.group_scores("poetry").tolist() == [0.0, 1.0]


def test_value_router_takes_the_cheaper_model_within_the_gap(two: EvalSet) -> None:
    cal = learn(two, prior_rows=0)
    router = value_router(cal, 2.0, [WEAK, STRONG])
    assert dict(router.choices) == {
        "algebra": STRONG,
        "biology": STRONG,
        "history": WEAK,
        "poetry": WEAK,
    }
    wide = value_router(cal, 60.0, [WEAK, STRONG])  # biology's 50-point gap is inside
    assert wide.choices["biology"] == WEAK and wide.choices["algebra"] == STRONG


def test_threshold_sweep_spans_all_weak_to_all_strong(two: EvalSet) -> None:
    cal = learn(two, prior_rows=0)
    sweep = threshold_sweep(cal, STRONG, WEAK)
    strong_groups = [sorted(g for g, m in r.choices.items() if m == STRONG) for r in sweep]
    assert strong_groups[0] == [] and strong_groups[-1] == sorted(two.group_names)
    assert all(set(a) <= set(b) for a, b in zip(strong_groups, strong_groups[1:], strict=False))
    assert ["algebra"] in strong_groups and ["algebra", "biology"] in strong_groups


def test_override_maps_tags_to_their_benchmarks(catalog: Catalog) -> None:
    rows = [
        ("c1", "code", 1.0, 0.5),
        ("c2", "code", 0.0, 0.5),
        ("g1", "general", 1.0, 1.0),
        ("e1", "extraction", 0.5, 0.0),
    ]
    data = EvalSet.from_rows(
        [
            WorkloadRow.model_validate(
                {
                    "id": i,
                    "prompt": "q",
                    "tags": [t],
                    "outcomes": {"gpt-4o": {"score": a}, "house-model": {"score": b}},
                }
            )
            for i, t, a, b in rows
        ]
    )
    doc = override(learn(data), catalog)
    by_id = {m["id"]: m for m in doc["models"]}
    assert by_id["gpt-4o"] == {"id": "gpt-4o", "scores": {"humaneval": 50.0, "mmlu": 75.0}}
    # general and extraction share mmlu: weighted by their rows
    assert by_id["house-model"]["scores"] == {"humaneval": 50.0, "mmlu": 50.0}
    assert by_id["house-model"]["name"] == "house-model"


def test_written_override_merges_into_the_catalog(tmp_path: Path, catalog: Catalog) -> None:
    data = EvalSet.from_rows(
        [
            WorkloadRow.model_validate(
                {
                    "id": str(i),
                    "prompt": "q",
                    "tags": ["code"],
                    "outcomes": {"gpt-4o": {"score": 0.5}, "deepseek-v4-flash": {"score": 1.0}},
                }
            )
            for i in range(4)
        ]
    )
    path = write_override(learn(data), catalog, tmp_path / "learned.yaml", "my rows")
    assert "4 training rows of my rows" in path.read_text()
    merged = Catalog.from_file(path)
    assert merged.get("gpt-4o").score("humaneval") == 50.0
    assert merged.get("gpt-4o").score("mmlu") == catalog.get("gpt-4o").score("mmlu")
    request = Request(messages=[{"role": "user", "content": "x"}], tags=["code"])
    d = decide(merged, Policy(preset="quality"), request)
    assert d.model == "deepseek-v4-flash"
    assert yaml.safe_load(path.read_text())["models"][0]["scores"] == {"humaneval": 50.0}


def test_learn_needs_outcomes(catalog: Catalog) -> None:
    data = EvalSet.from_rows([WorkloadRow.model_validate({"id": "a", "prompt": "q"})])
    with pytest.raises(InvalidRequestError, match="needs outcome rows"):
        learn(data)


def test_threshold_sweep_moves_groups_tied_but_for_float_noise_together() -> None:
    rows = [
        WorkloadRow(
            id=f"{g}{i}",
            prompt="q",
            category=g,
            outcomes={STRONG: {"score": s}, WEAK: {"score": w}},
        )
        for g, s, w in (("a", 0.3, 0.0), ("b", 0.7, 0.4))  # advantages 0.3 and 0.29999...
        for i in range(4)
    ]
    data = EvalSet.from_rows(rows)
    cal = learn(data, prior_rows=0)
    sweep = threshold_sweep(cal, STRONG, WEAK)
    assert [r.choices["a"] == r.choices["b"] for r in sweep] == [True] * len(sweep)
    assert len(sweep) == 2  # all weak, then both groups at once
