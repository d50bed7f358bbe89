"""The routedllm command: stable JSON, readable tables, errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routedllm.cli import main


@pytest.fixture(autouse=True)
def _logic_on_the_fixture_catalog(packaged_is_fixture: object) -> None:
    """The CLI reads the packaged catalog; these tests are about the CLI, not its figures."""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json(capsys) -> None:
    code, out, _ = run(capsys, "models", "--json")
    models = {m["id"]: m for m in json.loads(out)}
    assert code == 0 and len(models) == 11
    flash = models["deepseek-v4-flash"]
    for key in (
        "id",
        "name",
        "origin",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "context_window",
        "capabilities",
        "scores",
    ):
        assert key in flash
    assert flash["scores"] == {"mmlu": 85.5, "humaneval": 92.0, "ceval": 88.0}
    assert models["gemini-1.5-pro"]["scores"] == {"mmlu": None, "humaneval": None, "ceval": None}


def test_route_json(capsys) -> None:
    code, out, _ = run(capsys, "route", "--tags", "code", "--json", "fix my loop")
    data = json.loads(out)
    assert code == 0 and data["model"] == "deepseek-v4-flash"
    assert data["fallbacks"] == ["gpt-4o", "claude-3.5-sonnet"] and data["tags"] == ["code"]
    assert data["benchmark"] == "humaneval" and data["score"] == 92.0
    assert data["estimated_cost_usd"] > 0
    assert {"model", "reason"} <= data["rejected"][0].keys()


def test_route_table_and_file(capsys, tmp_path: Path) -> None:
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "请把这段话翻译成英文"}]))
    code, out, _ = run(capsys, "route", "--file", str(messages))
    assert code == 0 and "qwen3-32b" in out and "rejected:" in out


def test_route_policy_flags(capsys) -> None:
    _, out, _ = run(capsys, "route", "--tags", "code", "--origin", "US", "--json", "x")
    assert json.loads(out)["model"] == "gpt-4o"
    _, out, _ = run(capsys, "route", "--tags", "general", "--policy", "quality", "--json", "x")
    assert json.loads(out)["model"] == "claude-3.5-sonnet"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["route", "--tags", "nope", "hi"], "unknown tag 'nope'"),
        (["route"], "give a PROMPT or --file"),
        (["route", "--gap", "-3", "hi"], "quality_gap"),
        (["route", "--deny-model", "gpt-9", "hi"], "unknown model 'gpt-9'"),
        (["route", "--origin", "EU", "--tags", "code", "hi"], "no eligible model"),
        (["models", "--catalog", "/nonexistent.yaml"], "cannot read catalog file"),
        (["demo", "--baseline", "gpt-5"], "unknown model 'gpt-5'"),
    ],
)
def test_errors_exit_nonzero_on_stderr(capsys, argv, message) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err


def test_catalog_env_override(capsys, tmp_path: Path, monkeypatch) -> None:
    override = tmp_path / "c.yaml"
    override.write_text(
        "models:\n  - id: deepseek-v4-flash\n    renames: deepseek-v4-flash\n"
        "    output_usd_per_mtok: 99\n"
    )
    monkeypatch.setenv("ROUTEDLLM_CATALOG", str(override))
    _, out, _ = run(capsys, "route", "--tags", "code", "--json", "x")
    assert json.loads(out)["model"] == "gpt-4o"  # flash is now pricier than GPT-4o


def test_demo_estimate_routes_the_sample_workload(capsys) -> None:
    code, out, err = run(capsys, "demo", "--estimate", "--json")
    data = json.loads(out)
    assert code == 0 and data["totals"]["calls"] == len(data["rows"]) >= 15
    models = {r["id"]: r["model"] for r in data["rows"]}
    assert models["code-fix-pagination"] == "deepseek-v4-flash"
    assert models["vision-chart"] == "kimi-k2.5" and models["zh-summary"] == "qwen3-32b"
    assert 0 < data["totals"]["cost_ratio"] < 1
    assert "prices are as of 2026" in err  # the stale-price warning reaches the user
    code, out, _ = run(capsys, "demo", "--estimate")
    assert code == 0 and "of the baseline cost" in out


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_demo_makes_routed_calls(capsys, tmp_path: Path) -> None:
    ledger = tmp_path / "calls.jsonl"
    code, out, err = run(capsys, "demo", "--json", "--ledger", str(ledger))
    data = json.loads(out)
    assert code == 0 and "showing estimates only" not in err
    assert data["totals"]["calls"] == len(data["rows"]) >= 15
    assert 0 < data["totals"]["cost_ratio"] < 1
    assert len(ledger.read_text().splitlines()) == data["totals"]["calls"] + 1  # one fallback


def test_require_flag_and_warnings_on_errors(capsys) -> None:
    code, out, err = run(capsys, "route", "--require", "image_input", "--json", "describe it")
    assert code == 0 and json.loads(out)["model"] == "kimi-k2.5"
    code, out, err = run(capsys, "route", "--origin", "EU", "hi")
    assert code == 2 and "no eligible model" in err and "prices are as of 2026" in err
