"""`routedllm eval`: tables, stable JSON, the two-model figures, plots and override files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from routedllm import Catalog
from routedllm.cli import main

DATA = Path(__file__).parent / "data"
TWO = str(DATA / "eval_two_model.jsonl")
PAIR = ("--strong", "big-model", "--weak", "small-model")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_workload_tables(capsys) -> None:
    code, out, _ = run(capsys, "eval")
    assert code == 0
    assert "quality expected" in out and "baseline always:gpt-4o" in out
    for policy in ("value ", "quality ", "cheapest ", "value:gap=8", "random ", "always:glm-5"):
        assert policy in out
    assert "tag vision (2 rows)" in out and "tag chinese (3 rows)" in out
    assert "best single model: always:gpt-4o" in out
    assert "frontier area (RouterBench AIQ" in out
    assert "always:deepseek-v4-flash: no eligible model for [vision]" in out


def test_sample_workload_json(capsys) -> None:
    code, out, err = run(capsys, "eval", "--json", "--policy", "value", "--policy", "cheapest")
    data = json.loads(out)
    assert code == 0 and "rows" not in err  # no progress bar with --json
    names = [p["name"] for p in data["policies"]]
    assert "value" in names and "cheapest" in names and "quality" not in names
    value = next(p for p in data["policies"] if p["name"] == "value")
    assert 0 < value["cost_ratio"] < 1 and value["no_eligible"] == 0
    assert set(value["per_tag"]) >= {"code", "vision", "chinese"}
    assert data["baselines"]["best_single"] == "always:gpt-4o"
    assert data["quality_mode"] == "expected" and data["frontier"]["area"] > 0


def test_two_model_json_has_the_routellm_figures(capsys) -> None:
    code, out, _ = run(capsys, "eval", TWO, *PAIR, "--prior-rows", "0", "--json")
    assert code == 0
    two = json.loads(out)["two_model"]
    for key in ("tag_router", "oracle", "random", "strong_only", "weak_only"):
        assert {"quality", "cost_usd", "strong_share"} <= two[key].keys()
    router = two["tag_router"]
    # held out: two rows of each category. strong: 1, 1, 1, 0 -> 0.75; weak: 0, .5, 1, 1 -> 0.625
    assert two["strong_only"]["quality"] == pytest.approx(0.75)
    assert two["weak_only"]["quality"] == pytest.approx(0.625)
    # gap 2 points: strong for algebra and biology only
    assert router["strong_share"] == pytest.approx(0.5) and router["quality"] == pytest.approx(1.0)
    assert router["cost_usd"] == pytest.approx(4 * 0.01 + 4 * 0.001)
    # curve (0, .625) (.25, .875) (.5, 1) (.75, 1) (1, .75)
    auc = 0.25 * (0.625 + 0.875) / 2 + 0.25 * (0.875 + 1) / 2 + 0.25 + 0.25 * (1 + 0.75) / 2
    assert router["apgr"] == pytest.approx((auc - 0.625) / 0.125)
    assert router["cpt50"] == pytest.approx(0.0625)
    assert router["cpt80"] == pytest.approx(0.1)
    assert router["strong_share_at_95"] == pytest.approx(0.0875)
    assert two["oracle"]["strong_share"] == pytest.approx(0.5)
    assert two["oracle"]["quality"] == pytest.approx(1.0)
    # every column filled for the references: the oracle's exact curve (gains first:
    # (0, .625) (.25, .875) (.5, 1) (1, 1)), random's straight line
    oracle_auc = 0.25 * (0.625 + 0.875) / 2 + 0.25 * (0.875 + 1) / 2 + 0.5
    assert two["oracle"]["apgr"] == pytest.approx((oracle_auc - 0.625) / 0.125)
    assert two["oracle"]["cpt50"] == pytest.approx(0.0625)
    assert two["oracle"]["strong_share_at_95"] == pytest.approx(0.0875)
    assert two["random"] == pytest.approx(
        {
            "quality": 0.6875,
            "cost_usd": 0.044,
            "strong_share": 0.5,
            "apgr": 0.5,
            "cpt50": 0.5,
            "cpt80": 0.8,
            "strong_share_at_95": (0.95 * 0.75 - 0.625) / 0.125,
        }
    )


def test_two_model_text_and_held_out_rows(capsys) -> None:
    code, out, _ = run(capsys, "eval", TWO, *PAIR)
    assert code == 0
    assert "8 held-out rows" in out and "two models on 8 held-out rows" in out
    assert "calibrated on 8 training rows" in out
    assert "tag_router" in out and "APGR" in out


def test_plot_writes_a_png(capsys, tmp_path: Path) -> None:
    png = tmp_path / "frontier.png"
    code, _, _ = run(capsys, "eval", TWO, *PAIR, "--plot", str(png), "--json")
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sample = tmp_path / "sample.png"
    assert run(capsys, "eval", "--plot", str(sample), "--json")[0] == 0
    assert sample.stat().st_size > 10_000


def test_published_tables_with_costs_and_saved_rows(capsys, tmp_path: Path) -> None:
    saved = tmp_path / "mmlu.jsonl"
    code, out, _ = run(
        capsys,
        "eval",
        str(DATA / "routellm"),
        "--benchmark",
        "mmlu",
        "--strong",
        "strong-x",
        "--weak",
        "org/weak-y",
        "--cost",
        "strong-x=1",
        "--cost",
        "org/weak-y=0.1",
        "--save-rows",
        str(saved),
        "--json",
    )
    assert code == 0 and len(saved.read_text().splitlines()) == 4
    data = json.loads(out)
    assert data["dataset"]["rows"] == 4
    held_out = data["dataset"]["evaluated_rows"]
    assert data["two_model"]["strong_only"]["cost_usd"] == pytest.approx(held_out * 1.0)
    assert data["two_model"]["weak_only"]["cost_usd"] == pytest.approx(held_out * 0.1)
    assert data["frontier"]["area"] is not None  # costs known: the dollar-axis frontier


def test_write_override(capsys, tmp_path: Path) -> None:
    path = tmp_path / "learned.yaml"
    code, _, _ = run(
        capsys,
        "eval",
        str(DATA / "eval_catalog_outcomes.jsonl"),
        "--write-override",
        str(path),
        "--json",
    )
    assert code == 0
    merged = Catalog.from_file(path)
    assert merged.get("gpt-4o").score("ceval") is not None


def test_measured_catalog_models_get_the_presets(capsys) -> None:
    code, out, _ = run(capsys, "eval", str(DATA / "eval_catalog_outcomes.jsonl"), "--json")
    names = [p["name"] for p in json.loads(out)["policies"]]
    assert code == 0
    assert {"value", "quality", "cheapest", "oracle", "random", "tag_router"} <= set(names)
    value = next(p for p in json.loads(out)["policies"] if p["name"] == "value")
    assert set(value["model_share"]) <= {"gpt-4o", "deepseek-v4-flash", "glm-5"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--policy", "fastest"], "unknown policy 'fastest'"),
        (["eval", TWO, "--strong", "big-model"], "give both --strong and --weak"),
        (["eval", TWO, "--strong", "big-model", "--weak", "nobody"], "'nobody' has no outcomes"),
        (["eval", "--strong", "a", "--weak", "b"], "need outcome rows"),
        (["eval", TWO, "--policy", "value"], "no model with outcomes here is in the catalog"),
        (["eval", "--write-override", "x.yaml"], "needs outcome rows"),
        (["eval", "--benchmark", "mmlu"], "give their folder"),
        (["eval", "--baseline", "gpt-9"], "unknown model 'gpt-9'"),
    ],
)
def test_errors(capsys, argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_bad_cost_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--cost", "gpt-4o"])
    assert "expected MODEL=USD" in capsys.readouterr().err


def test_importing_the_cli_loads_no_numpy_or_matplotlib() -> None:
    code = (
        "import sys, routedllm, routedllm.cli; "
        "bad = {'numpy', 'matplotlib', 'tqdm', 'jsonschema'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cli_and_import_routedllm_load_no_langchain() -> None:
    """routedllm eval/report never touch LangChain; its adapters load on first use."""
    code = (
        "import sys, routedllm, routedllm.cli; "
        "bad = [m for m in sys.modules if m.startswith(('langchain', 'openai'))]; "
        "assert not bad, bad; "
        "handler = routedllm.CostLatencyHandler; "
        "assert 'langchain_core' in sys.modules and handler.__name__ == 'CostLatencyHandler'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluation_package_names_resolve() -> None:
    import routedllm.evaluation as evaluation

    for name in evaluation.__all__:
        assert getattr(evaluation, name) is not None, name
    with pytest.raises(AttributeError):
        evaluation.nothing_here  # noqa: B018
