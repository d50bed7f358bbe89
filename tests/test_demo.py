"""`routedllm demo`: the sample workload routed for real against the local stand-in gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from routedllm import Catalog, Policy, Request, decide
from routedllm.cli import main
from routedllm.core.pricing import call_cost
from routedllm.demo import demo_answers
from routedllm.records.ledger import read_ledger
from routedllm.workload import sample_rows


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def demo(capsys, tmp_path: Path) -> tuple[dict, Path]:
    ledger = tmp_path / "calls.jsonl"
    code, out, _ = run(capsys, "demo", "--json", "--ledger", str(ledger))
    assert code == 0
    return json.loads(out), ledger


def test_every_sample_row_has_a_constructed_answer() -> None:
    answers = demo_answers()
    rows = sample_rows()
    assert set(answers) == {r.id for r in rows}
    for a in answers.values():
        assert a.answer.strip() and a.prompt_tokens > 0 and a.completion_tokens > 0


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_demo_routes_below_the_baseline_with_one_fallback(demo) -> None:
    data, ledger = demo
    totals = data["totals"]
    assert data["mode"] == "routed" and totals["calls"] == len(data["rows"]) == len(sample_rows())
    assert totals["failed"] == 0 and totals["unpriced"] == 0
    assert 0 < totals["routed_cost_usd"] < totals["baseline_cost_usd"]
    assert totals["fallbacks"] == 1
    [fell] = [r for r in data["rows"] if r["fell_back"]]
    fault = data["fault"]
    assert fell["id"] == fault["row"] and fell["requested_model"] == fault["model"]
    assert [a["outcome"] for a in fell["attempts"]] == ["InternalServerError", "ok"]
    assert fell["model"] != fault["model"]
    # every attempt is one ledger line, and the ledger says what the JSON says
    records = read_ledger(ledger)
    assert len(records) == totals["attempts"] == data["ledger_lines"] == totals["calls"] + 1
    assert sum(r.cost_usd for r in records) == pytest.approx(totals["routed_cost_usd"])
    assert data["report"]["total"]["attempts"] == len(records)
    assert data["report"]["total"]["calls"] == totals["calls"]  # the fallback is one call


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_demo_costs_come_from_the_served_usage(demo) -> None:
    data, _ = demo
    catalog = Catalog.default()
    answers = demo_answers()
    for row in data["rows"]:
        canned = answers[row["id"]]
        assert row["answer"] == canned.answer  # what the stand-in served for this prompt
        assert (row["input_tokens"], row["output_tokens"]) == (
            canned.prompt_tokens,
            canned.completion_tokens,
        )
        expected = call_cost(
            catalog.get(row["model"]), canned.prompt_tokens, canned.completion_tokens
        ).total_usd
        assert row["cost_usd"] == pytest.approx(expected)
        base = call_cost(
            catalog.get("gpt-4o"), canned.prompt_tokens, canned.completion_tokens
        ).total_usd
        assert row["baseline_cost_usd"] == pytest.approx(base)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_demo_follows_the_policy_flags(capsys) -> None:
    code, out, _ = run(capsys, "demo", "--json", "--policy", "quality")
    data = json.loads(out)
    catalog, policy = Catalog.default(), Policy(preset="quality")
    rows = {r.id: r for r in sample_rows()}
    for row in data["rows"]:
        source = rows[row["id"]]
        chosen = decide(
            catalog,
            policy.model_copy(
                update={"default_output_tokens": source.expected_output_tokens or 512}
            ),
            Request(messages=source.chat_messages(), tags=source.tags),
        ).model
        assert row["requested_model"] == chosen
    assert code == 0 and data["policy"] == "quality"


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_demo_text_names_what_is_constructed(capsys) -> None:
    code, out, _ = run(capsys, "demo", "--baseline", "claude-3.5-sonnet")
    assert code == 0
    assert "claude-3.5-sonnet" in out and "of the baseline cost" in out
    assert "Constructed, not real" in out and "503" in out
    assert "routedllm report" in out


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_own_workload_without_constructed_answers(capsys, tmp_path: Path) -> None:
    workload = tmp_path / "w.jsonl"
    workload.write_text(
        json.dumps({"id": "mine", "prompt": "Fix: def f(): return 1/0", "tags": ["code"]}) + "\n"
    )
    code, out, _ = run(capsys, "demo", "--json", "--workload", str(workload))
    data = json.loads(out)
    assert code == 0 and data["generated_replies"] == ["mine"]
    [row] = data["rows"]
    assert row["fell_back"] and row["input_tokens"] > 0  # the fault lands on the last row


def test_estimate_only_makes_no_calls(capsys) -> None:
    code, out, _ = run(capsys, "demo", "--estimate", "--json")  # sockets are disabled here
    data = json.loads(out)
    assert code == 0 and "mode" not in data and data["totals"]["calls"] == len(sample_rows())


def test_without_loopback_sockets_the_demo_warns_and_estimates(capsys) -> None:
    code, out, err = run(capsys, "demo", "--json")
    assert code == 0 and "cannot start the local stand-in gateway" in err
    assert "--estimate" in err and "mode" not in json.loads(out)


@pytest.mark.loopback
def test_demo_needs_only_the_base_dependencies(tmp_path: Path) -> None:
    """A fresh interpreter runs the whole demo without importing numpy or matplotlib."""
    script = (
        "import sys\nfrom routedllm.cli import main\n"
        f"assert main(['demo', '--ledger', {str(tmp_path / 'l.jsonl')!r}]) == 0\n"
        "print(sorted(m for m in ('numpy', 'matplotlib', 'litellm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
