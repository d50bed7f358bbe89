"""`routedllm eval` with outcomes: every figure as mean +- sd over --splits random splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routedllm.cli import main
from routedllm.evaluation import splits
from routedllm.evaluation.calibrate import held_out_masks, split
from routedllm.evaluation.dataset import EvalSet
from routedllm.workload import read_rows

DATA = Path(__file__).parent / "data"
ROWS = str(DATA / "learned_rows.jsonl")  # 240 rows, deepseek-v4-flash against gpt-4o
PAIR = ("--strong", "gpt-4o", "--weak", "deepseek-v4-flash")


def _eval(capsys, *argv: str) -> dict:
    assert main(["eval", ROWS, *PAIR, "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_default_is_twenty_splits_with_a_spread_for_every_figure(capsys) -> None:
    report = _eval(capsys)
    spread = report["over_splits"]
    assert spread["splits"] == 20 and spread["seeds"] == [0, 19]
    names = {p["name"] for p in report["policies"] if p["kind"] != "calibrated sweep"}
    assert names <= spread["policies"].keys()
    for name in names:
        for fig in ("cost_usd", "quality", "cost_ratio", "quality_retained"):
            stats = spread["policies"][name][fig]
            assert set(stats) == {"mean", "sd", "min", "max", "missing"}
            assert stats["min"] - 1e-12 <= stats["mean"] <= stats["max"] + 1e-12
    # held-out rows differ between splits, so the tag router's figures move
    router = spread["two_model"]["tag_router"]
    assert router["apgr"]["sd"] > 0 and router["apgr"]["max"] > router["apgr"]["min"]
    for key in ("tag_router", "oracle", "random", "strong_only", "weak_only"):
        assert spread["two_model"][key]["quality"]["missing"] == 0
    for key in ("tag_router", "oracle", "random"):  # every column filled
        for fig in ("apgr", "cpt50", "cpt80", "strong_share_at_95"):
            assert spread["two_model"][key][fig]["mean"] is not None, (key, fig)
    assert spread["frontier"]["aiq"]["mean"] > 0 and "oracle" in spread["frontier"]["aiq_by_kind"]
    # the report's own fields stay those of the first split (backward compatible)
    assert "apgr" in report["two_model"]["tag_router"]


def test_the_spread_is_over_the_seeds_it_names(capsys) -> None:
    """Split k of the spread is the one-split report with --seed k."""
    spread = _eval(capsys, "--splits", "3", "--seed", "5")["over_splits"]
    singles = [
        _eval(capsys, "--splits", "1", "--seed", str(s))["two_model"]["tag_router"]["apgr"]
        for s in (5, 6, 7)
    ]
    apgr = spread["two_model"]["tag_router"]["apgr"]
    assert apgr["mean"] == pytest.approx(np.mean(singles))
    assert apgr["sd"] == pytest.approx(np.std(singles, ddof=1))
    assert (apgr["min"], apgr["max"]) == pytest.approx((min(singles), max(singles)))
    one = _eval(capsys, "--splits", "1", "--seed", "5")
    value = one["over_splits"]["policies"]["tag_router"]["quality"]
    policy = next(p for p in one["policies"] if p["name"] == "tag_router")
    assert value["mean"] == pytest.approx(policy["quality"]) and value["sd"] is None
    data = EvalSet.from_rows(read_rows(ROWS))
    assert split(data, 0.5, 5)[1].size == one["dataset"]["evaluated_rows"]


def test_text_shows_mean_and_sd(capsys) -> None:
    assert main(["eval", ROWS, *PAIR, "--splits", "4"]) == 0
    out = capsys.readouterr().out
    assert "mean +- sd over 4 random splits (seeds 0-3)" in out
    tag_router = next(line for line in out.splitlines() if line.startswith("tag_router "))
    assert tag_router.count("+-") >= 4
    assert "AIQ over one cost range for every kind" in out


def test_splits_must_be_positive(capsys) -> None:
    assert main(["eval", ROWS, "--splits", "0"]) != 0
    assert "--splits must be at least 1, got 0" in capsys.readouterr().err
    # the sample workload has no outcomes: the typo is refused all the same
    assert main(["eval", "--splits", "-1"]) != 0
    assert "--splits must be at least 1, got -1" in capsys.readouterr().err


def test_held_out_masks_are_the_splits_of_each_seed() -> None:
    data = EvalSet.from_rows(read_rows(ROWS))
    masks = held_out_masks(data, 0.3, [4, 5, 6])
    for mask, seed in zip(masks, (4, 5, 6), strict=True):
        train, test = split(data, 0.3, seed)
        assert np.array_equal(np.flatnonzero(mask), test)
        assert np.array_equal(np.flatnonzero(~mask), train)


def _same(a: float | None, b: float | None) -> bool:
    """Equal but for floating-point rounding (sums taken in another order)."""
    return a is None if b is None else a == pytest.approx(b, rel=1e-9, abs=1e-12)


def _rows(path: Path, categories: int) -> None:
    """Rows with fractional scores, outcomes and costs missing here and there, three tags
    and ``categories`` calibration groups."""
    rng = np.random.default_rng(3)
    models = ("gpt-4o", "deepseek-v4-flash", "private-model")
    with path.open("w") as handle:
        for i in range(600):
            outcomes = {}
            for m in models:
                if rng.random() < 0.1:
                    continue
                outcome = {"score": round(float(rng.random()), 2)}
                if rng.random() < 0.7:
                    outcome["cost_usd"] = round(float(rng.random()) / 1000, 6)
                outcomes[m] = outcome
            row = {
                "id": f"r{i}",
                "prompt": "word " * int(rng.integers(5, 200)),
                "tags": [("general", "code", "chinese")[i % 3]],
                "category": f"c{rng.integers(categories)}",
                "outcomes": outcomes,
            }
            handle.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("categories", [4, 300])  # large cells, and cells of a row or two
@pytest.mark.parametrize("pair", [(), PAIR])
def test_one_split_of_the_spread_gives_the_report_figures(capsys, tmp_path, categories, pair):
    """Figures over splits are sums per cell; with one split they are the report's own."""
    path = tmp_path / "rows.jsonl"
    _rows(path, categories)
    for seed in (0, 3):
        argv = ["eval", str(path), *pair, "--json", "--splits", "1", "--seed", str(seed)]
        assert main(argv) == 0
        report = json.loads(capsys.readouterr().out)
        spread = report["over_splits"]
        checked = 0
        for policy in report["policies"]:
            if policy["kind"] == "calibrated sweep":
                continue
            figures = spread["policies"][policy["name"]]
            for fig, key in (
                ("cost_usd", "cost_usd"),
                ("quality", "quality"),
                ("cost_ratio", "cost_ratio"),
                ("quality_retained", "quality_retained"),
                ("random_same_cost", "random_same_cost_quality"),
            ):
                assert _same(figures[fig]["mean"], policy[key]), (policy["name"], fig)
                checked += policy[key] is not None
            for tag, own in policy["per_tag"].items():
                got = spread["per_tag"][policy["name"]][tag]
                assert _same(got["cost_usd"]["mean"], own["cost_usd"])
                assert _same(got["quality"]["mean"], own["quality"])
        assert checked > 20
        if pair:
            for key, own in report["two_model"].items():
                if key in ("strong", "weak", "rows"):
                    continue
                for fig in ("quality", "strong_share", "apgr", "cpt50", "cpt80"):
                    if fig in own:  # the report rounds shares to 6 places
                        got = spread["two_model"][key][fig]["mean"]
                        assert got == pytest.approx(own[fig], abs=1e-5), (key, fig)


def test_many_groups_give_the_same_figures_summed_in_batches(capsys, tmp_path, monkeypatch):
    """With many cells the splits are summed a few at a time: the figures are the same."""
    path = tmp_path / "rows.jsonl"
    _rows(path, 300)
    argv = ["eval", str(path), *PAIR, "--json", "--splits", "5"]
    assert main(argv) == 0
    whole = json.loads(capsys.readouterr().out)["over_splits"]
    monkeypatch.setattr(splits, "MAX_SUMS", 1)  # one split at a time
    assert main(argv) == 0
    _same_tree(json.loads(capsys.readouterr().out)["over_splits"], whole)


def _same_tree(a: object, b: object) -> None:
    """Equal JSON, numbers equal but for floating-point rounding."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b)
        for key in b:
            _same_tree(a[key], b[key])
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same_tree(x, y)
    elif isinstance(b, float):
        assert isinstance(a, float | int) and _same(a, b)
    else:
        assert a == b
