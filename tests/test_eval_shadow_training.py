"""Calibration from your own traffic: shadow agreement grades become training rows.

End to end on the bundled sample against the loopback stand-in: `routedllm eval --online
--shadow gpt-4o --shadow-rows FILE`, then `routedllm train --shadow FILE`, then routing
with the learned router. The stand-in's kimi-k2.5 disagrees with gpt-4o on every prompt,
the other models agree, so the measured scores must overturn the catalog's choice of
kimi-k2.5 for general prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routedllm import Catalog, Policy
from routedllm.cli import main
from routedllm.core.decision import Request, Router
from routedllm.core.errors import InvalidRequestError
from routedllm.learning import LearnedRouter
from routedllm.learning.cli import with_shadow
from routedllm.testing import ModelSpec, Upstream
from routedllm.workload import WorkloadRow, sample_rows

KEY = "shadow-test-key"
GENERAL = [{"role": "user", "content": "Explain the trade-offs of a monorepo for a small team."}]


def _upstream() -> Upstream:
    agree = ModelSpec(reply="The answer is 42.")
    return Upstream(
        {
            "gpt-4o": agree,
            "deepseek-v4-flash": agree,
            "qwen3-32b": agree,
            "kimi-k2.5": ModelSpec(reply="Something else entirely."),
        },
        api_key=KEY,
    )


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_two_commands_from_published_to_measured_scores(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("GLOBAL_API_KEY", KEY)
    shadow_rows, ledger, router_file = (
        tmp_path / "shadow.jsonl",
        tmp_path / "calls.jsonl",
        tmp_path / "router.json",
    )
    catalog = Catalog.from_env()
    before = Router(catalog, Policy()).decide(Request(messages=GENERAL)).model
    assert before == "kimi-k2.5"  # the catalog's published scores pick it for general prompts

    with _upstream() as up:
        code = main(
            [
                "eval", "--online", "--base-url", up.base_url, "--policy", "value",
                "--shadow", "gpt-4o", "--shadow-rows", str(shadow_rows),
                "--ledger", str(ledger), "--json",
            ]
        )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    summary = report["shadow"]
    sample = sample_rows()
    assert summary["shadowed"] == summary["graded"] == len(sample)
    assert summary["spent_usd"] > 0 and summary["rows_path"] == str(shadow_rows)

    lines = [json.loads(line) for line in shadow_rows.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(r.id for r in sample)
    by_live = {}
    for line in lines:
        (live,) = set(line["outcomes"]) - {"gpt-4o"}
        by_live.setdefault(live, set()).add(line["outcomes"][live]["score"])
        assert line["outcomes"]["gpt-4o"]["score"] == 1.0
        assert line["outcomes"]["gpt-4o"]["cost_usd"] > 0 and line["outcomes"][live]["cost_usd"] > 0
        WorkloadRow.model_validate(line)  # a workload row: messages, tags, outcomes
    assert by_live == {"kimi-k2.5": {0.0}, "deepseek-v4-flash": {1.0}, "qwen3-32b": {1.0}}
    ledger_text = ledger.read_text()
    assert '"policy":"shadow"' in ledger_text and "The answer is 42" not in ledger_text

    assert main(["train", "--shadow", str(shadow_rows), "-o", str(router_file)]) == 0
    out = capsys.readouterr().out
    assert f"trained on {len(sample)} rows" in out
    learned = LearnedRouter.load(router_file)
    assert set(learned.models) == {"gpt-4o", "kimi-k2.5", "deepseek-v4-flash", "qwen3-32b"}
    scores = learned.predict(GENERAL, ("general",))
    assert scores["kimi-k2.5"] < 0.5 < scores["gpt-4o"]
    after = Router(catalog, Policy(), scorer=learned).decide(Request(messages=GENERAL)).model
    assert after != "kimi-k2.5"


def test_mirrors_of_one_row_average_and_merge_with_the_workload(tmp_path: Path) -> None:
    path = tmp_path / "shadow.jsonl"
    mirrors = [
        {"id": "q1", "prompt": "hi", "outcomes": {"a": {"score": 1.0, "cost_usd": 0.1},
                                                  "big": {"score": 1.0, "cost_usd": 1.0}}},
        {"id": "q1", "prompt": "hi", "outcomes": {"a": {"score": 0.0, "cost_usd": 0.3},
                                                  "big": {"score": 1.0, "cost_usd": 1.0}}},
        {"id": "q2", "prompt": "yo", "outcomes": {"b": {"score": 0.5, "cost_usd": None},
                                                  "big": {"score": 1.0, "cost_usd": 2.0}}},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(m) + "\n" for m in mirrors))
    given = WorkloadRow(id="q2", prompt="yo", outcomes={"b": {"score": 1.0, "cost_usd": 0.2}})
    rows = {r.id: r for r in with_shadow([given], [str(path)])}
    assert list(rows) == ["q2", "q1"]
    q1 = rows["q1"].outcomes
    assert q1["a"].score == 0.5 and q1["a"].cost_usd == pytest.approx(0.2)
    q2 = rows["q2"].outcomes
    assert q2["b"].score == 0.75 and q2["b"].cost_usd is None  # one cost unknown: unknown
    assert q2["big"].cost_usd == 2.0


def test_a_bad_shadow_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "shadow.jsonl"
    path.write_text('{"id": "q1", "prompt": "hi"}\n{"id": "q2", "prompt": "x", "outcomes": 3}\n')
    with pytest.raises(InvalidRequestError, match=r"shadow.jsonl:2: field outcomes"):
        with_shadow([], [str(path)])


def test_an_empty_shadow_file_is_named(tmp_path: Path, capsys) -> None:
    path = tmp_path / "shadow.jsonl"
    path.write_text("")
    assert main(["train", "--shadow", str(path), "-o", str(tmp_path / "r.json")]) != 0
    assert f"no rows to learn from in {path}" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_shadow_rows_need_a_shadow_model(capsys, monkeypatch) -> None:
    monkeypatch.setenv("GLOBAL_API_KEY", KEY)
    assert main(["eval", "--online", "--shadow-rows", "x.jsonl"]) != 0
    assert "--shadow-rows needs --shadow MODEL" in capsys.readouterr().err
